//! Clock sanity, sans-IO: the latest time the gateway has reason to trust
//! (the system clock as seen so far, signed snapshot and command issue
//! times). A system clock that reads earlier than that — a dead RTC battery
//! after a power cut, a bad NTP server — is alarmed, and validity checks use
//! the trusted time instead, so going back in time never makes an expired
//! credential or command valid again.

use jiff::{SignedDuration, Timestamp};

/// How far the system clock may read behind the trusted time before it
/// counts as having gone back (NTP steps and slews stay well inside).
pub const TOLERANCE: SignedDuration = SignedDuration::from_mins(5);

/// A backwards jump, reported once per episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WentBack {
    /// What the system clock said.
    pub seen: Timestamp,
    /// The trusted time used instead.
    pub trusted: Timestamp,
}

/// The latest trusted time.
#[derive(Debug, Clone, Default)]
pub struct TrustedTime {
    latest: Option<Timestamp>,
    behind: bool,
}

impl TrustedTime {
    /// Start from a persisted latest time (or none).
    pub fn new(latest: Option<Timestamp>) -> Self {
        Self {
            latest,
            behind: false,
        }
    }

    /// The latest trusted time (to persist).
    pub fn latest(&self) -> Option<Timestamp> {
        self.latest
    }

    /// A time vouched for by a signature (snapshot or command issue time).
    pub fn observe_trusted(&mut self, t: Timestamp) {
        self.latest = Some(self.latest.map_or(t, |l| l.max(t)));
    }

    /// The time to decide with, given the system clock; an alarm when the
    /// clock has just gone back.
    pub fn now(&mut self, system: Timestamp) -> (Timestamp, Option<WentBack>) {
        match self.latest {
            Some(latest) if system < latest - TOLERANCE => {
                let alarm = (!self.behind).then_some(WentBack {
                    seen: system,
                    trusted: latest,
                });
                self.behind = true;
                (latest, alarm)
            }
            _ => {
                self.behind = false;
                self.observe_trusted(system);
                (system, None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_clock_that_goes_back_is_alarmed_once_and_never_used() {
        let mut tt = TrustedTime::new(None);
        assert_eq!(
            tt.now(t("2026-11-23T12:00:00Z")),
            (t("2026-11-23T12:00:00Z"), None)
        );
        // NTP nudging back a little is fine.
        assert_eq!(tt.now(t("2026-11-23T11:59:00Z")).1, None);
        // The RTC lost power: back to 2020.
        let (now, alarm) = tt.now(t("2020-01-01T00:00:00Z"));
        assert_eq!(now, t("2026-11-23T12:00:00Z"));
        assert_eq!(
            alarm,
            Some(WentBack {
                seen: t("2020-01-01T00:00:00Z"),
                trusted: t("2026-11-23T12:00:00Z")
            })
        );
        assert_eq!(
            tt.now(t("2020-01-01T00:01:00Z")).1,
            None,
            "one alarm per episode"
        );
        // Caught up again.
        assert_eq!(
            tt.now(t("2026-11-23T12:30:00Z")).0,
            t("2026-11-23T12:30:00Z")
        );
    }

    #[test]
    fn signed_issue_times_move_the_floor() {
        let mut tt = TrustedTime::new(Some(t("2026-11-01T00:00:00Z")));
        tt.observe_trusted(t("2026-11-23T12:00:00Z"));
        tt.observe_trusted(t("2026-11-10T00:00:00Z"));
        assert_eq!(tt.latest(), Some(t("2026-11-23T12:00:00Z")));
        assert_eq!(
            tt.now(t("2026-11-20T00:00:00Z")).0,
            t("2026-11-23T12:00:00Z")
        );
    }
}
