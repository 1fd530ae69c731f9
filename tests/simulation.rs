//! Crash-anywhere simulation of the gateway core, deterministic and in
//! virtual time (after FoundationDB's simulation tests and sled's crash
//! tests). Each seed drives one building through a random day: cards at
//! in- and out-readers, door contacts, exit buttons, rotations, remote
//! unlocks, modes, free rotation, lockdowns and releases, a fire alarm on
//! and off, schedule edges,
//! system-clock glitches in both directions, and crashes — at any point of
//! carrying out the core's outputs, after which the core is dropped and
//! rebuilt from exactly what was committed. The PDs (their outputs and
//! timers) outlive the gateway, as real ones do.
//!
//! After every step the invariants are checked:
//! - no door is released at its PD without an authority in force (the core
//!   says released: grant, REX, unlocked mode, override, remote release);
//! - a door the core shows released is released at its PD (a PD timer never
//!   runs out under a long release);
//! - the precedence table (`site::modes::PRECEDENCE`): while the fire
//!   panel's input is active its escape doors are released at their PDs,
//!   above any lockdown, whatever crashed; lockdown holds until an explicit
//!   release, across crashes;
//! - every timed mode and override reverts: nothing in force is past its end;
//! - nothing is sent or answered before the records of its input are
//!   committed, and the presence list is the committed one;
//! - a passage goes the way of the grant that opened the door;
//! - areas: door A leads into the building (hard anti-passback, forgiven
//!   daily at 20:00): the locations are those of the passages journaled,
//!   after any crash, and no card known inside (since the last
//!   forgiveness) is granted at A's in-reader;
//! - interlock: doors C and D form an airlock (cards, contacts and exit
//!   buttons only): never are both released at their PDs at once.
//! - first person in: door B's scheduled `unlocked` (with
//!   `first_person_in`) never holds the door without a committed grant at
//!   B inside that window (`first_person_in` journaled), whatever crashed.
//!
//! `SIM_SEEDS=N` runs N seeds (default 200 for a quick debug run;
//! `scripts/test` runs 5000 in a release build); `SIM_SEED=S` replays one.
//! A failing seed prints itself.
#![allow(clippy::disallowed_methods)] // one base instant for virtual time

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use portier::action::{Outcome, RecordedAction};
use portier::door::{Direction, RevolvingConfig, StandardConfig};
use portier::event::EventKind;
use portier::ids::DoorId;
use portier::osdp::BusEvent;
use portier::osdp::message::{Command, OutputAction, RawCard};
use portier::rules::areas::{AntiPassback, Area};
use portier::rules::{CredentialKey, DenyReason, wiegand};
use portier::site::areas::DoorAreas;
use portier::site::interlock::Interlock;
use portier::site::modes::DoorClass;
use portier::site::outputs::StrikeWiring;
use portier::site::remote::RemoteAction;
use portier::site::{
    Boot, Building, DoorKind, DoorWiring, FireAlarmWiring, Gateway, Input, InputRef, Now, Output,
    OutputRef, PdRef, ReaderRef, Rules, StandingChange, StandingState, Verdict,
};

/// splitmix64: small, seedable, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn pd(address: u8) -> PdRef {
    PdRef {
        bus: "bus0".into(),
        address,
    }
}

fn input(address: u8, input: u8) -> Option<InputRef> {
    Some(InputRef {
        pd: pd(address),
        input,
        active_high: true,
    })
}

fn output(address: u8, output: u8) -> Option<OutputRef> {
    Some(OutputRef {
        pd: pd(address),
        wiring: StrikeWiring {
            output,
            energize_to_unlock: true,
        },
    })
}

fn reader(id: &str, address: u8, direction: Direction) -> ReaderRef {
    ReaderRef {
        id: id.into(),
        pd: pd(address),
        reader: 0,
        direction,
    }
}

/// Door A: in-reader PD 1, out-reader PD 4, strike PD 1/0, contact PD 1/0,
/// exit button PD 1/1. Door B: in-reader PD 2, strike PD 2/0, contact
/// PD 2/0. Revolving R: in PD 3, out PD 5, releases PD 3/0 and 3/1,
/// rotation sensors PD 3/0 and 3/1.
fn building() -> Building {
    Building::new(vec![
        DoorWiring {
            id: "a".into(),
            kind: DoorKind::Standard(StandardConfig::default()),
            readers: vec![
                reader("a-in", 1, Direction::In),
                reader("a-out", 4, Direction::Out),
            ],
            lock: output(1, 0),
            release_out: None,
            contact: input(1, 0),
            exit_button: input(1, 1),
            rotation_in: None,
            rotation_out: None,
        },
        DoorWiring {
            id: "b".into(),
            kind: DoorKind::Standard(StandardConfig::default()),
            readers: vec![reader("b-in", 2, Direction::In)],
            lock: output(2, 0),
            release_out: None,
            contact: input(2, 0),
            exit_button: None,
            rotation_in: None,
            rotation_out: None,
        },
        DoorWiring {
            id: "r".into(),
            kind: DoorKind::Revolving(RevolvingConfig::default()),
            readers: vec![
                reader("r-in", 3, Direction::In),
                reader("r-out", 5, Direction::Out),
            ],
            lock: output(3, 0),
            release_out: output(3, 1),
            contact: None,
            exit_button: None,
            rotation_in: input(3, 0),
            rotation_out: input(3, 1),
        },
        airlock_door("c", AIRLOCK[0].1),
        airlock_door("d", AIRLOCK[1].1),
    ])
    .with_fire_alarms(vec![FireAlarmWiring {
        id: "fire-panel".into(),
        input: input(FIRE_PD, 0).unwrap(),
        releases: ESCAPE.iter().map(|&d| d.into()).collect(),
    }])
    .with_areas([(
        DoorId::from("a"),
        DoorAreas {
            inside: "building".into(),
            outside: None,
        },
    )])
    .with_interlocks(vec![Interlock {
        id: "airlock".into(),
        doors: vec!["c".into(), "d".into()],
        wait: Duration::from_secs(10),
    }])
}

/// An airlock door: in-reader, strike, contact (input 0) and exit button
/// (input 1) on PD `address`.
fn airlock_door(id: &str, address: u8) -> DoorWiring {
    DoorWiring {
        id: id.into(),
        kind: DoorKind::Standard(StandardConfig::default()),
        readers: vec![reader(&format!("{id}-in"), address, Direction::In)],
        lock: output(address, 0),
        release_out: None,
        contact: input(address, 0),
        exit_button: input(address, 1),
        rotation_in: None,
        rotation_out: None,
    }
}

/// The airlock's doors C and D: their PDs.
const AIRLOCK: [(&str, u8); 2] = [("c", 7), ("d", 8)];

/// The fire panel's contact is input 0 of this PD; it releases these.
const FIRE_PD: u8 = 6;
const ESCAPE: [&str; 2] = ["b", "r"];

/// Cards 0..=4 are granted everywhere, card 4 only until [`EXPIRES`];
/// card 5 is blocked. Door A is scheduled unlocked for the first 5 minutes
/// of every 20; door B from minute 10 to 15 of every 20, with *first
/// person in*.
struct SimRules;

/// When card 4 expires (four hours into the run).
fn expires() -> Timestamp {
    "2026-11-25T21:58:00Z".parse().unwrap()
}

/// The credential key of sim card `n` (8 raw bits).
fn cred(n: u8) -> String {
    format!("raw:{n:02x}/8")
}

impl Rules for SimRules {
    fn decide(
        &self,
        _door: &DoorId,
        key: &CredentialKey,
        _pin: Option<&str>,
        at: Timestamp,
    ) -> Verdict {
        let n = match key {
            CredentialKey::Raw { data } => wiegand::parse_raw(data).map_or(u8::MAX, |(b, _)| b[0]),
            _ => u8::MAX,
        };
        match n {
            4 if at >= expires() => Verdict::Deny {
                credential: Some(key.clone()),
                reason: DenyReason::Expired,
            },
            0..=4 => Verdict::Grant {
                credential: key.clone(),
                extended: false,
                lockdown_exempt: false,
                name: None,
            },
            _ => Verdict::Deny {
                credential: Some(key.clone()),
                reason: DenyReason::Blocked,
            },
        }
    }

    fn door_mode(&self, door: &DoorId, at: Timestamp) -> Option<String> {
        let minute = at.as_second().div_euclid(60).rem_euclid(20);
        let open = match door.as_str() {
            "a" => minute < 5,
            "b" => (10..15).contains(&minute),
            _ => false,
        };
        open.then(|| "unlocked".to_owned())
    }

    fn first_person_in_day(&self, door: &DoorId, at: Timestamp) -> Option<jiff::civil::Date> {
        (*door == "b" && self.door_mode(door, at).is_some())
            .then(|| at.to_zoned(jiff::tz::TimeZone::UTC).date())
    }

    fn office_hours(&self, _at: Timestamp) -> Option<bool> {
        Some(false)
    }

    fn area(&self, name: &str) -> Option<Area> {
        (name == "building").then_some(Area {
            parent: None,
            antipassback: AntiPassback::Hard,
            timed_minutes: None,
        })
    }

    /// Daily at 20:00 UTC.
    fn last_forgiveness(&self, at: Timestamp) -> Option<Timestamp> {
        let day = at.as_second().div_euclid(86_400) * 86_400;
        let today = Timestamp::from_second(day + 20 * 3600).ok()?;
        Some(if today <= at {
            today
        } else {
            today - SignedDuration::from_hours(24)
        })
    }
}

/// One PD output as the hardware holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pd {
    Locked,
    Until(Instant),
    Forever,
}

struct Sim {
    rng: Rng,
    base: Instant,
    t: Duration,
    /// System clock = real time + this.
    skew: SignedDuration,
    real0: Timestamp,
    gateway: Option<Gateway>,
    /// What was committed: the standing state and the journal.
    disk: StandingState,
    journal: Vec<EventKind>,
    /// The hardware: outputs and input levels per PD.
    outputs: HashMap<(u8, u8), Pd>,
    inputs: HashMap<u8, Vec<u8>>,
    /// Lockdown as the committed records say.
    lockdown: BTreeSet<String>,
    log: Vec<String>,
    /// Crashes happen (off for the final run-out, so that a restart's
    /// fresh deadlines do not outlast it).
    crashing: bool,
    /// Checks that found an escape door in lockdown and a fire alarm.
    fire_over_lockdown: std::cell::Cell<usize>,
    /// Where each card is, as the committed presence records say
    /// (credential → area, `None`: the building of a door without areas).
    locations: HashMap<String, Option<String>>,
    /// Anti-passback denials and airlock waits seen.
    antipassback: usize,
    interlock_denials: usize,
    /// The real times at which a first person in at door B was
    /// committed.
    first_in_b: Vec<Timestamp>,
    /// Checks that found door B in its first-person-in mode.
    first_in_seen: std::cell::Cell<usize>,
}

/// How far from the truth a confirmed time may be in a run (a beacon's
/// allowance after a long run without one).
const CONFIRMED_SLACK: SignedDuration = SignedDuration::from_mins(10);

const DOORS: [&str; 3] = ["a", "b", "r"];

impl Sim {
    fn new(seed: u64) -> Self {
        let base = Instant::now();
        let real0: Timestamp = "2026-11-25T17:58:00Z".parse().unwrap();
        let mut sim = Self {
            rng: Rng(seed),
            base,
            t: Duration::ZERO,
            skew: SignedDuration::ZERO,
            real0,
            gateway: None,
            disk: StandingState::default(),
            journal: Vec::new(),
            outputs: HashMap::new(),
            inputs: HashMap::new(),
            lockdown: BTreeSet::new(),
            log: Vec::new(),
            crashing: true,
            fire_over_lockdown: std::cell::Cell::new(0),
            locations: HashMap::new(),
            antipassback: 0,
            interlock_denials: 0,
            first_in_b: Vec::new(),
            first_in_seen: std::cell::Cell::new(0),
        };
        sim.boot();
        sim
    }

    fn real(&self) -> Timestamp {
        self.real0 + SignedDuration::try_from(self.t).unwrap()
    }

    fn now(&self) -> Now {
        let real = self.real();
        Now {
            mono: self.base + self.t,
            system: real.checked_add(self.skew).unwrap_or(real),
            // Crashes are restarts of the process on the same boot.
            boot: Some(Boot {
                id: 0x5eed,
                since: Duration::from_secs(3600) + self.t,
            }),
        }
    }

    fn boot(&mut self) {
        let g = Gateway::new(
            building(),
            Box::new(SimRules),
            self.disk.clone(),
            self.now(),
        );
        self.gateway = Some(g);
        self.carry_out(false);
        // The bus comes up and the fire panel's PD answers the input
        // status the core asks it for (no crash in between: the bring-up
        // is one step).
        if let Some(levels) = self.inputs.get(&FIRE_PD).cloned() {
            let now = self.now();
            self.g().handle(
                now,
                Input::Bus {
                    bus: "bus0".into(),
                    event: BusEvent::Inputs {
                        address: FIRE_PD,
                        inputs: levels,
                    },
                },
            );
            self.carry_out(false);
        }
    }

    /// The fire panel's alarm as the hardware reads it.
    fn fire(&self) -> bool {
        self.inputs.get(&FIRE_PD).is_some_and(|v| v[0] != 0)
    }

    fn g(&mut self) -> &mut Gateway {
        self.gateway.as_mut().unwrap()
    }

    /// Carry out the outputs; with `may_crash`, maybe stop at a random
    /// point and restart from what was committed.
    fn carry_out(&mut self, may_crash: bool) {
        let outputs: Vec<Output> = std::iter::from_fn(|| self.g().poll_output()).collect();
        let crash_at = (may_crash && self.crashing && self.rng.chance(3))
            .then(|| self.rng.below(outputs.len() as u64 + 1) as usize);
        let mut committed = false;
        let mut before_commit = true;
        for (i, out) in outputs.into_iter().enumerate() {
            if crash_at == Some(i) {
                self.log.push(format!("CRASH at output {i}"));
                self.gateway = None;
                self.boot();
                return;
            }
            match out {
                Output::Commit(c) => {
                    assert!(!committed, "two commits for one input");
                    // No expired card is granted once the gateway has a
                    // proven time (a beacon's anchor committed): whatever
                    // its clock does.
                    if self.disk.time_anchor.is_some() {
                        let real = self.real();
                        for r in &c.records {
                            if let EventKind::AccessGranted { credential, .. } = r {
                                assert!(
                                    *credential != cred(4) || real < expires() + CONFIRMED_SLACK,
                                    "expired card c4 granted at real time {real}"
                                );
                            }
                        }
                    }
                    // Hard anti-passback: no grant at A's in-reader to a
                    // card committed inside since the last forgiveness
                    // (which this very commit may move).
                    let forgiven_at = match &c.state {
                        Some(StandingChange::Whole(s)) => s.forgiven_at,
                        _ => self.disk.forgiven_at,
                    };
                    for r in &c.records {
                        if let EventKind::AccessGranted {
                            reader, credential, ..
                        } = r
                            && *reader == "a-in"
                            && let Some(line) = self.disk.presence.get(&credential.as_str().into())
                        {
                            assert!(
                                line.area.is_none() || forgiven_at.is_some_and(|f| line.since <= f),
                                "{credential} granted into the building while inside: {line:?}"
                            );
                        }
                    }
                    committed = true;
                    before_commit = false;
                    // As the daemon's journal keeps it: the whole state,
                    // or the presence lines on top of it.
                    match c.state {
                        Some(StandingChange::Whole(state)) => self.disk = *state,
                        Some(StandingChange::Presence(lines)) => self.disk.presence.apply(lines),
                        None => {}
                    }
                    let mut granted_at_b = false;
                    for r in &c.records {
                        self.follow(r);
                        match r {
                            EventKind::AccessGranted { door, .. } if *door == "b" => {
                                granted_at_b = true;
                            }
                            EventKind::FirstPersonIn { door, .. } if *door == "b" => {
                                assert!(granted_at_b, "a first person in without a grant");
                                self.first_in_b.push(self.real());
                            }
                            _ => {}
                        }
                    }
                    self.journal.extend(c.records);
                }
                Output::Command { pd, command } => {
                    let _ = before_commit;
                    self.apply(pd.address, &command);
                }
                Output::Reply { .. } | Output::Decided { .. } => {}
            }
        }
        if crash_at.is_some() {
            self.log.push("CRASH after all outputs".into());
            self.gateway = None;
            self.boot();
        }
    }

    /// The model follows the committed records.
    fn follow(&mut self, record: &EventKind) {
        match record {
            EventKind::Presence {
                credential,
                direction: Direction::In,
                area,
                ..
            } => {
                self.locations
                    .insert(credential.clone(), area.as_ref().map(|a| a.to_string()));
            }
            EventKind::Presence {
                credential,
                direction: Direction::Out,
                ..
            } => {
                self.locations.remove(credential);
            }
            EventKind::AccessDenied {
                reason: DenyReason::Antipassback,
                ..
            } => self.antipassback += 1,
            EventKind::AccessDenied {
                reason: DenyReason::Interlock,
                ..
            }
            | EventKind::ExitRequestDenied { .. } => self.interlock_denials += 1,
            _ => {}
        }
        if let EventKind::RemoteAction(r) = record
            && r.outcome == Outcome::Accepted
        {
            let RecordedAction::Action(action) = &r.action else {
                panic!("a record of this run is not a structure: {r:?}");
            };
            match action.clone() {
                RemoteAction::Lockdown { doors } if doors.is_empty() => {
                    self.lockdown.extend(DOORS.iter().map(|d| d.to_string()));
                }
                RemoteAction::Lockdown { doors } => {
                    self.lockdown.extend(doors.iter().map(|d| d.to_string()));
                }
                RemoteAction::ReleaseLockdown { doors } if doors.is_empty() => {
                    self.lockdown.clear()
                }
                RemoteAction::ReleaseLockdown { doors } => {
                    for d in doors {
                        self.lockdown.remove(d.as_str());
                    }
                }
                _ => {}
            }
        }
    }

    fn apply(&mut self, address: u8, command: &Command) {
        let Command::Output(records) = command else {
            return;
        };
        let mono = self.base + self.t;
        for r in records {
            let state = match r.action {
                OutputAction::TimedOn => {
                    Pd::Until(mono + Duration::from_millis(u64::from(r.timer_100ms) * 100))
                }
                OutputAction::PermanentOnAbortTimed => Pd::Forever,
                OutputAction::PermanentOffAbortTimed => Pd::Locked,
                other => panic!("unexpected output action {other:?}"),
            };
            self.outputs.insert((address, r.output), state);
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        self.log.push(format!("t={:?} {input:?}", self.t));
        self.g().handle(now, input);
        self.carry_out(true);
    }

    /// Advance virtual time, delivering every deadline on the way.
    fn advance(&mut self, by: Duration) {
        let end = self.t + by;
        loop {
            let due = self
                .gateway
                .as_ref()
                .unwrap()
                .poll_timeout()
                .map(|at| at.saturating_duration_since(self.base));
            match due {
                Some(at) if at <= end => {
                    self.t = self.t.max(at);
                    self.handle(Input::Timeout);
                    self.check();
                }
                _ => break,
            }
        }
        self.t = end;
    }

    fn set_input(&mut self, address: u8, bit: u8, on: bool) {
        let levels = self.inputs.entry(address).or_insert_with(|| vec![0; 4]);
        levels[usize::from(bit)] = u8::from(on);
        let inputs = levels.clone();
        self.handle(Input::Bus {
            bus: "bus0".into(),
            event: BusEvent::Inputs { address, inputs },
        });
    }

    fn card(&mut self, address: u8, n: u8) {
        self.handle(Input::Bus {
            bus: "bus0".into(),
            event: BusEvent::Card {
                address,
                card: RawCard {
                    reader: 0,
                    format: 0,
                    bits: 8,
                    data: vec![n],
                },
            },
        });
    }

    fn pd_released(&self, address: u8, output: u8) -> bool {
        // The PD's timer is rounded up to 100 ms: allow it that much.
        let slack = self.base + self.t + Duration::from_millis(100);
        match self.outputs.get(&(address, output)) {
            Some(Pd::Forever) => true,
            Some(Pd::Until(t)) => *t > slack,
            _ => false,
        }
    }

    fn pd_released_now(&self, address: u8, output: u8) -> bool {
        let now = self.base + self.t;
        match self.outputs.get(&(address, output)) {
            Some(Pd::Forever) => true,
            Some(Pd::Until(t)) => *t > now,
            _ => false,
        }
    }

    fn check(&self) {
        let g = self.gateway.as_ref().unwrap();
        let doors = g.doors();
        let outs: [(&str, &[(u8, u8)]); 3] =
            [("a", &[(1, 0)]), ("b", &[(2, 0)]), ("r", &[(3, 0), (3, 1)])];
        for (door, wires) in outs {
            let state = doors.iter().find(|d| d.id == door).unwrap();
            let pd_released = wires.iter().any(|&(a, o)| self.pd_released(a, o));
            assert!(
                !pd_released || state.released,
                "door {door} released at its PD without an authority in force: {state:?}"
            );
            let pd_now = wires.iter().any(|&(a, o)| self.pd_released_now(a, o));
            assert!(
                !state.released || pd_now,
                "door {door} shown released but its PD has relocked: {state:?} {:?}",
                wires
                    .iter()
                    .map(|w| self.outputs.get(w))
                    .collect::<Vec<_>>()
            );
            // A scheduled release starts only at a proven time: door A in
            // its scheduled mode without a remote mode of its own means the
            // real time lies in the schedule's window (give or take what a
            // signed time that witnessed the clock allows: 60 s + 200 ppm).
            if door == "a"
                && state.mode == "unlocked"
                && !g.standing().remote_modes.contains_key("a")
            {
                let real = self.real();
                let into = real.as_second().rem_euclid(1200);
                assert!(
                    !(300 + 120..=1200 - 120).contains(&into),
                    "door a scheduled unlocked at real time {real}, outside its window"
                );
            }
            // First person in: door B in its scheduled mode (no remote
            // mode of its own) means the real time lies in B's window and
            // a grant at B was committed inside this window (give or take
            // the 60 s + 200 ppm a witnessing signed time allows).
            if door == "b"
                && state.mode == "unlocked"
                && !g.standing().remote_modes.contains_key("b")
            {
                self.first_in_seen.set(self.first_in_seen.get() + 1);
                let real = self.real();
                let into = real.as_second().rem_euclid(1200);
                assert!(
                    (600 - 120..900 + 120).contains(&into),
                    "door b scheduled unlocked at real time {real}, outside its window"
                );
                let opened = real - SignedDuration::from_secs(into - 600 + 120);
                assert!(
                    self.first_in_b.iter().any(|t| *t >= opened && *t <= real),
                    "door b scheduled unlocked at {real} without a grant in the window \
                     (first persons in at {:?})",
                    self.first_in_b
                );
            }
            // The precedence table: a fire alarm releases the escape doors
            // above every other authority, whatever crashed.
            // The panel's level takes at once; the core keeps an alarm for
            // FIRE_CLEAR_HOLD after the level clears (committed with it),
            // so what holds the door is the committed state or the level.
            let escape =
                (self.fire() || !self.disk.fire_alarms.is_empty()) && ESCAPE.contains(&door);
            if self.fire() && ESCAPE.contains(&door) {
                let emergency = if state.kind == DoorClass::Revolving {
                    "emergency_free"
                } else {
                    "emergency_unlocked"
                };
                assert_eq!(state.mode, emergency, "escape door {door} in a fire alarm");
                assert!(
                    pd_now,
                    "escape door {door} locked at its PD in a fire alarm"
                );
            }
            let locked_down = self.lockdown.contains(door);
            if locked_down && escape {
                self.fire_over_lockdown
                    .set(self.fire_over_lockdown.get() + 1);
            }
            if locked_down && !escape && state.kind == DoorClass::Standard {
                assert!(
                    !self.granted_since_lockdown(door),
                    "a card was granted at {door} in lockdown"
                );
            }
            assert_eq!(
                g.is_locked_down(door),
                locked_down && !escape,
                "lockdown of {door} differs from what was committed"
            );
            if locked_down && !escape {
                // Released in lockdown only by what lockdown allows — the
                // exit button (egress), an explicit remote passage — and
                // then the core says so (checked above); a card never.
                let mode = if state.kind == DoorClass::Revolving {
                    "locked"
                } else {
                    "lockdown"
                };
                assert_eq!(state.mode, mode, "door {door} in lockdown");
            }
        }
        // Nothing in force past its end (remote modes: checked at the end
        // of the run, when every one must have reverted).
        let standing = g.standing();
        let mono = self.base + self.t;
        for d in &doors {
            if let Some(end) = d.reverts_at {
                assert!(end >= mono, "override of {} past its end: {d:?}", d.id);
            }
        }
        // The committed presence list is the one in force, and its
        // locations are those of the passages journaled.
        assert_eq!(&self.disk.presence, g.presence(), "presence not committed");
        let listed: HashMap<String, Option<String>> = g
            .presence()
            .inside()
            .map(|(c, o)| (c.0.clone(), o.area.as_ref().map(|a| a.to_string())))
            .collect();
        assert_eq!(
            listed, self.locations,
            "locations differ from the passages journaled"
        );
        // The airlock: never both doors released at their PDs, and none
        // released there without the core saying so.
        let released: Vec<bool> = AIRLOCK
            .iter()
            .map(|&(door, address)| {
                let state = doors.iter().find(|d| d.id == door).unwrap();
                let at_pd = self.pd_released(address, 0);
                assert!(
                    !at_pd || state.released,
                    "airlock door {door} released at its PD without an authority: {state:?}"
                );
                self.pd_released_now(address, 0)
            })
            .collect();
        assert!(
            !(released[0] && released[1]),
            "both airlock doors released at their PDs"
        );
        assert_eq!(
            self.disk.lockdown, standing.lockdown,
            "lockdown not committed"
        );
    }

    /// A person passes door A: a grant at one of its readers, maybe a
    /// denied card at the other, the door opens and closes. The passage
    /// must go the grant's way.
    fn pass_door_a(&mut self) {
        let (grant_pd, other_pd, way) = if self.rng.chance(50) {
            (1, 4, Direction::In)
        } else {
            (4, 1, Direction::Out)
        };
        // Card 4 expires during the run: a passage needs a grant.
        let n = self.rng.below(4) as u8;
        let journal_mark = self.journal.len();
        let crashed_before = self.crashes();
        self.card(grant_pd, n);
        // Anti-passback may refuse it (the card is inside): then a grant
        // still running at the other reader gives the way, as it should.
        let grant_reader = if way == Direction::In {
            "a-in"
        } else {
            "a-out"
        };
        let granted = self.journal[journal_mark..].iter().any(|r| {
            matches!(r, EventKind::AccessGranted { reader, credential, .. }
                if *reader == grant_reader && *credential == cred(n))
        });
        if self.rng.chance(50) {
            self.card(other_pd, 5);
        }
        self.advance(Duration::from_millis(300));
        self.set_input(1, 0, true);
        self.advance(Duration::from_millis(500));
        self.set_input(1, 0, false);
        if self.crashes() != crashed_before || !granted {
            return;
        }
        let presence_records: Vec<&EventKind> = self.journal[journal_mark..]
            .iter()
            .filter(|r| matches!(r, EventKind::Presence { .. }))
            .collect();
        for r in presence_records {
            if let EventKind::Presence {
                credential,
                direction,
                ..
            } = r
            {
                assert_eq!(credential, &cred(n), "someone else's passage");
                assert_eq!(*direction, way, "a passage must go the grant's way");
            }
        }
    }

    /// Someone at the airlock: a card at one door, a door opening or
    /// closing, or an exit button.
    fn airlock(&mut self) {
        let (_, address) = AIRLOCK[self.rng.below(2) as usize];
        match self.rng.below(4) {
            0 | 1 => {
                let n = self.rng.below(4) as u8;
                self.card(address, n);
            }
            2 => {
                let open = self.inputs.get(&address).is_none_or(|v| v[0] == 0);
                self.set_input(address, 0, open);
            }
            _ => {
                self.set_input(address, 1, true);
                self.set_input(address, 1, false);
            }
        }
    }

    /// Whether a committed grant at `door` follows its latest lockdown.
    fn granted_since_lockdown(&self, door: &str) -> bool {
        let mut granted = false;
        for r in &self.journal {
            match r {
                EventKind::DoorModeChanged { door: d, mode }
                    if *d == door && mode == "lockdown" =>
                {
                    granted = false
                }
                EventKind::AccessGranted { door: d, .. } if *d == door => granted = true,
                _ => {}
            }
        }
        granted
    }

    fn crashes(&self) -> usize {
        self.log.iter().filter(|l| l.starts_with("CRASH")).count()
    }

    fn remote(&mut self) {
        let door = DOORS[self.rng.below(3) as usize];
        let seconds = match self.rng.below(4) {
            0 => 1 + self.rng.below(30),
            1 => 60 + self.rng.below(600),
            2 => 3 * 3600,
            _ => 1 + self.rng.below(24 * 3600),
        };
        let some_doors = || -> Vec<DoorId> { vec![door.into()] };
        let action = match self.rng.below(8) {
            0 => RemoteAction::Unlock {
                door: door.into(),
                seconds,
            },
            1 => RemoteAction::SetMode {
                door: door.into(),
                mode: if door == "r" {
                    ["locked", "cardholders_only", "free_rotation"][self.rng.below(3) as usize]
                } else {
                    ["card_only", "unlocked"][self.rng.below(2) as usize]
                }
                .parse()
                .unwrap(),
                seconds,
            },
            2 => RemoteAction::FreeRotation {
                door: "r".into(),
                seconds,
            },
            3 => RemoteAction::ReleasePassage {
                door: "r".into(),
                direction: if self.rng.chance(50) {
                    Direction::In
                } else {
                    Direction::Out
                },
            },
            4 => RemoteAction::Lockdown {
                doors: if self.rng.chance(50) {
                    Vec::new()
                } else {
                    some_doors()
                },
            },
            5 | 6 => RemoteAction::ReleaseLockdown {
                doors: if self.rng.chance(50) {
                    Vec::new()
                } else {
                    some_doors()
                },
            },
            _ => RemoteAction::Unlock {
                door: door.into(),
                seconds: 2 * 3600 + self.rng.below(3600),
            },
        };
        self.handle(Input::Remote {
            ticket: 1,
            source: "sim".into(),
            command: None,
            action,
        });
    }

    fn step(&mut self) {
        match self.rng.below(20) {
            0..=3 => {
                let address = [1, 2, 3, 4, 5][self.rng.below(5) as usize];
                let n = self.rng.below(6) as u8;
                self.card(address, n);
            }
            4..=5 => self.pass_door_a(),
            6 => {
                let on = self.inputs.get(&2).is_none_or(|v| v[0] == 0);
                self.set_input(2, 0, on);
            }
            7 => {
                self.set_input(1, 1, true);
                self.set_input(1, 1, false);
            }
            8..=9 => {
                let bit = self.rng.below(2) as u8;
                self.set_input(3, bit, true);
                self.set_input(3, bit, false);
            }
            10..=12 => self.remote(),
            13 => {
                // A clock glitch, a step of minutes to days either way (a
                // spoofed NTP server), or its correction.
                self.skew = match self.rng.below(6) {
                    0 => SignedDuration::from_hours(24 * 365 * 30),
                    1 => -SignedDuration::from_hours(24 * 365 * 10),
                    2 => SignedDuration::from_secs(self.rng.below(7200) as i64 - 3600),
                    3 | 4 => {
                        SignedDuration::from_secs(self.rng.below(6 * 86_400) as i64 - 3 * 86_400)
                    }
                    _ => SignedDuration::ZERO,
                };
                self.log.push(format!("clock skew {:?}", self.skew));
            }
            14 if self.rng.chance(25) => {
                // A signed time (snapshot or command issue time) from
                // central's correct clock.
                let real = self.real();
                self.handle(Input::SignedTime(real));
            }
            14 if self.rng.chance(66) => {
                // A live time beacon from central's correct clock.
                let real = self.real();
                let came = self.base + self.t;
                self.handle(Input::Beacon { at: real, came });
            }
            14 => {
                self.log.push("CRASH between inputs".into());
                self.gateway = None;
                self.boot();
            }
            15 => {
                let by = Duration::from_secs(600 + self.rng.below(2 * 3600));
                self.advance(by);
            }
            16 if self.rng.chance(25) => {
                let on = !self.fire();
                self.set_input(FIRE_PD, 0, on);
            }
            17 | 18 => self.airlock(),
            _ => {
                let by = Duration::from_millis(self.rng.below(40_000));
                self.advance(by);
            }
        }
        self.check();
    }
}

fn run_seed(seed: u64, steps: usize) -> Seen {
    let result = std::panic::catch_unwind(|| {
        let mut sim = Sim::new(seed);
        sim.check();
        for _ in 0..steps {
            sim.step();
        }
        // Let everything timed run out: every door back to its standing
        // mode, nothing released that no standing mode releases.
        sim.skew = SignedDuration::ZERO;
        sim.crashing = false;
        sim.advance(Duration::from_secs(25 * 3600));
        sim.check();
        let g = sim.gateway.as_ref().unwrap();
        assert!(
            g.standing().overrides.is_empty(),
            "an override never reverted"
        );
        assert!(
            g.standing().remote_modes.is_empty(),
            "a remote mode never reverted: {:?} at {}",
            g.standing().remote_modes,
            g.trusted_now()
        );
        let count = |f: fn(&EventKind) -> bool| sim.journal.iter().filter(|r| f(r)).count();
        Seen {
            scheduled_unlocks: count(
                |r| matches!(r, EventKind::DoorModeChanged { door, mode } if *door == "a" && mode == "unlocked"),
            ),
            withheld: count(|r| matches!(r, EventKind::DoorModeWithheld { .. })),
            untrusted: count(|r| matches!(r, EventKind::ClockUntrusted { .. })),
            emergencies: count(
                |r| matches!(r, EventKind::DoorModeChanged { mode, .. } if mode == "emergency_unlocked"),
            ),
            fire_over_lockdown: sim.fire_over_lockdown.get(),
            antipassback: sim.antipassback,
            interlock_denials: sim.interlock_denials,
            first_in: sim.first_in_seen.get(),
        }
    });
    match result {
        Ok(seen) => seen,
        Err(e) => {
            eprintln!(
                "simulation failed: replay with SIM_SEED={seed} cargo test --test simulation"
            );
            std::panic::resume_unwind(e);
        }
    }
}

#[test]
fn crash_anywhere_keeps_every_door_invariant() {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        run_seed(seed.parse().expect("SIM_SEED is a number"), 200);
        return;
    }
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut seen = Seen::default();
    for seed in 0..seeds {
        let s = run_seed(seed, 120);
        seen.scheduled_unlocks += s.scheduled_unlocks;
        seen.withheld += s.withheld;
        seen.untrusted += s.untrusted;
        seen.emergencies += s.emergencies;
        seen.fire_over_lockdown += s.fire_over_lockdown;
        seen.antipassback += s.antipassback;
        seen.interlock_denials += s.interlock_denials;
        seen.first_in += s.first_in;
    }
    // The runs reached both sides of the time rule.
    if seeds >= 100 {
        assert!(
            seen.scheduled_unlocks > 0,
            "no scheduled unlock ever started"
        );
        assert!(seen.withheld > 0, "no scheduled unlock was ever withheld");
        assert!(seen.untrusted > 0, "the clock was never untrusted");
        assert!(seen.emergencies > 0, "no fire alarm ever released a door");
        assert!(
            seen.fire_over_lockdown > 0,
            "a fire alarm never met a lockdown"
        );
        assert!(seen.antipassback > 0, "anti-passback never denied");
        assert!(
            seen.interlock_denials > 0,
            "the airlock never refused anyone"
        );
        assert!(seen.first_in > 0, "no first person in ever unlocked door b");
    }
}

/// What the runs got to.
#[derive(Default)]
struct Seen {
    scheduled_unlocks: usize,
    withheld: usize,
    untrusted: usize,
    emergencies: usize,
    fire_over_lockdown: usize,
    antipassback: usize,
    interlock_denials: usize,
    first_in: usize,
}
