//! `portier run` under a systemd-like supervisor: `NOTIFY_SOCKET` and
//! `WATCHDOG_USEC` set, a test listener in systemd's place. READY=1 comes
//! once the rules store is open and the bus is open, watchdog pings follow
//! while the loops make progress, SIGHUP reloads what is safe and names
//! what needs a restart, SIGTERM gives STOPPING=1 and a clean exit.
//! The reader is Portier's own simulator over a socat PTY pair.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use support::notify::recv_until;
use support::{PtyPair, portier_bin};

#[test]
fn ready_then_watchdog_pings_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pty = PtyPair::new();
    let key = support::key_file(d, "pd.scbk", &[0x5a; 16]);
    let _pd = support::simulated_reader(&pty.a, &key);
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
    let log = d.join("stderr.log");
    let mut daemon = Command::new(portier_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
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
    // SIGHUP: the log level applies in place, a door change needs a restart.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("[log]\nlevel = \"debug\"\n{text}unlock_seconds = 7\n"),
    )
    .unwrap();
    signal(daemon.id(), "HUP");
    let logged = |what: &str| {
        let log = log.clone();
        let what = what.to_owned();
        move || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(&what)
        }
    };
    support::wait_for(t, "reload report", logged("need a restart"));
    let text = std::fs::read_to_string(&log).unwrap();
    let report = text.lines().find(|l| l.contains("need a restart")).unwrap();
    assert!(
        report.contains("door") && !report.contains("log,"),
        "{report}"
    );
    // A broken config is refused; the daemon keeps running.
    std::fs::write(&config, "[gateway]\nid = 3\n").unwrap();
    signal(daemon.id(), "HUP");
    support::wait_for(t, "refused reload", logged("config reload refused"));
    assert!(daemon.try_wait().unwrap().is_none(), "still running");
    signal(daemon.id(), "TERM");
    recv_until(&sock, t, "STOPPING=1", |m| m.contains("STOPPING=1"));
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// Send a signal, as systemd does (TERM to stop, HUP to reload).
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
