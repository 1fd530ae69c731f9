//! The gateway core, sans-IO: one building's doors, their standing modes,
//! remote actions, presence, trusted time and the decision step, behind the
//! crate's one contract — [`Gateway::handle`] with `now` and an input,
//! [`Gateway::poll_output`] until `None`, [`Gateway::poll_timeout`] for the
//! one deadline (a monotonic instant).
//!
//! The driver only moves bytes, time and records. Its duties, in the order
//! the outputs come:
//! - [`Output::Decided`]: count it (metrics); pushed as the card is
//!   decided, so before the commit of the same input;
//! - [`Output::Commit`]: append the records and write the standing state in
//!   **one flush**, before anything that follows is acted on — no relay
//!   moves for an event that is not on disk, and what decides a door after
//!   a restart is on disk with the event that changed it;
//! - [`Output::Command`]: send to the PD;
//! - [`Output::Reply`]: answer whoever asked for a remote action.
//!
//! A restart is [`Gateway::new`] with the last [`StandingState`] written:
//! every door starts locked, then lockdown, remote modes, overrides and
//! presence are restored before the first PD is driven; what expired while
//! the gateway was down reverts, with its events.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use super::areas::{self, Finding, MusterLine};
use super::building::{Building, BuildingAction, BuildingInput, PdRef};
use super::clock::{ClockAlarm, Reading, TrustedClock};
use super::decision::{self, Presented, Rules, Situation, Verdict, When};
use super::interlock::{Interlocks, Served, Waiter};
use super::modes::{DoorClass, ModePlanner, StandingMode};
use super::outputs::FeedbackTable;
use super::remote::{RemoteAction, RemoteError};
use super::standing::{
    BootStamp, FirstIn, HeldBy, StandingState, TimeAnchor, TimedMode, TimedOverride, VERSION,
};
use crate::action::ActionRecord;
use crate::door::{
    CredentialId, Direction, DoorInput, Override, OverrideState, Passage, Presence, PresenceChange,
    PresenceEvent, RevolvingInput,
};
use crate::event::{EventKind, Withheld};
use crate::ids::{BusId, DoorId, InputId, ReaderId};
use crate::osdp::BusEvent;
use crate::osdp::message::{Command, RawCard};
use crate::rules::{Card, DenyReason};

/// The two clocks, read once by the driver per input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time: deadlines.
    pub mono: Instant,
    /// The system clock: checked against the trusted clock before use.
    pub system: Timestamp,
    /// Where `mono` stands on this boot, when known: persisted ends and
    /// the beacon anchor are stamped with it, so that a restart on the
    /// same boot knows how much time passed whatever the wall clock says.
    pub boot: Option<Boot>,
}

/// A position on one boot's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boot {
    /// The kernel's boot id.
    pub id: u128,
    /// Time since that boot began.
    pub since: Duration,
}

impl Now {
    /// The boot stamp of `instant` (a deadline or a past moment), when
    /// the boot is known.
    fn stamp(&self, instant: Instant) -> Option<BootStamp> {
        let boot = self.boot?;
        let since = if instant >= self.mono {
            boot.since.checked_add(instant - self.mono)?
        } else {
            boot.since.checked_sub(self.mono - instant)?
        };
        Some(BootStamp {
            boot: format!("{:032x}", boot.id),
            ms: u64::try_from(since.as_millis()).ok()?,
        })
    }

    /// The instant of a stamp taken on this boot; `None` for another boot
    /// (a reboot: how much time passed is not known).
    fn instant(&self, stamp: &BootStamp) -> Option<Instant> {
        let boot = self.boot?;
        if u128::from_str_radix(&stamp.boot, 16).ok()? != boot.id {
            return None;
        }
        let at = Duration::from_millis(stamp.ms);
        if at >= boot.since {
            self.mono.checked_add(at - boot.since)
        } else {
            self.mono.checked_sub(boot.since - at)
        }
    }
}

/// Who asked for a remote action, so the answer finds them.
pub type Ticket = u64;

/// Inputs to the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// Something a bus reported.
    Bus {
        /// Which bus.
        bus: BusId,
        /// What.
        event: BusEvent,
    },
    /// A remote door action (central, admin page, control socket).
    Remote {
        /// Comes back with the [`Output::Reply`].
        ticket: Ticket,
        /// Who asked (`central`, `admin:<user>`, `control-socket`).
        source: String,
        /// The signed command's id, when it came from central.
        command: Option<String>,
        /// The action.
        action: RemoteAction,
    },
    /// The rules changed: re-read the door-mode schedules now.
    RulesChanged,
    /// Records from elsewhere (rules applied or refused, uplink, admin).
    Record(Vec<EventKind>),
    /// New reader feedback patterns (config reload).
    SetFeedback(FeedbackTable),
    /// A time vouched for by a signature (snapshot, delta or command issue
    /// time, or a retained time beacon): moves the trusted floor.
    SignedTime(Timestamp),
    /// A live time beacon from central, verified: bounds "now" both ways.
    Beacon {
        /// The beacon's signed time.
        at: Timestamp,
        /// When it arrived (monotonic, read by the driver that received
        /// it: time spent queued after that must not shift the anchor).
        came: Instant,
    },
    /// An operator vouches for the system clock (admin page), by name.
    ConfirmTime {
        /// Who (`admin:<user>`, `control-socket`).
        by: String,
    },
    /// [`Gateway::poll_timeout`] has passed.
    Timeout,
}

/// Records and standing state to make durable in one flush.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The trusted time to stamp the records with.
    pub at: Timestamp,
    /// Journal records, in order.
    pub records: Vec<EventKind>,
    /// The standing state, when it changed: whole, or the presence lines
    /// that changed when nothing else did.
    pub state: Option<StandingChange>,
}

/// What changed of the standing state in one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandingChange {
    /// The whole state (a door's lockdown, mode, override or the time
    /// floor changed).
    Whole(Box<StandingState>),
    /// Only these presence lines changed: a passage costs its line, not
    /// the list ([`Gateway::standing`] gives the whole when the
    /// driver wants to write it whole again).
    Presence(Vec<PresenceChange>),
}

/// What the driver must do, in order.
#[derive(Debug, Clone)]
pub enum Output {
    /// Make these durable before acting on anything after it.
    Commit(Commit),
    /// Send this command to this PD.
    Command {
        /// The PD.
        pd: PdRef,
        /// The command.
        command: Command,
    },
    /// The answer to an [`Input::Remote`] (after its record's commit).
    Reply {
        /// The input's ticket.
        ticket: Ticket,
        /// Accepted, or refused with the reason.
        result: Result<(), RemoteError>,
    },
    /// A card was decided (for counters).
    Decided {
        /// Where.
        door: DoorId,
        /// `None` for a grant.
        deny: Option<DenyReason>,
    },
}

/// Something that counts decisions (the admin port's metrics); the daemon
/// reports to it without knowing what it is.
pub trait DecisionObserver: Send + Sync {
    /// One decision; `None` for a grant.
    fn decided(&self, deny: Option<DenyReason>);
}

/// The gateway core of one building.
pub struct Gateway {
    building: Building,
    planner: ModePlanner,
    presence: Presence,
    clock: TrustedClock,
    rules: Box<dyn Rules>,
    outputs: VecDeque<Output>,
    records: Vec<EventKind>,
    commands: Vec<(PdRef, Command)>,
    replies: Vec<Output>,
    /// The standing state last handed out in a commit.
    persisted: StandingState,
    /// Wall-clock ends of the overrides in force, fixed when first seen so
    /// that the persisted state does not drift with every reading.
    override_walls: HashMap<DoorId, (Instant, Timestamp)>,
    /// The same for remote modes.
    remote_walls: HashMap<DoorId, (Instant, Timestamp)>,
    /// The trusted time of the input being handled.
    wall: Timestamp,
    /// The clock reading of the input being handled.
    reading: Reading,
    /// Doors whose scheduled release is withheld, and why (a time not yet
    /// confirmed, a busy airlock): journaled once per door and reason
    /// until it applies.
    withheld: std::collections::BTreeMap<DoorId, Withheld>,
    /// The grants that started a `first_person_in` scheduled mode, by
    /// door (standing state: it decides what the door does).
    first_in: std::collections::BTreeMap<DoorId, FirstIn>,
    /// Doors whose `first_person_in` mode is due and waits for a grant
    /// (journaled once per door until it starts or the window closes).
    awaiting_first_in: std::collections::BTreeSet<DoorId>,
    /// The trusted time the schedules were last read at: a closure is
    /// seen by the minute's read; after a gap (a restart, a step) the
    /// first persons in are checked back to their grants.
    modes_read_at: Option<Timestamp>,
    /// The floor and anchor as last persisted, and when: a beacon every
    /// half minute moves both, and the whole state is not rewritten for it
    /// more than once an hour (a signed snapshot's floor is at once).
    time_persisted: (Option<Timestamp>, Option<TimeAnchor>, Option<Instant>),
    /// A signed issue time moved the floor since the last commit.
    floor_signed: bool,
    /// The next wall-clock minute (schedules are minute-grained) and the
    /// next remote-mode expiry, as monotonic instants.
    next_minute: Instant,
    next_expiry: Option<Instant>,
    /// The interlock groups and the grants and exit requests waiting at
    /// them.
    interlocks: Interlocks,
    /// Fire alarms whose input reads inactive, cleared at the instant
    /// given unless it reads active again first.
    fire_clearing: std::collections::BTreeMap<InputId, (Instant, Vec<DoorId>)>,
    /// Readers whose waiting card already raised its duress alarm.
    duress_waiting: std::collections::BTreeSet<ReaderId>,
    /// Doors whose releasing override is being restored at start: their
    /// airlocks are theirs while the modes are first applied.
    restoring_releases: Vec<DoorId>,
    /// The last anti-passback forgiveness (persisted).
    forgiven_at: Option<Timestamp>,
    /// Where the sweep for cards the rules no longer know goes on (`None`:
    /// no sweep running); it starts at each rules change.
    sweep: Option<CredentialId>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("building", &self.building)
            .field("wall", &self.wall)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Start the core: every door locked, then `restored` applied (what
    /// expired reverts, with its events). The first outputs are the
    /// commit of the restore and the commands that put every PD's outputs
    /// where the doors now are.
    pub fn new(
        mut building: Building,
        rules: Box<dyn Rules>,
        restored: StandingState,
        now: Now,
    ) -> Self {
        building.lock_all();
        let planner = building.mode_planner();
        let interlocks = Interlocks::new(building.interlocks().to_vec());
        let mut gateway = Self {
            building,
            planner,
            presence: restored.presence.clone(),
            clock: TrustedClock::new(
                restored.trusted_floor,
                restored
                    .time_anchor
                    .as_ref()
                    .and_then(|a| Some((a.at, now.instant(&a.came)?))),
                now.mono,
            ),
            rules,
            outputs: VecDeque::new(),
            records: Vec::new(),
            commands: Vec::new(),
            replies: Vec::new(),
            persisted: restored.clone(),
            override_walls: HashMap::new(),
            remote_walls: HashMap::new(),
            wall: now.system,
            reading: Reading {
                used: now.system,
                earliest: None,
                latest: None,
                trusted: false,
                seen: now.system,
            },
            withheld: std::collections::BTreeMap::new(),
            first_in: restored.first_in.clone(),
            awaiting_first_in: std::collections::BTreeSet::new(),
            modes_read_at: None,
            time_persisted: (restored.trusted_floor, restored.time_anchor.clone(), None),
            floor_signed: false,
            next_minute: now.mono,
            next_expiry: None,
            interlocks,
            duress_waiting: std::collections::BTreeSet::new(),
            fire_clearing: std::collections::BTreeMap::new(),
            restoring_releases: Vec::new(),
            forgiven_at: restored.forgiven_at,
            sweep: None,
        };
        gateway.begin(now);
        gateway.restore(now, restored);
        gateway.finish(now);
        gateway
    }

    /// Feed one input.
    pub fn handle(&mut self, now: Now, input: Input) {
        self.begin(now);
        match input {
            Input::Bus { bus, event } => self
                .building
                .handle(now.mono, BuildingInput::Bus { bus, event }),
            Input::Remote {
                ticket,
                source,
                command,
                action,
            } => self.remote(now, ticket, source, command, action),
            Input::RulesChanged => {
                self.sweep = Some(CredentialId(String::new()));
                self.drop_unknown_locations();
                self.apply_modes(now);
            }
            Input::Record(kinds) => self.records.extend(kinds),
            Input::SetFeedback(table) => self.building.set_feedback(table),
            Input::SignedTime(t) => {
                if self.clock.observe_signed(t, now.mono) {
                    self.floor_signed = true;
                    // It may witness the clock: a withheld release may
                    // start now.
                    self.apply_modes(now);
                } else {
                    self.records
                        .push(EventKind::SignedTimeRefused { issued_at: t });
                }
            }
            Input::Beacon { at, came } => {
                if !self
                    .clock
                    .observe_beacon(at, came.min(now.mono), now.system)
                {
                    self.records
                        .push(EventKind::SignedTimeRefused { issued_at: at });
                }
                // Re-read the clock against the new interval: a withheld
                // release may start now, or the time may turn untrusted.
                self.begin(now);
                self.apply_modes(now);
            }
            Input::ConfirmTime { by } => {
                self.clock.confirm(now.system, now.mono);
                self.records.push(EventKind::ClockConfirmed {
                    by,
                    time: now.system,
                });
                self.begin(now);
                self.apply_modes(now);
            }
            Input::Timeout => {
                self.clear_fire_alarms(now);
                self.building.handle_timeout(now.mono);
                self.apply_modes(now);
                self.drop_unknown_locations();
            }
        }
        self.finish(now);
    }

    /// The next output, in order; `None` when all are out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Input::Timeout`] is due: a door deadline, a long release to
    /// re-send, the next wall-clock minute or a remote-mode expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut at = self.next_minute;
        if let Some(t) = self.building.poll_timeout() {
            at = at.min(t);
        }
        if let Some(t) = self.next_expiry {
            at = at.min(t);
        }
        if let Some(t) = self.interlocks.poll_timeout() {
            at = at.min(t);
        }
        if let Some(t) = self.fire_clearing.values().map(|(t, _)| *t).min() {
            at = at.min(t);
        }
        Some(at)
    }

    /// The fire alarms whose input has read inactive for
    /// [`FIRE_CLEAR_HOLD`]: cleared now, with their event; their doors
    /// return to their modes.
    fn clear_fire_alarms(&mut self, now: Now) {
        let due: Vec<InputId> = self
            .fire_clearing
            .iter()
            .filter(|(_, (t, _))| *t <= now.mono)
            .map(|(i, _)| i.clone())
            .collect();
        for input in due {
            if let Some((_, releases)) = self.fire_clearing.remove(&input) {
                self.records.push(EventKind::FireAlarm {
                    input: input.clone(),
                    active: false,
                    releases: releases.clone(),
                });
                self.planner.set_fire_alarm(&input, &releases, false);
            }
        }
    }

    /// Who is inside `area` (its inner areas included), or everyone on
    /// the list: the muster list.
    pub fn muster(&self, area: Option<&str>) -> Vec<MusterLine> {
        areas::muster(&self.presence, &*self.rules, area)
    }

    /// The interlock groups, each with its doors' states and how many
    /// wait at them (the status page).
    pub fn interlocks(&self) -> Vec<InterlockState> {
        let states = self.building.door_states();
        self.interlocks
            .groups()
            .iter()
            .map(|g| InterlockState {
                id: g.id.clone(),
                doors: g.doors.clone(),
                busy: g
                    .doors
                    .iter()
                    .filter(|d| states.iter().any(|s| s.id == **d && (s.released || s.open)))
                    .cloned()
                    .collect(),
                waiting: self.interlocks.waiting_at(g),
            })
            .collect()
    }

    /// The last anti-passback forgiveness.
    pub fn forgiven_at(&self) -> Option<Timestamp> {
        self.forgiven_at
    }

    /// What every door is doing now.
    pub fn doors(&self) -> Vec<super::DoorState> {
        self.building.door_states()
    }

    /// Who is inside.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    /// The presence list to plant lines in (tests only).
    #[cfg(test)]
    pub(crate) fn presence_for_tests(&mut self) -> &mut Presence {
        &mut self.presence
    }

    /// The trusted time of the last input.
    pub fn trusted_now(&self) -> Timestamp {
        self.wall
    }

    /// The clock reading of the last input: believed, confirmed, the
    /// interval.
    pub fn reading(&self) -> Reading {
        self.reading
    }

    /// The signed time floor.
    pub fn trusted_floor(&self) -> Option<Timestamp> {
        self.clock.floor()
    }

    /// The fire-alarm inputs active now.
    pub fn fire_alarms(&self) -> Vec<InputId> {
        self.planner.fire_alarms().into_iter().collect()
    }

    /// Whether lockdown holds `door` now.
    pub fn is_locked_down(&self, door: &str) -> bool {
        self.planner.is_locked_down(door)
    }

    /// The whole standing state as of the last commit handed out (what
    /// the driver writes when it writes the state whole).
    pub fn standing(&self) -> StandingState {
        StandingState {
            presence: self.presence.clone(),
            ..self.persisted.clone()
        }
    }

    fn begin(&mut self, now: Now) {
        let (reading, alarm) = self.clock.now(now.system, now.mono);
        self.reading = reading;
        self.wall = reading.used;
        // A remote mode whose end has come (also by a clock step) reverts
        // before anything is decided under it.
        if self.planner.next_expiry().is_some_and(|t| t <= now.mono) {
            self.apply_modes(now);
        }
        self.forgive_if_due();
        if let Some(alarm) = alarm {
            self.records.push(match alarm {
                ClockAlarm::Untrusted { reason, seen, used } => EventKind::ClockUntrusted {
                    reason,
                    seen,
                    used,
                    earliest: reading.earliest,
                    latest: reading.latest,
                },
                ClockAlarm::Jumped { seen, expected } => EventKind::ClockJumped { seen, expected },
                ClockAlarm::Trusted { seen } => EventKind::ClockTrusted { seen },
            });
        }
    }

    fn restore(&mut self, now: Now, state: StandingState) {
        let known = |planner: &ModePlanner, d: &DoorId| planner.class(d).is_some();
        let lockdown: Vec<DoorId> = state
            .lockdown
            .iter()
            .filter(|d| known(&self.planner, d))
            .cloned()
            .collect();
        if !lockdown.is_empty() {
            self.planner.set_lockdown(&lockdown, true);
        }
        // A fire alarm kept over the restart holds its doors released until
        // its input reads inactive (the building reports the first level).
        for input in &state.fire_alarms {
            if let Some(doors) = self.building.fire_alarm_doors(input) {
                let doors = doors.to_vec();
                self.planner.set_fire_alarm(input, &doors, true);
            }
        }
        let mut reverted = Vec::new();
        for (
            door,
            TimedMode {
                mode,
                until,
                boot_until,
            },
        ) in &state.remote_modes
        {
            let Some(class) = self.planner.class(door) else {
                continue;
            };
            let Ok(mode) = class.parse_mode(mode.as_str()) else {
                continue;
            };
            match self.restored_end(now, *until, boot_until.as_ref(), mode.releases()) {
                Some(at) => {
                    self.remote_walls.insert(door.clone(), (at, *until));
                    self.planner.set_remote(door, mode, at);
                }
                None => reverted.push(door.clone()),
            }
        }
        self.restoring_releases = state
            .overrides
            .iter()
            .filter(|(_, o)| matches!(o.state, HeldBy::Unlocked | HeldBy::FreeRotation))
            .map(|(door, _)| door.clone())
            .collect();
        self.apply_modes(now);
        self.restoring_releases.clear();
        for (door, o) in &state.overrides {
            let Some(class) = self.planner.class(door) else {
                continue;
            };
            let releases = matches!(o.state, HeldBy::Unlocked | HeldBy::FreeRotation);
            let Some(until) = self.restored_end(now, o.until, o.boot_until.as_ref(), releases)
            else {
                reverted.push(door.clone());
                continue;
            };
            let input = match (class, o.state) {
                (DoorClass::Standard, HeldBy::Unlocked) => BuildingInput::Door {
                    door: door.clone(),
                    input: DoorInput::SetOverride(Override {
                        state: OverrideState::Unlocked,
                        until,
                    }),
                },
                (DoorClass::Standard, HeldBy::Locked) => BuildingInput::Door {
                    door: door.clone(),
                    input: DoorInput::SetOverride(Override {
                        state: OverrideState::Locked,
                        until,
                    }),
                },
                (DoorClass::Revolving, HeldBy::FreeRotation) => BuildingInput::Revolving {
                    door: door.clone(),
                    input: RevolvingInput::ReleaseFreeRotation { until },
                },
                _ => continue,
            };
            self.override_walls.insert(door.clone(), (until, o.until));
            self.building.handle(now.mono, input);
        }
        self.process(now);
        // What ran out while the gateway was down reverts now; say so.
        let states = self.building.door_states();
        for door in reverted {
            if let Some(s) = states.iter().find(|s| s.id == door) {
                self.records.push(EventKind::DoorModeChanged {
                    door,
                    mode: s.mode.into(),
                });
            }
        }
    }

    /// When a timed item persisted with wall end `until` (and, when
    /// written on this boot, its boot stamp) ends now: `None` when it has
    /// ended — or, for a release, when that it has not cannot be shown.
    /// On this boot the stamp says exactly how much is left, whatever the
    /// wall clock says (a restart with the clock days behind must not
    /// bring back an unlock that ended). Otherwise a release needs the
    /// interval's upper edge below `until` (and lasts what is left from
    /// that edge, the shortest it can be); a restriction (held locked)
    /// keeps today's rule, the wall clock, capped.
    fn restored_end(
        &self,
        now: Now,
        until: Timestamp,
        boot_until: Option<&BootStamp>,
        releases: bool,
    ) -> Option<Instant> {
        if let Some(end) = boot_until.and_then(|b| now.instant(b)) {
            return (end > now.mono).then(|| end.min(now.mono + max_left()));
        }
        // A release needs its end shown ahead of the interval's upper
        // edge; a restriction is kept unless its end is shown behind the
        // lower edge (a clock stepped forward must not end it early).
        let from = if releases {
            self.reading.latest?
        } else {
            self.reading
                .earliest
                .map_or(self.wall, |e| e.min(self.wall))
        };
        (until > from).then(|| now.mono + left_at_restore(until, from))
    }

    fn remote(
        &mut self,
        now: Now,
        ticket: Ticket,
        source: String,
        command: Option<String>,
        action: RemoteAction,
    ) {
        // An airlock: a remote release of one door while another of its
        // group is open or released is refused (at most one at a time).
        let airlock = match &action {
            RemoteAction::Unlock { door, .. } => Some(door),
            RemoteAction::SetMode { door, mode, .. } if mode.releases() => Some(door),
            _ => None,
        }
        .filter(|d| {
            self.interlocks.busy(d, &self.building.door_states())
                || self.airlock_claimed_by_other(d, now)
        })
        .cloned();
        let result = match airlock {
            Some(door) => Err(RemoteError::Interlocked(door)),
            None => action.plan(&mut self.planner, now.mono),
        };
        self.records.push(EventKind::RemoteAction(ActionRecord::new(
            source,
            command,
            action,
            result.as_ref().map(|_| ()),
        )));
        let result = result.map(|inputs| {
            for input in inputs {
                self.building.handle(now.mono, input);
            }
            self.apply_modes(now);
        });
        self.replies.push(Output::Reply { ticket, result });
    }

    /// Whether another door of `door`'s airlock holds a releasing remote
    /// mode (in force, or kept under a lockdown or fire alarm until they
    /// end) or a release being restored: then `door` may not be released
    /// too.
    fn airlock_claimed_by_other(&self, door: &DoorId, now: Now) -> bool {
        let Some(group) = self.interlocks.group_of(door) else {
            return false;
        };
        self.airlock_claims(now)
            .get(&group.id)
            .is_some_and(|holder| holder != door)
    }

    /// Per airlock, the door that holds its release by a remote mode or
    /// an override being restored.
    fn airlock_claims(&self, now: Now) -> std::collections::BTreeMap<String, DoorId> {
        let remote = self
            .planner
            .remotes()
            .into_iter()
            .filter(|(_, (mode, until))| mode.releases() && *until > now.mono)
            .map(|(door, _)| door);
        let mut claims = std::collections::BTreeMap::new();
        for door in self.restoring_releases.iter().cloned().chain(remote) {
            if let Some(group) = self.interlocks.group_of(&door) {
                claims.entry(group.id.clone()).or_insert(door);
            }
        }
        claims
    }

    /// Re-read the schedules and feed mode changes to the doors.
    fn apply_modes(&mut self, now: Now) {
        let wall = self.wall;
        let reading = self.reading;
        let witness = reading
            .trusted
            .then(|| self.clock.witness(wall, now.mono))
            .flatten();
        // A first person in holds only on its day and while its window
        // stayed open since the grant: a closed schedule (also one that
        // closed while the gateway was down) or another day clears it, and
        // the next window waits for a grant of its own.
        let rules = &self.rules;
        let gap = self
            .modes_read_at
            .is_none_or(|t| t > wall || wall.duration_since(t) > SignedDuration::from_secs(90));
        self.modes_read_at = Some(wall);
        self.first_in.retain(|d, f| {
            rules.first_person_in_day(d, wall) == Some(f.day)
                && (!gap
                    || rules
                        .door_mode(d, wall)
                        .is_some_and(|mode| held_since(&**rules, d, &mode, f.at, wall)))
        });
        let first_in = &self.first_in;
        let planner = &self.planner;
        let interlocks = &self.interlocks;
        let states = self.building.door_states();
        // Per airlock, the door that holds its release: by a remote mode or
        // a restored override, or given out by this look to a schedule.
        let mut claimed = self.airlock_claims(now);
        let mut withheld = Vec::new();
        let mut awaiting = Vec::new();
        let scheduled: HashMap<DoorId, String> = self
            .building
            .door_ids()
            .filter_map(|d| {
                let mode = rules.door_mode(d, wall)?;
                // A first-person-in mode waits for a grant in the window,
                // that day (the door stays in card mode until then).
                if rules.first_person_in_day(d, wall).is_some() && !first_in.contains_key(d) {
                    awaiting.push((d.clone(), mode));
                    return None;
                }
                let releasing = planner
                    .class(d)
                    .and_then(|c| c.parse_mode(&mode).ok())
                    .filter(|m| m.releases());
                if let Some(release) = releasing
                    && !proven_mode(&**rules, reading, witness, d, &mode, wall)
                {
                    let reason = if reading.trusted {
                        Withheld::TimeUnconfirmed
                    } else {
                        Withheld::ClockUntrusted
                    };
                    withheld.push((d.clone(), release, reason));
                    return None;
                }
                // An airlock: a scheduled release waits while another door
                // of its group is open or released, or another of its
                // doors got the group's release in this look (at most one
                // at a time); the next minute's look tries again.
                if let Some(release) = releasing
                    && let Some(group) = interlocks.group_of(d)
                    && (interlocks.busy(d, &states)
                        || claimed.entry(group.id.clone()).or_insert_with(|| d.clone()) != d)
                {
                    withheld.push((d.clone(), release, Withheld::Interlocked));
                    return None;
                }
                Some((d.clone(), mode))
            })
            .collect();
        let now_withheld: std::collections::BTreeMap<DoorId, Withheld> =
            withheld.iter().map(|(d, _, r)| (d.clone(), *r)).collect();
        // Journaled when a release is first withheld, and again when the
        // reason changes (the time confirmed, the airlock still busy).
        for (door, mode, reason) in withheld {
            if self.withheld.get(&door) != Some(&reason) {
                self.records
                    .push(EventKind::DoorModeWithheld { door, mode, reason });
            }
        }
        self.withheld = now_withheld;
        let now_awaiting: std::collections::BTreeSet<DoorId> =
            awaiting.iter().map(|(d, _)| d.clone()).collect();
        for (door, mode) in awaiting {
            if !self.awaiting_first_in.contains(&door) {
                self.records
                    .push(EventKind::FirstPersonInAwaited { door, mode });
            }
        }
        self.awaiting_first_in = now_awaiting;
        for (door, e) in self
            .planner
            .set_scheduled(|d| scheduled.get(d).map(String::as_str))
        {
            self.records.push(EventKind::RulesRefused {
                reason: format!("door-mode schedule for {door}: {e}"),
            });
        }
        for (door, mode) in self.planner.changes(now.mono) {
            let input = match mode {
                StandingMode::Standard(m) => BuildingInput::Door {
                    door,
                    input: DoorInput::SetMode(m),
                },
                StandingMode::Revolving(m) => BuildingInput::Revolving {
                    door,
                    input: RevolvingInput::SetMode(m),
                },
            };
            self.building.handle(now.mono, input);
        }
    }

    /// Work off the building's actions: decisions are made here and fed
    /// back; passages update presence. A grant may be a door's first
    /// person in, once the grant's own record is out.
    fn process(&mut self, now: Now) {
        loop {
            let mut granted_at = Vec::new();
            self.process_actions(now, &mut granted_at);
            if granted_at.is_empty() {
                return;
            }
            for (door, credential) in granted_at {
                self.first_person_in(now, door, &credential);
            }
        }
    }

    /// [`Gateway::process`]'s one round; grants are added to `granted_at`.
    fn process_actions(
        &mut self,
        now: Now,
        granted_at: &mut Vec<(DoorId, crate::rules::CredentialKey)>,
    ) {
        while let Some(action) = self.building.poll_action() {
            match action {
                BuildingAction::Decide {
                    door,
                    reader,
                    card,
                    direction,
                    pin,
                } => {
                    if let Some(key) =
                        self.card(now, door.clone(), reader, direction, card, pin, false)
                    {
                        granted_at.push((door, key));
                    }
                }
                BuildingAction::ExitRequest { door } => self.exit_request(now, door, false),
                BuildingAction::Record(kind) => self.records.push(kind),
                BuildingAction::FireAlarm {
                    input,
                    releases,
                    active,
                } => {
                    // Reported on every change and on the first report
                    // after a start: an event only when the kept state
                    // changes. Active takes at once; inactive only after
                    // FIRE_CLEAR_HOLD without a new alarm, so a flapping
                    // loop never relocks escape doors between its flaps.
                    let kept = self.planner.fire_alarms().contains(&input);
                    if active {
                        self.fire_clearing.remove(&input);
                        if !kept {
                            self.records.push(EventKind::FireAlarm {
                                input: input.clone(),
                                active,
                                releases: releases.clone(),
                            });
                            self.planner.set_fire_alarm(&input, &releases, true);
                            self.apply_modes(now);
                        }
                    } else if kept {
                        self.fire_clearing
                            .entry(input)
                            .or_insert((now.mono + FIRE_CLEAR_HOLD, releases));
                    } else {
                        self.fire_clearing.remove(&input);
                    }
                }
                BuildingAction::FireAlarmInputOffline { input } => {
                    let active = self.planner.fire_alarms().contains(&input);
                    self.records
                        .push(EventKind::FireAlarmInputOffline { input, active });
                }
                BuildingAction::Command { pd, command } => self.commands.push((pd, command)),
                BuildingAction::Passage {
                    door,
                    credential,
                    direction,
                } => self.passage(door, credential, direction),
            }
        }
    }

    /// A grant at `door`: when its `first_person_in` mode waits, this is
    /// the first person in — but only when the window is open, on the
    /// same day, at both edges of the proven time (a clock stepped into
    /// the window must not start it). Journaled, made standing, and the
    /// scheduled mode applied (a release still needs a proven time).
    fn first_person_in(
        &mut self,
        now: Now,
        door: DoorId,
        credential: &crate::rules::CredentialKey,
    ) {
        let Some(day) = self.rules.first_person_in_day(&door, self.wall) else {
            return;
        };
        if self.first_in.get(&door).is_some_and(|f| f.day == day) {
            return;
        }
        let (earliest, latest) = self.reading.edges();
        if [earliest, latest]
            .iter()
            .any(|t| self.rules.first_person_in_day(&door, *t) != Some(day))
        {
            return;
        }
        let mode = self.rules.door_mode(&door, self.wall).unwrap_or_default();
        // The grant is in the window at a time as proven as a scheduled
        // release needs: the release it lets start is one.
        let witness = self
            .reading
            .trusted
            .then(|| self.clock.witness(self.wall, now.mono))
            .flatten();
        if !proven_mode(&*self.rules, self.reading, witness, &door, &mode, self.wall) {
            return;
        }
        self.first_in.insert(
            door.clone(),
            FirstIn {
                day,
                at: self.wall,
                credential: credential.to_string(),
            },
        );
        self.records.push(EventKind::FirstPersonIn {
            door,
            credential: credential.to_string(),
            mode,
        });
        self.apply_modes(now);
    }

    /// The decision for `card` at `door` now, with every check the core
    /// makes: the rules at the proven time (both edges while the clock is
    /// not believed) and the door's situation. The door and the admin
    /// "why" box both ask this, so their answers cannot differ; `at` asks
    /// of another time, with the situation of now. The why box asks of an
    /// entry (an `in` reader).
    pub fn decide(&self, door: &DoorId, presented: &Presented, at: Option<Timestamp>) -> Verdict {
        self.decide_at(door, Direction::In, presented, at).0
    }

    /// Why a card would be held to anti-passback at `door` now, in words
    /// ("the card is already inside lab-wing"), for the why box.
    pub fn antipassback_why(&self, door: &DoorId, presented: &Presented) -> Option<String> {
        let key = decision::credential_of(&presented.card).ok()?;
        let f = self.antipassback(door, Direction::In, &key)?;
        Some(match f.breach {
            crate::event::Breach::AlreadyInside => {
                format!("the card is already inside {}", f.area)
            }
            crate::event::Breach::NotInside => {
                format!("the card is not known to be inside {}", f.area)
            }
        })
    }

    /// The decision at a reader going `direction`, with the anti-passback
    /// finding it made (soft or enforced).
    fn decide_at(
        &self,
        door: &DoorId,
        direction: Direction,
        presented: &Presented,
        at: Option<Timestamp>,
    ) -> (Verdict, Option<Finding>) {
        let when = match at {
            Some(t) => When::at(t),
            None => {
                let (earliest, latest) = self.reading.edges();
                When { earliest, latest }
            }
        };
        let finding = decision::credential_of(&presented.card)
            .ok()
            .and_then(|key| self.antipassback(door, direction, &key));
        let situation = Situation {
            lockdown: self.planner.holds_locked(door),
            antipassback: finding.as_ref().is_some_and(|f| f.enforced),
            interlock: self.interlocks.busy(door, &self.building.door_states()),
        };
        let verdict = decision::decide(&*self.rules, door, presented, when, situation);
        (verdict, finding)
    }

    /// The anti-passback finding for `key` at a reader of `door` going
    /// `direction`, when the door has areas.
    fn antipassback(
        &self,
        door: &DoorId,
        direction: Direction,
        key: &crate::rules::CredentialKey,
    ) -> Option<Finding> {
        let sides = self.building.door_areas(door)?;
        let line = self.presence.get(&CredentialId(key.to_string()));
        areas::check(
            &*self.rules,
            sides,
            direction,
            key,
            line,
            self.wall,
            self.forgiven_at,
        )
    }

    /// A card read at a reader: decided, and fed to the door — or, at an
    /// interlocked door whose airlock is busy, left waiting (`waited`:
    /// it is being served from the wait, which has ended).
    /// Returns the credential granted, if it was.
    #[allow(clippy::too_many_arguments)] // a card read's parts, as the bus gave them
    fn card(
        &mut self,
        now: Now,
        door: DoorId,
        reader: ReaderId,
        direction: Direction,
        card: RawCard,
        pin: Option<String>,
        timed_out: bool,
    ) -> Option<crate::rules::CredentialKey> {
        let presented = Presented {
            card: Card::Raw {
                bytes: card.data.clone(),
                bits: card.bits,
            },
            pin: pin.clone(),
        };
        let (mut verdict, finding) = self.decide_at(&door, direction, &presented, None);
        // Silent: the reader shows what the verdict shows; the alarm goes
        // first in the journal and to central at once — also for a card
        // that now waits for its airlock (raised once: not again when the
        // wait ends).
        let alarmed = self.duress_waiting.remove(&reader);
        if !alarmed && decision::is_duress(&*self.rules, &presented) {
            self.records.push(EventKind::Duress {
                door: door.clone(),
                reader: reader.clone(),
                credential: decision::credential_of(&presented.card)
                    .map(|k| k.to_string())
                    .unwrap_or_default(),
            });
            if verdict.deny_reason() == Some(DenyReason::Interlock) && !timed_out {
                self.duress_waiting.insert(reader.clone());
            }
        }
        if verdict.deny_reason() == Some(DenyReason::Interlock) && !timed_out {
            let waiter = Waiter::Card {
                door: door.clone(),
                reader: reader.clone(),
                direction,
                card,
                pin,
            };
            if self.interlocks.wait(waiter, now.mono).is_ok() {
                return None;
            }
            self.duress_waiting.remove(&reader);
        }
        if timed_out && let Verdict::Grant { credential, .. } = verdict {
            verdict = Verdict::Deny {
                credential: Some(credential),
                reason: DenyReason::Interlock,
            };
        }
        if let (Some(f), Some(credential)) = (finding, granted_or_held(&verdict)) {
            let granted = verdict.deny_reason().is_none();
            if granted || verdict.deny_reason() == Some(DenyReason::Antipassback) {
                self.records.push(EventKind::Antipassback {
                    door: door.clone(),
                    credential,
                    area: f.area,
                    breach: f.breach,
                    granted,
                });
            }
        }
        self.outputs.push_back(Output::Decided {
            door: door.clone(),
            deny: verdict.deny_reason(),
        });
        let granted = match &verdict {
            Verdict::Grant { credential, .. } => Some(credential.clone()),
            Verdict::Deny { .. } => None,
        };
        self.building.handle(
            now.mono,
            BuildingInput::Verdict {
                door,
                reader,
                verdict,
            },
        );
        granted
    }

    /// An exit-button press at an interlocked door: honoured when the
    /// airlock is free, else it waits; refused when its wait ran out.
    fn exit_request(&mut self, now: Now, door: DoorId, timed_out: bool) {
        let busy = self.interlocks.busy(&door, &self.building.door_states());
        if !busy {
            self.building.handle(
                now.mono,
                BuildingInput::Door {
                    door,
                    input: DoorInput::ExitRequest,
                },
            );
            return;
        }
        if !timed_out
            && self
                .interlocks
                .wait(Waiter::ExitRequest { door: door.clone() }, now.mono)
                .is_ok()
        {
            return;
        }
        self.records.push(EventKind::ExitRequestDenied {
            door,
            reason: DenyReason::Interlock,
        });
    }

    /// Serve the airlocks' waiters whose doors are free or whose time is
    /// up, one at a time (each changes the doors).
    fn serve_interlocks(&mut self, now: Now) {
        while let Some(served) = self.interlocks.next(now.mono, &self.building.door_states()) {
            let (waiter, timed_out) = match served {
                Served::Free(w) => (w, false),
                Served::TimedOut(w) => (w, true),
            };
            match waiter {
                Waiter::Card {
                    door,
                    reader,
                    direction,
                    card,
                    pin,
                } => {
                    let at = door.clone();
                    if let Some(key) = self.card(now, door, reader, direction, card, pin, timed_out)
                    {
                        self.process(now);
                        self.first_person_in(now, at, &key);
                    }
                }
                Waiter::ExitRequest { door } => self.exit_request(now, door, timed_out),
            }
            self.process(now);
        }
    }

    /// A granted person went through a door: their line on the presence
    /// list moves. A door with areas journals every passage with its area;
    /// one without, as before, only after office hours.
    fn passage(&mut self, door: DoorId, credential: String, direction: Direction) {
        let at = self.wall;
        let name = credential
            .parse()
            .ok()
            .and_then(|key| self.rules.display_name(&key));
        let office_hours = self.rules.office_hours(at).unwrap_or(false);
        let sides = self.building.door_areas(&door).cloned();
        let passage = Passage {
            credential: CredentialId(credential),
            name,
            direction,
            at,
            office_hours,
            area: sides.as_ref().map(|s| s.inside.clone()),
            outer: sides.as_ref().and_then(|s| s.outside.clone()),
            door: Some(door.clone()),
        };
        let event = match &sides {
            Some(_) => Some(self.presence.pass(passage)),
            None => self.presence.record(passage),
        };
        let Some(event) = event else {
            return;
        };
        let (credential, name, direction, area) = match event {
            PresenceEvent::Entered {
                credential,
                name,
                area,
                ..
            } => (credential, name, Direction::In, area),
            PresenceEvent::Left {
                credential,
                name,
                area,
                ..
            } => (credential, name, Direction::Out, area),
        };
        let door = area.is_some().then_some(door);
        let outer = match direction {
            Direction::Out => sides.and_then(|s| s.outside),
            Direction::In => None,
        };
        self.records.push(EventKind::Presence {
            credential: credential.0,
            name,
            direction,
            area,
            door,
            outer,
        });
    }

    /// The daily forgiveness, once it is due: locations from before it no
    /// longer count against anyone (journaled once; kept over a restart).
    /// Only at a believed time: a clock spoofed years ahead must not
    /// move the forgiveness past every location for good.
    fn forgive_if_due(&mut self) {
        if !self.reading.trusted {
            return;
        }
        let Some(due) = self.rules.last_forgiveness(self.wall) else {
            return;
        };
        if self.forgiven_at.is_none_or(|f| f < due) {
            self.forgiven_at = Some(due);
            self.records
                .push(EventKind::AntipassbackForgiven { forgiven_at: due });
        }
    }

    /// Cards the rules no longer know leave every area (bounded: the list
    /// holds only cards the rules know). A sweep over the list after each
    /// rules change, [`SWEEP_STEP`] lines per input (a rules change and
    /// each timeout), so no input pays for a long list.
    fn drop_unknown_locations(&mut self) {
        let Some(from) = self.sweep.take() else {
            return;
        };
        let mut lines: Vec<CredentialId> = self
            .presence
            .inside_from(&from)
            .take(SWEEP_STEP + 1)
            .map(|(c, _)| c.clone())
            .collect();
        self.sweep = (lines.len() > SWEEP_STEP).then(|| lines.pop()).flatten();
        let gone: Vec<CredentialId> = lines
            .into_iter()
            .filter(|c| {
                c.0.parse()
                    .ok()
                    .is_some_and(|key| self.rules.knows(&key) == Some(false))
            })
            .collect();
        for c in &gone {
            self.presence.remove(c);
        }
        if !gone.is_empty() {
            self.records.push(EventKind::LocationsDropped {
                count: gone.len() as u64,
            });
        }
    }

    /// Close the input: the commit (records and changed standing state)
    /// first, then the commands, then the replies.
    fn finish(&mut self, now: Now) {
        self.process(now);
        self.serve_interlocks(now);
        let state = self.changed_standing(now);
        let records = std::mem::take(&mut self.records);
        if !records.is_empty() || state.is_some() {
            self.outputs.push_back(Output::Commit(Commit {
                at: self.wall,
                records,
                state,
            }));
        }
        for (pd, command) in self.commands.drain(..) {
            self.outputs.push_back(Output::Command { pd, command });
        }
        self.outputs.extend(self.replies.drain(..));
        let into_minute = self.wall.as_second().rem_euclid(60) as u64;
        self.next_minute = now.mono + Duration::from_secs(60 - into_minute);
        self.next_expiry = self.planner.next_expiry();
    }

    /// The standing state, when it differs from the one last handed out.
    fn changed_standing(&mut self, now: Now) -> Option<StandingChange> {
        let lockdown = self.planner.lockdowns();
        let mut remote_modes = std::collections::BTreeMap::new();
        let mut walls = HashMap::new();
        for (door, (mode, until)) in self.planner.remotes() {
            let wall = wall_end(&self.remote_walls, &door, until, now.mono, self.wall);
            walls.insert(door.clone(), (until, wall));
            remote_modes.insert(
                door,
                TimedMode {
                    mode,
                    until: wall,
                    boot_until: now.stamp(until),
                },
            );
        }
        self.remote_walls = walls;
        let mut overrides = std::collections::BTreeMap::new();
        let mut walls = HashMap::new();
        for (door, state, until) in self.building.overrides() {
            let wall = wall_end(&self.override_walls, door, until, now.mono, self.wall);
            walls.insert(door.clone(), (until, wall));
            overrides.insert(
                door.clone(),
                TimedOverride {
                    state,
                    until: wall,
                    boot_until: now.stamp(until),
                },
            );
        }
        self.override_walls = walls;
        let (floor, time_anchor) = self.time_to_persist(now);
        let presence = self.presence.take_changes();
        let fire_alarms = self.planner.fire_alarms();
        let same = lockdown == self.persisted.lockdown
            && fire_alarms == self.persisted.fire_alarms
            && remote_modes == self.persisted.remote_modes
            && overrides == self.persisted.overrides
            && floor == self.persisted.trusted_floor
            && time_anchor == self.persisted.time_anchor
            && self.first_in == self.persisted.first_in
            && self.forgiven_at == self.persisted.forgiven_at;
        if same {
            return (!presence.is_empty()).then_some(StandingChange::Presence(presence));
        }
        self.persisted = StandingState {
            version: VERSION,
            lockdown,
            remote_modes,
            overrides,
            // Kept empty here (the core's list is the one in force):
            // `standing` adds it.
            presence: Presence::new(),
            trusted_floor: floor,
            time_anchor,
            fire_alarms,
            forgiven_at: self.forgiven_at,
            first_in: self.first_in.clone(),
        };
        Some(StandingChange::Whole(Box::new(self.standing())))
    }

    /// The floor and beacon anchor to persist: at once when a signed issue
    /// time moved the floor, otherwise (beacons move both every half
    /// minute) what was persisted last, renewed at most once an hour — an
    /// older floor or anchor is still true, only a little less tight, and
    /// the whole state is not rewritten for every beacon.
    fn time_to_persist(&mut self, now: Now) -> (Option<Timestamp>, Option<TimeAnchor>) {
        let floor = self.clock.floor();
        let anchor = self.clock.anchor().and_then(|(at, came)| {
            Some(TimeAnchor {
                at,
                came: now.stamp(came)?,
            })
        });
        let (kept_floor, kept_anchor, kept_at) = &self.time_persisted;
        let due =
            kept_at.is_none_or(|t| now.mono.saturating_duration_since(t) >= TIME_PERSIST_EVERY);
        let first_anchor = kept_anchor.is_none() && anchor.is_some();
        if (self.floor_signed || due || first_anchor)
            && (floor != *kept_floor || anchor != *kept_anchor)
        {
            self.time_persisted = (floor, anchor, Some(now.mono));
        }
        self.floor_signed = false;
        (self.time_persisted.0, self.time_persisted.1.clone())
    }
}

/// One interlock group as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InterlockState {
    /// Its name.
    pub id: String,
    /// Its doors.
    pub doors: Vec<DoorId>,
    /// The doors released or open now (more than one only in a fire
    /// alarm or by an operator's release).
    pub busy: Vec<DoorId>,
    /// Grants and exit requests waiting.
    pub waiting: usize,
}

/// The credential of a verdict that a passage could have been granted
/// to: a grant's, or a deny's for anti-passback.
fn granted_or_held(verdict: &Verdict) -> Option<String> {
    match verdict {
        Verdict::Grant { credential, .. } => Some(credential.to_string()),
        Verdict::Deny {
            credential: Some(c),
            reason: DenyReason::Antipassback,
        } => Some(c.to_string()),
        Verdict::Deny { .. } => None,
    }
}

/// Whether the time is proven enough for the scheduled `mode` of `door`
/// (a release nobody asked for by card): a confirmed time at which both
/// edges of the interval agree on the mode, or a signed time that
/// witnessed the clock with the mode held since.
fn proven_mode(
    rules: &dyn Rules,
    reading: Reading,
    witness: Option<Timestamp>,
    door: &DoorId,
    mode: &str,
    wall: Timestamp,
) -> bool {
    let at = |t: Option<Timestamp>| t.and_then(|t| rules.door_mode(door, t));
    (reading.confirmed()
        && at(reading.earliest).as_deref() == Some(mode)
        && at(reading.latest).as_deref() == Some(mode))
        || witness.is_some_and(|t| held_since(rules, door, mode, t, wall))
}

/// Whether the scheduled mode of `door` was `mode` all along from the
/// signed time `since` to `now` (checked every [`HELD_STEP`], at most a
/// day back): a signed time newer than the window's start shows the
/// window has begun.
fn held_since(
    rules: &dyn Rules,
    door: &DoorId,
    mode: &str,
    since: Timestamp,
    now: Timestamp,
) -> bool {
    if since > now || now.duration_since(since) > SignedDuration::from_hours(24) {
        return false;
    }
    let mut t = since;
    while t < now {
        if rules.door_mode(door, t).as_deref() != Some(mode) {
            return false;
        }
        t = t.checked_add(HELD_STEP).unwrap_or(now);
    }
    true
}

/// How long a fire-alarm input must read inactive before its alarm clears
/// (an alarm takes at once): a flapping loop or a bouncing relay never
/// relocks escape doors between its flaps.
pub const FIRE_CLEAR_HOLD: Duration = Duration::from_secs(5);

/// The step of [`held_since`] (schedules are minute-grained; a closure of
/// under five minutes between two windows is not looked for).
const HELD_STEP: SignedDuration = SignedDuration::from_mins(5);

/// Presence lines checked against the rules per input while a sweep runs
/// (`drop_unknown_locations`): 20 000 lines take 40 inputs, at least one
/// a minute.
const SWEEP_STEP: usize = 512;

/// How often, at most, beacons alone rewrite the persisted floor and
/// anchor.
const TIME_PERSIST_EVERY: Duration = Duration::from_secs(3600);

/// What is left of a persisted timed item at restore. Never more than the
/// longest remote action: an end written while the system clock was far
/// ahead must not hold a door for years once the clock is right.
fn left_at_restore(until: Timestamp, wall: Timestamp) -> Duration {
    let left = until.duration_since(wall).unsigned_abs();
    left.min(max_left())
}

/// The longest remote action.
fn max_left() -> Duration {
    Duration::from_secs(super::remote::MAX_SECONDS)
}

/// The wall-clock end of a monotonic deadline: the one fixed when it was
/// first seen, else now's trusted time plus what is left.
fn wall_end(
    known: &HashMap<DoorId, (Instant, Timestamp)>,
    door: &DoorId,
    until: Instant,
    mono: Instant,
    wall: Timestamp,
) -> Timestamp {
    match known.get(door) {
        Some((at, end)) if *at == until => *end,
        _ => {
            let left = until.saturating_duration_since(mono);
            let left = SignedDuration::try_from(left).unwrap_or(SignedDuration::MAX);
            wall.checked_add(left).unwrap_or(Timestamp::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::door::{Direction, StandardConfig};
    use crate::osdp::message::RawCard;
    use crate::rules::CredentialKey;
    use crate::site::building::{DoorKind, DoorWiring, InputRef, OutputRef, ReaderRef};
    use crate::site::outputs::StrikeWiring;

    struct Table;

    /// Card 01/8 is staff's; every other card is a lost pass.
    const STAFF: &str = "raw:01/8";

    impl Rules for Table {
        fn decide(
            &self,
            _door: &DoorId,
            key: &CredentialKey,
            _pin: Option<&str>,
            _at: Timestamp,
        ) -> Verdict {
            if key.to_string() == STAFF {
                Verdict::Grant {
                    credential: key.clone(),
                    extended: false,
                    lockdown_exempt: false,
                    name: None,
                }
            } else {
                Verdict::Deny {
                    credential: Some(key.clone()),
                    reason: DenyReason::Blocked,
                }
            }
        }
        fn office_hours(&self, _at: Timestamp) -> Option<bool> {
            Some(false)
        }
    }

    fn pd(address: u8) -> PdRef {
        PdRef {
            bus: "bus0".into(),
            address,
        }
    }

    /// One door with an in-reader on PD 1 and an out-reader on PD 2.
    fn building() -> Building {
        Building::new(vec![DoorWiring {
            id: "lab".into(),
            kind: DoorKind::Standard(StandardConfig::default()),
            readers: vec![
                ReaderRef {
                    id: "lab-in".into(),
                    pd: pd(1),
                    reader: 0,
                    direction: Direction::In,
                },
                ReaderRef {
                    id: "lab-out".into(),
                    pd: pd(2),
                    reader: 0,
                    direction: Direction::Out,
                },
            ],
            lock: Some(OutputRef {
                pd: pd(1),
                wiring: StrikeWiring {
                    output: 0,
                    energize_to_unlock: true,
                },
            }),
            release_out: None,
            contact: Some(InputRef {
                pd: pd(1),
                input: 0,
                active_high: true,
            }),
            exit_button: None,
            rotation_in: None,
            rotation_out: None,
        }])
    }

    fn at(secs: u64) -> Now {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let epoch = *EPOCH.get_or_init(crate::test_clock::epoch);
        let base: Timestamp = "2026-11-25T22:00:00Z".parse().unwrap();
        Now {
            mono: epoch + Duration::from_secs(secs),
            system: base + SignedDuration::from_secs(secs as i64),
            boot: Some(Boot {
                id: 7,
                since: Duration::from_secs(1000 + secs),
            }),
        }
    }

    fn drain(g: &mut Gateway) -> Vec<Output> {
        std::iter::from_fn(|| g.poll_output()).collect()
    }

    fn commits(outputs: &[Output]) -> Vec<&Commit> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Commit(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn card(g: &mut Gateway, now: Now, address: u8, n: u8) -> Vec<Output> {
        g.handle(
            now,
            Input::Bus {
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
            },
        );
        drain(g)
    }

    fn remote(g: &mut Gateway, now: Now, action: RemoteAction) -> Vec<Output> {
        g.handle(
            now,
            Input::Remote {
                ticket: 7,
                source: "test".into(),
                command: None,
                action,
            },
        );
        drain(g)
    }

    #[test]
    fn records_are_committed_before_commands_and_replies() {
        let mut g = Gateway::new(building(), Box::new(Table), StandingState::default(), at(0));
        drain(&mut g);
        let out = card(&mut g, at(1), 1, 1);
        let first_command = out.iter().position(|o| matches!(o, Output::Command { .. }));
        let commit = out.iter().position(|o| matches!(o, Output::Commit(_)));
        assert!(commit.unwrap() < first_command.unwrap(), "{out:?}");
        let out = remote(&mut g, at(2), RemoteAction::Lockdown { doors: vec![] });
        let reply = out
            .iter()
            .position(|o| matches!(o, Output::Reply { ticket: 7, .. }));
        let commit = out.iter().position(|o| matches!(o, Output::Commit(_)));
        assert!(commit.unwrap() < reply.unwrap(), "{out:?}");
    }

    /// `at(secs)` with the system clock `shift` seconds off and, when
    /// `reboot`, on another boot.
    fn skewed(secs: u64, shift: i64, reboot: bool) -> Now {
        let mut n = at(secs);
        n.system += SignedDuration::from_secs(shift);
        if reboot {
            n.boot = Some(Boot {
                id: 8,
                since: Duration::from_secs(secs),
            });
        }
        n
    }

    #[test]
    fn an_unlock_comes_back_after_a_restart_only_if_its_end_is_provably_ahead() {
        let mut g = Gateway::new(building(), Box::new(Table), StandingState::default(), at(0));
        drain(&mut g);
        let out = remote(
            &mut g,
            at(1),
            RemoteAction::Unlock {
                door: "lab".into(),
                seconds: 120,
            },
        );
        let state = whole(commits(&out)[0]);
        assert!(state.overrides["lab"].boot_until.is_some());
        let three_days = -3 * 86_400;
        // Same boot, 200 s later, the clock three days behind: the boot
        // stamp says it ended.
        let mut g = Gateway::new(
            building(),
            Box::new(Table),
            state.clone(),
            skewed(200, three_days, false),
        );
        drain(&mut g);
        assert!(!g.doors()[0].released, "an ended unlock came back");
        // Same boot, 60 s later, clock behind: 61 s are left, exactly.
        let mut g = Gateway::new(
            building(),
            Box::new(Table),
            state.clone(),
            skewed(60, three_days, false),
        );
        drain(&mut g);
        assert_eq!(g.doors()[0].reverts_at, Some(at(121).mono));
        // After a reboot with no beacon: nothing shows the end is ahead.
        let mut g = Gateway::new(
            building(),
            Box::new(Table),
            state.clone(),
            skewed(60, 0, true),
        );
        drain(&mut g);
        assert!(
            !g.doors()[0].released,
            "restored without proof after a reboot"
        );
        // After a reboot with a beacon anchor that shows it: restored for
        // what is left from the interval's upper edge.
        let mut anchored = state;
        anchored.time_anchor = at(55).stamp(at(55).mono).map(|came| TimeAnchor {
            at: at(55).system,
            came: BootStamp {
                boot: format!("{:032x}", 8u128),
                ms: came.ms - 1000 * 1000,
            },
        });
        let mut g = Gateway::new(building(), Box::new(Table), anchored, skewed(60, 0, true));
        drain(&mut g);
        let lab = &g.doors()[0];
        assert!(lab.released, "{lab:?}");
        let left = lab.reverts_at.unwrap() - at(60).mono;
        assert!(
            left < Duration::from_secs(61) && left > Duration::from_secs(50),
            "{left:?}"
        );
    }

    /// The lab is scheduled unlocked for the first two hours.
    struct Window;

    impl Rules for Window {
        fn decide(
            &self,
            door: &DoorId,
            key: &CredentialKey,
            pin: Option<&str>,
            at: Timestamp,
        ) -> Verdict {
            Table.decide(door, key, pin, at)
        }

        fn door_mode(&self, _door: &DoorId, when: Timestamp) -> Option<String> {
            let since = when.duration_since(at(0).system);
            (since >= SignedDuration::ZERO && since < SignedDuration::from_hours(2))
                .then(|| "unlocked".to_owned())
        }
    }

    #[test]
    fn a_scheduled_unlock_starts_on_a_signed_time_that_witnesses_the_clock() {
        let mut g = Gateway::new(
            building(),
            Box::new(Window),
            StandingState::default(),
            at(0),
        );
        let out = drain(&mut g);
        assert!(!g.doors()[0].released, "released without a proven time");
        assert!(
            commits(&out)
                .iter()
                .any(|c| c.records.iter().any(|r| matches!(
                    r,
                    EventKind::DoorModeWithheld { reason, .. } if *reason == crate::event::Withheld::TimeUnconfirmed
                )))
        );
        // A snapshot issued a moment ago, agreeing with the clock: the
        // window has begun (it held since that signed time).
        g.handle(at(10), Input::SignedTime(at(9).system));
        drain(&mut g);
        assert!(g.doors()[0].released, "{:?}", g.doors()[0]);
        // A signed time inside the window but 200 s off the clock (an old
        // snapshot delivered late) witnesses nothing.
        let mut g = Gateway::new(
            building(),
            Box::new(Window),
            StandingState::default(),
            at(0),
        );
        drain(&mut g);
        g.handle(at(300), Input::SignedTime(at(100).system));
        drain(&mut g);
        assert!(!g.doors()[0].released);
    }

    #[test]
    fn a_held_lock_is_not_ended_early_by_a_clock_stepped_forward_at_a_reboot() {
        let mut g = Gateway::new(building(), Box::new(Table), StandingState::default(), at(0));
        drain(&mut g);
        let out = remote(
            &mut g,
            at(1),
            RemoteAction::SetMode {
                door: "lab".into(),
                mode: StandingMode::from_name("card_only").unwrap(),
                seconds: 6 * 3600,
            },
        );
        let mut state = whole(commits(&out)[0]);
        assert!(state.remote_modes.contains_key("lab"), "{state:?}");
        state.trusted_floor = Some(at(1).system);
        // Rebooted, the clock a day ahead (spoofed before the start).
        let g = Gateway::new(building(), Box::new(Table), state, skewed(60, 86_400, true));
        assert!(
            g.standing().remote_modes.contains_key("lab"),
            "a restriction ended by a wrong clock"
        );
    }

    #[test]
    fn lockdown_and_an_override_come_back_after_a_restart() {
        let mut g = Gateway::new(building(), Box::new(Table), StandingState::default(), at(0));
        drain(&mut g);
        let out = remote(
            &mut g,
            at(1),
            RemoteAction::Unlock {
                door: "lab".into(),
                seconds: 600,
            },
        );
        let state = whole(commits(&out)[0]);
        assert_eq!(state.overrides["lab"].state, HeldBy::Unlocked);
        // Restart 100 s later: still released, for what is left.
        let mut g = Gateway::new(building(), Box::new(Table), state.clone(), at(101));
        drain(&mut g);
        let lab = &g.doors()[0];
        assert!(lab.released, "{lab:?}");
        assert_eq!(
            lab.reverts_at,
            Some(at(601).mono),
            "the override ends when it would have"
        );
        // Lockdown, then a restart: still locked down, cards refused.
        let out = remote(&mut g, at(102), RemoteAction::Lockdown { doors: vec![] });
        let state = whole(commits(&out)[0]);
        let mut g = Gateway::new(building(), Box::new(Table), state, at(200));
        drain(&mut g);
        assert!(g.is_locked_down("lab"));
        let out = card(&mut g, at(201), 1, 1);
        assert!(
            commits(&out)[0].records.iter().any(|r| matches!(
                r,
                EventKind::AccessDenied {
                    reason: DenyReason::Lockdown,
                    ..
                }
            )),
            "{out:?}"
        );
        assert!(!g.doors()[0].released);
    }

    /// The whole state a commit carries (a door's state changed).
    fn whole(c: &Commit) -> StandingState {
        match &c.state {
            Some(StandingChange::Whole(s)) => (**s).clone(),
            other => panic!("not a whole state: {other:?}"),
        }
    }

    #[test]
    fn an_override_that_ended_while_down_reverts_with_its_event() {
        let mut g = Gateway::new(building(), Box::new(Table), StandingState::default(), at(0));
        drain(&mut g);
        let out = remote(
            &mut g,
            at(1),
            RemoteAction::Unlock {
                door: "lab".into(),
                seconds: 60,
            },
        );
        let state = whole(commits(&out)[0]);
        let mut g = Gateway::new(building(), Box::new(Table), state, at(3600));
        let out = drain(&mut g);
        assert!(!g.doors()[0].released);
        let c = commits(&out);
        assert!(
            c[0].records.iter().any(|r| matches!(
                r,
                EventKind::DoorModeChanged { door, mode } if *door == "lab" && mode == "card_only"
            )),
            "{out:?}"
        );
        assert!(whole(c[0]).overrides.is_empty());
    }

    #[test]
    fn a_passage_goes_the_way_of_the_grant_not_of_a_later_deny() {
        let mut g = Gateway::new(building(), Box::new(Table), StandingState::default(), at(0));
        drain(&mut g);
        card(&mut g, at(1), 1, 1); // granted at the in-reader
        card(&mut g, at(2), 2, 9); // a lost pass at the out-reader
        g.handle(
            at(3),
            Input::Bus {
                bus: "bus0".into(),
                event: BusEvent::Inputs {
                    address: 1,
                    inputs: vec![1],
                },
            },
        );
        let out = drain(&mut g);
        assert!(
            commits(&out)[0].records.iter().any(|r| matches!(
                r,
                EventKind::Presence {
                    direction: crate::door::Direction::In,
                    ..
                }
            )),
            "{out:?}"
        );
        assert!(g.presence().get(&CredentialId(STAFF.into())).is_some());
        // The passage is committed as its line, not as the whole state.
        let lines = commits(&out)
            .iter()
            .find_map(|c| match &c.state {
                Some(StandingChange::Presence(lines)) => Some(lines.clone()),
                _ => None,
            })
            .expect("a presence change");
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].credential, CredentialId(STAFF.into()));
    }

    /// The lab with a fire-alarm contact on input 3 of PD 2.
    fn building_with_fire_alarm() -> Building {
        building().with_fire_alarms(vec![crate::site::building::FireAlarmWiring {
            id: "fire-panel".into(),
            input: InputRef {
                pd: pd(2),
                input: 3,
                active_high: true,
            },
            releases: vec!["lab".into()],
        }])
    }

    fn fire_input(g: &mut Gateway, now: Now, active: bool) -> Vec<Output> {
        g.handle(
            now,
            Input::Bus {
                bus: "bus0".into(),
                event: BusEvent::Inputs {
                    address: 2,
                    inputs: vec![0, 0, 0, u8::from(active)],
                },
            },
        );
        drain(g)
    }

    /// Fire alarm > lockdown: the alarm releases the locked-down lab, a
    /// restart keeps it released until the input reads inactive, and then
    /// the lockdown holds again.
    #[test]
    fn a_fire_alarm_wins_over_lockdown_and_survives_a_restart() {
        let mut g = Gateway::new(
            building_with_fire_alarm(),
            Box::new(Table),
            StandingState::default(),
            at(0),
        );
        drain(&mut g);
        remote(&mut g, at(1), RemoteAction::Lockdown { doors: vec![] });
        assert!(!g.doors()[0].released);
        let out = fire_input(&mut g, at(2), true);
        assert!(g.doors()[0].released, "{out:?}");
        assert_eq!(g.doors()[0].mode, "emergency_unlocked");
        // A card in the fire alarm is not refused for the lockdown.
        assert!(!g.is_locked_down("lab"));
        let state = whole(commits(&out)[0]);
        assert_eq!(state.fire_alarms.len(), 1);
        assert!(state.lockdown.contains("lab"));
        let fire_events = |out: &[Output]| -> Vec<EventKind> {
            commits(out)
                .iter()
                .flat_map(|c| c.records.iter())
                .filter(|k| {
                    matches!(
                        k,
                        EventKind::FireAlarm { .. } | EventKind::FireAlarmInputOffline { .. }
                    )
                })
                .cloned()
                .collect()
        };
        assert_eq!(
            fire_events(&out),
            vec![EventKind::FireAlarm {
                input: "fire-panel".into(),
                active: true,
                releases: vec!["lab".into()],
            }]
        );
        assert!(fire_events(&out)[0].is_urgent());
        // The same level again is no news.
        assert!(fire_events(&fire_input(&mut g, at(3), true)).is_empty());
        // The PD carrying the input goes offline: the alarm stands, and
        // its own alarm says the input is unseen.
        g.handle(
            at(4),
            Input::Bus {
                bus: "bus0".into(),
                event: BusEvent::Offline {
                    address: 2,
                    reason: crate::osdp::OfflineReason::NoReply,
                },
            },
        );
        let out = drain(&mut g);
        assert_eq!(
            fire_events(&out),
            vec![EventKind::FireAlarmInputOffline {
                input: "fire-panel".into(),
                active: true,
            }]
        );
        assert!(g.doors()[0].released);

        let mut g = Gateway::new(building_with_fire_alarm(), Box::new(Table), state, at(100));
        drain(&mut g);
        assert!(
            g.doors()[0].released,
            "released again at once after the restart"
        );
        // The first report after the start says the alarm cleared; a flap
        // back within FIRE_CLEAR_HOLD keeps the door released throughout,
        // with no event.
        let out = fire_input(&mut g, at(101), false);
        assert!(g.doors()[0].released, "{out:?}");
        assert!(fire_events(&out).is_empty());
        let out = fire_input(&mut g, at(103), true);
        assert!(fire_events(&out).is_empty() && g.doors()[0].released);
        fire_input(&mut g, at(104), false);
        g.handle(at(108), Input::Timeout);
        assert!(g.doors()[0].released, "still within the hold");
        // Inactive for the whole hold: cleared, with its event.
        assert_eq!(g.poll_timeout(), Some(at(104).mono + FIRE_CLEAR_HOLD));
        g.handle(at(109), Input::Timeout);
        let out = drain(&mut g);
        assert!(!g.doors()[0].released, "{out:?}");
        assert_eq!(g.doors()[0].mode, "lockdown");
        assert!(g.is_locked_down("lab"));
        assert!(whole(commits(&out)[0]).fire_alarms.is_empty());
        assert_eq!(
            fire_events(&out),
            vec![EventKind::FireAlarm {
                input: "fire-panel".into(),
                active: false,
                releases: vec!["lab".into()],
            }]
        );
    }

    /// Lockdown > override: a timed release of a door in lockdown is
    /// refused, with the reason journaled.
    #[test]
    fn a_timed_release_of_a_door_in_lockdown_is_refused() {
        let mut g = Gateway::new(building(), Box::new(Table), StandingState::default(), at(0));
        drain(&mut g);
        remote(&mut g, at(1), RemoteAction::Lockdown { doors: vec![] });
        let unlock = RemoteAction::Unlock {
            door: "lab".into(),
            seconds: 60,
        };
        let out = remote(&mut g, at(2), unlock);
        assert!(!g.doors()[0].released);
        assert!(
            out.iter().any(|o| matches!(
                o,
                Output::Reply {
                    result: Err(RemoteError::InLockdown(_)),
                    ..
                }
            )),
            "{out:?}"
        );
        assert!(
            commits(&out)[0].records.iter().any(|r| matches!(
                r,
                EventKind::RemoteAction(a) if a.outcome == crate::action::Outcome::Refused
            )),
            "{out:?}"
        );
    }

    /// A standard door set to `lockdown` by a remote mode (not a lockdown)
    /// still refuses cards that are not exempt, and the decision says so:
    /// the why box answers as the door does.
    #[test]
    fn a_door_held_in_lockdown_mode_is_decided_as_the_door_will() {
        let mut g = Gateway::new(building(), Box::new(Table), StandingState::default(), at(0));
        drain(&mut g);
        let lockdown_mode = RemoteAction::SetMode {
            door: "lab".into(),
            mode: "lockdown".parse().unwrap(),
            seconds: 600,
        };
        remote(&mut g, at(1), lockdown_mode);
        assert!(!g.is_locked_down("lab"), "a mode, not a lockdown");
        let staff = Presented::from(Card::Raw {
            bytes: vec![1],
            bits: 8,
        });
        assert_eq!(
            g.decide(&"lab".into(), &staff, None).deny_reason(),
            Some(DenyReason::Lockdown)
        );
        let out = card(&mut g, at(2), 1, 1);
        assert!(!g.doors()[0].released, "{out:?}");
    }

    /// The lab is scheduled `unlocked` with *first person in* for the
    /// first two hours of the run and from the fourth hour to the sixth.
    struct FirstInWindow;

    impl FirstInWindow {
        fn open(when: Timestamp) -> bool {
            let since = when.duration_since(at(0).system);
            let h = SignedDuration::from_hours;
            (since >= SignedDuration::ZERO && since < h(2)) || (since >= h(4) && since < h(6))
        }
    }

    impl Rules for FirstInWindow {
        fn decide(
            &self,
            door: &DoorId,
            key: &CredentialKey,
            pin: Option<&str>,
            at: Timestamp,
        ) -> Verdict {
            Table.decide(door, key, pin, at)
        }

        fn door_mode(&self, _door: &DoorId, when: Timestamp) -> Option<String> {
            Self::open(when).then(|| "unlocked".to_owned())
        }

        fn first_person_in_day(
            &self,
            _door: &DoorId,
            when: Timestamp,
        ) -> Option<jiff::civil::Date> {
            Self::open(when).then(|| local_day(when))
        }
    }

    /// The local day in a zone six hours behind UTC: the whole test run
    /// (22:00Z to 04:00Z) is one day there.
    fn local_day(when: Timestamp) -> jiff::civil::Date {
        when.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(-6)))
            .date()
    }

    /// A live beacon agreeing with the clock: the time is confirmed.
    fn beacon(g: &mut Gateway, now: Now) -> Vec<Output> {
        g.handle(
            now,
            Input::Beacon {
                at: now.system,
                came: now.mono,
            },
        );
        drain(g)
    }

    fn records(out: &[Output]) -> Vec<EventKind> {
        commits(out)
            .iter()
            .flat_map(|c| c.records.clone())
            .collect()
    }

    #[test]
    fn first_person_in_waits_for_a_grant_in_the_window() {
        let mut g = Gateway::new(
            building(),
            Box::new(FirstInWindow),
            StandingState::default(),
            at(0),
        );
        let out = drain(&mut g);
        let out = [out, beacon(&mut g, at(5))].concat();
        // The window is open and the time confirmed: still card mode.
        assert_eq!(g.doors()[0].mode, "card_only");
        let awaited = records(&out)
            .into_iter()
            .filter(|r| matches!(r, EventKind::FirstPersonInAwaited { .. }))
            .count();
        assert_eq!(awaited, 1, "journaled once: {out:?}");
        // A denied card is nobody.
        card(&mut g, at(10), 1, 9);
        g.handle(at(61), Input::Timeout);
        drain(&mut g);
        assert_eq!(g.doors()[0].mode, "card_only");
        // The first grant starts the scheduled mode, committed first.
        let out = card(&mut g, at(70), 1, 1);
        assert_eq!(g.doors()[0].mode, "unlocked", "{out:?}");
        let c = commits(&out);
        assert!(
            c[0].records.iter().any(|r| matches!(
                r,
                EventKind::FirstPersonIn { door, credential, mode }
                    if *door == "lab" && credential == STAFF && mode == "unlocked"
            )),
            "{out:?}"
        );
        let state = whole(c[0]);
        assert_eq!(state.first_in["lab"].credential, STAFF);
        let first_command = out.iter().position(|o| matches!(o, Output::Command { .. }));
        let commit = out.iter().position(|o| matches!(o, Output::Commit(_)));
        assert!(commit < first_command, "{out:?}");

        // A restart in the window: unlocked again (at a proven time),
        // without another card.
        let mut g2 = Gateway::new(building(), Box::new(FirstInWindow), state.clone(), at(600));
        drain(&mut g2);
        beacon(&mut g2, at(601));
        assert_eq!(g2.doors()[0].mode, "unlocked");

        // The window closes: card mode, and the first person in is gone.
        g.handle(at(2 * 3600), Input::Timeout);
        let out = drain(&mut g);
        assert_eq!(g.doors()[0].mode, "card_only");
        assert!(whole(commits(&out)[0]).first_in.is_empty(), "{out:?}");
        // The next window waits for a grant of its own.
        beacon(&mut g, at(4 * 3600));
        g.handle(at(4 * 3600 + 1), Input::Timeout);
        drain(&mut g);
        assert_eq!(g.doors()[0].mode, "card_only");
        card(&mut g, at(4 * 3600 + 60), 1, 1);
        assert_eq!(g.doors()[0].mode, "unlocked");
    }

    #[test]
    fn a_grant_before_the_window_or_a_restart_after_it_starts_nothing() {
        // Start two hours before the window's second opening.
        let mut g = Gateway::new(
            building(),
            Box::new(FirstInWindow),
            StandingState::default(),
            at(2 * 3600 + 60),
        );
        drain(&mut g);
        beacon(&mut g, at(2 * 3600 + 70));
        let out = card(&mut g, at(2 * 3600 + 80), 1, 1);
        assert!(
            !records(&out)
                .iter()
                .any(|r| matches!(r, EventKind::FirstPersonIn { .. })),
            "{out:?}"
        );
        g.handle(at(4 * 3600), Input::Timeout);
        drain(&mut g);
        beacon(&mut g, at(4 * 3600 + 1));
        assert_eq!(g.doors()[0].mode, "card_only");

        // A first person in of the first window, restored while the
        // second is open the same day (the gateway was down when the
        // first closed): the schedule did not stay open since the grant,
        // so it waits.
        let mut state = StandingState::default();
        state.first_in.insert(
            "lab".into(),
            FirstIn {
                day: local_day(at(0).system),
                at: at(60).system,
                credential: STAFF.into(),
            },
        );
        let mut g = Gateway::new(
            building(),
            Box::new(FirstInWindow),
            state,
            at(4 * 3600 + 120),
        );
        let out = drain(&mut g);
        assert!(whole(commits(&out)[0]).first_in.is_empty(), "{out:?}");
        beacon(&mut g, at(4 * 3600 + 121));
        assert_eq!(g.doors()[0].mode, "card_only");
        // This window's own first person in starts it.
        card(&mut g, at(4 * 3600 + 180), 1, 1);
        assert_eq!(g.doors()[0].mode, "unlocked");
    }

    #[test]
    fn a_grant_at_an_unproven_time_is_not_the_first_person_in() {
        let mut g = Gateway::new(
            building(),
            Box::new(FirstInWindow),
            StandingState::default(),
            at(0),
        );
        drain(&mut g);
        // No beacon, no signed time: the window may not really be open.
        let out = card(&mut g, at(10), 1, 1);
        assert!(
            !records(&out)
                .iter()
                .any(|r| matches!(r, EventKind::FirstPersonIn { .. })),
            "{out:?}"
        );
        assert!(g.standing().first_in.is_empty());
        assert_eq!(g.doors()[0].mode, "card_only");
        // Once the time is confirmed, the next grant is.
        beacon(&mut g, at(20));
        let out = card(&mut g, at(30), 1, 1);
        assert!(
            records(&out)
                .iter()
                .any(|r| matches!(r, EventKind::FirstPersonIn { .. })),
            "{out:?}"
        );
        assert_eq!(g.doors()[0].mode, "unlocked");
    }
}
