//! `events` partitioned by month (migration 0005) against a real
//! PostgreSQL:
//! - the migration from schema 4's plain table with rows in it keeps every
//!   row, byte for byte, puts each in its month's partition (a clock years
//!   off in `events_default`), and the alarms view, `status` and `alarms`
//!   read across partitions;
//! - exactly once still holds with `at` in the primary key: a redelivery
//!   and a second event claiming a stored seq with another `at` (another
//!   month) add nothing;
//! - `[retention] days` drops whole months once their last day is that old,
//!   prunes `events_default`, and central creates months ahead.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::path::Path;

use portier::event::{Event, EventKind};
use portier::uplink::wire::{EventBatch, to_cbor};
use support::broker::Broker;
use support::central::{AckSpy, CentralProc, T, write_config};
use support::postgres::Postgres;
use support::wait_for;

fn central(config: &Path, args: &[&str]) -> String {
    let mut all = vec!["central", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    support::portier_ok(&all)
}

/// Schema 4 as an older `portier central` left it.
fn schema_4(pg: &Postgres) {
    let mut sql = String::from(
        "BEGIN;\nCREATE TABLE central_schema (version integer PRIMARY KEY, \
         applied_at timestamptz NOT NULL DEFAULT now());\n",
    );
    for (v, text) in &portier::central::db::MIGRATIONS[..4] {
        sql.push_str(text);
        sql.push_str(&format!(
            "\nINSERT INTO central_schema (version) VALUES ({v});\n"
        ));
    }
    sql.push_str("COMMIT;\n");
    let file = pg.dir.path().join("schema4.sql");
    std::fs::write(&file, sql).unwrap();
    pg.psql(&format!("\\i {}", file.display()));
}

/// Every event row as one digest (order-independent content check).
fn digest(pg: &Postgres) -> String {
    pg.psql(
        "SELECT count(*) || ':' || md5(string_agg(e::text, ',' ORDER BY gateway, journal, seq)) \
         FROM (SELECT gateway, journal, seq, at, type, door, credential, reason, event, received_at \
               FROM events) e",
    )
}

#[test]
fn the_migration_moves_every_row_into_its_month() {
    let pg = Postgres::start();
    schema_4(&pg);
    let nil = "'\\x00000000000000000000000000000000'::bytea";
    // 3 000 events over three months of 2025, one from a clock in 1950,
    // a forced door in each month, a quarantined record and its journal.
    pg.psql(&format!(
        "INSERT INTO events (gateway, seq, at, type, door, credential, reason, event, journal)
         SELECT 'gw-a', s, timestamptz '2025-01-15 12:00+00' + (s / 1000) * interval '31 days',
                CASE WHEN s % 1000 = 7 THEN 'door_forced' ELSE 'access_granted' END,
                'side', 'h10301:42:' || s, NULL,
                jsonb_build_object('seq', s, 'type', 'access_granted'), {nil}
           FROM generate_series(1, 3000) s;
         INSERT INTO events (gateway, seq, at, type, door, event, journal)
              VALUES ('gw-a', 3001, '1950-06-01 00:00+00', 'door_closed', 'side', '{{}}', {nil});
         INSERT INTO gateways (id, acked_seq, journal) VALUES ('gw-a', 3001, {nil});
         INSERT INTO journals (gateway, journal, acked_seq) VALUES ('gw-a', {nil}, 3001);"
    ));
    let before = digest(&pg);
    let broker = Broker::start(&["gw-a"]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &broker,
        &pg,
        "central-1",
        &broker.pki().join("central-signing.key"),
    );
    let out = central(&config, &["migrate"]);
    let newest = portier::central::db::MIGRATIONS.last().unwrap().0;
    assert!(out.contains(&format!("\"schema\":{newest}")), "{out}");
    assert_eq!(
        pg.count("SELECT count(*) FROM central_schema WHERE version = 5"),
        1
    );
    assert_eq!(digest(&pg), before, "rows changed in the move");
    assert_eq!(
        pg.psql("SELECT relkind FROM pg_class WHERE relname = 'events'"),
        "p"
    );
    assert_eq!(
        pg.psql(
            "SELECT string_agg(tableoid::regclass::text || '=' || n, ' ' ORDER BY tableoid::regclass::text) \
             FROM (SELECT tableoid, count(*) n FROM events GROUP BY tableoid) t"
        ),
        "events_2025_01=999 events_2025_02=1000 events_2025_03=1000 events_2025_04=1 events_default=1"
    );
    assert_eq!(
        pg.count("SELECT stored_max FROM journals WHERE gateway = 'gw-a'"),
        3001
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM pg_class WHERE relname = 'events_unpartitioned'"),
        0
    );
    // Indexes on every partition (key, at, credential, and schema 8's
    // partial index of presence events); the time range prunes to its
    // months.
    assert_eq!(
        pg.count("SELECT count(*) FROM pg_indexes WHERE tablename = 'events_2025_02'"),
        4
    );
    let plan =
        pg.psql("EXPLAIN SELECT * FROM events WHERE at >= '2025-02-01' AND at < '2025-03-01'");
    assert!(
        plan.contains("events_2025_02")
            && !plan.contains("events_2025_01")
            && !plan.contains("events_default"),
        "{plan}"
    );
    // The alarms view and `alarms` across partitions: one forced door a month.
    let alarms = central(
        &config,
        &[
            "alarms",
            "--since",
            "2025-01-01T00:00:00Z",
            "--until",
            "2025-05-01T00:00:00Z",
        ],
    );
    let forced = alarms.lines().filter(|l| l.contains("door_forced")).count();
    assert_eq!(forced, 3, "{alarms}");
    let status = central(&config, &["status", "--json"]);
    assert!(status.contains("\"acked\":3001"), "{status}");
}

#[test]
fn stored_once_across_months_and_retention_drops_whole_months() {
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
    central(&config, &["migrate"]);
    let spy = AckSpy::start(&broker, &pg);
    let mut c = CentralProc::spawn(&config, &[]);
    c.wait_connected();
    // Events 1..=100 of 20 days ago, published twice; then seq 50 again
    // with an `at` in another month (another partition): stored once.
    let now = jiff::Timestamp::now();
    let days_ago = |d: i64| {
        now.checked_sub(jiff::SignedDuration::from_hours(24 * d))
            .unwrap()
    };
    let batch = |seqs: std::ops::RangeInclusive<u64>, at: jiff::Timestamp| {
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
    let (client, mut connection) = rumqttc::Client::new(broker.options("gw-a", "gw-a"), 16);
    std::thread::spawn(move || for _ in connection.iter() {});
    let publish = |payload: Vec<u8>| {
        client
            .publish(
                "portier/v1/gw-a/events",
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .unwrap();
    };
    publish(batch(1..=100, days_ago(20)));
    publish(batch(1..=100, days_ago(20)));
    wait_for(T, "ack 100", || {
        spy.acks.lock().unwrap().iter().any(|(_, s)| *s == 100)
    });
    // A seq between the ack and the highest stored is looked up: 120
    // arrives first (400 days old: events_default), then 101..=150 with
    // 120 again at another time, and 50 (below the ack) again.
    publish(batch(120..=120, days_ago(400)));
    wait_for(T, "seq 120 stored", || {
        pg.count("SELECT count(*) FROM events WHERE seq = 120") == 1
    });
    publish(batch(101..=150, days_ago(1)));
    publish(batch(50..=50, days_ago(1)));
    wait_for(T, "ack 150", || {
        spy.acks.lock().unwrap().iter().any(|(_, s)| *s == 150)
    });
    assert_eq!(
        pg.psql("SELECT count(*), count(DISTINCT seq), max(seq) FROM events"),
        "150|150|150"
    );
    assert_eq!(
        pg.count(
            "SELECT count(*) FROM events WHERE seq = 120 AND at < now() - interval '399 days'"
        ),
        1,
        "the first event at a seq stays"
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM events WHERE seq = 50 AND at > now() - interval '2 days'"),
        0
    );
    let violations = spy.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
    c.kill();

    // Months ahead: this month and the next three exist.
    let ahead = pg.count(
        "SELECT count(*) FROM pg_class WHERE relname = 'events_' || \
         to_char((now() AT TIME ZONE 'UTC') + interval '3 months', 'YYYY_MM')",
    );
    assert_eq!(ahead, 1);

    // Retention: rows 3 years, 14 months and 1 month old, this month's, and
    // one from a clock in 1950 (events_default).
    pg.psql(
        "SELECT portier_events_partition(now() - make_interval(months => m)) FROM unnest(array[36, 14, 1]) m;
         INSERT INTO events (gateway, journal, seq, at, type, event)
         SELECT 'gw-old', '\\x00000000000000000000000000000000'::bytea, m, now() - make_interval(months => m), 'door_closed', '{}'
           FROM unnest(array[36, 14, 1, 0]) m;
         INSERT INTO events (gateway, journal, seq, at, type, event)
              VALUES ('gw-old', '\\x00000000000000000000000000000000'::bytea, 99, '1950-01-01', 'door_closed', '{}')",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}[retention]\ndays = 365\n")).unwrap();
    let mut c = CentralProc::spawn(&config, &[]);
    wait_for(T, "retention applied", || {
        c.log().contains("retention applied")
    });
    c.kill();
    assert_eq!(
        pg.psql(
            "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM events WHERE gateway = 'gw-old'"
        ),
        "0,1",
        "the 36- and 14-month-old months and the 1950 row go; the others stay"
    );
    let gone = pg.count(
        "SELECT count(*) FROM pg_class WHERE relname = 'events_' || \
         to_char((now() AT TIME ZONE 'UTC') - interval '14 months', 'YYYY_MM')",
    );
    assert_eq!(gone, 0, "{}", c.log());
    // gw-a: the 400-day-old event (in events_default) went, the rest stay.
    assert_eq!(
        pg.psql("SELECT count(*), bool_or(seq = 120) FROM events WHERE gateway = 'gw-a'"),
        "149|f"
    );
}
