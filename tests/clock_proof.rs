//! Time the gateway can prove, against `portier run` with libosdp PDs in
//! Secure Channel, its system clock moved with libfaketime (the monotonic
//! clock left alone):
//! - a backward step of two days keeps yesterday's expired card denied;
//! - a snapshot issued in the future (2036) is refused, a correct one still
//!   applies;
//! - a restart with the clock three days behind brings no ended unlock
//!   back, and keeps one that has not ended;
//! - a +51 h step without a beacon starts no scheduled release (the
//!   revolving door's free rotation) and raises `clock_untrusted`; central's
//!   signed beacon then confirms the time and the schedule applies.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use serde_json::{Value, json};
use support::gateway::*;
use support::wait_for;

const EXPIRED: &str = "h10301:42:1099";

fn now() -> Timestamp {
    portier::driver::daemon::wall_now()
}

/// The rules: the revolving door turns freely for an hour around 51 h
/// from now (in the building's zone), never now; and a card that expired
/// yesterday.
fn rules(edit: String) -> String {
    let tz = TimeZone::get("Europe/Amsterdam").unwrap();
    let later = (now() + SignedDuration::from_hours(51) - SignedDuration::from_mins(20))
        .to_zoned(tz.clone());
    let end = (now() + SignedDuration::from_hours(51) + SignedDuration::from_mins(40)).to_zoned(tz);
    let day = later.strftime("%a").to_string().to_lowercase();
    let window = format!("{}-{}", later.strftime("%H:%M"), end.strftime("%H:%M"));
    let yesterday = now() - SignedDuration::from_hours(24);
    edit.replace(
        "schedule = \"test-never\"\nmode = \"free_rotation\"",
        "schedule = \"test-later\"\nmode = \"free_rotation\"",
    )
    .replace(
        "[schedules.any-time]",
        &format!("[schedules.test-later]\n{day} = [\"{window}\"]\n\n[schedules.any-time]"),
    ) + &format!(
        "\n[[credentials]]\nkey = {{ format = \"h10301\", facility = 42, number = 1099 }}\n\
         access_levels = [\"building-any-time\"]\nvalid_until = \"{yesterday}\"\n"
    )
}

fn count(gw: &Gateway, pred: impl Fn(&Value) -> bool) -> usize {
    gw.events().iter().filter(|e| pred(e)).count()
}

/// Wait until `n` events match.
fn expect_count(gw: &Gateway, what: &str, n: usize, pred: impl Fn(&Value) -> bool) {
    wait_for(T, what, || count(gw, &pred) >= n);
}

fn snapshot(gw: &Gateway, version: u64, issued_at: Option<&str>) -> std::path::PathBuf {
    let d = gw.dir.path();
    let out = d.join(format!("snapshot-{version}.cbor"));
    let mut args = vec![
        "snapshot".to_owned(),
        "build".into(),
        "--rules".into(),
        d.join("rules.toml").display().to_string(),
        "--key".into(),
        d.join("central.key").display().to_string(),
        "--version".into(),
        version.to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    if let Some(at) = issued_at {
        args.extend(["--issued-at".into(), at.into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    support::portier_ok(&args);
    out
}

fn apply(gw: &Gateway, kind: &str, file: &Path) -> Value {
    gw.ask(json!({"apply": kind, "file": file}))
}

/// A time beacon as central signs it, at `at`.
fn beacon(gw: &Gateway, at: Timestamp) -> std::path::PathBuf {
    let seed = std::fs::read_to_string(gw.dir.path().join("central.key")).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&portier::config::read_hex32(&seed).unwrap());
    let bytes = portier::command::beacon::sign_beacon(
        &key,
        &portier::command::beacon::Beacon {
            gateway: "gw-university-1".into(),
            at,
        },
    );
    let path = gw.dir.path().join("beacon.cbor");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn the_gateway_acts_only_on_time_it_can_prove() {
    let gw = &mut Gateway::start_with_rules(rules);
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    gw.kill_daemon();
    gw.run_daemon_env(&faketime(&offset));

    // A backward step of two days: yesterday's expired card stays denied.
    gw.badge(2, EXPIRED);
    let expired = |e: &Value| e["type"] == "access_denied" && e["reason"] == "expired";
    expect_count(gw, "the expired card denied", 1, expired);
    std::fs::write(&offset, "-2d\n").unwrap();
    gw.badge(2, EXPIRED);
    expect_count(gw, "still denied two days back", 2, expired);
    // Behind the signed floor (the snapshot's issue time) and a step:
    // the floor says it first.
    gw.expect_event("the step is not believed", |e| {
        e["type"] == "clock_untrusted" && (e["reason"] == "behind" || e["reason"] == "stepped")
    });
    assert_eq!(
        count(gw, |e| e["type"] == "access_granted"
            && e["credential"] == EXPIRED),
        0
    );
    std::fs::write(&offset, "+0\n").unwrap();
    gw.badge(2, STAFF);
    gw.expect_event("believed again once corrected", |e| {
        e["type"] == "clock_trusted"
    });
    // The card read consumed here, not left queued at the PD for the
    // daemon after the restart below.
    gw.expect_event("the staff card granted", |e| {
        e["type"] == "access_granted" && e["credential"] == STAFF
    });

    // A snapshot issued in 2036 is refused; a correct one applies.
    let future = snapshot(gw, 2, Some("2036-01-01T00:00:00Z"));
    let r = apply(gw, "snapshot", &future);
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("issued_in_future"),
        "{r}"
    );
    let good = snapshot(gw, 3, None);
    let r = apply(gw, "snapshot", &good);
    assert_eq!(r["ok"], true, "{r}");

    // Unlocks of 4 s and 10 min, a kill -9, the first one's end passed,
    // then a restart with the clock three days behind (a dead RTC): the
    // ended unlock does not come back, the other does.
    gw.act(json!({"action": "unlock", "door": "side-entrance", "seconds": 4}));
    gw.act(json!({"action": "unlock", "door": "lab-1", "seconds": 600}));
    let unlocked = Instant::now();
    gw.kill_daemon();
    wait_for(T, "the 4 s unlock's end", || {
        unlocked.elapsed() > Duration::from_secs(5)
    });
    std::fs::write(&offset, "-3d\n").unwrap();
    let mark = gw.mark();
    gw.run_daemon_env(&faketime(&offset));
    let lab = gw.door("lab-1");
    assert_eq!(lab["override_state"], "unlocked", "{lab}");
    let side = gw.door("side-entrance");
    assert_eq!(
        side["released"],
        false,
        "{side}; journal: {:#?}",
        gw.events()
    );
    assert!(side["override_state"].is_null(), "{side}");
    assert!(
        !gw.outputs_since(mark, 2).iter().any(is_release),
        "the ended unlock came back at the PD"
    );

    // +51 h without a beacon (a fresh start at the right time first, so
    // that the step is a step): no scheduled release, an alarm.
    std::fs::write(&offset, "+0\n").unwrap();
    gw.kill_daemon();
    gw.run_daemon_env(&faketime(&offset));
    gw.expect_event("restarted", |e| e["type"] == "daemon_started");
    let mark = gw.mark();
    // Counted before the step: any input (a PD's report) may read the
    // clock first.
    let untrusted = count(gw, |e| e["type"] == "clock_untrusted");
    std::fs::write(&offset, "+51h\n").unwrap();
    gw.badge(2, STAFF);
    expect_count(gw, "the +51 h step alarmed", untrusted + 1, |e| {
        e["type"] == "clock_untrusted"
    });
    // The schedules are read again (as at every rules change and minute).
    let r = apply(gw, "snapshot", &good);
    assert_eq!(r["ok"], true, "{r}");
    let revolving = gw.door("main-revolving");
    assert_ne!(revolving["mode"], "free_rotation", "{revolving}");
    assert!(
        !gw.outputs_since(mark, 1).iter().any(is_release),
        "the revolving door was released at an unproven time"
    );
    // Central's signed time confirms the step: the schedule applies.
    let at = now() + SignedDuration::from_hours(51);
    let r = apply(gw, "beacon", &beacon(gw, at));
    assert_eq!(r["ok"], true, "{r}");
    wait_for(T, "free rotation once the time is confirmed", || {
        gw.door("main-revolving")["mode"] == "free_rotation"
    });
    gw.expect_event("the schedule's mode journaled", |e| {
        e["type"] == "door_mode_changed"
            && e["door"] == "main-revolving"
            && e["mode"] == "free_rotation"
    });
}
