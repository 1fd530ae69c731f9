//! Self-healing rules against a real Mosquitto (mTLS) and PostgreSQL,
//! with a gateway that is the real uplink (its status set as the daemon's
//! rules store would set it):
//! - a gateway that missed a delta refuses the next one ("a full snapshot
//!   is needed"): central publishes, by itself and once, the full snapshot
//!   it would have the gateway hold (the last one pushed with both deltas
//!   applied) at a new version, retained; it verifies with central's key;
//!   a `rules_repushed` alarm says so; the refusal repeated brings no
//!   second one;
//! - a gateway that comes back online behind what was published gets it
//!   again after the grace period, the same way.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::path::Path;

use portier::driver::uplink::Inbound;
use portier::rules::envelope::{TrustedKeys, verify_snapshot};
use portier::rules::{BlockReason, CredentialKey};
use support::broker::Broker;
use support::central::{CentralProc, JournalGateway, T, write_config};
use support::postgres::Postgres;
use support::wait_for;

const GW: &str = "gw-r";

fn central(config: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["central", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = support::portier_ok(&all);
    serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Set what the gateway's status reports (the uplink republishes it).
fn report(gw: &JournalGateway, version: u64, refused: Option<&str>) {
    gw.uplink.as_ref().unwrap().status.send_modify(|s| {
        s.rules_version = Some(version);
        s.rules_refused = refused.map(str::to_owned);
    });
}

/// The next snapshot of `version` the gateway receives, verified with
/// central's key: (its blocked cards).
fn snapshot_received(
    gw: &mut JournalGateway,
    keys: &TrustedKeys,
    building: &str,
    version: u64,
) -> Vec<(CredentialKey, BlockReason)> {
    let mut found = None;
    wait_for(T, &format!("snapshot v{version} at the gateway"), || {
        let inbound = &mut gw.uplink.as_mut().unwrap().inbound;
        while let Ok(m) = inbound.try_recv() {
            if let Inbound::Snapshot(bytes) = m {
                let s = verify_snapshot(&bytes, keys, GW, building, jiff::Timestamp::now(), None)
                    .expect("a snapshot signed by central");
                if s.version() == version {
                    found = Some(s);
                }
            }
        }
        found.is_some()
    });
    found
        .unwrap()
        .credentials()
        .values()
        .filter_map(|c| Some((c.key.clone(), c.blocked?)))
        .collect()
}

#[test]
fn a_refused_delta_and_a_gateway_behind_get_the_full_snapshot_once() {
    let pg = Postgres::start();
    let broker = Broker::start(&[GW]);
    let dir = tempfile::tempdir().unwrap();
    let key_file = broker.pki().join("central-signing.key");
    let config = write_config(dir.path(), &broker, &pg, "central-1", &key_file);
    let key = ed25519_dalek::SigningKey::from_bytes(
        &portier::config::read_hex32(&std::fs::read_to_string(&key_file).unwrap()).unwrap(),
    );
    let mut keys = TrustedKeys::new();
    keys.add(key.verifying_key());
    let mut c = CentralProc::spawn(&config, &[]);
    c.wait_connected();

    let mut gw = JournalGateway::new(GW);
    gw.connect(&broker);
    report(&gw, 1, None);
    wait_for(T, "the gateway online at v1", || {
        pg.count(&format!(
            "SELECT count(*) FROM gateways WHERE id = '{GW}' AND state = 'online' AND rules_version = 1"
        )) == 1
    });
    let rules = support::repo().join("config/rules.example.toml");
    let pushed = central(
        &config,
        &["push", "--gateway", GW, "--rules", rules.to_str().unwrap()],
    );
    assert_eq!(pushed["version"], 2, "{pushed}");
    let building = pushed["building"].as_str().unwrap().to_owned();
    let cards: Vec<CredentialKey> = {
        let text = std::fs::read_to_string(&rules).unwrap();
        let now = jiff::Timestamp::now();
        portier::rules::source::parse_rules("rules.toml", &text, 1, now, now)
            .unwrap()
            .credentials
            .iter()
            .map(|c| c.key.clone())
            .filter(|k| !k.to_string().is_empty())
            .collect()
    };
    let (a, b, z) = (&cards[0], &cards[1], &cards[2]);
    report(&gw, 2, None);
    wait_for(T, "v2 in force", || {
        pg.count(&format!(
            "SELECT rules_version FROM gateways WHERE id = '{GW}'"
        )) == 2
    });

    // Delta v3 is lost on the way; v4 (base 3) is refused.
    for (card, version) in [(a, 3), (b, 4)] {
        let out = central(
            &config,
            &["block", "--card", &card.to_string(), "--reason", "stolen"],
        );
        assert_eq!(out["version"], version, "{out}");
    }
    report(
        &gw,
        2,
        Some("delta needs base version 3 but version 2 is in force; a full snapshot is needed"),
    );
    let blocked = snapshot_received(&mut gw, &keys, &building, 5);
    assert!(
        blocked.contains(&(a.clone(), BlockReason::Stolen))
            && blocked.contains(&(b.clone(), BlockReason::Stolen)),
        "{blocked:?}"
    );
    assert_eq!(
        pg.psql(&format!(
            "SELECT reason, rules_version, version, for_version FROM rules_repairs WHERE gateway = '{GW}'"
        )),
        "delta_refused|2|5|4"
    );
    assert_eq!(
        pg.psql("SELECT kind, repair FROM rules_published WHERE version = 5"),
        "snapshot|t"
    );
    let alarms = support::portier_ok(&["central", "--config", config.to_str().unwrap(), "alarms"]);
    assert!(
        alarms.contains("rules_repushed") && alarms.contains("delta_refused"),
        "{alarms}"
    );
    // Once: the refusal stays in the status for two more keeper passes.
    let passes = |c: &CentralProc| c.log().matches("rules keeper pass").count();
    let seen = passes(&c);
    report(
        &gw,
        2,
        Some("delta needs base version 4 but version 2 is in force; a full snapshot is needed"),
    );
    wait_for(T, "two more keeper passes", || passes(&c) >= seen + 2);
    assert_eq!(pg.count("SELECT count(*) FROM rules_repairs"), 1);
    assert_eq!(pg.count("SELECT max(version) FROM rules_published"), 5);

    // v5 applied. Then the gateway goes away (its last will), v6 is
    // published meanwhile, and it comes back (a new journal and session)
    // still at v5.
    report(&gw, 5, None);
    wait_for(T, "v5 in force", || {
        pg.count(&format!(
            "SELECT rules_version FROM gateways WHERE id = '{GW}'"
        )) == 5
    });
    gw.shut_down();
    let (client, mut connection) = rumqttc::Client::new(broker.options("gw-r-will", GW), 16);
    std::thread::spawn(move || for _ in connection.iter() {});
    client
        .publish(
            format!("portier/v1/{GW}/status"),
            rumqttc::QoS::AtLeastOnce,
            true,
            portier::uplink::wire::to_cbor(&portier::uplink::wire::Status {
                gateway: GW.into(),
                state: portier::uplink::wire::LinkState::Offline,
                ..Default::default()
            }),
        )
        .unwrap();
    wait_for(T, "the gateway offline", || {
        pg.count(&format!(
            "SELECT count(*) FROM gateways WHERE id = '{GW}' AND state = 'offline'"
        )) == 1
    });
    let out = central(&config, &["block", "--card", &z.to_string()]);
    assert_eq!(out["version"], 6, "{out}");
    let mut gw = JournalGateway::new(GW);
    gw.connect(&broker);
    report(&gw, 5, None);
    let blocked = snapshot_received(&mut gw, &keys, &building, 7);
    assert!(
        blocked.contains(&(z.clone(), BlockReason::Lost))
            && blocked.contains(&(a.clone(), BlockReason::Stolen)),
        "{blocked:?}"
    );
    assert_eq!(
        pg.psql(&format!(
            "SELECT reason, rules_version, version, for_version FROM rules_repairs \
             WHERE gateway = '{GW}' ORDER BY for_version DESC LIMIT 1"
        )),
        "behind_after_reconnect|5|7|6"
    );
    // Not before the grace period: the repair came at least that long
    // after the gateway was back.
    let waited = pg.psql(&format!(
        "SELECT extract(epoch FROM r.at - g.state_since) >= {} FROM rules_repairs r, gateways g \
         WHERE r.gateway = g.id AND r.for_version = 6",
        portier::central::driver::REPAIR_GRACE_SECONDS
    ));
    assert_eq!(waited, "t");
    drop(c);
}
