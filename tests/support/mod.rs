//! Shared test support: pseudo-terminal pairs from socat, child processes
//! that speak JSON lines, and waiting on conditions with deadlines.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::disallowed_methods)] // tests wait on real time

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with libosdp, installed by `scripts/test` into `.venv`.
pub fn python() -> PathBuf {
    let path = std::env::var_os("PORTIER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} not found: run scripts/test once (it creates .venv with libosdp) or set PORTIER_PYTHON",
        path.display()
    );
    path
}

pub fn portier_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portier"))
}

/// Poll `cond` until it holds or `limit` passes.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// Two linked pseudo-terminals, `a` and `b`, made by socat.
pub struct PtyPair {
    pub dir: tempfile::TempDir,
    pub a: PathBuf,
    pub b: PathBuf,
    child: Child,
}

impl PtyPair {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat (installed by scripts/test)");
        wait_for(Duration::from_secs(5), "socat PTY links", || {
            a.exists() && b.exists()
        });
        Self { dir, a, b, child }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process that prints JSON lines (and takes JSON lines on stdin).
pub struct JsonChild {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl JsonChild {
    pub fn spawn(program: &Path, args: &[&str]) -> Self {
        Self::spawn_env(program, args, &[])
    }

    /// As [`JsonChild::spawn`], with these environment variables set.
    pub fn spawn_env(program: &Path, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        let stderr_buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr_buf.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr: stderr_buf,
        }
    }

    pub fn send(&mut self, v: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    }

    /// The first line (seen or new) matching `pred`, within `limit`.
    pub fn expect(&mut self, limit: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "timed out after {limit:?} waiting for {what}; saw {:?}; stderr: {}",
                    self.seen,
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Lines seen so far plus any waiting, without blocking.
    pub fn drain(&mut self) -> &[Value] {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
        &self.seen
    }

    /// Wait for the process to exit within `limit`; its status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "process still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for JsonChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Write a key file (32 hex digits) into `dir`.
pub fn key_file(dir: &Path, name: &str, key: &[u8; 16]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, hex::encode(key)).unwrap();
    path
}

/// A PD core behind an in-memory stream: returns the CP's end of the
/// stream, the PD's events, and a sender to present cards. With `echo`, the
/// far end first echoes every byte (a 2-wire adapter).
pub fn memory_pd(
    config: portier::osdp::peripheral::PeripheralConfig,
    echo: bool,
) -> (
    tokio::io::DuplexStream,
    tokio::sync::mpsc::UnboundedReceiver<portier::osdp::peripheral::PeripheralEvent>,
    tokio::sync::mpsc::UnboundedSender<portier::osdp::message::RawCard>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (cp_side, mut wire) = tokio::io::duplex(4096);
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let (cards, mut card_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut pd = portier::osdp::peripheral::Peripheral::new(config);
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                n = wire.read(&mut buf) => {
                    let Ok(n) = n else { return };
                    if n == 0 { return; }
                    if echo && wire.write_all(&buf[..n]).await.is_err() { return; }
                    pd.handle_input(&buf[..n], &mut |b: &mut [u8]| b.fill(5));
                    while let Some(reply) = pd.poll_transmit() {
                        if wire.write_all(&reply).await.is_err() { return; }
                    }
                    while let Some(e) = pd.poll_event() {
                        let _ = events_tx.send(e);
                    }
                }
                Some(card) = card_rx.recv() => pd.present_card(card),
            }
        }
    });
    (cp_side, events, cards)
}

/// `portier demo --once --pace-ms 0 --dir DIR` with extra environment; its
/// output.
pub fn run_demo(dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(portier_bin())
        .args(["demo", "--once", "--pace-ms", "0", "--dir"])
        .arg(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Run `portier ARGS` to success; its standard output.
pub fn portier_ok(args: &[&str]) -> String {
    let out = Command::new(portier_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "portier {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Portier's reader simulator (Secure Channel with `key`) at address 1 on
/// `port`, at 115200 baud.
pub fn simulated_reader(port: &Path, key: &Path) -> JsonChild {
    JsonChild::spawn(
        &portier_bin(),
        &[
            "reader",
            "simulate",
            "--port",
            port.to_str().unwrap(),
            "--address",
            "1",
            "--baud",
            "115200",
            "--scbk-file",
            key.to_str().unwrap(),
        ],
    )
}

/// A building-wide credential (level `building-in-office-hours`, valid
/// until `until`) for each key: the bulk of a campus-sized snapshot.
#[allow(dead_code)] // used by some test crates only
pub fn bulk_credentials(
    keys: impl Iterator<Item = portier::rules::CredentialKey>,
    until: jiff::Timestamp,
) -> impl Iterator<Item = portier::rules::Credential> {
    keys.map(move |key| portier::rules::Credential {
        key,
        display_name: None,
        access_levels: vec!["building-in-office-hours".into()],
        valid_from: None,
        valid_until: Some(until),
        blocked: None,
        pin: None,
        extended_unlock: false,
        lockdown_exempt: false,
    })
}

/// The config body of one building with one door, the side entrance, and
/// Portier's reader simulator (`reader.scbk`) on `port`; central's key from
/// `pki`; `extra` goes after `[trust]` (e.g. a `[journal]` section).
#[allow(dead_code)] // used by some test crates only
pub fn side_entrance_config(gateway: &str, pki: &Path, port: &Path, extra: &str) -> String {
    format!(
        "[gateway]\nid = \"{gateway}\"\nbuilding = \"university-main\"\nstate_dir = \"state\"\n\
         [trust]\ncentral_keys = [{:?}]\n{extra}\
         [[bus]]\nname = \"bus-1\"\nport = {:?}\n\
         [[bus.pd]]\nname = \"side-reader\"\naddress = 1\nrole = \"reader\"\nkey_file = \"reader.scbk\"\n\
         [[door]]\nid = \"side-entrance\"\nkind = \"standard\"\n\
         readers = [{{ pd = \"side-reader\", direction = \"in\" }}]\n\
         strike = {{ pd = \"side-reader\", output = 0 }}\n",
        pki.join("central-signing.pub").display().to_string(),
        port.display().to_string()
    )
}

/// The `q` quantile of sorted durations (benches).
#[allow(dead_code)] // used by some test crates only
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// A memory field of `/proc/<process>/status` (`VmRSS:`, `VmHWM:`), bytes;
/// `process` is a pid or `self` (benches).
#[allow(dead_code)] // used by some test crates only
pub fn proc_memory(process: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

pub mod broker;
pub mod central;
pub mod gateway;
pub mod notify;
pub mod postgres;
