//! `portier central` throughput (`scripts/bench-central` runs these with
//! `--ignored --nocapture` in release mode; BENCHMARKS.md records the
//! output). They print numbers and the goal; they assert only that the
//! work was done, never a time.
//!
//! - ingest of a backlog: 100 000 events from 4 gateways wait at the broker
//!   (queued for central's persistent session while it was down); central
//!   starts; events/s until every event is stored in PostgreSQL and acked
//!   (goal ≥ 50 000/s); then, same run, the database's limit: the same
//!   rows by binary COPY straight into the same emptied table, and the
//!   ratio (goal: central ≥ 0.7 × the limit);
//! - gateway drain into PostgreSQL: 100 000 events wait in one gateway's
//!   journal, its uplink starts against a running `portier central`;
//!   events/s until the journal is empty (compare the gateway's drain rate
//!   against the in-memory toy central, `scripts/bench-uplink`).
#![allow(clippy::disallowed_methods)] // a bench reads the clock

mod support;

use std::time::{Duration, Instant};

use portier::event::Event;
use portier::uplink::wire::{EventBatch, to_cbor};
use rumqttc::{Event as MqttEvent, Incoming, QoS};
use support::broker::Broker;
use support::central::{CentralProc, JournalGateway, mixed_events, write_config};
use support::postgres::Postgres;
use support::wait_for;

const N: u64 = 100_000;
const LIMIT: Duration = Duration::from_secs(300);

#[test]
#[ignore = "bench: scripts/bench-central"]
fn ingest_of_a_backlog_waiting_at_the_broker() {
    const GATEWAYS: [&str; 4] = ["gw-a", "gw-b", "gw-c", "gw-d"];
    const BATCH: u64 = 500;
    let pg = Postgres::start();
    let broker = Broker::start(&GATEWAYS);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &broker,
        &pg,
        "central-1",
        &broker.pki().join("central-signing.key"),
    );
    // A plain subscription: the broker queues for the persistent session.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        "[central]\n",
        "[central]\nshare_group = \"\"\npersistent_session = true\n",
    );
    std::fs::write(&config, text).unwrap();
    {
        let mut c = CentralProc::spawn(&config, &[]);
        c.wait_connected();
        c.kill();
    }
    // The gateways publish their backlog while central is down.
    let per = N / GATEWAYS.len() as u64;
    let at = "2026-11-23T22:00:00Z".parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for gw in GATEWAYS {
        let kinds = mixed_events(per);
        let events: Vec<Event> = kinds
            .into_iter()
            .zip(1..)
            .map(|(kind, seq)| Event { seq, at, kind })
            .collect();
        let options = broker.options(gw, gw);
        runtime.block_on(async {
            let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1024);
            let topic = format!("portier/v1/{gw}/events");
            let batches: Vec<Vec<u8>> = events
                .chunks(usize::try_from(BATCH).unwrap())
                .map(|c| {
                    to_cbor(&EventBatch {
                        gateway: gw.into(),
                        journal: Default::default(),
                        events: c.to_vec(),
                    })
                })
                .collect();
            let n = batches.len();
            let publisher = tokio::spawn(async move {
                for b in batches {
                    client
                        .publish(topic.as_str(), QoS::AtLeastOnce, false, b)
                        .await
                        .unwrap();
                }
                client
            });
            let mut acked = 0;
            while acked < n {
                if let MqttEvent::Incoming(Incoming::PubAck(_)) = eventloop.poll().await.unwrap() {
                    acked += 1;
                }
            }
            let client = publisher.await.unwrap();
            let _ = client.disconnect().await;
        });
    }
    // One connection polls (a psql per poll would cost more than it measures).
    let poll = runtime
        .block_on(portier::central::db::connect(
            &portier::central::config::PostgresConfig::new(pg.connect()),
        ))
        .unwrap();
    let want = i64::try_from(per).unwrap();
    let start = Instant::now();
    let mut central = CentralProc::spawn(&config, &[]);
    // When the broker accepted central's connection (process start, TLS,
    // schema check and partitions behind it): the ingest proper starts
    // (a persistent session's queue flows from then on).
    let mut connected: Option<Instant> = None;
    loop {
        if connected.is_none() && central.log().contains("broker session up") {
            connected = Some(Instant::now());
        }
        let done: i64 = runtime
            .block_on(poll.query_one(
                "SELECT count(*) FROM gateways WHERE acked_seq = $1",
                &[&want],
            ))
            .map(|r| r.get(0))
            .unwrap_or(0);
        if done == GATEWAYS.len() as i64 {
            break;
        }
        assert!(start.elapsed() < LIMIT, "not stored: {}", central.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = start.elapsed();
    assert_eq!(
        pg.count("SELECT count(*) FROM events"),
        i64::try_from(N).unwrap()
    );
    println!(
        "central ingest of a backlog: {N} events from {} gateways stored and acked in {:.2} s = {:.0} events/s (goal ≥ 50000/s), process start and TLS connect included",
        GATEWAYS.len(),
        took.as_secs_f64(),
        N as f64 / took.as_secs_f64()
    );
    // Where the time went: the transactions themselves, from the log.
    let log = central.log();
    let (mut flushes, mut commit_ms) = (0, 0.0);
    for l in log.lines().filter(|l| l.contains("flush committed")) {
        if let Some(ms) = field(l, "commit_ms") {
            flushes += 1;
            commit_ms += ms;
        }
    }
    println!(
        "central ingest of a backlog: {flushes} transactions, {commit_ms:.0} ms in PostgreSQL = {:.0} events/s while committing",
        N as f64 / (commit_ms / 1e3)
    );
    central.kill();

    // The database's limit on this machine, same run: the same rows by
    // binary COPY straight into the same (emptied) table, in
    // transactions of central's size ([ingest] max_rows = 10 000), from
    // memory — no broker, no decoding, no duplicate check, no ack.
    let rate = runtime.block_on(async {
        use portier::central::db::{CopyTarget, copy_rows};
        use portier::central::ingest::Row;
        let mut pg = portier::central::db::connect(&portier::central::config::PostgresConfig::new(
            pg.connect(),
        ))
        .await
        .unwrap();
        let rows: Vec<Row> = pg
            .query(
                "SELECT gateway, journal, seq, at, type, door, credential, reason, event::text
                   FROM events ORDER BY gateway, seq",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| Row {
                gateway: r.get::<_, String>(0).parse().unwrap(),
                journal: portier::journal::JournalId::try_from(r.get::<_, &[u8]>(1)).unwrap(),
                seq: u64::try_from(r.get::<_, i64>(2)).unwrap(),
                at: r.get(3),
                kind: r.get(4),
                door: r.get(5),
                credential: r.get(6),
                reason: r.get(7),
                json: r.get(8),
            })
            .collect();
        assert_eq!(rows.len() as u64, N);
        pg.batch_execute("TRUNCATE events").await.unwrap();
        pg.batch_execute("VACUUM ANALYZE events").await.unwrap();
        let refs: Vec<&Row> = rows.iter().collect();
        let start = Instant::now();
        for chunk in refs.chunks(10_000) {
            let tx = pg.transaction().await.unwrap();
            copy_rows(&tx, CopyTarget::Events, chunk).await.unwrap();
            tx.commit().await.unwrap();
        }
        let took = start.elapsed();
        let stored: i64 = pg
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored, N as i64);
        N as f64 / took.as_secs_f64()
    });
    let central_rate = N as f64 / took.as_secs_f64();
    let ingest = connected.map_or(took, |c| took - (c - start));
    let ingest_rate = N as f64 / ingest.as_secs_f64();
    println!(
        "central ingest from its broker connection to the last ack: {:.2} s = {ingest_rate:.0} events/s (5 ms polling)",
        ingest.as_secs_f64()
    );
    println!(
        "raw COPY limit: the same {N} rows by binary COPY into the same table, 10 000 per transaction = {rate:.0} events/s"
    );
    println!(
        "central ingest / raw COPY limit = {:.2} from the broker connection (goal ≥ 0.70); {:.2} with process start; {:.2} while committing",
        ingest_rate / rate,
        central_rate / rate,
        N as f64 / (commit_ms / 1e3) / rate
    );
}

/// A numeric field of a tracing line.
fn field(line: &str, name: &str) -> Option<f64> {
    let plain = support::central::strip_ansi(line);
    let after = plain.split(&format!("{name}=")).nth(1)?;
    after.split(' ').next()?.parse().ok()
}

#[test]
#[ignore = "bench: scripts/bench-central"]
fn gateway_drain_into_postgres() {
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
    let mut central = CentralProc::spawn(&config, &[("RUST_LOG", "portier=info")]);
    central.wait_connected();
    let mut gw = JournalGateway::new("gw-a");
    gw.append(mixed_events(N));
    let start = Instant::now();
    gw.connect(&broker);
    while !gw.reader.is_empty() {
        assert!(start.elapsed() < LIMIT, "not drained: {}", central.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = start.elapsed();
    wait_for(Duration::from_secs(10), "all stored", || {
        pg.count("SELECT count(*) FROM events") == i64::try_from(N).unwrap()
    });
    println!(
        "gateway drain into portier central + PostgreSQL: {N} events in {:.2} s = {:.0} events/s (one gateway, batch 500, window 20000), TLS connect included",
        took.as_secs_f64(),
        N as f64 / took.as_secs_f64()
    );
}
