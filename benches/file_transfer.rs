//! File transfer on a multi-drop bus in virtual time, with the wire
//! modelled: every byte of a request and of its reply takes 10 bits at the
//! baud rate, and the PD answers `TURNAROUND` after the request ends. The
//! bus core and Portier's PD simulators run as in the daemon; only time is
//! simulated (a pseudo-terminal would carry the bytes at memory speed).
//!
//! Prints, for 9 600 and 115 200 baud and each fragment size:
//! - throughput of a file to PD 1, beside the wire's limit for that
//!   fragment (fragment bytes / wire time of one FILETRANSFER + FTSTAT,
//!   both in Secure Channel, with no turnaround and no other PD);
//! - card → relay at PD 2 (card reported at PD 2's poll, OUT queued at
//!   once, clock stops when PD 2 has the OUT), p50 / p99 / max, with and
//!   without the transfer running.
//!
//! `cargo bench --bench file_transfer`
#![allow(missing_docs, clippy::disallowed_methods)] // a bench reads the clock

use std::time::{Duration, Instant};

use portier::osdp::message::{Command, OutputAction, OutputControl, RawCard};
use portier::osdp::peripheral::{Peripheral, PeripheralConfig, PeripheralEvent};
use portier::osdp::secure::Scbk;
use portier::osdp::transfer::FileOffer;
use portier::osdp::{Bus, BusEvent, KeyPolicy, PdConfig, Timing};

const KEY: Scbk = Scbk([0xA5; 16]);
/// A reader's time to answer (libosdp's PD loop runs every 20 ms; a
/// typical reader answers within a few ms).
const TURNAROUND: Duration = Duration::from_millis(3);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Wire bytes of a Secure Channel FILETRANSFER with `n` data bytes and of
/// its FTSTAT answer: mark, header 5, SCB 2, code, 11 + n padded to a
/// block with at least one pad byte, MAC 4, CRC 2; FTSTAT 7 bytes → 16.
fn exchange_bytes(n: usize) -> usize {
    let request = 1 + 5 + 2 + 1 + (11 + n + 1).div_ceil(16) * 16 + 4 + 2;
    let reply = 1 + 5 + 2 + 1 + 16 + 4 + 2;
    request + reply
}

struct Net {
    bus: Bus,
    pds: Vec<Peripheral>,
    now: Instant,
    byte_time: Duration,
    entropy: u64,
}

impl Net {
    fn new(baud: u32) -> Self {
        let cp = |address| PdConfig {
            address,
            key: KeyPolicy::Secure(KEY),
        };
        let timing = Timing {
            poll_interval: POLL_INTERVAL,
            ..Timing::default()
        };
        let mut seed = 1u64;
        let bus = Bus::new(
            timing,
            vec![cp(1), cp(2)],
            Box::new(move |b: &mut [u8]| {
                for x in b {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    *x = (seed >> 56) as u8;
                }
            }),
        )
        .unwrap();
        let pds = (1..=2)
            .map(|a| Peripheral::new(PeripheralConfig::simulator(a, Some(KEY))))
            .collect();
        let mut net = Self {
            bus,
            pds,
            now: Instant::now(),
            byte_time: Duration::from_nanos(10_000_000_000 / u64::from(baud)),
            entropy: 9,
        };
        while !(net.bus.status(1).unwrap().online && net.bus.status(2).unwrap().online) {
            net.step(&mut Vec::new());
        }
        net
    }

    /// One exchange (or a wait for the next deadline); PD events out.
    fn step(&mut self, pd_events: &mut Vec<(u8, PeripheralEvent)>) -> Vec<BusEvent> {
        let mut events = Vec::new();
        if let Some(tx) = self.bus.poll_transmit(self.now) {
            self.now += self.byte_time * tx.bytes.len() as u32;
            let mut reply = Vec::new();
            let seed = &mut self.entropy;
            let mut entropy = |b: &mut [u8]| {
                for x in b {
                    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(3);
                    *x = (*seed >> 56) as u8;
                }
            };
            for pd in &mut self.pds {
                pd.handle_input(&tx.bytes, &mut entropy);
                while let Some(r) = pd.poll_transmit() {
                    reply.extend(r);
                }
                while let Some(e) = pd.poll_event() {
                    pd_events.push((pd.address(), e));
                }
            }
            if !reply.is_empty() {
                self.now += TURNAROUND + self.byte_time * reply.len() as u32;
                self.bus.handle_input(self.now, &reply);
            }
        } else if let Some(t) = self.bus.poll_timeout() {
            self.now = self.now.max(t);
        }
        self.bus.handle_timeout(self.now);
        while let Some(e) = self.bus.poll_event() {
            events.push(e);
        }
        events
    }
}

fn card() -> RawCard {
    RawCard {
        reader: 0,
        format: 0,
        bits: 26,
        data: vec![0x95, 0x01, 0xf4, 0x80],
    }
}

fn relay() -> Command {
    Command::Output(vec![OutputControl {
        output: 0,
        action: OutputAction::TimedOn,
        timer_100ms: 30,
    }])
}

struct Run {
    throughput: Option<f64>,
    latencies: Vec<Duration>,
}

/// Cards at PD 2 every 250-377 ms of virtual time; with `file`, a transfer to
/// PD 1 runs the whole time (restarted when it ends).
fn run(baud: u32, file: Option<(usize, u16)>, cards: usize) -> Run {
    let mut net = Net::new(baud);
    let data: std::sync::Arc<[u8]> = vec![0x5A; file.map_or(1, |f| f.0)].into();
    let offer = |fragment| FileOffer {
        file_type: 1,
        data: data.clone(),
        fragment: Some(fragment),
    };
    let mut transfer_started = net.now;
    let mut throughput = None;
    if let Some((_, fragment)) = file {
        net.bus.start_transfer(net.now, 1, offer(fragment)).unwrap();
    }
    let mut latencies = Vec::new();
    let mut pd_events = Vec::new();
    let mut next_card = net.now + Duration::from_millis(100);
    let mut shown: Option<Instant> = None;
    let mut jitter = 0x2545_F491_4F6C_DD1Du64;
    while latencies.len() < cards {
        if shown.is_none() && net.now >= next_card {
            net.pds[1].present_card(card());
            shown = Some(net.now);
        }
        for e in net.step(&mut pd_events) {
            match e {
                BusEvent::Card { address: 2, .. } => net.bus.queue_command(2, relay()).unwrap(),
                BusEvent::TransferFinished { .. } => {
                    let secs = (net.now - transfer_started).as_secs_f64();
                    throughput.get_or_insert(data.len() as f64 / secs);
                    if let Some((_, fragment)) = file {
                        transfer_started = net.now;
                        net.bus.start_transfer(net.now, 1, offer(fragment)).unwrap();
                    }
                }
                BusEvent::TransferFailed { reason, .. } => panic!("transfer failed: {reason}"),
                BusEvent::Offline { address, .. } => panic!("PD {address} offline"),
                _ => {}
            }
        }
        for (address, e) in pd_events.drain(..) {
            if address == 2
                && matches!(e, PeripheralEvent::Command(Command::Output(_)))
                && let Some(at) = shown.take()
            {
                latencies.push(net.now - at);
                // 250 ms plus 0-127 ms of jitter: cards land at every
                // phase of the poll cycle and of the fragment exchange.
                jitter = jitter.wrapping_mul(6364136223846793005).wrapping_add(7);
                next_card = net.now + Duration::from_millis(250 + (jitter >> 57));
            }
        }
    }
    // A transfer longer than the cards: run it out for its figure.
    while file.is_some() && throughput.is_none() {
        for e in net.step(&mut pd_events) {
            if let BusEvent::TransferFinished { .. } = e {
                throughput = Some(data.len() as f64 / (net.now - transfer_started).as_secs_f64());
            }
        }
        pd_events.clear();
    }
    latencies.sort();
    Run {
        throughput,
        latencies,
    }
}

fn pct(l: &[Duration], p: f64) -> Duration {
    l[((l.len() as f64 * p) as usize).min(l.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let cards = if quick { 20 } else { 400 };
    println!(
        "| baud | fragment | file | throughput | wire limit for the fragment | share | card → relay p50 / p99 / max at PD 2 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for baud in [9_600u32, 115_200] {
        let size = if quick {
            8 * 1024
        } else if baud == 9_600 {
            64 * 1024
        } else {
            256 * 1024
        };
        let idle = run(baud, None, cards);
        println!(
            "| {baud} | – | none | – | – | – | {} / {} / {} |",
            ms(pct(&idle.latencies, 0.5)),
            ms(pct(&idle.latencies, 0.99)),
            ms(*idle.latencies.last().unwrap())
        );
        for fragment in [128u16, 214, 1024] {
            let busy = run(baud, Some((size, fragment)), cards);
            let throughput = busy.throughput.unwrap();
            let wire = f64::from(baud) / 10.0;
            let limit = f64::from(fragment) * wire / exchange_bytes(usize::from(fragment)) as f64;
            println!(
                "| {baud} | {fragment} B | {} KiB | {:.0} B/s | {:.0} B/s | {:.0} % | {} / {} / {} |",
                size / 1024,
                throughput,
                limit,
                100.0 * throughput / limit,
                ms(pct(&busy.latencies, 0.5)),
                ms(pct(&busy.latencies, 0.99)),
                ms(*busy.latencies.last().unwrap())
            );
        }
    }
}
