//! Journal identity end to end, with a real PostgreSQL and Mosquitto: a
//! gateway delivers events 1..N under journal A; A is moved aside with
//! events central never got; a new journal B starts again at 1. Central
//! stores B's events beside A's (no collision, no duplicate drop), acks B
//! naming B, and the gateway raises no `ack_out_of_range`; the change is a
//! `journal_changed` alarm and shows in `portier central status`. Then
//! `portier journal drain` delivers what A still held while B's uplink
//! runs, neither taking the other's acks.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use portier::event::EventKind;
use portier::journal::{Journal, JournalError, JournalId};
use support::broker::Broker;
use support::central::{AckSpy, CentralProc, JournalGateway, T, mixed_events, write_config};
use support::postgres::Postgres;
use support::wait_for;

/// Events of `journal` of gw-a in `events`, and their distinct seqs.
fn stored(pg: &Postgres, journal: JournalId) -> (i64, i64, i64) {
    let q = |what: &str| {
        pg.count(&format!(
            "SELECT {what} FROM events WHERE gateway = 'gw-a' AND journal = decode('{journal}', 'hex')"
        ))
    };
    (
        q("count(*)"),
        q("coalesce(min(seq), 0)"),
        q("coalesce(max(seq), 0)"),
    )
}

fn no_ack_out_of_range(g: &mut JournalGateway) {
    let u = g.uplink.as_mut().unwrap();
    while let Ok(alarm) = u.alarms.try_recv() {
        assert!(
            !matches!(alarm, EventKind::AckOutOfRange { .. }),
            "the gateway took another journal's ack: {alarm:?}"
        );
    }
}

#[test]
fn a_new_journal_is_stored_beside_the_old_one_and_the_old_one_drains() {
    const N: u64 = 1_500; // A, delivered
    const M: u64 = 400; // A, never sent before the move
    const K: u64 = 600; // B: fewer than A's, so A's acks would be out of B's range
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
    support::portier_ok(&["central", "--config", config.to_str().unwrap(), "migrate"]);
    let spy = AckSpy::start(&broker, &pg);
    let mut central = CentralProc::spawn(&config, &[]);
    central.wait_connected();

    let state = tempfile::tempdir().unwrap();
    let live = state.path().join("journal");
    let aside = state.path().join("journal.old");

    // Journal A: N delivered, then M more while the uplink is down.
    let mut a = JournalGateway::open_at("gw-a", &live);
    let id_a = a.reader.id();
    assert!(!id_a.is_nil());
    a.append(mixed_events(N));
    a.connect(&broker);
    wait_for(T, "A's events acknowledged", || a.acked() == N);
    no_ack_out_of_range(&mut a);
    a.shut_down();
    let mut writer = Journal::open(&live).unwrap().writer;
    let at = "2026-11-24T08:00:00Z".parse().unwrap();
    writer.append(at, mixed_events(M)).unwrap();
    assert_eq!(writer.next_seq(), N + M + 1);
    drop(writer);

    // The recovery: the journal is moved aside, a new one starts at 1.
    std::fs::rename(&live, &aside).unwrap();
    let mut b = JournalGateway::open_at("gw-a", &live);
    let id_b = b.reader.id();
    assert_ne!(id_a, id_b);
    b.append(mixed_events(K));
    b.connect(&broker);
    wait_for(T, "B's events acknowledged", || b.acked() == K);
    assert_eq!(
        stored(&pg, id_a),
        (N as i64, 1, N as i64),
        "A's rows as they were"
    );
    assert_eq!(
        stored(&pg, id_b),
        (K as i64, 1, K as i64),
        "B's beside them"
    );
    no_ack_out_of_range(&mut b);

    // The change is an alarm and shows in the fleet status.
    wait_for(T, "a journal_changed alarm", || {
        pg.count("SELECT count(*) FROM alarms WHERE kind = 'journal_changed' AND gateway = 'gw-a'")
            == 1
    });
    let alarm = pg.psql("SELECT event FROM alarms WHERE kind = 'journal_changed'");
    assert!(
        alarm.contains(&id_a.to_string()) && alarm.contains(&id_b.to_string()),
        "{alarm}"
    );
    let status = support::portier_ok(&[
        "central",
        "--config",
        config.to_str().unwrap(),
        "status",
        "--json",
    ]);
    let row: serde_json::Value = serde_json::from_str(status.lines().next().unwrap()).unwrap();
    assert_eq!(row["journal"], id_b.to_string(), "{row}");
    assert_eq!(row["journal_previous"], id_a.to_string(), "{row}");
    assert_eq!(row["journal_changed"], true, "{row}");
    assert_eq!(row["journals"], 2, "{row}");
    assert_eq!(row["acked"], K as i64, "{row}");

    // The drain: its own client id, while B's uplink runs.
    let body = format!(
        "[gateway]\nid = \"gw-a\"\nbuilding = \"university-main\"\nstate_dir = \"state\"\n\
         [trust]\ncentral_keys = [{:?}]\n",
        broker
            .pki()
            .join("central-signing.pub")
            .display()
            .to_string()
    );
    let gw_config = support::broker::write_config(dir.path(), "gw-a", &body, &broker);
    let out = support::portier_ok(&[
        "journal",
        "drain",
        "--config",
        gw_config.to_str().unwrap(),
        "--timeout",
        "60",
        aside.to_str().unwrap(),
    ]);
    assert!(out.contains(&format!("journal {id_a}")), "{out}");
    assert!(
        out.contains(&format!("all {M} event(s) acknowledged")),
        "{out}"
    );
    assert_eq!(
        stored(&pg, id_a),
        ((N + M) as i64, 1, (N + M) as i64),
        "all of A's events"
    );
    assert_eq!(stored(&pg, id_b), (K as i64, 1, K as i64), "B's untouched");
    assert_eq!(
        pg.count(&format!(
            "SELECT acked_seq FROM journals WHERE gateway = 'gw-a' AND journal = decode('{id_a}', 'hex')"
        )),
        (N + M) as i64
    );
    // The moved journal is empty now; a second drain has nothing to do.
    let j = Journal::open_to_drain(&aside).unwrap();
    assert!(j.reader.is_empty());
    drop(j);
    let again = support::portier_ok(&[
        "journal",
        "drain",
        "--config",
        gw_config.to_str().unwrap(),
        aside.to_str().unwrap(),
    ]);
    assert!(again.contains("all 0 event(s) acknowledged"), "{again}");

    // B heard A's acks (up to N + M > K) and ignored them.
    b.append(mixed_events(10));
    wait_for(T, "B goes on", || b.acked() == K + 10);
    no_ack_out_of_range(&mut b);
    assert_eq!(
        b.reader.oldest(),
        None,
        "B deleted exactly what central acked"
    );
    // The daemon's retained status was never the drain's.
    assert_eq!(
        pg.count("SELECT count(*) FROM alarms WHERE kind = 'journal_changed'"),
        1,
        "the drain did not make A current again"
    );
    assert!(
        spy.violations.lock().unwrap().is_empty(),
        "{:?}",
        spy.violations.lock().unwrap()
    );
    // The live journal cannot be drained while it is in use.
    assert!(matches!(
        Journal::open_to_drain(&live),
        Err(JournalError::Locked(_))
    ));
    central.kill();
}

/// A database of schema 2 with a gateway's events 1..5: schema 3 puts
/// them under the nil journal with their ack, and a gateway whose journal
/// an earlier version wrote (no id file: the nil journal) goes on where it
/// was: 6.. are stored beside 1..5, acked naming the nil journal, and no
/// journal change is raised.
#[test]
fn an_upgrade_keeps_the_old_events_under_the_nil_journal_and_the_old_journal_goes_on() {
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
    let repo = support::repo();
    pg.psql(
        "CREATE TABLE central_schema (version integer PRIMARY KEY, \
         applied_at timestamptz NOT NULL DEFAULT now())",
    );
    for (v, file) in [(1, "0001_init.sql"), (2, "0002_events_rejected.sql")] {
        pg.psql(&std::fs::read_to_string(repo.join("migrations/central").join(file)).unwrap());
        pg.psql(&format!(
            "INSERT INTO central_schema (version) VALUES ({v})"
        ));
    }
    pg.psql(
        "INSERT INTO gateways (id, acked_seq) VALUES ('gw-a', 5);
         INSERT INTO events (gateway, seq, at, type, event)
              SELECT 'gw-a', s, now(), 'door_closed', jsonb_build_object('seq', s)
                FROM generate_series(1, 5) s;",
    );
    support::portier_ok(&["central", "--config", config.to_str().unwrap(), "migrate"]);
    let nil = JournalId::NIL;
    assert_eq!(stored(&pg, nil), (5, 1, 5));
    assert_eq!(
        pg.psql("SELECT encode(journal, 'hex') || ':' || acked_seq FROM journals"),
        format!("{nil}:5")
    );
    assert_eq!(
        pg.psql("SELECT encode(journal, 'hex') FROM gateways"),
        nil.to_string()
    );

    // A journal an earlier version wrote: segments and no id.
    let state = tempfile::tempdir().unwrap();
    let path = state.path().join("journal");
    let mut j = Journal::open(&path).unwrap();
    j.writer
        .append("2026-11-24T08:00:00Z".parse().unwrap(), mixed_events(8))
        .unwrap();
    drop(j);
    std::fs::remove_file(path.join("id")).unwrap();
    let mut central = CentralProc::spawn(&config, &[]);
    central.wait_connected();
    let mut g = JournalGateway::open_at("gw-a", &path);
    assert!(g.reader.id().is_nil());
    g.connect(&broker);
    wait_for(T, "the old journal acked to its end", || g.acked() == 8);
    assert_eq!(stored(&pg, nil), (8, 1, 8));
    assert_eq!(
        pg.count("SELECT acked_seq FROM gateways WHERE id = 'gw-a'"),
        8
    );
    no_ack_out_of_range(&mut g);
    wait_for(T, "the gateway's status stored", || {
        pg.count("SELECT count(*) FROM gateways WHERE status ? 'journal'") == 1
    });
    assert_eq!(
        pg.count("SELECT count(*) FROM alarms WHERE kind = 'journal_changed'"),
        0
    );
    central.kill();
}
