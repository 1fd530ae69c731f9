//! `portier run` end to end against **libosdp PDs** (Secure Channel on) on a
//! pseudo-terminal bus: the building of `config/portier.example.toml` — a
//! revolving entrance (PD 1), a side entrance (PD 2) and a lab door (PD 3)
//! — with the example rules signed by a fresh key and applied with
//! `portier snapshot apply`, exactly as a technician would.
//!
//! Determinism: the daemon reads the real clock, so the test rules differ
//! from the example in one place only: the schedule that means office hours
//! (for presence and the revolving door's free rotation) is one that is
//! never open. Every scenario therefore runs "after hours" whenever CI runs.
//! The staff card has building-any-time access, so it is granted then.
//!
//! Observation: the libosdp PDs report every LED, buzzer and output command
//! they receive; the daemon's journal is read through its control socket.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::gateway::*;
use support::{portier_bin, portier_ok as portier};

#[test]
fn staff_after_hours_opens_the_side_door_and_a_lost_pass_does_not() {
    let mut gw = Gateway::start();
    let mark = gw.mark();
    gw.badge(2, STAFF);
    let out = gw.pds.expect(T, "strike release at the side reader", |v| {
        v["event"] == "output" && v["address"] == 2 && is_release(v)
    });
    assert_eq!(
        (
            out["output"].clone(),
            out["control_code"].clone(),
            out["timer"].clone()
        ),
        (json!(0), json!(TIMED_ON), json!(50)),
        "{out}"
    );
    let led = gw
        .pds
        .expect(T, "green LED", |v| v["event"] == "led" && v["address"] == 2);
    assert_eq!(led["on_color"], 2, "green: {led}");
    gw.expect_event("access_granted", |e| {
        e["type"] == "access_granted" && e["door"] == "side-entrance" && e["credential"] == STAFF
    });
    for other in [1, 3] {
        let outs = gw.outputs_since(mark, other);
        assert!(outs.iter().all(|o| !is_release(o)), "PD {other}: {outs:?}");
    }

    // Let the timed release run out so the next check sees only new commands.
    let mark = gw.mark();
    gw.badge(2, LOST);
    let denied = gw.expect_event("access_denied blocked", |e| {
        e["type"] == "access_denied" && e["credential"] == LOST
    });
    assert_eq!(denied["reason"], "blocked");
    gw.pds.expect(T, "red LED", |v| {
        v["event"] == "led" && v["address"] == 2 && v["on_color"] == 1
    });
    let outs = gw.outputs_since(mark, 2);
    assert!(
        outs.iter().all(|o| !is_release(o)),
        "no release for a lost pass: {outs:?}"
    );
}

#[test]
fn a_door_opened_without_grant_is_forced() {
    let gw = &mut Gateway::start();
    gw.input(2, 0, true);
    let e = gw.expect_event("door_forced", |e| e["type"] == "door_forced");
    assert_eq!(e["door"], "side-entrance");
    gw.input(2, 0, false);
    gw.expect_event("door_closed", |e| e["type"] == "door_closed");
}

#[test]
fn revolving_door_gives_one_rotation_per_grant() {
    let gw = &mut Gateway::start();
    gw.badge(1, STAFF);
    let out = gw.pds.expect(T, "rotation-in released", |v| {
        v["event"] == "output" && v["address"] == 1 && v["output"] == 0 && is_release(v)
    });
    // Timed at the PD for the grant's passage window (10 s in the example
    // config): a gateway that dies now never leaves the door turning.
    assert_eq!(out["control_code"], TIMED_ON, "{out}");
    let timer = out["timer"].as_u64().unwrap();
    assert!((1..=100).contains(&timer), "{out}");
    // One passage in: the release is withdrawn. Each sensor edge waits
    // for its effect: the simulated PD reports its input mask as it is when
    // polled, so a pulse shorter than a poll would be lost (as it would be
    // with a real sensor and a slow poll).
    let before = gw.mark();
    gw.input(1, 2, true);
    gw.expect_pd(before, "rotation-in locked again", |v| {
        v["event"] == "output"
            && v["address"] == 1
            && v["output"] == 0
            && v["control_code"] == PERMANENT_OFF
    });
    gw.expect_event("passage recorded for presence", |e| e["type"] == "presence");
    gw.input(1, 2, false);
    // The PD's events are sent in order: once a lost pass queued after the
    // falling edge is journaled, the edge has been seen.
    gw.badge(1, LOST);
    gw.expect_event("lost pass at the entrance", |e| {
        e["type"] == "access_denied" && e["door"] == "main-revolving"
    });
    // A second rotation without a grant is reported, and nothing released.
    gw.input(1, 2, true);
    gw.expect_event("unauthorised rotation", |e| {
        e["type"] == "door_forced" && e["door"] == "main-revolving"
    });
    gw.input(1, 2, false);
    let releases: Vec<Value> = gw
        .outputs_since(before, 1)
        .into_iter()
        .filter(is_release)
        .collect();
    assert!(releases.is_empty(), "{releases:?}");
    let granted = gw
        .events()
        .iter()
        .filter(|e| e["type"] == "access_granted")
        .count();
    assert_eq!(granted, 1);
}

#[test]
fn remote_release_and_lockdown_behave_as_specified() {
    let gw = &mut Gateway::start();
    // Security releases one passage out through the revolving door.
    gw.act(json!({"action": "release_passage", "door": "main-revolving", "direction": "out"}));
    gw.pds.expect(T, "rotation-out released", |v| {
        v["event"] == "output" && v["address"] == 1 && v["output"] == 1 && is_release(v)
    });
    gw.expect_event("remote action journaled", |e| {
        e["type"] == "remote_action" && e["outcome"] == "accepted"
    });
    // A refused action says why and is journaled too.
    let r =
        gw.ask(json!({"action": "release_passage", "door": "side-entrance", "direction": "in"}));
    assert_eq!(r["ok"], false);
    assert!(
        r["error"].as_str().unwrap().contains("does not apply"),
        "{r}"
    );

    // Lockdown: the staff card is refused at the side door, nothing released.
    gw.act(json!({"action": "lockdown"}));
    gw.expect_event("mode lockdown", |e| {
        e["type"] == "door_mode_changed" && e["door"] == "side-entrance" && e["mode"] == "lockdown"
    });
    let mark = gw.mark();
    gw.badge(2, STAFF);
    let denied = gw.expect_event("denied in lockdown", |e| {
        e["type"] == "access_denied" && e["credential"] == STAFF
    });
    assert_eq!(denied["reason"], "lockdown");
    assert!(gw.outputs_since(mark, 2).iter().all(|o| !is_release(o)));

    // Released: the same card opens the door again.
    gw.act(json!({"action": "release_lockdown"}));
    gw.badge(2, STAFF);
    gw.pds.expect(T, "strike released after lockdown", |v| {
        v["event"] == "output" && v["address"] == 2 && v["control_code"] == TIMED_ON
    });
}

#[test]
fn restart_never_pulses_a_relay_and_presence_survives() {
    let gw = &mut Gateway::start();
    // Staff enters after hours: grant, door opens and closes.
    gw.badge(2, STAFF);
    gw.pds.expect(T, "strike release", |v| {
        v["event"] == "output" && v["address"] == 2 && v["control_code"] == TIMED_ON
    });
    gw.input(2, 0, true);
    let p = gw.expect_event("presence in", |e| e["type"] == "presence");
    gw.input(2, 0, false);
    gw.expect_event("door closed", |e| e["type"] == "door_closed");
    assert_eq!(
        (p["credential"].clone(), p["direction"].clone()),
        (json!(STAFF), json!("in"))
    );

    // Kill -9 while every door is locked, then start again.
    gw.kill_daemon();
    let mark = gw.mark();
    gw.run_daemon();
    gw.expect_event("restarted", |e| {
        e["type"] == "daemon_started" && e["rules_version"] == 1
    });
    let inside = gw.ask(json!({"query": "presence"}));
    assert!(inside["result"]["inside"].get(STAFF).is_some(), "{inside}");
    // Only lock commands reached the PDs since the kill.
    for address in 1..=3 {
        let outs = gw.outputs_since(mark, address);
        assert!(
            outs.iter().all(|o| o["control_code"] == PERMANENT_OFF),
            "PD {address}: {outs:?}"
        );
    }
    assert!(gw.state().join("state/events").exists());
}

#[test]
fn a_block_delta_applied_to_the_running_daemon_denies_at_once() {
    let gw = &mut Gateway::start();
    let d = gw.state().to_owned();
    std::fs::write(
        d.join("block.toml"),
        "gateway_id = \"gw-university-1\"\nbuilding = \"university-main\"\n[[blocks]]\n\
         card = { format = \"h10301\", facility = 42, number = 1001 }\nreason = \"stolen\"\n",
    )
    .unwrap();
    let delta = d.join("block.delta");
    portier(&[
        "snapshot",
        "delta",
        "--base-version",
        "1",
        "--changes",
        d.join("block.toml").to_str().unwrap(),
        "--key",
        d.join("central.key").to_str().unwrap(),
        "--version",
        "2",
        "--out",
        delta.to_str().unwrap(),
    ]);
    // Without the socket the store is the daemon's: a clear refusal.
    let out = Command::new(portier_bin())
        .args(["snapshot", "apply", delta.to_str().unwrap(), "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use --control-socket"));
    let applied = portier(&[
        "snapshot",
        "apply",
        delta.to_str().unwrap(),
        "--config",
        gw.config.to_str().unwrap(),
        "--control-socket",
        gw.socket.to_str().unwrap(),
    ]);
    assert!(applied.contains("\"version\":2"), "{applied}");
    gw.expect_event("rules applied", |e| {
        e["type"] == "rules_applied" && e["version"] == 2
    });
    gw.badge(2, STAFF);
    let denied = gw.expect_event("stolen pass denied", |e| {
        e["type"] == "access_denied" && e["credential"] == STAFF
    });
    assert_eq!(denied["reason"], "blocked");
    // Replaying an older version is refused and journaled.
    let r = gw.ask(json!({"apply": "snapshot", "file": d.join("snapshot.cbor")}));
    assert_eq!(r["ok"], false, "{r}");
    gw.expect_event("rollback refused", |e| e["type"] == "rules_refused");
}

#[test]
fn a_lost_rules_database_is_rebuilt_and_journaled_at_start() {
    let gw = &mut Gateway::start();
    gw.kill_daemon();
    // The rules store's sled database is gone (disk trouble, a bad
    // restore); its last-good signed files are still there.
    let rules = gw.state().join("state/rules");
    let sled_dir = std::fs::read_dir(&rules)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .expect("a sled directory in the rules store");
    std::fs::remove_dir_all(&sled_dir).unwrap();
    gw.run_daemon();
    let e = gw.expect_event("rules_recovered", |e| e["type"] == "rules_recovered");
    assert_eq!(e["version"], 1, "{e}");
    // And the rules work: the staff card still opens the side door.
    let mark = gw.mark();
    gw.badge(2, STAFF);
    gw.expect_pd(mark, "strike released", |v| {
        v["event"] == "output" && v["address"] == 2 && v["control_code"] == TIMED_ON
    });
}

#[test]
fn lockdown_survives_kill_9_and_restart() {
    let gw = &mut Gateway::start();
    gw.act(json!({"action": "lockdown", "doors": ["side-entrance"]}));
    gw.expect_event("mode lockdown", |e| {
        e["type"] == "door_mode_changed" && e["door"] == "side-entrance" && e["mode"] == "lockdown"
    });
    gw.kill_daemon();
    let mark = gw.mark();
    gw.run_daemon();
    gw.expect_event("restarted", |e| e["type"] == "daemon_started");
    gw.badge(2, STAFF);
    let denied = gw.expect_event("denied in lockdown after the restart", |e| {
        e["type"] == "access_denied" && e["credential"] == STAFF
    });
    assert_eq!(denied["reason"], "lockdown");
    assert!(
        gw.outputs_since(mark, 2).iter().all(|o| !is_release(o)),
        "{:?}",
        gw.outputs_since(mark, 2)
    );
    let side = gw.door("side-entrance");
    assert_eq!(side["mode"], "lockdown", "{side}");
    // Only an explicit release lifts it.
    gw.act(json!({"action": "release_lockdown", "doors": ["side-entrance"]}));
    gw.badge(2, STAFF);
    gw.pds.expect(T, "strike released after the release", |v| {
        v["event"] == "output" && v["address"] == 2 && v["control_code"] == TIMED_ON
    });
}

#[test]
fn a_timed_override_survives_a_restart_and_still_reverts_on_time() {
    let gw = &mut Gateway::start();
    gw.act(json!({"action": "unlock", "door": "side-entrance", "seconds": 12}));
    gw.pds.expect(T, "strike released by the override", |v| {
        v["event"] == "output" && v["address"] == 2 && v["control_code"] == TIMED_ON
    });
    gw.kill_daemon();
    let mark = gw.mark();
    gw.run_daemon();
    gw.expect_event("restarted", |e| e["type"] == "daemon_started");
    // Restored: locked first (every door at start), then released again
    // for what is left of the 12 s, timed at the PD.
    let again = gw.expect_pd(mark, "strike released again after the restart", |v| {
        v["event"] == "output" && v["address"] == 2 && v["control_code"] == TIMED_ON
    });
    assert!(again["timer"].as_u64().unwrap() <= 120, "{again}");
    gw.expect_event("the override reverts on time", |e| {
        e["type"] == "door_mode_changed" && e["door"] == "side-entrance" && e["mode"] == "card_only"
    });
}

#[test]
fn a_three_hour_unlock_is_timed_at_the_pd_and_shown_until_its_end() {
    let gw = &mut Gateway::start();
    gw.act(json!({"action": "unlock", "door": "side-entrance", "seconds": 3 * 3600}));
    // The longest timer one OUT can carry; the core re-sends it before it
    // runs out (tests/simulation.rs checks the PD stays released for the
    // whole 3 hours in virtual time).
    let out = gw
        .pds
        .expect(T, "strike released for the longest timer", |v| {
            v["event"] == "output" && v["address"] == 2 && v["control_code"] == TIMED_ON
        });
    assert_eq!(out["timer"], 65535, "{out}");
    let side = gw.door("side-entrance");
    assert_eq!(side["released"], true, "{side}");
    assert_eq!(side["override_state"], "unlocked", "{side}");
}
