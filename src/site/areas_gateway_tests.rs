//! The gateway core with areas and an airlock, in virtual time: each
//! anti-passback rule, forgiveness, exemption, durable locations, a card
//! the rules dropped, and the interlock's waits.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

use super::areas::DoorAreas;
use super::building::{Building, DoorKind, DoorWiring, InputRef, OutputRef, PdRef, ReaderRef};
use super::decision::{Rules, Verdict};
use super::gateway::{Boot, Commit, Gateway, Input, Now, Output, StandingChange};
use super::interlock::Interlock;
use super::outputs::StrikeWiring;
use super::standing::StandingState;
use crate::door::{Direction, StandardConfig};
use crate::event::{Breach, EventKind};
use crate::ids::DoorId;
use crate::osdp::BusEvent;
use crate::osdp::message::{Command, OutputAction, RawCard};
use crate::rules::areas::{AntiPassback, Area};
use crate::rules::{CredentialKey, DenyReason};

/// Rules: cards 1 to 99 are granted everywhere (card 50 is exempt from
/// anti-passback, card 60 is no longer known once `dropped` is set); the
/// building's anti-passback is `policy`, the lab wing inside it is soft.
/// Forgiveness daily at `forgive` (UTC minutes), when set.
struct Campus {
    policy: AntiPassback,
    forgive: Option<i64>,
    dropped: bool,
}

fn campus(policy: AntiPassback) -> Campus {
    Campus {
        policy,
        forgive: None,
        dropped: false,
    }
}

fn number(key: &CredentialKey) -> u64 {
    match key {
        CredentialKey::Raw { data } => {
            u64::from_str_radix(data.split('/').next().unwrap_or("0"), 16).unwrap_or(0)
        }
        _ => 0,
    }
}

impl Rules for Campus {
    fn decide(
        &self,
        _door: &DoorId,
        key: &CredentialKey,
        _pin: Option<&str>,
        _at: Timestamp,
    ) -> Verdict {
        if (1..100).contains(&number(key)) {
            Verdict::Grant {
                credential: key.clone(),
                extended: false,
                lockdown_exempt: false,
                name: None,
            }
        } else {
            Verdict::Deny {
                credential: Some(key.clone()),
                reason: DenyReason::UnknownCredential,
            }
        }
    }

    fn office_hours(&self, _at: Timestamp) -> Option<bool> {
        Some(true)
    }

    fn knows(&self, key: &CredentialKey) -> Option<bool> {
        Some(!(self.dropped && (number(key) == 0x60 || number(key) >= 0x1000)))
    }

    fn area(&self, name: &str) -> Option<Area> {
        match name {
            "building" => Some(Area {
                parent: None,
                antipassback: self.policy,
                timed_minutes: (self.policy == AntiPassback::Timed).then_some(30),
            }),
            "lab-wing" => Some(Area {
                parent: Some("building".into()),
                antipassback: AntiPassback::Soft,
                timed_minutes: None,
            }),
            _ => None,
        }
    }

    fn antipassback_exempt(&self, key: &CredentialKey) -> bool {
        number(key) == 0x50
    }

    fn last_forgiveness(&self, at: Timestamp) -> Option<Timestamp> {
        let minute = self.forgive?;
        let day = at.as_second().div_euclid(86_400) * 86_400;
        let today = Timestamp::from_second(day + minute * 60).ok()?;
        Some(if today <= at {
            today
        } else {
            today - SignedDuration::from_hours(24)
        })
    }
}

fn pd(address: u8) -> PdRef {
    PdRef {
        bus: "bus0".into(),
        address,
    }
}

/// A standard door: in-reader, strike, contact (input 0) and exit button
/// (input 1) on PD `a`; out-reader on PD `a + 1`.
fn door(id: &str, a: u8) -> DoorWiring {
    let reader = |pd_: u8, direction| ReaderRef {
        id: format!("{id}-{direction}").as_str().into(),
        pd: pd(pd_),
        reader: 0,
        direction,
    };
    DoorWiring {
        id: id.into(),
        kind: DoorKind::Standard(StandardConfig::default()),
        readers: vec![reader(a, Direction::In), reader(a + 1, Direction::Out)],
        lock: Some(OutputRef {
            pd: pd(a),
            wiring: StrikeWiring {
                output: 0,
                energize_to_unlock: true,
            },
        }),
        release_out: None,
        contact: Some(InputRef {
            pd: pd(a),
            input: 0,
            active_high: true,
        }),
        exit_button: Some(InputRef {
            pd: pd(a),
            input: 1,
            active_high: true,
        }),
        rotation_in: None,
        rotation_out: None,
    }
}

/// The main entrance (PDs 1, 2) into the building, the lab door (PDs 3,
/// 4) from the building into the lab wing, and an airlock of two doors
/// (PDs 5, 6 and 7, 8), waiting 10 s.
fn building() -> Building {
    Building::new(vec![
        door("main", 1),
        door("lab", 3),
        door("air-out", 5),
        door("air-in", 7),
    ])
    .with_areas([
        (
            DoorId::from("main"),
            DoorAreas {
                inside: "building".into(),
                outside: None,
            },
        ),
        (
            DoorId::from("lab"),
            DoorAreas {
                inside: "lab-wing".into(),
                outside: Some("building".into()),
            },
        ),
    ])
    .with_interlocks(vec![Interlock {
        id: "airlock".into(),
        doors: vec!["air-out".into(), "air-in".into()],
        wait: Duration::from_secs(10),
    }])
}

fn at(ms: u64) -> Now {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(crate::test_clock::epoch);
    let base: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
    Now {
        mono: epoch + Duration::from_millis(ms),
        system: base + SignedDuration::from_millis(ms as i64),
        boot: Some(Boot {
            id: 7,
            since: Duration::from_millis(1_000_000 + ms),
        }),
    }
}

const S: u64 = 1000;

fn drain(g: &mut Gateway) -> Vec<Output> {
    std::iter::from_fn(|| g.poll_output()).collect()
}

fn records(out: &[Output]) -> Vec<EventKind> {
    out.iter()
        .filter_map(|o| match o {
            Output::Commit(Commit { records, .. }) => Some(records.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn bus(g: &mut Gateway, now: Now, event: BusEvent) -> Vec<Output> {
    g.handle(
        now,
        Input::Bus {
            bus: "bus0".into(),
            event,
        },
    );
    drain(g)
}

fn card(g: &mut Gateway, now: Now, address: u8, n: u8) -> Vec<Output> {
    bus(
        g,
        now,
        BusEvent::Card {
            address,
            card: RawCard {
                reader: 0,
                format: 0,
                bits: 8,
                data: vec![n],
            },
        },
    )
}

/// Contact and exit button levels of PD `address`.
fn inputs(g: &mut Gateway, now: Now, address: u8, open: bool, pressed: bool) -> Vec<Output> {
    bus(
        g,
        now,
        BusEvent::Inputs {
            address,
            inputs: vec![u8::from(open), u8::from(pressed)],
        },
    )
}

/// A gateway with every door's inputs reported at rest.
fn start(rules: Campus, state: StandingState, now: Now) -> (Gateway, Vec<Output>) {
    let mut g = Gateway::new(building(), Box::new(rules), state, now);
    let mut out = drain(&mut g);
    for a in [1, 3, 5, 7] {
        out.extend(inputs(&mut g, now, a, false, false));
    }
    (g, out)
}

fn denied(out: &[Output]) -> Option<DenyReason> {
    records(out).into_iter().find_map(|r| match r {
        EventKind::AccessDenied { reason, .. } => Some(reason),
        _ => None,
    })
}

fn granted(out: &[Output]) -> bool {
    records(out)
        .iter()
        .any(|r| matches!(r, EventKind::AccessGranted { .. }))
}

/// Card `n` badges at PD `reader` and walks through the door whose
/// contact is on PD `contact`.
fn walk(g: &mut Gateway, t: u64, reader: u8, contact: u8, n: u8) -> Vec<Output> {
    let mut out = card(g, at(t), reader, n);
    assert!(granted(&out), "card {n} at PD {reader}: {out:?}");
    out.extend(inputs(g, at(t + 500), contact, true, false));
    out.extend(inputs(g, at(t + 2 * S), contact, false, false));
    out
}

/// The standing state after `out`'s commits, applied on `state`.
fn persisted(mut state: StandingState, out: &[Output]) -> StandingState {
    for o in out {
        if let Output::Commit(Commit { state: Some(c), .. }) = o {
            match c {
                StandingChange::Whole(s) => state = (**s).clone(),
                StandingChange::Presence(lines) => state.presence.apply(lines.clone()),
            }
        }
    }
    state
}

fn area_of(g: &Gateway, n: u8) -> Option<String> {
    let line = g
        .presence()
        .get(&format!("raw:{n:02X}/8").as_str().into())?;
    Some(line.area.as_ref().map_or("-".into(), |a| a.to_string()))
}

#[test]
fn hard_antipassback_denies_a_second_entry_until_the_exit() {
    let (mut g, _) = start(campus(AntiPassback::Hard), StandingState::default(), at(0));
    let out = walk(&mut g, S, 1, 1, 7);
    assert_eq!(area_of(&g, 7).as_deref(), Some("building"));
    assert!(
        records(&out).iter().any(|r| matches!(
            r,
            EventKind::Presence { area: Some(a), door: Some(d), direction: Direction::In, .. }
                if a == "building" && d == "main"
        )),
        "{out:?}"
    );
    // Passed the pass back through the door: a second entry is refused.
    let out = card(&mut g, at(10 * S), 1, 7);
    assert_eq!(denied(&out), Some(DenyReason::Antipassback));
    assert!(records(&out).iter().any(|r| matches!(
        r,
        EventKind::Antipassback {
            breach: Breach::AlreadyInside,
            granted: false,
            ..
        }
    )));
    assert!(!g.doors()[0].released);
    // The why box answers as the door, in words.
    let presented = super::decision::Presented::from(crate::rules::Card::Raw {
        bytes: vec![7],
        bits: 8,
    });
    assert_eq!(
        g.decide(&"main".into(), &presented, None).deny_reason(),
        Some(DenyReason::Antipassback)
    );
    assert_eq!(
        g.antipassback_why(&"main".into(), &presented).as_deref(),
        Some("the card is already inside building")
    );
    // Out through the out-reader, then in again: fine.
    walk(&mut g, 20 * S, 2, 1, 7);
    assert_eq!(area_of(&g, 7), None);
    walk(&mut g, 30 * S, 1, 1, 7);
    // The exempt card is never held to it.
    walk(&mut g, 40 * S, 1, 1, 0x50);
    walk(&mut g, 50 * S, 1, 1, 0x50);
}

#[test]
fn soft_antipassback_grants_and_journals_and_the_lab_nests() {
    let (mut g, _) = start(campus(AntiPassback::Soft), StandingState::default(), at(0));
    walk(&mut g, S, 1, 1, 7);
    let out = walk(&mut g, 10 * S, 1, 1, 7);
    assert!(records(&out).iter().any(|r| matches!(
        r,
        EventKind::Antipassback { granted: true, area, .. } if area == "building"
    )));
    // Into the lab wing and out again into the building.
    walk(&mut g, 20 * S, 3, 3, 7);
    assert_eq!(area_of(&g, 7).as_deref(), Some("lab-wing"));
    assert_eq!(g.muster(Some("building")).len(), 1);
    assert_eq!(g.muster(Some("lab-wing")).len(), 1);
    walk(&mut g, 30 * S, 4, 3, 7);
    assert_eq!(area_of(&g, 7).as_deref(), Some("building"));
    assert!(g.muster(Some("lab-wing")).is_empty());
    assert_eq!(g.muster(Some("building"))[0].door.as_deref(), Some("lab"));
}

#[test]
fn timed_antipassback_refuses_a_reentry_for_its_minutes() {
    let (mut g, _) = start(campus(AntiPassback::Timed), StandingState::default(), at(0));
    walk(&mut g, S, 1, 1, 7);
    let out = card(&mut g, at(29 * 60 * S), 1, 7);
    assert_eq!(denied(&out), Some(DenyReason::Antipassback));
    walk(&mut g, 31 * 60 * S, 1, 1, 7);
}

#[test]
fn forgiveness_resets_once_and_locations_survive_a_restart() {
    // Forgiveness at 10:30 UTC; the clock starts at 10:00.
    let rules = || Campus {
        forgive: Some(10 * 60 + 30),
        ..campus(AntiPassback::Hard)
    };
    let (mut g, out) = start(rules(), StandingState::default(), at(0));
    let first = records(&out)
        .iter()
        .filter(|r| matches!(r, EventKind::AntipassbackForgiven { .. }))
        .count();
    assert_eq!(first, 1, "yesterday's forgiveness is taken once");
    let mut state = persisted(StandingState::default(), &out);
    let out = walk(&mut g, S, 1, 1, 7);
    state = persisted(state, &out);
    // kill -9 and start again from what was committed: still inside.
    let (mut g, out) = start(rules(), state.clone(), at(60 * S));
    assert!(
        !records(&out)
            .iter()
            .any(|r| matches!(r, EventKind::AntipassbackForgiven { .. })),
        "a restart does not forgive again"
    );
    assert_eq!(area_of(&g, 7).as_deref(), Some("building"));
    assert_eq!(
        denied(&card(&mut g, at(61 * S), 1, 7)),
        Some(DenyReason::Antipassback)
    );
    // 10:30: forgiven; the muster list still shows the card.
    g.handle(at(30 * 60 * S), Input::Timeout);
    let out = drain(&mut g);
    assert!(
        records(&out)
            .iter()
            .any(|r| matches!(r, EventKind::AntipassbackForgiven { .. }))
    );
    assert_eq!(g.muster(None).len(), 1);
    walk(&mut g, 30 * 60 * S + S, 1, 1, 7);
    assert!(persisted(state, &out).forgiven_at.is_some());
}

#[test]
fn a_card_the_rules_drop_leaves_every_area() {
    let (mut g, _) = start(campus(AntiPassback::Hard), StandingState::default(), at(0));
    walk(&mut g, S, 1, 1, 0x60);
    walk(&mut g, 10 * S, 1, 1, 7);
    let mut g2 = {
        let state = g.standing();
        let rules = Campus {
            dropped: true,
            ..campus(AntiPassback::Hard)
        };
        start(rules, state, at(20 * S)).0
    };
    // 1 200 more cards the rules no longer know: the sweep takes them in
    // steps, never the whole list in one input.
    for i in 0..1200u32 {
        g2.presence_for_tests()
            .apply(vec![crate::door::PresenceChange {
                credential: format!("raw:{:06X}/24", 0x1000 + i).as_str().into(),
                occupant: Some(crate::door::Occupant {
                    name: None,
                    since: at(0).system,
                    area: Some("building".into()),
                    door: None,
                }),
            }]);
    }
    g2.handle(at(21 * S), Input::RulesChanged);
    let dropped = |out: &[Output]| -> u64 {
        records(out)
            .iter()
            .map(|r| match r {
                EventKind::LocationsDropped { count } => *count,
                _ => 0,
            })
            .sum()
    };
    let first = dropped(&drain(&mut g2));
    assert!((1..=512).contains(&first), "{first}");
    let mut total = first;
    for t in 0..10 {
        g2.handle(at((22 + t) * S), Input::Timeout);
        total += dropped(&drain(&mut g2));
    }
    assert_eq!(total, 1201);
    assert_eq!(area_of(&g2, 0x60), None);
    assert!(area_of(&g2, 7).is_some());
    assert_eq!(g2.presence().count(), 1);
}

/// Released at the PDs: the last OUT command per PD.
fn strikes(out: &[Output], released: &mut std::collections::BTreeMap<u8, bool>) {
    for o in out {
        if let Output::Command {
            pd,
            command: Command::Output(outs),
        } = o
        {
            for c in outs {
                released.insert(
                    pd.address,
                    matches!(
                        c.action,
                        OutputAction::TimedOn | OutputAction::PermanentOnAbortTimed
                    ),
                );
            }
        }
    }
}

#[test]
fn an_airlock_grant_waits_for_the_other_door_then_is_served_or_refused() {
    let (mut g, out) = start(campus(AntiPassback::None), StandingState::default(), at(0));
    let mut pds = std::collections::BTreeMap::new();
    strikes(&out, &mut pds);
    let both = |pds: &std::collections::BTreeMap<u8, bool>| {
        pds.get(&5).copied().unwrap_or(false) && pds.get(&7).copied().unwrap_or(false)
    };
    // A grant at the outer door; a card at the inner door meanwhile waits.
    let out = card(&mut g, at(S), 5, 7);
    strikes(&out, &mut pds);
    assert_eq!(pds.get(&5), Some(&true));
    let out = card(&mut g, at(2 * S), 7, 8);
    strikes(&out, &mut pds);
    assert!(!both(&pds), "{out:?}");
    assert!(
        !out.iter().any(|o| matches!(o, Output::Decided { .. })),
        "waits, undecided"
    );
    assert_eq!(g.interlocks()[0].waiting, 1);
    // The outer door relocks by itself (not opened): the inner one goes.
    g.handle(at(6 * S + 1), Input::Timeout);
    let out = drain(&mut g);
    strikes(&out, &mut pds);
    assert_eq!(pds.get(&5), Some(&false), "{out:?}");
    assert_eq!(pds.get(&7), Some(&true), "{out:?}");
    assert!(granted(&out));
    // The inner door held open: a card at the outer one is refused after 10 s.
    inputs(&mut g, at(7 * S), 7, true, false);
    g.handle(at(12 * S), Input::Timeout);
    strikes(&drain(&mut g), &mut pds);
    let out = card(&mut g, at(13 * S), 5, 9);
    assert!(denied(&out).is_none());
    g.handle(at(23 * S), Input::Timeout);
    let out = drain(&mut g);
    strikes(&out, &mut pds);
    assert_eq!(denied(&out), Some(DenyReason::Interlock), "{out:?}");
    assert!(!both(&pds));
    // An exit button at the outer door waits for the inner door to close.
    let out = inputs(&mut g, at(24 * S), 5, false, true);
    strikes(&out, &mut pds);
    assert_eq!(pds.get(&5), Some(&false));
    inputs(&mut g, at(24 * S + 200), 5, false, false);
    let out = inputs(&mut g, at(25 * S), 7, false, false);
    strikes(&out, &mut pds);
    assert!(
        records(&out)
            .iter()
            .any(|r| matches!(r, EventKind::ExitRequest { door } if door == "air-out")),
        "{out:?}"
    );
    assert_eq!(pds.get(&5), Some(&true));
    assert!(!both(&pds));
}

/// The example rules, signed and verified, as the gateway's rules: the
/// forgiveness of the day is taken at the start.
#[test]
fn the_example_rules_forgive_at_the_start() {
    use crate::rules::envelope::sign_snapshot;
    use crate::rules::tests::{key, trusted};
    let text = include_str!("../../config/rules.example.toml");
    let t: Timestamp = "2026-12-01T09:00:00Z".parse().unwrap();
    let mut s =
        crate::rules::source::parse_rules("r", text, 1, t, t + SignedDuration::from_hours(999))
            .unwrap();
    s.gateway_id = "gw1".into();
    s.building = "b1".into();
    let v = crate::rules::verify_snapshot(
        &sign_snapshot(&key(), &s).unwrap(),
        &trusted(),
        "gw1",
        "b1",
        t,
        None,
    )
    .unwrap();
    let (_, out) = start_with(Box::new(v), at(0));
    assert!(
        records(&out)
            .iter()
            .any(|r| matches!(r, EventKind::AntipassbackForgiven { .. })),
        "{out:?}"
    );
}

fn start_with(rules: Box<dyn Rules>, now: Now) -> (Gateway, Vec<Output>) {
    let mut g = Gateway::new(building(), rules, StandingState::default(), now);
    let out = drain(&mut g);
    (g, out)
}

/// A passage costs its one line in the journal, whatever the list's
/// length: with 2 000 cards inside, the 2 001st passage commits one
/// presence line of a bounded size (not the list).
#[test]
fn a_passage_costs_one_line_whatever_the_list() {
    let (mut g, _) = start(campus(AntiPassback::None), StandingState::default(), at(0));
    let mut biggest = 0;
    for i in 0..2001u64 {
        let n = u8::try_from(1 + i % 99).unwrap();
        // Distinct cards: the presence list is keyed by credential, so
        // plant lines directly for all but the measured passage.
        if i < 2000 {
            g.presence_for_tests()
                .apply(vec![crate::door::PresenceChange {
                    credential: format!("raw:{i:06X}/24").as_str().into(),
                    occupant: Some(crate::door::Occupant {
                        name: None,
                        since: at(0).system,
                        area: Some("lab-wing".into()),
                        door: Some("lab".into()),
                    }),
                }]);
            continue;
        }
        let out = walk(&mut g, S, 3, 3, n);
        for o in &out {
            if let Output::Commit(Commit {
                state: Some(StandingChange::Presence(lines)),
                ..
            }) = o
            {
                assert_eq!(lines.len(), 1);
                biggest = biggest.max(serde_cbor::to_vec(lines).unwrap().len());
            }
        }
    }
    assert_eq!(g.presence().count(), 2001);
    println!("one passage at a door with areas commits {biggest} bytes of presence line");
    assert!((1..=160).contains(&biggest), "{biggest} bytes");
}

/// A remote unlock of an airlock door while the other stands open is
/// refused, with the reason journaled; once it is closed, accepted.
#[test]
fn a_remote_unlock_of_a_busy_airlock_door_is_refused() {
    use super::remote::{RemoteAction, RemoteError};
    let (mut g, _) = start(campus(AntiPassback::None), StandingState::default(), at(0));
    inputs(&mut g, at(S), 7, true, false);
    let unlock = |g: &mut Gateway, t| {
        g.handle(
            at(t),
            Input::Remote {
                ticket: 1,
                source: "test".into(),
                command: None,
                action: RemoteAction::Unlock {
                    door: "air-out".into(),
                    seconds: 60,
                },
            },
        );
        drain(g)
    };
    let out = unlock(&mut g, 2 * S);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Reply {
                result: Err(RemoteError::Interlocked(_)),
                ..
            }
        )),
        "{out:?}"
    );
    assert!(!g.doors()[2].released);
    inputs(&mut g, at(3 * S), 7, false, false);
    let out = unlock(&mut g, 4 * S);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Reply { result: Ok(()), .. })),
        "{out:?}"
    );
    assert!(g.doors()[2].released);
}

/// The campus with these doors scheduled `unlocked` all day.
struct ScheduledOpen(Campus, &'static [&'static str]);

impl Rules for ScheduledOpen {
    fn decide(
        &self,
        door: &DoorId,
        key: &CredentialKey,
        pin: Option<&str>,
        at: Timestamp,
    ) -> Verdict {
        self.0.decide(door, key, pin, at)
    }

    fn door_mode(&self, door: &DoorId, _at: Timestamp) -> Option<String> {
        self.1
            .contains(&door.as_str())
            .then(|| "unlocked".to_owned())
    }
}

/// A scheduled release of an airlock door waits while the other door of
/// the airlock stands open (`door_mode_withheld`, reason `interlocked`),
/// and starts at the next minute's look once it is closed and locked:
/// never both released.
#[test]
fn a_scheduled_release_of_an_airlock_door_waits_for_the_other_door() {
    let mut g = Gateway::new(
        building(),
        Box::new(ScheduledOpen(campus(AntiPassback::None), &["air-out"])),
        StandingState::default(),
        at(0),
    );
    let mut pds = std::collections::BTreeMap::new();
    strikes(&drain(&mut g), &mut pds);
    for a in [1, 3, 5, 7] {
        strikes(&inputs(&mut g, at(0), a, false, false), &mut pds);
    }
    // The inner door is opened (from inside: the exit button), then the
    // time is confirmed: the outer door's scheduled release must wait.
    strikes(&inputs(&mut g, at(S), 7, false, true), &mut pds);
    strikes(&inputs(&mut g, at(S + 200), 7, true, false), &mut pds);
    g.handle(
        at(2 * S),
        Input::Beacon {
            at: at(2 * S).system,
            came: at(2 * S).mono,
        },
    );
    let out = drain(&mut g);
    strikes(&out, &mut pds);
    assert!(
        records(&out).iter().any(|r| matches!(
            r,
            EventKind::DoorModeWithheld {
                door,
                reason: crate::event::Withheld::Interlocked,
                ..
            } if door == "air-out"
        )),
        "{out:?}"
    );
    assert_ne!(pds.get(&5), Some(&true), "outer released while inner open");
    // Closed and relocked: the next minute's look starts the release.
    strikes(&inputs(&mut g, at(3 * S), 7, false, false), &mut pds);
    g.handle(at(62 * S), Input::Timeout);
    strikes(&drain(&mut g), &mut pds);
    assert_eq!(g.doors()[2].mode, "unlocked");
    assert_eq!(pds.get(&5), Some(&true));
    assert_ne!(pds.get(&7), Some(&true));
}

/// Both airlock doors scheduled `unlocked`: the first in the config gets
/// the release, the other waits (`interlocked`) — never both.
#[test]
fn two_airlock_doors_scheduled_open_never_release_together() {
    let mut g = Gateway::new(
        building(),
        Box::new(ScheduledOpen(
            campus(AntiPassback::None),
            &["air-out", "air-in"],
        )),
        StandingState::default(),
        at(0),
    );
    let mut pds = std::collections::BTreeMap::new();
    strikes(&drain(&mut g), &mut pds);
    for a in [1, 3, 5, 7] {
        strikes(&inputs(&mut g, at(0), a, false, false), &mut pds);
    }
    for t in [S, 61 * S, 121 * S] {
        g.handle(
            at(t),
            Input::Beacon {
                at: at(t).system,
                came: at(t).mono,
            },
        );
        g.handle(at(t + 1), Input::Timeout);
        strikes(&drain(&mut g), &mut pds);
        assert_eq!(g.doors()[2].mode, "unlocked", "the first in the config");
        assert_ne!(g.doors()[3].mode, "unlocked");
        assert_eq!(pds.get(&5), Some(&true));
        assert_ne!(pds.get(&7), Some(&true));
    }
}

/// Remote releasing modes kept under a lockdown cannot give both airlock
/// doors a release for when it ends: the second is refused while the
/// first holds the airlock, and after the lockdown only the first opens.
#[test]
fn remote_modes_kept_under_a_lockdown_never_release_both_airlock_doors() {
    use super::remote::{RemoteAction, RemoteError};
    use crate::door::{Mode, StandingMode};
    let (mut g, out) = start(campus(AntiPassback::None), StandingState::default(), at(0));
    let mut pds = std::collections::BTreeMap::new();
    strikes(&out, &mut pds);
    let act = |g: &mut Gateway, t: u64, action: RemoteAction| {
        g.handle(
            at(t),
            Input::Remote {
                ticket: 1,
                source: "test".into(),
                command: None,
                action,
            },
        );
        drain(g)
    };
    let unlocked = |door: &str| RemoteAction::SetMode {
        door: door.into(),
        mode: StandingMode::Standard(Mode::ScheduledUnlock),
        seconds: 3600,
    };
    let reply = |out: &[Output]| {
        out.iter().find_map(|o| match o {
            Output::Reply { result, .. } => Some(result.clone()),
            _ => None,
        })
    };
    strikes(
        &act(&mut g, S, RemoteAction::Lockdown { doors: vec![] }),
        &mut pds,
    );
    let out = act(&mut g, 2 * S, unlocked("air-out"));
    strikes(&out, &mut pds);
    assert_eq!(reply(&out), Some(Ok(())));
    let out = act(&mut g, 3 * S, unlocked("air-in"));
    strikes(&out, &mut pds);
    assert!(
        matches!(reply(&out), Some(Err(RemoteError::Interlocked(_)))),
        "{out:?}"
    );
    let out = act(
        &mut g,
        4 * S,
        RemoteAction::ReleaseLockdown { doors: vec![] },
    );
    strikes(&out, &mut pds);
    assert_eq!(pds.get(&5), Some(&true), "{out:?}");
    assert_ne!(pds.get(&7), Some(&true), "{out:?}");
}
