//! Event windows and *first person in*, end to end: `portier run` against
//! three **libosdp PDs** in Secure Channel (the building of
//! `config/portier.example.toml`, see `tests/support/gateway.rs`), with the
//! example rules signed by a fresh key.
//!
//! The daemon reads the real clock, so the rules are built around the
//! test's own "now": the building's time zone is chosen as the `Etc/GMT±N`
//! zone in which it is about noon (no local midnight falls inside a test),
//! and the event window is set a minute or two ahead of now, local time.
//! The test plays central's part for time: it hands the daemon a signed
//! time beacon every second (as central publishes one every 30 s), so
//! scheduled releases start at a proven time. What the PDs received (their
//! OUT commands) is the evidence.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use support::gateway::*;

fn now() -> Timestamp {
    portier::driver::daemon::wall_now()
}

/// The `Etc/GMT±N` zone in which it is between 11:00 and 13:00 now.
fn noon_zone() -> String {
    let hour = i64::from(now().to_zoned(TimeZone::UTC).hour());
    let ahead = 12 - hour; // local = UTC + ahead, in -11..=12
    match ahead {
        0 => "Etc/GMT".to_owned(),
        // The POSIX sign: Etc/GMT-3 is three hours ahead of UTC.
        a if a > 0 => format!("Etc/GMT-{a}"),
        a => format!("Etc/GMT+{}", -a),
    }
}

fn with_zone(rules: String, zone: &str) -> String {
    let out = rules.replace(
        "time_zone = \"Europe/Amsterdam\"",
        &format!("time_zone = \"{zone}\""),
    );
    assert!(out.contains(zone), "example rules changed shape");
    out
}

/// A time beacon as central signs it, at `at`, in a file.
fn beacon(gw: &Gateway, at: Timestamp) -> PathBuf {
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

/// Central's beacon, now.
fn confirm_time(gw: &Gateway) {
    let r = gw.ask(json!({"apply": "beacon", "file": beacon(gw, now())}));
    assert_eq!(r["ok"], true, "{r}");
}

fn permanent(v: &Value, code: u64) -> bool {
    v["control_code"].as_u64() == Some(code)
}

/// Local `HH:MM` minute-floor of `t` in `zone`, plus `plus` minutes.
fn minute(t: Timestamp, zone: &TimeZone, plus: i64) -> jiff::Zoned {
    let z = (t + SignedDuration::from_mins(plus)).to_zoned(zone.clone());
    z.with().second(0).subsec_nanosecond(0).build().unwrap()
}

/// An event window starting at the next full minute at least 20 s away,
/// one minute long, unlocks the lab door (PD 3) for exactly that minute:
/// not before, not after, and the PD is told so (a permanent release at the
/// start, a relock at the end).
#[test]
fn an_event_window_opens_and_closes_the_door_at_its_minutes() {
    let zone_name = noon_zone();
    let zone = TimeZone::get(&zone_name).unwrap();
    let ahead = if now().to_zoned(zone.clone()).second() <= 40 {
        1
    } else {
        2
    };
    let start = minute(now(), &zone, ahead);
    let end = minute(now(), &zone, ahead + 1);
    let window = format!(
        "{}T{}/{}",
        start.date(),
        start.strftime("%H:%M"),
        end.strftime("%H:%M")
    );
    let (start, end) = (start.timestamp(), end.timestamp());
    let mut gw = Gateway::start_with_rules(|rules| {
        with_zone(rules, &zone_name)
            + &format!(
                "\n[[event_windows]]\nwindow = \"{window}\"\ndoor_group = \"lab\"\n\
                 mode = \"unlocked\"\nname = \"Group meeting\"\n"
            )
    });
    assert!(now() < start, "the daemon took too long to start");
    let mark = gw.mark();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut opened = None;
    let closed;
    loop {
        assert!(
            Instant::now() < deadline,
            "the window never opened and closed"
        );
        confirm_time(&gw);
        let t = now();
        let mode = gw.door("lab-1")["mode"].as_str().unwrap_or("").to_owned();
        match opened {
            None if mode == "unlocked" => {
                assert!(t >= start, "opened at {t}, before the window's {start}");
                opened = Some(t);
            }
            None => {
                assert!(
                    !gw.outputs_since(mark, 3).iter().any(is_release),
                    "the lab was released before its window"
                );
                assert!(
                    t < start + SignedDuration::from_mins(1),
                    "not opened in the window's first minute (now {t}, mode {mode})"
                );
            }
            Some(_) if mode == "card_only" => {
                closed = t;
                break;
            }
            Some(_) => assert!(
                t < end + SignedDuration::from_mins(1),
                "still {mode} a minute after the window's end"
            ),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        closed >= end,
        "closed at {closed}, before the window's end {end}"
    );
    let outs = gw.outputs_since(mark, 3);
    let on = outs
        .iter()
        .position(|o| o["output"] == 0 && permanent(o, PERMANENT_ON))
        .unwrap_or_else(|| panic!("no permanent release at the lab PD: {outs:?}"));
    // The relock follows the mode change over the bus: wait for it.
    let released_at = outs[on]["t"].as_f64().unwrap();
    gw.expect_pd(mark, "the lab PD relocked after the window", |o| {
        o["event"] == "output"
            && o["address"] == 3
            && o["output"] == 0
            && permanent(o, PERMANENT_OFF)
            && o["t"].as_f64().is_some_and(|t| t > released_at)
    });
    for mode in ["unlocked", "card_only"] {
        gw.expect_event(mode, |e| {
            e["type"] == "door_mode_changed" && e["door"] == "lab-1" && e["mode"] == mode
        });
    }
}

/// The side entrance (PD 2) is scheduled `unlocked` all day with first
/// person in: it stays locked at the PD — through a confirmed time and a
/// denied card — until the first granted card; then the scheduled release
/// starts, and a restart keeps it (standing state) without another card.
#[test]
fn first_person_in_waits_for_the_first_grant() {
    let zone = noon_zone();
    let mut gw = Gateway::start_with_rules(|rules| {
        with_zone(rules, &zone)
            + "\n[[door_mode_schedules]]\ndoor = \"side-entrance\"\nschedule = \"any-time\"\n\
               mode = \"unlocked\"\nfirst_person_in = true\n"
    });
    let mark = gw.mark();
    confirm_time(&gw);
    gw.expect_event("first_person_in_awaited", |e| {
        e["type"] == "first_person_in_awaited"
            && e["door"] == "side-entrance"
            && e["mode"] == "unlocked"
    });
    // A lost pass is nobody.
    gw.badge(2, LOST);
    gw.expect_event("denied", |e| {
        e["type"] == "access_denied" && e["credential"] == LOST
    });
    confirm_time(&gw);
    assert_eq!(gw.door("side-entrance")["mode"], "card_only");
    let before = gw.outputs_since(mark, 2);
    assert!(
        !before.iter().any(is_release),
        "the side entrance was released before the first person in: {before:?}"
    );

    let mark = gw.mark();
    gw.badge(2, STAFF);
    let first = gw.expect_event("first_person_in", |e| e["type"] == "first_person_in");
    assert_eq!(
        (&first["door"], &first["credential"], &first["mode"]),
        (&json!("side-entrance"), &json!(STAFF), &json!("unlocked"))
    );
    gw.expect_pd(mark, "the scheduled release at the side PD", |v| {
        v["event"] == "output" && v["address"] == 2 && permanent(v, PERMANENT_ON)
    });
    assert_eq!(gw.door("side-entrance")["mode"], "unlocked");

    // A restart: the first person in is standing state.
    gw.kill_daemon();
    let mark = gw.mark();
    gw.run_daemon();
    confirm_time(&gw);
    gw.expect_pd(mark, "the release again after the restart", |v| {
        v["event"] == "output" && v["address"] == 2 && permanent(v, PERMANENT_ON)
    });
    assert_eq!(gw.door("side-entrance")["mode"], "unlocked");
    let firsts = gw
        .events()
        .iter()
        .filter(|e| e["type"] == "first_person_in")
        .count();
    assert_eq!(firsts, 1, "a restart is not another first person in");
}
