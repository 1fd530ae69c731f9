//! Bounded input at `portier central` (issue 17), against a real
//! PostgreSQL and a real Mosquitto over mTLS:
//! - a NUL and an escape sequence in an `admin_login` user name: the event
//!   is stored (NUL escaped as the text `\u0000`) with the forced doors
//!   around it, and the ack passes all three;
//! - a message over `max_message_mib` is quarantined (`oversized`) and
//!   acknowledged, never a reconnect loop; another gateway keeps being
//!   stored, and so does the same gateway's next normal batch;
//! - planted seqs (2^63−1, top+10^6) are quarantined, not stored, and a
//!   later real event is stored; an event without a usable time and a row
//!   PostgreSQL refuses (an index row too large) are quarantined, settle
//!   their seq, and the ack walks past them;
//! - `push --from-sql` cannot write (SQLSTATE 25006) and runs one
//!   statement; `push --credentials` refuses a short CSV row with its line.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::path::{Path, PathBuf};

use portier::event::EventKind;
use portier::uplink::wire::to_cbor;
use serde_json::{Value, json};
use support::broker::Broker;
use support::central::{AckSpy, CentralProc, JournalGateway, T, write_config};
use support::postgres::Postgres;
use support::wait_for;

const AT: &str = "2026-11-23T22:00:00Z";

/// A central config, `broker_extra` added to `[broker]`, `extra` appended.
fn config(dir: &Path, broker: &Broker, pg: &Postgres, broker_extra: &str, extra: &str) -> PathBuf {
    let path = write_config(
        dir,
        broker,
        pg,
        "central-1",
        &broker.pki().join("central-signing.key"),
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[signing]", &format!("{broker_extra}\n[signing]"));
    std::fs::write(&path, format!("{text}{extra}")).unwrap();
    path
}

fn portier_central(config: &Path, args: &[&str]) -> String {
    let mut all = vec!["central", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    support::portier_ok(&all)
}

/// Publishes as gateway `name` (its own certificate), QoS 1.
struct RawGateway {
    client: rumqttc::Client,
    name: String,
}

impl RawGateway {
    fn connect(broker: &Broker, name: &str) -> Self {
        let mut options = broker.options(&format!("{name}-raw"), name);
        options.set_max_packet_size(64 << 20, 64 << 20);
        let (client, mut connection) = rumqttc::Client::new(options, 16);
        std::thread::spawn(move || for _ in connection.iter() {});
        Self {
            client,
            name: name.to_owned(),
        }
    }

    fn publish(&self, payload: Vec<u8>) {
        self.client
            .publish(
                format!("portier/v1/{}/events", self.name),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .unwrap();
    }

    fn batch(&self, events: Vec<Value>) {
        self.publish(to_cbor(&json!({"gateway": self.name, "events": events})));
    }
}

fn door_closed(seq: u64) -> Value {
    json!({"seq": seq, "at": AT, "type": "door_closed", "door": "d"})
}

fn acked(pg: &Postgres, gw: &str) -> i64 {
    pg.psql(&format!("SELECT acked_seq FROM gateways WHERE id = '{gw}'"))
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_nul_and_an_escape_in_a_name_are_stored_with_the_doors_around_them() {
    let pg = Postgres::start();
    let broker = Broker::start(&["gw-a"]);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &broker, &pg, "", "");
    portier_central(&config, &["migrate"]);
    let spy = AckSpy::start(&broker, &pg);
    let mut central = CentralProc::spawn(&config, &[]);
    central.wait_connected();

    let mut gw = JournalGateway::new("gw-a");
    gw.append(vec![
        EventKind::DoorForced {
            door: "lab-1".into(),
        },
        EventKind::AdminLogin {
            user: "a\u{0}b\u{1b}[31m".into(),
            client: "127.0.0.1".into(),
            result: portier::event::LoginResult::Failed,
        },
        EventKind::DoorForced {
            door: "lab-2".into(),
        },
    ]);
    gw.connect(&broker);
    wait_for(T, "the ack passing all three events", || gw.acked() == 3);
    assert_eq!(
        pg.psql("SELECT string_agg(seq || ':' || type, ',' ORDER BY seq) FROM events"),
        "1:door_forced,2:admin_login,3:door_forced"
    );
    // Escaped by the gateway's journal (`\u{0}`, `\u{1b}`) and stored as
    // such; central's own escaping of a raw NUL (from an older gateway) is
    // unit-tested in `central::ingest`.
    assert_eq!(
        pg.psql("SELECT event->>'user' = E'a\\\\u{0}b\\\\u{1b}[31m' FROM events WHERE seq = 2"),
        "t"
    );
    assert_eq!(pg.count("SELECT count(*) FROM events_rejected"), 0);
    assert_eq!(acked(&pg, "gw-a"), 3);
    let violations = spy.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
    central.kill();
}

#[test]
fn an_oversized_message_is_quarantined_and_acknowledged_and_others_keep_flowing() {
    let pg = Postgres::start();
    let broker = Broker::start(&["gw-a", "gw-b"]);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &broker, &pg, "max_message_mib = 1", "");
    portier_central(&config, &["migrate"]);
    let mut central = CentralProc::spawn(&config, &[]);
    central.wait_connected();

    // 2 MiB from gw-a: over central's 1 MiB, under the broker's 256 MiB.
    let a = RawGateway::connect(&broker, "gw-a");
    let mut big = vec![0x5au8; 2 << 20];
    big[..4].copy_from_slice(b"\xa2big");
    a.publish(big);
    wait_for(T, "the oversized message quarantined", || {
        pg.count("SELECT count(*) FROM events_rejected WHERE reason = 'oversized'") == 1
    });
    assert_eq!(
        pg.psql(
            "SELECT gateway, topic, seq IS NULL, settles, length, length(raw), \
             substr(raw, 1, 4) = '\\xa2626967'::bytea FROM events_rejected"
        ),
        format!("gw-a|portier/v1/gw-a/events|t|f|{}|4096|t", 2 << 20)
    );

    // Another gateway is stored and acked; so is gw-a's next batch.
    let mut b = JournalGateway::new("gw-b");
    b.append(support::central::mixed_events(50));
    b.connect(&broker);
    a.batch((1..=3).map(door_closed).collect());
    wait_for(T, "gw-b acked", || b.acked() == 50);
    wait_for(T, "gw-a's normal batch acked", || acked(&pg, "gw-a") == 3);
    assert_eq!(pg.count("SELECT count(*) FROM events"), 53);

    // Acknowledged to the broker: no reconnect, no redelivery (still one
    // row, counted once), even across a restart of central.
    central.kill();
    let mut central = CentralProc::spawn(&config, &[]);
    central.wait_connected();
    let mark = pg.count("SELECT count(*) FROM events");
    a.batch(vec![door_closed(4)]);
    wait_for(T, "gw-a's next batch after the restart", || {
        acked(&pg, "gw-a") == 4
    });
    assert_eq!(pg.count("SELECT count(*) FROM events"), mark + 1);
    assert_eq!(
        pg.psql("SELECT count(*), sum(repeats) FROM events_rejected"),
        "1|1"
    );
    assert!(
        !central.log().contains("broker connection"),
        "central reconnected:\n{}",
        central.log()
    );
    // An alarm and a problem in status.
    let alarms = portier_central(&config, &["alarms", "--gateway", "gw-a"]);
    let rejected: Vec<Value> = alarms
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|a: &Value| a["kind"] == "event_rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "{alarms}");
    assert_eq!(rejected[0]["reason"], "oversized");
    assert_eq!(rejected[0]["event"]["length"], 2 << 20);
    let status = portier_central(&config, &["status"]);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("gw-a") && l.contains("1 quarantined")),
        "{status}"
    );
    central.kill();
}

#[test]
fn planted_seqs_are_quarantined_and_unstorable_events_settle_their_seq() {
    let pg = Postgres::start();
    let broker = Broker::start(&["gw-a"]);
    let dir = tempfile::tempdir().unwrap();
    // The default window (100 000): the top+10^6 plant is beyond it.
    let config = config(dir.path(), &broker, &pg, "", "");
    portier_central(&config, &["migrate"]);
    let spy = AckSpy::start(&broker, &pg);
    let mut central = CentralProc::spawn(&config, &[]);
    central.wait_connected();
    let a = RawGateway::connect(&broker, "gw-a");

    a.batch((1..=5).map(door_closed).collect());
    wait_for(T, "ack 5", || acked(&pg, "gw-a") == 5);

    // Planted: the largest int8, and 10^6 above the real top.
    let planted = [i64::MAX as u64, 5 + 1_000_000];
    a.batch(vec![
        json!({"seq": planted[0], "at": AT, "type": "door_forced", "door": "x"}),
    ]);
    a.batch(vec![
        json!({"seq": planted[1], "at": AT, "type": "door_forced", "door": "x"}),
    ]);
    wait_for(T, "both plants quarantined", || {
        pg.count("SELECT count(*) FROM events_rejected WHERE reason = 'seq_out_of_window'") == 2
    });
    assert_eq!(
        pg.psql(
            "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM events_rejected WHERE NOT settles"
        ),
        format!("{},{}", planted[1], planted[0])
    );
    assert_eq!(pg.count("SELECT count(*) FROM events WHERE seq > 5"), 0);

    // Real events go on: 6 normal; 7 without a usable time (quarantined,
    // settled); 8 with a credential too large for its index (PostgreSQL
    // refuses the row: quarantined, settled); 9 normal — one batch.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let huge: String = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [(x % 64) as usize],
            )
        })
        .collect();
    a.batch(vec![
        door_closed(6),
        json!({"seq": 7, "at": "-005000-01-01T00:00:00Z", "type": "door_closed"}),
        json!({"seq": 8, "at": AT, "type": "access_denied", "credential": huge, "reason": "x"}),
        door_closed(9),
    ]);
    wait_for(T, "the ack walking past the quarantined 7 and 8", || {
        acked(&pg, "gw-a") == 9
    });
    assert_eq!(
        pg.psql("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM events"),
        "1,2,3,4,5,6,9"
    );
    assert_eq!(
        pg.psql(
            "SELECT string_agg(seq || ':' || reason, ',' ORDER BY seq) FROM events_rejected WHERE settles"
        ),
        "7:bad_event,8:refused_by_database"
    );
    assert!(
        pg.psql("SELECT detail FROM events_rejected WHERE seq = 8")
            .starts_with("SQLSTATE 54000"),
        "{}",
        pg.psql("SELECT detail FROM events_rejected WHERE seq = 8")
    );
    // A later real event at a normal seq is stored; the plants still are not.
    a.batch(vec![door_closed(10)]);
    wait_for(T, "ack 10", || acked(&pg, "gw-a") == 10);
    assert_eq!(pg.count("SELECT max(seq) FROM events"), 10);
    let violations = spy.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
    let acks = spy.acks.lock().unwrap().clone();
    assert!(
        acks.iter().all(|(_, s)| *s <= 10),
        "a planted seq acked: {acks:?}"
    );
    central.kill();
}

#[test]
fn imports_are_strict_and_read_only() {
    let pg = Postgres::start();
    let broker = Broker::start(&["gw-a"]);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &broker, &pg, "", "");
    portier_central(&config, &["migrate"]);
    pg.psql(
        "CREATE TABLE registry (card text, name text); \
         INSERT INTO registry VALUES ('h10301:42:1', 'A'), ('h10301:42:2', 'B')",
    );
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.example.toml");
    let push = |extra: &[&str]| {
        let mut args = vec![
            "central",
            "--config",
            config.to_str().unwrap(),
            "push",
            "--gateway",
            "gw-a",
            "--rules",
            rules.to_str().unwrap(),
            "--dry-run",
        ];
        args.extend_from_slice(extra);
        std::process::Command::new(support::portier_bin())
            .args(&args)
            .output()
            .unwrap()
    };
    let snapshot =
        || pg.psql("SELECT string_agg(card || '=' || name, ',' ORDER BY card) FROM registry");
    let before = snapshot();
    for write in [
        "DELETE FROM registry",
        "INSERT INTO registry VALUES ('h10301:42:3', 'C')",
        "UPDATE registry SET name = 'X'",
        "WITH d AS (DELETE FROM registry RETURNING *) SELECT * FROM d",
    ] {
        let out = push(&["--from-sql", write]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{write}: accepted");
        assert!(err.contains("25006"), "{write}: {err}");
    }
    let out = push(&[
        "--from-sql",
        "SELECT card, name FROM registry; DELETE FROM registry",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("exactly one statement"),
        "{err}"
    );
    assert_eq!(snapshot(), before, "the registry changed");

    // The library: the refusal carries PostgreSQL's code.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use portier::central::db::{self, DbError};
        let cfg = portier::central::config::PostgresConfig::new(pg.connect());
        let mut client = db::connect(&cfg).await.unwrap();
        match db::query_records(&mut client, "DELETE FROM registry").await {
            Err(DbError::FromSql(e)) => assert_eq!(e.code(), Some("25006"), "{e}"),
            other => panic!("{other:?}"),
        }
        // One statement, a trailing `;` included, reads.
        let rows = db::query_records(
            &mut client,
            "SELECT card, name FROM registry ORDER BY card;",
        )
        .await
        .unwrap();
        assert_eq!(rows.len(), 2);
        // The connection is usable for writes afterwards (the read-only
        // transaction ended).
        client
            .execute("CREATE TABLE after_import (x int)", &[])
            .await
            .unwrap();
    });
    assert_eq!(snapshot(), before);

    // A guest whose valid_until is missing is refused with file and line.
    let csv = dir.path().join("guests.csv");
    std::fs::write(
        &csv,
        "card,name,access_levels,valid_until\nh10301:42:2001,Guest One,visitor,2099-12-31\nh10301:42:2002,Guest Two\n",
    )
    .unwrap();
    let out = push(&["--credentials", csv.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a short row accepted");
    assert!(
        err.contains(&format!(
            "{}: line 3: 2 fields, the header has 4",
            csv.display()
        )) && err.contains("column 3 `access_levels`"),
        "{err}"
    );
}
