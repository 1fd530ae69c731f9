//! PIN entry at a reader's keypad, sans-IO: a card whose rules ask for a
//! PIN (`pin_required`) waits here for its digits, then is decided again
//! with them. The PIN is what makes a duress PIN possible.
//!
//! Keys as OSDP sends them (osdp_KEYPAD): ASCII digits, `#` (0x0D) ends
//! the entry, `*` (0x7F) clears it. An entry ends with `#`, when
//! [`MAX_DIGITS`] are typed, or at its deadline ([`PIN_TIMEOUT`] after
//! the card, renewed by each key): then the card is denied `pin_required`
//! as before. One entry per reader; a new card at the reader replaces it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::door::Direction;
use crate::ids::{DoorId, ReaderId};
use crate::osdp::message::RawCard;

/// How long a reader waits for the next key.
pub const PIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest PIN taken; typing more ends the entry (as a wrong PIN).
pub const MAX_DIGITS: usize = 12;

/// OSDP's code for `#`.
const ENTER: u8 = 0x0D;
/// OSDP's code for `*`.
const CLEAR: u8 = 0x7F;

/// A card waiting for its PIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The door.
    pub door: DoorId,
    /// The reader.
    pub reader: ReaderId,
    /// Which way the reader admits.
    pub direction: Direction,
    /// The card as read.
    pub card: RawCard,
    digits: String,
    deadline: Instant,
}

/// A finished entry: decide the card again with `pin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entered {
    /// The card and where it was read.
    pub waiting: Waiting,
    /// The digits typed.
    pub pin: String,
}

/// The keypads of a building.
#[derive(Debug, Default)]
pub struct PinPads {
    waiting: BTreeMap<ReaderId, Waiting>,
}

impl PinPads {
    /// Wait at `reader` for the PIN of `card` (replacing an earlier wait).
    pub fn start(
        &mut self,
        now: Instant,
        door: DoorId,
        reader: ReaderId,
        direction: Direction,
        card: RawCard,
    ) {
        let waiting = Waiting {
            door,
            reader: reader.clone(),
            direction,
            card,
            digits: String::new(),
            deadline: now + PIN_TIMEOUT,
        };
        self.waiting.insert(reader, waiting);
    }

    /// A new card at `reader` ends its wait without a decision.
    pub fn cancel(&mut self, reader: &ReaderId) -> Option<Waiting> {
        self.waiting.remove(reader)
    }

    /// Whether `reader` waits for a PIN.
    pub fn is_waiting(&self, reader: &ReaderId) -> bool {
        self.waiting.contains_key(reader)
    }

    /// Keys typed at `reader`: the entry when it is complete. Keys at a
    /// reader that waits for nothing are ignored.
    pub fn keys(&mut self, now: Instant, reader: &ReaderId, keys: &[u8]) -> Option<Entered> {
        let w = self.waiting.get_mut(reader)?;
        for &k in keys {
            // Only a key taken renews the wait: a PD sending empty or odd
            // reports cannot hold a card forever.
            match k {
                b'0'..=b'9' => w.digits.push(char::from(k)),
                CLEAR => w.digits.clear(),
                ENTER => return self.finish(reader),
                _ => continue,
            }
            w.deadline = now + PIN_TIMEOUT;
            if w.digits.len() >= MAX_DIGITS {
                return self.finish(reader);
            }
        }
        None
    }

    fn finish(&mut self, reader: &ReaderId) -> Option<Entered> {
        let mut waiting = self.waiting.remove(reader)?;
        let pin = std::mem::take(&mut waiting.digits);
        Some(Entered { waiting, pin })
    }

    /// The entries whose deadline passed (their cards are denied).
    pub fn expire(&mut self, now: Instant) -> Vec<Waiting> {
        let gone: Vec<ReaderId> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(r, _)| r.clone())
            .collect();
        gone.iter().filter_map(|r| self.waiting.remove(r)).collect()
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.values().map(|w| w.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> Instant {
        thread_local!(static BASE: Instant = crate::test_clock::epoch());
        BASE.with(|b| *b + Duration::from_secs(secs))
    }

    fn card() -> RawCard {
        RawCard {
            reader: 0,
            format: 0,
            bits: 26,
            data: vec![0x95, 0x01, 0xf4, 0x80],
        }
    }

    fn pads() -> PinPads {
        let mut p = PinPads::default();
        p.start(t(0), "lab".into(), "r".into(), Direction::In, card());
        p
    }

    #[test]
    fn digits_then_enter_complete_the_entry() {
        let mut p = pads();
        assert_eq!(p.keys(t(1), &"r".into(), b"12"), None);
        let e = p.keys(t(2), &"r".into(), b"34\x0d").unwrap();
        assert_eq!(e.pin, "1234");
        assert_eq!(e.waiting.door, "lab");
        assert!(!p.is_waiting(&"r".into()));
    }

    #[test]
    fn star_clears_and_other_readers_keys_are_ignored() {
        let mut p = pads();
        assert_eq!(p.keys(t(1), &"other".into(), b"99\x0d"), None);
        p.keys(t(1), &"r".into(), b"99\x7f");
        assert_eq!(p.keys(t(1), &"r".into(), b"5\x0d").unwrap().pin, "5");
    }

    #[test]
    fn too_many_digits_end_the_entry() {
        let mut p = pads();
        let e = p.keys(t(1), &"r".into(), &[b'1'; 20]).unwrap();
        assert_eq!(e.pin.len(), MAX_DIGITS);
    }

    #[test]
    fn each_key_renews_the_deadline_and_silence_expires_it() {
        let mut p = pads();
        assert_eq!(p.poll_timeout(), Some(t(10)));
        p.keys(t(8), &"r".into(), b"1");
        assert!(p.expire(t(10)).is_empty());
        assert_eq!(p.poll_timeout(), Some(t(18)));
        let gone = p.expire(t(18));
        assert_eq!(gone.len(), 1);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn reports_without_a_key_taken_do_not_hold_the_card() {
        let mut p = pads();
        assert_eq!(p.keys(t(5), &"r".into(), b""), None);
        assert_eq!(p.keys(t(6), &"r".into(), b"ab\x01"), None);
        assert_eq!(p.poll_timeout(), Some(t(10)));
    }
}
