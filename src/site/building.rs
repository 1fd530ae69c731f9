//! The building core, sans-IO: routes bus events to doors and door actions
//! to PDs. Card read → [`BuildingAction::Decide`] (the owner asks the rules
//! engine and answers with [`BuildingInput::Verdict`]) → door machine →
//! strike/rotation OUT commands, reader feedback and journal records.
//! Input edges (door contact, exit button, rotation sensors) are derived
//! from the PD's input reports.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::door::{
    CredentialId, DenyReason, Direction, DoorAction, DoorEvent, DoorInput, Feedback, OverrideState,
    PassageCause, RevolvingAction, RevolvingConfig, RevolvingDoor, RevolvingEvent, RevolvingInput,
    Rotation, StandardConfig, StandardDoor, Strike,
};
use crate::journal::EventKind;
use crate::osdp::message::{Command, RawCard};
use crate::osdp::{BusEvent, OfflineReason};

use super::modes::{DoorClass, ModePlanner, StandingMode};
use super::outputs::{self, FeedbackTable, StrikeWiring};

/// A PD: bus name and address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PdRef {
    /// Bus name from the config.
    pub bus: String,
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
    pub id: String,
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
    pub id: String,
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

/// The rules engine's answer for one card read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let them in.
    Grant {
        /// Credential key.
        credential: String,
        /// Extended strike time.
        extended: bool,
        /// Admitted in lockdown.
        lockdown_exempt: bool,
    },
    /// Keep them out.
    Deny {
        /// Credential key, when the card could be parsed.
        credential: Option<String>,
        /// Why.
        reason: DenyReason,
    },
}

/// Inputs to the building.
#[derive(Debug, Clone)]
pub enum BuildingInput {
    /// Something a bus reported.
    Bus {
        /// Bus name.
        bus: String,
        /// The event.
        event: BusEvent,
    },
    /// The rules engine's answer to a [`BuildingAction::Decide`].
    Verdict {
        /// Door id.
        door: String,
        /// Reader id.
        reader: String,
        /// The answer.
        verdict: Verdict,
    },
    /// A mode, override or exit request for a standard door (schedules,
    /// remote commands, the admin page).
    Door {
        /// Door id.
        door: String,
        /// What to do.
        input: DoorInput,
    },
    /// A mode or remote release for a revolving door.
    Revolving {
        /// Door id.
        door: String,
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
        door: String,
        /// Reader id.
        reader: String,
        /// Which way.
        direction: Direction,
        /// The raw card.
        card: RawCard,
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
    /// A granted person went through a door: the owner updates the
    /// presence list (it knows office hours and names).
    Passage {
        /// Door id.
        door: String,
        /// Who.
        credential: String,
        /// Which way.
        direction: Direction,
    },
}

enum Machine {
    Standard(StandardDoor),
    Revolving(RevolvingDoor),
}

struct Door {
    wiring: DoorWiring,
    machine: Machine,
    /// The reader of the verdict being handled (for event attribution).
    last_reader: String,
}

/// What a door is doing now (status page, control socket, uplink status).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DoorState {
    /// Door id.
    pub id: String,
    /// `standard` or `revolving`.
    pub kind: &'static str,
    /// Standing mode (contract name).
    pub mode: String,
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
    /// Last input report per PD, for edge detection.
    inputs: HashMap<PdRef, Vec<u8>>,
    actions: VecDeque<BuildingAction>,
    feedback: FeedbackTable,
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
                    last_reader: String::new(),
                }
            })
            .collect();
        Self {
            doors,
            inputs: HashMap::new(),
            actions: VecDeque::new(),
            feedback: FeedbackTable::default(),
        }
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
        for door in &self.doors {
            for out in [&door.wiring.lock, &door.wiring.release_out]
                .into_iter()
                .flatten()
            {
                self.actions.push_back(BuildingAction::Command {
                    pd: out.pd.clone(),
                    command: outputs::lock(out.wiring),
                });
            }
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
                    kind: "standard",
                    mode: StandingMode::Standard(m.mode()).as_str().into(),
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
                        kind: "revolving",
                        mode: StandingMode::Revolving(m.mode()).as_str().into(),
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

    /// The door ids, in config order.
    pub fn door_ids(&self) -> impl Iterator<Item = &str> {
        self.doors.iter().map(|d| d.wiring.id.as_str())
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
        self.doors.iter().position(|d| d.wiring.id == id)
    }

    /// Call when [`Building::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
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
            .min()
    }

    /// The next action for the owner.
    pub fn poll_action(&mut self) -> Option<BuildingAction> {
        self.actions.pop_front()
    }

    fn bus_event(&mut self, now: Instant, bus: String, event: BusEvent) {
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
                        self.actions.push_back(BuildingAction::Decide {
                            door: door.wiring.id.clone(),
                            reader: r.id.clone(),
                            direction: r.direction,
                            card: card.clone(),
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
            }
            BusEvent::Offline { address, reason } => {
                let reason = match reason {
                    OfflineReason::NoReply => "no_reply".to_owned(),
                    OfflineReason::Security(alarm) => format!("security: {alarm:?}"),
                };
                self.record(EventKind::PdOffline {
                    bus,
                    address,
                    reason,
                });
            }
            BusEvent::SecurityAlarm { address, alarm } => {
                self.record(EventKind::SecurityAlarm {
                    bus,
                    address,
                    alarm: format!("{alarm:?}"),
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
                Machine::Revolving(d) => match d.rotation() {
                    Some(Rotation::In) => [Some(None), None],
                    Some(Rotation::Out) => [None, Some(None)],
                    Some(Rotation::Both) => [Some(None), Some(None)],
                    None => [None, None],
                },
            };
            for (out, release) in outs.into_iter().zip(released) {
                let Some(out) = out.as_ref().filter(|o| &o.pd == pd) else {
                    continue;
                };
                let command = match release {
                    Some(until) if until.is_none_or(|t| t > now) => {
                        outputs::release(out.wiring, now, until)
                    }
                    _ => outputs::lock(out.wiring),
                };
                commands.push((out.pd.clone(), command));
            }
        }
        for (pd, command) in commands {
            self.command(pd, command);
        }
    }

    fn input_edges(&mut self, now: Instant, pd: &PdRef, before: Option<&[u8]>, after: &[u8]) {
        let level = |inputs: Option<&[u8]>, r: &InputRef| {
            inputs
                .and_then(|v| v.get(usize::from(r.input)))
                .map(|&b| (b != 0) == r.active_high)
        };
        for i in 0..self.doors.len() {
            let wiring = &self.doors[i].wiring;
            let mut door_inputs = Vec::new();
            let mut rotations = Vec::new();
            let watched = [
                (&wiring.contact, 0u8),
                (&wiring.exit_button, 1),
                (&wiring.rotation_in, 2),
                (&wiring.rotation_out, 3),
            ];
            for (input, role) in watched {
                let Some(r) = input.as_ref().filter(|r| &r.pd == pd) else {
                    continue;
                };
                let Some(active) = level(Some(after), r) else {
                    continue;
                };
                let was_active = match level(before, r) {
                    Some(was) => was,
                    // First report: an open door is news (it may be forced),
                    // and so is a rotation pulse (sensors rest inactive and
                    // PDs report inputs only on change). A pressed exit
                    // button without a seen edge is not: it must not
                    // release a door on a stuck or miswired button.
                    None if role != 1 && active => false,
                    None => continue,
                };
                if active == was_active {
                    continue;
                }
                match (role, active) {
                    (0, true) => door_inputs.push(DoorInput::ContactOpened),
                    (0, false) => door_inputs.push(DoorInput::ContactClosed),
                    (1, true) => door_inputs.push(DoorInput::ExitRequest),
                    (2, true) => rotations.push(Direction::In),
                    (3, true) => rotations.push(Direction::Out),
                    _ => {}
                }
            }
            for input in door_inputs {
                if let Machine::Standard(d) = &mut self.doors[i].machine {
                    d.handle(now, input);
                }
            }
            for direction in rotations {
                if let Machine::Revolving(d) = &mut self.doors[i].machine {
                    d.handle(now, RevolvingInput::Rotated { direction });
                }
            }
            self.drain_door(now, i);
        }
    }

    fn verdict(&mut self, now: Instant, door_id: &str, reader: String, verdict: Verdict) {
        let Some(i) = self.door_index(door_id) else {
            return;
        };
        let direction = self.doors[i]
            .wiring
            .readers
            .iter()
            .find(|r| r.id == reader)
            .map_or(Direction::In, |r| r.direction);
        self.doors[i].last_reader = reader;
        match (&mut self.doors[i].machine, verdict) {
            (
                Machine::Standard(d),
                Verdict::Grant {
                    credential,
                    extended,
                    lockdown_exempt,
                },
            ) => d.handle(
                now,
                DoorInput::Granted {
                    credential: CredentialId(credential),
                    extended,
                    exempt: lockdown_exempt,
                },
            ),
            (Machine::Standard(d), Verdict::Deny { credential, reason }) => d.handle(
                now,
                DoorInput::Denied {
                    credential: credential.map(CredentialId),
                    reason,
                },
            ),
            (Machine::Revolving(d), Verdict::Grant { credential, .. }) => d.handle(
                now,
                RevolvingInput::Granted {
                    credential: CredentialId(credential),
                    direction,
                },
            ),
            (Machine::Revolving(_), Verdict::Deny { credential, reason }) => {
                let feedback = match reason {
                    DenyReason::Lockdown => Feedback::Lockdown,
                    DenyReason::RulesTooOld => Feedback::RulesTooOld,
                    _ => Feedback::Deny,
                };
                self.feedback(i, feedback);
                let door = door_id.to_owned();
                let reader = self.doors[i].last_reader.clone();
                self.record(EventKind::AccessDenied {
                    door,
                    reader,
                    credential,
                    reason: reason.as_str().to_owned(),
                });
            }
        }
        self.drain_door(now, i);
    }

    fn drain_door(&mut self, now: Instant, i: usize) {
        loop {
            let door = &mut self.doors[i];
            let id = door.wiring.id.clone();
            let reader = door.last_reader.clone();
            match &mut door.machine {
                Machine::Standard(d) => {
                    let Some(action) = d.poll_action() else {
                        return;
                    };
                    match action {
                        DoorAction::ReleaseStrike { until } => {
                            if let Some(out) = door.wiring.lock.clone() {
                                self.command(out.pd, outputs::release(out.wiring, now, until));
                            }
                        }
                        DoorAction::LockStrike => {
                            if let Some(out) = door.wiring.lock.clone() {
                                self.command(out.pd, outputs::lock(out.wiring));
                            }
                        }
                        DoorAction::Feedback(f) => self.feedback(i, f),
                        DoorAction::Event(e) => {
                            if let DoorEvent::EntryOpened { credential } = &e {
                                let direction = door
                                    .wiring
                                    .readers
                                    .iter()
                                    .find(|r| r.id == reader)
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
                        RevolvingAction::EnableRotation { rotation } => {
                            self.rotation(now, i, Some(rotation))
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

    /// Rotation releases are levels: on until the door core says otherwise.
    fn rotation(&mut self, now: Instant, i: usize, rotation: Option<Rotation>) {
        let wiring = &self.doors[i].wiring;
        let (allow_in, allow_out) = match rotation {
            Some(Rotation::In) => (true, false),
            Some(Rotation::Out) => (false, true),
            Some(Rotation::Both) => (true, true),
            None => (false, false),
        };
        let mut commands = Vec::new();
        for (out, allow) in [(&wiring.lock, allow_in), (&wiring.release_out, allow_out)] {
            if let Some(out) = out {
                let command = if allow {
                    outputs::release(out.wiring, now, None)
                } else {
                    outputs::lock(out.wiring)
                };
                commands.push((out.pd.clone(), command));
            }
        }
        for (pd, command) in commands {
            self.command(pd, command);
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

fn standard_event(door: &str, reader: &str, event: DoorEvent) -> Option<EventKind> {
    let door = door.to_owned();
    Some(match event {
        DoorEvent::Granted { credential, .. } => EventKind::AccessGranted {
            door,
            reader: reader.to_owned(),
            credential: credential.0,
        },
        DoorEvent::GrantRefusedLockdown { credential } => EventKind::AccessDenied {
            door,
            reader: reader.to_owned(),
            credential: Some(credential.0),
            reason: DenyReason::Lockdown.as_str().to_owned(),
        },
        DoorEvent::Denied { credential, reason } => EventKind::AccessDenied {
            door,
            reader: reader.to_owned(),
            credential: credential.map(|c| c.0),
            reason: reason.as_str().to_owned(),
        },
        DoorEvent::Rex => EventKind::ExitRequest { door },
        DoorEvent::Forced => EventKind::DoorForced { door },
        DoorEvent::HeldOpenPreAlarm => EventKind::DoorHeldOpen {
            door,
            stage: "pre_alarm".into(),
        },
        DoorEvent::HeldOpen => EventKind::DoorHeldOpen {
            door,
            stage: "alarm".into(),
        },
        DoorEvent::Closed { .. } => EventKind::DoorClosed { door },
        DoorEvent::ModeChanged { mode, override_ } => EventKind::DoorModeChanged {
            door,
            mode: match override_ {
                Some(o) => match o.state {
                    OverrideState::Unlocked => "override_unlocked".to_owned(),
                    OverrideState::Locked => "override_locked".to_owned(),
                },
                None => StandingMode::Standard(mode).as_str().to_owned(),
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

fn revolving_event(door: &str, reader: &str, event: RevolvingEvent) -> Option<EventKind> {
    let door = door.to_owned();
    Some(match event {
        RevolvingEvent::Queued {
            credential: Some(credential),
            ..
        }
        | RevolvingEvent::GrantDuringFreeRotation { credential, .. } => EventKind::AccessGranted {
            door,
            reader: reader.to_owned(),
            credential: credential.0,
        },
        RevolvingEvent::GrantRefusedLocked { credential } => EventKind::AccessDenied {
            door,
            reader: reader.to_owned(),
            credential: Some(credential.0),
            reason: DenyReason::Lockdown.as_str().to_owned(),
        },
        RevolvingEvent::UnauthorisedRotation { .. } => EventKind::DoorForced { door },
        RevolvingEvent::ModeChanged { mode, .. } => EventKind::DoorModeChanged {
            door,
            mode: StandingMode::Revolving(mode).as_str().to_owned(),
        },
        RevolvingEvent::FreeRotationExpired { reverted_to } => EventKind::DoorModeChanged {
            door,
            mode: StandingMode::Revolving(reverted_to).as_str().to_owned(),
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
            credential: "h10301:42:1001".into(),
            extended: false,
            lockdown_exempt: false,
        }
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
            credential: Some("h10301:42:1005".into()),
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
        assert!(actions.iter().any(|a| matches!(a, BuildingAction::Record(EventKind::AccessDenied { reason, .. }) if reason == "blocked")));
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
                credential: credential.into(),
                extended: false,
                lockdown_exempt: false,
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
        assert_eq!(
            outs(&actions)[0].2,
            OutputAction::PermanentOnAbortTimed,
            "in-direction release on"
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
}
