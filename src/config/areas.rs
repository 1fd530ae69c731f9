//! The areas and interlocks of the gateway config: each door's
//! `area_in`/`area_out` (which area its passage enters and leaves; the
//! areas' anti-passback rules come from central in the signed rules) and
//! the `[[interlock]]` groups (airlocks).

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::site::{DoorEntry, DoorKindSetting, SiteError};
use crate::ids::DoorId;
use crate::rules::areas::MAX_NAME;
use crate::site::areas::DoorAreas;
use crate::site::interlock::{Interlock, MAX_DOORS, MAX_WAIT};

/// One interlock group (`[[interlock]]`): at most one of its doors is
/// released or open at a time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterlockEntry {
    /// Its name (status page, events).
    pub id: Spanned<String>,
    /// Its doors: 2 to 8 standard doors, each in one group at most.
    pub doors: Vec<String>,
    /// How long a grant or exit request waits for the other doors,
    /// seconds (1 to 60).
    #[serde(default = "default_wait")]
    pub wait_seconds: u64,
}

fn default_wait() -> u64 {
    10
}

fn err<T>(at: &Spanned<T>, key: &str, message: impl Into<String>) -> SiteError {
    SiteError {
        at: at.span().start,
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Check the doors' areas and the interlock groups against the doors.
pub fn check(doors: &[DoorEntry], interlocks: &[InterlockEntry]) -> Result<(), SiteError> {
    for d in doors {
        match (&d.area_in, &d.area_out) {
            (None, Some(out)) => {
                return Err(err(
                    out,
                    "door.area_out",
                    "needs `area_in` (the area the door leads into)",
                ));
            }
            (Some(inside), out) => {
                for a in std::iter::once(inside).chain(out) {
                    if a.get_ref().is_empty() || a.get_ref().len() > MAX_NAME {
                        return Err(err(
                            a,
                            "door.area_in",
                            format!("an area name is 1 to {MAX_NAME} bytes"),
                        ));
                    }
                }
                if out
                    .as_ref()
                    .is_some_and(|o| o.get_ref() == inside.get_ref())
                {
                    return Err(err(
                        inside,
                        "door.area_out",
                        "a door leads from one area into another",
                    ));
                }
            }
            (None, None) => {}
        }
    }
    // Once the building has areas, every door with readers says which it
    // leads into: a passage at a door without one would take the card out
    // of its area (and out of hard anti-passback and the muster list).
    if doors.iter().any(|d| d.area_in.is_some())
        && let Some(d) = doors
            .iter()
            .find(|d| d.area_in.is_none() && !d.readers.is_empty())
    {
        return Err(err(
            &d.id,
            "door.area_in",
            "every door with readers needs `area_in` once any door has areas",
        ));
    }
    let mut taken = HashSet::new();
    let mut names = HashSet::new();
    for g in interlocks {
        if !names.insert(g.id.get_ref().clone()) {
            return Err(err(&g.id, "interlock.id", "duplicate interlock name"));
        }
        if g.doors.len() < 2 || g.doors.len() > MAX_DOORS {
            return Err(err(
                &g.id,
                "interlock.doors",
                format!("2 to {MAX_DOORS} doors"),
            ));
        }
        if g.wait_seconds == 0 || g.wait_seconds > MAX_WAIT.as_secs() {
            return Err(err(
                &g.id,
                "interlock.wait_seconds",
                format!("must be 1..={}", MAX_WAIT.as_secs()),
            ));
        }
        for name in &g.doors {
            let Some(door) = doors.iter().find(|d| d.id.get_ref() == name) else {
                return Err(err(
                    &g.id,
                    "interlock.doors",
                    format!("no door named {name:?}"),
                ));
            };
            if door.kind != DoorKindSetting::Standard {
                return Err(err(
                    &g.id,
                    "interlock.doors",
                    format!("{name:?} is not a standard door"),
                ));
            }
            if !taken.insert(name.clone()) {
                return Err(err(
                    &g.id,
                    "interlock.doors",
                    format!("{name:?} is in two interlocks"),
                ));
            }
        }
    }
    Ok(())
}

/// The doors' areas as the building core wants them.
pub fn door_areas(doors: &[DoorEntry]) -> Vec<(DoorId, DoorAreas)> {
    doors
        .iter()
        .filter_map(|d| {
            let inside = d.area_in.as_ref()?;
            Some((
                DoorId::from(d.id.get_ref()),
                DoorAreas {
                    inside: inside.get_ref().into(),
                    outside: d.area_out.as_ref().map(|o| o.get_ref().into()),
                },
            ))
        })
        .collect()
}

/// The interlock groups as the core wants them.
pub fn interlocks(entries: &[InterlockEntry]) -> Vec<Interlock> {
    entries
        .iter()
        .map(|g| Interlock {
            id: g.id.get_ref().clone(),
            doors: g.doors.iter().map(DoorId::from).collect(),
            wait: Duration::from_secs(g.wait_seconds),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Part {
        door: Vec<DoorEntry>,
        #[serde(default)]
        interlock: Vec<InterlockEntry>,
    }

    fn checked(extra: &str) -> Result<(), String> {
        let text = format!(
            r#"
[[door]]
id = "a"
kind = "standard"
area_in = "lab"
area_out = "building"
[[door]]
id = "b"
kind = "standard"
[[door]]
id = "r"
kind = "revolving"
{extra}"#
        );
        let p: Part = toml::from_str(&text).map_err(|e| e.to_string())?;
        check(&p.door, &p.interlock).map_err(|e| format!("{}: {}", e.key, e.message))
    }

    #[test]
    fn areas_and_interlocks_are_checked_against_the_doors() {
        assert_eq!(checked(""), Ok(()));
        let ok = "[[interlock]]\nid = \"x\"\ndoors = [\"a\", \"b\"]";
        assert_eq!(checked(ok), Ok(()));
        for (bad, why) in [
            ("[[interlock]]\nid = \"x\"\ndoors = [\"a\"]", "2 to"),
            (
                "[[interlock]]\nid = \"x\"\ndoors = [\"a\", \"zz\"]",
                "no door",
            ),
            (
                "[[interlock]]\nid = \"x\"\ndoors = [\"a\", \"r\"]",
                "not a standard",
            ),
            (
                "[[interlock]]\nid = \"x\"\ndoors = [\"a\", \"b\"]\nwait_seconds = 61",
                "wait_seconds",
            ),
            (
                "[[interlock]]\nid = \"x\"\ndoors = [\"a\", \"b\"]\n[[interlock]]\nid = \"y\"\ndoors = [\"b\", \"a\"]",
                "two interlocks",
            ),
        ] {
            let e = checked(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    /// A door with readers but no area, beside doors with areas, is refused.
    #[test]
    fn every_door_with_readers_has_an_area_once_any_has() {
        let text = r#"
[[door]]
id = "a"
kind = "standard"
area_in = "lab"
[[door]]
id = "b"
kind = "standard"
readers = [{ pd = "p", direction = "in" }]
"#;
        let p: Part = toml::from_str(text).unwrap();
        let e = check(&p.door, &p.interlock).unwrap_err();
        assert_eq!(e.key, "door.area_in");
        assert!(
            e.message.contains("every door with readers"),
            "{}",
            e.message
        );
    }
}
