//! Door actions → OSDP commands.
//!
//! Strike releases go out as *timed* OUT commands whenever the door core
//! gives an end time, so the PD relocks by itself even if the daemon, the
//! bus or the gateway dies mid-release: no failure of ours keeps a door
//! open (IEC 60839-11-1). Only an open-ended release (scheduled unlock,
//! override) is sent as a permanent state.
//!
//! Reader feedback patterns are a [`FeedbackTable`] (configurable under
//! `[feedback]`; the config refuses patterns people cannot tell apart).

use std::time::{Duration, Instant};

use crate::door::Feedback;
use crate::osdp::message::{
    BuzzerControl, Command, LedColor, LedControl, LedPermanent, LedTemporary, OutputAction,
    OutputControl,
};

/// How a door's lock is wired to a PD output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrikeWiring {
    /// Output number on the PD.
    pub output: u8,
    /// `true` for a fail-secure strike (energise to unlock); `false` for a
    /// fail-safe maglock (energise to lock, de-energise to release).
    pub energize_to_unlock: bool,
}

/// The longest release one timed OUT can carry (65 535 × 100 ms, about
/// 109 minutes); longer releases are re-sent before it runs out.
pub const MAX_TIMER: Duration = Duration::from_millis(u16::MAX as u64 * 100);

/// The OUT command that releases the strike until `until` (or indefinitely).
pub fn release(wiring: StrikeWiring, now: Instant, until: Option<Instant>) -> Command {
    let record = match until {
        Some(until) => OutputControl {
            output: wiring.output,
            action: if wiring.energize_to_unlock {
                OutputAction::TimedOn
            } else {
                OutputAction::TimedOff
            },
            timer_100ms: timer_100ms(until.saturating_duration_since(now)),
        },
        None => OutputControl {
            output: wiring.output,
            action: if wiring.energize_to_unlock {
                OutputAction::PermanentOnAbortTimed
            } else {
                OutputAction::PermanentOffAbortTimed
            },
            timer_100ms: 0,
        },
    };
    Command::Output(vec![record])
}

/// The OUT command that locks the strike now, aborting any timed release.
pub fn lock(wiring: StrikeWiring) -> Command {
    Command::Output(vec![OutputControl {
        output: wiring.output,
        action: if wiring.energize_to_unlock {
            OutputAction::PermanentOffAbortTimed
        } else {
            OutputAction::PermanentOnAbortTimed
        },
        timer_100ms: 0,
    }])
}

/// Round a duration up to OSDP's 100 ms timer units (at least 1, at most
/// u16::MAX ≈ 109 min).
fn timer_100ms(d: Duration) -> u16 {
    let units = d.as_millis().div_ceil(100).max(1);
    u16::try_from(units).unwrap_or(u16::MAX)
}

/// How one feedback pattern looks and sounds at a reader. Times are in
/// OSDP's 100 ms units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackStyle {
    /// LED colour while on.
    pub color: LedColor,
    /// LED on time per blink (a steady light: `led_off` 0).
    pub led_on: u8,
    /// LED off time per blink.
    pub led_off: u8,
    /// How long the pattern lasts before the LED returns to idle.
    pub duration: u16,
    /// Beep length.
    pub beep_on: u8,
    /// Pause between beeps.
    pub beep_off: u8,
    /// Number of beeps (0: until told otherwise).
    pub beeps: u8,
}

/// The feedback patterns of a building. The defaults: grant = green + one
/// short beep; deny = red + one long beep; rules too old = amber blinking +
/// three short beeps; lockdown = red fast blinking + two long beeps;
/// held-open warning = amber blinking + beeps until the door closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackTable {
    /// Access granted.
    pub grant: FeedbackStyle,
    /// Access denied.
    pub deny: FeedbackStyle,
    /// Denied or granted with rules older than the door class allows.
    pub rules_too_old: FeedbackStyle,
    /// Denied because of a lockdown.
    pub lockdown: FeedbackStyle,
    /// A door is held open (pre-alarm).
    pub held_open: FeedbackStyle,
    /// The card needs its PIN.
    pub pin_wanted: FeedbackStyle,
}

const fn style(color: LedColor, led: (u8, u8), duration: u16, beep: (u8, u8, u8)) -> FeedbackStyle {
    FeedbackStyle {
        color,
        led_on: led.0,
        led_off: led.1,
        duration,
        beep_on: beep.0,
        beep_off: beep.1,
        beeps: beep.2,
    }
}

impl Default for FeedbackTable {
    fn default() -> Self {
        Self {
            grant: style(LedColor::Green, (30, 0), 30, (2, 0, 1)),
            deny: style(LedColor::Red, (30, 0), 30, (10, 0, 1)),
            rules_too_old: style(LedColor::Amber, (3, 3), 30, (1, 1, 3)),
            lockdown: style(LedColor::Red, (1, 1), 30, (6, 3, 2)),
            held_open: style(LedColor::Amber, (5, 5), 600, (5, 5, 0)),
            pin_wanted: style(LedColor::Blue, (5, 5), 100, (1, 0, 1)),
        }
    }
}

impl FeedbackTable {
    /// The patterns that people must be able to tell apart, by name: grant,
    /// deny, rules too old, lockdown and "PIN, please". Returns the first
    /// pair that looks and sounds the same.
    pub fn indistinct(&self) -> Option<(&'static str, &'static str)> {
        let named = [
            ("grant", self.grant),
            ("deny", self.deny),
            ("rules_too_old", self.rules_too_old),
            ("lockdown", self.lockdown),
            ("pin_wanted", self.pin_wanted),
        ];
        for (i, (a, sa)) in named.iter().enumerate() {
            for (b, sb) in &named[i + 1..] {
                if sa == sb {
                    return Some((a, b));
                }
            }
        }
        None
    }

    fn style(&self, pattern: Feedback) -> Option<FeedbackStyle> {
        Some(match pattern {
            Feedback::Grant => self.grant,
            Feedback::Deny => self.deny,
            Feedback::RulesTooOld => self.rules_too_old,
            Feedback::Lockdown => self.lockdown,
            Feedback::HeldOpenWarning => self.held_open,
            Feedback::PinWanted => self.pin_wanted,
            Feedback::Idle => return None,
        })
    }
}

/// LED and buzzer commands for a feedback pattern on `reader`.
pub fn feedback(reader: u8, pattern: Feedback, table: &FeedbackTable) -> Vec<Command> {
    let Some(s) = table.style(pattern) else {
        return idle(reader);
    };
    vec![
        Command::Led(vec![LedControl {
            reader,
            led: 0,
            temporary: LedTemporary {
                control: 2,
                on_100ms: s.led_on,
                off_100ms: s.led_off,
                on_color: s.color,
                off_color: LedColor::Off,
                timer_100ms: s.duration,
            },
            permanent: no_permanent_change(),
        }]),
        Command::Buzzer(BuzzerControl {
            reader,
            tone: 2,
            on_100ms: s.beep_on,
            off_100ms: s.beep_off,
            count: s.beeps,
        }),
    ]
}

fn no_permanent_change() -> LedPermanent {
    LedPermanent {
        control: 0,
        on_100ms: 0,
        off_100ms: 0,
        on_color: LedColor::Off,
        off_color: LedColor::Off,
    }
}

fn idle(reader: u8) -> Vec<Command> {
    vec![
        Command::Led(vec![LedControl {
            reader,
            led: 0,
            temporary: LedTemporary {
                control: 1,
                on_100ms: 0,
                off_100ms: 0,
                on_color: LedColor::Off,
                off_color: LedColor::Off,
                timer_100ms: 0,
            },
            permanent: no_permanent_change(),
        }]),
        Command::Buzzer(BuzzerControl {
            reader,
            tone: 1,
            on_100ms: 0,
            off_100ms: 0,
            count: 0,
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Instant {
        crate::test_clock::epoch()
    }

    const STRIKE: StrikeWiring = StrikeWiring {
        output: 1,
        energize_to_unlock: true,
    };
    const MAGLOCK: StrikeWiring = StrikeWiring {
        output: 0,
        energize_to_unlock: false,
    };

    fn record(c: &Command) -> OutputControl {
        match c {
            Command::Output(r) => r[0],
            other => panic!("not OUT: {other:?}"),
        }
    }

    #[test]
    fn timed_release_relocks_at_the_pd_by_itself() {
        let now = base();
        let r = record(&release(
            STRIKE,
            now,
            Some(now + Duration::from_millis(5_050)),
        ));
        assert_eq!(
            (r.output, r.action, r.timer_100ms),
            (1, OutputAction::TimedOn, 51)
        );
        let r = record(&release(MAGLOCK, now, Some(now + Duration::from_secs(3))));
        assert_eq!((r.action, r.timer_100ms), (OutputAction::TimedOff, 30));
        // A release whose end has passed still pulses briefly, never forever.
        let r = record(&release(STRIKE, now, Some(now)));
        assert_eq!(r.timer_100ms, 1);
    }

    #[test]
    fn open_ended_release_and_lock_follow_the_wiring() {
        let now = base();
        assert_eq!(
            record(&release(STRIKE, now, None)).action,
            OutputAction::PermanentOnAbortTimed
        );
        assert_eq!(
            record(&lock(STRIKE)).action,
            OutputAction::PermanentOffAbortTimed
        );
        assert_eq!(
            record(&release(MAGLOCK, now, None)).action,
            OutputAction::PermanentOffAbortTimed
        );
        assert_eq!(
            record(&lock(MAGLOCK)).action,
            OutputAction::PermanentOnAbortTimed
        );
    }

    #[test]
    fn feedback_patterns_are_distinct() {
        let patterns = [
            Feedback::Grant,
            Feedback::Deny,
            Feedback::RulesTooOld,
            Feedback::Lockdown,
            Feedback::HeldOpenWarning,
            Feedback::Idle,
        ];
        let table = FeedbackTable::default();
        assert_eq!(table.indistinct(), None);
        let all: Vec<Vec<Command>> = patterns.iter().map(|p| feedback(0, *p, &table)).collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let Command::Led(led) = &all[0][0] else {
            panic!()
        };
        assert_eq!(led[0].temporary.on_color, LedColor::Green);
        let Command::Led(led) = &all[1][0] else {
            panic!()
        };
        assert_eq!(led[0].temporary.on_color, LedColor::Red);
    }
}
