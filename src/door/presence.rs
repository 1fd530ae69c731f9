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
//! Choices: no anti-passback here (`site::areas` checks it against these
//! lines); an entry by someone already inside (their exit was missed)
//! moves their `since` to the new entry, and a departure of someone not on
//! the list is still recorded after hours, with `since: None`.
//!
//! Areas: each line says which area its person is in (`None`: the
//! building of a door without areas, as before areas existed) and the
//! last door they went through. One line per person: being in the clean
//! room means being in the lab wing and the building around it. Leaving
//! an inner area lands in the outer one (the passage's `outer`); leaving
//! the outermost takes the person off the list.
//!
//! Bounded: at most [`MAX_INSIDE`] people are on the list; an entry past
//! that drops the one who entered longest ago (their exit was missed, most
//! likely), counted in [`Presence::evicted`]. Every change to the list is
//! also kept as a [`PresenceChange`] until the owner takes it
//! ([`Presence::take_changes`]), so the owner can persist a passage as the
//! one line it changed instead of the whole list.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{CredentialId, Direction};
use crate::ids::{AreaId, DoorId};

/// The most people the list holds (a university building holds a few
/// thousand at most; 20 000 lines are about 1.4 MB).
pub const MAX_INSIDE: usize = 20_000;

/// One line of the list changed: who, and their line now (`None`: off
/// the list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceChange {
    /// Who.
    pub credential: CredentialId,
    /// Their line now, or `None` when they left the list.
    pub occupant: Option<Occupant>,
}

/// One person inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occupant {
    /// Display name, if the rules carry one.
    pub name: Option<String>,
    /// When they last entered (the area they are in now).
    pub since: Timestamp,
    /// The area they are in (`None`: the building, for doors without
    /// areas and lines written before areas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<AreaId>,
    /// The door they last went through, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub door: Option<DoorId>,
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
    /// The area entered or left (`None`: the building of a door without
    /// areas).
    pub area: Option<AreaId>,
    /// Where a departure lands: the outer area, or `None` for out of
    /// every area (off the list).
    pub outer: Option<AreaId>,
    /// The door, when known.
    pub door: Option<DoorId>,
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
        /// The area entered.
        area: Option<AreaId>,
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
        /// The area left.
        area: Option<AreaId>,
    },
}

/// The presence list of one building (or area). Serialised as its lines
/// only; equal when the lines are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "PresenceLines", into = "PresenceLines")]
pub struct Presence {
    inside: BTreeMap<CredentialId, Occupant>,
    /// The lines by entry time, to find the oldest at the cap.
    by_since: BTreeSet<(Timestamp, CredentialId)>,
    /// Changes not yet taken by the owner.
    changes: Vec<PresenceChange>,
    /// Lines dropped at the cap since start.
    evicted: u64,
}

/// What is kept of a [`Presence`]: the layout written since the first
/// release (`{"inside": {…}}`).
#[derive(Serialize, Deserialize)]
struct PresenceLines {
    inside: BTreeMap<CredentialId, Occupant>,
}

impl From<PresenceLines> for Presence {
    fn from(lines: PresenceLines) -> Self {
        let mut p = Self::default();
        for (credential, occupant) in lines.inside {
            p.set(credential, Some(occupant));
        }
        p.changes.clear();
        p
    }
}

impl From<Presence> for PresenceLines {
    fn from(p: Presence) -> Self {
        Self { inside: p.inside }
    }
}

impl PartialEq for Presence {
    fn eq(&self, other: &Self) -> bool {
        self.inside == other.inside
    }
}

impl Eq for Presence {}

impl Presence {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set one line (or take it off), keeping the index and the change.
    fn set(&mut self, credential: CredentialId, occupant: Option<Occupant>) -> Option<Occupant> {
        let was = self.inside.remove(&credential);
        if let Some(w) = &was {
            self.by_since.remove(&(w.since, credential.clone()));
        }
        if let Some(o) = &occupant {
            self.by_since.insert((o.since, credential.clone()));
            self.inside.insert(credential.clone(), o.clone());
        }
        if was.is_some() || occupant.is_some() {
            self.changes.push(PresenceChange {
                credential,
                occupant,
            });
        }
        was
    }

    /// Make room for one more line at the cap: drop the oldest entry.
    fn make_room(&mut self) {
        while self.inside.len() >= MAX_INSIDE {
            let Some((_, oldest)) = self.by_since.first().cloned() else {
                return;
            };
            self.set(oldest, None);
            self.evicted += 1;
        }
    }

    /// The changes since they were last taken, in order.
    pub fn take_changes(&mut self) -> Vec<PresenceChange> {
        std::mem::take(&mut self.changes)
    }

    /// Apply changes written earlier (restoring from a persisted list and
    /// the changes after it). Not themselves recorded as changes.
    pub fn apply(&mut self, changes: Vec<PresenceChange>) {
        for c in changes {
            self.set(c.credential, c.occupant);
        }
        self.changes.clear();
    }

    /// Lines dropped at the cap since start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Record a passage; returns the event to journal when it is outside
    /// office hours.
    pub fn record(&mut self, passage: Passage) -> Option<PresenceEvent> {
        let office_hours = passage.office_hours;
        let event = self.pass(passage);
        (!office_hours).then_some(event)
    }

    /// Record a passage and return its event, in office hours or not (a
    /// door with areas journals every passage: the muster list of
    /// central is made of them).
    pub fn pass(&mut self, passage: Passage) -> PresenceEvent {
        let Passage {
            credential,
            name,
            direction,
            at,
            office_hours: _,
            area,
            outer,
            door,
        } = passage;
        let known = self.inside.get(&credential).and_then(|o| o.name.clone());
        let lands = match direction {
            Direction::In => Some(area.clone()),
            Direction::Out => outer.map(Some),
        };
        let was = match lands {
            Some(lands) => {
                if !self.inside.contains_key(&credential) {
                    self.make_room();
                }
                self.set(
                    credential.clone(),
                    Some(Occupant {
                        name: name.clone().or(known),
                        since: at,
                        area: lands,
                        door,
                    }),
                )
            }
            None => self.set(credential.clone(), None),
        };
        match direction {
            Direction::In => PresenceEvent::Entered {
                name: name.or_else(|| was.and_then(|o| o.name)),
                credential,
                at,
                area,
            },
            Direction::Out => PresenceEvent::Left {
                since: was.as_ref().map(|o| o.since),
                name: name.or_else(|| was.and_then(|o| o.name)),
                credential,
                at,
                area,
            },
        }
    }

    /// Who is inside, ordered by credential.
    pub fn inside(&self) -> impl Iterator<Item = (&CredentialId, &Occupant)> + '_ {
        self.inside.iter()
    }

    /// Who is inside from `credential` on (inclusive), ordered by
    /// credential: a sweep over a long list in steps.
    pub fn inside_from<'a>(
        &'a self,
        credential: &CredentialId,
    ) -> impl Iterator<Item = (&'a CredentialId, &'a Occupant)> + 'a {
        self.inside.range(credential.clone()..)
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
        self.set(credential.clone(), None)
    }

    /// Empty the list by hand (e.g. after a check of the building).
    pub fn clear(&mut self) {
        let all: Vec<CredentialId> = self.inside.keys().cloned().collect();
        for c in all {
            self.set(c, None);
        }
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
            area: None,
            outer: None,
            door: None,
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
                at: at("2026-11-23T19:00:00Z"),
                area: None,
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
                since: Some(at("2026-11-23T19:00:00Z")),
                area: None,
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

    #[test]
    fn changes_replayed_on_the_persisted_list_give_the_list() {
        let mut p = Presence::new();
        p.record(passage("a", Direction::In, "2026-11-23T07:00:00Z", false));
        let persisted: Presence = serde_cbor::from_slice(&serde_cbor::to_vec(&p).unwrap()).unwrap();
        p.take_changes();
        p.record(passage("b", Direction::In, "2026-11-23T07:05:00Z", false));
        p.record(passage("a", Direction::Out, "2026-11-23T07:10:00Z", false));
        p.record(passage("a", Direction::Out, "2026-11-23T07:11:00Z", false));
        p.record(passage("c", Direction::In, "2026-11-23T07:12:00Z", false));
        let changes = p.take_changes();
        assert_eq!(
            changes.len(),
            3,
            "a departure of someone not inside changes nothing"
        );
        let mut restored = persisted;
        restored.apply(changes);
        assert_eq!(restored, p);
        assert!(restored.take_changes().is_empty());
    }

    #[test]
    fn the_list_is_bounded_and_drops_the_oldest_entry() {
        let mut p = Presence::new();
        let t0: Timestamp = "2026-11-23T07:00:00Z".parse().unwrap();
        for i in 0..(MAX_INSIDE + 10) {
            p.record(Passage {
                credential: format!("card-{i}").as_str().into(),
                name: None,
                direction: Direction::In,
                at: t0 + jiff::SignedDuration::from_secs(i as i64),
                office_hours: true,
                area: None,
                outer: None,
                door: None,
            });
            // One passage, one or two lines: never the list.
            assert!(p.take_changes().len() <= 2);
        }
        assert_eq!((p.count(), p.evicted()), (MAX_INSIDE, 10));
        assert!(p.get(&"card-9".into()).is_none());
        assert!(p.get(&"card-10".into()).is_some());
        // A re-entry moves someone to the back of the queue.
        p.record(passage(
            "card-10",
            Direction::In,
            "2026-11-24T07:00:00Z",
            true,
        ));
        p.record(passage("new", Direction::In, "2026-11-24T07:01:00Z", true));
        assert!(p.get(&"card-10".into()).is_some());
        assert!(p.get(&"card-11".into()).is_none());
    }

    #[test]
    fn leaving_an_inner_area_lands_in_the_outer_one() {
        let mut p = Presence::new();
        let lab = |direction, when, outer: Option<&str>| Passage {
            area: Some("lab-wing".into()),
            outer: outer.map(AreaId::from),
            door: Some("lab-door".into()),
            ..passage("a", direction, when, true)
        };
        p.record(Passage {
            area: Some("building".into()),
            door: Some("main".into()),
            ..passage("a", Direction::In, "2026-11-23T08:00:00Z", true)
        });
        p.record(lab(Direction::In, "2026-11-23T08:05:00Z", Some("building")));
        let line = p.get(&"a".into()).unwrap();
        assert_eq!(line.area.as_deref(), Some("lab-wing"));
        assert_eq!(line.door.as_deref(), Some("lab-door"));
        let e = p.pass(lab(
            Direction::Out,
            "2026-11-23T09:00:00Z",
            Some("building"),
        ));
        assert!(matches!(
            e,
            PresenceEvent::Left { ref area, since: Some(_), .. } if area.as_deref() == Some("lab-wing")
        ));
        assert_eq!(
            p.get(&"a".into()).and_then(|o| o.area.as_deref()),
            Some("building")
        );
        // A line written before areas reads as the building.
        let old: Occupant = serde_cbor::from_slice(
            &serde_cbor::to_vec(&OldOccupant {
                name: None,
                since: at("2026-11-23T08:00:00Z"),
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!((old.area, old.door), (None, None));
    }

    /// A line as written before areas.
    #[derive(Serialize)]
    struct OldOccupant {
        name: Option<String>,
        since: Timestamp,
    }
}
