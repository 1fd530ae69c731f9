//! A campus: 50 gateways against one Mosquitto on loopback, each with its
//! own client certificate (CN = gateway id) and the per-gateway ACL of
//! `scripts/dev-pki`; one central publisher. Each gateway receives exactly
//! its own rules and commands, its events arrive under its own topic, and a
//! gateway certificate can neither read another gateway's commands nor
//! publish events in its name.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::time::Duration;

use portier::driver::uplink::Inbound;
use portier::event::EventKind;
use portier::journal::Journal;
use portier::uplink::wire::EventBatch;
use rumqttc::{AsyncClient, Event, Incoming, QoS};
use support::broker::{Broker, Central, spawn_uplink};
use support::wait_for;

const GATEWAYS: usize = 50;
const T: Duration = Duration::from_secs(60);

#[test]
fn fifty_gateways_each_get_only_their_own() {
    let names: Vec<String> = (1..=GATEWAYS).map(|i| format!("gw-{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let broker = Broker::start(&refs);
    let central = Central::start(&broker, true);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let at = "2026-11-23T22:00:00Z".parse().unwrap();
    let mut uplinks = Vec::new();
    let mut keep = Vec::new();
    for name in &names {
        let journal_path = &dir.path().join(name);
        let Journal {
            writer: mut journal,
            reader,
            acker,
            ..
        } = Journal::open(journal_path).unwrap();
        // Ten events each, whose content names the gateway.
        let kinds = (0..10)
            .map(|_| EventKind::DoorClosed {
                door: name.as_str().into(),
            })
            .collect();
        journal.append(at, kinds).unwrap();
        let uplink = spawn_uplink(&runtime, (reader, acker), &broker, name, |_| {});
        keep.push(journal);
        uplinks.push(uplink);
    }
    wait_for(T, "all 50 connected", || {
        uplinks.iter().all(|u| u.connected())
    });

    // Every gateway's events arrive under its own topic, and it is acked.
    wait_for(T, "10 events from each gateway", || {
        let seen = central.seen.lock().unwrap();
        names.iter().all(|n| seen.contiguous(n) == 10)
    });
    for name in &names {
        for e in central.events(name) {
            assert_eq!(e["door"], name.as_str(), "{name} got another's event: {e}");
        }
    }
    wait_for(T, "acks delivered", || {
        uplinks.iter().all(|u| u.state.borrow().acked == 10)
    });

    // Central sends each gateway its own snapshot and command.
    for name in &names {
        let prefix = format!("portier/v1/{name}");
        central.publish(
            &format!("{prefix}/snapshot"),
            format!("rules of {name}").into_bytes(),
            true,
        );
        central.publish(
            &format!("{prefix}/command"),
            format!("command for {name}").into_bytes(),
            false,
        );
    }
    for (name, uplink) in names.iter().zip(&mut uplinks) {
        let inbox = &mut uplink.inbound;
        let got: Vec<Inbound> = runtime.block_on(async {
            let mut got = Vec::new();
            while got.len() < 2 {
                got.push(
                    tokio::time::timeout(T, inbox.recv())
                        .await
                        .unwrap()
                        .unwrap(),
                );
            }
            // Nothing else arrives for this gateway.
            if let Ok(Some(extra)) =
                tokio::time::timeout(Duration::from_millis(200), inbox.recv()).await
            {
                got.push(extra);
            }
            got
        });
        assert_eq!(got.len(), 2, "{name} received more than its own: {got:?}");
        assert!(got.contains(&Inbound::Snapshot(format!("rules of {name}").into_bytes())));
        assert!(got.contains(&Inbound::Command(
            format!("command for {name}").into_bytes()
        )));
    }

    // The ACL: gw-01's certificate cannot read gw-02's commands, nor
    // publish events as gw-02. Markers that gw-01 may see and send come
    // after each probe, so waiting for them means the probes were handled.
    let batch = |gateway: &str, seq: u64| {
        serde_cbor::to_vec(&EventBatch {
            gateway: gateway.into(),
            journal: Default::default(),
            events: vec![portier::event::Event {
                seq,
                at,
                kind: EventKind::DoorForced {
                    door: "probe".into(),
                },
            }],
        })
        .unwrap()
    };
    let (client, mut ev) = runtime.block_on(async {
        let (client, mut ev) = AsyncClient::new(broker.options("gw-01-probe", "gw-01"), 16);
        client
            .subscribe("portier/v1/gw-02/command", QoS::AtLeastOnce)
            .await
            .unwrap();
        client
            .subscribe("portier/v1/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        let mut subacks = 0;
        while subacks < 2 {
            let e = tokio::time::timeout(T, ev.poll()).await.unwrap().unwrap();
            subacks += usize::from(matches!(e, Event::Incoming(Incoming::SubAck(_))));
        }
        (client, ev)
    });
    central.publish(
        "portier/v1/gw-02/command",
        b"secret for gw-02".to_vec(),
        false,
    );
    central.publish("portier/v1/gw-01/command", b"marker".to_vec(), false);
    let intruder = runtime.block_on(async {
        client
            .publish(
                "portier/v1/gw-02/events",
                QoS::AtLeastOnce,
                false,
                batch("gw-02", 999),
            )
            .await
            .unwrap();
        client
            .publish(
                "portier/v1/gw-01/events",
                QoS::AtLeastOnce,
                false,
                batch("gw-01", 777),
            )
            .await
            .unwrap();
        let mut received = Vec::new();
        loop {
            let e = tokio::time::timeout(T, ev.poll()).await.unwrap().unwrap();
            if let Event::Incoming(Incoming::Publish(p)) = e {
                let marker = p.payload.as_ref() == b"marker";
                received.push(p.topic);
                if marker {
                    break received;
                }
            }
        }
    });
    assert!(
        intruder.iter().all(|t| t.starts_with("portier/v1/gw-01/")),
        "gw-01 saw other gateways' topics: {intruder:?}"
    );
    wait_for(T, "gw-01's own probe event centrally", || {
        central
            .seen
            .lock()
            .unwrap()
            .seqs
            .get("gw-01")
            .is_some_and(|s| s.contains(&777))
    });
    let forged_arrived = central
        .seen
        .lock()
        .unwrap()
        .seqs
        .get("gw-02")
        .is_some_and(|s| s.contains(&999));
    assert!(!forged_arrived, "gw-01 published events as gw-02");
    println!("campus: {GATEWAYS} gateways, each got only its own rules and commands");
}
