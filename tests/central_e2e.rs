//! `portier central` against a real PostgreSQL (initdb in a temp dir, unix
//! socket) and a real Mosquitto over mTLS, with gateways that are their
//! real journal and uplink:
//! - events from two gateways land once each; every ack is checked against
//!   the database the moment it is published (acks only after commit);
//!   central exits between a commit and its acks → the gateways resend,
//!   a new central stores nothing twice and acks everything;
//! - two central instances on a shared subscription split the load and
//!   lose nothing;
//! - only the contiguous prefix is acked (a batch after a gap is stored,
//!   the ack waits for the gap);
//! - fleet status and alarms by time.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::time::{Duration, Instant};

use portier::event::EventKind;
use support::broker::Broker;
use support::central::{AckSpy, CentralProc, JournalGateway, T, mixed_events, write_config};
use support::postgres::Postgres;
use support::wait_for;

fn portier_central(config: &std::path::Path, args: &[&str]) -> String {
    let mut all = vec!["central", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    support::portier_ok(&all)
}

#[test]
fn events_land_once_and_acks_follow_the_commit_also_across_a_crash() {
    const N: u64 = 3_000;
    let pg = Postgres::start();
    let broker = Broker::start(&["gw-a", "gw-b"]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &broker,
        &pg,
        "central-1",
        &broker.pki().join("central-signing.key"),
    );
    portier_central(&config, &["migrate"]);
    let spy = AckSpy::start(&broker, &pg);

    let mut gws = [JournalGateway::new("gw-a"), JournalGateway::new("gw-b")];
    for g in &mut gws {
        g.append(mixed_events(N - 1));
        g.append(vec![EventKind::DoorForced {
            door: "lab-1".into(),
        }]);
    }

    // First central: commits one flush, then exits before publishing its acks.
    let mut first =
        CentralProc::spawn(&config, &[("PORTIER_CENTRAL_TEST_EXIT_AFTER_COMMITS", "1")]);
    first.wait_connected();
    for g in &mut gws {
        g.connect(&broker);
    }
    let end = Instant::now() + T;
    let status = loop {
        if let Some(s) = first.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < end,
            "central did not exit:\n{}",
            first.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3), "{}", first.log());
    let stored = pg.count("SELECT count(*) FROM events");
    assert!(
        stored > 0,
        "the first flush stored nothing:\n{}",
        first.log()
    );
    assert!(
        spy.acks.lock().unwrap().is_empty(),
        "an ack went out although central died before acking"
    );
    assert!(gws.iter().all(|g| g.acked() == 0));

    // A new central: the gateways resend, nothing is stored twice.
    let mut second = CentralProc::spawn(&config, &[]);
    second.wait_connected();
    wait_for(T, "every event acked to both gateways", || {
        gws.iter().all(|g| g.acked() == N)
    });
    for g in ["gw-a", "gw-b"] {
        assert_eq!(
            pg.psql(&format!(
                "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM events WHERE gateway = '{g}'"
            )),
            format!("{N}|{N}|1|{N}")
        );
        assert_eq!(
            pg.count(&format!("SELECT acked_seq FROM gateways WHERE id = '{g}'")),
            i64::try_from(N).unwrap()
        );
    }
    // The columns and the full event.
    assert_eq!(
        pg.psql(
            "SELECT type, door, credential, reason, event->>'reader' FROM events \
             WHERE gateway = 'gw-a' AND seq = 2"
        ),
        "access_denied|lab-1|h10301:42:1|blocked|lab-reader"
    );
    assert_eq!(
        pg.psql("SELECT at FROM events WHERE gateway = 'gw-b' AND seq = 1"),
        "2026-11-23 22:00:00+00"
    );
    // Acks follow the commits; the spy hears them on its own connection
    // and checks each against the database (a psql per ack: not at once).
    wait_for(T, "the spy heard acks", || {
        !spy.acks.lock().unwrap().is_empty()
    });
    let violations = spy.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");

    // Fleet status from the retained status messages.
    wait_for(T, "both gateways online in the fleet", || {
        pg.count("SELECT count(*) FROM gateways WHERE state = 'online'") == 2
    });
    let fleet = portier_central(&config, &["status", "--json"]);
    let rows: Vec<serde_json::Value> = fleet
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{fleet}");
    assert!(
        rows.iter()
            .all(|r| r["state"] == "online" && r["acked"] == N),
        "{fleet}"
    );
    let table = portier_central(&config, &["status"]);
    assert!(
        table.contains("gw-a") && table.contains("online"),
        "{table}"
    );

    // Alarms by time: the forced doors, one per gateway.
    let alarms = portier_central(
        &config,
        &[
            "alarms",
            "--since",
            "2026-11-23T00:00:00Z",
            "--until",
            "2026-11-24T00:00:00Z",
        ],
    );
    let forced: Vec<serde_json::Value> = alarms
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|a: &serde_json::Value| a["kind"] == "door_forced")
        .collect();
    assert_eq!(forced.len(), 2, "{alarms}");
    assert!(forced.iter().all(|a| a["door"] == "lab-1"));
    let none = portier_central(
        &config,
        &[
            "alarms",
            "--since",
            "2026-11-24T00:00:00Z",
            "--until",
            "2026-11-25T00:00:00Z",
            "--gateway",
            "gw-a",
        ],
    );
    assert!(!none.contains("door_forced"), "{none}");

    drop(second);
}

#[test]
fn two_instances_on_a_shared_subscription_split_the_load() {
    const N: u64 = 4_000;
    let pg = Postgres::start();
    let names = ["gw-a", "gw-b", "gw-c"];
    let broker = Broker::start(&names);
    let dir = tempfile::tempdir().unwrap();
    let key = broker.pki().join("central-signing.key");
    let c1 = write_config(dir.path(), &broker, &pg, "central-1", &key);
    let c2 = write_config(dir.path(), &broker, &pg, "central-2", &key);
    portier_central(&c1, &["migrate"]);
    let spy = AckSpy::start(&broker, &pg);
    let mut a = CentralProc::spawn(&c1, &[]);
    let mut b = CentralProc::spawn(&c2, &[]);
    a.wait_connected();
    b.wait_connected();
    let mut gws: Vec<JournalGateway> = names.iter().map(|n| JournalGateway::new(n)).collect();
    for g in &mut gws {
        g.append(mixed_events(N));
        g.connect(&broker);
    }
    wait_for(T, "every event acked", || {
        gws.iter().all(|g| g.acked() == N)
    });
    for g in names {
        assert_eq!(
            pg.psql(&format!(
                "SELECT count(*), max(seq) FROM events WHERE gateway = '{g}'"
            )),
            format!("{N}|{N}")
        );
    }
    let (ra, rb) = (a.rows_committed(), b.rows_committed());
    assert!(
        ra > 0 && rb > 0,
        "one instance did all the work: {ra} / {rb}\n{}\n{}",
        a.log(),
        b.log()
    );
    let violations = spy.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn only_the_contiguous_prefix_is_acked() {
    use portier::event::Event;
    use portier::uplink::wire::{EventBatch, to_cbor};
    let pg = Postgres::start();
    let broker = Broker::start(&["gw-a"]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &broker,
        &pg,
        "central-1",
        &broker.pki().join("central-signing.key"),
    );
    portier_central(&config, &["migrate"]);
    let spy = AckSpy::start(&broker, &pg);
    let mut central = CentralProc::spawn(&config, &[]);
    central.wait_connected();
    let at = "2026-11-23T22:00:00Z".parse().unwrap();
    let batch = |seqs: std::ops::RangeInclusive<u64>| {
        to_cbor(&EventBatch {
            gateway: "gw-a".into(),
            journal: Default::default(),
            events: seqs
                .map(|seq| Event {
                    seq,
                    at,
                    kind: EventKind::DoorClosed { door: "d".into() },
                })
                .collect(),
        })
    };
    // The gateway's own certificate publishes out of order: 101..=200 first.
    let (client, mut connection) = rumqttc::Client::new(broker.options("gw-a", "gw-a"), 16);
    let publish = |client: &rumqttc::Client, payload: Vec<u8>| {
        client
            .publish(
                "portier/v1/gw-a/events",
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .unwrap();
    };
    std::thread::spawn(move || for _ in connection.iter() {});
    publish(&client, batch(101..=200));
    wait_for(T, "the later batch stored", || {
        pg.count("SELECT count(*) FROM events") == 100
    });
    // Stored, but nothing is contiguous from 1: the ack stays 0 (and the
    // spy below proves no ack but 200 was ever published).
    assert_eq!(
        pg.count("SELECT acked_seq FROM gateways WHERE id = 'gw-a'"),
        0
    );
    publish(&client, batch(1..=100));
    wait_for(T, "ack 200 after the gap is filled", || {
        spy.acks
            .lock()
            .unwrap()
            .iter()
            .any(|(g, s)| g == "gw-a" && *s == 200)
    });
    let acks = spy.acks.lock().unwrap().clone();
    assert!(
        acks.iter().all(|(_, s)| *s == 200),
        "an ack other than the contiguous prefix: {acks:?}"
    );
    let violations = spy.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
    central.kill();
}
