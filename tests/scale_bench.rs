//! The journal at scale (`scripts/bench-scale` runs this in release with
//! `--ignored --nocapture`; BENCHMARKS.md records the output). For each
//! backlog size in `PORTIER_SCALE_SIZES` (default `0,1000000`; add
//! `10000000` by hand, never in CI): fill the journal with batched appends,
//! then measure one-event flushed appends (p50/p99), the time to open the
//! journal, bytes on disk per waiting event, peak RSS, and the drain rate
//! through a real Mosquitto over mTLS against the one-event-per-message
//! QoS 1 baseline (rumqttc, 100 in flight) measured in the same run.
//! Prints every figure beside its goal and its ratio to the empty journal;
//! asserts only that the work was done, never a time.
#![allow(clippy::disallowed_methods)] // a bench reads the clock

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use portier::event::{Event, EventKind};
use portier::journal::Journal;
use portier::uplink::wire::EventBatch;
use rumqttc::{AsyncClient, Event as MqttEvent, Incoming, QoS};
use support::broker::{Broker, LeanCentral, spawn_uplink};
use support::percentile;

const GW: &str = "gw-a";
const APPENDS: usize = 2000;
const FILL_BATCH: u64 = 10_000;

fn kind(n: u64) -> EventKind {
    EventKind::AccessGranted {
        door: "side-entrance".into(),
        reader: "side-entrance-in".into(),
        credential: format!("h10301:42:{}", n % 65_536),
    }
}

fn at() -> jiff::Timestamp {
    "2026-11-23T22:00:00Z".parse().unwrap()
}

/// Bytes the directory takes on disk (allocated blocks, not apparent size).
fn disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            disk_bytes(&entry.path())
        } else {
            meta.blocks() * 512
        };
    }
    total
}

struct Figures {
    size: u64,
    append_p50: Duration,
    append_p99: Duration,
    open: Duration,
    disk_per_event: Option<f64>,
    disk_per_single: f64,
    rss: u64,
    drain_rate: Option<f64>,
}

#[test]
#[ignore = "bench: scripts/bench-scale"]
fn journal_at_scale() {
    let sizes: Vec<u64> = std::env::var("PORTIER_SCALE_SIZES")
        .unwrap_or_else(|_| "0,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let broker = Broker::start(&[GW]);
    let baseline = one_per_message_rate(&broker, 100_000);
    println!(
        "\nbaseline: one event per message, QoS 1, rumqttc 100 in flight, same Mosquitto: {baseline:.0} events/s"
    );
    let mut all = Vec::new();
    for &size in &sizes {
        let f = measure(&broker, size);
        let base = all.first().unwrap_or(&f);
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        println!("--- {size} events waiting ---");
        println!(
            "append one event, flushed: p50 {:?}, p99 {:?} (goal p99 ≤ 2× empty; ratio to empty {:.2}×)",
            f.append_p50,
            f.append_p99,
            ratio(f.append_p99, base.append_p99)
        );
        println!(
            "journal open: {:?} (goal ≤ 1 s; ratio to empty {:.1}×)",
            f.open,
            ratio(f.open, base.open)
        );
        if let Some(d) = f.disk_per_event {
            println!(
                "disk: {d:.0} bytes per waiting event (goal ≤ 150: 10 M in ≤ 1.5 GB); {:.2} GB at 10 M",
                d * 1e7 / 1e9
            );
        }
        println!(
            "disk: {:.0} bytes per event appended one per commit, as the daemon does ({:.2} GB at 10 M)",
            f.disk_per_single,
            f.disk_per_single * 1e7 / 1e9
        );
        println!(
            "peak RSS of this process so far: {:.1} MB (goal ≤ 100 MB)",
            f.rss as f64 / 1e6
        );
        if let Some(rate) = f.drain_rate {
            println!(
                "drain: {rate:.0} events/s = {:.2}× the one-per-message baseline (goal ≥ 2× and ≥ 100 000/s)",
                rate / baseline
            );
        }
        all.push(f);
    }
    assert_eq!(all.len(), sizes.len());
    let _ = all[0].size;
    anatomy(200_000);
    if let Some(n) = std::env::var("PORTIER_SCALE_LEGACY")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        legacy_move(n);
    }
}

/// The one-off move of an earlier version's sled journal at the first
/// start of this one, with `n` events waiting (`PORTIER_SCALE_LEGACY=n`).
fn legacy_move(n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let db = portier::storage::open_db(&dir.path().join("events"), 16 << 20).unwrap();
    let events = db.open_tree("journal.events").unwrap();
    let mut seq = 1u64;
    while seq <= n {
        let mut batch = sled::Batch::default();
        for s in seq..(seq + FILL_BATCH).min(n + 1) {
            let e = Event {
                seq: s,
                at: at(),
                kind: kind(s),
            };
            batch.insert(&s.to_be_bytes(), serde_cbor::to_vec(&e).unwrap());
        }
        events.apply_batch(batch).unwrap();
        seq += FILL_BATCH;
    }
    db.flush().unwrap();
    let started = Instant::now();
    let moved =
        portier::journal::legacy::migrate(&db, &dir.path().join("journal"), &mut |_| {}).unwrap();
    let took = started.elapsed();
    assert_eq!(moved.map(|m| m.events), Some(n));
    println!(
        "legacy move of a sled journal at first start: {n} events in {:.1} s ({:.0} events/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}

/// Where a drain's time goes on the gateway, per event, without the
/// network: journal reads, the decode check, building the message,
/// deleting on ack; and central's decode of a batch.
fn anatomy(n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path();
    let Journal {
        mut writer,
        reader,
        mut acker,
        ..
    } = Journal::open(journal_path).unwrap();
    let mut k = 0;
    while k < n {
        writer
            .append(at(), (k..k + FILL_BATCH).map(kind).collect())
            .unwrap();
        k += FILL_BATCH;
    }
    let per = |d: Duration| d.as_secs_f64() * 1e9 / n as f64;
    let (mut read, mut check, mut build, mut delete, mut central) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let mut after = 0;
    while after < n {
        let t = Instant::now();
        let records = reader.records(after, 1000).unwrap();
        read += t.elapsed();
        let t = Instant::now();
        for r in &records {
            r.decode().unwrap();
        }
        check += t.elapsed();
        let t = Instant::now();
        let payload = portier::uplink::wire::event_batch_cbor(
            GW,
            Default::default(),
            records.iter().map(|r| r.bytes.as_ref()),
        );
        build += t.elapsed();
        let t = Instant::now();
        let batch: EventBatch = serde_cbor::from_slice(&payload).unwrap();
        central += t.elapsed();
        after = batch.events.last().unwrap().seq;
        let t = Instant::now();
        acker.delete_through(after).unwrap();
        delete += t.elapsed();
    }
    println!(
        "drain anatomy, ns per event (batches of 1000, {n} events): journal read {:.0}, decode check {:.0}, build message {:.0}, delete on ack {:.0}; central's batch decode {:.0}",
        per(read),
        per(check),
        per(build),
        per(delete),
        per(central)
    );
}

fn measure(broker: &Broker, size: u64) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events");
    {
        let journal_path = &path;
        let mut writer = Journal::open(journal_path)
            .unwrap()
            .writer
            .with_budget(u64::MAX);
        let started = Instant::now();
        let mut n = 0;
        while n < size {
            let k = FILL_BATCH.min(size - n);
            writer.append(at(), (n..n + k).map(kind).collect()).unwrap();
            n += k;
        }
        if size > 0 {
            println!(
                "filled {size} events in {:.1} s ({:.0} events/s, batches of {FILL_BATCH})",
                started.elapsed().as_secs_f64(),
                size as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let disk_per_event = (size > 0).then(|| disk_bytes(&path) as f64 / size as f64);
    // Open as the daemon does at start.
    let started = Instant::now();
    let journal_path = &path;
    let journal = Journal::open(journal_path).unwrap();
    let open = started.elapsed();
    assert_eq!(journal.reader.len(), size);
    let Journal {
        writer,
        reader,
        acker,
        ..
    } = journal;
    // Above the default budget (10 M), so that a full journal does not
    // drop the measured events instead of appending them.
    let mut writer = writer.with_budget(u64::MAX);
    let mut latencies = Vec::with_capacity(APPENDS);
    let disk_before = disk_bytes(&path);
    for i in 0..APPENDS as u64 {
        let t = Instant::now();
        writer.append(at(), vec![kind(i)]).unwrap();
        latencies.push(t.elapsed());
    }
    // As the daemon writes: each event its own commit (its own frame).
    let disk_per_single = disk_bytes(&path).saturating_sub(disk_before) as f64 / APPENDS as f64;
    latencies.sort();
    let waiting = reader.len();
    let drain = std::env::var_os("PORTIER_SCALE_NO_DRAIN").is_none();
    let drain_rate = (size > 0 && drain).then(|| {
        let central = LeanCentral::start(broker, GW);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let started = Instant::now();
        let _uplink = spawn_uplink(&runtime, (reader.clone(), acker), broker, GW, |cfg| {
            cfg.batch = 1000;
            cfg.window = 50_000;
            cfg.resend_after_seconds = 30;
        });
        let limit = Duration::from_secs(60 + waiting / 5_000);
        while !reader.is_empty() {
            assert!(started.elapsed() < limit, "not drained: {}", reader.len());
            std::thread::sleep(Duration::from_millis(2));
        }
        let took = started.elapsed();
        assert!(central.contiguous.load(Ordering::Acquire) >= waiting);
        waiting as f64 / took.as_secs_f64()
    });
    Figures {
        size,
        append_p50: percentile(&latencies, 0.5),
        append_p99: percentile(&latencies, 0.99),
        open,
        disk_per_event,
        disk_per_single,
        rss: support::proc_memory("self", "VmHWM:"),
        drain_rate,
    }
}

/// Events per second when each event is its own QoS 1 message (rumqttc,
/// 100 in flight), until the broker has acknowledged the last one.
fn one_per_message_rate(broker: &Broker, n: u64) -> f64 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut options = broker.options(GW, GW);
    options.set_inflight(100);
    let payloads: Vec<Vec<u8>> = (1..=n)
        .map(|seq| {
            serde_cbor::to_vec(&Event {
                seq,
                at: at(),
                kind: kind(seq),
            })
            .unwrap()
        })
        .collect();
    runtime.block_on(async move {
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let topic = format!("portier/v1/{GW}/events");
        let mut acked = 0u64;
        let mut started = None;
        let publisher = {
            let client = client.clone();
            async move {
                for p in payloads {
                    client
                        .publish(topic.as_str(), QoS::AtLeastOnce, false, p)
                        .await
                        .unwrap();
                }
            }
        };
        let driver = async {
            loop {
                match eventloop.poll().await.unwrap() {
                    MqttEvent::Incoming(Incoming::ConnAck(_)) => started = Some(Instant::now()),
                    MqttEvent::Incoming(Incoming::PubAck(_)) => {
                        acked += 1;
                        if acked == n {
                            return started.unwrap().elapsed();
                        }
                    }
                    _ => {}
                }
            }
        };
        let (took, ()) = tokio::join!(driver, publisher);
        n as f64 / took.as_secs_f64()
    })
}
