//! The outbox cursor, sans-IO: which journal events to publish next, and
//! what the central acknowledgement allows to delete.
//!
//! Invariants:
//! - events go out in sequence order, in batches, at most `window` events
//!   beyond the last central acknowledgement (flow control: a broker that
//!   accepts but a central system that does not store is not flooded);
//! - an event is deleted only when central acknowledges it (`<prefix>/ack`
//!   carries the highest contiguous sequence number stored centrally); a
//!   broker's PUBACK is not enough, brokers lose messages on restart;
//! - after a reconnect everything not acknowledged is sent again, and so it
//!   is when central has acknowledged nothing new for `resend_after` while
//!   events wait (central restarted, or was not subscribed yet): central
//!   sees duplicates only then, never a gap.

use std::time::{Duration, Instant};

/// Where the uplink stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    /// Highest sequence number central acknowledged (0: none).
    acked: u64,
    /// Highest sequence number published on this connection.
    sent: u64,
    /// Events in one message.
    batch: usize,
    /// Events published and not yet acknowledged, at most.
    window: u64,
    /// Send again from the last ack when it has not moved for this long.
    resend_after: Duration,
    /// When the ack last moved (or sending restarted from it).
    progress_at: Option<Instant>,
}

impl Outbox {
    /// A cursor after `acked` (what the journal no longer holds was
    /// acknowledged: its first kept sequence number minus one).
    pub fn new(acked: u64, batch: usize, window: u64, resend_after: Duration) -> Self {
        Self {
            acked,
            sent: acked,
            batch: batch.max(1),
            window: window.max(batch as u64).max(1),
            resend_after,
            progress_at: None,
        }
    }

    /// Highest acknowledged sequence number.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Highest sequence number sent on this connection.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The link is (re)established: send everything unacknowledged again.
    pub fn on_connected(&mut self, now: Instant) {
        self.sent = self.acked;
        self.progress_at = Some(now);
    }

    /// Call now and then: when events were sent but central acknowledged
    /// nothing new for `resend_after`, send them again. Returns whether it
    /// rewound.
    pub fn on_tick(&mut self, now: Instant) -> bool {
        let stalled = self
            .progress_at
            .is_some_and(|t| now.saturating_duration_since(t) >= self.resend_after);
        if self.sent > self.acked && stalled {
            self.sent = self.acked;
            self.progress_at = Some(now);
            return true;
        }
        if self.sent == self.acked {
            self.progress_at = Some(now);
        }
        false
    }

    /// When [`Outbox::on_tick`] should be called next.
    pub fn next_tick(&self) -> Option<Instant> {
        self.progress_at.map(|t| t + self.resend_after)
    }

    /// The next batch to read from the journal: events after the returned
    /// sequence number, at most the returned count; `None` when the window
    /// is full.
    pub fn next_batch(&self) -> Option<(u64, usize)> {
        let room = (self.acked + self.window).saturating_sub(self.sent);
        (room > 0).then(|| (self.sent, self.batch.min(room as usize)))
    }

    /// A batch ending at `last` was handed to the broker.
    pub fn on_sent(&mut self, last: u64) {
        self.sent = self.sent.max(last);
    }

    /// Central acknowledged everything up to `seq`: returns the sequence
    /// number to delete through, if it moved. An ack beyond what was sent
    /// (a previous connection's, or a confused central) is taken as far as
    /// it goes: the journal deletes only what it has.
    pub fn on_ack(&mut self, seq: u64, now: Instant) -> Option<u64> {
        if seq <= self.acked {
            return None;
        }
        self.acked = seq;
        self.progress_at = Some(now);
        self.sent = self.sent.max(seq);
        Some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESEND: Duration = Duration::from_secs(10);

    #[test]
    fn batches_stay_within_the_window_and_resume_after_reconnect() {
        let t = crate::test_clock::epoch();
        let mut o = Outbox::new(10, 100, 250, RESEND);
        assert_eq!(o.next_batch(), Some((10, 100)));
        o.on_sent(110);
        o.on_sent(210);
        assert_eq!(o.next_batch(), Some((210, 50)));
        o.on_sent(260);
        assert_eq!(o.next_batch(), None, "window full until central acks");
        assert_eq!(o.on_ack(150, t), Some(150));
        assert_eq!(o.next_batch(), Some((260, 100)));
        assert_eq!(o.on_ack(120, t), None, "acks never go back");
        o.on_connected(t);
        assert_eq!(o.next_batch(), Some((150, 100)), "unacked events go again");
    }

    #[test]
    fn an_ack_beyond_what_was_sent_moves_both() {
        let mut o = Outbox::new(0, 10, 10, RESEND);
        assert_eq!(o.on_ack(500, crate::test_clock::epoch()), Some(500));
        assert_eq!(o.next_batch(), Some((500, 10)));
    }

    #[test]
    fn unacknowledged_events_go_again_when_central_is_silent() {
        let t = crate::test_clock::epoch();
        let mut o = Outbox::new(0, 10, 100, RESEND);
        o.on_connected(t);
        o.on_sent(30);
        assert!(!o.on_tick(t + RESEND / 2));
        assert_eq!(o.on_ack(10, t + RESEND / 2), Some(10));
        assert!(!o.on_tick(t + RESEND), "the ack moved: not yet");
        assert!(o.on_tick(t + RESEND / 2 + RESEND));
        assert_eq!(o.next_batch(), Some((10, 10)), "from the last ack");
        // Nothing outstanding: no rewinds, however long it is quiet.
        let mut idle = Outbox::new(5, 10, 100, RESEND);
        idle.on_connected(t);
        assert!(!idle.on_tick(t + 100 * RESEND));
    }
}
