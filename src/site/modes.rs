//! Which standing mode each door should be in, sans-IO: the authorities
//! that may set it, asked in the order of [`PRECEDENCE`] (strongest first):
//!
//! 1. a fire alarm: escape doors released (`emergency_unlocked`,
//!    `emergency_free`) while the alarm input is active — above lockdown,
//!    because a lockdown keeps people out and must never trap them in;
//! 2. lockdown, until it is released;
//! 3. a remote mode set with an expiry (reverts by itself at its expiry,
//!    also while the uplink is down);
//! 4. the scheduled mode from the snapshot: an event window in force for
//!    the door (announced group meetings), else the weekly door-mode
//!    schedule (e.g. free rotation in office hours; with first person in
//!    only after a grant in the window — the core decides that, the
//!    planner sees a scheduled mode or none);
//! 5. the kind's default (`card_only` / `cardholders_only`).
//!
//! Timed overrides (a momentary unlock, free rotation for a time) live in
//! the door machines, below lockdown and the fire alarm: a remote one for a
//! door in lockdown is refused before it reaches the door
//! (`RemoteError::InLockdown`), and a standard door refuses overrides in
//! lockdown and in emergency itself.
//!
//! The planner only says when the effective mode changes; the door machines
//! own timed overrides (momentary unlock, free rotation for a time) and
//! revert those by themselves. A remote mode's end is a monotonic instant:
//! "for 30 minutes" must stay 30 minutes when the system clock steps (the
//! owner persists it as wall-clock time and converts it back at restore).

use std::collections::{BTreeMap, BTreeSet};

use std::time::Instant;

pub use crate::door::mode::{DoorClass, StandingMode, UnknownMode};
use crate::ids::{DoorId, InputId};

/// Who may set a door's standing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Authority {
    /// A fire-alarm input is active.
    FireAlarm,
    /// Security locked the door down.
    Lockdown,
    /// A remote mode set with an expiry (central, the admin page).
    Remote,
    /// The rules' door-mode schedule.
    Schedule,
    /// The kind's default.
    Default,
}

/// The one table of precedence, strongest first: the planner asks each in
/// turn and the first with a claim sets the mode. The simulation checks
/// its doors against it and ARCHITECTURE.md prints it.
pub const PRECEDENCE: [Authority; 5] = [
    Authority::FireAlarm,
    Authority::Lockdown,
    Authority::Remote,
    Authority::Schedule,
    Authority::Default,
];

#[derive(Debug)]
struct DoorPlan {
    class: DoorClass,
    scheduled: Option<StandingMode>,
    remote: Option<(StandingMode, Instant)>,
    lockdown: bool,
    fire: bool,
    applied: Option<StandingMode>,
}

impl DoorPlan {
    /// What `authority` asks of the door now, if anything.
    fn claim(&self, authority: Authority, now: Instant) -> Option<StandingMode> {
        match authority {
            Authority::FireAlarm => self.fire.then(|| self.class.emergency_mode()),
            Authority::Lockdown => self.lockdown.then(|| self.class.lockdown_mode()),
            Authority::Remote => self
                .remote
                .filter(|(_, until)| now < *until)
                .map(|(mode, _)| mode),
            Authority::Schedule => self.scheduled,
            Authority::Default => Some(self.class.default_mode()),
        }
    }

    /// The mode and the authority that set it.
    fn effective(&self, now: Instant) -> (StandingMode, Authority) {
        PRECEDENCE
            .into_iter()
            .find_map(|a| self.claim(a, now).map(|m| (m, a)))
            .unwrap_or((self.class.default_mode(), Authority::Default))
    }
}

/// The mode planner of one building.
#[derive(Debug, Default)]
pub struct ModePlanner {
    doors: BTreeMap<DoorId, DoorPlan>,
    /// Active fire alarms by input, with the doors each releases.
    fire_alarms: BTreeMap<InputId, BTreeSet<DoorId>>,
}

impl ModePlanner {
    /// A planner for these doors; nothing applied yet, so the first
    /// [`ModePlanner::changes`] reports every door.
    pub fn new(doors: impl IntoIterator<Item = (DoorId, DoorClass)>) -> Self {
        Self {
            doors: doors
                .into_iter()
                .map(|(id, class)| {
                    let plan = DoorPlan {
                        class,
                        scheduled: None,
                        remote: None,
                        lockdown: false,
                        fire: false,
                        applied: None,
                    };
                    (id, plan)
                })
                .collect(),
            fire_alarms: BTreeMap::new(),
        }
    }

    /// The kind of a door, if the planner knows it.
    pub fn class(&self, door: &str) -> Option<DoorClass> {
        self.doors.get(door).map(|d| d.class)
    }

    /// Set the scheduled mode names (from the rules at `now`); a name that
    /// does not fit its door is returned and otherwise ignored.
    pub fn set_scheduled<'a>(
        &mut self,
        scheduled: impl Fn(&DoorId) -> Option<&'a str>,
    ) -> Vec<(DoorId, UnknownMode)> {
        let mut bad = Vec::new();
        for (id, plan) in &mut self.doors {
            plan.scheduled = match scheduled(id).map(|name| plan.class.parse_mode(name)) {
                Some(Ok(mode)) => Some(mode),
                Some(Err(e)) => {
                    bad.push((id.clone(), e));
                    None
                }
                None => None,
            };
        }
        bad
    }

    /// A remote mode until `until`.
    pub fn set_remote(&mut self, door: &str, mode: StandingMode, until: Instant) -> bool {
        match self.doors.get_mut(door) {
            Some(plan) => {
                plan.remote = Some((mode, until));
                true
            }
            None => false,
        }
    }

    /// Lock down (or release) the given doors, or all when `doors` is empty.
    pub fn set_lockdown(&mut self, doors: &[DoorId], on: bool) {
        for (id, plan) in &mut self.doors {
            if doors.is_empty() || doors.contains(id) {
                plan.lockdown = on;
            }
        }
    }

    /// A fire-alarm input went active (releasing `doors`) or cleared.
    pub fn set_fire_alarm(&mut self, input: &InputId, doors: &[DoorId], active: bool) {
        if active {
            self.fire_alarms
                .insert(input.clone(), doors.iter().cloned().collect());
        } else {
            self.fire_alarms.remove(input);
        }
        for (id, plan) in &mut self.doors {
            plan.fire = self.fire_alarms.values().any(|d| d.contains(id));
        }
    }

    /// The fire-alarm inputs active now (standing state to persist).
    pub fn fire_alarms(&self) -> BTreeSet<InputId> {
        self.fire_alarms.keys().cloned().collect()
    }

    /// Whether lockdown is what holds the door now (a fire alarm above it
    /// releases the door instead).
    pub fn is_locked_down(&self, door: &str) -> bool {
        self.doors.get(door).is_some_and(|d| d.lockdown && !d.fire)
    }

    /// Whether the door is held in its lockdown mode now (`lockdown`,
    /// `locked`), by a lockdown or by a mode set or scheduled: what a card
    /// decision must know, so that it answers as the door will.
    pub fn holds_locked(&self, door: &str) -> bool {
        self.doors
            .get(door)
            .is_some_and(|d| d.applied == Some(d.class.lockdown_mode()))
    }

    /// The authority that sets the door's mode now.
    pub fn authority(&self, door: &str, now: Instant) -> Option<Authority> {
        self.doors.get(door).map(|d| d.effective(now).1)
    }

    /// The doors whose effective mode differs from the last one reported,
    /// marking them applied.
    pub fn changes(&mut self, now: Instant) -> Vec<(DoorId, StandingMode)> {
        let mut out = Vec::new();
        for (id, plan) in &mut self.doors {
            if let Some((_, until)) = plan.remote
                && now >= until
            {
                plan.remote = None;
            }
            let (mode, _) = plan.effective(now);
            if plan.applied != Some(mode) {
                plan.applied = Some(mode);
                out.push((id.clone(), mode));
            }
        }
        out
    }

    /// The doors in lockdown (standing state to persist).
    pub fn lockdowns(&self) -> BTreeSet<DoorId> {
        self.doors
            .iter()
            .filter(|(_, d)| d.lockdown)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The remote modes in force and their expiries (standing state to
    /// persist).
    pub fn remotes(&self) -> BTreeMap<DoorId, (StandingMode, Instant)> {
        self.doors
            .iter()
            .filter_map(|(id, d)| d.remote.map(|r| (id.clone(), r)))
            .collect()
    }

    /// The earliest remote-mode expiry (the owner wakes then).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.doors
            .values()
            .filter_map(|d| d.remote.map(|(_, until)| until))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::door::{Mode, RevolvingMode};
    use std::time::Duration;

    /// Virtual time: minutes after a base instant.
    fn t(minutes: u64) -> Instant {
        crate::test_clock::epoch() + Duration::from_secs(minutes * 60)
    }

    fn planner() -> ModePlanner {
        ModePlanner::new([
            ("rev".into(), DoorClass::Revolving),
            ("side".into(), DoorClass::Standard),
        ])
    }

    #[test]
    fn first_changes_report_defaults_then_nothing() {
        let mut p = planner();
        let now = t(0);
        let c = p.changes(now);
        assert_eq!(
            c,
            vec![
                (
                    "rev".into(),
                    StandingMode::Revolving(RevolvingMode::CardholdersOnly)
                ),
                ("side".into(), StandingMode::Standard(Mode::CardOnly)),
            ]
        );
        assert!(p.changes(now).is_empty());
    }

    #[test]
    fn schedule_then_lockdown_then_release() {
        let mut p = planner();
        let now = t(0);
        p.changes(now);
        let bad = p.set_scheduled(|d| (d == "rev").then_some("free_rotation"));
        assert!(bad.is_empty());
        assert_eq!(
            p.changes(now),
            vec![(
                "rev".into(),
                StandingMode::Revolving(RevolvingMode::FreeRotation)
            )]
        );
        p.set_lockdown(&[], true);
        let c = p.changes(now);
        assert_eq!(c.len(), 2);
        assert!(c.contains(&("side".into(), StandingMode::Standard(Mode::Lockdown))));
        assert!(c.contains(&("rev".into(), StandingMode::Revolving(RevolvingMode::Locked))));
        // The schedule moving on does not lift a lockdown.
        p.set_scheduled(|_| None);
        assert!(p.changes(now).is_empty());
        p.set_lockdown(&["rev".into()], false);
        assert_eq!(
            p.changes(now),
            vec![(
                "rev".into(),
                StandingMode::Revolving(RevolvingMode::CardholdersOnly)
            )]
        );
    }

    #[test]
    fn remote_mode_reverts_at_expiry() {
        let mut p = planner();
        let now = t(0);
        p.changes(now);
        let until = t(10);
        assert!(p.set_remote("side", StandingMode::Standard(Mode::ScheduledUnlock), until));
        assert_eq!(p.next_expiry(), Some(until));
        assert_eq!(p.changes(now).len(), 1);
        assert!(p.changes(t(10) - Duration::from_secs(1)).is_empty());
        assert_eq!(
            p.changes(until),
            vec![("side".into(), StandingMode::Standard(Mode::CardOnly))]
        );
        assert_eq!(p.next_expiry(), None);
    }

    #[test]
    fn wrong_mode_names_are_reported_not_applied() {
        let mut p = planner();
        let bad = p.set_scheduled(|_| Some("free_rotation"));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "side");
        assert!(
            bad[0]
                .1
                .to_string()
                .contains("card_only, unlocked, lockdown")
        );
        assert!(DoorClass::Revolving.parse_mode("unlocked").is_err());
    }

    /// The table decides: each authority wins over every one below it.
    #[test]
    fn precedence_is_the_table() {
        let t = crate::test_clock::epoch();
        let mut p = ModePlanner::new([("d".into(), DoorClass::Standard)]);
        let d: DoorId = "d".into();
        let fire: InputId = "panel".into();
        let mode = |p: &ModePlanner| {
            let plan = &p.doors[&d];
            plan.effective(t)
        };
        assert_eq!(mode(&p).1, Authority::Default);
        p.set_scheduled(|_| Some("unlocked"));
        assert_eq!(mode(&p).1, Authority::Schedule);
        p.set_remote(
            "d",
            StandingMode::Standard(Mode::CardOnly),
            t + Duration::from_secs(60),
        );
        assert_eq!(
            mode(&p),
            (StandingMode::Standard(Mode::CardOnly), Authority::Remote)
        );
        p.set_lockdown(&[], true);
        assert_eq!(
            mode(&p),
            (StandingMode::Standard(Mode::Lockdown), Authority::Lockdown)
        );
        p.set_fire_alarm(&fire, std::slice::from_ref(&d), true);
        assert_eq!(
            mode(&p),
            (
                StandingMode::Standard(Mode::Emergency),
                Authority::FireAlarm
            )
        );
        assert!(!p.is_locked_down("d"));
        p.set_fire_alarm(&fire, &[], false);
        assert_eq!(mode(&p).1, Authority::Lockdown);
        assert_eq!(PRECEDENCE.len(), 5);
        assert!(PRECEDENCE.windows(2).all(|w| w[0] < w[1]));
    }
}
