//! Interlocks (airlocks, mantraps), pure: groups of doors of which at most
//! one may be released or open at a time. A grant or an exit-button press
//! at one door while another of its group is released or open waits here,
//! bounded in time ([`Interlock::wait`], at most [`MAX_WAIT`]) and in
//! number ([`MAX_WAITING`] per group); when the others are closed and
//! locked the first waiter is served, when its time is up it is refused
//! (reason `interlock`). Waiters are not kept over a restart: the card is
//! presented again.
//!
//! The fire alarm overrides: a door held `emergency_unlocked` is not held
//! back, and does not hold the others back (`site::modes::PRECEDENCE`).
//! A remote release of a door while another of its group is busy is
//! refused by the core (`RemoteError::Interlocked`); a scheduled release
//! mode waits (`door_mode_withheld`, reason `interlocked`) while another
//! door is busy or got the group's scheduled release first. A door released
//! by either keeps the rest of the group waiting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::building::DoorState;
use crate::door::Direction;
use crate::ids::{DoorId, ReaderId};
use crate::osdp::message::RawCard;

/// The longest a grant may wait for its airlock.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// The most waiters per group; one more is refused at once.
pub const MAX_WAITING: usize = 4;
/// The most doors in one group.
pub const MAX_DOORS: usize = 8;

/// One interlock group, as the gateway config wires it (`[[interlock]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interlock {
    /// Its name.
    pub id: String,
    /// Its doors (standard doors, each in one group at most).
    pub doors: Vec<DoorId>,
    /// How long a grant or exit request waits, at most [`MAX_WAIT`].
    pub wait: Duration,
}

/// What waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiter {
    /// A card read, decided again when served.
    Card {
        /// The door.
        door: DoorId,
        /// The reader.
        reader: ReaderId,
        /// Its direction.
        direction: Direction,
        /// The card as read.
        card: RawCard,
        /// The PIN typed with it, if any.
        pin: Option<String>,
    },
    /// An exit-button press.
    ExitRequest {
        /// The door.
        door: DoorId,
    },
}

impl Waiter {
    /// The door it waits at.
    pub fn door(&self) -> &DoorId {
        match self {
            Self::Card { door, .. } | Self::ExitRequest { door } => door,
        }
    }
}

/// What became of a waiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// The others are closed and locked: go ahead.
    Free(Waiter),
    /// Its time is up: refuse it.
    TimedOut(Waiter),
}

/// The interlocks of a building and what waits at them.
#[derive(Debug, Clone, Default)]
pub struct Interlocks {
    groups: Vec<Interlock>,
    waiting: VecDeque<(Waiter, Instant)>,
}

impl Interlocks {
    /// These groups, nothing waiting.
    pub fn new(groups: Vec<Interlock>) -> Self {
        Self {
            groups,
            waiting: VecDeque::new(),
        }
    }

    /// The groups.
    pub fn groups(&self) -> &[Interlock] {
        &self.groups
    }

    /// The group of `door`.
    pub fn group_of(&self, door: &str) -> Option<&Interlock> {
        self.groups
            .iter()
            .find(|g| g.doors.iter().any(|d| d == door))
    }

    /// Whether `door` must wait now: another door of its group is
    /// released or open (and no fire alarm holds `door` released).
    pub fn busy(&self, door: &str, states: &[DoorState]) -> bool {
        let Some(group) = self.group_of(door) else {
            return false;
        };
        let emergency = |s: &DoorState| s.mode.as_str() == "emergency_unlocked";
        if states.iter().any(|s| s.id == door && emergency(s)) {
            return false;
        }
        states.iter().any(|s| {
            s.id != door && group.doors.contains(&s.id) && !emergency(s) && (s.released || s.open)
        })
    }

    /// Let `waiter` wait until `now` + its group's wait; `Err` gives it
    /// back when its group's queue is full (refuse it at once).
    pub fn wait(&mut self, waiter: Waiter, now: Instant) -> Result<(), Waiter> {
        let Some(group) = self.group_of(waiter.door()) else {
            return Err(waiter);
        };
        let wait = group.wait.min(MAX_WAIT);
        let doors = group.doors.clone();
        let queued = self
            .waiting
            .iter()
            .filter(|(w, _)| doors.contains(w.door()))
            .count();
        if queued >= MAX_WAITING {
            return Err(waiter);
        }
        self.waiting.push_back((waiter, now + wait));
        Ok(())
    }

    /// The next waiter to serve or refuse, oldest first; `None` while
    /// every waiter must go on waiting. Call again after acting on one
    /// (the doors have changed).
    pub fn next(&mut self, now: Instant, states: &[DoorState]) -> Option<Served> {
        let i = self
            .waiting
            .iter()
            .position(|(w, until)| *until <= now || !self.busy(w.door(), states))?;
        let (waiter, until) = self.waiting.remove(i)?;
        Some(if until <= now && self.busy(waiter.door(), states) {
            Served::TimedOut(waiter)
        } else {
            Served::Free(waiter)
        })
    }

    /// When the oldest waiter's time is up.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.iter().map(|(_, until)| *until).min()
    }

    /// How many wait at `group`'s doors.
    pub fn waiting_at(&self, group: &Interlock) -> usize {
        self.waiting
            .iter()
            .filter(|(w, _)| group.doors.contains(w.door()))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::door::Mode;
    use crate::site::modes::{DoorClass, StandingMode};

    fn state(id: &str, released: bool, open: bool, mode: Mode) -> DoorState {
        DoorState {
            id: id.into(),
            kind: DoorClass::Standard,
            mode: StandingMode::Standard(mode),
            override_state: None,
            released,
            open,
            forced: false,
            held_open: false,
            passages: None,
            reverts_at: None,
        }
    }

    fn airlock() -> Interlocks {
        Interlocks::new(vec![Interlock {
            id: "airlock".into(),
            doors: vec!["outer".into(), "inner".into()],
            wait: Duration::from_secs(10),
        }])
    }

    #[test]
    fn a_waiter_is_served_when_the_other_door_closes_or_refused_in_time() {
        let t0 = crate::test_clock::epoch();
        let mut il = airlock();
        let open = [
            state("outer", false, true, Mode::CardOnly),
            state("inner", false, false, Mode::CardOnly),
        ];
        let shut = [
            state("outer", false, false, Mode::CardOnly),
            state("inner", false, false, Mode::CardOnly),
        ];
        assert!(il.busy("inner", &open));
        assert!(!il.busy("outer", &open), "its own state does not hold it");
        assert!(!il.busy("lobby", &open), "not in a group");
        let rex = Waiter::ExitRequest {
            door: "inner".into(),
        };
        il.wait(rex.clone(), t0).unwrap();
        assert_eq!(il.next(t0 + Duration::from_secs(1), &open), None);
        assert_eq!(
            il.next(t0 + Duration::from_secs(2), &shut),
            Some(Served::Free(rex.clone()))
        );
        il.wait(rex.clone(), t0).unwrap();
        assert_eq!(il.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(
            il.next(t0 + Duration::from_secs(10), &open),
            Some(Served::TimedOut(rex.clone()))
        );
        for _ in 0..MAX_WAITING {
            il.wait(rex.clone(), t0).unwrap();
        }
        assert_eq!(il.wait(rex.clone(), t0), Err(rex));
    }

    #[test]
    fn a_fire_alarm_overrides_the_interlock() {
        let il = airlock();
        let fire = [
            state("outer", true, true, Mode::Emergency),
            state("inner", true, false, Mode::Emergency),
        ];
        assert!(!il.busy("inner", &fire));
        assert!(!il.busy("outer", &fire));
    }
}
