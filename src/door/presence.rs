//! Who is inside the building, from passages at readers with a direction,
//! sans-IO.
//!
//! Owns: the list of credentials inside (with an optional display name and
//! the time of their last entry) and the after-hours presence events.
//! Guarantees: every passage updates the list, in or out of office hours;
//! outside office hours (the owner says which, per passage) every entry and
//! every departure also yields a [`PresenceEvent`] to record. The list is a
//! plain serde struct the daemon persists as it likes; times are wall-clock
//! [`jiff::Timestamp`]s handed in by the owner (nothing here reads a clock).
//!
//! Choices: no anti-passback here; an entry by someone already inside
//! (their exit was missed) moves their `since` to the new entry, and a
//! departure of someone not on the list is still recorded after hours,
//! with `since: None`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{CredentialId, Direction};

/// One person inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occupant {
    /// Display name, if the rules carry one.
    pub name: Option<String>,
    /// When they last entered.
    pub since: Timestamp,
}

/// A passage through an entry/exit reader, as the owner reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// Who.
    pub credential: CredentialId,
    /// Display name, if known.
    pub name: Option<String>,
    /// Into or out of the building.
    pub direction: Direction,
    /// When (wall clock, from the owner).
    pub at: Timestamp,
    /// Whether it is office hours now (the owner's schedule decides).
    pub office_hours: bool,
}

/// An after-hours presence event, to be journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresenceEvent {
    /// Someone entered outside office hours.
    Entered {
        /// Who.
        credential: CredentialId,
        /// Display name, if known.
        name: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// Someone left outside office hours.
    Left {
        /// Who.
        credential: CredentialId,
        /// Display name, if known.
        name: Option<String>,
        /// When.
        at: Timestamp,
        /// When they had entered, if they were on the list.
        since: Option<Timestamp>,
    },
}

/// The presence list of one building (or area).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    inside: BTreeMap<CredentialId, Occupant>,
}

impl Presence {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a passage; returns the event to journal when it is outside
    /// office hours.
    pub fn record(&mut self, passage: Passage) -> Option<PresenceEvent> {
        let Passage {
            credential,
            name,
            direction,
            at,
            office_hours,
        } = passage;
        let event = match direction {
            Direction::In => {
                let entry = self.inside.entry(credential.clone()).or_insert(Occupant {
                    name: None,
                    since: at,
                });
                entry.since = at;
                if name.is_some() {
                    entry.name.clone_from(&name);
                }
                PresenceEvent::Entered {
                    name: entry.name.clone(),
                    credential,
                    at,
                }
            }
            Direction::Out => {
                let was = self.inside.remove(&credential);
                let since = was.as_ref().map(|o| o.since);
                let name = name.or_else(|| was.and_then(|o| o.name));
                PresenceEvent::Left {
                    credential,
                    name,
                    at,
                    since,
                }
            }
        };
        (!office_hours).then_some(event)
    }

    /// Who is inside, ordered by credential.
    pub fn inside(&self) -> impl Iterator<Item = (&CredentialId, &Occupant)> + '_ {
        self.inside.iter()
    }

    /// How many are inside.
    pub fn count(&self) -> usize {
        self.inside.len()
    }

    /// This credential's entry, if inside.
    pub fn get(&self, credential: &CredentialId) -> Option<&Occupant> {
        self.inside.get(credential)
    }

    /// Remove one entry by hand (security checked the building).
    pub fn remove(&mut self, credential: &CredentialId) -> Option<Occupant> {
        self.inside.remove(credential)
    }

    /// Empty the list by hand (e.g. after a check of the building).
    pub fn clear(&mut self) {
        self.inside.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn passage(id: &str, direction: Direction, when: &str, office_hours: bool) -> Passage {
        Passage {
            credential: id.into(),
            name: None,
            direction,
            at: at(when),
            office_hours,
        }
    }

    #[test]
    fn office_hours_update_the_list_without_events() {
        let mut p = Presence::new();
        let e = p.record(Passage {
            name: Some("Ada".into()),
            ..passage("a", Direction::In, "2026-11-23T09:00:00Z", true)
        });
        assert_eq!(e, None);
        assert_eq!(p.count(), 1);
        assert_eq!(
            p.get(&"a".into()).and_then(|o| o.name.as_deref()),
            Some("Ada")
        );
        assert_eq!(
            p.record(passage("a", Direction::Out, "2026-11-23T12:00:00Z", true)),
            None
        );
        assert_eq!(p.count(), 0);
    }

    #[test]
    fn after_hours_entries_and_departures_are_events() {
        let mut p = Presence::new();
        let e = p.record(Passage {
            name: Some("Ada".into()),
            ..passage("a", Direction::In, "2026-11-23T19:00:00Z", false)
        });
        assert_eq!(
            e,
            Some(PresenceEvent::Entered {
                credential: "a".into(),
                name: Some("Ada".into()),
                at: at("2026-11-23T19:00:00Z")
            })
        );
        p.record(passage("b", Direction::In, "2026-11-23T20:00:00Z", false));
        let who: Vec<_> = p.inside().map(|(id, _)| id.0.as_str()).collect();
        assert_eq!(who, ["a", "b"]);
        // The name is kept from the entry.
        let e = p.record(passage("a", Direction::Out, "2026-11-23T22:00:00Z", false));
        assert_eq!(
            e,
            Some(PresenceEvent::Left {
                credential: "a".into(),
                name: Some("Ada".into()),
                at: at("2026-11-23T22:00:00Z"),
                since: Some(at("2026-11-23T19:00:00Z"))
            })
        );
        // A departure of someone not on the list is still recorded.
        let e = p.record(passage("z", Direction::Out, "2026-11-23T23:00:00Z", false));
        assert!(matches!(e, Some(PresenceEvent::Left { since: None, .. })));
        assert_eq!(p.count(), 1);
    }

    #[test]
    fn reentry_moves_since_and_list_round_trips() {
        let mut p = Presence::new();
        p.record(passage("a", Direction::In, "2026-11-23T07:00:00Z", false));
        p.record(passage("a", Direction::In, "2026-11-23T08:30:00Z", true));
        assert_eq!(p.count(), 1);
        assert_eq!(
            p.get(&"a".into()).map(|o| o.since),
            Some(at("2026-11-23T08:30:00Z"))
        );
        let json = serde_json::to_string(&p).unwrap();
        let back: Presence = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        let cbor = serde_cbor::to_vec(&p).unwrap();
        assert_eq!(serde_cbor::from_slice::<Presence>(&cbor).unwrap(), p);
        assert!(p.remove(&"a".into()).is_some());
        p.record(passage("b", Direction::In, "2026-11-23T21:00:00Z", false));
        p.clear();
        assert_eq!(p.count(), 0);
    }
}
