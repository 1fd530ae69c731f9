//! Drives the real `portier` binary through keygen → snapshot build →
//! inspect → decide → apply with `config/rules.example.toml`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn portier(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portier"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run portier")
}

fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = portier(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        ok_json(&["keygen", "--out", d]);
        ok_json(&["keygen", "--out", d, "--name", "other"]);
        let env = Self { dir };
        env.build(1, "snap.bin");
        env
    }
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
    fn build(&self, version: u64, out: &str) {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.example.toml");
        ok_json(&[
            "snapshot",
            "build",
            "--rules",
            rules.to_str().unwrap(),
            "--key",
            &self.p("central.key"),
            "--version",
            &version.to_string(),
            "--out",
            &self.p(out),
            "--issued-at",
            "2026-11-20T00:00:00Z",
            "--expires-in-days",
            "3650",
        ]);
    }
    fn decide(&self, door: &str, card: &str, at: &str) -> serde_json::Value {
        let (flag, v) = card.split_once(' ').unwrap();
        ok_json(&[
            "snapshot",
            "decide",
            &self.p("snap.bin"),
            "--pubkey",
            &self.p("central.pub"),
            "--door",
            door,
            flag,
            v,
            "--at",
            at,
        ])
    }
}

fn reason(v: &serde_json::Value) -> &str {
    if v["decision"] == "grant" {
        "grant"
    } else {
        v["reason"].as_str().unwrap()
    }
}

#[test]
fn keygen_writes_private_key_0600_and_never_overwrites() {
    let env = Env::new();
    let key = std::fs::read_to_string(env.p("central.key")).unwrap();
    assert_eq!(key.trim().len(), 64);
    assert_eq!(
        std::fs::read_to_string(env.p("central.pub"))
            .unwrap()
            .trim()
            .len(),
        64
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.p("central.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        !portier(&["keygen", "--out", env.dir.path().to_str().unwrap()])
            .status
            .success()
    );
}

#[test]
fn inspect_summarises_and_verifies() {
    let env = Env::new();
    let v = ok_json(&[
        "snapshot",
        "inspect",
        &env.p("snap.bin"),
        "--pubkey",
        &env.p("central.pub"),
    ]);
    assert_eq!(v["version"], 1);
    assert_eq!(v["verified"], true);
    assert_eq!(v["gateway_id"], "gw-university-1");
    assert_eq!(v["counts"]["credentials"], 6);
    assert_eq!(v["counts"]["blocked"], 1);
    assert_eq!(v["counts"]["doors"], 4);
    assert_eq!(v["counts"]["holidays"], 4);
    assert_eq!(v["counts"]["special_days"], 2);
    assert_eq!(v["counts"]["event_windows"], 1);
    assert_eq!(v["key_id"].as_str().unwrap().len(), 16);
    let bad = portier(&[
        "snapshot",
        "inspect",
        &env.p("snap.bin"),
        "--pubkey",
        &env.p("other.pub"),
    ]);
    assert!(!bad.status.success());
}

#[test]
fn decisions_of_the_example_building() {
    let env = Env::new();
    let cases = [
        // Staff after hours at the side entrance (Monday 21:00 local).
        (
            "side-entrance",
            "--card 42:1001",
            "2026-11-23T21:00:00+01:00",
            "grant",
        ),
        // Student in lab-1 on Sunday.
        (
            "lab-1",
            "--card 42:1002",
            "2026-11-29T14:00:00+01:00",
            "grant",
        ),
        // Student at the revolving door on Sunday.
        (
            "main-revolving",
            "--card 42:1002",
            "2026-11-29T14:00:00+01:00",
            "outside_schedule",
        ),
        // Student at the revolving door on a Monday morning.
        (
            "main-revolving",
            "--card 42:1002",
            "2026-11-23T10:00:00+01:00",
            "grant",
        ),
        // External after the agreement ended.
        (
            "side-entrance",
            "--card 42:1003",
            "2026-12-05T10:00:00+01:00",
            "expired",
        ),
        // Guest before the agreement starts.
        (
            "side-entrance",
            "--card 42:1004",
            "2026-11-25T10:00:00+01:00",
            "not_yet_valid",
        ),
        // Lost pass.
        (
            "side-entrance",
            "--card 42:1005",
            "2026-11-25T10:00:00+01:00",
            "blocked",
        ),
        // Office-hours-only card on a holiday (Friday 2026-12-25 10:00).
        (
            "side-entrance",
            "--card 42:1004",
            "2026-12-25T10:00:00+01:00",
            "outside_schedule",
        ),
        // Same card on an ordinary working day.
        (
            "side-entrance",
            "--card 42:1004",
            "2026-12-28T10:00:00+01:00",
            "grant",
        ),
        (
            "side-entrance",
            "--card 42:9999",
            "2026-11-25T10:00:00+01:00",
            "unknown_credential",
        ),
        // Raw bits: correct H10301 42:1001, then a parity error.
        (
            "side-entrance",
            "--raw 9501f480/26",
            "2026-11-25T10:00:00+01:00",
            "grant",
        ),
        (
            "side-entrance",
            "--raw 9501f4c0/26",
            "2026-11-25T10:00:00+01:00",
            "bad_format",
        ),
    ];
    for (door, card, at, want) in cases {
        let v = env.decide(door, card, at);
        assert_eq!(reason(&v), want, "{door} {card} {at}: {v}");
    }
}

/// `decide` says which day type applied and which event window holds the
/// door: the sports centre's hours by day type in the example rules.
#[test]
fn decide_explains_the_day_type_and_event_window() {
    let env = Env::new();
    let ask = |at: &str| env.decide("sports-entrance", "--card 42:1001", at);
    // An ordinary Tuesday: weekday hours 07:00-23:00.
    let v = ask("2027-07-13T07:30:00+02:00");
    assert_eq!(reason(&v), "grant", "{v}");
    assert_eq!(v["date"], "2027-07-13");
    assert!(v["day_type"].is_null(), "{v}");
    assert!(v.get("event_window").is_none(), "{v}");
    // The summer break (holiday_b): 08:00-22:00 instead.
    let v = ask("2027-07-20T07:30:00+02:00");
    assert_eq!(reason(&v), "outside_schedule", "{v}");
    assert_eq!(v["day_type"], "holiday_b");
    assert_eq!(v["day_name"], "Summer break: only the sports centre opens");
    assert_eq!(reason(&ask("2027-07-20T08:30:00+02:00")), "grant");
    // A listed holiday (Tuesday 27 April 2027): day type `holiday`.
    let v = ask("2027-04-27T09:30:00+02:00");
    assert_eq!(
        (reason(&v), &v["day_type"]),
        ("outside_schedule", &"holiday".into())
    );
    assert_eq!(reason(&ask("2027-04-27T10:30:00+02:00")), "grant");
    // The winter concert (event, Saturday 12 Dec 2026): 18:00-01:00, the
    // event window 19:00-23:00 holding the door unlocked; the interval
    // runs past midnight into Sunday.
    let v = ask("2026-12-12T19:30:00+01:00");
    assert_eq!(reason(&v), "grant", "{v}");
    assert_eq!(v["day_type"], "event");
    assert_eq!(v["event_window"]["window"], "2026-12-12T19:00/23:00");
    assert_eq!(v["event_window"]["mode"], "unlocked");
    assert_eq!(v["event_window"]["name"], "Winter concert");
    let v = ask("2026-12-13T00:30:00+01:00");
    assert_eq!(reason(&v), "grant", "{v}");
    assert!(v["day_type"].is_null(), "Sunday is ordinary: {v}");
    assert_eq!(
        reason(&ask("2026-12-12T12:00:00+01:00")),
        "outside_schedule"
    );
}

#[test]
fn tampered_snapshot_and_wrong_key_fail() {
    let env = Env::new();
    let mut bytes = std::fs::read(env.p("snap.bin")).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0x01;
    std::fs::write(env.p("tampered.bin"), &bytes).unwrap();
    let args = |file: &str, key: &str| {
        portier(&[
            "snapshot",
            "decide",
            &env.p(file),
            "--pubkey",
            &env.p(key),
            "--door",
            "side-entrance",
            "--card",
            "42:1001",
            "--at",
            "2026-11-25T10:00:00+01:00",
        ])
    };
    let t = args("tampered.bin", "central.pub");
    assert!(!t.status.success());
    let w = args("snap.bin", "other.pub");
    assert!(!w.status.success());
    assert!(String::from_utf8_lossy(&w.stderr).contains("unknown key"));
}

#[test]
fn apply_refuses_rollback() {
    let env = Env::new();
    env.build(2, "snap2.bin");
    let cfg = env.p("portier.toml");
    std::fs::write(
        &cfg,
        "[gateway]\nid = \"gw-university-1\"\nbuilding = \"university-main\"\nstate_dir = \"state\"\n[trust]\ncentral_keys = [\"central.pub\"]\n",
    )
    .unwrap();
    let a = ok_json(&["snapshot", "apply", &env.p("snap2.bin"), "--config", &cfg]);
    assert_eq!(a["version"], 2);
    let again = ok_json(&["snapshot", "apply", &env.p("snap2.bin"), "--config", &cfg]);
    assert_eq!(again["unchanged"], true);
    let old = portier(&["snapshot", "apply", &env.p("snap.bin"), "--config", &cfg]);
    assert!(!old.status.success());
    assert!(String::from_utf8_lossy(&old.stderr).contains("rollback"));
    // A delta on top of version 2 blocks the staff card.
    let changes = env.p("changes.toml");
    std::fs::write(
        &changes,
        "gateway_id = \"gw-university-1\"\nbuilding = \"university-main\"\n[[blocks]]\ncard = { format = \"h10301\", facility = 42, number = 1001 }\nreason = \"stolen\"\n",
    )
    .unwrap();
    ok_json(&[
        "snapshot",
        "delta",
        "--base-version",
        "2",
        "--changes",
        &changes,
        "--key",
        &env.p("central.key"),
        "--version",
        "3",
        "--out",
        &env.p("d3.bin"),
    ]);
    let d = ok_json(&["snapshot", "apply", &env.p("d3.bin"), "--config", &cfg]);
    assert_eq!(d["version"], 3);
    // Delivered again: a no-op.
    let again = ok_json(&["snapshot", "apply", &env.p("d3.bin"), "--config", &cfg]);
    assert_eq!(again["unchanged"], true);
    // A delta on an older base needs a full snapshot.
    ok_json(&[
        "snapshot",
        "delta",
        "--base-version",
        "1",
        "--changes",
        &changes,
        "--key",
        &env.p("central.key"),
        "--version",
        "4",
        "--out",
        &env.p("d4.bin"),
    ]);
    let stale = portier(&["snapshot", "apply", &env.p("d4.bin"), "--config", &cfg]);
    assert!(!stale.status.success());
    assert!(String::from_utf8_lossy(&stale.stderr).contains("full snapshot"));
    let _: PathBuf = env.dir.path().join("state");
}

#[test]
fn toml_error_names_file_and_line() {
    let env = Env::new();
    let rules = env.p("bad.toml");
    std::fs::write(&rules, "gateway_id = \"g\"\nbuilding = \"b\"\ntime_zone = \"Europe/Amsterdam\"\nholidays = [2026]\n").unwrap();
    let out = portier(&[
        "snapshot",
        "build",
        "--rules",
        &rules,
        "--key",
        &env.p("central.key"),
        "--version",
        "1",
        "--out",
        &env.p("x.bin"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:4: key `holidays`"), "{err}");
}
