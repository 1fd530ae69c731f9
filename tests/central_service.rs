//! `portier central` under a systemd-like supervisor (`NOTIFY_SOCKET`
//! and `WATCHDOG_USEC` set, a test socket in systemd's place), against a
//! real PostgreSQL and a real Mosquitto over mTLS: READY=1 comes once the
//! schema is migrated and the broker connection is up, watchdog pings
//! follow, SIGTERM gives STOPPING=1 and a clean exit. The unit itself is
//! checked in tests/systemd_unit.rs.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use support::broker::Broker;
use support::central::write_config;
use support::notify::recv_until;
use support::postgres::Postgres;

#[test]
fn central_is_ready_after_migrating_and_connecting_then_pings_then_stops() {
    let pg = Postgres::start();
    let broker = Broker::start(&["gw-a"]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &broker,
        &pg,
        "central-1",
        &broker.pki().join("central-signing.key"),
    );
    let notify = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    let log = dir.path().join("central.log");
    let mut central = Command::new(support::portier_bin())
        .args(["central", "--config"])
        .arg(&config)
        .arg("run")
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000")
        .env("RUST_LOG", "portier=info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let t = Duration::from_secs(30);
    let ready = recv_until(&sock, t, "READY=1", |m| m.contains("READY=1"));
    let last = ready.last().unwrap();
    assert!(last.contains("STATUS=schema "), "{ready:?}");
    // Ready means migrated: the schema is there when READY=1 arrives.
    assert!(pg.count("SELECT count(*) FROM central_schema") >= 1);
    let mut pings = 0;
    recv_until(&sock, t, "three watchdog pings", |m| {
        pings += usize::from(m.contains("WATCHDOG=1"));
        pings >= 3
    });
    let status = Command::new("kill")
        .args(["-TERM", &central.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    recv_until(&sock, t, "STOPPING=1", |m| m.contains("STOPPING=1"));
    let end = Instant::now() + t;
    let exit = loop {
        if let Some(s) = central.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "central did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        exit.success(),
        "{exit:?}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
