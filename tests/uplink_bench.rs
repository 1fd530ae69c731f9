//! Uplink figures against a real Mosquitto over mTLS (`scripts/bench-uplink`
//! runs these with `--ignored --nocapture` in release mode and
//! BENCHMARKS.md records the output). They print numbers and the goal; they
//! assert only that the work was done, never a time.
//!
//! - drain rate after an outage: 100 000 events waiting in the journal,
//!   the uplink starts, central stores and acks; events/s until the
//!   journal is empty (goal ≥ 10 000/s);
//! - revocation latency: central publishes a block delta, the running
//!   `portier run` applies it; from the publish to the `rules_applied`
//!   event's own timestamp (same clock), then the card is denied; p50/p99
//!   over 40 deltas (goal p99 ≤ 1 s);
//! - lockdown during a 1 M-credential snapshot import: central publishes
//!   the snapshot, then signed lockdown commands one after another until
//!   the snapshot is applied; from each publish to its `remote_action`
//!   event's own timestamp (goal p99 ≤ 1 s).
#![allow(clippy::disallowed_methods)] // a bench reads the clock

mod support;

use std::time::{Duration, Instant};

use portier::event::EventKind;
use portier::journal::Journal;
use support::broker::{Broker, Central, spawn_uplink};
use support::{JsonChild, portier_bin, repo};

#[test]
#[ignore = "bench: scripts/bench-uplink"]
fn drain_rate_after_an_outage() {
    const N: u64 = 100_000;
    let broker = Broker::start(&["gw-a"]);
    let central = Central::start(&broker, true);
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path();
    let Journal {
        writer: mut journal,
        reader,
        acker,
        ..
    } = Journal::open(journal_path).unwrap();
    let at = "2026-11-23T22:00:00Z".parse().unwrap();
    for b in 0..N / 1000 {
        let kinds = (0..1000)
            .map(|i| EventKind::AccessGranted {
                door: "side-entrance".into(),
                reader: "side-reader".into(),
                credential: format!("h10301:42:{}", b * 1000 + i),
            })
            .collect();
        journal.append(at, kinds).unwrap();
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let start = Instant::now();
    let _uplink = spawn_uplink(&runtime, (reader.clone(), acker), &broker, "gw-a", |cfg| {
        cfg.batch = 500;
        cfg.window = 20_000;
    });
    while !reader.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(300), "not drained");
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = start.elapsed();
    assert_eq!(central.seen.lock().unwrap().contiguous("gw-a"), N);
    println!(
        "drain after outage: {N} events in {:.2} s = {:.0} events/s (goal ≥ 10000/s), including TLS connect",
        took.as_secs_f64(),
        N as f64 / took.as_secs_f64()
    );
}

#[test]
#[ignore = "bench: scripts/bench-uplink"]
fn revocation_latency_publish_to_deny() {
    const GW: &str = "gw-university-1";
    const ROUNDS: u64 = 40;
    let broker = Broker::start(&[GW]);
    let central = Central::start(&broker, true);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = broker.pki();
    let body = format!(
        "[gateway]\nid = \"{GW}\"\nbuilding = \"university-main\"\nstate_dir = \"state\"\n\
         [trust]\ncentral_keys = [{:?}]\n",
        pki.join("central-signing.pub").display().to_string()
    );
    let config = support::broker::write_config(d, GW, &body, &broker);
    let signing = std::fs::read_to_string(pki.join("central-signing.key")).unwrap();
    let key =
        ed25519_dalek::SigningKey::from_bytes(&portier::config::read_hex32(&signing).unwrap());
    let now = portier::driver::daemon::wall_now();
    let later = now
        .checked_add(jiff::SignedDuration::from_hours(24))
        .unwrap();
    let rules = std::fs::read_to_string(repo().join("config/rules.example.toml")).unwrap();
    let snapshot = portier::rules::source::parse_rules("rules", &rules, 1, now, later).unwrap();
    let prefix = format!("portier/v1/{GW}");
    central.publish(
        &format!("{prefix}/snapshot"),
        portier::rules::envelope::sign_snapshot(&key, &snapshot).unwrap(),
        true,
    );
    let _daemon = JsonChild::spawn(
        &portier_bin(),
        &["run", "--config", config.to_str().unwrap()],
    );

    let applied =
        |v: u64| move |e: &serde_json::Value| e["type"] == "rules_applied" && e["version"] == v;
    wait(&central, GW, applied(1));
    let mut latencies = Vec::new();
    for n in 0..ROUNDS {
        let changes = format!(
            "gateway_id = \"{GW}\"\nbuilding = \"university-main\"\n[[blocks]]\ncard = {{ format = \"h10301\", facility = 42, number = {} }}\nreason = \"lost\"\n",
            2000 + n
        );
        let delta =
            portier::rules::source::parse_changes("d", &changes, n + 1, n + 2, now, later).unwrap();
        let bytes = portier::rules::envelope::sign_delta(&key, &delta).unwrap();
        let sent = portier::driver::daemon::wall_now();
        central.publish(&format!("{prefix}/delta"), bytes, false);
        let e = wait(&central, GW, applied(n + 2));
        let at: jiff::Timestamp = e["at"].as_str().unwrap().parse().unwrap();
        latencies.push(at.duration_since(sent).unsigned_abs());
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "revocation: publish → applied at the gateway, n={ROUNDS}: p50 {:?}, p99 {:?}, max {:?} (goal p99 ≤ 1 s)",
        p(0.5),
        p(0.99),
        latencies[latencies.len() - 1]
    );
    // The deny itself at the door after a block delta is tested end to end
    // in tests/uplink_e2e.rs; decisions take microseconds (BENCHMARKS.md).
}

#[test]
#[ignore = "bench: scripts/bench-uplink"]
fn lockdown_latency_during_a_1m_snapshot_import() {
    use rumqttc::{AsyncClient, QoS};
    const GW: &str = "gw-university-1";
    let broker = Broker::start(&[GW]);
    let central = Central::start(&broker, true);
    let dir = tempfile::tempdir().unwrap();
    let pki = broker.pki();
    let body = format!(
        "[gateway]\nid = \"{GW}\"\nbuilding = \"university-main\"\nstate_dir = \"state\"\n\
         [trust]\ncentral_keys = [{:?}]\n",
        pki.join("central-signing.pub").display().to_string()
    );
    let config = support::broker::write_config(dir.path(), GW, &body, &broker);
    let signing = std::fs::read_to_string(pki.join("central-signing.key")).unwrap();
    let key =
        ed25519_dalek::SigningKey::from_bytes(&portier::config::read_hex32(&signing).unwrap());
    let now = portier::driver::daemon::wall_now();
    let later = now
        .checked_add(jiff::SignedDuration::from_hours(24))
        .unwrap();
    let rules = std::fs::read_to_string(repo().join("config/rules.example.toml")).unwrap();
    let small = portier::rules::source::parse_rules("rules", &rules, 1, now, later).unwrap();
    let prefix = format!("portier/v1/{GW}");
    central.publish(
        &format!("{prefix}/snapshot"),
        portier::rules::envelope::sign_snapshot(&key, &small).unwrap(),
        true,
    );
    let _daemon = JsonChild::spawn(
        &portier_bin(),
        &["run", "--config", config.to_str().unwrap()],
    );
    let applied =
        |v: u64| move |e: &serde_json::Value| e["type"] == "rules_applied" && e["version"] == v;
    wait(&central, GW, applied(1));
    let mut big = portier::rules::source::parse_rules("rules", &rules, 2, now, later).unwrap();
    big.credentials = support::bulk_credentials(
        (0..1_000_000u64).map(|number| portier::rules::CredentialKey::H10304 {
            facility: 7,
            number,
        }),
        later,
    )
    .collect();
    let blob = portier::rules::envelope::sign_snapshot(&key, &big).unwrap();
    println!("1 M-credential snapshot: {} bytes", blob.len());
    // Commands from their own connection: not queued behind the snapshot
    // in central's client.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (commander, mut eventloop) =
        AsyncClient::new(broker.options("central-commands", "central"), 64);
    rt.spawn(async move { while eventloop.poll().await.is_ok() {} });
    central.publish(&format!("{prefix}/snapshot"), blob, true);
    let published = Instant::now();
    let mut latencies = Vec::new();
    let mut n = 0u64;
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let done = central.events(GW).iter().any(|e| applied(2)(e));
        if done || Instant::now() > end {
            break;
        }
        n += 1;
        let id = format!("lockdown-{n}");
        let issued = portier::driver::daemon::wall_now();
        let action = if n % 2 == 1 {
            portier::site::remote::RemoteAction::Lockdown { doors: vec![] }
        } else {
            portier::site::remote::RemoteAction::ReleaseLockdown { doors: vec![] }
        };
        let command = portier::command::Command {
            id: id.clone(),
            gateway: GW.into(),
            issued_at: issued,
            expires_at: later,
            action: action.into(),
        };
        let bytes = portier::command::sign_command(&key, &command);
        let sent = portier::driver::daemon::wall_now();
        let c = commander.clone();
        let topic = format!("{prefix}/command");
        rt.block_on(async move { c.publish(topic, QoS::AtLeastOnce, false, bytes).await })
            .unwrap();
        let e = wait(&central, GW, |e| {
            e["type"] == "remote_action" && e["command"] == id.as_str()
        });
        let at: jiff::Timestamp = e["at"].as_str().unwrap().parse().unwrap();
        latencies.push(at.duration_since(sent).unsigned_abs());
    }
    let import = published.elapsed();
    assert!(!latencies.is_empty(), "no command during the import");
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "lockdown during a 1 M snapshot import ({:.1} s from publish to applied): n={}, p50 {:?}, p99 {:?}, max {:?} (goal p99 ≤ 1 s)",
        import.as_secs_f64(),
        latencies.len(),
        p(0.5),
        p(0.99),
        latencies[latencies.len() - 1]
    );
}

fn wait(
    central: &Central,
    gw: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(e) = central.events(gw).into_iter().find(|e| pred(e)) {
            return e;
        }
        assert!(
            Instant::now() < end,
            "timed out: {:?}",
            central.events(gw).last()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
