//! Deterministic virtual-time tests of the OSDP bus against simulated PDs:
//! bring-up, Secure Channel policy, install mode, fairness, loss,
//! corruption, late and duplicate replies. No clock, no I/O: time jumps.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use portier::osdp::frame::{FrameReader, crc16};
use portier::osdp::message::{
    BuzzerControl, Command, LedColor, LedControl, LedPermanent, LedTemporary, NakCode,
    OutputAction, OutputControl, RawCard,
};
use portier::osdp::peripheral::{Peripheral, PeripheralConfig, PeripheralEvent};
use portier::osdp::secure::Scbk;
use portier::osdp::{
    Bus, BusEvent, CommandFailure, KeyPolicy, OfflineReason, PdConfig, SecurityAlarm, Timing,
};

const KEY: Scbk = Scbk([0xA5; 16]);
const OTHER_KEY: Scbk = Scbk([0x5A; 16]);

/// Faults applied to PD → CP traffic, deterministically by reply count.
#[derive(Default, Clone)]
struct Faults {
    drop_every: Option<u64>,
    corrupt_every: Option<u64>,
    duplicate_every: Option<u64>,
    /// Flip a byte inside the MAC (and fix the CRC) on this reply number.
    forge_mac_at: Option<u64>,
    /// Deliver this reply number late (after the reply timeout).
    late_at: Option<u64>,
}

struct Net {
    bus: Bus,
    pds: Vec<Peripheral>,
    dead: Vec<bool>,
    now: Instant,
    start: Instant,
    to_cp: VecDeque<(Instant, Vec<u8>)>,
    faults: Faults,
    replies: u64,
    events: Vec<(Duration, BusEvent)>,
    pd_events: Vec<(u8, PeripheralEvent)>,
    sent_to: Vec<(Duration, u8, u8)>,
    wire: Duration,
}

fn counter_entropy(seed: u8) -> impl FnMut(&mut [u8]) + Send {
    let mut n = u64::from(seed);
    move |buf: &mut [u8]| {
        for b in buf {
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (n >> 56) as u8;
        }
    }
}

fn pd(address: u8, scbk: Option<Scbk>, install_mode: bool) -> Peripheral {
    Peripheral::new(PeripheralConfig {
        install_mode,
        ..PeripheralConfig::simulator(address, scbk)
    })
}

impl Net {
    fn new(cp: Vec<PdConfig>, pds: Vec<Peripheral>) -> Self {
        Self::with_timing(Timing::default(), cp, pds)
    }

    fn with_timing(timing: Timing, cp: Vec<PdConfig>, pds: Vec<Peripheral>) -> Self {
        // Virtual time starts at an arbitrary instant; only differences matter.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let dead = vec![false; pds.len()];
        Self {
            bus: Bus::new(timing, cp, Box::new(counter_entropy(1))).unwrap(),
            pds,
            dead,
            now: start,
            start,
            to_cp: VecDeque::new(),
            faults: Faults::default(),
            replies: 0,
            events: Vec::new(),
            pd_events: Vec::new(),
            sent_to: Vec::new(),
            wire: Duration::from_millis(3),
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn step(&mut self) {
        let mut pd_entropy = counter_entropy(9);
        while let Some(tx) = self.bus.poll_transmit(self.now) {
            let code = {
                let mut r = FrameReader::new();
                r.push(&tx.bytes);
                r.next_frame().unwrap().unwrap().frame.code
            };
            self.sent_to.push((self.elapsed(), tx.address, code));
            for (i, pd) in self.pds.iter_mut().enumerate() {
                if self.dead[i] {
                    continue;
                }
                pd.handle_input(&tx.bytes, &mut pd_entropy);
                while let Some(e) = pd.poll_event() {
                    self.pd_events.push((tx.address, e));
                }
                while let Some(mut reply) = pd.poll_transmit() {
                    self.replies += 1;
                    let n = self.replies;
                    let hit = |every: Option<u64>| every.is_some_and(|e| n.is_multiple_of(e));
                    if hit(self.faults.drop_every) {
                        continue;
                    }
                    if hit(self.faults.corrupt_every) {
                        let mid = reply.len() / 2;
                        reply[mid] ^= 0x10;
                    }
                    if self.faults.forge_mac_at == Some(n) {
                        forge_mac(&mut reply);
                    }
                    let at = if self.faults.late_at == Some(n) {
                        self.now + Duration::from_millis(450)
                    } else {
                        self.now + self.wire
                    };
                    if hit(self.faults.duplicate_every) {
                        self.to_cp.push_back((at, reply.clone()));
                    }
                    self.to_cp.push_back((at, reply));
                }
            }
        }
        while let Some(e) = self.bus.poll_event() {
            self.events.push((self.elapsed(), e));
        }
        let next_delivery = self.to_cp.iter().map(|(t, _)| *t).min();
        let next = match (next_delivery, self.bus.poll_timeout()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(self.now + Duration::from_millis(10)),
        };
        self.now = self.now.max(next);
        let mut keep = VecDeque::new();
        while let Some((t, bytes)) = self.to_cp.pop_front() {
            if t <= self.now {
                self.bus.handle_input(self.now, &bytes);
            } else {
                keep.push_back((t, bytes));
            }
        }
        self.to_cp = keep;
        self.bus.handle_timeout(self.now);
        while let Some(e) = self.bus.poll_event() {
            self.events.push((self.elapsed(), e));
        }
    }

    /// Run until `done` holds or `limit` of virtual time passes.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    fn online(&self, address: u8, secure: bool) -> bool {
        self.events.iter().any(|(_, e)| matches!(e, BusEvent::Online { address: a, secure: s, .. } if *a == address && *s == secure))
    }

    fn count(&self, pred: impl Fn(&BusEvent) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| pred(e)).count()
    }
}

/// Flip a MAC byte of a secure reply and fix the CRC, as an attacker on
/// the wire would.
fn forge_mac(packet: &mut [u8]) {
    let start = usize::from(packet[0] == 0xFF);
    let len = packet.len();
    if len - start > 12 && packet[start + 4] & 0x08 != 0 {
        packet[len - 3] ^= 0x01; // last MAC byte
        let crc = crc16(&packet[start..len - 2]).to_le_bytes();
        packet[len - 2] = crc[0];
        packet[len - 1] = crc[1];
    }
}

fn secure(address: u8) -> PdConfig {
    PdConfig {
        address,
        key: KeyPolicy::Secure(KEY),
    }
}

fn plain(address: u8) -> PdConfig {
    PdConfig {
        address,
        key: KeyPolicy::Plaintext,
    }
}

fn card() -> RawCard {
    // H10301 facility 42, card 1001.
    RawCard {
        reader: 0,
        format: 0,
        bits: 26,
        data: vec![0x95, 0x01, 0xf4, 0x80],
    }
}

fn green_led() -> Command {
    Command::Led(vec![LedControl {
        reader: 0,
        led: 0,
        temporary: LedTemporary {
            control: 2,
            on_100ms: 5,
            off_100ms: 0,
            on_color: LedColor::Green,
            off_color: LedColor::Off,
            timer_100ms: 10,
        },
        permanent: LedPermanent {
            control: 0,
            on_100ms: 0,
            off_100ms: 0,
            on_color: LedColor::Off,
            off_color: LedColor::Off,
        },
    }])
}

#[test]
fn plaintext_pd_comes_online_and_reports_a_card() {
    let mut net = Net::new(vec![plain(1)], vec![pd(1, None, false)]);
    assert!(net.run_until(Duration::from_secs(1), |n| n.online(1, false)));
    net.pds[0].present_card(card());
    assert!(net.run_until(Duration::from_secs(1), |n| {
        n.count(|e| matches!(e, BusEvent::Card { .. })) == 1
    }));
    net.bus.queue_command(1, green_led()).unwrap();
    assert!(net.run_until(Duration::from_secs(1), |n| {
        n.count(|e| matches!(e, BusEvent::CommandDone { address: 1, .. })) == 1
    }));
    assert!(
        net.pd_events
            .iter()
            .any(|(_, e)| matches!(e, PeripheralEvent::Command(Command::Led(_))))
    );
}

#[test]
fn secure_channel_comes_up_and_carries_cards_and_commands() {
    let mut net = Net::new(vec![secure(2)], vec![pd(2, Some(KEY), false)]);
    assert!(net.run_until(Duration::from_secs(1), |n| n.online(2, true)));
    assert!(!net.online(2, false), "never online in plaintext");
    assert!(net.pds[0].is_secure());
    net.pds[0].present_card(card());
    net.bus
        .queue_command(
            2,
            Command::Output(vec![OutputControl {
                output: 0,
                action: OutputAction::TimedOn,
                timer_100ms: 30,
            }]),
        )
        .unwrap();
    assert!(net.run_until(Duration::from_secs(1), |n| {
        n.count(|e| matches!(e, BusEvent::Card { card, .. } if *card == self::card())) == 1
            && n.count(|e| matches!(e, BusEvent::CommandDone { .. })) == 1
    }));
    assert_eq!(net.pds[0].outputs()[0], 1);
}

#[test]
fn wrong_key_stays_offline_with_an_alarm_and_probes_with_backoff() {
    let mut net = Net::new(vec![secure(3)], vec![pd(3, Some(OTHER_KEY), false)]);
    net.run_for(Duration::from_secs(20));
    assert!(!net.online(3, true) && !net.online(3, false));
    let alarms = net.count(|e| {
        matches!(
            e,
            BusEvent::SecurityAlarm {
                alarm: SecurityAlarm::WrongKey,
                ..
            }
        )
    });
    assert!(alarms >= 2, "alarm raised and repeated on probes: {alarms}");
    // Back-off: 0.5, 1, 2, 4, 8, 8 s … — at most ~8 handshakes in 20 s.
    let challenges = net
        .sent_to
        .iter()
        .filter(|(_, _, code)| *code == 0x76)
        .count();
    assert!(challenges <= 8, "{challenges} challenges in 20 s");
    assert!(net.pd_events.is_empty(), "no command reached the PD");
}

#[test]
fn keyed_pd_that_refuses_secure_channel_never_goes_online() {
    let mut net = Net::new(vec![secure(4)], vec![pd(4, None, false)]);
    net.run_for(Duration::from_secs(5));
    assert!(!net.online(4, false) && !net.online(4, true));
    assert!(
        net.count(|e| matches!(
            e,
            BusEvent::SecurityAlarm {
                alarm: SecurityAlarm::HandshakeRefused,
                ..
            }
        )) >= 1
    );
    // And a card presented meanwhile is never accepted.
    net.pds[0].present_card(card());
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.count(|e| matches!(e, BusEvent::Card { .. })), 0);
}

#[test]
fn install_mode_sets_a_new_key_then_runs_secure_on_it() {
    let mut net = Net::new(
        vec![PdConfig {
            address: 5,
            key: KeyPolicy::Install(OTHER_KEY),
        }],
        vec![pd(5, None, true)],
    );
    assert!(net.run_until(Duration::from_secs(2), |n| n.online(5, true)));
    assert_eq!(
        net.count(|e| matches!(e, BusEvent::KeyInstalled { address: 5 })),
        1
    );
    assert_eq!(net.pds[0].scbk(), Some(&OTHER_KEY));
    // Without install mode, SCBK-D is refused.
    let mut net = Net::new(
        vec![PdConfig {
            address: 5,
            key: KeyPolicy::Install(OTHER_KEY),
        }],
        vec![pd(5, Some(KEY), false)],
    );
    net.run_for(Duration::from_secs(2));
    assert!(!net.online(5, true));
    assert!(net.count(|e| matches!(e, BusEvent::SecurityAlarm { .. })) >= 1);
}

#[test]
fn a_dead_pd_goes_offline_after_8_s_and_does_not_starve_the_live_one() {
    let mut net = Net::new(
        vec![secure(1), secure(2)],
        vec![pd(1, Some(KEY), false), pd(2, Some(KEY), false)],
    );
    assert!(net.run_until(Duration::from_secs(1), |n| n.online(1, true)
        && n.online(2, true)));
    net.dead[1] = true;
    let died = net.elapsed();
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.count(|e| matches!(
            e,
            BusEvent::Offline {
                address: 2,
                reason: OfflineReason::NoReply
            }
        )) == 1)
    );
    let offline_at = net
        .events
        .iter()
        .find(|(_, e)| matches!(e, BusEvent::Offline { address: 2, .. }))
        .unwrap()
        .0;
    let took = offline_at - died;
    assert!(
        took >= Duration::from_secs(8) && took <= Duration::from_millis(8_500),
        "offline after {took:?}"
    );
    // The live PD was polled throughout: at least once per 2 × (timeout + wire).
    let live: Vec<Duration> = net
        .sent_to
        .iter()
        .filter(|(t, a, _)| *a == 1 && *t >= died)
        .map(|(t, ..)| *t)
        .collect();
    let worst_gap = live.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        worst_gap <= Duration::from_millis(420),
        "live PD starved for {worst_gap:?}"
    );
    // Once offline, the dead PD costs one probe per back-off period.
    let since = net.elapsed();
    net.run_for(Duration::from_secs(30));
    let probes = net
        .sent_to
        .iter()
        .filter(|(t, a, _)| *a == 2 && *t > since)
        .count();
    assert!(probes <= 8, "{probes} probes in 30 s");
    assert_eq!(
        net.count(|e| matches!(e, BusEvent::Offline { address: 2, .. })),
        1,
        "one offline event, not one per probe"
    );
    // And it comes back when it answers again.
    net.dead[1] = false;
    assert!(net.run_until(Duration::from_secs(10), |n| {
        n.count(|e| matches!(e, BusEvent::Online { address: 2, .. })) == 2
    }));
}

#[test]
fn lossy_corrupt_and_duplicated_replies_lose_no_card_and_keep_the_link() {
    let mut net = Net::new(vec![secure(7)], vec![pd(7, Some(KEY), false)]);
    net.faults = Faults {
        drop_every: Some(5),
        corrupt_every: Some(7),
        duplicate_every: Some(3),
        ..Faults::default()
    };
    assert!(net.run_until(Duration::from_secs(3), |n| n.online(7, true)));
    for _ in 0..20 {
        net.pds[0].present_card(card());
        net.run_for(Duration::from_millis(300));
    }
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        net.count(|e| matches!(e, BusEvent::Card { .. })),
        20,
        "every card exactly once"
    );
    assert_eq!(net.count(|e| matches!(e, BusEvent::Offline { .. })), 0);
    assert!(
        net.bus.stats().framing_errors > 0
            && net.bus.stats().ignored_frames > 0
            && net.bus.stats().timeouts > 0
    );
}

#[test]
fn a_late_reply_is_ignored_and_the_retry_is_answered() {
    let mut net = Net::new(vec![plain(8)], vec![pd(8, None, false)]);
    assert!(net.run_until(Duration::from_secs(1), |n| n.online(8, false)));
    net.faults.late_at = Some(net.replies + 1);
    net.pds[0].present_card(card());
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.count(|e| matches!(e, BusEvent::Card { .. })), 1);
    assert!(net.bus.stats().timeouts >= 1);
}

#[test]
fn a_forged_mac_takes_the_pd_offline_with_an_alarm() {
    let mut net = Net::new(vec![secure(9)], vec![pd(9, Some(KEY), false)]);
    assert!(net.run_until(Duration::from_secs(1), |n| n.online(9, true)));
    net.faults.forge_mac_at = Some(net.replies + 3);
    assert!(
        net.run_until(Duration::from_secs(1), |n| n.count(|e| matches!(
            e,
            BusEvent::SecurityAlarm {
                alarm: SecurityAlarm::BadMac,
                ..
            }
        )) == 1)
    );
    assert!(
        net.count(|e| matches!(
            e,
            BusEvent::Offline {
                address: 9,
                reason: OfflineReason::Security(SecurityAlarm::BadMac)
            }
        )) == 1
    );
    // It recovers through a fresh handshake.
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.count(|e| matches!(e, BusEvent::Online { .. })) == 2
    }));
}

#[test]
fn a_nak_fails_the_command_not_the_link() {
    let mut net = Net::new(vec![secure(10)], vec![pd(10, Some(KEY), false)]);
    assert!(net.run_until(Duration::from_secs(1), |n| n.online(10, true)));
    // Our PD refuses a KEYSET with a bad key length: NAK 9.
    net.bus
        .queue_command(
            10,
            Command::KeySet(portier::osdp::message::KeySet {
                key_type: 1,
                key: vec![1, 2, 3],
            }),
        )
        .unwrap();
    net.bus
        .queue_command(
            10,
            Command::Buzzer(BuzzerControl {
                reader: 0,
                tone: 2,
                on_100ms: 2,
                off_100ms: 0,
                count: 1,
            }),
        )
        .unwrap();
    assert!(net.run_until(Duration::from_secs(1), |n| {
        n.count(|e| matches!(e, BusEvent::CommandDone { code: 0x6A, .. })) == 1
    }));
    assert_eq!(
        net.count(|e| matches!(
            e,
            BusEvent::CommandFailed {
                reason: CommandFailure::Nak(NakCode::UnableToProcess),
                ..
            }
        )),
        1
    );
    assert_eq!(net.count(|e| matches!(e, BusEvent::Offline { .. })), 0);
}
