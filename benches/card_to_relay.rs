//! Card → relay command through the real daemon parts: 8 PDs in Secure
//! Channel on one bus (Portier's PD simulators over an in-memory stream),
//! the bus task, the building core, the rules store (sled, the example
//! rules), the journal (flushed before the command goes out) and back to
//! the PD as an OUT command. The card is presented at the last PD polled.
//!
//! The latency includes waiting for that PD's next poll, so the goal is
//! "≤ one poll cycle + 2 ms". After criterion's run, the bench prints the
//! latency distribution next to the measured poll cycle.
//!
//! `PORTIER_BENCH_BACKLOG=N` first fills the journal with N events waiting
//! for central (the goal is the same with 10 M waiting as with none).
#![allow(missing_docs, clippy::disallowed_methods)] // a bench reads the clock

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use portier::door::{Direction, StandardConfig};
use portier::driver::daemon::{self, Daemon, DaemonInputs};
use portier::driver::decider::StoreDecider;
use portier::driver::serial::{BusStart, SpawnedBus, spawn_bus};
use portier::driver::simulator::{SimOp, run_simulated_pds};
use portier::osdp::message::{Command, OutputAction, RawCard};
use portier::osdp::peripheral::{Peripheral, PeripheralConfig, PeripheralEvent};
use portier::osdp::secure::Scbk;
use portier::osdp::{Bus, KeyPolicy, PdConfig, Timing};
use portier::rules::{TrustedKeys, envelope, source, wiegand};
use portier::site::outputs::StrikeWiring;
use portier::site::{Building, DoorKind, DoorWiring, OutputRef, PdRef, ReaderRef};
use portier::store::Store;
use tokio::sync::{mpsc, watch};

const PDS: u8 = 8;
const POLL_INTERVAL: Duration = Duration::from_millis(20);

struct Harness {
    _dir: tempfile::TempDir,
    ops: mpsc::Sender<SimOp>,
    pd_events: mpsc::Receiver<(u8, PeripheralEvent)>,
    _shutdown: watch::Sender<bool>,
    polls: Arc<Mutex<u64>>,
}

fn pd(address: u8) -> PdRef {
    PdRef {
        bus: "bus0".into(),
        address,
    }
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let seed = [7u8; 32];
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let mut trusted = TrustedKeys::new();
    trusted.add_bytes(key.verifying_key().as_bytes()).unwrap();
    let rules = std::fs::read_to_string("config/rules.example.toml").unwrap();
    let now = daemon::wall_now();
    let until = now
        .checked_add(jiff::SignedDuration::from_hours(24))
        .unwrap();
    let snapshot = source::parse_rules("rules", &rules, 1, now, until).unwrap();
    let bytes = envelope::sign_snapshot(&key, &snapshot).unwrap();
    let store = Store::open(
        &dir.path().join("rules"),
        trusted,
        "gw-university-1",
        "university-main",
    )
    .unwrap();
    store.apply_snapshot(&bytes, now).unwrap();
    let store = Arc::new(store);

    let keys: Vec<Scbk> = (1..=PDS).map(|a| Scbk([a; 16])).collect();
    let bus = Bus::new(
        Timing {
            poll_interval: POLL_INTERVAL,
            ..Timing::default()
        },
        (1..=PDS)
            .map(|a| PdConfig {
                address: a,
                key: KeyPolicy::Secure(keys[usize::from(a) - 1].clone()),
            })
            .collect(),
        Box::new(portier::driver::clock::os_entropy),
    )
    .unwrap();
    let peripherals = (1..=PDS)
        .map(|a| {
            Peripheral::new(PeripheralConfig::simulator(
                a,
                Some(keys[usize::from(a) - 1].clone()),
            ))
        })
        .collect();
    let (cp_side, pd_side) = tokio::io::duplex(4096);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (ops, ops_rx) = mpsc::channel(16);
    let (pd_events_tx, raw_pd_events) = mpsc::channel(1024);
    tokio::spawn(run_simulated_pds(
        pd_side,
        peripherals,
        ops_rx,
        pd_events_tx,
        shutdown_rx.clone(),
    ));
    let (bus_events_tx, mut bus_events) = mpsc::channel(256);
    let start = BusStart {
        name: "bus0".into(),
        events: bus_events_tx,
        shutdown: shutdown_rx.clone(),
        suppress_echo: false,
        capture: None,
    };
    let SpawnedBus {
        link,
        status: mut status_rx,
        ..
    } = spawn_bus(cp_side, bus, start);
    let (tagged_tx, tagged) = mpsc::channel(256);
    let (online_tx, mut online) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some((bus, e)) = bus_events.recv().await {
            if matches!(e, portier::osdp::BusEvent::Online { .. }) {
                let _ = online_tx.try_send(());
            }
            if tagged_tx.send((bus, e)).await.is_err() {
                return;
            }
        }
    });
    // The door at the last PD.
    let building = Building::new(vec![DoorWiring {
        id: "side-entrance".into(),
        kind: DoorKind::Standard(StandardConfig::default()),
        readers: vec![ReaderRef {
            id: "side-in".into(),
            pd: pd(PDS),
            reader: 0,
            direction: Direction::In,
        }],
        lock: Some(OutputRef {
            pd: pd(PDS),
            wiring: StrikeWiring {
                output: 0,
                energize_to_unlock: true,
            },
        }),
        release_out: None,
        contact: None,
        exit_button: None,
        rotation_in: None,
        rotation_out: None,
    }]);
    let journal_dir = dir.path().join("journal");
    fill_backlog(&journal_dir, backlog());
    let decider = StoreDecider::new(store, "office-hours".into());
    let (_control_tx, control) = mpsc::channel(4);
    let (view, _) = watch::channel(daemon::DaemonView::default());
    std::mem::forget(_control_tx);
    tokio::spawn(daemon::run(
        Daemon::open(&journal_dir, building, Box::new(decider), vec![link])
            .unwrap()
            .0,
        DaemonInputs {
            events: tagged,
            control,
            shutdown: shutdown_rx,
        },
        view,
    ));
    for _ in 0..PDS {
        tokio::time::timeout(Duration::from_secs(20), online.recv())
            .await
            .expect("all PDs online")
            .unwrap();
    }
    // Count the replies of PD 1 (one per poll cycle) for the cycle time.
    let polls = Arc::new(Mutex::new(0u64));
    let counter = polls.clone();
    tokio::spawn(async move {
        let mut last = None;
        while status_rx.changed().await.is_ok() {
            let reply = status_rx
                .borrow()
                .iter()
                .find(|p| p.address == 1)
                .and_then(|p| p.last_reply);
            if reply.is_some() && reply != last {
                last = reply;
                *counter.lock().unwrap() += 1;
            }
        }
    });
    Harness {
        _dir: dir,
        ops,
        pd_events: raw_pd_events,
        _shutdown: shutdown,
        polls,
    }
}

fn staff_card() -> RawCard {
    let (data, bits) = wiegand::encode(&"h10301:42:1001".parse().unwrap()).unwrap();
    RawCard {
        reader: 0,
        format: 0,
        bits,
        data,
    }
}

async fn one_card(h: &mut Harness) -> Duration {
    while h.pd_events.try_recv().is_ok() {}
    let start = Instant::now();
    h.ops
        .send(SimOp::Card {
            address: PDS,
            card: staff_card(),
        })
        .await
        .unwrap();
    loop {
        let (address, event) = h.pd_events.recv().await.unwrap();
        if let PeripheralEvent::Command(Command::Output(outs)) = event
            && address == PDS
            && outs.iter().any(|o| o.action == OutputAction::TimedOn)
        {
            return start.elapsed();
        }
    }
}

/// Events waiting for central before the bench starts.
fn backlog() -> u64 {
    std::env::var("PORTIER_BENCH_BACKLOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Append `n` routine events in batches, as a month offline would.
fn fill_backlog(dir: &std::path::Path, n: u64) {
    if n == 0 {
        return;
    }
    let mut writer = portier::journal::Journal::open(dir)
        .unwrap()
        .writer
        .with_budget(u64::MAX);
    let at: jiff::Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
    let mut left = n;
    while left > 0 {
        let batch = left.min(10_000);
        let kinds = (0..batch)
            .map(|i| portier::event::EventKind::DoorClosed {
                door: format!("door-{}", i % 50).into(),
            })
            .collect();
        writer.append(at, kinds).unwrap();
        left -= batch;
    }
}

fn card_to_relay(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut h = rt.block_on(start());
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut group = c.benchmark_group("card_to_relay");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(20));
    let seen = latencies.clone();
    group.bench_function("8_pds_secure_channel", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let d = rt.block_on(one_card(&mut h));
                seen.lock().unwrap().push(d);
                total += d;
            }
            total
        })
    });
    group.finish();

    // The poll cycle: time between two replies of the same PD.
    let before = *h.polls.lock().unwrap();
    let t = Instant::now();
    rt.block_on(async { tokio::time::sleep(Duration::from_secs(2)).await });
    let polls = *h.polls.lock().unwrap() - before;
    let cycle = t.elapsed() / u32::try_from(polls.max(1)).unwrap_or(u32::MAX);
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    println!(
        "card_to_relay (backlog {} events): n={} p50={:?} p99={:?} max={:?}; poll cycle of {PDS} PDs = {cycle:?} \
         (poll_interval {POLL_INTERVAL:?}); goal p99 ≤ cycle + 2 ms = {:?}",
        backlog(),
        l.len(),
        pct(0.5),
        pct(0.99),
        l[l.len() - 1],
        cycle + Duration::from_millis(2)
    );
}

criterion_group!(benches, card_to_relay);
criterion_main!(benches);
