//! `portier reader probe | install-key | simulate` against each other over
//! real pseudo-terminals: the technician's commands end to end.

#![allow(clippy::disallowed_methods)] // measures how fast the CLI gives up

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{JsonChild, PtyPair, key_file, portier_bin};

const KEY: [u8; 16] = [0xA5; 16];
const OTHER: [u8; 16] = [0x5A; 16];

fn simulator(pty: &PtyPair, extra: &[&str]) -> JsonChild {
    let port = pty.b.to_str().unwrap();
    let mut args = vec![
        "reader",
        "simulate",
        "--port",
        port,
        "--address",
        "3",
        "--baud",
        "115200",
    ];
    args.extend_from_slice(extra);
    let mut sim = JsonChild::spawn(&portier_bin(), &args);
    sim.expect(Duration::from_secs(5), "simulator ready", |v| {
        v["event"] == "ready"
    });
    sim
}

fn probe(pty: &PtyPair, extra: &[&str]) -> JsonChild {
    let port = pty.a.to_str().unwrap();
    let mut args = vec![
        "reader",
        "probe",
        "--port",
        port,
        "--address",
        "3",
        "--baud",
        "115200",
        "--json",
    ];
    args.extend_from_slice(extra);
    JsonChild::spawn(&portier_bin(), &args)
}

#[test]
fn probe_brings_a_keyed_reader_online_in_secure_channel_and_streams_cards() {
    let pty = PtyPair::new();
    let key = key_file(pty.dir.path(), "pd.key", &KEY);
    let capture = pty.dir.path().join("bus.pcap");
    let mut sim = simulator(&pty, &["--scbk-file", key.to_str().unwrap()]);
    let mut probe = probe(
        &pty,
        &[
            "--scbk-file",
            key.to_str().unwrap(),
            "--capture",
            capture.to_str().unwrap(),
        ],
    );
    let online = probe.expect(Duration::from_secs(5), "online", |v| v["event"] == "online");
    assert_eq!(online["secure"], true);
    assert_eq!(online["identity"]["serial"], 0x1003);
    sim.send(json!({"op": "card", "data": "9501f480", "bits": 26}));
    let card = probe.expect(Duration::from_secs(3), "card", |v| v["event"] == "card");
    assert_eq!(card["data"], "9501f480");
    assert_eq!(card["bits"], 26);
    sim.expect(Duration::from_secs(1), "PD saw SC", |v| {
        v["event"] == "secure_channel"
    });
    // The capture is a pcap with link type 162 and at least a few packets.
    let pcap = std::fs::read(&capture).unwrap();
    assert_eq!(&pcap[20..24], &162u32.to_le_bytes());
    assert!(pcap.len() > 24 + 3 * 16);
}

#[test]
fn probe_with_a_wrong_key_fails_within_seconds_and_says_why() {
    let pty = PtyPair::new();
    let key = key_file(pty.dir.path(), "pd.key", &KEY);
    let wrong = key_file(pty.dir.path(), "wrong.key", &OTHER);
    let _sim = simulator(&pty, &["--scbk-file", key.to_str().unwrap()]);
    let started = Instant::now();
    let mut probe = probe(&pty, &["--scbk-file", wrong.to_str().unwrap()]);
    let status = probe.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let stderr = probe.stderr.lock().unwrap().clone();
    assert!(stderr.contains("key differs"), "stderr: {stderr}");
    assert!(probe.drain().iter().all(|v| v["event"] != "online"));
}

#[test]
fn probe_of_a_silent_address_fails_with_a_wiring_hint() {
    let pty = PtyPair::new();
    let _sim = simulator(&pty, &[]);
    let mut probe = JsonChild::spawn(
        &portier_bin(),
        &[
            "reader",
            "probe",
            "--port",
            pty.a.to_str().unwrap(),
            "--address",
            "9",
            "--baud",
            "115200",
            "--timeout",
            "2",
        ],
    );
    let status = probe.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    let stderr = probe.stderr.lock().unwrap().clone();
    assert!(
        stderr.contains("did not come online") || stderr.contains("no valid reply"),
        "stderr: {stderr}"
    );
}

#[test]
fn install_key_writes_the_key_first_then_the_reader_runs_on_it() {
    let pty = PtyPair::new();
    let mut sim = simulator(&pty, &["--install-mode"]);
    let out = pty.dir.path().join("new.key");
    let capture = pty.dir.path().join("install.pcap");
    let mut install = JsonChild::spawn(
        &portier_bin(),
        &[
            "reader",
            "install-key",
            "--port",
            pty.a.to_str().unwrap(),
            "--address",
            "3",
            "--baud",
            "115200",
            "--out",
            out.to_str().unwrap(),
            "--capture",
            capture.to_str().unwrap(),
        ],
    );
    install.expect(Duration::from_secs(10), "key installed", |v| {
        v["event"] == "key_installed"
    });
    // The capture has the handshakes but never the KEYSET frame.
    let codes = pcap_command_codes(&std::fs::read(&capture).unwrap());
    assert!(
        codes.contains(&0x76) && codes.contains(&0x77),
        "CHLNG and SCRYPT captured: {codes:x?}"
    );
    assert!(!codes.contains(&0x75), "KEYSET must never be captured");
    assert!(install.wait_exit(Duration::from_secs(5)).success());
    sim.expect(Duration::from_secs(2), "PD got KEYSET", |v| {
        v["event"] == "keyset"
    });
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.trim().len(), 32);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The new key now works for a probe; refusing to overwrite the key file.
    let mut probe = probe(&pty, &["--scbk-file", out.to_str().unwrap()]);
    let online = probe.expect(Duration::from_secs(5), "online with new key", |v| {
        v["event"] == "online"
    });
    assert_eq!(online["secure"], true);
    drop(probe);
    let mut again = JsonChild::spawn(
        &portier_bin(),
        &[
            "reader",
            "install-key",
            "--port",
            pty.a.to_str().unwrap(),
            "--address",
            "3",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(!again.wait_exit(Duration::from_secs(5)).success());
}

/// Command codes of the CP → PD packets in a pcap capture.
fn pcap_command_codes(pcap: &[u8]) -> Vec<u8> {
    use portier::osdp::frame::FrameReader;
    let mut codes = Vec::new();
    let mut pos = 24;
    while pos + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[pos + 8..pos + 12].try_into().unwrap()) as usize;
        let mut reader = FrameReader::new();
        reader.push(&pcap[pos + 16..pos + 16 + len]);
        while let Some(Ok(rx)) = reader.next_frame() {
            if !rx.frame.is_reply {
                codes.push(rx.frame.code);
            }
        }
        pos += 16 + len;
    }
    codes
}
