//! The building core, sans-IO: routes bus events to doors and door actions
//! to PDs. Card read → [`BuildingAction::Decide`] (the owner asks the rules
//! engine and answers with [`BuildingInput::Verdict`]) → door machine →
//! strike/rotation OUT commands, reader feedback and journal records.
//! Input edges (door contact, exit button, rotation sensors) are derived
//! from the PD's input reports.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::door::{
    ActiveMode, CredentialId, DenyReason, Direction, DoorAction, DoorEvent, DoorInput, Feedback,
    OverrideState, PassageCause, RevolvingAction, RevolvingConfig, RevolvingDoor, RevolvingEvent,
    RevolvingInput, Rotation, StandardConfig, StandardDoor, Strike,
};
use crate::event::{AlarmCode, EventKind, HeldStage, OfflineCause};
use crate::ids::{BusId, DoorId, InputId, ReaderId};
use crate::osdp::message::{Command, RawCard};
use crate::osdp::{BusEvent, OfflineReason};

use super::areas::DoorAreas;
use super::decision::Verdict;
use super::interlock::Interlock;
use super::modes::{DoorClass, ModePlanner, StandingMode};
use super::outputs::{self, FeedbackTable, StrikeWiring};
use super::pin_entry::PinPads;
use super::standing::HeldBy;

/// A PD: bus name and address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PdRef {
    /// Bus name from the config.
    pub bus: BusId,
    /// PD address on that bus.
    pub address: u8,
}

/// One input of a PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRef {
    /// The PD.
    pub pd: PdRef,
    /// Input number.
    pub input: u8,
    /// Whether "active" on the wire means open / pressed / passed (else the
    /// input is wired normally-closed and inactive means active).
    pub active_high: bool,
}

/// A reader of a door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderRef {
    /// Reader id (for events).
    pub id: ReaderId,
    /// The PD it is.
    pub pd: PdRef,
    /// Reader number on the PD (0 for the PD itself).
    pub reader: u8,
    /// Which way a badge here goes.
    pub direction: Direction,
}

/// An output of a PD and its polarity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRef {
    /// The PD.
    pub pd: PdRef,
    /// Output number and polarity.
    pub wiring: StrikeWiring,
}

/// What kind of door, with its timing.
#[derive(Debug, Clone)]
pub enum DoorKind {
    /// A swing door with a strike or maglock.
    Standard(StandardConfig),
    /// A revolving door with per-direction release outputs.
    Revolving(RevolvingConfig),
}

/// How one door is wired.
#[derive(Debug, Clone)]
pub struct DoorWiring {
    /// Door id (as in the rules).
    pub id: DoorId,
    /// Kind and timing.
    pub kind: DoorKind,
    /// Its readers.
    pub readers: Vec<ReaderRef>,
    /// Standard door: the lock output. Revolving door: the "in" release.
    pub lock: Option<OutputRef>,
    /// Revolving door: the "out" release.
    pub release_out: Option<OutputRef>,
    /// Door contact (active = open).
    pub contact: Option<InputRef>,
    /// Exit button (active = pressed).
    pub exit_button: Option<InputRef>,
    /// Rotation sensor for passages in (active pulse = one passage).
    pub rotation_in: Option<InputRef>,
    /// Rotation sensor for passages out.
    pub rotation_out: Option<InputRef>,
}

/// Inputs to the building.
#[derive(Debug, Clone)]
pub enum BuildingInput {
    /// Something a bus reported.
    Bus {
        /// Bus name.
        bus: BusId,
        /// The event.
        event: BusEvent,
    },
    /// The rules engine's answer to a [`BuildingAction::Decide`].
    Verdict {
        /// Door id.
        door: DoorId,
        /// Reader id.
        reader: ReaderId,
        /// The answer.
        verdict: Verdict,
    },
    /// A mode, override or exit request for a standard door (schedules,
    /// remote commands, the admin page).
    Door {
        /// Door id.
        door: DoorId,
        /// What to do.
        input: DoorInput,
    },
    /// A mode or remote release for a revolving door.
    Revolving {
        /// Door id.
        door: DoorId,
        /// What to do.
        input: RevolvingInput,
    },
}

/// What the owner must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildingAction {
    /// Ask the rules engine about this card at this door; answer with
    /// [`BuildingInput::Verdict`].
    Decide {
        /// Door id.
        door: DoorId,
        /// Reader id.
        reader: ReaderId,
        /// Which way.
        direction: Direction,
        /// The raw card.
        card: RawCard,
        /// The PIN typed at the reader's keypad after the card, once the
        /// rules asked for one (`pin_required`).
        pin: Option<String>,
    },
    /// Send this command to this PD.
    Command {
        /// The PD.
        pd: PdRef,
        /// The command.
        command: Command,
    },
    /// Append this to the journal.
    Record(EventKind),
    /// A fire-alarm input reads active or inactive (reported on every
    /// change and on the first report after a start, so a state kept over
    /// a restart meets the input's true level).
    FireAlarm {
        /// The input.
        input: InputId,
        /// The doors it releases.
        releases: Vec<DoorId>,
        /// Active (alarm) or not.
        active: bool,
    },
    /// The exit button of a door in an interlock was pressed: the owner
    /// checks the airlock and answers with [`DoorInput::ExitRequest`]
    /// (`BuildingInput::Door`) when the other doors are closed and locked.
    ExitRequest {
        /// Door id.
        door: DoorId,
    },
    /// The PD carrying a fire-alarm input went offline: its last known
    /// level stands, and the owner raises the alarm with that level.
    FireAlarmInputOffline {
        /// The input.
        input: InputId,
    },
    /// A granted person went through a door: the owner updates the
    /// presence list (it knows office hours and names).
    Passage {
        /// Door id.
        door: DoorId,
        /// Who.
        credential: String,
        /// Which way.
        direction: Direction,
    },
}

/// What a PD input means. The one place an input gets its meaning:
/// door inputs go to their door's machine, building inputs to the core's
/// mode planner (see `site::modes::PRECEDENCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRole {
    /// Door contact (active = open).
    Contact,
    /// Exit button (active = pressed).
    ExitButton,
    /// Revolving door rotation sensor (active pulse = one passage).
    Rotation(Direction),
    /// Fire-alarm contact from the fire panel (active = alarm): releases
    /// its escape doors above every other authority.
    FireAlarm,
}

/// A building-level fire-alarm input and the escape doors it releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireAlarmWiring {
    /// Its name.
    pub id: InputId,
    /// Where it is wired.
    pub input: InputRef,
    /// The doors it releases.
    pub releases: Vec<DoorId>,
}

/// One watched input: where it is, what it means, and whom it concerns.
#[derive(Debug, Clone)]
struct Watched {
    input: InputRef,
    role: InputRole,
    /// The door (index), or the fire alarm (index) for a building input.
    target: usize,
}

enum Machine {
    Standard(StandardDoor),
    Revolving(RevolvingDoor),
}

struct Door {
    wiring: DoorWiring,
    machine: Machine,
    /// The reader of the verdict being handled: the door's events of that
    /// verdict are attributed to it. Empty outside a verdict.
    verdict_reader: ReaderId,
    /// The reader of the grant whose window is running: a passage through
    /// the door goes that reader's way, whatever was badged since.
    grant_reader: Option<ReaderId>,
}

/// What a door is doing now (status page, control socket, uplink status).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DoorState {
    /// Door id.
    pub id: DoorId,
    /// `standard` or `revolving`.
    pub kind: DoorClass,
    /// Standing mode.
    pub mode: StandingMode,
    /// A timed override in force: `unlocked`, `locked` (standard) or
    /// `free_rotation` (revolving), reverting at `reverts_at`.
    pub override_state: Option<&'static str>,
    /// Strike released (standard) or rotation allowed (revolving).
    pub released: bool,
    /// Door contact open (standard).
    pub open: bool,
    /// Forced open and not closed since.
    pub forced: bool,
    /// Held open past its alarm time.
    pub held_open: bool,
    /// Revolving door: passages in, out, and unauthorised rotations.
    pub passages: Option<[u64; 3]>,
    /// When a timed override (standard) or free-rotation release
    /// (revolving) reverts by itself.
    #[serde(skip)]
    pub reverts_at: Option<Instant>,
}

/// The doors of one building and how they are wired.
pub struct Building {
    doors: Vec<Door>,
    /// Timed releases longer than a PD timer can carry, re-sent before the
    /// PD relocks by itself.
    long_releases: HashMap<(PdRef, u8), LongRelease>,
    /// Last input report per PD, for edge detection.
    inputs: HashMap<PdRef, Vec<u8>>,
    /// Every input with a role, door inputs in door order first.
    watched: Vec<Watched>,
    fire_alarms: Vec<FireAlarmWiring>,
    /// Cards read and not decided yet, by reader: a `pin_required` answer
    /// for one of them starts a PIN entry instead of a denial.
    undecided: HashMap<ReaderId, RawCard>,
    pin_pads: PinPads,
    actions: VecDeque<BuildingAction>,
    feedback: FeedbackTable,
    /// The areas on the two sides of each door that has them.
    areas: HashMap<DoorId, DoorAreas>,
    /// The interlock groups.
    interlocks: Vec<Interlock>,
}

impl std::fmt::Debug for Building {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Building")
            .field("doors", &self.doors.len())
            .finish_non_exhaustive()
    }
}

impl Building {
    /// A building with these doors, all locked.
    pub fn new(doors: Vec<DoorWiring>) -> Self {
        let doors = doors
            .into_iter()
            .map(|wiring| {
                let machine = match &wiring.kind {
                    DoorKind::Standard(c) => Machine::Standard(StandardDoor::new(c.clone())),
                    DoorKind::Revolving(c) => Machine::Revolving(RevolvingDoor::new(c.clone())),
                };
                Door {
                    wiring,
                    machine,
                    verdict_reader: ReaderId::default(),
                    grant_reader: None,
                }
            })
            .collect::<Vec<Door>>();
        let watched = doors
            .iter()
            .enumerate()
            .flat_map(|(target, d)| {
                let w = &d.wiring;
                [
                    (&w.contact, InputRole::Contact),
                    (&w.exit_button, InputRole::ExitButton),
                    (&w.rotation_in, InputRole::Rotation(Direction::In)),
                    (&w.rotation_out, InputRole::Rotation(Direction::Out)),
                ]
                .into_iter()
                .filter_map(move |(input, role)| {
                    input.clone().map(|input| Watched {
                        input,
                        role,
                        target,
                    })
                })
            })
            .collect();
        Self {
            doors,
            long_releases: HashMap::new(),
            inputs: HashMap::new(),
            watched,
            fire_alarms: Vec::new(),
            undecided: HashMap::new(),
            pin_pads: PinPads::default(),
            actions: VecDeque::new(),
            feedback: FeedbackTable::default(),
            areas: HashMap::new(),
            interlocks: Vec::new(),
        }
    }

    /// Give doors the areas on their two sides (the config's
    /// `area_in`/`area_out`).
    pub fn with_areas(mut self, areas: impl IntoIterator<Item = (DoorId, DoorAreas)>) -> Self {
        self.areas = areas.into_iter().collect();
        self
    }

    /// The areas on the two sides of `door`, when it has them.
    pub fn door_areas(&self, door: &str) -> Option<&DoorAreas> {
        self.areas.get(door)
    }

    /// Interlock these groups of doors: their exit buttons are handed to
    /// the owner ([`BuildingAction::ExitRequest`]), which holds the
    /// airlock.
    pub fn with_interlocks(mut self, interlocks: Vec<Interlock>) -> Self {
        self.interlocks = interlocks;
        self
    }

    /// The interlock groups.
    pub fn interlocks(&self) -> &[Interlock] {
        &self.interlocks
    }

    fn interlocked(&self, door: usize) -> bool {
        let id = &self.doors[door].wiring.id;
        self.interlocks.iter().any(|g| g.doors.contains(id))
    }

    /// Watch these fire-alarm inputs.
    pub fn with_fire_alarms(mut self, alarms: Vec<FireAlarmWiring>) -> Self {
        for (target, alarm) in alarms.iter().enumerate() {
            self.watched.push(Watched {
                input: alarm.input.clone(),
                role: InputRole::FireAlarm,
                target,
            });
        }
        self.fire_alarms = alarms;
        self
    }

    /// The doors a fire-alarm input releases (`None`: no such input).
    pub fn fire_alarm_doors(&self, input: &InputId) -> Option<&[DoorId]> {
        self.fire_alarms
            .iter()
            .find(|a| &a.id == input)
            .map(|a| a.releases.as_slice())
    }

    /// Use these reader feedback patterns instead of the defaults.
    pub fn with_feedback(mut self, feedback: FeedbackTable) -> Self {
        self.feedback = feedback;
        self
    }

    /// Change the reader feedback patterns (config reload).
    pub fn set_feedback(&mut self, feedback: FeedbackTable) {
        self.feedback = feedback;
    }

    /// The commands that put every door in its safe, locked state (at
    /// start, and whenever a PD comes back online).
    pub fn lock_all(&mut self) {
        let outs: Vec<OutputRef> = self
            .doors
            .iter()
            .flat_map(|d| [&d.wiring.lock, &d.wiring.release_out])
            .flatten()
            .cloned()
            .collect();
        for out in outs {
            self.lock_output(&out);
        }
    }

    /// Feed an input.
    pub fn handle(&mut self, now: Instant, input: BuildingInput) {
        match input {
            BuildingInput::Bus { bus, event } => self.bus_event(now, bus, event),
            BuildingInput::Verdict {
                door,
                reader,
                verdict,
            } => self.verdict(now, &door, reader, verdict),
            BuildingInput::Door { door, input } => {
                if let Some(i) = self.door_index(&door)
                    && let Machine::Standard(d) = &mut self.doors[i].machine
                {
                    d.handle(now, input);
                    self.drain_door(now, i);
                }
            }
            BuildingInput::Revolving { door, input } => {
                if let Some(i) = self.door_index(&door)
                    && let Machine::Revolving(d) = &mut self.doors[i].machine
                {
                    d.handle(now, input);
                    self.drain_door(now, i);
                }
            }
        }
    }

    /// What every door is doing now.
    pub fn door_states(&self) -> Vec<DoorState> {
        self.doors
            .iter()
            .map(|d| match &d.machine {
                Machine::Standard(m) => DoorState {
                    id: d.wiring.id.clone(),
                    kind: DoorClass::Standard,
                    mode: StandingMode::Standard(m.mode()),
                    override_state: m.override_state().map(|o| match o.state {
                        OverrideState::Unlocked => "unlocked",
                        OverrideState::Locked => "locked",
                    }),
                    released: matches!(m.strike(), Strike::Released { .. }),
                    open: m.is_open(),
                    forced: m.is_forced(),
                    held_open: m.is_held_open(),
                    passages: None,
                    reverts_at: m.override_state().map(|o| o.until),
                },
                Machine::Revolving(m) => {
                    let c = m.counters();
                    DoorState {
                        id: d.wiring.id.clone(),
                        kind: DoorClass::Revolving,
                        mode: StandingMode::Revolving(m.mode()),
                        released: m.rotation().is_some(),
                        open: false,
                        forced: false,
                        held_open: false,
                        passages: Some([c.entries, c.exits, c.unauthorised]),
                        override_state: m.free_until().map(|_| "free_rotation"),
                        reverts_at: m.free_until(),
                    }
                }
            })
            .collect()
    }

    /// The timed overrides in force (standard doors) and timed free
    /// rotations (revolving doors), with their ends.
    pub fn overrides(&self) -> impl Iterator<Item = (&DoorId, HeldBy, Instant)> + '_ {
        self.doors.iter().filter_map(|d| match &d.machine {
            Machine::Standard(m) => m.override_state().map(|o| {
                let held = match o.state {
                    OverrideState::Unlocked => HeldBy::Unlocked,
                    OverrideState::Locked => HeldBy::Locked,
                };
                (&d.wiring.id, held, o.until)
            }),
            Machine::Revolving(m) => m
                .free_until()
                .map(|until| (&d.wiring.id, HeldBy::FreeRotation, until)),
        })
    }

    /// The door ids, in config order.
    pub fn door_ids(&self) -> impl Iterator<Item = &DoorId> {
        self.doors.iter().map(|d| &d.wiring.id)
    }

    /// A mode planner for these doors.
    pub fn mode_planner(&self) -> ModePlanner {
        ModePlanner::new(self.doors.iter().map(|d| {
            let class = match d.machine {
                Machine::Standard(_) => DoorClass::Standard,
                Machine::Revolving(_) => DoorClass::Revolving,
            };
            (d.wiring.id.clone(), class)
        }))
    }

    fn door_index(&self, id: &str) -> Option<usize> {
        self.doors.iter().position(|d| d.wiring.id == *id)
    }

    /// Call when [`Building::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.refresh_long_releases(now);
        // A PIN not typed in time: the card is denied as it was asked.
        for w in self.pin_pads.expire(now) {
            let verdict = Verdict::Deny {
                credential: crate::site::decision::credential_of(&crate::rules::Card::Raw {
                    bytes: w.card.data.clone(),
                    bits: w.card.bits,
                })
                .ok(),
                reason: DenyReason::PinRequired,
            };
            self.verdict(now, &w.door, w.reader, verdict);
        }
        for i in 0..self.doors.len() {
            match &mut self.doors[i].machine {
                Machine::Standard(d) => d.handle_timeout(now),
                Machine::Revolving(d) => d.handle_timeout(now),
            }
            self.drain_door(now, i);
        }
    }

    /// The earliest door deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.doors
            .iter()
            .filter_map(|d| match &d.machine {
                Machine::Standard(m) => m.poll_timeout(),
                Machine::Revolving(m) => m.poll_timeout(),
            })
            .chain(self.long_releases.values().map(|r| r.refresh_at))
            .chain(self.pin_pads.poll_timeout())
            .min()
    }

    /// The next action for the owner.
    pub fn poll_action(&mut self) -> Option<BuildingAction> {
        self.actions.pop_front()
    }

    fn bus_event(&mut self, now: Instant, bus: BusId, event: BusEvent) {
        match event {
            BusEvent::Card { address, card } => {
                let pd = PdRef { bus, address };
                for door in &self.doors {
                    for r in door
                        .wiring
                        .readers
                        .iter()
                        .filter(|r| r.pd == pd && r.reader == card.reader)
                    {
                        // A new card at a reader ends its PIN entry.
                        self.pin_pads.cancel(&r.id);
                        self.undecided.insert(r.id.clone(), card.clone());
                        self.actions.push_back(BuildingAction::Decide {
                            door: door.wiring.id.clone(),
                            reader: r.id.clone(),
                            direction: r.direction,
                            card: card.clone(),
                            pin: None,
                        });
                    }
                }
            }
            BusEvent::Keypad { address, keys } => {
                let pd = PdRef { bus, address };
                let readers: Vec<ReaderId> = self
                    .doors
                    .iter()
                    .flat_map(|d| &d.wiring.readers)
                    .filter(|r| r.pd == pd && r.reader == keys.reader)
                    .map(|r| r.id.clone())
                    .collect();
                for reader in readers {
                    if let Some(entered) = self.pin_pads.keys(now, &reader, &keys.digits) {
                        let w = entered.waiting;
                        self.actions.push_back(BuildingAction::Decide {
                            door: w.door,
                            reader: w.reader,
                            direction: w.direction,
                            card: w.card,
                            pin: Some(entered.pin),
                        });
                    }
                }
            }
            BusEvent::Inputs { address, inputs } => {
                let pd = PdRef { bus, address };
                let before = self.inputs.insert(pd.clone(), inputs.clone());
                self.input_edges(now, &pd, before.as_deref(), &inputs);
            }
            BusEvent::Online {
                address, secure, ..
            } => {
                self.record(EventKind::PdOnline {
                    bus: bus.clone(),
                    address,
                    secure,
                });
                // A PD that comes (back) online gets its outputs set to what
                // its doors are now: locked, unless a door is released by its
                // mode or a grant still running. Whatever it did while we
                // were apart, it starts from our state, never a stale one.
                let pd = PdRef { bus, address };
                self.reassert_outputs(now, &pd);
                // A fire-alarm input's level is asked for at once: after a
                // restart (or the PD's own), the kept alarm state must meet
                // the true one, and a PD reports inputs only on change.
                // So are an airlock door's contacts: after a restart an
                // open door must hold the other doors of its interlock.
                if self.watched.iter().any(|w| {
                    w.input.pd == pd
                        && (w.role == InputRole::FireAlarm
                            || (w.role == InputRole::Contact && self.interlocked(w.target)))
                }) {
                    self.actions.push_back(BuildingAction::Command {
                        pd,
                        command: Command::InputStatus,
                    });
                }
            }
            BusEvent::Offline { address, reason } => {
                let (reason, alarm) = match reason {
                    OfflineReason::NoReply => (OfflineCause::NoReply, None),
                    OfflineReason::Security(alarm) => {
                        (OfflineCause::SecurityAlarm, Some(AlarmCode::from(&alarm)))
                    }
                };
                let pd = PdRef {
                    bus: bus.clone(),
                    address,
                };
                self.record(EventKind::PdOffline {
                    bus,
                    address,
                    reason,
                    alarm,
                });
                for w in self
                    .watched
                    .iter()
                    .filter(|w| w.role == InputRole::FireAlarm && w.input.pd == pd)
                {
                    self.actions
                        .push_back(BuildingAction::FireAlarmInputOffline {
                            input: self.fire_alarms[w.target].id.clone(),
                        });
                }
            }
            BusEvent::SecurityAlarm { address, alarm } => {
                self.record(EventKind::SecurityAlarm {
                    bus,
                    address,
                    alarm: AlarmCode::from(&alarm),
                });
            }
            BusEvent::LocalStatus { address, status } => self.record(EventKind::PdStatus {
                bus,
                address,
                tamper: status.tamper != 0,
                power_failure: status.power != 0,
            }),
            _ => {}
        }
    }

    fn reassert_outputs(&mut self, now: Instant, pd: &PdRef) {
        let mut commands = Vec::new();
        for door in &self.doors {
            let outs = [&door.wiring.lock, &door.wiring.release_out];
            let released = match &door.machine {
                Machine::Standard(d) => match d.strike() {
                    Strike::Released { until } => [Some(until), None],
                    Strike::Locked => [None, None],
                },
                Machine::Revolving(d) => {
                    let until = d.rotation_until();
                    match d.rotation() {
                        Some(Rotation::In) => [Some(until), None],
                        Some(Rotation::Out) => [None, Some(until)],
                        Some(Rotation::Both) => [Some(until), Some(until)],
                        None => [None, None],
                    }
                }
            };
            for (out, release) in outs.into_iter().zip(released) {
                let Some(out) = out.as_ref().filter(|o| &o.pd == pd) else {
                    continue;
                };
                let release = match release {
                    Some(until) if until.is_none_or(|t| t > now) => Some(until),
                    _ => None,
                };
                commands.push((out.clone(), release));
            }
        }
        for (out, release) in commands {
            match release {
                Some(until) => self.release_output(&out, now, until),
                None => self.lock_output(&out),
            }
        }
    }

    fn input_edges(&mut self, now: Instant, pd: &PdRef, before: Option<&[u8]>, after: &[u8]) {
        let level = |inputs: Option<&[u8]>, r: &InputRef| {
            inputs
                .and_then(|v| v.get(usize::from(r.input)))
                .map(|&b| (b != 0) == r.active_high)
        };
        let mut edges = Vec::new();
        for w in self.watched.iter().filter(|w| &w.input.pd == pd) {
            let Some(active) = level(Some(after), &w.input) else {
                continue;
            };
            let was_active = match level(before, &w.input) {
                Some(was) => was,
                // First report: an open door is news (it may be forced),
                // and so is a rotation pulse (sensors rest inactive and
                // PDs report inputs only on change); a fire alarm's level
                // is always news (the kept state meets the true one). A
                // pressed exit button without a seen edge is not: it must
                // not release a door on a stuck or miswired button.
                None if w.role == InputRole::FireAlarm => !active,
                None if w.role != InputRole::ExitButton && active => false,
                None => continue,
            };
            if active != was_active {
                edges.push((w.role, w.target, active));
            }
        }
        for (role, target, active) in edges {
            match role {
                InputRole::Contact | InputRole::ExitButton => {
                    let input = match (role, active) {
                        (InputRole::Contact, true) => DoorInput::ContactOpened,
                        (InputRole::Contact, false) => DoorInput::ContactClosed,
                        (_, true) if self.interlocked(target) => {
                            let door = self.doors[target].wiring.id.clone();
                            self.actions.push_back(BuildingAction::ExitRequest { door });
                            continue;
                        }
                        (_, true) => DoorInput::ExitRequest,
                        (_, false) => continue,
                    };
                    if let Machine::Standard(d) = &mut self.doors[target].machine {
                        d.handle(now, input);
                    }
                }
                InputRole::Rotation(direction) => {
                    if active && let Machine::Revolving(d) = &mut self.doors[target].machine {
                        d.handle(now, RevolvingInput::Rotated { direction });
                    }
                }
                InputRole::FireAlarm => {
                    let alarm = &self.fire_alarms[target];
                    self.actions.push_back(BuildingAction::FireAlarm {
                        input: alarm.id.clone(),
                        releases: alarm.releases.clone(),
                        active,
                    });
                }
            }
        }
        for i in 0..self.doors.len() {
            self.drain_door(now, i);
        }
    }

    fn verdict(&mut self, now: Instant, door_id: &str, reader: ReaderId, verdict: Verdict) {
        let Some(i) = self.door_index(door_id) else {
            return;
        };
        let direction = self.doors[i]
            .wiring
            .readers
            .iter()
            .find(|r| r.id == reader)
            .map_or(Direction::In, |r| r.direction);
        // The rules want the PIN of a card just read: wait for the keypad
        // (the card is decided again with the digits, or denied
        // `pin_required` when none come).
        let card = self.undecided.remove(&reader);
        if let (
            Some(card),
            Verdict::Deny {
                reason: DenyReason::PinRequired,
                ..
            },
        ) = (card, &verdict)
        {
            self.pin_pads
                .start(now, door_id.into(), reader.clone(), direction, card);
            self.feedback(i, Feedback::PinWanted);
            return;
        }
        if matches!(verdict, Verdict::Grant { .. }) {
            self.doors[i].grant_reader = Some(reader.clone());
        }
        self.doors[i].verdict_reader = reader;
        match (&mut self.doors[i].machine, verdict) {
            (
                Machine::Standard(d),
                Verdict::Grant {
                    credential,
                    extended,
                    lockdown_exempt,
                    ..
                },
            ) => d.handle(
                now,
                DoorInput::Granted {
                    credential: CredentialId::from(&credential),
                    extended,
                    exempt: lockdown_exempt,
                },
            ),
            (Machine::Standard(d), Verdict::Deny { credential, reason }) => d.handle(
                now,
                DoorInput::Denied {
                    credential: credential.as_ref().map(CredentialId::from),
                    reason,
                },
            ),
            (Machine::Revolving(d), Verdict::Grant { credential, .. }) => d.handle(
                now,
                RevolvingInput::Granted {
                    credential: CredentialId::from(&credential),
                    direction,
                },
            ),
            (Machine::Revolving(_), Verdict::Deny { credential, reason }) => {
                let feedback = match reason {
                    DenyReason::Lockdown => Feedback::Lockdown,
                    DenyReason::RulesTooOld | DenyReason::RulesUntrusted => Feedback::RulesTooOld,
                    _ => Feedback::Deny,
                };
                self.feedback(i, feedback);
                let door = self.doors[i].wiring.id.clone();
                let reader = self.doors[i].verdict_reader.clone();
                self.record(EventKind::AccessDenied {
                    door,
                    reader,
                    credential: credential.map(|k| k.to_string()),
                    reason,
                });
            }
        }
        self.drain_door(now, i);
        self.doors[i].verdict_reader = ReaderId::default();
    }

    fn drain_door(&mut self, now: Instant, i: usize) {
        loop {
            let door = &mut self.doors[i];
            let id = door.wiring.id.clone();
            let reader = door.verdict_reader.clone();
            match &mut door.machine {
                Machine::Standard(d) => {
                    let Some(action) = d.poll_action() else {
                        return;
                    };
                    match action {
                        DoorAction::ReleaseStrike { until } => {
                            if let Some(out) = door.wiring.lock.clone() {
                                self.release_output(&out, now, until);
                            }
                        }
                        DoorAction::LockStrike => {
                            if let Some(out) = door.wiring.lock.clone() {
                                self.lock_output(&out);
                            }
                        }
                        DoorAction::Feedback(f) => self.feedback(i, f),
                        DoorAction::Event(e) => {
                            if let DoorEvent::EntryOpened { credential } = &e {
                                // The way of the grant that opened the door,
                                // not of whatever was badged since.
                                let granted_at =
                                    door.grant_reader.clone().unwrap_or(reader.clone());
                                let direction = door
                                    .wiring
                                    .readers
                                    .iter()
                                    .find(|r| r.id == granted_at)
                                    .map_or(Direction::In, |r| r.direction);
                                self.actions.push_back(BuildingAction::Passage {
                                    door: id.clone(),
                                    credential: credential.0.clone(),
                                    direction,
                                });
                            }
                            if let Some(kind) = standard_event(&id, &reader, e) {
                                self.record(kind);
                            }
                        }
                    }
                }
                Machine::Revolving(d) => {
                    let Some(action) = d.poll_action() else {
                        return;
                    };
                    match action {
                        RevolvingAction::EnableRotation { rotation, until } => {
                            self.rotation(now, i, Some((rotation, until)))
                        }
                        RevolvingAction::DisableRotation => self.rotation(now, i, None),
                        RevolvingAction::Feedback(f) => self.feedback(i, f),
                        RevolvingAction::Event(e) => {
                            if let RevolvingEvent::Passage {
                                direction,
                                cause: PassageCause::Grant(credential),
                            } = &e
                            {
                                self.actions.push_back(BuildingAction::Passage {
                                    door: id.clone(),
                                    credential: credential.0.clone(),
                                    direction: *direction,
                                });
                            }
                            if let Some(kind) = revolving_event(&id, &reader, e) {
                                self.record(kind);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Rotation releases are timed at the PD whenever the door core knows
    /// their end (a grant's passage window, a timed free rotation), so a
    /// gateway that dies mid-release never leaves the door turning for
    /// everyone; only a standing free mode is an open-ended level.
    fn rotation(&mut self, now: Instant, i: usize, rotation: Option<(Rotation, Option<Instant>)>) {
        let wiring = &self.doors[i].wiring;
        let (allow_in, allow_out, until) = match rotation {
            Some((Rotation::In, until)) => (true, false, until),
            Some((Rotation::Out, until)) => (false, true, until),
            Some((Rotation::Both, until)) => (true, true, until),
            None => (false, false, None),
        };
        let outs: Vec<(OutputRef, bool)> =
            [(&wiring.lock, allow_in), (&wiring.release_out, allow_out)]
                .into_iter()
                .filter_map(|(out, allow)| out.clone().map(|o| (o, allow)))
                .collect();
        for (out, allow) in outs {
            if allow {
                self.release_output(&out, now, until);
            } else {
                self.lock_output(&out);
            }
        }
    }

    /// Release an output until `until` (open-ended when `None`). A release
    /// longer than the PD's timer can carry is sent for the longest timer
    /// and re-sent before it runs out.
    fn release_output(&mut self, out: &OutputRef, now: Instant, until: Option<Instant>) {
        let key = (out.pd.clone(), out.wiring.output);
        match until {
            Some(until) if until.saturating_duration_since(now) > outputs::MAX_TIMER => {
                self.long_releases.insert(
                    key,
                    LongRelease {
                        out: out.clone(),
                        until,
                        refresh_at: now + outputs::MAX_TIMER - REFRESH_AHEAD,
                    },
                );
            }
            _ => {
                self.long_releases.remove(&key);
            }
        }
        self.command(out.pd.clone(), outputs::release(out.wiring, now, until));
    }

    fn lock_output(&mut self, out: &OutputRef) {
        self.long_releases
            .remove(&(out.pd.clone(), out.wiring.output));
        self.command(out.pd.clone(), outputs::lock(out.wiring));
    }

    fn refresh_long_releases(&mut self, now: Instant) {
        let due: Vec<LongRelease> = self
            .long_releases
            .values()
            .filter(|r| r.refresh_at <= now)
            .cloned()
            .collect();
        for r in due {
            self.release_output(&r.out, now, Some(r.until));
        }
    }

    fn feedback(&mut self, i: usize, pattern: Feedback) {
        let readers: Vec<ReaderRef> = self.doors[i].wiring.readers.clone();
        for r in readers {
            for command in outputs::feedback(r.reader, pattern, &self.feedback) {
                self.command(r.pd.clone(), command);
            }
        }
    }

    fn command(&mut self, pd: PdRef, command: Command) {
        self.actions
            .push_back(BuildingAction::Command { pd, command });
    }

    fn record(&mut self, kind: EventKind) {
        self.actions.push_back(BuildingAction::Record(kind));
    }
}

/// How long before a PD's timer runs out a long release is re-sent.
const REFRESH_AHEAD: Duration = Duration::from_secs(60);

/// A release longer than one PD timer, and when to re-send it.
#[derive(Debug, Clone)]
struct LongRelease {
    out: OutputRef,
    until: Instant,
    refresh_at: Instant,
}

fn standard_event(door: &DoorId, reader: &ReaderId, event: DoorEvent) -> Option<EventKind> {
    let door = door.clone();
    Some(match event {
        DoorEvent::Granted { credential, .. } => EventKind::AccessGranted {
            door,
            reader: reader.clone(),
            credential: credential.0,
        },
        DoorEvent::GrantRefusedLockdown { credential } => EventKind::AccessDenied {
            door,
            reader: reader.clone(),
            credential: Some(credential.0),
            reason: DenyReason::Lockdown,
        },
        DoorEvent::Denied { credential, reason } => EventKind::AccessDenied {
            door,
            reader: reader.clone(),
            credential: credential.map(|c| c.0),
            reason,
        },
        DoorEvent::Rex => EventKind::ExitRequest { door },
        DoorEvent::Forced => EventKind::DoorForced { door },
        DoorEvent::HeldOpenPreAlarm => EventKind::DoorHeldOpen {
            door,
            stage: HeldStage::PreAlarm,
        },
        DoorEvent::HeldOpen => EventKind::DoorHeldOpen {
            door,
            stage: HeldStage::Alarm,
        },
        DoorEvent::Closed { .. } => EventKind::DoorClosed { door },
        DoorEvent::ModeChanged { mode, override_ } => EventKind::DoorModeChanged {
            door,
            mode: match override_ {
                Some(o) => ActiveMode::Override(o.state),
                None => StandingMode::Standard(mode).into(),
            },
        },

        // Entry, unused grants, plain openings and refused overrides are
        // state, not journal records (presence is fed from EntryOpened by
        // the daemon, which knows office hours).
        DoorEvent::EntryOpened { .. }
        | DoorEvent::GrantUnused { .. }
        | DoorEvent::Opened
        | DoorEvent::OverrideRefused { .. }
        // The ModeChanged that follows records the mode reverted to.
        | DoorEvent::OverrideExpired { .. } => return None,
    })
}

fn revolving_event(door: &DoorId, reader: &ReaderId, event: RevolvingEvent) -> Option<EventKind> {
    let door = door.clone();
    Some(match event {
        RevolvingEvent::Queued {
            credential: Some(credential),
            ..
        }
        | RevolvingEvent::GrantDuringFreeRotation { credential, .. } => EventKind::AccessGranted {
            door,
            reader: reader.clone(),
            credential: credential.0,
        },
        RevolvingEvent::GrantRefusedLocked { credential } => EventKind::AccessDenied {
            door,
            reader: reader.clone(),
            credential: Some(credential.0),
            reason: DenyReason::Lockdown,
        },
        RevolvingEvent::UnauthorisedRotation { .. } => EventKind::DoorForced { door },
        RevolvingEvent::ModeChanged { mode, .. } => EventKind::DoorModeChanged {
            door,
            mode: StandingMode::Revolving(mode).into(),
        },
        RevolvingEvent::FreeRotationExpired { reverted_to } => EventKind::DoorModeChanged {
            door,
            mode: StandingMode::Revolving(reverted_to).into(),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::door::RevolvingMode;
    use crate::osdp::message::{LedColor, OutputAction};

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

    fn building() -> Building {
        let side = DoorWiring {
            id: "side-entrance".into(),
            kind: DoorKind::Standard(StandardConfig::default()),
            readers: vec![ReaderRef {
                id: "side-in".into(),
                pd: pd(1),
                reader: 0,
                direction: Direction::In,
            }],
            lock: Some(OutputRef {
                pd: pd(1),
                wiring: StrikeWiring {
                    output: 0,
                    energize_to_unlock: true,
                },
            }),
            release_out: None,
            contact: input(1, 0),
            exit_button: input(1, 1),
            rotation_in: None,
            rotation_out: None,
        };
        let revolving = DoorWiring {
            id: "main-revolving".into(),
            kind: DoorKind::Revolving(RevolvingConfig::default()),
            readers: vec![ReaderRef {
                id: "main-in".into(),
                pd: pd(2),
                reader: 0,
                direction: Direction::In,
            }],
            lock: Some(OutputRef {
                pd: pd(3),
                wiring: StrikeWiring {
                    output: 0,
                    energize_to_unlock: true,
                },
            }),
            release_out: Some(OutputRef {
                pd: pd(3),
                wiring: StrikeWiring {
                    output: 1,
                    energize_to_unlock: true,
                },
            }),
            contact: None,
            exit_button: None,
            rotation_in: input(3, 0),
            rotation_out: input(3, 1),
        };
        Building::new(vec![side, revolving])
    }

    fn drain(b: &mut Building) -> Vec<BuildingAction> {
        std::iter::from_fn(|| b.poll_action()).collect()
    }

    fn card() -> RawCard {
        RawCard {
            reader: 0,
            format: 0,
            bits: 26,
            data: vec![0x95, 0x01, 0xf4, 0x80],
        }
    }

    fn outs(actions: &[BuildingAction]) -> Vec<(u8, u8, OutputAction, u16)> {
        actions
            .iter()
            .filter_map(|a| match a {
                BuildingAction::Command {
                    pd,
                    command: Command::Output(r),
                } => Some((pd.address, r[0].output, r[0].action, r[0].timer_100ms)),
                _ => None,
            })
            .collect()
    }

    fn led_colors(actions: &[BuildingAction]) -> Vec<LedColor> {
        actions
            .iter()
            .filter_map(|a| match a {
                BuildingAction::Command {
                    command: Command::Led(l),
                    ..
                } => Some(l[0].temporary.on_color),
                _ => None,
            })
            .collect()
    }

    fn grant() -> Verdict {
        Verdict::Grant {
            credential: "h10301:42:1001".parse().unwrap(),
            extended: false,
            lockdown_exempt: false,
            name: None,
        }
    }

    /// `pin_required` for a card just read starts a PIN entry (blue
    /// "PIN, please" at the reader, no denial yet); `#` asks again with
    /// the digits; silence denies `pin_required` after the timeout.
    #[test]
    fn a_card_that_needs_its_pin_waits_for_the_keypad() {
        let now = crate::test_clock::epoch();
        let mut b = building();
        let read = |b: &mut Building| {
            b.handle(
                now,
                BuildingInput::Bus {
                    bus: "bus0".into(),
                    event: BusEvent::Card {
                        address: 1,
                        card: card(),
                    },
                },
            );
            drain(b);
            b.handle(
                now,
                BuildingInput::Verdict {
                    door: "side-entrance".into(),
                    reader: "side-in".into(),
                    verdict: Verdict::Deny {
                        credential: None,
                        reason: DenyReason::PinRequired,
                    },
                },
            );
            drain(b)
        };
        let actions = read(&mut b);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, BuildingAction::Record(EventKind::AccessDenied { .. }))),
            "{actions:?}"
        );
        assert!(
            actions.iter().any(|a| matches!(
                a,
                BuildingAction::Command {
                    command: Command::Led(l),
                    ..
                } if l.iter().any(|l| l.temporary.on_color == LedColor::Blue)
            )),
            "{actions:?}"
        );
        let keys = |b: &mut Building, digits: &[u8]| {
            b.handle(
                now + Duration::from_secs(2),
                BuildingInput::Bus {
                    bus: "bus0".into(),
                    event: BusEvent::Keypad {
                        address: 1,
                        keys: crate::osdp::message::KeypadData {
                            reader: 0,
                            digits: digits.to_vec(),
                        },
                    },
                },
            );
            drain(b)
        };
        assert!(keys(&mut b, b"12").is_empty());
        assert_eq!(
            keys(&mut b, b"30\x0d"),
            vec![BuildingAction::Decide {
                door: "side-entrance".into(),
                reader: "side-in".into(),
                direction: Direction::In,
                card: card(),
                pin: Some("1230".into()),
            }]
        );
        // Keys with no entry waiting are nobody's.
        assert!(keys(&mut b, b"1\x0d").is_empty());

        read(&mut b);
        assert!(b.poll_timeout().is_some());
        b.handle_timeout(now + crate::site::pin_entry::PIN_TIMEOUT);
        let actions = drain(&mut b);
        assert!(
            actions.iter().any(|a| matches!(
                a,
                BuildingAction::Record(EventKind::AccessDenied {
                    reason: DenyReason::PinRequired,
                    ..
                })
            )),
            "{actions:?}"
        );
    }

    #[test]
    fn a_card_asks_for_a_decision_and_a_grant_pulses_the_strike_with_green() {
        let now = crate::test_clock::epoch();
        let mut b = building();
        b.handle(
            now,
            BuildingInput::Bus {
                bus: "bus0".into(),
                event: BusEvent::Card {
                    address: 1,
                    card: card(),
                },
            },
        );
        let actions = drain(&mut b);
        assert_eq!(
            actions,
            vec![BuildingAction::Decide {
                door: "side-entrance".into(),
                reader: "side-in".into(),
                direction: Direction::In,
                card: card(),
                pin: None,
            }]
        );
        b.handle(
            now,
            BuildingInput::Verdict {
                door: "side-entrance".into(),
                reader: "side-in".into(),
                verdict: grant(),
            },
        );
        let actions = drain(&mut b);
        assert_eq!(
            outs(&actions),
            vec![(1, 0, OutputAction::TimedOn, 50)],
            "timed 5 s release at the PD"
        );
        assert_eq!(led_colors(&actions), vec![LedColor::Green]);
        assert!(
            actions.contains(&BuildingAction::Record(EventKind::AccessGranted {
                door: "side-entrance".into(),
                reader: "side-in".into(),
                credential: "h10301:42:1001".into(),
            }))
        );
    }

    #[test]
    fn a_deny_shows_red_and_never_touches_the_strike() {
        let now = crate::test_clock::epoch();
        let mut b = building();
        let verdict = Verdict::Deny {
            credential: Some("h10301:42:1005".parse().unwrap()),
            reason: DenyReason::Blocked,
        };
        b.handle(
            now,
            BuildingInput::Verdict {
                door: "side-entrance".into(),
                reader: "side-in".into(),
                verdict,
            },
        );
        let actions = drain(&mut b);
        assert!(outs(&actions).is_empty());
        assert_eq!(led_colors(&actions), vec![LedColor::Red]);
        assert!(actions.iter().any(|a| matches!(a, BuildingAction::Record(EventKind::AccessDenied { reason, .. }) if *reason == DenyReason::Blocked)));
    }

    #[test]
    fn contact_opening_without_grant_is_door_forced() {
        let now = crate::test_clock::epoch();
        let mut b = building();
        let report = |v: Vec<u8>| BuildingInput::Bus {
            bus: "bus0".into(),
            event: BusEvent::Inputs {
                address: 1,
                inputs: v,
            },
        };
        b.handle(now, report(vec![0, 0]));
        assert!(
            drain(&mut b).is_empty(),
            "a closed door at start is no news"
        );
        b.handle(now + Duration::from_secs(1), report(vec![1, 0]));
        let actions = drain(&mut b);
        assert!(
            actions.contains(&BuildingAction::Record(EventKind::DoorForced {
                door: "side-entrance".into()
            }))
        );
        assert!(outs(&actions).is_empty());
    }

    #[test]
    fn exit_button_releases_without_an_access_event() {
        let now = crate::test_clock::epoch();
        let mut b = building();
        let report = |v: Vec<u8>| BuildingInput::Bus {
            bus: "bus0".into(),
            event: BusEvent::Inputs {
                address: 1,
                inputs: v,
            },
        };
        b.handle(now, report(vec![0, 0]));
        b.handle(now, report(vec![0, 1]));
        let actions = drain(&mut b);
        assert_eq!(outs(&actions).len(), 1);
        assert!(
            actions.contains(&BuildingAction::Record(EventKind::ExitRequest {
                door: "side-entrance".into()
            }))
        );
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, BuildingAction::Record(EventKind::AccessGranted { .. })))
        );
    }

    #[test]
    fn revolving_door_releases_one_rotation_per_grant() {
        let now = crate::test_clock::epoch();
        let mut b = building();
        b.handle(
            now,
            BuildingInput::Revolving {
                door: "main-revolving".into(),
                input: RevolvingInput::SetMode(RevolvingMode::CardholdersOnly),
            },
        );
        drain(&mut b);
        // Two different cardholders badge one after the other.
        for credential in ["h10301:42:1001", "h10301:42:1002"] {
            let verdict = Verdict::Grant {
                credential: credential.parse().unwrap(),
                extended: false,
                lockdown_exempt: false,
                name: None,
            };
            b.handle(
                now,
                BuildingInput::Verdict {
                    door: "main-revolving".into(),
                    reader: "main-in".into(),
                    verdict,
                },
            );
        }
        let actions = drain(&mut b);
        // Timed at the PD for the grant's passage window (10 s): a gateway
        // that dies now never leaves the door turning for everyone.
        assert_eq!(
            (outs(&actions)[0].2, outs(&actions)[0].3),
            (OutputAction::TimedOn, 100),
            "in-direction release on, timed"
        );
        let rotate = |v: Vec<u8>| BuildingInput::Bus {
            bus: "bus0".into(),
            event: BusEvent::Inputs {
                address: 3,
                inputs: v,
            },
        };
        b.handle(now, rotate(vec![0, 0]));
        // First passage: the second grant keeps rotation enabled.
        b.handle(now + Duration::from_secs(2), rotate(vec![1, 0]));
        b.handle(now + Duration::from_secs(2), rotate(vec![0, 0]));
        let after_first = drain(&mut b);
        let last_in =
            |actions: &[BuildingAction]| outs(actions).into_iter().rfind(|o| o.1 == 0).map(|o| o.2);
        assert_ne!(
            last_in(&after_first),
            Some(OutputAction::PermanentOffAbortTimed),
            "{after_first:?}"
        );
        // Second passage: queue empty, rotation off.
        b.handle(now + Duration::from_secs(4), rotate(vec![1, 0]));
        let after_second = drain(&mut b);
        assert_eq!(
            last_in(&after_second),
            Some(OutputAction::PermanentOffAbortTimed),
            "{after_second:?}"
        );
    }

    #[test]
    fn a_pd_coming_online_gets_its_outputs_locked() {
        let now = crate::test_clock::epoch();
        let mut b = building();
        let online = BusEvent::Online {
            address: 3,
            secure: true,
            identity: None,
            capabilities: vec![],
        };
        b.handle(
            now,
            BuildingInput::Bus {
                bus: "bus0".into(),
                event: online,
            },
        );
        let actions = drain(&mut b);
        let locks = outs(&actions);
        assert_eq!(
            locks,
            vec![
                (3, 0, OutputAction::PermanentOffAbortTimed, 0),
                (3, 1, OutputAction::PermanentOffAbortTimed, 0)
            ]
        );
        assert!(
            actions.contains(&BuildingAction::Record(EventKind::PdOnline {
                bus: "bus0".into(),
                address: 3,
                secure: true
            }))
        );
    }

    /// A PD with a fire-alarm input is asked for its input status when it
    /// comes online (the kept alarm must meet the true level), and its
    /// first report is news either way; a PD without one is not asked.
    #[test]
    fn a_fire_alarm_pd_is_asked_for_its_inputs_when_it_comes_online() {
        let now = crate::test_clock::epoch();
        let mut b = building().with_fire_alarms(vec![FireAlarmWiring {
            id: "panel".into(),
            input: InputRef {
                pd: pd(5),
                input: 2,
                active_high: true,
            },
            releases: vec!["lab".into()],
        }]);
        let online = |address| BuildingInput::Bus {
            bus: "bus0".into(),
            event: BusEvent::Online {
                address,
                secure: true,
                identity: None,
                capabilities: vec![],
            },
        };
        let asked = |actions: &[BuildingAction], address: u8| {
            actions.iter().any(|a| {
                matches!(a, BuildingAction::Command { pd, command: Command::InputStatus }
                    if pd.address == address)
            })
        };
        b.handle(now, online(5));
        assert!(asked(&drain(&mut b), 5));
        b.handle(now, online(3));
        assert!(!asked(&drain(&mut b), 3));
        // The first report says inactive: the kept alarm is cleared.
        b.handle(
            now,
            BuildingInput::Bus {
                bus: "bus0".into(),
                event: BusEvent::Inputs {
                    address: 5,
                    inputs: vec![0, 0, 0],
                },
            },
        );
        assert!(drain(&mut b).contains(&BuildingAction::FireAlarm {
            input: "panel".into(),
            releases: vec!["lab".into()],
            active: false,
        }));
    }
}
