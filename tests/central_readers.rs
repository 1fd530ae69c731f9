//! The reader inventory end to end: two buildings (`portier run`, three
//! libosdp PDs each in Secure Channel) report their readers' PDID and
//! PDCAP in the MQTT status; `portier central` fills its `readers` table
//! from both, and `portier central readers --firmware …` answers the fleet
//! question. The gateway's own API shows the same inventory.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use serde_json::Value;
use support::broker::Broker;
use support::central::{CentralProc, T, write_config};
use support::gateway::Gateway;
use support::postgres::Postgres;
use support::wait_for;

const GW_1: &str = "gw-university-1";
const GW_2: &str = "gw-university-2";

/// A building with its uplink, under `id`.
fn building(broker: &Broker, id: &str) -> Gateway {
    let mut gw = Gateway::start();
    gw.kill_daemon();
    let text = std::fs::read_to_string(&gw.config)
        .unwrap()
        .replace(&format!("id = \"{GW_1}\""), &format!("id = \"{id}\""));
    std::fs::write(&gw.config, format!("{text}\n{}", broker.uplink_section(id))).unwrap();
    gw.run_daemon();
    gw
}

fn readers(config: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "central",
        "--config",
        config.to_str().unwrap(),
        "readers",
        "--json",
    ];
    args.extend_from_slice(extra);
    support::portier_ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn central_knows_every_reader_of_two_buildings_and_their_firmware() {
    let pg = Postgres::start();
    let broker = Broker::start(&[GW_1, GW_2]);
    let gw_1 = building(&broker, GW_1);
    let gw_2 = building(&broker, GW_2);

    // The gateway's own status (`portier status --json`, the API's
    // document) lists identity and capabilities.
    // The daemon ran twice: the admin port of the last run.
    let started = gw_1
        .events()
        .into_iter()
        .rfind(|e| e["type"] == "admin_started")
        .unwrap();
    let port = started["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let url = format!("https://127.0.0.1:{port}");
    let fingerprint = started["fingerprint"].as_str().unwrap().to_owned();
    let out = std::process::Command::new(support::portier_bin())
        .args(["status", "--url", &url, "--fingerprint", &fingerprint])
        .args(["--user", &gw_1.viewer.0, "--json"])
        .env("PORTIER_ADMIN_PASSWORD", &gw_1.viewer.1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pd = &status["buses"][0]["pds"][0];
    assert_eq!(pd["identity"]["vendor"], "b2a100", "{pd}");
    assert_eq!(pd["identity"]["firmware"], "1.2.3", "{pd}");
    assert_eq!(pd["identity"]["version"], 2, "{pd}");
    let caps: Vec<&str> = pd["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(caps.contains(&"communication_security"), "{caps:?}");
    assert!(pd["last_seen"].is_string(), "{pd}");

    let config = write_config(
        gw_1.dir.path(),
        &broker,
        &pg,
        "central-1",
        &gw_1.dir.path().join("central.key"),
    );
    let mut service = CentralProc::spawn(&config, &[]);
    service.wait_connected();
    wait_for(T, "six readers from two gateways", || {
        pg.count("SELECT count(*) FROM readers WHERE online AND secure_channel") == 6
    });
    assert_eq!(
        pg.count(
            "SELECT count(DISTINCT gateway) FROM readers WHERE vendor = 'b2a100' AND model = 1 \
             AND version = 2 AND firmware = '1.2.3' \
             AND capabilities @> '[{\"name\": \"communication_security\"}]'"
        ),
        2
    );
    // The vendor is the OUI bytes in wire order (the harness sets
    // 0x00A1B2, which libosdp sends little-endian). Serial numbers are per
    // reader (0x1000 + address in the harness).
    assert_eq!(
        pg.count("SELECT count(*) FROM readers WHERE serial = 4096 + address"),
        6
    );

    // The fleet question, with a version prefix that must not over-match.
    let old = readers(&config, &["--firmware", "1.2"]);
    assert_eq!(old.len(), 6, "{old:?}");
    let gateways: std::collections::BTreeSet<&str> =
        old.iter().filter_map(|r| r["gateway"].as_str()).collect();
    assert_eq!(gateways.into_iter().collect::<Vec<_>>(), [GW_1, GW_2]);
    assert!(readers(&config, &["--firmware", "1.20"]).is_empty());
    assert!(readers(&config, &["--firmware", "1.2.4"]).is_empty());
    assert_eq!(readers(&config, &[]).len(), 6);

    // A gateway's last will changes nothing in the inventory but its own
    // state: the readers stay known.
    drop(gw_2);
    wait_for(T, "gateway 2 offline", || {
        pg.count(&format!(
            "SELECT count(*) FROM gateways WHERE id = '{GW_2}' AND state = 'offline'"
        )) == 1
    });
    assert_eq!(pg.count("SELECT count(*) FROM readers"), 6);
    drop(gw_1);
}
