//! Time the gateway can prove, sans-IO.
//!
//! The gateway keeps an interval `[earliest, latest]` that "now" must lie
//! in (the rule, with figures, in `docs/rules.md`, "Time"):
//! - **earliest** comes from signed times: the **floor** (the newest signed
//!   time the gateway believed: a snapshot's, delta's or command's issue
//!   time, or a time beacon) advanced by the monotonic clock; persisted;
//! - **latest** comes only from a **live time beacon** central signed
//!   moments before it arrived (the *anchor*): its time advanced by the
//!   monotonic clock, plus a drift allowance of [`ALLOWANCE_BASE`] +
//!   [`ALLOWANCE_PPM`] of the time since; the anchor's time minus the same
//!   allowance tightens earliest. Without an anchor latest is unknown.
//!
//! The system clock is believed while it lies inside the interval and —
//! without a known latest — while it has not stepped more than
//! [`TOLERANCE`] against the monotonic clock since the last reading that
//! was believed: a step is a claim nobody signed (a spoofed NTP server can
//! make it), so it is **not followed** until a beacon or an operator
//! confirms the new time. Meanwhile the believed time goes on with the
//! monotonic clock, clamped into the interval, and `clock_untrusted` is
//! raised once per episode. The time is **confirmed** when latest is known
//! and the system clock lies inside the interval: only then may a release
//! that no card asked for start (`super::gateway`).
//!
//! The floor moves only with signed times no later than the interval's
//! upper edge (latest, or without one the time used) plus [`SIGNED_SKEW`]:
//! a signed time from the future cannot push it.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

/// How far the system clock may read behind the floor, or step against the
/// monotonic clock, before it is not believed (NTP slews and small steps
/// stay well inside; central's clock that signed the floor may differ a
/// little from ours).
pub const TOLERANCE: SignedDuration = SignedDuration::from_mins(5);

/// How far ahead of the floor the system clock may read at the first
/// reading (no earlier reading to compare with) and still be believed.
pub const MAX_AHEAD: SignedDuration = SignedDuration::from_hours(366 * 24);

/// The drift allowance around a beacon: this much at once (delivery
/// delay, central's own error)...
pub const ALLOWANCE_BASE: SignedDuration = SignedDuration::from_secs(5);
/// ... plus this many parts per million of the time since (a cheap
/// crystal drifts under 100 ppm; 200 ppm is 17 s a day).
pub const ALLOWANCE_PPM: i64 = 200;

/// How far beyond the interval's upper edge a signed issue time may lie
/// (central's clock and ours are never exactly the same).
pub const SIGNED_SKEW: SignedDuration = SignedDuration::from_mins(2);

/// How close the believed time must be to a signed issue time, when it
/// arrives, for the signed time to *witness* the clock (and then, as the
/// monotonic clock goes on, plus [`ALLOWANCE_PPM`]): a fresh snapshot or
/// command agreeing with the clock shows the clock was right then.
pub const WITNESS_AGREEMENT: SignedDuration = SignedDuration::from_secs(60);

pub use crate::event::Untrusted;

/// Something about the clock worth a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockAlarm {
    /// The system clock is not believed from now on (an episode starts).
    Untrusted {
        /// Why.
        reason: Untrusted,
        /// What the system clock said.
        seen: Timestamp,
        /// The time used instead.
        used: Timestamp,
    },
    /// The system clock is believed again: the episode ended.
    Trusted {
        /// What the system clock said.
        seen: Timestamp,
    },
    /// A step of the system clock was believed because a beacon's
    /// interval confirms it (recorded so that the step is visible).
    Jumped {
        /// What the system clock said.
        seen: Timestamp,
        /// What it would have said without the step.
        expected: Timestamp,
    },
}

/// One reading of the trusted clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The time to decide and stamp with.
    pub used: Timestamp,
    /// The interval's lower edge, when a signed time gave one.
    pub earliest: Option<Timestamp>,
    /// The interval's upper edge, when a live beacon gave one.
    pub latest: Option<Timestamp>,
    /// The system clock is believed.
    pub trusted: bool,
    /// What the system clock said.
    pub seen: Timestamp,
}

impl Reading {
    /// The time is proven: the system clock lies in an interval with both
    /// edges known. Releases no card asked for need this.
    pub fn confirmed(&self) -> bool {
        self.trusted && self.latest.is_some()
    }

    /// The edges a decision must agree at: the used time alone when it is
    /// trusted, else the widest of the interval's edges, the used time and
    /// — when it lies within [`MAX_AHEAD`] of the used time — the system
    /// clock's reading. Whatever is wrong, the clock or a stale anchor, an
    /// extra edge can only turn a grant into a denial; a reading decades
    /// off (a dead RTC, a glitch) is no alternative worth denying for, and
    /// cards go on being decided at the believed time.
    pub fn edges(&self) -> (Timestamp, Timestamp) {
        if self.trusted {
            return (self.used, self.used);
        }
        let seen = (self.seen.duration_since(self.used).abs() <= MAX_AHEAD).then_some(self.seen);
        let low = self.earliest.unwrap_or(self.used).min(self.used);
        let high = self.latest.unwrap_or(self.used).max(self.used);
        (
            seen.map_or(low, |s| low.min(s)),
            seen.map_or(high, |s| high.max(s)),
        )
    }
}

/// The trusted clock of one gateway.
#[derive(Debug, Clone)]
pub struct TrustedClock {
    /// The newest signed time believed and the monotonic instant it came.
    floor: Option<(Timestamp, Instant)>,
    /// The newest live beacon and the monotonic instant it came.
    anchor: Option<(Timestamp, Instant)>,
    /// The last believed time and its instant: what a step is measured
    /// against, and what goes on while the system clock is not believed.
    believed: Option<(Timestamp, Instant)>,
    /// The reason of the episode in course, `None` while believed.
    episode: Option<Untrusted>,
    /// The newest signed time that agreed with the believed clock when it
    /// came, and when it came; dropped when the clock stops being believed.
    witness: Option<(Timestamp, Instant)>,
}

fn advance(t: Timestamp, since: Instant, mono: Instant) -> Timestamp {
    let d = SignedDuration::try_from(mono.saturating_duration_since(since)).unwrap_or_default();
    t.checked_add(d).unwrap_or(t)
}

/// The drift allowance `elapsed` after a beacon.
fn allowance(elapsed: Duration) -> SignedDuration {
    let ppm = SignedDuration::from_micros(
        i64::try_from(elapsed.as_secs())
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(ALLOWANCE_PPM),
    );
    ALLOWANCE_BASE.saturating_add(ppm)
}

impl TrustedClock {
    /// Start from a persisted floor and, when the process restarted on the
    /// same boot, the beacon anchor (both may be `None`).
    pub fn new(
        floor: Option<Timestamp>,
        anchor: Option<(Timestamp, Instant)>,
        mono: Instant,
    ) -> Self {
        Self {
            floor: floor.map(|f| (f, mono)),
            anchor,
            believed: None,
            episode: None,
            witness: None,
        }
    }

    /// The signed time that witnesses the time used at `mono`: one that
    /// agreed with the believed clock when it came, with the clock believed
    /// since and the time used still within [`WITNESS_AGREEMENT`] + 200 ppm
    /// of it (advanced by the monotonic clock). A scheduled release whose
    /// window held since that signed time may start on it.
    pub fn witness(&self, used: Timestamp, mono: Instant) -> Option<Timestamp> {
        let (t, at) = self.witness?;
        let elapsed = mono.saturating_duration_since(at);
        let expected = advance(t, at, mono);
        let slack = WITNESS_AGREEMENT.saturating_add(allowance(elapsed) - ALLOWANCE_BASE);
        (used.duration_since(expected).abs() <= slack).then_some(t)
    }

    /// Take `signed` as the witness when the believed clock agrees with it.
    fn witnessed(&mut self, signed: Timestamp, mono: Instant) {
        let Some((b, at)) = self.believed else { return };
        if self.episode.is_some() {
            return;
        }
        let agrees = advance(b, at, mono).duration_since(signed).abs() <= WITNESS_AGREEMENT;
        let newer = self.witness.is_none_or(|(w, _)| signed > w);
        if agrees && newer {
            self.witness = Some((signed, mono));
        }
    }

    /// The persisted floor (to write with the standing state).
    pub fn floor(&self) -> Option<Timestamp> {
        self.floor.map(|(f, _)| f)
    }

    /// The beacon anchor (to write with the standing state, with the boot
    /// position of its instant).
    pub fn anchor(&self) -> Option<(Timestamp, Instant)> {
        self.anchor
    }

    /// The interval's lower edge at `mono`.
    pub fn earliest(&self, mono: Instant) -> Option<Timestamp> {
        let floor = self.floor.map(|(f, at)| advance(f, at, mono));
        let anchor = self.anchor.map(|(a, at)| {
            let t = advance(a, at, mono);
            t.checked_sub(allowance(mono.saturating_duration_since(at)))
                .unwrap_or(t)
        });
        floor.max(anchor)
    }

    /// The interval's upper edge at `mono`, when a beacon gave one.
    pub fn latest(&self, mono: Instant) -> Option<Timestamp> {
        self.anchor.map(|(a, at)| {
            let t = advance(a, at, mono);
            t.checked_add(allowance(mono.saturating_duration_since(at)))
                .unwrap_or(t)
        })
    }

    /// The upper edge a signed issue time must not pass at `mono`: latest,
    /// or the believed time, plus [`SIGNED_SKEW`]; `None` before any
    /// reading (nothing to hold it against).
    pub fn signed_limit(&self, mono: Instant) -> Option<Timestamp> {
        let upper = self
            .latest(mono)
            .or_else(|| self.believed.map(|(b, at)| advance(b, at, mono)))?;
        Some(upper.checked_add(SIGNED_SKEW).unwrap_or(upper))
    }

    /// A signed issue time (snapshot, delta, command): moves the floor up,
    /// never down, and only when it is not from the future; returns
    /// whether it was taken.
    pub fn observe_signed(&mut self, signed: Timestamp, mono: Instant) -> bool {
        if self.signed_limit(mono).is_some_and(|limit| signed > limit) {
            return false;
        }
        if self.floor().is_none_or(|f| signed > f) {
            self.floor = Some((signed, mono));
        }
        self.witnessed(signed, mono);
        true
    }

    /// A live time beacon (signed by central moments before it arrived
    /// at `mono`; `system` is the system clock then): the interval's
    /// anchor, and a floor. Returns whether it was taken. Refused: a beacon
    /// older than what the gateway already knows (below the lower edge
    /// less the allowance: a replayed or delayed one would pull "now"
    /// back), or one ahead of both the believed time and the system clock
    /// by more than [`SIGNED_SKEW`] (central's clock wrong: it must not
    /// move the floor into the future for good). A beacon that agrees with
    /// the system clock is taken even after an unconfirmed step: that is
    /// how a real step gets confirmed.
    pub fn observe_beacon(&mut self, at: Timestamp, mono: Instant, system: Timestamp) -> bool {
        let stale = self
            .earliest(mono)
            .is_some_and(|e| at < e.checked_sub(allowance(Duration::ZERO)).unwrap_or(e));
        let believed = self.believed.map(|(b, since)| advance(b, since, mono));
        let upper = believed.map_or(system, |b| b.max(system));
        let ahead = at > upper.checked_add(SIGNED_SKEW).unwrap_or(upper);
        if stale || (ahead && self.believed.is_some()) {
            return false;
        }
        let newer = self
            .anchor
            .is_none_or(|(a, since)| at > advance(a, since, mono) - ALLOWANCE_BASE);
        if newer {
            self.anchor = Some((at, mono));
        }
        if self.floor().is_none_or(|f| at > f) {
            self.floor = Some((at, mono));
        }
        self.witnessed(at, mono);
        true
    }

    /// An operator vouches for the system clock at `system` (journaled
    /// with who): it becomes the anchor, as a beacon would, and the floor
    /// — also downwards: an operator's word is how a floor that a wrong
    /// signed time pushed into the future is brought back.
    pub fn confirm(&mut self, system: Timestamp, mono: Instant) {
        self.anchor = Some((system, mono));
        self.believed = Some((system, mono));
        self.floor = Some((system, mono));
        self.witness = Some((system, mono));
    }

    /// The time to decide and stamp with, given the system clock reading
    /// `system` at monotonic `mono`; an alarm when an episode starts.
    pub fn now(&mut self, system: Timestamp, mono: Instant) -> (Reading, Option<ClockAlarm>) {
        let earliest = self.earliest(mono);
        let latest = self.latest(mono);
        let predicted = self.believed.map(|(b, at)| advance(b, at, mono));
        let step = predicted.map(|p| system.duration_since(p));
        let stepped = step.is_some_and(|s| s.abs() > TOLERANCE);
        // The floor allows for central's clock differing a little from
        // ours; a beacon's interval has its own allowance.
        let floor_low = self.floor.map(|(f, at)| {
            let f = advance(f, at, mono);
            f.checked_sub(TOLERANCE).unwrap_or(f)
        });
        let anchor_low = self.anchor.map(|(a, at)| {
            let t = advance(a, at, mono);
            t.checked_sub(allowance(mono.saturating_duration_since(at)))
                .unwrap_or(t)
        });
        let low = floor_low.max(anchor_low);
        let verdict = if low.is_some_and(|l| system < l) {
            Some(Untrusted::Behind)
        } else if latest.is_some() {
            latest
                .is_some_and(|l| system > l)
                .then_some(Untrusted::OutsideInterval)
        } else if stepped {
            Some(Untrusted::Stepped)
        } else if predicted.is_none()
            && earliest.is_some_and(|e| system > e.checked_add(MAX_AHEAD).unwrap_or(Timestamp::MAX))
        {
            Some(Untrusted::Ahead)
        } else {
            None
        };
        let reading = match verdict {
            None => {
                // Never earlier than a signed time (advanced by the
                // monotonic time since), even inside the tolerance.
                let used = earliest.map_or(system, |e| system.max(e));
                self.believed = Some((used, mono));
                Reading {
                    used,
                    earliest,
                    latest,
                    trusted: true,
                    seen: system,
                }
            }
            Some(_) => {
                let mut used = predicted.or(earliest).unwrap_or(system);
                if let Some(e) = earliest {
                    used = used.max(e);
                }
                if let Some(l) = latest {
                    used = used.min(l);
                }
                self.believed = Some((used, mono));
                Reading {
                    used,
                    earliest,
                    latest,
                    trusted: false,
                    seen: system,
                }
            }
        };
        let alarm = match verdict {
            Some(reason) if self.episode.is_none() => Some(ClockAlarm::Untrusted {
                reason,
                seen: system,
                used: reading.used,
            }),
            None if self.episode.is_some() => Some(ClockAlarm::Trusted { seen: system }),
            None if stepped => predicted.map(|expected| ClockAlarm::Jumped {
                seen: system,
                expected,
            }),
            _ => None,
        };
        if verdict.is_some() {
            // Continuity is broken: what a signed time witnessed before
            // says nothing about the time now.
            self.witness = None;
        }
        self.episode = verdict;
        (reading, alarm)
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

    fn secs(s: i64) -> SignedDuration {
        SignedDuration::from_secs(s)
    }

    fn after(m: Instant, s: u64) -> Instant {
        m + Duration::from_secs(s)
    }

    #[test]
    fn without_a_floor_the_system_clock_is_used_but_not_confirmed() {
        let m = crate::test_clock::epoch();
        let mut c = TrustedClock::new(None, None, m);
        let now = t("2026-11-25T10:00:00Z");
        let (r, alarm) = c.now(now, m);
        assert_eq!(
            (r.used, r.trusted, r.confirmed(), alarm),
            (now, true, false, None)
        );
    }

    #[test]
    fn behind_the_floor_uses_the_advanced_floor_and_alarms_once() {
        let m = crate::test_clock::epoch();
        let floor = t("2026-11-25T10:00:00Z");
        let mut c = TrustedClock::new(Some(floor), None, m);
        let back = t("2001-01-01T00:00:00Z");
        let (r, alarm) = c.now(back, after(m, 60));
        assert_eq!(r.used, floor + secs(60));
        assert!(matches!(
            alarm,
            Some(ClockAlarm::Untrusted {
                reason: Untrusted::Behind,
                ..
            })
        ));
        let (r, alarm) = c.now(back, after(m, 120));
        assert_eq!((r.used, alarm), (floor + secs(120), None));
    }

    #[test]
    fn a_forward_step_is_not_followed_until_a_beacon_confirms_it() {
        let m = crate::test_clock::epoch();
        let floor = t("2026-11-21T06:00:00Z");
        let mut c = TrustedClock::new(Some(floor), None, m);
        let sat = t("2026-11-21T07:11:00Z");
        assert!(c.now(sat, m).0.trusted);
        // +51 h, as a spoofed NTP server can make it.
        let stepped = sat + secs(51 * 3600 + 60);
        let (r, alarm) = c.now(stepped, after(m, 60));
        assert_eq!(r.used, sat + secs(60), "the step is not believed");
        assert!(!r.trusted && !r.confirmed());
        assert!(matches!(
            alarm,
            Some(ClockAlarm::Untrusted {
                reason: Untrusted::Stepped,
                ..
            })
        ));
        // Still not, a minute later; no second alarm.
        let (r, alarm) = c.now(stepped + secs(60), after(m, 120));
        assert_eq!((r.used, alarm), (sat + secs(120), None));
        // Central's beacon says the step was right: believed, confirmed.
        assert!(c.observe_beacon(stepped + secs(61), after(m, 121), stepped + secs(61)));
        let (r, _) = c.now(stepped + secs(62), after(m, 122));
        assert_eq!(r.used, stepped + secs(62));
        assert!(r.confirmed());
    }

    #[test]
    fn a_backward_step_is_not_followed_either() {
        let m = crate::test_clock::epoch();
        let mut c = TrustedClock::new(Some(t("2026-11-20T00:00:00Z")), None, m);
        let now = t("2026-11-25T10:00:00Z");
        c.now(now, m);
        let (r, alarm) = c.now(now - secs(2 * 86_400), after(m, 10));
        assert_eq!(r.used, now + secs(10));
        assert!(matches!(
            alarm,
            Some(ClockAlarm::Untrusted {
                reason: Untrusted::Stepped,
                ..
            })
        ));
        // Decisions agree at both edges: the floor (days ago) and now.
        assert_eq!(r.edges(), (t("2026-11-20T00:00:10Z"), now + secs(10)));
    }

    #[test]
    fn the_interval_widens_with_the_time_since_the_beacon() {
        let m = crate::test_clock::epoch();
        let mut c = TrustedClock::new(None, None, m);
        let b = t("2026-11-25T10:00:00Z");
        assert!(c.observe_beacon(b, m, b));
        let day = 86_400u64;
        let (e, l) = (
            c.earliest(after(m, day)).unwrap(),
            c.latest(after(m, day)).unwrap(),
        );
        let mid = b + secs(day as i64);
        // 5 s + 200 ppm of a day = 5 s + 17.28 s.
        assert_eq!(l.duration_since(mid), SignedDuration::from_millis(22_280));
        // The beacon is also a signed time: a floor, advanced as floors
        // are (the lower edge is the tighter of the two).
        assert_eq!(e, mid);
        // Against a beacon the tolerance is its allowance, not the
        // floor's five minutes: 20 s slow is believed, 4 min is not.
        assert!(c.clone().now(mid - secs(20), after(m, day)).0.confirmed());
        assert!(!c.clone().now(mid - secs(240), after(m, day)).0.trusted);
        // A clock 20 s fast after a day is believed; 30 s fast is not.
        let mut c1 = c.clone();
        assert!(c1.now(mid + secs(20), after(m, day)).0.confirmed());
        let (r, alarm) = c.now(mid + secs(30), after(m, day));
        assert!(!r.trusted);
        assert_eq!(r.used, mid, "the interval's best estimate, not the clock");
        assert!(matches!(
            alarm,
            Some(ClockAlarm::Untrusted {
                reason: Untrusted::OutsideInterval,
                ..
            })
        ));
    }

    #[test]
    fn signed_times_from_the_future_do_not_move_the_floor() {
        let m = crate::test_clock::epoch();
        let mut c = TrustedClock::new(None, None, m);
        let now = t("2026-11-25T10:00:00Z");
        c.now(now, m);
        assert!(c.observe_signed(now - secs(3600), m));
        assert!(!c.observe_signed(t("2036-01-01T00:00:00Z"), m));
        assert_eq!(c.floor(), Some(now - secs(3600)));
        assert!(c.observe_signed(now + secs(60), m), "inside the skew");
        assert!(!c.observe_signed(now - secs(7200), m) || c.floor() == Some(now + secs(60)));
        assert_eq!(c.floor(), Some(now + secs(60)), "up only");
    }

    #[test]
    fn a_stale_or_future_beacon_is_refused_and_never_widens_a_grant() {
        let m = crate::test_clock::epoch();
        let now = t("2026-11-25T10:00:00Z");
        let mut c = TrustedClock::new(Some(now - secs(60)), None, m);
        c.now(now, m);
        // Replayed from two hours ago: it would pull "now" back.
        assert!(!c.observe_beacon(now - secs(7200), m, now));
        assert_eq!(c.latest(m), None);
        // Central's clock in 2036, ours right: not taken, floor unmoved.
        assert!(!c.observe_beacon(t("2036-01-01T00:00:00Z"), m, now));
        assert_eq!(c.floor(), Some(now - secs(60)));
        // Whatever the anchor says, an untrusted reading's edges include
        // the system clock: an extra edge only denies.
        let mut d = TrustedClock::new(None, None, m);
        assert!(d.observe_beacon(now - secs(7200), m, now - secs(7200)));
        let (r, _) = d.now(now, m);
        assert!(!r.trusted);
        let (low, high) = r.edges();
        assert!(low <= now - secs(7200) && high >= now, "{low} {high}");
    }

    #[test]
    fn an_operator_confirms_the_time() {
        let m = crate::test_clock::epoch();
        let mut c = TrustedClock::new(None, None, m);
        let now = t("2026-11-25T10:00:00Z");
        assert!(!c.now(now, m).0.confirmed());
        c.confirm(now, m);
        assert!(c.now(now + secs(5), after(m, 5)).0.confirmed());
    }

    proptest! {
        /// Whatever the system clock does without a beacon, the time used
        /// is never below the floor and never moves faster or slower than
        /// the monotonic clock by more than the tolerance per reading.
        #[test]
        fn without_a_beacon_the_used_time_follows_the_monotonic_clock(
            readings in proptest::collection::vec((-400_000_000i64..400_000_000i64, 0u64..100_000), 1..40),
            floor_at in 1_700_000_000i64..1_800_000_000i64,
        ) {
            let m0 = crate::test_clock::epoch();
            let floor = Timestamp::from_second(floor_at).unwrap();
            let mut c = TrustedClock::new(Some(floor), None, m0);
            let mut mono = m0;
            let mut last: Option<(Timestamp, Instant)> = None;
            for (offset, step) in readings {
                mono += Duration::from_millis(step);
                let system = Timestamp::from_second(floor_at + offset).unwrap();
                let (r, _) = c.now(system, mono);
                prop_assert!(r.used >= floor);
                if let Some((u, at)) = last {
                    let expected = advance(u, at, mono);
                    let drift = r.used.duration_since(expected).abs();
                    prop_assert!(drift <= TOLERANCE, "used {} expected about {}", r.used, expected);
                }
                last = Some((r.used, mono));
                prop_assert!(!r.confirmed(), "nothing confirms without a beacon");
            }
        }

        /// With a beacon, the used time always lies inside the interval.
        #[test]
        fn with_a_beacon_the_used_time_stays_inside_the_interval(
            readings in proptest::collection::vec((-400_000i64..400_000i64, 0u64..10_000_000), 1..40),
        ) {
            let m0 = crate::test_clock::epoch();
            let b = t("2026-11-25T10:00:00Z");
            let mut c = TrustedClock::new(None, None, m0);
            assert!(c.observe_beacon(b, m0, b));
            let mut mono = m0;
            for (offset, step) in readings {
                mono += Duration::from_millis(step);
                let real = advance(b, m0, mono);
                let system = real.checked_add(secs(offset)).unwrap();
                let (r, _) = c.now(system, mono);
                let (e, l) = (c.earliest(mono).unwrap(), c.latest(mono).unwrap());
                prop_assert!(e <= r.used && r.used <= l, "{} not in {}..{}", r.used, e, l);
                // The system clock is believed up to the tolerance below the
                // signed floor (central's clock may differ a little from
                // ours); the time used never is below it.
                if r.confirmed() {
                    prop_assert!(system >= e.checked_sub(TOLERANCE).unwrap() && system <= l);
                } else {
                    prop_assert!(system < e || system > l);
                }
            }
        }
    }
}
