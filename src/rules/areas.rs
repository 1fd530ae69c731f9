//! Areas as the rules see them: named, nested spaces with an anti-passback
//! policy each, a daily forgiveness and the credentials exempt from
//! anti-passback. Central owns them (they travel in the signed snapshot);
//! which door leads from which area into which is the gateway's wiring
//! (`area_in`/`area_out` in its config), and who is where is the
//! gateway's standing state (`site::areas`).
//!
//! Bounded: at most [`MAX_AREAS`] areas, [`MAX_DEPTH`] levels of nesting,
//! names of at most [`MAX_NAME`] bytes, [`MAX_EXEMPT`] exempt credentials,
//! a timed anti-passback of 1 to [`MAX_TIMED_MINUTES`] minutes; a snapshot
//! outside these is refused whole by [`super::Header::new`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::{CredentialKey, RulesError};

/// The most areas a snapshot names.
pub const MAX_AREAS: usize = 256;
/// The deepest nesting (building ⊃ wing ⊃ lab ⊃ … ): a longer parent chain
/// is refused, and so is a cycle.
pub const MAX_DEPTH: usize = 8;
/// The longest area name, bytes.
pub const MAX_NAME: usize = 64;
/// The most credentials exempt from anti-passback.
pub const MAX_EXEMPT: usize = 10_000;
/// The longest timed anti-passback, minutes (a day).
pub const MAX_TIMED_MINUTES: u32 = 24 * 60;

/// How an area holds a card to the way it went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AntiPassback {
    /// Locations are kept (the muster list), nothing is checked.
    #[default]
    None,
    /// A passage against the known location is granted and journaled as
    /// an `antipassback` violation.
    Soft,
    /// A passage against the known location is denied (`antipassback`).
    Hard,
    /// The same card cannot enter the area again within `timed_minutes`
    /// of entering it (hard for that long; no exit is needed).
    Timed,
}

impl AntiPassback {
    /// The contract name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Soft => "soft",
            Self::Hard => "hard",
            Self::Timed => "timed",
        }
    }
}

/// One area (`[areas.NAME]` in the rules file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Area {
    /// The area this one lies in (`None`: a top-level area, e.g. the
    /// building).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The anti-passback policy.
    #[serde(default)]
    pub antipassback: AntiPassback,
    /// For `timed`: how long a re-entry is refused, minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timed_minutes: Option<u32>,
}

/// `[antipassback]` in the rules: the forgiveness and the exemptions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AntiPassbackRules {
    /// Every day at this local time (`HH:MM`, the snapshot's time zone)
    /// every card's location is forgiven: the next passage anywhere is
    /// accepted and teaches the location again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgiveness: Option<DailyTime>,
    /// Credential keys never held to anti-passback (security staff); their
    /// locations are still kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt: Vec<String>,
}

impl AntiPassbackRules {
    /// Nothing set (left out of the snapshot's bytes).
    pub fn is_empty(&self) -> bool {
        self.forgiveness.is_none() && self.exempt.is_empty()
    }
}

/// A local time of day, `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyTime {
    /// Minutes after midnight, below 1440.
    pub minute: u16,
}

impl FromStr for DailyTime {
    type Err = RulesError;
    fn from_str(s: &str) -> Result<Self, RulesError> {
        let bad = || RulesError::Syntax(format!("time of day {s:?} is not HH:MM"));
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h >= 24 || m >= 60 {
            return Err(bad());
        }
        Ok(Self { minute: h * 60 + m })
    }
}

impl fmt::Display for DailyTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minute / 60, self.minute % 60)
    }
}

impl Serialize for DailyTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DailyTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The areas of a snapshot, checked: what the decision asks of them.
#[derive(Debug, Clone, Default)]
pub struct AreaBook {
    areas: BTreeMap<String, Area>,
    forgiveness: Option<DailyTime>,
    exempt: BTreeSet<CredentialKey>,
}

impl AreaBook {
    /// Check the areas and the anti-passback section (references, nesting,
    /// bounds, credential keys).
    pub fn new(
        areas: &BTreeMap<String, Area>,
        antipassback: &AntiPassbackRules,
    ) -> Result<Self, RulesError> {
        let bad = |m: String| Err(RulesError::Reference(m));
        if areas.len() > MAX_AREAS {
            return bad(format!("areas: {} areas, at most {MAX_AREAS}", areas.len()));
        }
        for (name, area) in areas {
            if name.is_empty() || name.len() > MAX_NAME {
                return bad(format!(
                    "areas: name {name:?} is empty or over {MAX_NAME} bytes"
                ));
            }
            if let Some(p) = &area.parent
                && !areas.contains_key(p)
            {
                return bad(format!("areas.{name}: unknown parent {p:?}"));
            }
            let mut depth = 1;
            let mut at = area.parent.as_deref();
            while let Some(p) = at {
                depth += 1;
                if depth > MAX_DEPTH || p == name {
                    return bad(format!(
                        "areas.{name}: nested deeper than {MAX_DEPTH} or in itself"
                    ));
                }
                at = areas.get(p).and_then(|a| a.parent.as_deref());
            }
            match (area.antipassback, area.timed_minutes) {
                (AntiPassback::Timed, Some(m)) if (1..=MAX_TIMED_MINUTES).contains(&m) => {}
                (AntiPassback::Timed, _) => {
                    return bad(format!(
                        "areas.{name}: timed anti-passback needs timed_minutes from 1 to \
                         {MAX_TIMED_MINUTES}"
                    ));
                }
                (_, Some(_)) => {
                    return bad(format!(
                        "areas.{name}: timed_minutes without antipassback = \"timed\""
                    ));
                }
                _ => {}
            }
        }
        if antipassback.exempt.len() > MAX_EXEMPT {
            return bad(format!(
                "antipassback.exempt: {} credentials, at most {MAX_EXEMPT}",
                antipassback.exempt.len()
            ));
        }
        let exempt = antipassback
            .exempt
            .iter()
            .map(|k| k.parse::<CredentialKey>())
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Self {
            areas: areas.clone(),
            forgiveness: antipassback.forgiveness,
            exempt,
        })
    }

    /// The area called `name`.
    pub fn area(&self, name: &str) -> Option<&Area> {
        self.areas.get(name)
    }

    /// Whether `key` is exempt from anti-passback.
    pub fn is_exempt(&self, key: &CredentialKey) -> bool {
        self.exempt.contains(key)
    }

    /// The latest forgiveness at or before `now` (in `tz`), if the rules
    /// set one.
    pub fn last_forgiveness(&self, tz: &TimeZone, now: Timestamp) -> Option<Timestamp> {
        let daily = self.forgiveness?;
        let local = tz.to_datetime(now);
        let time = jiff::civil::time(
            i8::try_from(daily.minute / 60).ok()?,
            i8::try_from(daily.minute % 60).ok()?,
            0,
            0,
        );
        let today = local.date().to_datetime(time);
        let at = |d: jiff::civil::DateTime| tz.to_ambiguous_timestamp(d).compatible().ok();
        match at(today)? {
            t if t <= now => Some(t),
            _ => at(local.date().yesterday().ok()?.to_datetime(time)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(parent: Option<&str>, ap: AntiPassback, minutes: Option<u32>) -> Area {
        Area {
            parent: parent.map(str::to_owned),
            antipassback: ap,
            timed_minutes: minutes,
        }
    }

    #[test]
    fn nesting_references_and_bounds_are_checked() {
        let mut areas = BTreeMap::new();
        areas.insert("building".into(), area(None, AntiPassback::Hard, None));
        areas.insert(
            "lab".into(),
            area(Some("building"), AntiPassback::Timed, Some(30)),
        );
        let none = AntiPassbackRules::default();
        assert!(AreaBook::new(&areas, &none).is_ok());
        let mut cycle = areas.clone();
        cycle.insert("a".into(), area(Some("b"), AntiPassback::None, None));
        cycle.insert("b".into(), area(Some("a"), AntiPassback::None, None));
        assert!(AreaBook::new(&cycle, &none).is_err());
        let mut orphan = areas.clone();
        orphan.insert("x".into(), area(Some("nowhere"), AntiPassback::None, None));
        assert!(AreaBook::new(&orphan, &none).is_err());
        let mut untimed = areas.clone();
        untimed.insert("t".into(), area(None, AntiPassback::Timed, None));
        assert!(AreaBook::new(&untimed, &none).is_err());
        let mut too_long = areas.clone();
        too_long.insert("t".into(), area(None, AntiPassback::Timed, Some(1441)));
        assert!(AreaBook::new(&too_long, &none).is_err());
        let bad_key = AntiPassbackRules {
            forgiveness: None,
            exempt: vec!["not a key".into()],
        };
        assert!(AreaBook::new(&areas, &bad_key).is_err());
        let mut deep = BTreeMap::new();
        deep.insert("l0".to_owned(), Area::default());
        for i in 1..=MAX_DEPTH {
            deep.insert(
                format!("l{i}"),
                area(Some(&format!("l{}", i - 1)), AntiPassback::None, None),
            );
        }
        assert!(AreaBook::new(&deep, &none).is_err());
    }

    #[test]
    fn the_last_forgiveness_is_today_s_once_past_else_yesterday_s() {
        let rules = AntiPassbackRules {
            forgiveness: Some("03:00".parse().unwrap()),
            exempt: vec!["h10301:42:9001".into()],
        };
        let book = AreaBook::new(&BTreeMap::new(), &rules).unwrap();
        let tz = TimeZone::get("Europe/Amsterdam").unwrap();
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        // 03:00 in Amsterdam in December is 02:00 UTC.
        assert_eq!(
            book.last_forgiveness(&tz, t("2026-12-01T10:00:00Z")),
            Some(t("2026-12-01T02:00:00Z"))
        );
        assert_eq!(
            book.last_forgiveness(&tz, t("2026-12-01T01:59:59Z")),
            Some(t("2026-11-30T02:00:00Z"))
        );
        assert!(book.is_exempt(&"h10301:42:9001".parse().unwrap()));
        assert!("24:00".parse::<DailyTime>().is_err());
    }

    /// The example rules' areas read as documented.
    #[test]
    fn the_example_rules_have_areas_and_a_forgiveness() {
        let text = include_str!("../../config/rules.example.toml");
        let t: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let s = crate::rules::source::parse_rules("rules.example.toml", text, 1, t, t).unwrap();
        let h = crate::rules::Header::new(s.without_credentials()).unwrap();
        assert_eq!(
            h.last_forgiveness(t),
            Some("2026-12-01T02:00:00Z".parse().unwrap())
        );
        let lab = h.areas().area("lab-wing").unwrap();
        assert_eq!(lab.parent.as_deref(), Some("building"));
        assert!(h.areas().is_exempt(&"h10301:42:1001".parse().unwrap()));
    }
}
