//! `portier central` end to end with a real building: `portier run` with
//! three libosdp PDs (Secure Channel) on a pseudo-terminal bus, its uplink
//! to a real Mosquitto over mTLS, central on a real PostgreSQL.
//! - `push` with guests from a CSV export → snapshot v2 applied, the guest
//!   is granted at the side entrance;
//! - `block --card` (no gateway named: central knows whose rules name the
//!   card) → delta v3 applied, the card is denied `blocked`;
//! - `unlock`, `lockdown`, `release` → signed, published, the gateway's
//!   answer printed; the unlock releases the strike at the PD;
//! - a later `push --from-sql` (guests from a registry table) keeps the
//!   block central made;
//! - the fleet shows the gateway online with rules v4; killed, its last
//!   will makes it offline and a `gateway_offline` alarm.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use serde_json::Value;
use support::broker::Broker;
use support::central::{CentralProc, T, write_config};
use support::gateway::{Gateway, STAFF, is_release};
use support::postgres::Postgres;
use support::wait_for;

const GW: &str = "gw-university-1";
const GUEST: &str = "h10301:42:2001";

fn central(config: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["central", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = support::portier_ok(&all);
    serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn push_block_and_commands_reach_a_building_with_libosdp_readers() {
    let pg = Postgres::start();
    let broker = Broker::start(&[GW]);
    let mut gw = Gateway::start();
    // The same building, now with its uplink.
    gw.kill_daemon();
    let mut text = std::fs::read_to_string(&gw.config).unwrap();
    text.push_str(&format!("\n{}", broker.uplink_section(GW)));
    std::fs::write(&gw.config, text).unwrap();
    gw.run_daemon();

    let config = write_config(
        gw.dir.path(),
        &broker,
        &pg,
        "central-1",
        &gw.dir.path().join("central.key"),
    );
    let mut service = CentralProc::spawn(&config, &[]);
    service.wait_connected();
    let pg_has = |what: &str, sql: &str| {
        wait_for(T, what, || pg.count(sql) > 0);
    };
    pg_has(
        "the gateway's status with rules v1",
        &format!("SELECT count(*) FROM gateways WHERE id = '{GW}' AND rules_version = 1"),
    );
    // Central's signed time beacons confirm the gateway's time.
    wait_for(
        T,
        "the gateway's time confirmed by central's beacons",
        || {
            let t = gw.ask(serde_json::json!({"query": "time"}));
            t["result"]["confirmed"] == true && t["result"]["latest"].is_string()
        },
    );

    // Commands: signed, published, answered (first, while the strike is
    // still locked from the start).
    let mark = gw.mark();
    let done = central(
        &config,
        &[
            "unlock",
            "--gateway",
            GW,
            "--door",
            "side-entrance",
            "--seconds",
            "4",
        ],
    );
    assert_eq!(
        (done["type"].as_str(), done["outcome"].as_str()),
        (Some("remote_action"), Some("accepted")),
        "{done}"
    );
    gw.expect_pd(mark, "the side entrance released", |v| {
        v["event"] == "output" && v["address"] == 2 && is_release(v)
    });
    for verb in ["lockdown", "release"] {
        let done = central(&config, &[verb, "--gateway", GW]);
        assert_eq!(done["outcome"], "accepted", "{verb}: {done}");
    }
    assert_eq!(pg.count("SELECT count(*) FROM commands"), 3);

    pg_has(
        "the override journaled",
        "SELECT count(*) FROM events WHERE type = 'door_mode_changed' AND door = 'side-entrance' \
         AND event->>'mode' = 'override_unlocked'",
    );

    // Rules out: the rules file plus guests from the guest registry.
    let guests = gw.dir.path().join("guests.csv");
    std::fs::write(
        &guests,
        format!(
            "card,name,access_levels,valid_until\n{GUEST},Guest One,building-any-time,2099-12-31\n"
        ),
    )
    .unwrap();
    let rules = gw.dir.path().join("rules.toml");
    let pushed = central(
        &config,
        &[
            "push",
            "--gateway",
            GW,
            "--rules",
            rules.to_str().unwrap(),
            "--credentials",
            guests.to_str().unwrap(),
        ],
    );
    assert_eq!(pushed["version"], 2, "{pushed}");
    pg_has(
        "snapshot v2 applied",
        "SELECT count(*) FROM events WHERE type = 'rules_applied' AND event->>'version' = '2'",
    );
    gw.badge(2, GUEST);
    pg_has(
        "the guest granted",
        &format!(
            "SELECT count(*) FROM events WHERE type = 'access_granted' AND credential = '{GUEST}'"
        ),
    );

    // The lost-pass path: one command, central finds the gateway.
    let blocked = central(&config, &["block", "--card", STAFF, "--reason", "lost"]);
    assert_eq!(
        (blocked["gateway"].as_str(), blocked["version"].as_u64()),
        (Some(GW), Some(3)),
        "{blocked}"
    );
    pg_has(
        "delta v3 applied",
        "SELECT count(*) FROM events WHERE type = 'rules_applied' AND event->>'version' = '3'",
    );
    gw.badge(2, STAFF);
    pg_has(
        "the lost card denied as blocked",
        &format!(
            "SELECT count(*) FROM events WHERE type = 'access_denied' AND credential = '{STAFF}' AND reason = 'blocked'"
        ),
    );

    // A later push (guests from an SQL query on the registry's table)
    // keeps the block: central remembers it whatever the export says.
    pg.psql(
        "CREATE TABLE registry_guests (card text, name text, access_levels text[], valid_until timestamptz); \
         INSERT INTO registry_guests VALUES ('h10301:42:2002', 'Guest Two', '{building-any-time}', '2099-01-01T00:00:00Z')",
    );
    let pushed = central(
        &config,
        &[
            "push",
            "--gateway",
            GW,
            "--rules",
            rules.to_str().unwrap(),
            "--from-sql",
            "SELECT card, name, access_levels, valid_until FROM registry_guests",
        ],
    );
    assert_eq!(
        (
            pushed["version"].as_u64(),
            pushed["blocked_by_central"].as_u64()
        ),
        (Some(4), Some(1)),
        "{pushed}"
    );
    pg_has(
        "snapshot v4 applied",
        "SELECT count(*) FROM events WHERE type = 'rules_applied' AND event->>'version' = '4'",
    );
    gw.badge(2, "h10301:42:2002");
    gw.badge(2, STAFF);
    pg_has(
        "the SQL guest granted",
        "SELECT count(*) FROM events WHERE type = 'access_granted' AND credential = 'h10301:42:2002'",
    );
    pg_has(
        "the lost card still denied after the new snapshot",
        &format!(
            "SELECT count(*) FROM events e WHERE type = 'access_denied' AND credential = '{STAFF}' \
             AND reason = 'blocked' AND seq > (SELECT max(seq) FROM events WHERE type = 'rules_applied')"
        ),
    );

    // The fleet.
    wait_for(T, "status with rules v4", || {
        pg.count(&format!(
            "SELECT count(*) FROM gateways WHERE id = '{GW}' AND rules_version = 4 AND state = 'online'"
        )) == 1
    });
    let fleet = central(&config, &["status", "--json"]);
    assert_eq!(
        (
            fleet["rules_version"].as_u64(),
            fleet["rules_published"].as_u64()
        ),
        (Some(4), Some(4)),
        "{fleet}"
    );

    // Killed: the broker publishes its last will, central marks it offline.
    gw.kill_daemon();
    wait_for(T, "the gateway offline", || {
        pg.count(&format!(
            "SELECT count(*) FROM gateways WHERE id = '{GW}' AND state = 'offline'"
        )) == 1
    });
    let alarms = support::portier_ok(&[
        "central",
        "--config",
        config.to_str().unwrap(),
        "alarms",
        "--gateway",
        GW,
    ]);
    assert!(alarms.contains("gateway_offline"), "{alarms}");
    service.kill();

    // No secret in the service's log: not the signing key, not the TLS key.
    let log = service.log();
    let signing = std::fs::read_to_string(gw.dir.path().join("central.key")).unwrap();
    let tls = std::fs::read_to_string(broker.pki().join("central.key")).unwrap();
    let tls_body = tls.lines().nth(1).unwrap();
    assert!(!log.contains(signing.trim()), "signing key in the log");
    assert!(!log.contains(tls_body), "TLS key in the log");
}
