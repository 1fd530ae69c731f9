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

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{JsonChild, PtyPair, portier_bin, python, repo, wait_for};

const T: Duration = Duration::from_secs(15);
const KEYS: [&str; 3] = [
    "4A1C7E0D9B3F5A6C8E2D1B0F7A9C3E5D",
    "5B2D8F1E0C4A6B7D9F3E2C1A8B0D4F6E",
    "6C3E9A2F1D5B7C8E0A4F3D2B9C1E5A7F",
];
const STAFF: &str = "h10301:42:1001";
const LOST: &str = "h10301:42:1005";

/// OSDP output control codes as libosdp reports them.
const PERMANENT_OFF: u64 = 1;
const PERMANENT_ON: u64 = 2;
const TIMED_ON: u64 = 5;

struct Gateway {
    dir: tempfile::TempDir,
    _pty: PtyPair,
    pds: JsonChild,
    daemon: Option<JsonChild>,
    config: PathBuf,
    socket: PathBuf,
}

fn card(key: &str) -> Value {
    let key: portier::rules::CredentialKey = key.parse().unwrap();
    let (bytes, bits) = portier::rules::wiegand::encode(&key).unwrap();
    json!({"data": hex::encode(bytes), "bits": bits})
}

fn portier(args: &[&str]) -> String {
    support::portier_ok(args)
}

impl Gateway {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pty = PtyPair::new();
        // The PDs first: a CP that probes before they listen only backs off.
        let script = repo().join("tests/interop/libosdp_pd.py");
        let mut args = vec![
            script.display().to_string(),
            "--device".into(),
            pty.a.display().to_string(),
            "--baud".into(),
            "115200".into(),
        ];
        for (i, key) in KEYS.iter().enumerate() {
            args.push("--pd".into());
            args.push(format!("{},scbk={key}", i + 1));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut pds = JsonChild::spawn(&python(), &args);
        pds.expect(T, "libosdp PDs ready", |v| v["event"] == "ready");

        // Central's key and the signed rules, applied by hand.
        portier(&["keygen", "--out", d.to_str().unwrap()]);
        let rules = std::fs::read_to_string(repo().join("config/rules.example.toml"))
            .unwrap()
            .replace(
                "schedule = \"office-hours\"\nmode = \"free_rotation\"",
                "schedule = \"test-never\"\nmode = \"free_rotation\"",
            )
            .replace(
                "[schedules.any-time]",
                "[schedules.test-never]\n\n[schedules.any-time]",
            );
        assert!(
            rules.contains("schedule = \"test-never\""),
            "example rules changed shape"
        );
        std::fs::write(d.join("rules.toml"), rules).unwrap();
        let snapshot = d.join("snapshot.cbor");
        portier(&[
            "snapshot",
            "build",
            "--rules",
            d.join("rules.toml").to_str().unwrap(),
            "--key",
            d.join("central.key").to_str().unwrap(),
            "--version",
            "1",
            "--out",
            snapshot.to_str().unwrap(),
        ]);
        let config = d.join("portier.toml");
        for (i, key) in KEYS.iter().enumerate() {
            std::fs::write(d.join(format!("pd{}.scbk", i + 1)), key).unwrap();
        }
        let example = std::fs::read_to_string(repo().join("config/portier.example.toml")).unwrap();
        let text = example
            .replace("\"/var/lib/portier\"", "\"state\"")
            .replace("\"/etc/portier/central.pub\"", "\"central.pub\"")
            .replace(
                "\"/dev/ttyUSB0\"",
                &format!("{:?}", pty.b.display().to_string()),
            )
            .replace("\"/etc/portier/keys/entrance-reader.scbk\"", "\"pd1.scbk\"")
            .replace("\"/etc/portier/keys/side-reader.scbk\"", "\"pd2.scbk\"")
            .replace("\"/etc/portier/keys/lab-reader.scbk\"", "\"pd3.scbk\"")
            .replace(
                "office_hours_schedule = \"office-hours\"",
                "office_hours_schedule = \"test-never\"",
            )
            .replace("listen = \"0.0.0.0:8443\"", "listen = \"127.0.0.1:0\"");
        std::fs::write(&config, text).unwrap();
        portier(&["check-config", "--config", config.to_str().unwrap()]);
        portier(&[
            "snapshot",
            "apply",
            snapshot.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ]);
        let socket = d.join("control.sock");
        let mut gw = Self {
            dir,
            _pty: pty,
            pds,
            daemon: None,
            config,
            socket,
        };
        gw.run_daemon();
        gw
    }

    /// Start `portier run` and wait until every PD is online in SC.
    fn run_daemon(&mut self) {
        let daemon = JsonChild::spawn(
            &portier_bin(),
            &[
                "run",
                "--config",
                self.config.to_str().unwrap(),
                "--control-socket",
                self.socket.to_str().unwrap(),
            ],
        );
        self.daemon = Some(daemon);
        let socket = self.socket.clone();
        wait_for(T, "control socket", || {
            socket.exists() && UnixStream::connect(&socket).is_ok()
        });
        wait_for(T, "all PDs online in Secure Channel", || {
            let r = self.ask(json!({"query": "buses"}));
            let pds = r["result"]["bus-1"].as_array().cloned().unwrap_or_default();
            pds.len() == 3
                && pds
                    .iter()
                    .all(|p| p["online"] == true && p["secure"] == true)
        });
    }

    fn kill_daemon(&mut self) {
        let mut daemon = self.daemon.take().expect("running");
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
    }

    fn ask(&self, request: Value) -> Value {
        let mut stream = UnixStream::connect(&self.socket).expect("control socket");
        writeln!(stream, "{request}").unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn act(&self, action: Value) {
        let r = self.ask(action.clone());
        assert_eq!(r["ok"], true, "{action} → {r}");
    }

    fn events(&self) -> Vec<Value> {
        let r = self.ask(json!({"query": "events", "after": 0, "limit": 10000}));
        r["result"].as_array().cloned().unwrap_or_default()
    }

    /// Wait for a journaled event matching `pred`.
    fn expect_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + T;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for event {what}; journal: {:#?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn badge(&mut self, address: u8, key: &str) {
        let mut op = card(key);
        op["op"] = "card".into();
        op["address"] = address.into();
        self.pds.send(op);
    }

    fn input(&mut self, address: u8, input: u8, active: bool) {
        self.pds
            .send(json!({"op": "input", "address": address, "input": input, "active": active}));
    }

    /// Output commands the PD at `address` received since line `from` of
    /// the PD log.
    fn outputs_since(&mut self, from: usize, address: u8) -> Vec<Value> {
        self.pds.drain()[from..]
            .iter()
            .filter(|v| v["event"] == "output" && v["address"] == address)
            .cloned()
            .collect()
    }

    /// Wait for a PD log line after line `from` matching `pred`.
    fn expect_pd(&mut self, from: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + T;
        loop {
            if let Some(v) = self.pds.drain()[from..].iter().find(|v| pred(v)) {
                return v.clone();
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what} at the PDs; saw {:#?}",
                &self.pds.seen[from..]
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn mark(&mut self) -> usize {
        self.pds.drain().len()
    }

    fn state(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }
}

fn is_release(v: &Value) -> bool {
    matches!(v["control_code"].as_u64(), Some(TIMED_ON | PERMANENT_ON))
}

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
    assert_eq!(out["control_code"], PERMANENT_ON, "{out}");
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
