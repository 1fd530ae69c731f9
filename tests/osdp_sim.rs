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
use portier::osdp::peripheral::{FileReceive, Peripheral, PeripheralConfig, PeripheralEvent};
use portier::osdp::secure::Scbk;
use portier::osdp::transfer::{FileOffer, TransferFailure};
use portier::osdp::{
    Bus, BusEvent, CommandFailure, KeyPolicy, OfflineReason, PdConfig, RotationFailure,
    SecurityAlarm, Timing,
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
    /// Wire time per byte of request and reply (zero: only `wire`).
    per_byte: Duration,
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
            per_byte: Duration::ZERO,
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
                    let bytes = (tx.bytes.len() + reply.len()) as u32;
                    let at = if self.faults.late_at == Some(n) {
                        self.now + Duration::from_millis(450)
                    } else {
                        self.now + self.wire + self.per_byte * bytes
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

// ---- File transfer (osdp_FILETRANSFER / osdp_FTSTAT) ----

/// One byte on a 115 200 baud line (10 bits).
const BYTE_AT_115200: Duration = Duration::from_nanos(86_806);

fn file(len: usize, seed: u8) -> std::sync::Arc<[u8]> {
    let mut bytes = vec![0u8; len];
    counter_entropy(seed)(&mut bytes);
    bytes.into()
}

fn offer(data: &std::sync::Arc<[u8]>, fragment: Option<u16>) -> FileOffer {
    FileOffer {
        file_type: 1,
        data: data.clone(),
        fragment,
    }
}

fn finished(n: &Net, address: u8) -> bool {
    n.count(|e| matches!(e, BusEvent::TransferFinished { address: a, .. } if *a == address)) == 1
}

#[test]
fn a_file_arrives_whole_while_the_other_pd_keeps_reporting_cards() {
    let mut net = Net::new(
        vec![secure(1), secure(2)],
        vec![pd(1, Some(KEY), false), pd(2, Some(KEY), false)],
    );
    net.per_byte = BYTE_AT_115200;
    assert!(net.run_until(Duration::from_secs(2), |n| n.online(1, true)
        && n.online(2, true)));
    let data = file(64 * 1024, 7);
    net.bus
        .start_transfer(net.now, 1, offer(&data, Some(512)))
        .unwrap();
    // One transfer per bus at a time.
    assert!(
        net.bus
            .start_transfer(net.now, 2, offer(&data, None))
            .is_err()
    );
    // A card at the other reader every 700 ms while the file goes.
    let mut latencies = Vec::new();
    while !finished(&net, 1) {
        assert!(net.elapsed() < Duration::from_secs(60), "transfer stalled");
        let before = net.count(|e| matches!(e, BusEvent::Card { address: 2, .. }));
        net.pds[1].present_card(card());
        let shown = net.now;
        assert!(net.run_until(Duration::from_secs(1), |n| {
            n.count(|e| matches!(e, BusEvent::Card { address: 2, .. })) > before
        }));
        latencies.push(net.now - shown);
        net.run_for(Duration::from_millis(700));
    }
    assert_eq!(
        net.pds[0].received_file().map(|(t, d)| (*t, d.as_slice())),
        Some((1, &data[..]))
    );
    let worst = latencies.iter().max().unwrap();
    // A 512-byte fragment exchange is ~50 ms on the wire, a poll of PD 2
    // ~3 ms: a card waits at most about one of each.
    assert!(latencies.len() >= 5, "{latencies:?}");
    assert!(*worst < Duration::from_millis(120), "{latencies:?}");
    // Progress was reported and PD 2 stayed online throughout.
    assert!(net.count(|e| matches!(e, BusEvent::TransferProgress { address: 1, .. })) > 100);
    assert_eq!(net.count(|e| matches!(e, BusEvent::Offline { .. })), 0);
    assert!(net.bus.status(1).unwrap().transfer.is_none());
}

#[test]
fn a_pd_that_asks_for_a_delay_and_smaller_fragments_is_followed() {
    let slow = Peripheral::new(PeripheralConfig {
        files: FileReceive {
            delay_ms: 50,
            max_fragment: 40,
            reboot: true,
        },
        ..PeripheralConfig::simulator(1, Some(KEY))
    });
    let mut net = Net::new(
        vec![secure(1), secure(2)],
        vec![slow, pd(2, Some(KEY), false)],
    );
    assert!(net.run_until(Duration::from_secs(2), |n| n.online(1, true)
        && n.online(2, true)));
    let data = file(1000, 3);
    net.bus
        .start_transfer(net.now, 1, offer(&data, Some(200)))
        .unwrap();
    assert!(net.run_until(Duration::from_secs(10), |n| finished(n, 1)));
    assert_eq!(
        net.count(|e| matches!(
            e,
            BusEvent::TransferFinished {
                address: 1,
                reboot: true
            }
        )),
        1
    );
    assert_eq!(net.pds[0].received_file().unwrap().1, data.to_vec());
    // 200 bytes first, then 40 at a time: a fragment over the PD's limit
    // would have been refused (-3).
    let fragments: Vec<Duration> = net
        .sent_to
        .iter()
        .filter(|(_, a, code)| *a == 1 && *code == 0x7C)
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(fragments.len(), 1 + (1000 - 200) / 40);
    for pair in fragments.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(50), "{pair:?}");
    }
    // Meanwhile PD 2 was polled.
    let polls_2 = net
        .sent_to
        .iter()
        .filter(|(t, a, _)| *a == 2 && *t > fragments[0] && *t < fragments[fragments.len() - 1])
        .count();
    assert!(polls_2 > 20, "{polls_2}");
}

#[test]
fn a_transfer_cut_by_the_pd_going_offline_fails_and_the_next_starts_clean() {
    let mut net = Net::new(vec![secure(1)], vec![pd(1, Some(KEY), false)]);
    assert!(net.run_until(Duration::from_secs(2), |n| n.online(1, true)));
    let data = file(20_000, 5);
    net.bus
        .start_transfer(net.now, 1, offer(&data, Some(100)))
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.pds[0].receiving_len().is_some()
    }));
    net.run_for(Duration::from_millis(200));
    net.dead[0] = true;
    assert!(net.run_until(Duration::from_secs(10), |n| {
        n.count(|e| {
            matches!(
                e,
                BusEvent::TransferFailed {
                    address: 1,
                    reason: TransferFailure::Offline
                }
            )
        }) == 1
    }));
    assert!(net.pds[0].received_file().is_none());
    net.dead[0] = false;
    let online_before = net.count(|e| matches!(e, BusEvent::Online { .. }));
    assert!(net.run_until(Duration::from_secs(20), |n| {
        n.count(|e| matches!(e, BusEvent::Online { .. })) > online_before
    }));
    // A different file this time: nothing of the old one may survive.
    let data = file(3_000, 6);
    net.bus
        .start_transfer(net.now, 1, offer(&data, Some(100)))
        .unwrap();
    assert!(net.run_until(Duration::from_secs(10), |n| finished(n, 1)));
    assert_eq!(net.pds[0].received_file().unwrap().1, data.to_vec());
    let first_after = net.sent_to.iter().rev().find(|(_, _, c)| *c == 0xA2);
    assert!(first_after.is_some(), "osdp_ABORT went first");
}

#[test]
fn an_abort_stops_the_transfer_on_both_sides() {
    let mut net = Net::new(vec![secure(1)], vec![pd(1, Some(KEY), false)]);
    assert!(net.run_until(Duration::from_secs(2), |n| n.online(1, true)));
    let data = file(10_000, 9);
    net.bus
        .start_transfer(net.now, 1, offer(&data, Some(100)))
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.pds[0].receiving_len().is_some()
    }));
    net.bus.abort_transfer(1).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| {
        n.count(|e| {
            matches!(
                e,
                BusEvent::TransferFailed {
                    reason: TransferFailure::Aborted,
                    ..
                }
            )
        }) == 1
    }));
    assert_eq!(net.pds[0].receiving_len(), None, "the PD dropped it too");
    assert!(net.bus.abort_transfer(1).is_err());
    assert!(net.bus.status(1).unwrap().online);
}

// ---- Key rotation (KEYSET inside Secure Channel) ----

const NEW_KEY: Scbk = Scbk([0x3C; 16]);

fn rotating(address: u8) -> PdConfig {
    PdConfig {
        address,
        key: KeyPolicy::Rotating {
            current: KEY,
            pending: NEW_KEY,
        },
    }
}

#[test]
fn a_rotated_key_is_used_at_once_and_the_old_one_is_refused() {
    let mut net = Net::new(vec![secure(1)], vec![pd(1, Some(KEY), false)]);
    assert!(net.run_until(Duration::from_secs(2), |n| n.online(1, true)));
    net.bus.rotate_key(1, NEW_KEY).unwrap();
    assert!(net.run_until(Duration::from_secs(2), |n| {
        n.count(|e| {
            matches!(
                e,
                BusEvent::Online {
                    address: 1,
                    secure: true,
                    ..
                }
            )
        }) == 2
    }));
    assert_eq!(
        net.count(|e| matches!(e, BusEvent::KeyRotated { address: 1 })),
        1
    );
    assert_eq!(
        net.count(|e| matches!(
            e,
            BusEvent::KeyResolved {
                address: 1,
                pending: true
            }
        )),
        1
    );
    assert_eq!(net.pds[0].scbk(), Some(&NEW_KEY));
    assert_eq!(net.bus.key_policy(1), Some(&KeyPolicy::Secure(NEW_KEY)));
    // The old key no longer opens a session.
    let pd = std::mem::replace(&mut net.pds[0], pd(9, None, false));
    let mut old = Net::new(vec![secure(1)], vec![pd]);
    old.run_for(Duration::from_secs(2));
    assert!(!old.online(1, true));
    assert!(
        old.count(|e| matches!(
            e,
            BusEvent::SecurityAlarm {
                alarm: SecurityAlarm::WrongKey,
                ..
            }
        )) >= 1
    );
}

#[test]
fn a_rotation_is_refused_before_anything_is_sent_without_secure_channel() {
    let mut net = Net::new(vec![plain(1)], vec![pd(1, None, false)]);
    assert!(net.run_until(Duration::from_secs(1), |n| n.online(1, false)));
    let sent = net.sent_to.len();
    assert!(net.bus.rotate_key(1, NEW_KEY).is_err());
    net.run_for(Duration::from_millis(200));
    assert!(net.sent_to[sent..].iter().all(|(_, _, code)| *code != 0x75));
}

#[test]
fn a_keyset_answer_lost_with_the_pd_still_reaches_it_on_either_key() {
    for pd_took_it in [true, false] {
        let mut net = Net::new(vec![secure(1)], vec![pd(1, Some(KEY), false)]);
        assert!(net.run_until(Duration::from_secs(2), |n| n.online(1, true)));
        if !pd_took_it {
            // The PD dies before KEYSET reaches it.
            net.dead[0] = true;
        }
        net.bus.rotate_key(1, NEW_KEY).unwrap();
        if pd_took_it {
            // The PD takes the key, and every answer of it is lost.
            net.faults.drop_every = Some(1);
            assert!(net.run_until(Duration::from_secs(1), |n| {
                n.pd_events
                    .iter()
                    .any(|(_, e)| matches!(e, PeripheralEvent::KeyInstalled(_)))
            }));
        }
        assert!(net.run_until(Duration::from_secs(10), |n| {
            n.count(|e| {
                matches!(
                    e,
                    BusEvent::KeyRotationFailed {
                        reason: RotationFailure::Offline,
                        ..
                    }
                )
            }) == 1
        }));
        net.dead[0] = false;
        net.faults.drop_every = None;
        assert!(
            net.run_until(Duration::from_secs(20), |n| {
                n.count(|e| {
                    matches!(
                        e,
                        BusEvent::Online {
                            address: 1,
                            secure: true,
                            ..
                        }
                    )
                }) == 2
            }),
            "reached again (PD took the key: {pd_took_it})"
        );
        assert_eq!(
            net.count(
                |e| matches!(e, BusEvent::KeyResolved { pending, .. } if *pending == pd_took_it)
            ),
            1
        );
        let expected = if pd_took_it { NEW_KEY } else { KEY };
        assert_eq!(net.pds[0].scbk(), Some(&expected));
        assert_eq!(net.bus.key_policy(1), Some(&KeyPolicy::Secure(expected)));
    }
}

/// A PD that falls silent while a rotation waits for its turn never got
/// KEYSET: the failure says so (`NotSent`: the old key stays, no
/// unsettled rotation), and the PD comes back on its old key.
#[test]
fn a_rotation_whose_keyset_never_left_is_reported_not_sent() {
    let mut net = Net::new(vec![secure(1)], vec![pd(1, Some(KEY), false)]);
    assert!(net.run_until(Duration::from_secs(2), |n| n.online(1, true)));
    net.dead[0] = true;
    // A POLL goes out unanswered; its retries hold the PD's turn.
    net.run_for(Duration::from_millis(60));
    net.bus.rotate_key(1, NEW_KEY).unwrap();
    assert!(net.run_until(Duration::from_secs(10), |n| {
        n.count(|e| matches!(e, BusEvent::KeyRotationFailed { .. })) == 1
    }));
    assert_eq!(
        net.count(|e| matches!(
            e,
            BusEvent::KeyRotationFailed {
                reason: RotationFailure::NotSent,
                ..
            }
        )),
        1
    );
    assert!(net.sent_to.iter().all(|(_, _, code)| *code != 0x75));
    assert_eq!(net.bus.key_policy(1), Some(&KeyPolicy::Secure(KEY)));
    net.dead[0] = false;
    assert!(net.run_until(Duration::from_secs(20), |n| n.online(1, true)));
    assert_eq!(net.count(|e| matches!(e, BusEvent::KeyResolved { .. })), 0);
}

#[test]
fn a_rotating_policy_reaches_a_pd_on_either_key() {
    for (key, pending) in [(KEY, false), (NEW_KEY, true)] {
        let mut net = Net::new(vec![rotating(1)], vec![pd(1, Some(key.clone()), false)]);
        assert!(net.run_until(Duration::from_secs(2), |n| n.online(1, true)));
        assert_eq!(
            net.count(|e| matches!(e, BusEvent::KeyResolved { pending: p, .. } if *p == pending)),
            1
        );
        assert_eq!(
            net.count(|e| matches!(e, BusEvent::SecurityAlarm { .. })),
            0
        );
    }
    // Neither key: the usual alarm.
    let mut net = Net::new(vec![rotating(1)], vec![pd(1, Some(OTHER_KEY), false)]);
    net.run_for(Duration::from_secs(2));
    assert!(!net.online(1, true));
    assert!(
        net.count(|e| matches!(
            e,
            BusEvent::SecurityAlarm {
                alarm: SecurityAlarm::WrongKey,
                ..
            }
        )) >= 1
    );
}
