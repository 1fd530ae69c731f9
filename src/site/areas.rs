//! Areas at the gateway, pure: which area a door's passage leaves and
//! enters (the gateway config's `area_in`/`area_out`), whether a card at a
//! reader breaks its area's anti-passback, and the muster list.
//!
//! Where people are is the presence list (`door::Presence`): one line per
//! card, with the innermost area it is known to be in, since when and the
//! last door. Being in the clean room is being in the lab wing and the
//! building around it.
//!
//! The rule for a passage, documented in `docs/doors.md` ("Areas"):
//! - the area whose policy applies is the door's inner area (`area_in`),
//!   for entries and exits alike;
//! - a card's location **counts** only when it is known: on the list with
//!   an area, entered after the last forgiveness, and, under `timed`,
//!   within the area's minutes. A card never seen, forgiven, timed out,
//!   taken off the list at the cap, or on a line written before areas is
//!   *not known to be anywhere*: its passage is accepted and teaches the
//!   location (a card at a door of an area it is not known to be outside
//!   of is let through and the area it goes into is learnt);
//! - an entry breaks anti-passback when the card is known to be inside
//!   the area it enters (`already_inside`); an exit when it is known to be
//!   somewhere that is not inside the area it leaves (`not_inside`; a
//!   `timed` area does not check exits);
//! - exempt cards are never held to it; their locations are kept.

use jiff::{SignedDuration, Timestamp};

use super::decision::Rules;
use crate::door::{CredentialId, Direction, Occupant, Presence};
use crate::event::Breach;
use crate::ids::AreaId;
use crate::rules::CredentialKey;
use crate::rules::areas::{AntiPassback, MAX_DEPTH};

/// The areas on the two sides of a door: an `in` reader's passage goes
/// from `outside` into `inside`, an `out` reader's the other way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorAreas {
    /// The area the door leads into (`area_in`).
    pub inside: AreaId,
    /// The area it leads out to (`area_out`); `None`: out of every area.
    pub outside: Option<AreaId>,
}

/// A passage that breaks an area's anti-passback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The area.
    pub area: AreaId,
    /// How.
    pub breach: Breach,
    /// `hard` or `timed`: denied; `soft`: granted and journaled.
    pub enforced: bool,
}

/// Whether `area` is `outer` or lies inside it (at most [`MAX_DEPTH`]
/// steps up, as the rules were checked).
pub fn within(rules: &dyn Rules, area: &str, outer: &str) -> bool {
    let mut at = Some(area.to_owned());
    for _ in 0..=MAX_DEPTH {
        match at {
            Some(a) if a == outer => return true,
            Some(a) => at = rules.area(&a).and_then(|a| a.parent),
            None => return false,
        }
    }
    false
}

/// Whether a card presented at a reader of a door with `areas`, going
/// `direction`, breaks the anti-passback of the door's area; `line` is
/// the card's line on the presence list, `forgiven` the last forgiveness.
pub fn check(
    rules: &dyn Rules,
    areas: &DoorAreas,
    direction: Direction,
    key: &CredentialKey,
    line: Option<&Occupant>,
    at: Timestamp,
    forgiven: Option<Timestamp>,
) -> Option<Finding> {
    let area = &areas.inside;
    let rule = rules.area(area)?;
    if rule.antipassback == AntiPassback::None || rules.antipassback_exempt(key) {
        return None;
    }
    // A forgiveness later than now (written while the clock was ahead)
    // forgives nothing yet.
    let forgiven = forgiven.filter(|f| *f <= at);
    let line = line.filter(|l| forgiven.is_none_or(|f| l.since > f))?;
    let location = line.area.as_ref()?;
    let inside = within(rules, location, area);
    let breach = match (direction, rule.antipassback) {
        (Direction::In, AntiPassback::Timed) => {
            let minutes = i64::from(rule.timed_minutes.unwrap_or(0));
            // A line stamped ahead of now (a clock stepped back since) is
            // not fresh: the card is not held for the size of the step.
            let age = at.duration_since(line.since);
            let fresh = age >= SignedDuration::ZERO && age < SignedDuration::from_mins(minutes);
            (inside && fresh).then_some(Breach::AlreadyInside)?
        }
        (Direction::In, _) => inside.then_some(Breach::AlreadyInside)?,
        (Direction::Out, AntiPassback::Timed) => return None,
        (Direction::Out, _) => (!inside).then_some(Breach::NotInside)?,
    };
    Some(Finding {
        area: area.clone(),
        breach,
        enforced: rule.antipassback != AntiPassback::Soft,
    })
}

/// One line of the muster list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MusterLine {
    /// Credential key.
    pub credential: String,
    /// Display name, when known.
    pub name: Option<String>,
    /// The innermost area they are in (`None`: the building of a door
    /// without areas).
    pub area: Option<AreaId>,
    /// Since when (their entry into that area).
    pub since: Timestamp,
    /// The last door, when known.
    pub door: Option<String>,
}

impl MusterLine {
    fn of(credential: &CredentialId, o: &Occupant) -> Self {
        Self {
            credential: credential.0.clone(),
            name: o.name.clone(),
            area: o.area.clone(),
            since: o.since,
            door: o.door.as_ref().map(|d| d.to_string()),
        }
    }
}

/// Who is inside `area` (its inner areas included), or everyone on the
/// list when `area` is `None`; ordered by credential.
pub fn muster(presence: &Presence, rules: &dyn Rules, area: Option<&str>) -> Vec<MusterLine> {
    presence
        .inside()
        .filter(|(_, o)| match (area, &o.area) {
            (None, _) => true,
            (Some(want), Some(at)) => within(rules, at, want),
            (Some(_), None) => false,
        })
        .map(|(c, o)| MusterLine::of(c, o))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rules::areas::Area;
    use crate::site::decision::Verdict;

    /// A building (hard) around a lab wing (timed, 30 min) around a clean
    /// room (soft); card 9 is exempt; forgiveness at 03:00 UTC.
    pub(crate) struct Campus;

    impl Rules for Campus {
        fn decide(
            &self,
            _door: &crate::ids::DoorId,
            key: &CredentialKey,
            _pin: Option<&str>,
            _at: Timestamp,
        ) -> Verdict {
            Verdict::Grant {
                credential: key.clone(),
                extended: false,
                lockdown_exempt: false,
                name: None,
            }
        }

        fn area(&self, name: &str) -> Option<Area> {
            let (parent, antipassback, timed_minutes) = match name {
                "building" => (None, AntiPassback::Hard, None),
                "lab-wing" => (Some("building"), AntiPassback::Timed, Some(30)),
                "clean-room" => (Some("lab-wing"), AntiPassback::Soft, None),
                "garden" => (None, AntiPassback::None, None),
                _ => return None,
            };
            Some(Area {
                parent: parent.map(str::to_owned),
                antipassback,
                timed_minutes,
            })
        }

        fn antipassback_exempt(&self, key: &CredentialKey) -> bool {
            key.to_string() == "h10301:1:9"
        }
    }

    pub(crate) fn t(hm: &str) -> Timestamp {
        format!("2026-12-01T{hm}:00Z").parse().unwrap()
    }

    fn key(n: u64) -> CredentialKey {
        CredentialKey::H10301 {
            facility: 1,
            number: n,
        }
    }

    fn line(area: &str, since: &str) -> Occupant {
        Occupant {
            name: None,
            since: t(since),
            area: Some(area.into()),
            door: None,
        }
    }

    fn door(inside: &str, outside: Option<&str>) -> DoorAreas {
        DoorAreas {
            inside: inside.into(),
            outside: outside.map(AreaId::from),
        }
    }

    fn breach(
        d: &DoorAreas,
        dir: Direction,
        n: u64,
        l: Option<&Occupant>,
        at: &str,
        forgiven: Option<&str>,
    ) -> Option<(Breach, bool)> {
        check(&Campus, d, dir, &key(n), l, t(at), forgiven.map(t)).map(|f| (f.breach, f.enforced))
    }

    #[test]
    fn hard_refuses_a_second_entry_and_an_exit_without_an_entry() {
        let main = door("building", None);
        let inside = line("building", "08:00");
        let in_lab = line("clean-room", "08:30");
        use Direction::{In, Out};
        // Unknown: accepted (and learnt by the caller).
        assert_eq!(breach(&main, In, 1, None, "09:00", None), None);
        assert_eq!(breach(&main, Out, 1, None, "09:00", None), None);
        // Known inside (also deep inside): a second entry is refused.
        assert_eq!(
            breach(&main, In, 1, Some(&inside), "09:00", None),
            Some((Breach::AlreadyInside, true))
        );
        assert_eq!(
            breach(&main, In, 1, Some(&in_lab), "09:00", None),
            Some((Breach::AlreadyInside, true))
        );
        assert_eq!(breach(&main, Out, 1, Some(&in_lab), "09:00", None), None);
        // Known elsewhere (another top-level area): an exit is refused.
        let garden = line("garden", "08:00");
        assert_eq!(
            breach(&main, Out, 1, Some(&garden), "09:00", None),
            Some((Breach::NotInside, true))
        );
        // Forgiven at 08:45: the line before it does not count.
        assert_eq!(
            breach(&main, In, 1, Some(&inside), "09:00", Some("08:45")),
            None
        );
        // Exempt.
        assert_eq!(breach(&main, In, 9, Some(&inside), "09:00", None), None);
    }

    #[test]
    fn timed_refuses_a_reentry_for_its_minutes_and_checks_no_exit() {
        let lab = door("lab-wing", Some("building"));
        let entered = line("lab-wing", "09:00");
        use Direction::{In, Out};
        assert_eq!(
            breach(&lab, In, 1, Some(&entered), "09:29", None),
            Some((Breach::AlreadyInside, true))
        );
        assert_eq!(breach(&lab, In, 1, Some(&entered), "09:30", None), None);
        let outside = line("building", "09:10");
        assert_eq!(breach(&lab, Out, 1, Some(&outside), "09:15", None), None);
    }

    #[test]
    fn soft_grants_but_finds_it_and_none_only_keeps_locations() {
        let clean = door("clean-room", Some("lab-wing"));
        let there = line("clean-room", "10:00");
        assert_eq!(
            breach(&clean, Direction::In, 1, Some(&there), "10:05", None),
            Some((Breach::AlreadyInside, false))
        );
        let garden = door("garden", None);
        assert_eq!(
            breach(
                &garden,
                Direction::In,
                1,
                Some(&line("garden", "10:00")),
                "10:01",
                None
            ),
            None
        );
    }

    #[test]
    fn the_muster_of_an_area_includes_its_inner_areas() {
        let mut p = Presence::new();
        for (id, area) in [("a", "building"), ("b", "lab-wing"), ("c", "clean-room")] {
            p.record(crate::door::Passage {
                credential: id.into(),
                name: None,
                direction: Direction::In,
                at: t("08:00"),
                office_hours: true,
                area: Some(area.into()),
                outer: None,
                door: Some("d".into()),
            });
        }
        let who = |area: Option<&str>| -> Vec<String> {
            muster(&p, &Campus, area)
                .into_iter()
                .map(|l| l.credential)
                .collect()
        };
        assert_eq!(who(Some("building")), ["a", "b", "c"]);
        assert_eq!(who(Some("lab-wing")), ["b", "c"]);
        assert_eq!(who(Some("clean-room")), ["c"]);
        assert_eq!(who(Some("garden")), Vec::<String>::new());
        assert_eq!(who(None).len(), 3);
    }
}
