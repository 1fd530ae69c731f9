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

/// An RS-485 adapter that echoes everything the CP sends (no echo
/// suppression): the CLI talks to `cp` (one PTY pair), the simulator to
/// `pd` (another); a relay copies CP bytes to the PD and back to the CP,
/// and PD bytes to the CP. The relay threads end with the PTYs.
struct EchoingLine {
    cp: PtyPair,
    pd: PtyPair,
}

impl EchoingLine {
    fn new() -> Self {
        use std::io::{Read, Write};
        let (cp, pd) = (PtyPair::new(), PtyPair::new());
        let open = |p: &std::path::Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .unwrap()
        };
        let (mut from_cp, mut to_cp) = (open(&cp.b), open(&cp.b));
        let (mut from_pd, mut to_pd) = (open(&pd.a), open(&pd.a));
        let mut echo_to_cp = to_cp.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n @ 1..) = from_cp.read(&mut buf) {
                if to_pd.write_all(&buf[..n]).is_err() || echo_to_cp.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n @ 1..) = from_pd.read(&mut buf) {
                if to_cp.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
        Self { cp, pd }
    }
}

/// `install-key --capture` on a line that echoes (no `--suppress-echo`):
/// the echo of the KEYSET frame never reaches the capture, and the capture
/// file is mode 0600 even when it existed with a wider mode.
#[test]
fn install_key_capture_never_holds_the_keyset_even_from_an_echoing_line() {
    use std::os::unix::fs::PermissionsExt;
    let line = EchoingLine::new();
    let mut sim = JsonChild::spawn(
        &portier_bin(),
        &[
            "reader",
            "simulate",
            "--port",
            line.pd.b.to_str().unwrap(),
            "--address",
            "3",
            "--baud",
            "115200",
            "--install-mode",
        ],
    );
    sim.expect(Duration::from_secs(5), "simulator ready", |v| {
        v["event"] == "ready"
    });
    let out = line.cp.dir.path().join("new.key");
    let capture = line.cp.dir.path().join("install.pcap");
    std::fs::write(&capture, "old capture").unwrap();
    std::fs::set_permissions(&capture, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut install = JsonChild::spawn(
        &portier_bin(),
        &[
            "reader",
            "install-key",
            "--port",
            line.cp.a.to_str().unwrap(),
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
    install.expect(Duration::from_secs(15), "key installed", |v| {
        v["event"] == "key_installed"
    });
    assert!(install.wait_exit(Duration::from_secs(5)).success());
    sim.expect(Duration::from_secs(2), "PD got KEYSET", |v| {
        v["event"] == "keyset"
    });
    let pcap = std::fs::read(&capture).unwrap();
    let codes = pcap_command_codes(&pcap);
    // The echo put our own commands into the received stream: captured
    // twice, except the key frame, which is in neither.
    assert!(
        codes.iter().filter(|&&c| c == 0x76).count() >= 2,
        "CHLNG sent and echoed: {codes:x?}"
    );
    assert!(!codes.contains(&0x75), "KEYSET captured: {codes:x?}");
    assert_eq!(
        std::fs::metadata(&capture).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
