//! A standard (hinged) door: electric strike, door contact, exit button
//! (REX), reader feedback, and its mode, sans-IO.
//!
//! Owns: when the strike is released and relocked, the forced and held-open
//! alarms, the reader feedback for grants and denials, and the door's mode
//! (card only, scheduled unlock, lockdown, timed override reverting by
//! itself). Guarantees (see the module docs of [`crate::door`]):
//! - the strike is released only for a grant, a REX, an unlocked mode
//!   (scheduled unlock or an unlocked override) — never because something
//!   failed; every timeout either locks, expires a grant, raises a held-open
//!   alarm or reverts a timed override;
//! - strike changes are reported as [`DoorAction::ReleaseStrike`] /
//!   [`DoorAction::LockStrike`] only when the strike state (including its
//!   `until`) changes;
//! - in [`Mode::Lockdown`] only a lockdown-exempt grant or a REX releases the
//!   strike. REX keeps working in lockdown on purpose: egress is life
//!   safety, and a lockdown keeps people *out*, it must not trap them in.
//!
//! Choices worth knowing:
//! - A grant releases the strike for [`StandardConfig::strike_time`]
//!   (`extended_strike_time` for credentials flagged extended). If the door
//!   opens in that window, the strike stays released until the door closes
//!   and relocks then; if it never opens, it relocks at the window's end.
//! - *Forced*: the contact opens while the strike is locked. The event is
//!   raised at once. There is no relock delay: a contact that bounces after
//!   the door closed reports forced.
//! - *Held open*: monitored while the door is open and the mode keeps it
//!   locked (not in scheduled unlock or an unlocked override), timed from the
//!   opening (or from the moment the mode became locking while it was open).
//! - An override is refused in lockdown: security lifts a lockdown with an
//!   explicit mode set. Setting `Lockdown` cancels any override and drops a
//!   pending non-exempt grant window. Any other mode set during an override
//!   becomes the mode it reverts to. Lockdown also drops a non-exempt grant
//!   window at once, even with the door open: the strike locks and latches
//!   when the door closes.
//! - An override `Locked` keeps the door secure like card-only: grants and
//!   REX still work.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{CredentialId, Feedback};
pub use crate::rules::DenyReason;

/// What the door hardware does when the daemon (or its power) is absent.
///
/// Only a declaration for the daemon and the installer: the state machine
/// itself never releases a door because something failed. A failure of the
/// daemon, the bus or the uplink never releases a door from this core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Locked without power (fail secure); the usual choice.
    #[default]
    FailSecure,
    /// Released without power (fail safe), where fire regulations ask for it.
    FailSafe,
}

/// Timing and wiring declarations of one standard door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandardConfig {
    /// How long a grant or REX releases the strike if the door is not opened.
    pub strike_time: Duration,
    /// The same for credentials flagged `extended` (e.g. wheelchair users).
    pub extended_strike_time: Duration,
    /// Open this long in a locking mode: pre-alarm (local warning).
    pub held_open_pre_alarm: Duration,
    /// Open this long in a locking mode: held-open alarm.
    pub held_open_alarm: Duration,
    /// What the hardware does without the daemon (declaration only).
    pub fail_mode: FailMode,
}

impl Default for StandardConfig {
    fn default() -> Self {
        Self {
            strike_time: Duration::from_secs(5),
            extended_strike_time: Duration::from_secs(15),
            held_open_pre_alarm: Duration::from_secs(20),
            held_open_alarm: Duration::from_secs(30),
            fail_mode: FailMode::FailSecure,
        }
    }
}

/// The door's standing mode (schedules and operators set it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Locked; a grant or REX releases it.
    CardOnly,
    /// Unlocked until told otherwise (office hours, an announced event).
    ScheduledUnlock,
    /// Locked; only lockdown-exempt grants and REX release it.
    Lockdown,
    /// Released for escape while the fire alarm is active: no override
    /// locks it, and it ends only when the alarm clears.
    Emergency,
}

/// The state a timed override holds the door in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverrideState {
    /// Released until the override ends.
    Unlocked,
    /// Locked (card only) until the override ends.
    Locked,
}

/// A timed override; at `until` the door reverts to its [`Mode`] by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    /// What the door does meanwhile.
    pub state: OverrideState,
    /// When it reverts.
    pub until: Instant,
}

/// The reader feedback for a deny reason: lockdown and stale rules have
/// their own patterns so people (and technicians) can tell them apart.
fn deny_feedback(reason: DenyReason) -> Feedback {
    match reason {
        DenyReason::Lockdown => Feedback::Lockdown,
        // Unusable rules look like stale rules at the reader: a
        // technician's cue that the gateway, not the card, is the problem.
        DenyReason::RulesTooOld | DenyReason::RulesUntrusted => Feedback::RulesTooOld,
        _ => Feedback::Deny,
    }
}

/// An input to a [`StandardDoor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorInput {
    /// The rules engine granted this credential at this door.
    Granted {
        /// Who.
        credential: CredentialId,
        /// Use the extended strike time.
        extended: bool,
        /// Admitted even in lockdown (security, emergency services).
        exempt: bool,
    },
    /// The rules engine denied; the door only gives feedback and an event.
    Denied {
        /// Who, when known.
        credential: Option<CredentialId>,
        /// Why.
        reason: DenyReason,
    },
    /// The exit button (request to exit) was pressed.
    ExitRequest,
    /// The door contact reports open.
    ContactOpened,
    /// The door contact reports closed.
    ContactClosed,
    /// Set the standing mode.
    SetMode(Mode),
    /// Hold the door unlocked or locked until a time, then revert.
    SetOverride(Override),
    /// End a running override now (reverts as at expiry).
    CancelOverride,
}

/// The strike as last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strike {
    /// Locked.
    Locked,
    /// Released. `until` is the latest instant at which the core will relock
    /// if nothing else happens (usable as a hardware pulse timer); `None`
    /// when it stays released until further notice (open door, unlocked
    /// mode).
    Released {
        /// See above.
        until: Option<Instant>,
    },
}

/// Something the owner must do or record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorAction {
    /// Energise/de-energise the strike output so the door can be opened.
    ReleaseStrike {
        /// See [`Strike::Released`].
        until: Option<Instant>,
    },
    /// Lock the strike.
    LockStrike,
    /// Show this pattern on the door's reader(s).
    Feedback(Feedback),
    /// Record this event (journal, uplink, admin page).
    Event(DoorEvent),
}

/// Why an override was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideRefusal {
    /// The door is in lockdown; lift it with an explicit mode set first.
    Lockdown,
    /// The door is released for a fire alarm.
    Emergency,
    /// Its `until` had already passed.
    AlreadyExpired,
}

/// A door event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorEvent {
    /// A grant released the door.
    Granted {
        /// Who.
        credential: CredentialId,
        /// With the extended strike time.
        extended: bool,
    },
    /// A grant was refused by the door because it is in lockdown.
    GrantRefusedLockdown {
        /// Who.
        credential: CredentialId,
    },
    /// A denial from the rules engine, passed through.
    Denied {
        /// Who, when known.
        credential: Option<CredentialId>,
        /// Why.
        reason: DenyReason,
    },
    /// The door was opened within a grant's window: an entry.
    EntryOpened {
        /// Who.
        credential: CredentialId,
    },
    /// A grant's window ended without the door being opened.
    GrantUnused {
        /// Who.
        credential: CredentialId,
    },
    /// The exit button released the door (no entry is recorded).
    Rex,
    /// The door opened after a REX or while unlocked by its mode.
    Opened,
    /// The door opened while the strike was locked.
    Forced,
    /// Open past the pre-alarm time.
    HeldOpenPreAlarm,
    /// Open past the alarm time.
    HeldOpen,
    /// The door closed; clears forced and held-open conditions.
    Closed {
        /// It had been forced open.
        was_forced: bool,
        /// A held-open alarm had been raised.
        was_held_open: bool,
    },
    /// The mode or override changed; the new state.
    ModeChanged {
        /// The standing mode (what an override reverts to).
        mode: Mode,
        /// The override in force, if any.
        override_: Option<Override>,
    },
    /// An override ended at its time and the door reverted.
    OverrideExpired {
        /// The mode now in force.
        reverted_to: Mode,
    },
    /// An override was not applied.
    OverrideRefused {
        /// Why.
        reason: OverrideRefusal,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Cause {
    Grant {
        credential: CredentialId,
        exempt: bool,
    },
    Rex,
}

/// A grant or REX release window.
#[derive(Debug, Clone)]
struct Window {
    cause: Cause,
    until: Instant,
    /// The door opened (or was open) during the window: relock on close.
    opened: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum HeldStage {
    None,
    PreAlarm,
    Alarm,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    since: Instant,
    stage: HeldStage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    Window,
    Override,
    PreAlarm,
    Alarm,
}

/// The state machine of one standard door. Starts in [`Mode::CardOnly`],
/// strike locked, door assumed closed.
#[derive(Debug, Clone)]
pub struct StandardDoor {
    config: StandardConfig,
    mode: Mode,
    override_: Option<Override>,
    window: Option<Window>,
    open: bool,
    forced: bool,
    held: Option<Held>,
    strike: Strike,
    actions: VecDeque<DoorAction>,
}

impl StandardDoor {
    /// A door with this configuration, card only, locked, closed. The owner
    /// should lock the strike output at start; no action is queued for it.
    pub fn new(config: StandardConfig) -> Self {
        Self {
            config,
            mode: Mode::CardOnly,
            override_: None,
            window: None,
            open: false,
            forced: false,
            held: None,
            strike: Strike::Locked,
            actions: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &StandardConfig {
        &self.config
    }

    /// The standing mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The override in force, if any.
    pub fn override_state(&self) -> Option<Override> {
        self.override_
    }

    /// The strike as last reported.
    pub fn strike(&self) -> Strike {
        self.strike
    }

    /// Whether the contact reports the door open.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Whether a held-open alarm (not only the pre-alarm) is active.
    pub fn is_held_open(&self) -> bool {
        self.held.is_some_and(|h| h.stage == HeldStage::Alarm)
    }

    /// Whether the door is open after being forced.
    pub fn is_forced(&self) -> bool {
        self.forced
    }

    /// Feed one input. Drain [`Self::poll_action`] afterwards.
    pub fn handle(&mut self, now: Instant, input: DoorInput) {
        // Deadlines that passed before this input take effect first.
        self.handle_timeout(now);
        match input {
            DoorInput::Granted {
                credential,
                extended,
                exempt,
            } => self.grant(now, credential, extended, exempt),
            DoorInput::Denied { credential, reason } => {
                self.push(DoorAction::Feedback(deny_feedback(reason)));
                self.event(DoorEvent::Denied { credential, reason });
            }
            DoorInput::ExitRequest => self.rex(now),
            DoorInput::ContactOpened => self.opened(),
            DoorInput::ContactClosed => self.closed(),
            DoorInput::SetMode(mode) => self.set_mode(mode),
            DoorInput::SetOverride(o) => self.set_override(now, o),
            DoorInput::CancelOverride => {
                if self.override_.take().is_some() {
                    self.mode_changed();
                }
            }
        }
        self.update(now);
    }

    /// Act on every deadline up to `now`, in time order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, which)) = self.next_deadline() {
            if at > now {
                break;
            }
            match which {
                Deadline::Window => {
                    if let Some(Window {
                        cause: Cause::Grant { credential, .. },
                        ..
                    }) = self.window.take()
                    {
                        self.event(DoorEvent::GrantUnused { credential });
                    }
                }
                Deadline::Override => {
                    self.override_ = None;
                    self.event(DoorEvent::OverrideExpired {
                        reverted_to: self.mode,
                    });
                    self.mode_changed();
                }
                Deadline::PreAlarm => {
                    if let Some(held) = &mut self.held {
                        held.stage = HeldStage::PreAlarm;
                    }
                    self.push(DoorAction::Feedback(Feedback::HeldOpenWarning));
                    self.event(DoorEvent::HeldOpenPreAlarm);
                }
                Deadline::Alarm => {
                    if let Some(held) = &mut self.held {
                        held.stage = HeldStage::Alarm;
                    }
                    self.event(DoorEvent::HeldOpen);
                }
            }
            self.update(at);
        }
    }

    /// The next action for the owner, in order.
    pub fn poll_action(&mut self) -> Option<DoorAction> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline().map(|(at, _)| at)
    }

    fn next_deadline(&self) -> Option<(Instant, Deadline)> {
        let mut best: Option<(Instant, Deadline)> = None;
        let mut consider = |at: Instant, which: Deadline| {
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, which));
            }
        };
        if let Some(w) = &self.window
            && !w.opened
        {
            consider(w.until, Deadline::Window);
        }
        if let Some(o) = &self.override_ {
            consider(o.until, Deadline::Override);
        }
        if let Some(h) = &self.held {
            if h.stage < HeldStage::PreAlarm {
                consider(
                    h.since + self.config.held_open_pre_alarm,
                    Deadline::PreAlarm,
                );
            }
            if h.stage < HeldStage::Alarm {
                consider(h.since + self.config.held_open_alarm, Deadline::Alarm);
            }
        }
        best
    }

    fn push(&mut self, action: DoorAction) {
        self.actions.push_back(action);
    }

    fn event(&mut self, event: DoorEvent) {
        self.push(DoorAction::Event(event));
    }

    fn mode_changed(&mut self) {
        self.event(DoorEvent::ModeChanged {
            mode: self.mode,
            override_: self.override_,
        });
    }

    fn in_lockdown(&self) -> bool {
        self.mode == Mode::Lockdown && self.override_.is_none()
    }

    /// Whether the mode (with its override) holds the door unlocked.
    fn mode_unlocked(&self) -> bool {
        match self.override_ {
            Some(o) => o.state == OverrideState::Unlocked,
            None => matches!(self.mode, Mode::ScheduledUnlock | Mode::Emergency),
        }
    }

    fn grant(&mut self, now: Instant, credential: CredentialId, extended: bool, exempt: bool) {
        if self.in_lockdown() && !exempt {
            self.push(DoorAction::Feedback(Feedback::Lockdown));
            self.event(DoorEvent::GrantRefusedLockdown { credential });
            return;
        }
        let time = if extended {
            self.config.extended_strike_time
        } else {
            self.config.strike_time
        };
        self.window = Some(Window {
            cause: Cause::Grant {
                credential: credential.clone(),
                exempt,
            },
            until: now + time,
            opened: self.open,
        });
        self.push(DoorAction::Feedback(Feedback::Grant));
        self.event(DoorEvent::Granted {
            credential,
            extended,
        });
    }

    fn rex(&mut self, now: Instant) {
        let until = now + self.config.strike_time;
        match &mut self.window {
            // A pending grant keeps its credential; REX only extends it.
            Some(
                w @ Window {
                    cause: Cause::Grant { .. },
                    ..
                },
            ) => {
                w.until = w.until.max(until);
                w.opened |= self.open;
            }
            _ => {
                self.window = Some(Window {
                    cause: Cause::Rex,
                    until,
                    opened: self.open,
                })
            }
        }
        self.event(DoorEvent::Rex);
    }

    fn opened(&mut self) {
        if self.open {
            return;
        }
        self.open = true;
        if self.strike == Strike::Locked {
            self.forced = true;
            self.event(DoorEvent::Forced);
            return;
        }
        match &mut self.window {
            Some(w) if !w.opened => {
                w.opened = true;
                match &w.cause {
                    Cause::Grant { credential, .. } => {
                        let credential = credential.clone();
                        self.event(DoorEvent::EntryOpened { credential });
                    }
                    Cause::Rex => self.event(DoorEvent::Opened),
                }
            }
            _ => self.event(DoorEvent::Opened),
        }
    }

    fn closed(&mut self) {
        if !self.open {
            return;
        }
        self.open = false;
        let was_forced = std::mem::take(&mut self.forced);
        let stage = self.held.take().map_or(HeldStage::None, |h| h.stage);
        if stage > HeldStage::None {
            self.push(DoorAction::Feedback(Feedback::Idle));
        }
        if self.window.as_ref().is_some_and(|w| w.opened) {
            self.window = None;
        }
        self.event(DoorEvent::Closed {
            was_forced,
            was_held_open: stage == HeldStage::Alarm,
        });
    }

    fn set_mode(&mut self, mode: Mode) {
        if mode == Mode::Emergency {
            // Escape wins over any override: a timed lock must not hold.
            let had_override = self.override_.take().is_some();
            if self.mode == Mode::Emergency && !had_override {
                return;
            }
        } else if mode == Mode::Lockdown {
            let had_override = self.override_.take().is_some();
            // Lockdown secures the door at once: a non-exempt grant no longer
            // holds the strike, even with the door open (it latches when the
            // door closes). A REX window stays: egress.
            if let Some(Window {
                cause: Cause::Grant { exempt: false, .. },
                ..
            }) = self.window
            {
                self.window = None;
            }
            if self.mode == Mode::Lockdown && !had_override {
                return;
            }
        } else if self.mode == mode {
            return;
        }
        self.mode = mode;
        self.mode_changed();
    }

    fn set_override(&mut self, now: Instant, o: Override) {
        if self.in_lockdown() {
            self.event(DoorEvent::OverrideRefused {
                reason: OverrideRefusal::Lockdown,
            });
        } else if self.mode == Mode::Emergency {
            self.event(DoorEvent::OverrideRefused {
                reason: OverrideRefusal::Emergency,
            });
        } else if o.until <= now {
            self.event(DoorEvent::OverrideRefused {
                reason: OverrideRefusal::AlreadyExpired,
            });
        } else {
            self.override_ = Some(o);
            self.mode_changed();
        }
    }

    /// Bring held-open monitoring and the strike in line with the state.
    fn update(&mut self, now: Instant) {
        let monitored = self.open && !self.mode_unlocked();
        if monitored && self.held.is_none() {
            self.held = Some(Held {
                since: now,
                stage: HeldStage::None,
            });
        } else if !monitored
            && let Some(held) = self.held.take()
            && held.stage > HeldStage::None
        {
            self.push(DoorAction::Feedback(Feedback::Idle));
        }
        let strike = self.desired_strike();
        if strike != self.strike {
            self.strike = strike;
            self.push(match strike {
                Strike::Locked => DoorAction::LockStrike,
                Strike::Released { until } => DoorAction::ReleaseStrike { until },
            });
        }
    }

    /// Released while any release cause holds; `until` is the latest end
    /// of those causes, `None` if one of them has no end.
    fn desired_strike(&self) -> Strike {
        // Each cause: None = no release; Some(None) = open-ended; Some(Some(t)).
        let from_mode: Option<Option<Instant>> = match self.override_ {
            Some(Override {
                state: OverrideState::Unlocked,
                until,
            }) => Some((self.mode != Mode::ScheduledUnlock).then_some(until)),
            Some(Override {
                state: OverrideState::Locked,
                ..
            }) => None,
            None => matches!(self.mode, Mode::ScheduledUnlock | Mode::Emergency).then_some(None),
        };
        let from_window = self.window.as_ref().map(|w| (!w.opened).then_some(w.until));
        match (from_mode, from_window) {
            (None, None) => Strike::Locked,
            (Some(a), None) | (None, Some(a)) => Strike::Released { until: a },
            (Some(a), Some(b)) => Strike::Released {
                until: a.zip(b).map(|(a, b)| a.max(b)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    fn t0() -> Instant {
        crate::test_clock::epoch()
    }

    fn door() -> StandardDoor {
        StandardDoor::new(StandardConfig::default())
    }

    fn drain(d: &mut StandardDoor) -> Vec<DoorAction> {
        std::iter::from_fn(|| d.poll_action()).collect()
    }

    fn events(actions: &[DoorAction]) -> Vec<DoorEvent> {
        actions
            .iter()
            .filter_map(|a| match a {
                DoorAction::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn grant(id: &str) -> DoorInput {
        DoorInput::Granted {
            credential: id.into(),
            extended: false,
            exempt: false,
        }
    }

    /// Advance to `at` as the owner would: fire the timeout if due, drain.
    fn tick(d: &mut StandardDoor, at: Instant) -> Vec<DoorAction> {
        d.handle_timeout(at);
        drain(d)
    }

    #[test]
    fn grant_open_close_relocks_on_close() {
        let t = t0();
        let mut d = door();
        d.handle(t, grant("alice"));
        let a = drain(&mut d);
        assert!(a.contains(&DoorAction::ReleaseStrike {
            until: Some(t + 5 * S)
        }));
        assert!(a.contains(&DoorAction::Feedback(Feedback::Grant)));
        assert!(events(&a).contains(&DoorEvent::Granted {
            credential: "alice".into(),
            extended: false
        }));
        assert_eq!(d.poll_timeout(), Some(t + 5 * S));

        d.handle(t + 2 * S, DoorInput::ContactOpened);
        let a = drain(&mut d);
        assert_eq!(
            events(&a),
            vec![DoorEvent::EntryOpened {
                credential: "alice".into()
            }]
        );
        // Open-ended while open: relocks on close, not at the window's end.
        assert!(a.contains(&DoorAction::ReleaseStrike { until: None }));
        let a = tick(&mut d, t + 6 * S);
        assert!(!a.contains(&DoorAction::LockStrike));
        assert_eq!(d.strike(), Strike::Released { until: None });

        d.handle(t + 8 * S, DoorInput::ContactClosed);
        let a = drain(&mut d);
        assert!(a.contains(&DoorAction::LockStrike));
        assert!(events(&a).contains(&DoorEvent::Closed {
            was_forced: false,
            was_held_open: false
        }));
        assert_eq!(d.strike(), Strike::Locked);
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn grant_window_expires_without_opening() {
        let t = t0();
        let mut d = door();
        d.handle(t, grant("bob"));
        drain(&mut d);
        assert!(tick(&mut d, t + 4 * S).is_empty());
        let a = tick(&mut d, t + 5 * S);
        assert_eq!(
            a,
            vec![
                DoorAction::Event(DoorEvent::GrantUnused {
                    credential: "bob".into()
                }),
                DoorAction::LockStrike
            ]
        );
        // Opening afterwards is forced.
        d.handle(t + 6 * S, DoorInput::ContactOpened);
        assert_eq!(events(&drain(&mut d)), vec![DoorEvent::Forced]);
        assert!(d.is_forced());
    }

    #[test]
    fn extended_grant_uses_extended_time() {
        let t = t0();
        let mut d = door();
        d.handle(
            t,
            DoorInput::Granted {
                credential: "c".into(),
                extended: true,
                exempt: false,
            },
        );
        assert!(drain(&mut d).contains(&DoorAction::ReleaseStrike {
            until: Some(t + 15 * S)
        }));
        assert!(!tick(&mut d, t + 14 * S).contains(&DoorAction::LockStrike));
        assert!(tick(&mut d, t + 15 * S).contains(&DoorAction::LockStrike));
    }

    #[test]
    fn forced_is_reported_at_once_and_cleared_on_close() {
        let t = t0();
        let mut d = door();
        d.handle(t, DoorInput::ContactOpened);
        let a = drain(&mut d);
        assert_eq!(a, vec![DoorAction::Event(DoorEvent::Forced)]);
        d.handle(t + S, DoorInput::ContactClosed);
        let a = drain(&mut d);
        assert_eq!(
            events(&a),
            vec![DoorEvent::Closed {
                was_forced: true,
                was_held_open: false
            }]
        );
        assert!(!d.is_forced());
        // Duplicate contact reports are ignored.
        d.handle(t + 2 * S, DoorInput::ContactClosed);
        assert!(drain(&mut d).is_empty());
    }

    #[test]
    fn held_open_pre_alarm_then_alarm_then_cleared() {
        let t = t0();
        let mut d = door();
        d.handle(t, grant("a"));
        d.handle(t + S, DoorInput::ContactOpened);
        drain(&mut d);
        assert_eq!(d.poll_timeout(), Some(t + 21 * S));
        assert!(tick(&mut d, t + 20 * S).is_empty());
        let a = tick(&mut d, t + 21 * S);
        assert_eq!(
            a,
            vec![
                DoorAction::Feedback(Feedback::HeldOpenWarning),
                DoorAction::Event(DoorEvent::HeldOpenPreAlarm)
            ]
        );
        assert_eq!(d.poll_timeout(), Some(t + 31 * S));
        assert_eq!(events(&tick(&mut d, t + 31 * S)), vec![DoorEvent::HeldOpen]);
        assert!(d.is_held_open());
        assert_eq!(d.poll_timeout(), None);
        d.handle(t + 40 * S, DoorInput::ContactClosed);
        let a = drain(&mut d);
        assert_eq!(
            a,
            vec![
                DoorAction::Feedback(Feedback::Idle),
                DoorAction::Event(DoorEvent::Closed {
                    was_forced: false,
                    was_held_open: true
                }),
                DoorAction::LockStrike
            ]
        );
        assert!(!d.is_held_open());
    }

    #[test]
    fn late_timeout_fires_in_order() {
        let t = t0();
        let mut d = door();
        d.handle(t, grant("a"));
        d.handle(t, DoorInput::ContactOpened);
        drain(&mut d);
        // One late call fires the pre-alarm and the alarm, in order.
        let e = events(&tick(&mut d, t + 100 * S));
        assert_eq!(e, vec![DoorEvent::HeldOpenPreAlarm, DoorEvent::HeldOpen]);
    }

    #[test]
    fn rex_releases_without_entry_event() {
        let t = t0();
        let mut d = door();
        d.handle(t, DoorInput::ExitRequest);
        let a = drain(&mut d);
        assert_eq!(
            a,
            vec![
                DoorAction::Event(DoorEvent::Rex),
                DoorAction::ReleaseStrike {
                    until: Some(t + 5 * S)
                }
            ]
        );
        d.handle(t + S, DoorInput::ContactOpened);
        let e = events(&drain(&mut d));
        assert_eq!(e, vec![DoorEvent::Opened]);
        d.handle(t + 2 * S, DoorInput::ContactClosed);
        assert!(drain(&mut d).contains(&DoorAction::LockStrike));
        // REX not followed by opening: relock at the window's end, no event.
        d.handle(t + 10 * S, DoorInput::ExitRequest);
        drain(&mut d);
        assert_eq!(tick(&mut d, t + 15 * S), vec![DoorAction::LockStrike]);
    }

    #[test]
    fn denied_feedback_follows_reason() {
        let t = t0();
        let mut d = door();
        for (reason, fb) in [
            (DenyReason::NoAccess, Feedback::Deny),
            (DenyReason::Lockdown, Feedback::Lockdown),
            (DenyReason::RulesTooOld, Feedback::RulesTooOld),
            (DenyReason::Expired, Feedback::Deny),
        ] {
            d.handle(
                t,
                DoorInput::Denied {
                    credential: Some("x".into()),
                    reason,
                },
            );
            assert_eq!(
                drain(&mut d),
                vec![
                    DoorAction::Feedback(fb),
                    DoorAction::Event(DoorEvent::Denied {
                        credential: Some("x".into()),
                        reason
                    })
                ]
            );
        }
        assert_eq!(d.strike(), Strike::Locked);
    }

    #[test]
    fn scheduled_unlock_releases_and_opens_are_not_forced() {
        let t = t0();
        let mut d = door();
        d.handle(t, DoorInput::SetMode(Mode::ScheduledUnlock));
        let a = drain(&mut d);
        assert_eq!(
            a,
            vec![
                DoorAction::Event(DoorEvent::ModeChanged {
                    mode: Mode::ScheduledUnlock,
                    override_: None
                }),
                DoorAction::ReleaseStrike { until: None }
            ]
        );
        d.handle(t + S, DoorInput::ContactOpened);
        assert_eq!(events(&drain(&mut d)), vec![DoorEvent::Opened]);
        // Not monitored for held open while unlocked.
        assert_eq!(d.poll_timeout(), None);
        // Back to card only while open: held-open timing starts now.
        d.handle(t + 10 * S, DoorInput::SetMode(Mode::CardOnly));
        drain(&mut d);
        assert_eq!(d.poll_timeout(), Some(t + 30 * S));
        assert_eq!(d.strike(), Strike::Locked);
        // Same mode again: nothing.
        d.handle(t + 11 * S, DoorInput::SetMode(Mode::CardOnly));
        assert!(drain(&mut d).is_empty());
    }

    #[test]
    fn grant_during_scheduled_unlock_logs_entry_and_stays_released() {
        let t = t0();
        let mut d = door();
        d.handle(t, DoorInput::SetMode(Mode::ScheduledUnlock));
        drain(&mut d);
        d.handle(t, grant("a"));
        let a = drain(&mut d);
        assert!(a.contains(&DoorAction::Feedback(Feedback::Grant)));
        assert!(
            !a.iter()
                .any(|a| matches!(a, DoorAction::ReleaseStrike { .. }))
        );
        d.handle(t + S, DoorInput::ContactOpened);
        assert_eq!(
            events(&drain(&mut d)),
            vec![DoorEvent::EntryOpened {
                credential: "a".into()
            }]
        );
        d.handle(t + 2 * S, DoorInput::ContactClosed);
        assert!(!drain(&mut d).contains(&DoorAction::LockStrike));
        assert_eq!(d.strike(), Strike::Released { until: None });
    }

    #[test]
    fn lockdown_refuses_grants_but_not_exempt_or_rex() {
        let t = t0();
        let mut d = door();
        d.handle(t, DoorInput::SetMode(Mode::Lockdown));
        drain(&mut d);
        d.handle(t, grant("a"));
        let a = drain(&mut d);
        assert_eq!(
            a,
            vec![
                DoorAction::Feedback(Feedback::Lockdown),
                DoorAction::Event(DoorEvent::GrantRefusedLockdown {
                    credential: "a".into()
                })
            ]
        );
        d.handle(
            t,
            DoorInput::Granted {
                credential: "guard".into(),
                extended: false,
                exempt: true,
            },
        );
        assert!(drain(&mut d).contains(&DoorAction::ReleaseStrike {
            until: Some(t + 5 * S)
        }));
        tick(&mut d, t + 5 * S);
        d.handle(t + 6 * S, DoorInput::ExitRequest);
        assert!(drain(&mut d).contains(&DoorAction::ReleaseStrike {
            until: Some(t + 11 * S)
        }));
    }

    #[test]
    fn lockdown_drops_pending_grant_and_cancels_override() {
        let t = t0();
        let mut d = door();
        d.handle(
            t,
            DoorInput::SetOverride(Override {
                state: OverrideState::Unlocked,
                until: t + 60 * S,
            }),
        );
        d.handle(t, grant("a"));
        drain(&mut d);
        d.handle(t + S, DoorInput::SetMode(Mode::Lockdown));
        let a = drain(&mut d);
        assert_eq!(
            a,
            vec![
                DoorAction::Event(DoorEvent::ModeChanged {
                    mode: Mode::Lockdown,
                    override_: None
                }),
                DoorAction::LockStrike
            ]
        );
        d.handle(
            t + 2 * S,
            DoorInput::SetOverride(Override {
                state: OverrideState::Unlocked,
                until: t + 60 * S,
            }),
        );
        assert_eq!(
            events(&drain(&mut d)),
            vec![DoorEvent::OverrideRefused {
                reason: OverrideRefusal::Lockdown
            }]
        );
        assert_eq!(d.strike(), Strike::Locked);
        // Lifted by an explicit mode set.
        d.handle(t + 3 * S, DoorInput::SetMode(Mode::CardOnly));
        assert_eq!(
            events(&drain(&mut d)),
            vec![DoorEvent::ModeChanged {
                mode: Mode::CardOnly,
                override_: None
            }]
        );
    }

    /// Found by the proptest below: a grant while the door stood open, then
    /// lockdown, must not leave the strike released until the door closes.
    #[test]
    fn lockdown_locks_at_once_even_with_door_open() {
        let t = t0();
        let mut d = door();
        d.handle(t, DoorInput::ContactOpened);
        d.handle(t, grant("p"));
        drain(&mut d);
        assert_eq!(d.strike(), Strike::Released { until: None });
        d.handle(t + S, DoorInput::SetMode(Mode::Lockdown));
        assert!(drain(&mut d).contains(&DoorAction::LockStrike));
        d.handle(t + 2 * S, DoorInput::ContactClosed);
        let e = events(&drain(&mut d));
        assert_eq!(
            e,
            vec![DoorEvent::Closed {
                was_forced: true,
                was_held_open: false
            }]
        );
    }

    #[test]
    fn override_unlocked_reverts_at_expiry() {
        let t = t0();
        let mut d = door();
        let o = Override {
            state: OverrideState::Unlocked,
            until: t + 60 * S,
        };
        d.handle(t, DoorInput::SetOverride(o));
        let a = drain(&mut d);
        assert_eq!(
            a,
            vec![
                DoorAction::Event(DoorEvent::ModeChanged {
                    mode: Mode::CardOnly,
                    override_: Some(o)
                }),
                DoorAction::ReleaseStrike {
                    until: Some(t + 60 * S)
                }
            ]
        );
        // A schedule change during the override only changes what it reverts to.
        d.handle(t + S, DoorInput::SetMode(Mode::CardOnly));
        assert!(drain(&mut d).is_empty());
        assert_eq!(d.poll_timeout(), Some(t + 60 * S));
        let a = tick(&mut d, t + 60 * S);
        assert_eq!(
            a,
            vec![
                DoorAction::Event(DoorEvent::OverrideExpired {
                    reverted_to: Mode::CardOnly
                }),
                DoorAction::Event(DoorEvent::ModeChanged {
                    mode: Mode::CardOnly,
                    override_: None
                }),
                DoorAction::LockStrike
            ]
        );
    }

    #[test]
    fn override_locked_during_scheduled_unlock_reverts_to_unlock() {
        let t = t0();
        let mut d = door();
        d.handle(t, DoorInput::SetMode(Mode::ScheduledUnlock));
        drain(&mut d);
        d.handle(
            t,
            DoorInput::SetOverride(Override {
                state: OverrideState::Locked,
                until: t + 10 * S,
            }),
        );
        assert!(drain(&mut d).contains(&DoorAction::LockStrike));
        // Grants still work under a locked override.
        d.handle(t + S, grant("a"));
        assert!(drain(&mut d).contains(&DoorAction::ReleaseStrike {
            until: Some(t + 6 * S)
        }));
        tick(&mut d, t + 6 * S);
        let a = tick(&mut d, t + 10 * S);
        assert!(events(&a).contains(&DoorEvent::OverrideExpired {
            reverted_to: Mode::ScheduledUnlock
        }));
        assert!(a.contains(&DoorAction::ReleaseStrike { until: None }));
    }

    #[test]
    fn override_cancel_and_expired_refusal() {
        let t = t0();
        let mut d = door();
        d.handle(
            t + S,
            DoorInput::SetOverride(Override {
                state: OverrideState::Unlocked,
                until: t,
            }),
        );
        assert_eq!(
            events(&drain(&mut d)),
            vec![DoorEvent::OverrideRefused {
                reason: OverrideRefusal::AlreadyExpired
            }]
        );
        d.handle(
            t + S,
            DoorInput::SetOverride(Override {
                state: OverrideState::Unlocked,
                until: t + 9 * S,
            }),
        );
        drain(&mut d);
        d.handle(t + 2 * S, DoorInput::CancelOverride);
        let a = drain(&mut d);
        assert!(a.contains(&DoorAction::LockStrike));
        assert_eq!(d.poll_timeout(), None);
        d.handle(t + 3 * S, DoorInput::CancelOverride);
        assert!(drain(&mut d).is_empty());
    }

    #[test]
    fn grant_while_open_relocks_on_close() {
        let t = t0();
        let mut d = door();
        d.handle(t, DoorInput::ExitRequest);
        d.handle(t, DoorInput::ContactOpened);
        drain(&mut d);
        d.handle(t + S, grant("b"));
        drain(&mut d);
        d.handle(t + 2 * S, DoorInput::ContactClosed);
        assert!(drain(&mut d).contains(&DoorAction::LockStrike));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Input(DoorInput),
        Override {
            unlocked: bool,
            secs: u64,
        },
        /// Quarter seconds.
        Wait(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (any::<bool>(), any::<bool>()).prop_map(|(extended, exempt)| Step::Input(
                DoorInput::Granted {
                    credential: "p".into(),
                    extended,
                    exempt
                }
            )),
            Just(Step::Input(DoorInput::Denied {
                credential: None,
                reason: DenyReason::NoAccess
            })),
            Just(Step::Input(DoorInput::ExitRequest)),
            Just(Step::Input(DoorInput::ContactOpened)),
            Just(Step::Input(DoorInput::ContactClosed)),
            prop_oneof![
                Just(Mode::CardOnly),
                Just(Mode::ScheduledUnlock),
                Just(Mode::Lockdown),
                Just(Mode::Emergency)
            ]
            .prop_map(|m| Step::Input(DoorInput::SetMode(m))),
            Just(Step::Input(DoorInput::CancelOverride)),
            (any::<bool>(), 1u64..120)
                .prop_map(|(unlocked, secs)| Step::Override { unlocked, secs }),
            (1u64..160).prop_map(Step::Wait),
        ]
    }

    proptest! {
        /// In lockdown the strike is released only by an exempt grant or a
        /// REX; a non-exempt grant in lockdown never releases it; and the
        /// reported strike always matches the actions emitted.
        #[test]
        fn lockdown_releases_only_for_exempt_or_rex(steps in proptest::collection::vec(step(), 0..60)) {
            let t = t0();
            let mut now = t;
            let mut d = door();
            let mut reported = Strike::Locked;
            for s in steps {
                let was_lockdown = d.in_lockdown();
                let refused_grant = matches!(s, Step::Input(DoorInput::Granted { exempt: false, .. })) && was_lockdown;
                match s {
                    Step::Input(i) => d.handle(now, i),
                    Step::Override { unlocked, secs } => {
                        let state = if unlocked { OverrideState::Unlocked } else { OverrideState::Locked };
                        d.handle(now, DoorInput::SetOverride(Override { state, until: now + Duration::from_secs(secs) }));
                    }
                    Step::Wait(quarters) => {
                        now += Duration::from_millis(quarters * 250);
                        d.handle_timeout(now);
                    }
                }
                for a in std::iter::from_fn(|| d.poll_action()) {
                    match a {
                        DoorAction::ReleaseStrike { until } => {
                            prop_assert!(!refused_grant);
                            // Reported only when it changes.
                            prop_assert_ne!(reported, Strike::Released { until });
                            reported = Strike::Released { until };
                        }
                        DoorAction::LockStrike => {
                            prop_assert_ne!(reported, Strike::Locked);
                            reported = Strike::Locked;
                        }
                        _ => {}
                    }
                }
                prop_assert_eq!(reported, d.strike());
                if d.in_lockdown() && d.strike() != Strike::Locked {
                    let cause = d.window.as_ref().map(|w| &w.cause);
                    let allowed = matches!(cause, Some(Cause::Rex | Cause::Grant { exempt: true, .. }));
                    prop_assert!(allowed, "released in lockdown by {:?}", cause);
                }
                if let Some(at) = d.poll_timeout() {
                    prop_assert!(at > now);
                }
            }
        }
    }
}
