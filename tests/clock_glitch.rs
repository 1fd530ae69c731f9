//! A bad day for the clock, against `portier run` with libosdp PDs in
//! Secure Channel: the daemon's system clock (moved with libfaketime, the
//! monotonic clock left alone) jumps 30 years ahead for a while and is then
//! corrected. While it is wrong the step is not believed (cards still
//! granted, events not stamped in the future, `clock_untrusted` journaled);
//! once corrected, nothing of it remains — also across a restart.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use serde_json::Value;
use support::gateway::*;
use support::wait_for;

fn year_of(event: &Value) -> i64 {
    event["at"].as_str().unwrap()[..4].parse().unwrap()
}

#[test]
fn a_forward_clock_glitch_leaves_nothing_behind() {
    let gw = &mut Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    gw.kill_daemon();
    gw.run_daemon_env(&faketime(&offset));
    let now_year = year_of(&gw.expect_event("restarted", |e| e["type"] == "daemon_started"));

    // The clock jumps 30 years ahead: the staff card (valid until 2029) is
    // still granted, the glitch is journaled, nothing is stamped in 2056.
    std::fs::write(&offset, "+10950d\n").unwrap();
    let before = gw.events().len();
    gw.badge(2, STAFF);
    let granted = gw.expect_event("granted during the glitch", |e| {
        e["type"] == "access_granted" && e["credential"] == STAFF
    });
    assert!(year_of(&granted) < now_year + 2, "{granted}");
    gw.expect_event("the glitch is alarmed", |e| {
        e["type"] == "clock_untrusted" && e["reason"] == "stepped"
    });
    let during: Vec<Value> = gw.events().into_iter().skip(before).collect();
    assert!(
        during.iter().all(|e| year_of(e) < now_year + 2),
        "events stamped in the future: {during:?}"
    );

    // Corrected: granted, stamped now.
    std::fs::write(&offset, "+0\n").unwrap();
    let count = |gw: &Gateway| {
        gw.events()
            .iter()
            .filter(|e| e["type"] == "access_granted")
            .count()
    };
    let granted_before = count(gw);
    gw.badge(2, STAFF);
    wait_for(T, "granted after the correction", || {
        count(gw) > granted_before
    });

    // And after a restart nothing of the glitch remains.
    gw.kill_daemon();
    gw.run_daemon_env(&faketime(&offset));
    let granted_before = count(gw);
    gw.badge(2, STAFF);
    wait_for(T, "granted after a restart", || count(gw) > granted_before);
    let denied_expired = gw
        .events()
        .iter()
        .any(|e| e["type"] == "access_denied" && e["reason"] == "expired");
    assert!(!denied_expired, "{:?}", gw.events());
}
