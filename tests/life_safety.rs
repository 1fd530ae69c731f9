//! Life safety end to end: `portier run` with three libosdp PDs (Secure
//! Channel) on a pseudo-terminal bus, the example config and rules.
//! - the fire panel's input releases the escape doors (the side entrance
//!   `emergency_unlocked`, the revolving door `emergency_free`) over a
//!   lockdown, keeps them released across `kill -9`, and returns them to
//!   their modes (the lockdown) when it clears; a door it does not list
//!   stays locked down;
//! - card + PIN at the keypad: the own PIN opens, a wrong one is denied
//!   `wrong_pin`, the duress PIN opens as usual and journals a silent
//!   `duress` alarm before the grant.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use serde_json::{Value, json};
use support::gateway::{GUARD, Gateway, PERMANENT_OFF, PERMANENT_ON, TIMED_ON, is_release};

/// The lab reader's input 2 is the fire panel (`config/portier.example.toml`).
const FIRE_PD: u8 = 3;
const FIRE_INPUT: u8 = 2;

fn output(v: &Value, address: u8, output: u8) -> bool {
    v["event"] == "output" && v["address"] == address && v["output"] == output
}

#[test]
fn a_fire_alarm_releases_the_escape_doors_over_a_lockdown_and_survives_kill_9() {
    let mut gw = Gateway::start();
    gw.act(json!({"action": "lockdown"}));
    gw.expect_event("side entrance in lockdown", |e| {
        e["type"] == "door_mode_changed" && e["door"] == "side-entrance" && e["mode"] == "lockdown"
    });

    let mark = gw.mark();
    gw.input(FIRE_PD, FIRE_INPUT, true);
    let on = gw.expect_event("fire_alarm on", |e| {
        e["type"] == "fire_alarm" && e["active"] == true
    });
    assert_eq!(on["input"], "fire-panel");
    assert_eq!(on["releases"], json!(["main-revolving", "side-entrance"]));
    gw.expect_pd(mark, "side strike released for good", |v| {
        output(v, 2, 0) && v["control_code"] == PERMANENT_ON
    });
    for out in [0, 1] {
        gw.expect_pd(mark, "revolving door free both ways", |v| {
            output(v, 1, out) && v["control_code"] == PERMANENT_ON
        });
    }
    assert_eq!(gw.door("side-entrance")["mode"], "emergency_unlocked");
    assert_eq!(gw.door("main-revolving")["mode"], "emergency_free");
    // Not an escape door of this panel: the lockdown holds it.
    assert_eq!(gw.door("lab-1")["mode"], "lockdown");
    assert!(
        gw.outputs_since(mark, FIRE_PD)
            .iter()
            .all(|o| !is_release(o))
    );

    // kill -9 while the alarm is active: the doors come back released,
    // and no relay is locked on the way.
    gw.kill_daemon();
    let mark = gw.mark();
    gw.run_daemon();
    gw.expect_pd(mark, "side strike released again after the restart", |v| {
        output(v, 2, 0) && v["control_code"] == PERMANENT_ON
    });
    assert_eq!(gw.door("side-entrance")["mode"], "emergency_unlocked");
    let side: Vec<Value> = gw
        .outputs_since(mark, 2)
        .into_iter()
        .filter(|v| v["output"] == 0)
        .collect();
    assert!(side.iter().all(is_release), "{side:?}");
    let events = gw.events();
    let restarted = events
        .iter()
        .rposition(|e| e["type"] == "daemon_started")
        .unwrap();
    let again = events[restarted..]
        .iter()
        .filter(|e| e["type"] == "fire_alarm")
        .count();
    assert_eq!(again, 0, "the kept alarm met the same level: no news");

    // The panel clears: back to the lockdown, locked at the PDs.
    let mark = gw.mark();
    gw.input(FIRE_PD, FIRE_INPUT, false);
    gw.expect_event("fire_alarm off", |e| {
        e["type"] == "fire_alarm" && e["active"] == false
    });
    gw.expect_pd(mark, "side strike locked again", |v| {
        output(v, 2, 0) && v["control_code"] == PERMANENT_OFF
    });
    assert_eq!(gw.door("side-entrance")["mode"], "lockdown");
    assert_eq!(gw.door("main-revolving")["mode"], "locked");
}

#[test]
fn a_duress_pin_opens_the_door_and_raises_a_silent_alarm_first() {
    let mut gw = Gateway::start();
    let strike = |v: &Value| output(v, 2, 0) && v["control_code"] == TIMED_ON;

    // The own PIN.
    let mark = gw.mark();
    gw.badge(2, GUARD);
    gw.expect_pd(mark, "the reader asks for the PIN (blue)", |v| {
        // OSDP colour 4 is blue.
        v["event"] == "led" && v["address"] == 2 && v["on_color"] == 4
    });
    assert!(gw.outputs_since(mark, 2).iter().all(|o| !is_release(o)));
    gw.keypad(2, "2468#");
    gw.expect_pd(mark, "strike released for the own PIN", strike);
    gw.expect_event("granted with the own PIN", |e| {
        e["type"] == "access_granted" && e["credential"] == GUARD
    });

    // A wrong PIN.
    let mark = gw.mark();
    gw.badge(2, GUARD);
    gw.keypad(2, "2460#");
    gw.expect_event("wrong_pin", |e| {
        e["type"] == "access_denied" && e["reason"] == "wrong_pin"
    });
    assert!(gw.outputs_since(mark, 2).iter().all(|o| !is_release(o)));

    // The duress PIN: opens as usual, the alarm goes first.
    let mark = gw.mark();
    gw.badge(2, GUARD);
    gw.keypad(2, "2469#");
    gw.expect_pd(mark, "strike released for the duress PIN", strike);
    let duress = gw.expect_event("duress", |e| e["type"] == "duress");
    assert_eq!(duress["door"], "side-entrance");
    assert_eq!(duress["credential"], GUARD);
    let granted = gw.expect_event("granted under duress", |e| {
        e["type"] == "access_granted"
            && e["credential"] == GUARD
            && e["seq"].as_u64() > duress["seq"].as_u64()
    });
    assert_eq!(
        granted["seq"].as_u64(),
        duress["seq"].as_u64().map(|s| s + 1)
    );
    let duress_events = gw
        .events()
        .into_iter()
        .filter(|e| e["type"] == "duress")
        .count();
    assert_eq!(duress_events, 1, "the own PIN raised none");
}
