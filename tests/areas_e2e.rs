//! Areas end to end: `portier run` against **libosdp PDs** in Secure
//! Channel, the example building (`config/portier.example.toml`): a soft
//! building (side entrance, PD 2) around a hard lab wing behind an airlock
//! (lab-1 on PD 3's output 0 and inputs 0/1, lab-1-inner on its output 1
//! and inputs 4/5). Every assertion is on what the PDs received (their OUT
//! commands) or on the daemon's journal and presence list.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use support::gateway::*;
use support::wait_for;

const STUDENT: &str = "h10301:42:1002";

/// The example rules with no exemption (the staff card is held to the
/// building's soft anti-passback too).
fn no_exemption(rules: String) -> String {
    let r = rules.replace("exempt = [\"h10301:42:1001\"]", "exempt = []");
    assert!(r.contains("exempt = []"), "example rules changed shape");
    r
}

/// Badge `key` at `reader`'s PD, wait for its strike to be released, walk
/// through (contact `input` opens), wait for the journaled passage, and
/// close the door.
fn walk(gw: &mut Gateway, reader: u8, key: &str, input: u8) {
    let mark = gw.mark();
    let seen = gw.events().len();
    gw.badge(reader, key);
    gw.expect_pd(mark, "strike release", |v| {
        v["event"] == "output" && v["address"] == reader && is_release(v)
    });
    gw.input(reader, input, true);
    let key = key.to_owned();
    let end = std::time::Instant::now() + T;
    loop {
        let events = gw.events();
        if events[seen..]
            .iter()
            .any(|e| e["type"] == "presence" && e["credential"] == key)
        {
            break;
        }
        assert!(std::time::Instant::now() < end, "no passage: {events:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The door closes and locks (the open-ended release of an opened
    // grant ends): later marks see only what follows.
    let closing = gw.mark();
    gw.input(reader, input, false);
    gw.expect_pd(closing, "strike locked again", |v| {
        v["event"] == "output" && v["address"] == reader && v["control_code"] == PERMANENT_OFF
    });
}

/// The presence list's area and last door of `key`.
fn location(gw: &Gateway, key: &str) -> Option<(Value, Value)> {
    let p = gw.ask(json!({"query": "presence"}));
    let line = p["result"]["inside"].get(key)?.clone();
    Some((line["area"].clone(), line["door"].clone()))
}

/// Wait for the `n`-th event (counting from 1) matching `pred`.
fn expect_nth(gw: &Gateway, n: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let end = std::time::Instant::now() + T;
    loop {
        let found: Vec<Value> = gw.events().into_iter().filter(|e| pred(e)).collect();
        if found.len() >= n {
            return found[n - 1].clone();
        }
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hard_denies_a_second_entry_soft_journals_it_and_the_muster_survives_kill_9() {
    let gw = &mut Gateway::start_with_rules(no_exemption);
    // The building is soft: a second entry is let in and journaled.
    walk(gw, 2, STAFF, 0);
    assert_eq!(
        location(gw, STAFF),
        Some((json!("building"), json!("side-entrance")))
    );
    let mark = gw.mark();
    gw.badge(2, STAFF);
    gw.expect_pd(mark, "soft: released again", |v| {
        v["event"] == "output" && v["address"] == 2 && is_release(v)
    });
    let soft = gw.expect_event("soft violation", |e| e["type"] == "antipassback");
    assert_eq!(
        (&soft["area"], &soft["breach"], &soft["granted"]),
        (&json!("building"), &json!("already_inside"), &json!(true)),
        "{soft}"
    );

    // The lab wing is hard: in once, then refused until an exit.
    walk(gw, 3, STUDENT, 0);
    assert_eq!(
        location(gw, STUDENT),
        Some((json!("lab-wing"), json!("lab-1")))
    );
    let mark = gw.mark();
    gw.badge(3, STUDENT);
    let denied = gw.expect_event("hard denial", |e| {
        e["type"] == "access_denied" && e["credential"] == STUDENT
    });
    assert_eq!(denied["reason"], "antipassback", "{denied}");
    gw.expect_pd(mark, "red LED at the lab reader", |v| {
        v["event"] == "led" && v["address"] == 3 && v["on_color"] == 1
    });
    assert!(
        gw.outputs_since(mark, 3).iter().all(|o| !is_release(o)),
        "{:?}",
        gw.outputs_since(mark, 3)
    );

    // kill -9: the muster list is what the passages said, and the lab
    // wing still refuses the student.
    gw.kill_daemon();
    let mark = gw.mark();
    gw.run_daemon();
    gw.expect_event("restarted", |e| e["type"] == "daemon_started");
    assert_eq!(
        location(gw, STAFF),
        Some((json!("building"), json!("side-entrance")))
    );
    assert_eq!(
        location(gw, STUDENT),
        Some((json!("lab-wing"), json!("lab-1")))
    );
    gw.badge(3, STUDENT);
    expect_nth(gw, 2, "hard denial after the restart", |e| {
        e["type"] == "access_denied" && e["credential"] == STUDENT && e["reason"] == "antipassback"
    });
    let outs = gw.outputs_since(mark, 3);
    assert!(
        outs.iter().all(|o| !is_release(o)),
        "{outs:?} {:#?}",
        gw.events()
    );
}

#[test]
fn forgiveness_lets_the_card_in_again() {
    // Forgiveness at the next minute (local time) that is at least 20 s
    // away: the daemon's minute timer takes it.
    let tz = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap();
    let now = jiff::Timestamp::now().to_zoned(tz);
    let ahead = now.clone() + jiff::SignedDuration::from_secs(80 - i64::from(now.second()));
    let at = format!("{:02}:{:02}", ahead.hour(), ahead.minute());
    let at_rule = at.clone();
    let gw = &mut Gateway::start_with_rules(move |rules| {
        rules.replace(
            "forgiveness = \"03:00\"",
            &format!("forgiveness = \"{at_rule}\""),
        )
    });
    walk(gw, 3, STUDENT, 0);
    gw.badge(3, STUDENT);
    gw.expect_event("hard denial", |e| {
        e["type"] == "access_denied" && e["reason"] == "antipassback"
    });
    // The forgiveness at `at` is journaled (the minute timer takes it).
    let target = ahead
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .unwrap()
        .timestamp();
    let end = std::time::Instant::now() + Duration::from_secs(150);
    loop {
        let taken = gw.events().into_iter().any(|e| {
            e["type"] == "antipassback_forgiven"
                && e["forgiven_at"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    == Some(target)
        });
        if taken {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "no forgiveness at {at} ({target}): {:#?}",
            gw.events()
                .into_iter()
                .filter(|e| e["type"] == "antipassback_forgiven")
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Still on the muster list, but no longer held against the card.
    assert_eq!(
        location(gw, STUDENT),
        Some((json!("lab-wing"), json!("lab-1")))
    );
    let mark = gw.mark();
    gw.badge(3, STUDENT);
    gw.expect_pd(mark, "let in after the forgiveness", |v| {
        v["event"] == "output" && v["address"] == 3 && is_release(v)
    });
}

/// The strikes of PD 3 as its OUT commands leave them, checked after each
/// command: never both outputs released.
fn never_both(outputs: &[Value]) -> BTreeMap<u64, bool> {
    let mut released = BTreeMap::new();
    for o in outputs {
        released.insert(o["output"].as_u64().unwrap(), is_release(o));
        assert!(
            !(released.get(&0) == Some(&true) && released.get(&1) == Some(&true)),
            "both airlock strikes released at PD 3: {outputs:#?}"
        );
    }
    released
}

#[test]
fn the_airlock_never_releases_both_strikes() {
    // The lab wing soft here: the student's second entry reaches the
    // airlock's check (a hard wing would refuse it for anti-passback).
    let gw = &mut Gateway::start_with_rules(|rules| {
        let r = rules.replace(
            "parent = \"building\"\nantipassback = \"hard\"",
            "parent = \"building\"\nantipassback = \"soft\"",
        );
        assert!(r != rules, "example rules changed shape");
        r
    });
    let mark = gw.mark();
    // The student badges at the outer door and opens it; the inner door's
    // push button is pressed meanwhile: it waits.
    gw.badge(3, STUDENT);
    gw.expect_pd(mark, "outer strike", |v| {
        v["event"] == "output" && v["address"] == 3 && v["output"] == 0 && is_release(v)
    });
    gw.input(3, 0, true);
    wait_for(T, "the outer door seen open", || {
        gw.door("lab-1")["open"] == true
    });
    gw.input(3, 5, true);
    gw.input(3, 5, false);
    // A window to watch for what must not happen (no event says the
    // button is waiting).
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !gw.outputs_since(mark, 3)
            .iter()
            .any(|o| o["output"] == 1 && is_release(o)),
        "the inner door released while the outer stood open"
    );
    let air = gw.ask(json!({"query": "doors"}));
    assert!(air["ok"] == true, "{air}");
    // The outer door closes and locks: the inner one is released.
    gw.input(3, 0, false);
    gw.expect_pd(mark, "inner strike after the outer closed", |v| {
        v["event"] == "output" && v["address"] == 3 && v["output"] == 1 && is_release(v)
    });
    gw.expect_event("exit request honoured", |e| {
        e["type"] == "exit_request" && e["door"] == "lab-1-inner"
    });
    // The inner door held open: a card at the outer door waits 10 s, then
    // is refused with `interlock`.
    gw.input(3, 4, true);
    wait_for(T, "the inner door seen open", || {
        gw.door("lab-1-inner")["open"] == true
    });
    let refused = gw.mark();
    gw.badge(3, STUDENT);
    let denied = gw.expect_event("refused by the airlock", |e| {
        e["type"] == "access_denied" && e["reason"] == "interlock"
    });
    assert_eq!(denied["door"], "lab-1", "{denied}");
    let after = gw.outputs_since(refused, 3);
    assert!(
        !after.iter().any(|o| o["output"] == 0 && is_release(o)),
        "the outer door released for the refused card: {after:#?}"
    );
    gw.input(3, 4, false);
    wait_for(T, "the inner door seen closed", || {
        gw.door("lab-1-inner")["open"] == false
    });
    never_both(&gw.outputs_since(mark, 3));
}
