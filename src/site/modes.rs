//! Which standing mode each door should be in, sans-IO: the rules'
//! door-mode schedule, a building or door lockdown, and remote mode changes
//! with an expiry, layered in that order of precedence (lowest first):
//!
//! 1. the kind's default (`card_only` / `cardholders_only`);
//! 2. the scheduled mode from the snapshot (e.g. free rotation in office
//!    hours);
//! 3. a remote mode set with an expiry (wall clock; reverts by itself at
//!    its expiry, also while the uplink is down);
//! 4. lockdown, which wins over everything until it is released.
//!
//! The planner only says when the effective mode changes; the door machines
//! own timed overrides (momentary unlock, free rotation for a time) and
//! revert those by themselves. A remote mode's end is a monotonic instant:
//! "for 30 minutes" must stay 30 minutes when the system clock steps (the
//! owner persists it as wall-clock time and converts it back at restore).

use std::collections::{BTreeMap, BTreeSet};

use std::time::Instant;

pub use crate::door::mode::{DoorClass, StandingMode, UnknownMode};
use crate::ids::DoorId;

#[derive(Debug)]
struct DoorPlan {
    class: DoorClass,
    scheduled: Option<StandingMode>,
    remote: Option<(StandingMode, Instant)>,
    lockdown: bool,
    applied: Option<StandingMode>,
}

impl DoorPlan {
    fn effective(&self, now: Instant) -> StandingMode {
        if self.lockdown {
            return self.class.lockdown_mode();
        }
        if let Some((mode, until)) = self.remote
            && now < until
        {
            return mode;
        }
        self.scheduled.unwrap_or(self.class.default_mode())
    }
}

/// The mode planner of one building.
#[derive(Debug, Default)]
pub struct ModePlanner {
    doors: BTreeMap<DoorId, DoorPlan>,
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
                        applied: None,
                    };
                    (id, plan)
                })
                .collect(),
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

    /// Whether a door is locked down.
    pub fn is_locked_down(&self, door: &str) -> bool {
        self.doors.get(door).is_some_and(|d| d.lockdown)
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
            let mode = plan.effective(now);
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
}
