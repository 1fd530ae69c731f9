//! The uplink against a real Mosquitto over mutual TLS (certificates made
//! at test time by `scripts/dev-pki`, `require_certificate true`): refusal
//! without a certificate, events in order and deleted only on the central
//! ack, inbound snapshots/deltas/commands, and a long broker outage with
//! 100 000 events produced meanwhile.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::time::Duration;

use portier::driver::uplink::Inbound;
use portier::event::EventKind;
use portier::journal::{Journal, JournalReader, JournalWriter};
use portier::uplink::wire::Ack;
use rumqttc::{AsyncClient, Event, Incoming};
use support::broker::{Broker, Central, TestUplink, spawn_uplink};
use support::wait_for;

const GW: &str = "gw-a";

struct Gateway {
    _dir: tempfile::TempDir,
    journal: JournalWriter,
    reader: JournalReader,
    uplink: TestUplink,
    runtime: tokio::runtime::Runtime,
}

fn event(n: u64) -> EventKind {
    EventKind::DoorClosed {
        door: format!("door-{}", n % 7).into(),
    }
}

impl Gateway {
    fn start(broker: &Broker) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let journal_path = dir.path();
        let Journal {
            writer: journal,
            reader,
            acker,
            ..
        } = Journal::open(journal_path).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let uplink = spawn_uplink(&runtime, (reader.clone(), acker), broker, GW, |_| {});
        Self {
            _dir: dir,
            journal,
            reader,
            uplink,
            runtime,
        }
    }

    fn append(&mut self, n: u64) {
        let at = "2026-11-23T22:00:00Z".parse().unwrap();
        let first = self.journal.next_seq();
        let kinds = (first..first + n).map(event).collect();
        let appended = self.journal.append(at, kinds).unwrap();
        self.uplink
            .appended
            .send_replace(appended.last().unwrap().seq);
    }

    fn connected(&self) -> bool {
        self.uplink.connected()
    }
}

const T: Duration = Duration::from_secs(30);

fn wait_connected(gw: &Gateway, broker: &Broker) {
    let end = std::time::Instant::now() + T;
    while !gw.connected() {
        assert!(
            std::time::Instant::now() < end,
            "uplink not connected: {:?}\nmosquitto: {}",
            gw.uplink.state.borrow(),
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let broker = Broker::start(&[GW]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(async {
        let (_c, mut ev) = AsyncClient::new(broker.options_without_certificate("anon"), 4);
        tokio::time::timeout(T, async {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => return None,
                    Ok(_) => {}
                    Err(e) => return Some(e.to_string()),
                }
            }
        })
        .await
        .unwrap()
    });
    let err = err.expect("connected without a client certificate");
    assert!(
        err.contains("CertificateRequired")
            || err.contains("certificate")
            || err.contains("closed"),
        "{err}"
    );
}

#[test]
fn events_arrive_in_order_and_are_deleted_only_on_the_central_ack() {
    let broker = Broker::start(&[GW]);
    let central = Central::start(&broker, false);
    let mut gw = Gateway::start(&broker);
    wait_connected(&gw, &broker);
    gw.append(1000);
    wait_for(T, "1000 events centrally", || {
        central.seen.lock().unwrap().contiguous(GW) == 1000
    });
    let seqs = central.seen.lock().unwrap().seqs[GW].clone();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates without a reconnect"
    );
    // PUBACKs came back long ago: nothing may be deleted without the ack.
    assert_eq!(gw.reader.len(), 1000);
    let ack = |seq| {
        central.publish(
            &format!("portier/v1/{GW}/ack"),
            serde_cbor::to_vec(&Ack { seq, journal: None }).unwrap(),
            false,
        )
    };
    ack(400);
    wait_for(T, "400 deleted", || gw.reader.len() == 600);
    assert_eq!(gw.reader.records(0, 1).unwrap()[0].seq, 401);
    ack(1000);
    wait_for(T, "all deleted", || gw.reader.is_empty());
    wait_for(T, "state shows the ack", || {
        gw.uplink.state.borrow().acked == 1000
    });
    // The retained status says online, then the backlog.
    wait_for(T, "status", || {
        central
            .seen
            .lock()
            .unwrap()
            .status
            .get(GW)
            .is_some_and(|s| s.state == "online")
    });
}

#[test]
fn snapshots_deltas_and_commands_reach_the_gateway() {
    let broker = Broker::start(&[GW]);
    let central = Central::start(&broker, true);
    let mut gw = Gateway::start(&broker);
    wait_connected(&gw, &broker);
    let prefix = format!("portier/v1/{GW}");
    // The uplink subscribes right after the broker's CONNACK; on a first
    // connection (no session yet) a message published before its SUBACK is
    // not queued for it. Probe until the subscription is live.
    let end = std::time::Instant::now() + T;
    loop {
        central.publish(&format!("{prefix}/command"), b"probe".to_vec(), false);
        let got = gw.runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(300), gw.uplink.inbound.recv()).await
        });
        if let Ok(Some(_)) = got {
            break;
        }
        assert!(std::time::Instant::now() < end, "never subscribed");
    }
    // Retained snapshot first (as central would), then a delta and a command.
    central.publish(
        &format!("{prefix}/snapshot"),
        b"snapshot-bytes".to_vec(),
        true,
    );
    central.publish(&format!("{prefix}/delta"), b"delta-bytes".to_vec(), false);
    central.publish(
        &format!("{prefix}/command"),
        b"command-bytes".to_vec(),
        false,
    );
    let probe = Inbound::Command(b"probe".to_vec());
    let got: Vec<Inbound> = gw.runtime.block_on(async {
        let mut got = Vec::new();
        while got.len() < 3 {
            let next = tokio::time::timeout(T, gw.uplink.inbound.recv())
                .await
                .unwrap()
                .unwrap();
            // A late copy of a probe is not one of the three.
            if next != probe {
                got.push(next);
            }
        }
        got
    });
    assert!(got.contains(&Inbound::Snapshot(b"snapshot-bytes".to_vec())));
    assert!(got.contains(&Inbound::Delta(b"delta-bytes".to_vec())));
    assert!(got.contains(&Inbound::Command(b"command-bytes".to_vec())));
    // Another gateway's topics are closed to this one by the ACL.
    central.publish(
        "portier/v1/gw-other/command",
        b"not for gw-a".to_vec(),
        false,
    );
    central.publish(&format!("{prefix}/command"), b"marker".to_vec(), false);
    let next = gw.runtime.block_on(async {
        tokio::time::timeout(T, gw.uplink.inbound.recv())
            .await
            .unwrap()
            .unwrap()
    });
    assert_eq!(next, Inbound::Command(b"marker".to_vec()));
}

#[test]
fn a_long_broker_outage_loses_nothing() {
    // Central's subscription survives the broker's restart (as with a
    // production broker's persistence): the order it sees is the
    // gateway's, not a window it joined halfway while reconnecting and
    // the resend that fills the start of it.
    let mut broker = Broker::start_persistent(&[GW]);
    let central = Central::start_persistent(&broker, true);
    let mut gw = Gateway::start(&broker);
    wait_connected(&gw, &broker);
    gw.append(1000);
    wait_for(T, "first 1000 centrally", || {
        central.seen.lock().unwrap().contiguous(GW) == 1000
    });
    broker.wait_saved();
    broker.stop();
    wait_for(T, "uplink notices", || !gw.connected());
    for _ in 0..100 {
        gw.append(1000);
    }
    assert!(gw.reader.len() >= 100_000);
    broker.restart();
    wait_for(
        Duration::from_secs(120),
        "all 101 000 events centrally",
        || central.seen.lock().unwrap().contiguous(GW) == 101_000,
    );
    let seqs = central.seen.lock().unwrap().seqs[GW].clone();
    // In order: the first copy of each seq arrives after every lower one.
    let mut first_copy = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in &seqs {
        if seen.insert(*s) {
            first_copy.push(*s);
        }
    }
    assert!(first_copy.windows(2).all(|w| w[0] < w[1]), "out of order");
    println!(
        "outage: {} events, {} deliveries ({} duplicates across the reconnect)",
        first_copy.len(),
        seqs.len(),
        seqs.len() - first_copy.len()
    );
    wait_for(T, "journal drained by acks", || gw.reader.is_empty());
}
