//! CP CPU time per POLL/ACK exchange, plaintext and Secure Channel.
//!
//! Only the control panel's work is timed (`poll_transmit` + `handle_input`
//! of the reply); the simulated PD's work happens outside the timed region.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock by design
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use portier::osdp::peripheral::{Peripheral, PeripheralConfig};
use portier::osdp::secure::Scbk;
use portier::osdp::{Bus, BusEvent, KeyPolicy, PdConfig, Timing};

fn setup(scbk: Option<Scbk>) -> (Bus, Peripheral, Instant) {
    let key = match &scbk {
        Some(k) => KeyPolicy::Secure(k.clone()),
        None => KeyPolicy::Plaintext,
    };
    let mut bus = Bus::new(
        Timing::default(),
        vec![PdConfig { address: 1, key }],
        Box::new(|b: &mut [u8]| b.fill(7)),
    )
    .unwrap();
    let mut pd = Peripheral::new(PeripheralConfig::simulator(1, scbk));
    let now = Instant::now();
    // Bring the PD online.
    for _ in 0..10 {
        exchange(&mut bus, &mut pd, now);
    }
    let mut online = false;
    while let Some(e) = bus.poll_event() {
        online |= matches!(e, BusEvent::Online { .. });
    }
    assert!(online, "PD online before measuring");
    (bus, pd, now)
}

/// One exchange; returns the CP's share of the time.
fn exchange(bus: &mut Bus, pd: &mut Peripheral, now: Instant) -> Duration {
    let t0 = Instant::now();
    let tx = bus.poll_transmit(now).expect("bus idle, PD due");
    let cp_send = t0.elapsed();
    pd.handle_input(&tx.bytes, &mut |b: &mut [u8]| b.fill(3));
    let reply = pd.poll_transmit().expect("PD replies");
    let t1 = Instant::now();
    bus.handle_input(now, &reply);
    let cp_receive = t1.elapsed();
    cp_send + cp_receive
}

fn poll_ack(c: &mut Criterion) {
    for (name, key) in [("plain", None), ("secure", Some(Scbk([0x42; 16])))] {
        c.bench_function(&format!("cp_poll_ack_exchange/{name}"), |b| {
            let (mut bus, mut pd, now) = setup(key.clone());
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += exchange(&mut bus, &mut pd, now);
                }
                total
            });
        });
    }
}

criterion_group!(benches, poll_ack);
criterion_main!(benches);
