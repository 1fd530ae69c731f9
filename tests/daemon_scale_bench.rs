//! The real daemon at scale (`scripts/bench-daemon-scale` runs this in
//! release with `--ignored --nocapture`; BENCHMARKS.md records the output).
//! For each backlog in `PORTIER_SCALE_SIZES` (default `0,10000000`): a state
//! directory with 1 M credentials in force (a signed snapshot applied with
//! `portier snapshot apply`) and that many events waiting for central;
//! `portier run` with Portier's reader simulator in Secure Channel at the
//! side entrance and an uplink over mTLS to a real Mosquitto, where a lean
//! central acknowledges as the backlog drains. While it drains:
//! - revocation: a signed block delta published by central → `rules_applied`
//!   at the gateway (p50/p99), and then the card, presented, is denied as
//!   blocked;
//! - cards at random credentials of the million, each decided;
//! - the daemon's RSS, sampled, and its peak (VmHWM).
//!
//! Prints every figure beside its goal; asserts only that the work was
//! done (the denials, the decisions), never a time.
#![allow(clippy::disallowed_methods)] // a bench reads the clock

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use portier::event::EventKind;
use portier::journal::Journal;
use portier::rules::{CredentialKey, source};
use serde_json::{Value, json};
use support::broker::{Broker, LeanCentral};
use support::{JsonChild, PtyPair, percentile, portier_bin, repo};

const GW: &str = "gw-university-1";
const CREDENTIALS: u64 = 1_000_000;
const ROUNDS: u64 = 30;
const CARDS: u64 = 200;
const T: Duration = Duration::from_secs(60);

/// The `n`th of the million: H10304 holds a 19-bit number, so two
/// facilities of 500 000 cards each.
fn key(n: u64) -> CredentialKey {
    CredentialKey::H10304 {
        facility: 7 + (n / 500_000) as u32,
        number: n % 500_000,
    }
}

fn ask(socket: &Path, request: &Value) -> Value {
    let mut stream = UnixStream::connect(socket).expect("control socket");
    writeln!(stream, "{request}").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// The first journaled event after `after` matching `pred`, polled through
/// the control socket (a read from `after`, not from the oldest waiting);
/// `None` after [`T`].
fn wait_event(socket: &Path, after: u64, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    let end = Instant::now() + T;
    while Instant::now() < end {
        let r = ask(
            socket,
            &json!({"query": "events", "after": after, "limit": 1000}),
        );
        let events = r["result"].as_array().cloned().unwrap_or_default();
        if let Some(e) = events.into_iter().find(|e| pred(e)) {
            return Some(e);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// The last lines a child logged, for a failure message.
fn log_tail(child: &JsonChild) -> String {
    let log = child.stderr.lock().unwrap();
    let start = log.len().saturating_sub(4000);
    let start = (start..log.len())
        .find(|&i| log.is_char_boundary(i))
        .unwrap_or(log.len());
    log[start..].to_owned()
}

fn present(reader: &mut JsonChild, key: &CredentialKey) {
    let (bytes, bits) = portier::rules::wiegand::encode(key).unwrap();
    reader.send(json!({"op": "card", "data": hex::encode(bytes), "bits": bits}));
}

/// `(VmRSS, VmHWM)` of a process, bytes.
fn rss(pid: u32) -> (u64, u64) {
    let pid = pid.to_string();
    (
        support::proc_memory(&pid, "VmRSS:"),
        support::proc_memory(&pid, "VmHWM:"),
    )
}

#[test]
#[ignore = "bench: scripts/bench-daemon-scale"]
fn the_daemon_at_scale() {
    let sizes: Vec<u64> = std::env::var("PORTIER_SCALE_SIZES")
        .unwrap_or_else(|_| "0,10000000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    for size in sizes {
        // A broker of its own: no session, retained status or ack of the
        // previous size's gateway can reach this one.
        let broker = Broker::start(&[GW]);
        measure(&broker, size);
    }
}

fn measure(broker: &Broker, waiting: u64) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = broker.pki();
    let pty = PtyPair::new();
    let reader_key = support::key_file(d, "reader.scbk", &[0x3c; 16]);
    let mut reader = support::simulated_reader(&pty.a, &reader_key);
    // Above the backlog: a full journal would drop the routine events
    // (grants, rules applied) this bench waits for.
    let journal = format!("[journal]\nmax_events = {}\n", waiting + 1_000_000);
    let body = support::side_entrance_config(GW, pki, &pty.b, &journal);
    let config = support::broker::write_config(d, GW, &body, broker);
    let signing = std::fs::read_to_string(pki.join("central-signing.key")).unwrap();
    let signer =
        ed25519_dalek::SigningKey::from_bytes(&portier::config::read_hex32(&signing).unwrap());
    let now = portier::driver::daemon::wall_now();
    let later = now
        .checked_add(jiff::SignedDuration::from_hours(24 * 365))
        .unwrap();

    // 1 M credentials in force, applied as a technician would.
    let rules = std::fs::read_to_string(repo().join("config/rules.example.toml")).unwrap();
    let mut snapshot = source::parse_rules("rules", &rules, 1, now, later).unwrap();
    snapshot
        .credentials
        .extend(support::bulk_credentials((0..CREDENTIALS).map(key), later));
    let blob = portier::rules::envelope::sign_snapshot(&signer, &snapshot).unwrap();
    std::fs::write(d.join("snapshot.cbor"), &blob).unwrap();
    support::portier_ok(&[
        "snapshot",
        "apply",
        d.join("snapshot.cbor").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);

    // The backlog, as a long outage leaves it.
    {
        let mut writer = Journal::open(&d.join("state/journal"))
            .unwrap()
            .writer
            .with_budget(u64::MAX);
        let at = now;
        let mut n = 0;
        while n < waiting {
            let k = 10_000.min(waiting - n);
            writer
                .append(
                    at,
                    (n..n + k)
                        .map(|i| EventKind::DoorClosed {
                            door: format!("door-{}", i % 50).into(),
                        })
                        .collect(),
                )
                .unwrap();
            n += k;
        }
    }

    let central = LeanCentral::start(broker, GW);
    let socket = d.join("control.sock");
    let daemon = JsonChild::spawn(
        &portier_bin(),
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--control-socket",
            socket.to_str().unwrap(),
        ],
    );
    let pid = daemon.child.id();
    support::wait_for(T, "control socket", || UnixStream::connect(&socket).is_ok());
    support::wait_for(T, "the reader online in Secure Channel", || {
        let r = ask(&socket, &json!({"query": "buses"}));
        r["result"]["bus-1"].as_array().is_some_and(|pds| {
            pds.iter()
                .all(|p| p["online"] == true && p["secure"] == true)
        })
    });
    support::wait_for(T, "the uplink online and subscribed", || {
        central.online.load(Ordering::Acquire)
    });
    let mut samples = vec![rss(pid).0];
    let prefix = format!("portier/v1/{GW}");
    let drained_at_start = central.contiguous.load(Ordering::Acquire);

    // Revocations while the backlog drains.
    let mut latencies = Vec::new();
    let mut after = waiting;
    for round in 0..ROUNDS {
        let number = 700_000 + round;
        let CredentialKey::H10304 {
            facility,
            number: card,
        } = key(number)
        else {
            unreachable!()
        };
        let changes = format!(
            "gateway_id = \"{GW}\"\nbuilding = \"university-main\"\n[[blocks]]\n\
             card = {{ format = \"h10304\", facility = {facility}, number = {card} }}\nreason = \"lost\"\n"
        );
        let version = round + 2;
        let delta = source::parse_changes("d", &changes, version - 1, version, now, later).unwrap();
        let bytes = portier::rules::envelope::sign_delta(&signer, &delta).unwrap();
        let sent = portier::driver::daemon::wall_now();
        central.publish(&format!("{prefix}/delta"), bytes);
        let applied = wait_event(&socket, after, |e| {
            e["type"] == "rules_applied" && e["version"] == version
        })
        .unwrap_or_else(|| {
            panic!(
                "delta {version} not applied; daemon log:\n{}",
                log_tail(&daemon)
            )
        });
        let at: jiff::Timestamp = applied["at"].as_str().unwrap().parse().unwrap();
        latencies.push(at.duration_since(sent).unsigned_abs());
        after = applied["seq"].as_u64().unwrap();
        present(&mut reader, &key(number));
        let credential = key(number).to_string();
        let denied = wait_event(&socket, after, |e| {
            e["type"] == "access_denied" && e["credential"] == credential.as_str()
        })
        .unwrap_or_else(|| {
            panic!(
                "{credential} not denied; daemon log:\n{}",
                log_tail(&daemon)
            )
        });
        assert_eq!(denied["reason"], "blocked", "{denied}");
        after = denied["seq"].as_u64().unwrap();
        samples.push(rss(pid).0);
    }

    // Cards at random credentials of the million.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut decided = Vec::new();
    for _ in 0..CARDS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let number = seed % CREDENTIALS;
        let credential = key(number).to_string();
        let t = Instant::now();
        present(&mut reader, &key(number));
        let e = wait_event(&socket, after, |e| {
            (e["type"] == "access_granted" || e["type"] == "access_denied")
                && e["credential"] == credential.as_str()
        })
        .unwrap_or_else(|| {
            panic!(
                "no decision for {credential}; daemon log:\n{}\nreader log:\n{}",
                log_tail(&daemon),
                log_tail(&reader)
            )
        });
        decided.push(t.elapsed());
        after = e["seq"].as_u64().unwrap();
        samples.push(rss(pid).0);
    }
    let drained = central.contiguous.load(Ordering::Acquire) - drained_at_start;
    let (_, hwm) = rss(pid);
    drop(daemon);

    latencies.sort();
    decided.sort();
    let max_rss = samples.iter().copied().max().unwrap_or(0);
    println!("--- {waiting} events waiting, {CREDENTIALS} credentials in force ---");
    println!(
        "revocation: publish → applied at the gateway, n={ROUNDS}: p50 {:?}, p99 {:?}, max {:?} (goal p99 ≤ 1 s); each revoked card then denied as blocked",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    println!(
        "card at a random credential → decision journaled, seen through the control socket, n={CARDS}: p50 {:?}, p99 {:?}",
        percentile(&decided, 0.5),
        percentile(&decided, 0.99)
    );
    println!(
        "daemon RSS: max sampled {:.1} MB, peak (VmHWM) {:.1} MB (goal ≤ 100 MB); {drained} events drained meanwhile",
        max_rss as f64 / 1e6,
        hwm as f64 / 1e6
    );
}
