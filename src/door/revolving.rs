//! A revolving door (or turnstile) as one machine, sans-IO: which directions
//! it may rotate in, the queue of granted passages, passage counting, and
//! its mode, including a timed free-rotation release that reverts by itself.
//!
//! Owns: the rotation output ([`RevolvingAction::EnableRotation`] stays in
//! force until [`RevolvingAction::DisableRotation`], a different direction,
//! or its `until` — the end of a grant's passage window or of a timed free
//! rotation, so the PD can time it; the daemon maps it to the door
//! controller's inputs),
//! passage counters per direction, and the grant queue.
//!
//! Guarantees:
//! - rotation is enabled only in a free mode ([`RevolvingMode::FreeRotation`],
//!   [`RevolvingMode::EmergencyFree`], a timed free-rotation release) or for
//!   the passage at the head of the queue; never because of a failure;
//! - in [`RevolvingMode::CardholdersOnly`] each grant (and each remote
//!   one-passage release) allows exactly one passage, served in order: only
//!   the head's direction is enabled, and a rotation in that direction
//!   consumes it. A head that sees no rotation within
//!   [`RevolvingConfig::grant_timeout`] (timed from when it reached the head)
//!   expires with an event and the next one is served;
//! - a rotation the door did not allow is counted and reported as
//!   [`RevolvingEvent::UnauthorisedRotation`].
//!
//! Choices: a credential already in the queue is not queued again (no second
//! passage for badging twice). [`RevolvingMode::Locked`] refuses grants but accepts a remote
//! one-passage release (security lets someone through). Any change of the
//! standing mode, and the start of free rotation, clears the queue. Setting
//! `Locked` or `EmergencyFree` cancels a timed free-rotation release; setting
//! another mode during one only changes what it reverts to.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{CredentialId, Direction, Feedback};

/// The standing mode of a revolving door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevolvingMode {
    /// No rotation; grants refused; remote one-passage releases served.
    Locked,
    /// One rotation per grant, in the granted direction.
    CardholdersOnly,
    /// Free rotation both ways (scheduled, e.g. office hours).
    FreeRotation,
    /// Free rotation both ways for evacuation; cancels timed releases.
    EmergencyFree,
}

/// Which way the door may turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rotation {
    /// Inward only.
    In,
    /// Outward only.
    Out,
    /// Both ways (free rotation).
    Both,
}

impl From<Direction> for Rotation {
    fn from(d: Direction) -> Self {
        match d {
            Direction::In => Self::In,
            Direction::Out => Self::Out,
        }
    }
}

/// Configuration of one revolving door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevolvingConfig {
    /// How long a queued grant waits for its rotation once it is served.
    pub grant_timeout: Duration,
}

impl Default for RevolvingConfig {
    fn default() -> Self {
        Self {
            grant_timeout: Duration::from_secs(10),
        }
    }
}

/// An input to a [`RevolvingDoor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevolvingInput {
    /// The rules engine granted this credential, at a reader facing this way.
    Granted {
        /// Who.
        credential: CredentialId,
        /// Which way they go.
        direction: Direction,
    },
    /// The rotation sensor reports a completed passage this way.
    Rotated {
        /// Which way it turned.
        direction: Direction,
    },
    /// Set the standing mode.
    SetMode(RevolvingMode),
    /// Remote release of one passage this way (queued like a grant).
    ReleaseOnePassage {
        /// Which way.
        direction: Direction,
    },
    /// Remote free rotation until this instant, then revert by itself.
    ReleaseFreeRotation {
        /// When it reverts.
        until: Instant,
    },
    /// End a timed free-rotation release now.
    CancelRelease,
}

/// Something the owner must do or record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevolvingAction {
    /// Allow rotation this way (a level, until changed).
    EnableRotation {
        /// Which way.
        rotation: Rotation,
        /// When it ends by itself (a grant's window, a timed free
        /// rotation); `None` only in a standing free mode.
        until: Option<Instant>,
    },
    /// Stop rotation.
    DisableRotation,
    /// Show this pattern on the reader(s) of the door.
    Feedback(Feedback),
    /// Record this event.
    Event(RevolvingEvent),
}

/// What allowed a passage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassageCause {
    /// A grant for this credential.
    Grant(CredentialId),
    /// A remote one-passage release.
    Remote,
    /// Free rotation (scheduled, emergency or a timed release).
    Free,
}

/// A revolving-door event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevolvingEvent {
    /// A grant (or remote release, `credential: None`) joined the queue.
    Queued {
        /// Who, for a grant.
        credential: Option<CredentialId>,
        /// Which way.
        direction: Direction,
        /// Passages ahead of it (0: served now).
        ahead: usize,
    },
    /// A grant for a credential that is already queued; not queued again.
    AlreadyQueued {
        /// Who.
        credential: CredentialId,
    },
    /// A grant arrived while the door rotates freely; nothing to queue.
    GrantDuringFreeRotation {
        /// Who.
        credential: CredentialId,
        /// Which way.
        direction: Direction,
    },
    /// A grant was refused because the door is locked.
    GrantRefusedLocked {
        /// Who.
        credential: CredentialId,
    },
    /// A remote release was not needed: the door rotates freely.
    ReleaseNotNeeded,
    /// A passage was completed.
    Passage {
        /// Which way.
        direction: Direction,
        /// What allowed it.
        cause: PassageCause,
    },
    /// A rotation the door did not allow (forced, tailgating, sensor fault).
    UnauthorisedRotation {
        /// Which way.
        direction: Direction,
    },
    /// A queued passage expired without a rotation.
    QueuedExpired {
        /// Who, for a grant.
        credential: Option<CredentialId>,
        /// Which way.
        direction: Direction,
    },
    /// A mode change dropped queued passages.
    QueueCleared {
        /// How many.
        dropped: usize,
    },
    /// The mode or timed release changed; the new state.
    ModeChanged {
        /// The standing mode.
        mode: RevolvingMode,
        /// A timed free-rotation release in force, until then.
        free_until: Option<Instant>,
    },
    /// A timed free-rotation release ended by itself.
    FreeRotationExpired {
        /// The mode now in force.
        reverted_to: RevolvingMode,
    },
}

/// Completed passages since the machine was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassageCounters {
    /// Passages inward (allowed or not).
    pub entries: u64,
    /// Passages outward (allowed or not).
    pub exits: u64,
    /// Of those, rotations the door did not allow.
    pub unauthorised: u64,
}

#[derive(Debug, Clone)]
struct Pending {
    credential: Option<CredentialId>,
    direction: Direction,
    /// Set when it reaches the head of the queue.
    expires: Option<Instant>,
}

/// The state machine of one revolving door. Starts
/// [`RevolvingMode::Locked`] with rotation disabled.
#[derive(Debug, Clone)]
pub struct RevolvingDoor {
    config: RevolvingConfig,
    mode: RevolvingMode,
    free_until: Option<Instant>,
    queue: VecDeque<Pending>,
    rotation: Option<Rotation>,
    /// The end of the rotation in force, as last reported.
    rotation_until: Option<Instant>,
    counters: PassageCounters,
    actions: VecDeque<RevolvingAction>,
}

impl RevolvingDoor {
    /// A locked revolving door. The owner should disable rotation at start;
    /// no action is queued for it.
    pub fn new(config: RevolvingConfig) -> Self {
        Self {
            config,
            mode: RevolvingMode::Locked,
            free_until: None,
            queue: VecDeque::new(),
            rotation: None,
            rotation_until: None,
            counters: PassageCounters::default(),
            actions: VecDeque::new(),
        }
    }

    /// The standing mode.
    pub fn mode(&self) -> RevolvingMode {
        self.mode
    }

    /// The end of a timed free-rotation release in force.
    pub fn free_until(&self) -> Option<Instant> {
        self.free_until
    }

    /// The rotation last reported (`None`: disabled).
    pub fn rotation(&self) -> Option<Rotation> {
        self.rotation
    }

    /// When the rotation in force ends by itself (`None`: open-ended, or
    /// no rotation).
    pub fn rotation_until(&self) -> Option<Instant> {
        self.rotation_until
    }

    /// Passages counted so far.
    pub fn counters(&self) -> PassageCounters {
        self.counters
    }

    /// Queued passages (head first): who (`None` for a remote release) and
    /// which way.
    pub fn queue(&self) -> impl Iterator<Item = (Option<&CredentialId>, Direction)> + '_ {
        self.queue
            .iter()
            .map(|p| (p.credential.as_ref(), p.direction))
    }

    /// Feed one input. Drain [`Self::poll_action`] afterwards.
    pub fn handle(&mut self, now: Instant, input: RevolvingInput) {
        self.handle_timeout(now);
        match input {
            RevolvingInput::Granted {
                credential,
                direction,
            } => {
                if self.is_free() {
                    self.push(RevolvingAction::Feedback(Feedback::Grant));
                    self.event(RevolvingEvent::GrantDuringFreeRotation {
                        credential,
                        direction,
                    });
                } else if self.mode == RevolvingMode::Locked {
                    self.push(RevolvingAction::Feedback(Feedback::Lockdown));
                    self.event(RevolvingEvent::GrantRefusedLocked { credential });
                } else if self
                    .queue
                    .iter()
                    .any(|p| p.credential.as_ref() == Some(&credential))
                {
                    // Badging again while waiting earns no second passage:
                    // one cardholder per badge, not two per impatience.
                    self.push(RevolvingAction::Feedback(Feedback::Grant));
                    self.event(RevolvingEvent::AlreadyQueued { credential });
                } else {
                    self.push(RevolvingAction::Feedback(Feedback::Grant));
                    self.enqueue(Some(credential), direction);
                }
            }
            RevolvingInput::ReleaseOnePassage { direction } => {
                if self.is_free() {
                    self.event(RevolvingEvent::ReleaseNotNeeded);
                } else {
                    self.enqueue(None, direction);
                }
            }
            RevolvingInput::Rotated { direction } => self.rotated(direction),
            RevolvingInput::SetMode(mode) => self.set_mode(mode),
            RevolvingInput::ReleaseFreeRotation { until } => {
                if self.mode == RevolvingMode::EmergencyFree || until <= now {
                    self.event(RevolvingEvent::ReleaseNotNeeded);
                } else {
                    self.free_until = Some(until);
                    self.clear_queue();
                    self.mode_changed();
                }
            }
            RevolvingInput::CancelRelease => {
                if self.free_until.take().is_some() {
                    self.mode_changed();
                }
            }
        }
        self.update(now);
    }

    /// Act on every deadline up to `now`, in time order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(at) = self.poll_timeout() {
            if at > now {
                break;
            }
            if self.free_until == Some(at) {
                self.free_until = None;
                self.event(RevolvingEvent::FreeRotationExpired {
                    reverted_to: self.mode,
                });
                self.mode_changed();
            } else if let Some(head) = self.queue.pop_front() {
                self.event(RevolvingEvent::QueuedExpired {
                    credential: head.credential,
                    direction: head.direction,
                });
            }
            self.update(at);
        }
    }

    /// The next action for the owner, in order.
    pub fn poll_action(&mut self) -> Option<RevolvingAction> {
        self.actions.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let head = self.queue.front().and_then(|p| p.expires);
        match (self.free_until, head) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn push(&mut self, action: RevolvingAction) {
        self.actions.push_back(action);
    }

    fn event(&mut self, event: RevolvingEvent) {
        self.push(RevolvingAction::Event(event));
    }

    fn mode_changed(&mut self) {
        self.event(RevolvingEvent::ModeChanged {
            mode: self.mode,
            free_until: self.free_until,
        });
    }

    fn is_free(&self) -> bool {
        matches!(
            self.mode,
            RevolvingMode::FreeRotation | RevolvingMode::EmergencyFree
        ) || self.free_until.is_some()
    }

    fn enqueue(&mut self, credential: Option<CredentialId>, direction: Direction) {
        let ahead = self.queue.len();
        self.queue.push_back(Pending {
            credential: credential.clone(),
            direction,
            expires: None,
        });
        self.event(RevolvingEvent::Queued {
            credential,
            direction,
            ahead,
        });
    }

    fn clear_queue(&mut self) {
        let dropped = self.queue.len();
        if dropped > 0 {
            self.queue.clear();
            self.event(RevolvingEvent::QueueCleared { dropped });
        }
    }

    fn rotated(&mut self, direction: Direction) {
        match direction {
            Direction::In => self.counters.entries += 1,
            Direction::Out => self.counters.exits += 1,
        }
        let cause = if self.is_free() {
            Some(PassageCause::Free)
        } else if self.queue.front().is_some_and(|p| p.direction == direction) {
            // The head was just checked to exist.
            self.queue.pop_front().map(|p| {
                p.credential
                    .map_or(PassageCause::Remote, PassageCause::Grant)
            })
        } else {
            None
        };
        match cause {
            Some(cause) => self.event(RevolvingEvent::Passage { direction, cause }),
            None => {
                self.counters.unauthorised += 1;
                self.event(RevolvingEvent::UnauthorisedRotation { direction });
            }
        }
    }

    fn set_mode(&mut self, mode: RevolvingMode) {
        let cancels = matches!(mode, RevolvingMode::Locked | RevolvingMode::EmergencyFree);
        let cancelled = cancels && self.free_until.take().is_some();
        if mode == self.mode && !cancelled {
            return;
        }
        self.mode = mode;
        self.clear_queue();
        self.mode_changed();
    }

    /// Start the head's timer and bring the rotation output in line.
    fn update(&mut self, now: Instant) {
        let timeout = self.config.grant_timeout;
        if let Some(head) = self.queue.front_mut()
            && head.expires.is_none()
        {
            head.expires = Some(now + timeout);
        }
        let standing_free = matches!(
            self.mode,
            RevolvingMode::FreeRotation | RevolvingMode::EmergencyFree
        );
        let (rotation, until) = if standing_free {
            (Some(Rotation::Both), None)
        } else if let Some(until) = self.free_until {
            (Some(Rotation::Both), Some(until))
        } else {
            match self.queue.front() {
                Some(p) => (Some(p.direction.into()), p.expires),
                None => (None, None),
            }
        };
        if (rotation, until) != (self.rotation, self.rotation_until) {
            self.rotation = rotation;
            self.rotation_until = until;
            self.push(match rotation {
                Some(rotation) => RevolvingAction::EnableRotation { rotation, until },
                None => RevolvingAction::DisableRotation,
            });
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

    fn door(mode: RevolvingMode) -> RevolvingDoor {
        let mut d = RevolvingDoor::new(RevolvingConfig::default());
        d.handle(t0(), RevolvingInput::SetMode(mode));
        drain(&mut d);
        d
    }

    fn drain(d: &mut RevolvingDoor) -> Vec<RevolvingAction> {
        std::iter::from_fn(|| d.poll_action()).collect()
    }

    fn events(actions: &[RevolvingAction]) -> Vec<RevolvingEvent> {
        actions
            .iter()
            .filter_map(|a| match a {
                RevolvingAction::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn grant(id: &str, direction: Direction) -> RevolvingInput {
        RevolvingInput::Granted {
            credential: id.into(),
            direction,
        }
    }

    fn rotated(direction: Direction) -> RevolvingInput {
        RevolvingInput::Rotated { direction }
    }

    #[test]
    fn one_rotation_per_grant() {
        let t = t0();
        let mut d = door(RevolvingMode::CardholdersOnly);
        d.handle(t, grant("a", Direction::In));
        let a = drain(&mut d);
        assert_eq!(
            a,
            vec![
                RevolvingAction::Feedback(Feedback::Grant),
                RevolvingAction::Event(RevolvingEvent::Queued {
                    credential: Some("a".into()),
                    direction: Direction::In,
                    ahead: 0
                }),
                RevolvingAction::EnableRotation {
                    rotation: Rotation::In,
                    until: Some(t + 10 * S)
                }
            ]
        );
        d.handle(t + S, rotated(Direction::In));
        let a = drain(&mut d);
        assert_eq!(
            a,
            vec![
                RevolvingAction::Event(RevolvingEvent::Passage {
                    direction: Direction::In,
                    cause: PassageCause::Grant("a".into())
                }),
                RevolvingAction::DisableRotation
            ]
        );
        // A second rotation is unauthorised.
        d.handle(t + 2 * S, rotated(Direction::In));
        assert_eq!(
            events(&drain(&mut d)),
            vec![RevolvingEvent::UnauthorisedRotation {
                direction: Direction::In
            }]
        );
        assert_eq!(
            d.counters(),
            PassageCounters {
                entries: 2,
                exits: 0,
                unauthorised: 1
            }
        );
    }

    #[test]
    fn queue_is_served_in_order() {
        let t = t0();
        let mut d = door(RevolvingMode::CardholdersOnly);
        d.handle(t, grant("a", Direction::In));
        d.handle(t, grant("b", Direction::Out));
        d.handle(t, grant("c", Direction::Out));
        let a = drain(&mut d);
        assert!(events(&a).contains(&RevolvingEvent::Queued {
            credential: Some("c".into()),
            direction: Direction::Out,
            ahead: 2
        }));
        assert_eq!(d.rotation(), Some(Rotation::In));
        // Out is not allowed yet: b waits behind a.
        d.handle(t + S, rotated(Direction::Out));
        assert_eq!(
            events(&drain(&mut d)),
            vec![RevolvingEvent::UnauthorisedRotation {
                direction: Direction::Out
            }]
        );
        d.handle(t + 2 * S, rotated(Direction::In));
        assert_eq!(
            drain(&mut d).last(),
            Some(&RevolvingAction::EnableRotation {
                rotation: Rotation::Out,
                until: Some(t + 12 * S)
            })
        );
        d.handle(t + 3 * S, rotated(Direction::Out));
        let a = drain(&mut d);
        // Same direction next: the release is re-timed for c's window
        // (the PD must not relock at the end of b's).
        assert_eq!(
            a,
            vec![
                RevolvingAction::Event(RevolvingEvent::Passage {
                    direction: Direction::Out,
                    cause: PassageCause::Grant("b".into())
                }),
                RevolvingAction::EnableRotation {
                    rotation: Rotation::Out,
                    until: Some(t + 13 * S)
                }
            ]
        );
        d.handle(t + 4 * S, rotated(Direction::Out));
        let a = drain(&mut d);
        assert_eq!(a.last(), Some(&RevolvingAction::DisableRotation));
        assert!(events(&a).contains(&RevolvingEvent::Passage {
            direction: Direction::Out,
            cause: PassageCause::Grant("c".into())
        }));
        assert_eq!(
            d.counters(),
            PassageCounters {
                entries: 1,
                exits: 3,
                unauthorised: 1
            }
        );
    }

    #[test]
    fn badging_twice_does_not_queue_twice() {
        let t = t0();
        let mut d = door(RevolvingMode::CardholdersOnly);
        d.handle(t, grant("a", Direction::In));
        drain(&mut d);
        d.handle(t + S, grant("a", Direction::In));
        assert_eq!(
            drain(&mut d),
            vec![
                RevolvingAction::Feedback(Feedback::Grant),
                RevolvingAction::Event(RevolvingEvent::AlreadyQueued {
                    credential: "a".into()
                })
            ]
        );
        assert_eq!(d.queue().count(), 1);
        d.handle(t + 2 * S, rotated(Direction::In));
        d.handle(t + 3 * S, rotated(Direction::In));
        let e = events(&drain(&mut d));
        assert_eq!(
            e[1],
            RevolvingEvent::UnauthorisedRotation {
                direction: Direction::In
            }
        );
        // Once served, the same credential may be queued again.
        d.handle(t + 4 * S, grant("a", Direction::Out));
        assert_eq!(d.queue().count(), 1);
    }

    #[test]
    fn queued_grant_expires_and_next_is_served() {
        let t = t0();
        let mut d = door(RevolvingMode::CardholdersOnly);
        d.handle(t, grant("a", Direction::In));
        d.handle(t + 5 * S, grant("b", Direction::Out));
        drain(&mut d);
        // a's timer runs from t, b's only from when it reaches the head.
        assert_eq!(d.poll_timeout(), Some(t + 10 * S));
        let a = {
            d.handle_timeout(t + 10 * S);
            drain(&mut d)
        };
        assert_eq!(
            a,
            vec![
                RevolvingAction::Event(RevolvingEvent::QueuedExpired {
                    credential: Some("a".into()),
                    direction: Direction::In
                }),
                RevolvingAction::EnableRotation {
                    rotation: Rotation::Out,
                    until: Some(t + 20 * S)
                }
            ]
        );
        assert_eq!(d.poll_timeout(), Some(t + 20 * S));
        d.handle_timeout(t + 20 * S);
        let a = drain(&mut d);
        assert_eq!(a.last(), Some(&RevolvingAction::DisableRotation));
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.queue().count(), 0);
    }

    #[test]
    fn remote_one_passage_release() {
        let t = t0();
        let mut d = door(RevolvingMode::Locked);
        d.handle(t, grant("a", Direction::In));
        assert_eq!(
            drain(&mut d),
            vec![
                RevolvingAction::Feedback(Feedback::Lockdown),
                RevolvingAction::Event(RevolvingEvent::GrantRefusedLocked {
                    credential: "a".into()
                })
            ]
        );
        d.handle(
            t,
            RevolvingInput::ReleaseOnePassage {
                direction: Direction::Out,
            },
        );
        assert_eq!(
            drain(&mut d).last(),
            Some(&RevolvingAction::EnableRotation {
                rotation: Rotation::Out,
                until: Some(t + 10 * S)
            })
        );
        d.handle(t + S, rotated(Direction::Out));
        let a = drain(&mut d);
        assert_eq!(
            a,
            vec![
                RevolvingAction::Event(RevolvingEvent::Passage {
                    direction: Direction::Out,
                    cause: PassageCause::Remote
                }),
                RevolvingAction::DisableRotation
            ]
        );
    }

    #[test]
    fn free_rotation_release_reverts_by_itself() {
        let t = t0();
        let mut d = door(RevolvingMode::CardholdersOnly);
        d.handle(t, grant("a", Direction::In));
        drain(&mut d);
        d.handle(
            t + S,
            RevolvingInput::ReleaseFreeRotation { until: t + 60 * S },
        );
        let a = drain(&mut d);
        assert_eq!(
            a,
            vec![
                RevolvingAction::Event(RevolvingEvent::QueueCleared { dropped: 1 }),
                RevolvingAction::Event(RevolvingEvent::ModeChanged {
                    mode: RevolvingMode::CardholdersOnly,
                    free_until: Some(t + 60 * S)
                }),
                RevolvingAction::EnableRotation {
                    rotation: Rotation::Both,
                    until: Some(t + 60 * S)
                }
            ]
        );
        d.handle(t + 2 * S, rotated(Direction::Out));
        d.handle(t + 3 * S, grant("b", Direction::In));
        let e = events(&drain(&mut d));
        assert_eq!(
            e,
            vec![
                RevolvingEvent::Passage {
                    direction: Direction::Out,
                    cause: PassageCause::Free
                },
                RevolvingEvent::GrantDuringFreeRotation {
                    credential: "b".into(),
                    direction: Direction::In
                }
            ]
        );
        // Scheduled change during the release: only the revert target.
        d.handle(
            t + 4 * S,
            RevolvingInput::SetMode(RevolvingMode::CardholdersOnly),
        );
        assert!(drain(&mut d).is_empty());
        assert_eq!(d.poll_timeout(), Some(t + 60 * S));
        d.handle_timeout(t + 60 * S);
        assert_eq!(
            drain(&mut d),
            vec![
                RevolvingAction::Event(RevolvingEvent::FreeRotationExpired {
                    reverted_to: RevolvingMode::CardholdersOnly
                }),
                RevolvingAction::Event(RevolvingEvent::ModeChanged {
                    mode: RevolvingMode::CardholdersOnly,
                    free_until: None
                }),
                RevolvingAction::DisableRotation
            ]
        );
    }

    #[test]
    fn modes_free_emergency_locked() {
        let t = t0();
        let mut d = door(RevolvingMode::FreeRotation);
        assert_eq!(d.rotation(), Some(Rotation::Both));
        d.handle(
            t,
            RevolvingInput::ReleaseOnePassage {
                direction: Direction::In,
            },
        );
        assert_eq!(
            events(&drain(&mut d)),
            vec![RevolvingEvent::ReleaseNotNeeded]
        );
        d.handle(t, RevolvingInput::ReleaseFreeRotation { until: t + 60 * S });
        drain(&mut d);
        // Emergency cancels the timed release; no reversion later.
        d.handle(t + S, RevolvingInput::SetMode(RevolvingMode::EmergencyFree));
        assert_eq!(
            events(&drain(&mut d)),
            vec![RevolvingEvent::ModeChanged {
                mode: RevolvingMode::EmergencyFree,
                free_until: None
            }]
        );
        assert_eq!(d.poll_timeout(), None);
        d.handle(
            t + 2 * S,
            RevolvingInput::ReleaseFreeRotation { until: t + 60 * S },
        );
        assert_eq!(
            events(&drain(&mut d)),
            vec![RevolvingEvent::ReleaseNotNeeded]
        );
        d.handle(t + 3 * S, RevolvingInput::SetMode(RevolvingMode::Locked));
        assert_eq!(
            drain(&mut d).last(),
            Some(&RevolvingAction::DisableRotation)
        );
        d.handle(t + 4 * S, RevolvingInput::CancelRelease);
        assert!(drain(&mut d).is_empty());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Grant(Direction),
        Release(Direction),
        Rotate(Direction),
        Mode(bool),
        Wait(u64),
    }

    fn dir() -> impl Strategy<Value = Direction> {
        prop_oneof![Just(Direction::In), Just(Direction::Out)]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            dir().prop_map(Step::Grant),
            dir().prop_map(Step::Release),
            dir().prop_map(Step::Rotate),
            dir().prop_map(Step::Rotate),
            any::<bool>().prop_map(Step::Mode),
            (1u64..30).prop_map(Step::Wait),
        ]
    }

    proptest! {
        /// Without free rotation, the door allows no more passages than
        /// grants plus remote releases, rotation is enabled only while a
        /// passage is queued, and only in the head's direction.
        #[test]
        fn no_more_passages_than_grants_and_releases(steps in proptest::collection::vec(step(), 0..80)) {
            let t = t0();
            let mut now = t;
            let mut d = door(RevolvingMode::CardholdersOnly);
            let (mut allowances, mut passages) = (0u64, 0u64);
            let mut reported: Option<Rotation> = None;
            for s in steps {
                match s {
                    Step::Grant(direction) => {
                        if d.mode() == RevolvingMode::CardholdersOnly {
                            allowances += 1;
                        }
                        d.handle(now, grant("p", direction));
                    }
                    Step::Release(direction) => {
                        allowances += 1;
                        d.handle(now, RevolvingInput::ReleaseOnePassage { direction });
                    }
                    Step::Rotate(direction) => d.handle(now, rotated(direction)),
                    Step::Mode(locked) => {
                        let mode = if locked { RevolvingMode::Locked } else { RevolvingMode::CardholdersOnly };
                        d.handle(now, RevolvingInput::SetMode(mode));
                    }
                    Step::Wait(secs) => {
                        now += Duration::from_secs(secs);
                        d.handle_timeout(now);
                    }
                }
                for a in std::iter::from_fn(|| d.poll_action()) {
                    match a {
                        RevolvingAction::Event(RevolvingEvent::Passage { cause, .. }) => {
                            prop_assert_ne!(cause, PassageCause::Free);
                            passages += 1;
                        }
                        RevolvingAction::EnableRotation { rotation, .. } => reported = Some(rotation),
                        RevolvingAction::DisableRotation => reported = None,
                        _ => {}
                    }
                }
                prop_assert!(passages <= allowances);
                let head = d.queue().next().map(|(_, dir)| Rotation::from(dir));
                prop_assert_eq!(reported, head);
                prop_assert_eq!(d.rotation(), head);
                let c = d.counters();
                prop_assert_eq!(c.entries + c.exits, passages + c.unauthorised);
            }
        }
    }
}
