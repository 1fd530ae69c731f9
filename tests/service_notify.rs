//! `portier run` under a systemd-like supervisor: `NOTIFY_SOCKET` and
//! `WATCHDOG_USEC` set, a test listener in systemd's place. READY=1 comes
//! once the rules store is open and the bus is open, watchdog pings follow
//! while the loops make progress, SIGTERM gives STOPPING=1 and a clean exit.
//! The reader is Portier's own simulator over a socat PTY pair.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{JsonChild, PtyPair, portier_bin};

fn recv_until(
    sock: &UnixDatagram,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&str) -> bool,
) -> Vec<String> {
    let end = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {what}; got {seen:?}"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let stop = done(&msg);
            seen.push(msg);
            if stop {
                return seen;
            }
        }
    }
}

#[test]
fn ready_then_watchdog_pings_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pty = PtyPair::new();
    let key = support::key_file(d, "pd.scbk", &[0x5a; 16]);
    let _pd = JsonChild::spawn(
        &portier_bin(),
        &[
            "reader",
            "simulate",
            "--port",
            pty.a.to_str().unwrap(),
            "--address",
            "1",
            "--baud",
            "115200",
            "--scbk-file",
            key.to_str().unwrap(),
        ],
    );
    let out = Command::new(portier_bin())
        .args(["keygen", "--out"])
        .arg(d)
        .output()
        .unwrap();
    assert!(out.status.success());
    let config = d.join("portier.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"gw\"\nbuilding = \"b\"\nstate_dir = \"state\"\n\
             [trust]\ncentral_keys = [\"central.pub\"]\n\
             [[bus]]\nname = \"bus-1\"\nport = {:?}\n\
             [[bus.pd]]\nname = \"r1\"\naddress = 1\nrole = \"reader\"\nkey_file = \"pd.scbk\"\n\
             [[door]]\nid = \"d\"\nkind = \"standard\"\nreaders = [{{ pd = \"r1\", direction = \"in\" }}]\n\
             strike = {{ pd = \"r1\", output = 0 }}\n",
            pty.b.display().to_string()
        ),
    )
    .unwrap();
    let notify = d.join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let mut daemon = Command::new(portier_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Duration::from_secs(15);
    let ready = recv_until(&sock, t, "READY=1", |m| m.contains("READY=1"));
    assert!(
        ready
            .last()
            .unwrap()
            .contains("STATUS=rules version none, 1 bus(es) open"),
        "{ready:?}"
    );
    let mut pings = 0;
    recv_until(&sock, t, "three watchdog pings", |m| {
        pings += usize::from(m.contains("WATCHDOG=1"));
        pings >= 3
    });
    terminate(daemon.id());
    recv_until(&sock, t, "STOPPING=1", |m| m.contains("STOPPING=1"));
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// SIGTERM, as systemd stops a service.
fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
