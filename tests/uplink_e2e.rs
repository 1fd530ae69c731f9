//! `portier run` with an `[uplink]` to a real Mosquitto over mutual TLS and
//! Portier's reader simulator (Secure Channel) at the side entrance: the
//! central system publishes the signed snapshot (retained), a block delta
//! and a signed unlock command with `portier publish`, and watches the
//! gateway's events arrive. Covers: snapshot → applied; delta block → card
//! denied; unlock command → strike released and reported with its id; the
//! same command again → refused as a replay, also after a kill -9 restart.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::broker::{Broker, Central};
use support::{JsonChild, PtyPair, portier_bin, repo};

const GW: &str = "gw-university-1";
const T: Duration = Duration::from_secs(30);
const STAFF: &str = "h10301:42:1001";

fn portier(args: &[&str]) -> String {
    support::portier_ok(args)
}

fn wait_event(central: &Central, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + T;
    loop {
        if let Some(e) = central.events(GW).into_iter().find(|e| pred(e)) {
            return e;
        }
        assert!(
            Instant::now() < end,
            "no {what} centrally; got {:#?}",
            central.events(GW)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rules_and_commands_from_central_act_at_the_door() {
    let broker = Broker::start(&[GW]);
    let central = Central::start(&broker, true);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = broker.pki();
    let pty = PtyPair::new();
    let key = support::key_file(d, "reader.scbk", &[0x3c; 16]);
    let mut reader = support::simulated_reader(&pty.a, &key);
    let body = support::side_entrance_config(GW, pki, &pty.b, "");
    let config = support::broker::write_config(d, GW, &body, &broker);
    portier(&["check-config", "--config", config.to_str().unwrap()]);
    let daemon = JsonChild::spawn(
        &portier_bin(),
        &["run", "--config", config.to_str().unwrap()],
    );
    let end = Instant::now() + T;
    while !central
        .events(GW)
        .iter()
        .any(|e| e["type"] == "daemon_started")
    {
        assert!(
            Instant::now() < end,
            "the gateway's first event never arrived ({:?}); daemon log:\n{}\nbroker log:\n{}",
            central.seen.lock().unwrap().errors,
            daemon.stderr.lock().unwrap(),
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Central signs and publishes the snapshot (retained).
    let signing = pki.join("central-signing.key");
    let snapshot = d.join("snapshot.cbor");
    portier(&[
        "snapshot",
        "build",
        "--rules",
        repo().join("config/rules.example.toml").to_str().unwrap(),
        "--key",
        signing.to_str().unwrap(),
        "--version",
        "1",
        "--out",
        snapshot.to_str().unwrap(),
    ]);
    let publish = |kind: &str, file: &std::path::Path| {
        portier(&[
            "publish",
            "--config",
            config.to_str().unwrap(),
            "--cert",
            pki.join("central.crt").to_str().unwrap(),
            "--key",
            pki.join("central.key").to_str().unwrap(),
            kind,
            file.to_str().unwrap(),
        ])
    };
    publish("snapshot", &snapshot);
    wait_event(&central, "rules applied", |e| {
        e["type"] == "rules_applied" && e["version"] == 1
    });
    wait_event(&central, "reader online", |e| e["type"] == "pd_online");

    // The staff card opens the side door.
    let staff = json!({"op": "card", "data": "9501f480", "bits": 26});
    reader.send(staff.clone());
    wait_event(&central, "grant", |e| {
        e["type"] == "access_granted" && e["credential"] == STAFF
    });

    // A block delta: the same card is denied at once.
    std::fs::write(
        d.join("block.toml"),
        format!("gateway_id = \"{GW}\"\nbuilding = \"university-main\"\n[[blocks]]\ncard = {{ format = \"h10301\", facility = 42, number = 1001 }}\nreason = \"lost\"\n"),
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
        signing.to_str().unwrap(),
        "--version",
        "2",
        "--out",
        delta.to_str().unwrap(),
    ]);
    publish("delta", &delta);
    wait_event(&central, "delta applied", |e| {
        e["type"] == "rules_applied" && e["version"] == 2
    });
    reader.send(staff);
    let denied = wait_event(&central, "deny", |e| {
        e["type"] == "access_denied" && e["credential"] == STAFF
    });
    assert_eq!(denied["reason"], "blocked");

    // The grant's release ends by itself (5 s): the door is locked again.
    let end = Instant::now() + T;
    while !reader
        .drain()
        .iter()
        .rev()
        .take_while(|v| v["action"] != "TimedOn")
        .any(|v| v["event"] == "output" && v["action"] == "PermanentOffAbortTimed")
    {
        assert!(Instant::now() < end, "no relock: {:?}", reader.seen);
        std::thread::sleep(Duration::from_millis(20));
    }

    // Security unlocks the door remotely.
    let command = d.join("unlock.cmd");
    portier(&[
        "command",
        "sign",
        "--key",
        signing.to_str().unwrap(),
        "--gateway",
        GW,
        "--id",
        "cmd-42",
        "--out",
        command.to_str().unwrap(),
        "unlock",
        "--door",
        "side-entrance",
        "--seconds",
        "4",
    ]);
    let before = reader.drain().len();
    publish("command", &command);
    let done = wait_event(&central, "command result", |e| {
        e["type"] == "remote_action" && e["command"] == "cmd-42"
    });
    assert_eq!(done["outcome"], "accepted");
    let end = Instant::now() + T;
    while !reader.drain()[before..]
        .iter()
        .any(|v| v["event"] == "output" && v["action"] == "TimedOn" && v["timer"] == 40)
    {
        if Instant::now() >= end {
            for e in central.events(GW) {
                eprintln!("central has: {e}");
            }
            panic!("no release at the reader: {:?}", reader.seen);
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // The same command again (a replay, or QoS 1 delivering twice).
    publish("command", &command);
    let refused = wait_event(&central, "replay refused", |e| {
        e["type"] == "command_refused"
    });
    assert_eq!(refused["id"], "cmd-42");
    assert!(
        refused["reason"].as_str().unwrap().contains("replay"),
        "{refused}"
    );

    // The seen ids survive a restart: after kill -9 and a new start, the
    // same command is still a replay.
    let mut daemon = daemon;
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let _daemon = JsonChild::spawn(
        &portier_bin(),
        &["run", "--config", config.to_str().unwrap()],
    );
    let count = |t: &str| central.events(GW).iter().filter(|e| e["type"] == t).count();
    let end = Instant::now() + T;
    while count("daemon_started") < 2 {
        assert!(Instant::now() < end, "no restart");
        std::thread::sleep(Duration::from_millis(20));
    }
    publish("command", &command);
    while count("command_refused") < 2 {
        assert!(
            Instant::now() < end,
            "replay after restart not refused: {:#?}",
            central.events(GW)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count("remote_action"), 1, "the command acted twice");
}
