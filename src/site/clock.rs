//! Time the gateway can trust, in both directions, sans-IO.
//!
//! The rule (also in `docs/rules.md`):
//! - a **floor** is moved only by times vouched for by a signature (snapshot,
//!   delta and command issue times) and persisted; the system clock never
//!   moves it, so a clock glitch cannot leave anything behind;
//! - between signed times the floor advances with the monotonic clock;
//! - the system clock is used when it is at or above the floor (within
//!   [`TOLERANCE`]) and no further ahead of it than [`MAX_AHEAD`];
//! - a clock behind the floor is alarmed (`clock_went_back`) and the
//!   advanced floor is used; a clock implausibly far ahead is alarmed
//!   (`clock_implausible`) and the advanced floor is used; a step of the
//!   system clock against the monotonic clock of more than [`TOLERANCE`]
//!   is alarmed (`clock_jumped`) but, when plausible, followed;
//! - each alarm is raised once per episode; once the clock is right again,
//!   the next reading is used as is: a glitch has no lasting effect.

use std::time::Instant;

use jiff::{SignedDuration, Timestamp};

/// How far the system clock may read behind the floor, or step against the
/// monotonic clock, before it is alarmed (NTP steps stay well inside; the
/// central's clock that signed the floor may differ a little from ours).
pub const TOLERANCE: SignedDuration = SignedDuration::from_mins(5);

/// How far ahead of the floor the system clock may read and still be
/// believed. A gateway hears a signed time at least with every snapshot;
/// rules expire long before a year without one.
pub const MAX_AHEAD: SignedDuration = SignedDuration::from_hours(366 * 24);

/// Something wrong with the system clock, reported once per episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockAlarm {
    /// The system clock reads earlier than the trusted floor.
    WentBack {
        /// What the system clock said.
        seen: Timestamp,
        /// The time used instead.
        trusted: Timestamp,
    },
    /// The system clock reads implausibly far beyond the floor.
    Implausible {
        /// What the system clock said.
        seen: Timestamp,
        /// The time used instead.
        trusted: Timestamp,
    },
    /// The system clock stepped against the monotonic clock.
    Jumped {
        /// What the system clock said.
        seen: Timestamp,
        /// What it would have said without the step.
        expected: Timestamp,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Episode {
    Normal,
    Behind,
    Implausible,
}

/// The trusted clock of one gateway.
#[derive(Debug, Clone)]
pub struct TrustedClock {
    /// The signed floor and the monotonic instant it was last moved or
    /// restored at.
    floor: Option<(Timestamp, Instant)>,
    /// The previous system reading, to see steps.
    previous: Option<(Timestamp, Instant)>,
    episode: Episode,
}

impl TrustedClock {
    /// Start from a persisted floor (or none), at monotonic `mono`.
    pub fn new(floor: Option<Timestamp>, mono: Instant) -> Self {
        Self {
            floor: floor.map(|f| (f, mono)),
            previous: None,
            episode: Episode::Normal,
        }
    }

    /// The persisted floor (to write with the standing state).
    pub fn floor(&self) -> Option<Timestamp> {
        self.floor.map(|(f, _)| f)
    }

    /// A time vouched for by a signature moves the floor up (never down).
    pub fn observe_signed(&mut self, signed: Timestamp, mono: Instant) {
        match self.floor {
            Some((f, _)) if f >= signed => {}
            _ => self.floor = Some((signed, mono)),
        }
    }

    /// The floor advanced by the monotonic clock since it was set.
    fn advanced_floor(&self, mono: Instant) -> Option<Timestamp> {
        let (f, at) = self.floor?;
        let since = SignedDuration::try_from(mono.saturating_duration_since(at)).ok()?;
        Some(f.checked_add(since).unwrap_or(f))
    }

    /// The time to decide and stamp with, given the system clock reading
    /// `system` at monotonic `mono`; an alarm when an episode starts.
    pub fn now(&mut self, system: Timestamp, mono: Instant) -> (Timestamp, Option<ClockAlarm>) {
        let jumped = self.previous.and_then(|(seen, at)| {
            let since = SignedDuration::try_from(mono.saturating_duration_since(at)).ok()?;
            let expected = seen.checked_add(since).ok()?;
            let step = system.duration_since(expected);
            (step.abs() > TOLERANCE).then_some(ClockAlarm::Jumped {
                seen: system,
                expected,
            })
        });
        self.previous = Some((system, mono));
        let floor = self.advanced_floor(mono);
        let (used, episode) = match floor {
            Some(f) if system < f - TOLERANCE => (f, Episode::Behind),
            Some(f) if system > f.checked_add(MAX_AHEAD).unwrap_or(Timestamp::MAX) => {
                (f, Episode::Implausible)
            }
            // Never earlier than a signed time, even inside the tolerance.
            Some(_) => (system.max(self.floor().unwrap_or(system)), Episode::Normal),
            None => (system, Episode::Normal),
        };
        let alarm = if episode == self.episode {
            // Inside an episode (or normal), a step is still news.
            jumped.filter(|_| episode == Episode::Normal)
        } else {
            match episode {
                Episode::Behind => Some(ClockAlarm::WentBack {
                    seen: system,
                    trusted: used,
                }),
                Episode::Implausible => Some(ClockAlarm::Implausible {
                    seen: system,
                    trusted: used,
                }),
                Episode::Normal => jumped,
            }
        };
        self.episode = episode;
        (used, alarm)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn without_a_floor_the_system_clock_is_used() {
        let m = crate::test_clock::epoch();
        let mut c = TrustedClock::new(None, m);
        let now = t("2026-11-25T10:00:00Z");
        assert_eq!(c.now(now, m), (now, None));
    }

    #[test]
    fn behind_the_floor_uses_the_advanced_floor_and_alarms_once() {
        let m = crate::test_clock::epoch();
        let floor = t("2026-11-25T10:00:00Z");
        let mut c = TrustedClock::new(Some(floor), m);
        let back = t("2001-01-01T00:00:00Z");
        let (used, alarm) = c.now(back, m + Duration::from_secs(60));
        assert_eq!(used, floor + SignedDuration::from_secs(60));
        assert!(matches!(alarm, Some(ClockAlarm::WentBack { .. })));
        let (used, alarm) = c.now(back, m + Duration::from_secs(120));
        assert_eq!(used, floor + SignedDuration::from_secs(120));
        assert_eq!(alarm, None);
    }

    #[test]
    fn a_forward_glitch_leaves_nothing_behind() {
        let m = crate::test_clock::epoch();
        let floor = t("2026-11-25T10:00:00Z");
        let mut c = TrustedClock::new(Some(floor), m);
        let real = |s: u64| floor + SignedDuration::from_secs(s as i64);
        assert_eq!(c.now(real(1), m + Duration::from_secs(1)).0, real(1));
        let future = t("2056-11-25T10:00:00Z");
        let (used, alarm) = c.now(future, m + Duration::from_secs(2));
        assert_eq!(used, real(2), "30 years ahead is not believed");
        assert!(matches!(alarm, Some(ClockAlarm::Implausible { .. })));
        // Corrected a few seconds later: the real time again, at once.
        let (used, _) = c.now(real(5), m + Duration::from_secs(5));
        assert_eq!(used, real(5));
        assert_eq!(c.floor(), Some(floor), "the glitch never moved the floor");
    }

    #[test]
    fn signed_times_move_the_floor_up_only() {
        let m = crate::test_clock::epoch();
        let mut c = TrustedClock::new(None, m);
        let a = t("2026-11-25T10:00:00Z");
        c.observe_signed(a, m);
        c.observe_signed(a - SignedDuration::from_hours(1), m);
        assert_eq!(c.floor(), Some(a));
    }

    proptest! {
        /// Whatever the system clock says, the time used is never below
        /// the floor, never more than MAX_AHEAD beyond the advanced floor,
        /// and equals the system clock whenever that is plausible.
        #[test]
        fn used_time_is_bounded_and_follows_a_plausible_clock(
            readings in proptest::collection::vec((-4_000_000_000i64..4_000_000_000i64, 0u64..100_000), 1..40),
            floor_at in 1_700_000_000i64..1_800_000_000i64,
        ) {
            let m0 = crate::test_clock::epoch();
            let floor = Timestamp::from_second(floor_at).unwrap();
            let mut c = TrustedClock::new(Some(floor), m0);
            let mut mono = m0;
            for (offset, step) in readings {
                mono += Duration::from_millis(step);
                let system = Timestamp::from_second(floor_at + offset / 1000).unwrap();
                let (used, _) = c.now(system, mono);
                let adv = floor + SignedDuration::try_from(mono - m0).unwrap();
                prop_assert!(used >= floor);
                prop_assert!(used <= adv + MAX_AHEAD);
                if system >= floor && system <= adv + MAX_AHEAD && system >= adv - TOLERANCE {
                    prop_assert_eq!(used, system);
                }
            }
        }

        /// A glitch of any size and length, once corrected, leaves the
        /// next decision time equal to the real time.
        #[test]
        fn any_glitch_is_forgotten_once_corrected(
            glitch in -2_000_000_000i64..2_000_000_000i64,
            length in 1u64..600,
        ) {
            let m0 = crate::test_clock::epoch();
            let floor = t("2026-11-25T10:00:00Z");
            let mut c = TrustedClock::new(Some(floor), m0);
            let real = |s: u64| floor + SignedDuration::from_secs(s as i64);
            c.now(real(10), m0 + Duration::from_secs(10));
            let wrong = real(11).checked_add(SignedDuration::from_secs(glitch)).unwrap_or(real(11));
            c.now(wrong, m0 + Duration::from_secs(11));
            let back = 11 + length;
            let (used, _) = c.now(real(back), m0 + Duration::from_secs(back));
            prop_assert_eq!(used, real(back));
            prop_assert_eq!(c.floor(), Some(floor));
        }
    }
}
