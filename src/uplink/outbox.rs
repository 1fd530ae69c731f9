//! The outbox cursor, sans-IO: which journal events to publish next, and
//! what the central acknowledgement allows to delete.
//!
//! Contract (as the OSDP bus): feed inputs with [`Outbox::handle`]`(now,
//! input)`, then drain [`Outbox::poll_output`] until `None`; call
//! `handle(now, Input::Timeout)` at [`Outbox::poll_timeout`]. Ask
//! [`Outbox::next_batch`] what to read and send. It never reads a clock.
//!
//! Invariants:
//! - events go out in sequence order, in batches, at most `window` events
//!   beyond the last central acknowledgement (flow control: a broker that
//!   accepts but a central system that does not store is not flooded);
//! - an event is deleted only when central acknowledges it (`<prefix>/ack`
//!   carries the highest contiguous sequence number stored centrally); a
//!   broker's PUBACK is not enough, brokers lose messages on restart;
//! - an acknowledgement beyond the highest sequence number that may have
//!   been sent (sent on this run, or kept in the journal when it started,
//!   so possibly sent before a restart) is impossible: it deletes nothing
//!   and becomes an [`Output::AckOutOfRange`] alarm. A confused or hostile
//!   central (`seq = 2^64-1`) cannot empty the journal or wedge the cursor;
//! - an acknowledgement naming another journal than the outbox's own is
//!   ignored: no deletion, no alarm. The `ack` topic is the gateway's, and
//!   a drain of a journal moved aside (`portier journal drain`) hears the
//!   running daemon's acks and the daemon the drain's; sequence numbers
//!   of different journals mean different events. An ack naming no
//!   journal (a central of an earlier version) applies as before;
//! - no arithmetic can overflow (window sums saturate);
//! - after a reconnect everything not acknowledged is sent again, and so it
//!   is when central has acknowledged nothing new for `resend_after` while
//!   events wait (central restarted, or was not subscribed yet): central
//!   sees duplicates only then, never a gap.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::journal::JournalId;

/// What happens to the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The link is (re)established: send everything unacknowledged again.
    Connected,
    /// A batch ending at this sequence number was handed to the broker.
    Sent {
        /// Its last sequence number.
        last: u64,
    },
    /// Central acknowledged everything up to `seq` of `journal`.
    Ack {
        /// The acknowledged sequence number.
        seq: u64,
        /// The journal it names (`None`: a central of an earlier version,
        /// taken as this outbox's journal).
        journal: Option<JournalId>,
    },
    /// [`Outbox::poll_timeout`] passed.
    Timeout,
}

/// What the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Delete every journal event up to and including `through`.
    Delete {
        /// The last sequence number to delete.
        through: u64,
    },
    /// Central acknowledged more than was ever sent; nothing was deleted.
    /// Journal it as an alarm.
    AckOutOfRange {
        /// What central acknowledged.
        acked: u64,
        /// The highest sequence number that may have been sent.
        sent: u64,
    },
    /// Central acknowledged nothing new for a while: sending again from
    /// the last acknowledgement.
    Rewound {
        /// The last acknowledged sequence number.
        from: u64,
    },
}

/// Where the uplink stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    /// Highest sequence number central acknowledged (0: none).
    acked: u64,
    /// Highest sequence number published on this connection.
    sent: u64,
    /// Highest sequence number that may have been sent at all (kept in the
    /// journal at start, or sent since): acks beyond it are impossible.
    sent_ever: u64,
    /// Events in one message.
    batch: usize,
    /// Events published and not yet acknowledged, at most.
    window: u64,
    /// Send again from the last ack when it has not moved for this long.
    resend_after: Duration,
    /// When the ack last moved (or sending restarted from it).
    progress_at: Option<Instant>,
    /// The journal whose events go out: acks naming another are ignored.
    journal: JournalId,
    outputs: VecDeque<Output>,
}

impl Outbox {
    /// A cursor after `acked` (what the journal no longer holds was
    /// acknowledged: its oldest kept sequence number minus one), with
    /// events up to `last_kept` in the journal (they may have been sent
    /// before a restart, so central may acknowledge them).
    pub fn new(
        acked: u64,
        last_kept: u64,
        batch: usize,
        window: u64,
        resend_after: Duration,
    ) -> Self {
        Self {
            acked,
            sent: acked,
            sent_ever: last_kept.max(acked),
            batch: batch.max(1),
            window: window.max(batch as u64).max(1),
            resend_after,
            progress_at: None,
            journal: JournalId::NIL,
            outputs: VecDeque::new(),
        }
    }

    /// The cursor of the journal `journal` (default: the nil journal of
    /// an earlier version): acks naming another journal are ignored.
    pub fn for_journal(mut self, journal: JournalId) -> Self {
        self.journal = journal;
        self
    }

    /// The journal whose events this cursor sends.
    pub fn journal(&self) -> JournalId {
        self.journal
    }

    /// Whether an ack naming `journal` is for this cursor.
    pub fn is_own(&self, journal: Option<JournalId>) -> bool {
        journal.is_none_or(|j| j == self.journal)
    }

    /// Highest acknowledged sequence number.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Highest sequence number sent on this connection.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Feed an input; then drain [`Outbox::poll_output`].
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Connected => {
                self.sent = self.acked;
                self.progress_at = Some(now);
            }
            Input::Sent { last } => {
                // Nothing was outstanding: the wait for an ack starts now,
                // not when the link last went idle.
                if self.sent == self.acked {
                    self.progress_at = Some(now);
                }
                self.sent = self.sent.max(last);
                self.sent_ever = self.sent_ever.max(last);
            }
            Input::Ack { seq, journal } if self.is_own(journal) => self.ack(now, seq),
            // Another journal's: its numbers mean other events.
            Input::Ack { .. } => {}
            Input::Timeout => self.timeout(now),
        }
    }

    fn ack(&mut self, now: Instant, seq: u64) {
        if seq > self.sent_ever {
            self.outputs.push_back(Output::AckOutOfRange {
                acked: seq,
                sent: self.sent_ever,
            });
            return;
        }
        if seq <= self.acked {
            return;
        }
        self.acked = seq;
        self.progress_at = Some(now);
        // A previous connection's ack can pass what this one sent.
        self.sent = self.sent.max(seq);
        self.outputs.push_back(Output::Delete { through: seq });
    }

    fn timeout(&mut self, now: Instant) {
        let stalled = self
            .progress_at
            .is_some_and(|t| now.saturating_duration_since(t) >= self.resend_after);
        if self.sent > self.acked && stalled {
            self.sent = self.acked;
            self.progress_at = Some(now);
            self.outputs.push_back(Output::Rewound { from: self.acked });
        } else if self.sent == self.acked {
            self.progress_at = Some(now);
        }
    }

    /// The next thing for the driver to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to feed [`Input::Timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.progress_at
            .map(|t| t.checked_add(self.resend_after).unwrap_or(t))
    }

    /// The next batch to read from the journal: events after the returned
    /// sequence number, at most the returned count; `None` when the window
    /// is full.
    pub fn next_batch(&self) -> Option<(u64, usize)> {
        let room = self
            .acked
            .saturating_add(self.window)
            .saturating_sub(self.sent);
        let n = usize::try_from(room).unwrap_or(usize::MAX).min(self.batch);
        (n > 0).then_some((self.sent, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RESEND: Duration = Duration::from_secs(10);

    fn outputs(o: &mut Outbox) -> Vec<Output> {
        std::iter::from_fn(|| o.poll_output()).collect()
    }

    #[test]
    fn batches_stay_within_the_window_and_resume_after_reconnect() {
        let t = crate::test_clock::epoch();
        let mut o = Outbox::new(10, 10, 100, 250, RESEND);
        assert_eq!(o.next_batch(), Some((10, 100)));
        o.handle(t, Input::Sent { last: 110 });
        o.handle(t, Input::Sent { last: 210 });
        assert_eq!(o.next_batch(), Some((210, 50)));
        o.handle(t, Input::Sent { last: 260 });
        assert_eq!(o.next_batch(), None, "window full until central acks");
        o.handle(
            t,
            Input::Ack {
                seq: 150,
                journal: None,
            },
        );
        assert_eq!(outputs(&mut o), vec![Output::Delete { through: 150 }]);
        assert_eq!(o.next_batch(), Some((260, 100)));
        o.handle(
            t,
            Input::Ack {
                seq: 120,
                journal: None,
            },
        );
        assert_eq!(outputs(&mut o), vec![], "acks never go back");
        o.handle(t, Input::Connected);
        assert_eq!(o.next_batch(), Some((150, 100)), "unacked events go again");
    }

    #[test]
    fn an_ack_for_events_kept_at_start_is_taken() {
        let t = crate::test_clock::epoch();
        // 500 events kept from before a restart: central may ack them late.
        let mut o = Outbox::new(0, 500, 10, 10, RESEND);
        o.handle(
            t,
            Input::Ack {
                seq: 500,
                journal: None,
            },
        );
        assert_eq!(outputs(&mut o), vec![Output::Delete { through: 500 }]);
        assert_eq!(o.next_batch(), Some((500, 10)));
    }

    #[test]
    fn an_ack_beyond_what_was_sent_is_an_alarm_and_deletes_nothing() {
        let t = crate::test_clock::epoch();
        let mut o = Outbox::new(0, 0, 10, 100, RESEND);
        o.handle(t, Input::Connected);
        o.handle(t, Input::Sent { last: 30 });
        for seq in [31, u64::MAX] {
            o.handle(t, Input::Ack { seq, journal: None });
            assert_eq!(
                outputs(&mut o),
                vec![Output::AckOutOfRange {
                    acked: seq,
                    sent: 30
                }]
            );
        }
        assert_eq!(o.acked(), 0);
        assert_eq!(o.next_batch(), Some((30, 10)), "the cursor still works");
        o.handle(
            t,
            Input::Ack {
                seq: 30,
                journal: None,
            },
        );
        assert_eq!(outputs(&mut o), vec![Output::Delete { through: 30 }]);
    }

    #[test]
    fn unacknowledged_events_go_again_when_central_is_silent() {
        let t = crate::test_clock::epoch();
        let mut o = Outbox::new(0, 0, 10, 100, RESEND);
        o.handle(t, Input::Connected);
        o.handle(t, Input::Sent { last: 30 });
        o.handle(t + RESEND / 2, Input::Timeout);
        assert_eq!(outputs(&mut o), vec![]);
        o.handle(
            t + RESEND / 2,
            Input::Ack {
                seq: 10,
                journal: None,
            },
        );
        assert_eq!(outputs(&mut o), vec![Output::Delete { through: 10 }]);
        assert_eq!(o.poll_timeout(), Some(t + RESEND / 2 + RESEND));
        o.handle(t + RESEND, Input::Timeout);
        assert_eq!(outputs(&mut o), vec![], "the ack moved: not yet");
        o.handle(t + RESEND / 2 + RESEND, Input::Timeout);
        assert_eq!(outputs(&mut o), vec![Output::Rewound { from: 10 }]);
        assert_eq!(o.next_batch(), Some((10, 10)), "from the last ack");
        // Nothing outstanding: no rewinds, however long it is quiet.
        let mut idle = Outbox::new(5, 5, 10, 100, RESEND);
        idle.handle(t, Input::Connected);
        idle.handle(t + 100 * RESEND, Input::Timeout);
        assert_eq!(outputs(&mut idle), vec![]);
    }

    #[test]
    fn an_ack_for_another_journal_is_ignored() {
        let t = crate::test_clock::epoch();
        let own = JournalId([1; 16]);
        let other = JournalId([2; 16]);
        let mut o = Outbox::new(0, 0, 10, 100, RESEND).for_journal(own);
        o.handle(t, Input::Connected);
        o.handle(t, Input::Sent { last: 30 });
        // Within range or far beyond it: neither a deletion nor an alarm.
        for seq in [10, 31, u64::MAX] {
            o.handle(
                t,
                Input::Ack {
                    seq,
                    journal: Some(other),
                },
            );
            assert_eq!(outputs(&mut o), vec![], "ack {seq} of another journal");
        }
        assert_eq!(o.acked(), 0);
        o.handle(
            t,
            Input::Ack {
                seq: 10,
                journal: Some(own),
            },
        );
        assert_eq!(outputs(&mut o), vec![Output::Delete { through: 10 }]);
        // An ack naming no journal (an earlier central) applies as before.
        o.handle(
            t,
            Input::Ack {
                seq: 20,
                journal: None,
            },
        );
        assert_eq!(outputs(&mut o), vec![Output::Delete { through: 20 }]);
        assert!(o.is_own(None) && o.is_own(Some(own)) && !o.is_own(Some(other)));
    }

    proptest! {
        /// Against a model: deletions never pass what was sent, never go
        /// back, batches stay in the window; any input sequence, any
        /// numbers (overflow would panic in debug builds).
        #[test]
        fn the_cursor_never_deletes_what_was_not_sent(
            start in any::<u64>(),
            window in 1u64..1000,
            inputs in proptest::collection::vec((0u8..4, any::<u64>()), 0..200),
        ) {
            let t = crate::test_clock::epoch();
            let mut o = Outbox::new(start, start, 50, window, RESEND);
            let mut sent_ever = start;
            let mut deleted = start;
            for (i, (kind, n)) in inputs.into_iter().enumerate() {
                let now = t + Duration::from_secs(i as u64);
                match kind {
                    0 => o.handle(now, Input::Connected),
                    1 => {
                        if let Some((after, max)) = o.next_batch() {
                            prop_assert!(after.saturating_add(max as u64) <= o.acked().saturating_add(window.max(50)));
                            let last = after.saturating_add(1 + n % max as u64);
                            sent_ever = sent_ever.max(last);
                            o.handle(now, Input::Sent { last });
                        }
                    }
                    2 => o.handle(now, Input::Ack { seq: n, journal: None }),
                    _ => o.handle(now, Input::Ack { seq: deleted.saturating_add(n % 100), journal: None }),
                }
                while let Some(out) = o.poll_output() {
                    if let Output::Delete { through } = out {
                        prop_assert!(through > deleted && through <= sent_ever);
                        deleted = through;
                    }
                }
            }
        }
    }
}
