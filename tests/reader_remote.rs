//! A reader's firmware and key from the control room, end to end: `portier
//! central` with PostgreSQL and Mosquitto (mTLS), `portier run` with three
//! libosdp PDs in Secure Channel on one pseudo-terminal bus.
//! - `portier central reader-update`: the file (hash in the signed
//!   command, bytes on the firmware topic) arrives byte-identical at the
//!   PD while a card at another reader of the same bus is granted; the
//!   gateway's `reader_update_*` events reach PostgreSQL;
//! - a file whose hash is not the command's never opens a transfer at the
//!   PD (`reader_update_failed`, `hash_mismatch`);
//! - a second job on a busy bus is refused `busy`;
//! - `portier central rotate-key`: the PD takes a new key in the session,
//!   the gateway's key file holds it (0600), the old key is refused.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::broker::Broker;
use support::central::{CentralProc, write_config};
use support::gateway::{Gateway, KEYS, STAFF, T};
use support::postgres::Postgres;
use support::{portier_bin, wait_for};

const GW: &str = "gw-university-1";

fn building(broker: &Broker) -> Gateway {
    let mut gw = Gateway::start();
    gw.kill_daemon();
    let text = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(&gw.config, format!("{text}\n{}", broker.uplink_section(GW))).unwrap();
    gw.run_daemon();
    gw
}

/// PostgreSQL, Mosquitto, one building whose three readers central knows
/// online, and `portier central` running.
struct Site {
    pg: Postgres,
    gw: Gateway,
    config: PathBuf,
    key: PathBuf,
    _service: CentralProc,
    _broker: Broker,
}

impl Site {
    fn start() -> Self {
        let pg = Postgres::start();
        let broker = Broker::start(&[GW]);
        let gw = building(&broker);
        let key = gw.dir.path().join("central.key");
        let config = write_config(gw.dir.path(), &broker, &pg, "central-1", &key);
        let mut service = CentralProc::spawn(&config, &[]);
        service.wait_connected();
        wait_for(T, "the gateway's readers at central", || {
            pg.count("SELECT count(*) FROM readers WHERE online") == 3
        });
        Self {
            pg,
            gw,
            config,
            key,
            _service: service,
            _broker: broker,
        }
    }
}

/// `portier central reader-update` of `data` to `reader`, in the
/// background.
fn reader_update(
    config: &Path,
    gw: &Gateway,
    reader: &str,
    data: &[u8],
    extra: &[&str],
) -> std::process::Child {
    let file = gw.dir.path().join(format!("{reader}.bin"));
    std::fs::write(&file, data).unwrap();
    Command::new(portier_bin())
        .args(["central", "--config", config.to_str().unwrap()])
        .args(["reader-update", "--gateway", GW, "--reader", reader])
        .args(["--file", file.to_str().unwrap(), "--timeout", "300"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn central(config: &Path, args: &[&str]) -> Output {
    Command::new(portier_bin())
        .args(["central", "--config", config.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn firmware(len: usize, seed: u64) -> Vec<u8> {
    let mut n = seed;
    (0..len)
        .map(|_| {
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (n >> 56) as u8
        })
        .collect()
}

/// Publish a signed `reader_update` for `digest_of` and, apart, `data` as
/// its file: what a central nobody here wrote might do.
fn send_by_hand(config: &Path, key: &Path, id: &str, digest_of: &[u8], data: Vec<u8>) {
    use portier::action::{FileDigest, ReaderAction};
    let central = portier::central::CentralConfig::load(config).unwrap();
    let seed = std::fs::read_to_string(key).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(
        &hex::decode(seed.trim()).unwrap().try_into().unwrap(),
    );
    let now = jiff::Timestamp::now();
    let command = portier::command::Command {
        id: id.into(),
        gateway: GW.into(),
        issued_at: now,
        expires_at: now + jiff::SignedDuration::from_mins(5),
        action: ReaderAction::ReaderUpdate {
            reader: "entrance-reader".into(),
            sha256: FileDigest::of(digest_of),
            bytes: digest_of.len() as u64,
            file_type: 1,
            vendor: None,
            model: None,
        }
        .into(),
    };
    let signed = portier::command::sign_command(&key, &command);
    let file = serde_cbor::to_vec(&portier::uplink::wire::FirmwareFile {
        command: id.into(),
        data,
    })
    .unwrap();
    let prefix = format!("portier/v1/{GW}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(portier::central::driver::publish_blobs(
        &central,
        vec![
            (format!("{prefix}/firmware"), file, false),
            (format!("{prefix}/command"), signed, false),
        ],
    ))
    .unwrap();
}

#[test]
fn central_updates_a_reader_s_firmware_and_a_wrong_file_never_reaches_it() {
    let mut site = Site::start();
    let Site {
        pg,
        gw,
        config,
        key,
        ..
    } = &mut site;

    // A file that is not the command's (sent first, as a hostile or buggy
    // central might): refused, and the PD never sees a transfer.
    let right = firmware(4096, 7);
    send_by_hand(config, key, "by-hand-1", &right, firmware(4096, 8));
    wait_for(T, "hash_mismatch at central", || {
        pg.count(
            "SELECT count(*) FROM events WHERE type = 'reader_update_failed' \
             AND event->>'command' = 'by-hand-1' AND event->>'reason' = 'hash_mismatch'",
        ) == 1
    });
    assert!(
        !gw.pds.drain().iter().any(|v| v["event"] == "file_open"),
        "a file with the wrong hash opened a transfer"
    );

    // The real thing, through the verb, with the reader's identity checked.
    let data = firmware(96 * 1024, 1);
    let update = reader_update(
        config,
        gw,
        "entrance-reader",
        &data,
        &["--vendor", "b2a100", "--model", "1"],
    );
    gw.pds.expect(T, "the transfer opened at PD 1", |v| {
        v["event"] == "file_open"
    });
    // Another job on the same bus meanwhile: refused, the first goes on.
    let busy = central(
        config,
        &["rotate-key", "--gateway", GW, "--reader", "side-reader"],
    );
    assert!(!busy.status.success(), "{}", text(&busy));
    assert!(text(&busy).contains("\"busy\""), "{}", text(&busy));
    // A card at another reader of the bus is decided while bytes move.
    gw.badge(2, STAFF);
    gw.expect_event("a grant during the transfer", |e| {
        e["type"] == "access_granted" && e["credential"] == STAFF
    });
    let out = update.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said: Vec<String> = lines(&out)
        .iter()
        .filter_map(|l| l["type"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        said.first().map(String::as_str),
        Some("reader_update_started")
    );
    assert_eq!(
        said.last().map(String::as_str),
        Some("reader_update_finished")
    );
    assert!(
        said.iter().any(|t| t == "reader_update_progress"),
        "{said:?}"
    );
    let received = gw.pds.expect(T, "file received at PD 1", |v| {
        v["event"] == "file_received"
    });
    assert_eq!(received["address"], 1);
    let got = std::fs::read(gw.dir.path().join("received/pd1-file1.bin")).unwrap();
    assert!(got == data, "the file at the PD differs from the one sent");
    let finished = lines(&out)
        .into_iter()
        .find(|l| l["type"] == "reader_update_finished")
        .unwrap();
    eprintln!(
        "remote update: {} bytes in {} ms at 115 200 baud (libosdp PD, Secure Channel, two more PDs on the bus)",
        finished["bytes"], finished["millis"]
    );
    // Central stored the whole story, in order.
    assert_eq!(
        pg.count(
            "SELECT count(*) FROM events WHERE type = 'reader_update_finished' \
             AND event->>'reader' = 'entrance-reader' AND (event->>'bytes')::int = 98304"
        ),
        1
    );
}

#[test]
fn central_rotates_a_reader_s_key_and_the_old_key_is_refused() {
    let mut site = Site::start();
    let Site { pg, gw, config, .. } = &mut site;

    let out = central(
        config,
        &[
            "rotate-key",
            "--gateway",
            GW,
            "--reader",
            "side-reader",
            "--timeout",
            "60",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("reader_key_rotated"), "{}", text(&out));
    let key_file = gw.dir.path().join("pd2.scbk");
    let new = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_uppercase();
    assert_ne!(new, KEYS[1]);
    assert!(!gw.dir.path().join("pd2.scbk.next").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let keyset = gw
        .pds
        .expect(T, "KEYSET at PD 2", |v| v["event"] == "keyset");
    assert_eq!(keyset["address"], 2);
    assert_eq!(keyset["scbk"], new.as_str());
    // No key in what central stored or the gateway logged.
    let stored = pg.count(&format!(
        "SELECT count(*) FROM events WHERE upper(event::text) LIKE '%{}%'",
        &new[..16]
    ));
    assert_eq!(stored, 0);
    // The reader is back in Secure Channel on the new key…
    wait_for(T, "PD 2 back in Secure Channel", || {
        let r = gw.ask(serde_json::json!({"query": "buses"}));
        r["result"]["bus-1"][1]["online"] == true && r["result"]["bus-1"][1]["secure"] == true
    });
    // …and after a restart of the gateway, which reads only the new key.
    gw.kill_daemon();
    gw.run_daemon();
    // The old key no longer opens a session with the reader.
    gw.kill_daemon();
    let old = gw.dir.path().join("old.scbk");
    std::fs::write(&old, KEYS[1]).unwrap();
    let probe = |key: &Path| {
        let out = Command::new(portier_bin())
            .args(["reader", "probe", "--port"])
            .arg(gw.port())
            .args(["--address", "2", "--baud", "115200", "--scbk-file"])
            .arg(key)
            .args(["--once", "--json", "--timeout", "10"])
            .output()
            .unwrap();
        out.status.success() && text(&out).contains("\"secure\":true")
    };
    assert!(!probe(&old), "the old key still opens a session");
    assert!(probe(&key_file), "the new key does not open a session");
}

#[test]
fn an_update_cut_by_a_gateway_restart_starts_again_and_arrives_whole() {
    let mut site = Site::start();
    let Site { pg, gw, config, .. } = &mut site;
    let data = firmware(96 * 1024, 3);
    let update = reader_update(config, gw, "lab-reader", &data, &[]);
    gw.expect_event("a tenth of the file confirmed", |e| {
        e["type"] == "reader_update_progress" && e["reader"] == "lab-reader"
    });
    // Power cut: the process dies mid-file.
    gw.kill_daemon();
    gw.run_daemon();
    let out = update.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("restarted during the update"),
        "{}",
        text(&out)
    );
    let got = std::fs::read(gw.dir.path().join("received/pd3-file1.bin")).unwrap();
    assert!(got == data, "the file at the PD differs from the one sent");
    // Started twice (before and after the restart), finished once.
    assert_eq!(
        pg.count("SELECT count(*) FROM events WHERE type = 'reader_update_started'"),
        2
    );
    assert_eq!(
        pg.count("SELECT count(*) FROM events WHERE type = 'reader_update_finished'"),
        1
    );
    // Nothing kept once done.
    let kept = gw.dir.path().join("state/upkeep");
    wait_for(T, "the kept job removed", || {
        std::fs::read_dir(&kept).map_or(true, |d| d.count() == 0)
    });
}

/// The daemon dies (aborted, as a power cut would) after a step of a
/// remote rotation; restarted, it reaches the reader with the key files it
/// left, settles them, and says so.
#[test]
fn a_gateway_dying_mid_rotation_still_reaches_the_reader_and_settles_its_keys() {
    let mut site = Site::start();
    let Site { pg, gw, config, .. } = &mut site;
    let key_file = gw.dir.path().join("pd2.scbk");
    let next = gw.dir.path().join("pd2.scbk.next");
    for (point, new_key) in [("next_written", false), ("new_session", true)] {
        let before = std::fs::read_to_string(&key_file)
            .unwrap()
            .trim()
            .to_uppercase();
        gw.kill_daemon();
        gw.run_daemon_env(&[("PORTIER_TEST_CRASH_AT", point.to_owned())]);
        wait_for(T, "the gateway online at central", || {
            pg.count(&format!(
                "SELECT count(*) FROM gateways WHERE id = '{GW}' AND state = 'online'"
            )) == 1
        });
        let rotation = Command::new(portier_bin())
            .args(["central", "--config", config.to_str().unwrap()])
            .args(["rotate-key", "--gateway", GW, "--reader", "side-reader"])
            .args(["--timeout", "60"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let daemon = gw.daemon.as_mut().unwrap();
        let died = daemon.wait_exit(T);
        assert!(!died.success(), "{point}: the daemon was to abort");
        assert!(next.exists(), "{point}: the new key is on disk first");
        // Restarted without the hook: every reader online in Secure Channel.
        gw.daemon = None;
        gw.run_daemon();
        let out = rotation.wait_with_output().unwrap();
        assert!(!out.status.success(), "{point}: {}", text(&out));
        assert!(
            text(&out).contains("reader_key_rotation_started"),
            "{point}: {}",
            text(&out)
        );
        assert!(
            text(&out).contains("restarted during the rotation"),
            "{point}: {}",
            text(&out)
        );
        wait_for(T, "the key files settled", || !next.exists());
        let after = std::fs::read_to_string(&key_file)
            .unwrap()
            .trim()
            .to_uppercase();
        assert_eq!(after != before, new_key, "{point}");
        let settled = gw
            .events()
            .into_iter()
            .any(|e| e["type"] == "reader_key_rotated" && e["command"].is_null());
        assert_eq!(settled, new_key, "{point}: {:?}", gw.events());
    }
}
