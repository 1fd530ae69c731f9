//! The one decision path, pure: a card read at a door becomes a
//! [`Verdict`] here and nowhere else. The door (through the core), the
//! admin "why was this card denied" box and `portier snapshot decide` all
//! call [`decide`], so they cannot disagree.
//!
//! In order: the card's bits are decoded once; the rules answer at both
//! edges of the interval "now" is known to lie in (a grant needs both);
//! then the checks the core adds from what it knows beyond the rules, the
//! [`Situation`] of the door: lockdown, anti-passback (`super::areas`
//! finds the breach) and the interlock (`super::interlock`), in that
//! order.

use jiff::Timestamp;
use jiff::civil::Date;

use crate::ids::DoorId;
use crate::rules::areas::Area;
use crate::rules::{Card, CredentialKey, Decision, DenyReason, Request, VerifiedSnapshot, wiegand};

/// The rules as the core sees them: lookups in the signed rules in force
/// at a given time. No state of their own, so asking twice (both edges of
/// the interval, or the "why" box beside the door) answers the same.
pub trait Rules: Send {
    /// What the rules say of credential `key` (with the PIN typed, if
    /// any) at `door` at `at`.
    fn decide(
        &self,
        door: &DoorId,
        key: &CredentialKey,
        pin: Option<&str>,
        at: Timestamp,
    ) -> Verdict;

    /// The scheduled mode name of `door` at `at`, if a schedule says one
    /// (the snapshot's text; the mode planner checks it fits the door).
    fn door_mode(&self, _door: &DoorId, _at: Timestamp) -> Option<String> {
        None
    }

    /// When the scheduled mode of `door` at `at` waits for the *first
    /// person in*: the local date it waits on. A grant at the door inside
    /// the window, that day, lets the mode start.
    fn first_person_in_day(&self, _door: &DoorId, _at: Timestamp) -> Option<Date> {
        None
    }

    /// Whether it is office hours at `at`; `None` without rules (then
    /// every passage is recorded, the safe side for people's safety).
    fn office_hours(&self, _at: Timestamp) -> Option<bool> {
        None
    }

    /// The holder's display name, for presence.
    fn display_name(&self, _key: &CredentialKey) -> Option<String> {
        None
    }

    /// Whether the rules know `key` (`None`: cannot tell, e.g. no rules
    /// yet): a card they no longer know leaves every area.
    fn knows(&self, _key: &CredentialKey) -> Option<bool> {
        None
    }

    /// The area called `name`, as the rules define it.
    fn area(&self, _name: &str) -> Option<Area> {
        None
    }

    /// Whether `key` is exempt from anti-passback.
    fn antipassback_exempt(&self, _key: &CredentialKey) -> bool {
        false
    }

    /// The latest anti-passback forgiveness at or before `at`.
    fn last_forgiveness(&self, _at: Timestamp) -> Option<Timestamp> {
        None
    }

    /// Whether `pin`, typed with credential `key`, is a duress PIN (the
    /// rules grant it as the holder's own; the core raises the alarm).
    fn duress(&self, _key: &CredentialKey, _pin: &str) -> bool {
        false
    }
}

/// The answer for one card read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let them in.
    Grant {
        /// Who.
        credential: CredentialKey,
        /// Extended strike time.
        extended: bool,
        /// Admitted in lockdown.
        lockdown_exempt: bool,
        /// The holder's name, when the rules carry one.
        name: Option<String>,
    },
    /// Keep them out.
    Deny {
        /// Who, when the card could be decoded.
        credential: Option<CredentialKey>,
        /// Why.
        reason: DenyReason,
    },
}

impl Verdict {
    /// The rules engine's decision for `key`, as a verdict.
    pub fn of_rules(key: &CredentialKey, decision: Decision) -> Self {
        match decision {
            Decision::Grant {
                credential,
                extended_unlock,
                lockdown_exempt,
                display_name,
                ..
            } => Self::Grant {
                credential,
                extended: extended_unlock,
                lockdown_exempt,
                name: display_name,
            },
            Decision::Deny(reason) => Self::Deny {
                credential: Some(key.clone()),
                reason,
            },
        }
    }

    /// The deny reason, `None` for a grant.
    pub fn deny_reason(&self) -> Option<DenyReason> {
        match self {
            Self::Grant { .. } => None,
            Self::Deny { reason, .. } => Some(*reason),
        }
    }
}

/// What the core knows of a door, beyond the rules, when a card is read.
/// Each field is one check [`decide`] adds after the rules granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Situation {
    /// The door is in lockdown: only lockdown-exempt credentials pass.
    pub lockdown: bool,
    /// This card at this reader breaks a `hard` or `timed` anti-passback
    /// (found by `super::areas`; a `soft` breach is only journaled).
    pub antipassback: bool,
    /// Another door of this door's interlock is open or released: a
    /// grant waits (the core's queue), the why box says `interlock`.
    pub interlock: bool,
}

/// The interval the true time lies in: one instant when the clock is
/// believed, both edges of what is proven when it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When {
    /// The earliest the time can be.
    pub earliest: Timestamp,
    /// The latest the time can be.
    pub latest: Timestamp,
}

impl When {
    /// A time known exactly.
    pub fn at(t: Timestamp) -> Self {
        Self {
            earliest: t,
            latest: t,
        }
    }
}

/// A card and the PIN typed with it, as presented at a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// The card.
    pub card: Card,
    /// The PIN typed, if any.
    pub pin: Option<String>,
}

impl From<Card> for Presented {
    fn from(card: Card) -> Self {
        Self { card, pin: None }
    }
}

/// Decode a card as a reader sends it (or take a key as given).
pub fn credential_of(card: &Card) -> Result<CredentialKey, DenyReason> {
    match card {
        Card::Key(k) => Ok(k.clone()),
        Card::Raw { bytes, bits } => {
            wiegand::decode(bytes, *bits).map_err(|_| DenyReason::BadFormat)
        }
    }
}

/// The decision for what was presented at `door`: the rules at both edges of `when`
/// (a card's expiry is judged at the later edge, its start of validity at
/// the earlier, a schedule at both), then the door's `situation`.
pub fn decide(
    rules: &dyn Rules,
    door: &DoorId,
    presented: &Presented,
    when: When,
    situation: Situation,
) -> Verdict {
    let pin = presented.pin.as_deref();
    let key = match credential_of(&presented.card) {
        Ok(k) => k,
        Err(reason) => {
            return Verdict::Deny {
                credential: None,
                reason,
            };
        }
    };
    let at_latest = rules.decide(door, &key, pin, when.latest);
    let verdict = if when.earliest == when.latest || at_latest.deny_reason().is_some() {
        at_latest
    } else {
        match rules.decide(door, &key, pin, when.earliest) {
            Verdict::Grant { .. } => at_latest,
            deny => deny,
        }
    };
    situation.check(verdict)
}

impl Situation {
    /// The core's checks on a grant of the rules, in order: lockdown,
    /// anti-passback, interlock.
    fn check(self, verdict: Verdict) -> Verdict {
        let deny = |credential, reason| Verdict::Deny {
            credential: Some(credential),
            reason,
        };
        match verdict {
            Verdict::Grant {
                credential,
                lockdown_exempt: false,
                ..
            } if self.lockdown => deny(credential, DenyReason::Lockdown),
            Verdict::Grant { credential, .. } if self.antipassback => {
                deny(credential, DenyReason::Antipassback)
            }
            Verdict::Grant { credential, .. } if self.interlock => {
                deny(credential, DenyReason::Interlock)
            }
            verdict => verdict,
        }
    }
}

/// A verified snapshot answers as the gateway's store does: `portier
/// snapshot decide` asks the same path as the door.
impl Rules for VerifiedSnapshot {
    fn decide(
        &self,
        door: &DoorId,
        key: &CredentialKey,
        pin: Option<&str>,
        at: Timestamp,
    ) -> Verdict {
        let request = Request::for_key(door, key, pin);
        Verdict::of_rules(key, crate::rules::decide(self, &request, at))
    }

    fn door_mode(&self, door: &DoorId, at: Timestamp) -> Option<String> {
        self.header().door_mode(door, at).map(str::to_owned)
    }

    fn knows(&self, key: &CredentialKey) -> Option<bool> {
        Some(self.credentials().contains_key(key))
    }

    fn area(&self, name: &str) -> Option<Area> {
        self.header().areas().area(name).cloned()
    }

    fn antipassback_exempt(&self, key: &CredentialKey) -> bool {
        self.header().areas().is_exempt(key)
    }

    fn last_forgiveness(&self, at: Timestamp) -> Option<Timestamp> {
        self.header().last_forgiveness(at)
    }

    fn duress(&self, key: &CredentialKey, pin: &str) -> bool {
        self.credentials()
            .get(key)
            .and_then(|c| c.pin.as_ref())
            .is_some_and(|own| self.header().is_duress(own, pin))
    }

    fn first_person_in_day(&self, door: &DoorId, at: Timestamp) -> Option<Date> {
        self.header().first_person_in_day(door, at)
    }
}

/// Whether what was presented signals duress: a PIN typed with a card,
/// which the rules call a duress PIN for that card.
pub fn is_duress(rules: &dyn Rules, presented: &Presented) -> bool {
    match (&presented.pin, credential_of(&presented.card)) {
        (Some(pin), Ok(key)) => rules.duress(&key, pin),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grants card 1001 between 08:00 and 16:00 UTC on 2026-12-01; 1002 is
    /// lockdown-exempt; everything else is unknown.
    struct Day;

    fn t(s: &str) -> Timestamp {
        format!("2026-12-01T{s}Z").parse().unwrap()
    }

    impl Rules for Day {
        fn decide(
            &self,
            _door: &DoorId,
            key: &CredentialKey,
            _pin: Option<&str>,
            at: Timestamp,
        ) -> Verdict {
            let number = match key {
                CredentialKey::H10301 { number, .. } => *number,
                _ => 0,
            };
            if !(1001..=1002).contains(&number) {
                return Verdict::Deny {
                    credential: Some(key.clone()),
                    reason: DenyReason::UnknownCredential,
                };
            }
            if at < t("08:00:00") || at > t("16:00:00") {
                return Verdict::Deny {
                    credential: Some(key.clone()),
                    reason: DenyReason::OutsideSchedule,
                };
            }
            Verdict::Grant {
                credential: key.clone(),
                extended: false,
                lockdown_exempt: number == 1002,
                name: None,
            }
        }
    }

    fn card(number: u64) -> Presented {
        Card::Key(CredentialKey::H10301 {
            facility: 42,
            number,
        })
        .into()
    }

    fn door() -> DoorId {
        "main".into()
    }

    #[test]
    fn a_grant_needs_both_edges() {
        let inside = When::at(t("12:00:00"));
        let straddling = When {
            earliest: t("07:59:00"),
            latest: t("08:01:00"),
        };
        let calm = Situation::default();
        assert!(
            decide(&Day, &door(), &card(1001), inside, calm)
                .deny_reason()
                .is_none()
        );
        assert_eq!(
            decide(&Day, &door(), &card(1001), straddling, calm).deny_reason(),
            Some(DenyReason::OutsideSchedule)
        );
    }

    #[test]
    fn lockdown_is_checked_after_the_rules_and_spares_the_exempt() {
        let now = When::at(t("12:00:00"));
        let lockdown = Situation {
            lockdown: true,
            ..Situation::default()
        };
        assert_eq!(
            decide(&Day, &door(), &card(1001), now, lockdown).deny_reason(),
            Some(DenyReason::Lockdown)
        );
        // Then anti-passback, then the interlock; a rules deny first.
        let both = Situation {
            antipassback: true,
            interlock: true,
            ..Situation::default()
        };
        assert_eq!(
            decide(&Day, &door(), &card(1002), now, both).deny_reason(),
            Some(DenyReason::Antipassback)
        );
        let airlock = Situation {
            interlock: true,
            ..Situation::default()
        };
        assert_eq!(
            decide(&Day, &door(), &card(1002), now, airlock).deny_reason(),
            Some(DenyReason::Interlock)
        );
        assert_eq!(
            decide(&Day, &door(), &card(7), now, both).deny_reason(),
            Some(DenyReason::UnknownCredential)
        );
        assert!(
            decide(&Day, &door(), &card(1002), now, lockdown)
                .deny_reason()
                .is_none()
        );
        // The rules' own reason comes first: an unknown card in lockdown
        // is unknown, as the door has always said.
        assert_eq!(
            decide(&Day, &door(), &card(7), now, lockdown).deny_reason(),
            Some(DenyReason::UnknownCredential)
        );
    }

    #[test]
    fn undecodable_bits_are_bad_format_without_a_credential() {
        // 26 bits in one byte: the reader's count and its data disagree.
        let raw = Card::Raw {
            bytes: vec![0xff],
            bits: 26,
        }
        .into();
        assert_eq!(
            decide(
                &Day,
                &door(),
                &raw,
                When::at(t("12:00:00")),
                Situation::default()
            ),
            Verdict::Deny {
                credential: None,
                reason: DenyReason::BadFormat
            }
        );
    }

    /// The snapshot as `portier snapshot decide` reads it: the rules'
    /// own order, then lockdown, and the PIN passed through.
    #[test]
    fn a_verified_snapshot_answers_through_the_same_path() {
        use crate::rules::envelope::sign_snapshot;
        use crate::rules::tests::{card as key_of, cred, key, snapshot, trusted, ts};
        use crate::rules::{PinHash, verify_snapshot};
        let mut s = snapshot(1);
        let mut pinned = cred(6, &["lab"]);
        pinned.pin = Some(PinHash::new("s6", "1234"));
        let mut exempt = cred(8, &["lab"]);
        exempt.lockdown_exempt = true;
        s.credentials.extend([pinned, exempt]);
        let v = verify_snapshot(
            &sign_snapshot(&key(), &s).unwrap(),
            &trusted(),
            "gw1",
            "b1",
            ts("2026-11-01T01:00:00Z"),
            None,
        )
        .unwrap();
        let door = DoorId::from("lab");
        let mon = When::at(ts("2026-11-02T09:00:00Z"));
        let lockdown = Situation {
            lockdown: true,
            ..Situation::default()
        };
        let presented = |n: u64| Presented::from(Card::Key(key_of(n)));
        let with_pin = |n: u64, pin: &str| Presented {
            card: Card::Key(key_of(n)),
            pin: Some(pin.into()),
        };
        let reason = |p: &Presented, s: Situation| decide(&v, &door, p, mon, s).deny_reason();
        assert_eq!(
            reason(&presented(6), Situation::default()),
            Some(DenyReason::PinRequired)
        );
        assert_eq!(
            reason(&with_pin(6, "0000"), Situation::default()),
            Some(DenyReason::WrongPin)
        );
        assert_eq!(reason(&with_pin(6, "1234"), Situation::default()), None);
        assert_eq!(
            reason(&with_pin(6, "1234"), lockdown),
            Some(DenyReason::Lockdown)
        );
        assert_eq!(reason(&presented(8), lockdown), None);
    }
}
