//! A whole building under `portier run` against three **libosdp PDs**
//! (Secure Channel on) on a pseudo-terminal bus: the building of
//! `config/portier.example.toml` — a revolving entrance (PD 1), a side
//! entrance (PD 2) and a lab door (PD 3) — with the example rules signed by
//! a fresh key and applied with `portier snapshot apply`, exactly as a
//! technician would.
//!
//! Determinism: the daemon reads the real clock, so the test rules differ
//! from the example in one place only: the schedule that means office hours
//! (for presence and the revolving door's free rotation) is one that is
//! never open. Every scenario therefore runs "after hours" whenever CI runs.
//! The admin page listens on a free loopback port.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{JsonChild, PtyPair, portier_bin, python, repo, wait_for};

pub const T: Duration = Duration::from_secs(15);
pub const KEYS: [&str; 3] = [
    "4A1C7E0D9B3F5A6C8E2D1B0F7A9C3E5D",
    "5B2D8F1E0C4A6B7D9F3E2C1A8B0D4F6E",
    "6C3E9A2F1D5B7C8E0A4F3D2B9C1E5A7F",
];
pub const STAFF: &str = "h10301:42:1001";
pub const LOST: &str = "h10301:42:1005";
/// The example rules' security guard: card + PIN 2468 (duress PIN 2469).
pub const GUARD: &str = "h10301:42:1006";

/// OSDP output control codes as libosdp reports them.
pub const PERMANENT_OFF: u64 = 1;
pub const PERMANENT_ON: u64 = 2;
pub const TIMED_ON: u64 = 5;

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub _pty: PtyPair,
    pub pds: JsonChild,
    pub daemon: Option<JsonChild>,
    pub config: PathBuf,
    pub socket: PathBuf,
    /// Admin page logins: (user, password).
    pub operator: (String, String),
    pub viewer: (String, String),
}

/// A login with a random password, hashed as `portier admin passwd` does.
fn login(name: &str, role: portier::admin::Role) -> (portier::admin::UserEntry, (String, String)) {
    let mut random = [0u8; 20];
    let mut salt = [0u8; 16];
    getrandom::fill(&mut random).unwrap();
    getrandom::fill(&mut salt).unwrap();
    let (entry, password) =
        portier::admin::auth::generated_login(name, role, &random, &salt).unwrap();
    (entry, (name.to_owned(), password))
}

pub fn card(key: &str) -> Value {
    let key: portier::rules::CredentialKey = key.parse().unwrap();
    let (bytes, bits) = portier::rules::wiegand::encode(&key).unwrap();
    json!({"data": hex::encode(bytes), "bits": bits})
}

fn portier(args: &[&str]) -> String {
    super::portier_ok(args)
}

impl Gateway {
    pub fn start() -> Self {
        Self::start_with_rules(|rules| rules)
    }

    /// [`Gateway::start`] with the rules text changed by `edit` (after the
    /// test's own changes) before they are signed.
    pub fn start_with_rules(edit: impl FnOnce(String) -> String) -> Self {
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
        // The PDs take files (firmware updates) into `received/`.
        let received = d.join("received");
        std::fs::create_dir(&received).unwrap();
        args.push("--files".into());
        args.push(received.display().to_string());
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
        std::fs::write(d.join("rules.toml"), edit(rules)).unwrap();
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
        let (op, operator) = login("op", portier::admin::Role::Operator);
        let (view, viewer) = login("view", portier::admin::Role::Viewer);
        let users = portier::admin::UsersFile {
            users: vec![op, view],
            tokens: Vec::new(),
        };
        std::fs::write(d.join("admin-users.toml"), toml::to_string(&users).unwrap()).unwrap();
        let socket = d.join("control.sock");
        let mut gw = Self {
            dir,
            _pty: pty,
            pds,
            daemon: None,
            config,
            socket,
            operator,
            viewer,
        };
        gw.run_daemon();
        gw
    }

    /// Start `portier run` and wait until every PD is online in SC.
    pub fn run_daemon(&mut self) {
        self.run_daemon_env(&[]);
    }

    /// As [`Gateway::run_daemon`], with these environment variables (e.g.
    /// libfaketime's, to move the daemon's system clock).
    pub fn run_daemon_env(&mut self, env: &[(&str, String)]) {
        let _ = std::fs::remove_file(&self.socket);
        let daemon = JsonChild::spawn_env(
            &portier_bin(),
            &[
                "run",
                "--config",
                self.config.to_str().unwrap(),
                "--control-socket",
                self.socket.to_str().unwrap(),
            ],
            env,
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

    /// The gateway's end of the bus (for a reader tool while the daemon
    /// is stopped).
    pub fn port(&self) -> &Path {
        &self._pty.b
    }

    pub fn kill_daemon(&mut self) {
        let mut daemon = self.daemon.take().expect("running");
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();
    }

    pub fn ask(&self, request: Value) -> Value {
        let mut stream = UnixStream::connect(&self.socket).expect("control socket");
        writeln!(stream, "{request}").unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    pub fn act(&self, action: Value) {
        let r = self.ask(action.clone());
        assert_eq!(r["ok"], true, "{action} → {r}");
    }

    pub fn events(&self) -> Vec<Value> {
        let r = self.ask(json!({"query": "events", "after": 0, "limit": 10000}));
        r["result"].as_array().cloned().unwrap_or_default()
    }

    /// Wait for a journaled event matching `pred`.
    pub fn expect_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
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

    pub fn badge(&mut self, address: u8, key: &str) {
        let mut op = card(key);
        op["op"] = "card".into();
        op["address"] = address.into();
        self.pds.send(op);
    }

    /// Keys typed at the first reader of the PD at `address`: digits, and
    /// `#` as OSDP sends it (0x0D).
    pub fn keypad(&mut self, address: u8, keys: &str) {
        let digits = keys.replace('#', "\r");
        self.pds
            .send(json!({"op": "keypad", "address": address, "digits": digits}));
    }

    pub fn input(&mut self, address: u8, input: u8, active: bool) {
        self.pds
            .send(json!({"op": "input", "address": address, "input": input, "active": active}));
    }

    /// Output commands the PD at `address` received since line `from` of
    /// the PD log.
    pub fn outputs_since(&mut self, from: usize, address: u8) -> Vec<Value> {
        self.pds.drain()[from..]
            .iter()
            .filter(|v| v["event"] == "output" && v["address"] == address)
            .cloned()
            .collect()
    }

    /// Wait for a PD log line after line `from` matching `pred`.
    pub fn expect_pd(&mut self, from: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
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

    pub fn mark(&mut self) -> usize {
        self.pds.drain().len()
    }

    /// The admin page's base URL and certificate fingerprint, from the
    /// daemon's `admin_started` event (it listens on a free port).
    pub fn admin(&self) -> (String, String) {
        let e = self.expect_event("admin_started", |e| e["type"] == "admin_started");
        let listen = e["listen"].as_str().unwrap().to_owned();
        let port = listen.rsplit(':').next().unwrap();
        (
            format!("https://127.0.0.1:{port}"),
            e["fingerprint"].as_str().unwrap().to_owned(),
        )
    }

    /// What the daemon says a door is doing (control socket `doors`).
    pub fn door(&self, id: &str) -> Value {
        let doors = self.ask(json!({"query": "doors"}));
        doors["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap_or_else(|| panic!("no door {id}: {doors}"))
            .clone()
    }

    pub fn state(&self) -> &Path {
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

/// libfaketime, as Debian's `faketime` package installs it.
#[allow(dead_code)] // used by some test crates only
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The environment that moves a process's system clock by the offset in
/// `offset_file` (re-read at every clock read), leaving its monotonic
/// clock alone.
#[allow(dead_code)] // used by some test crates only
pub fn faketime(offset_file: &Path) -> Vec<(&'static str, String)> {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} missing: scripts/test installs the faketime package"
    );
    vec![
        ("LD_PRELOAD", LIBFAKETIME.into()),
        ("FAKETIME_TIMESTAMP_FILE", offset_file.display().to_string()),
        ("FAKETIME_NO_CACHE", "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
    ]
}

pub fn is_release(v: &Value) -> bool {
    matches!(v["control_code"].as_u64(), Some(TIMED_ON | PERMANENT_ON))
}
