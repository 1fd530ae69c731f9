//! Headless Chromium against the admin port over the fake backend: the
//! walkthrough of `admin_support::walkthrough` (log in, live refresh shows
//! a reader going offline, why box, confirmed unlock) and the screenshots
//! in `docs/` that the README shows; then the same walkthrough against a
//! running `portier run` whose libosdp PDs are stopped mid-way. Both check
//! the reader inventory (identity, firmware, capabilities) on the page.

mod admin_support;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use admin_support::start_fake;
use admin_support::walkthrough::{Walkthrough, run};
use portier::admin::DoorCommand;
use portier::admin::auth::LockoutConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_logs_in_watches_asks_why_and_unlocks() {
    let h = start_fake(LockoutConfig::default()).await;
    let w = Walkthrough {
        url: h.url.clone(),
        operator: h.operator.clone(),
        gateway_words: vec![
            "Ravelijn".into(),
            "version 42".into(),
            "Europe/Amsterdam".into(),
        ],
        readers: 2,
        offline: ("bus0".into(), 2),
        online_after: 1,
        offline_within: Duration::from_secs(20),
        why: (
            "42:1002".into(),
            "revolving-east".into(),
            vec![
                "DENY".into(),
                "at revolving-east".into(),
                "access to this door, but not at this time".into(),
            ],
        ),
        unlock_door: "main-entrance".into(),
        screenshots: Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/docs"))),
        inventory: (
            "bus0".into(),
            1,
            vec![
                "vendor 0A1B2C".into(),
                "fw 1.4.2".into(),
                "communication_security".into(),
            ],
        ),
    };
    let fake = h.fake.clone();
    run(&w, || async move { fake.set_pd_online("bus0", 2, false) }).await;
    let actions = h.fake.actions();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].door, "main-entrance");
    assert_eq!(actions[0].command, DoorCommand::Unlock { seconds: 5 });
    assert_eq!(actions[0].by, h.operator.0);
    h.stop().await;
}

#[test]
fn chromium_against_the_running_daemon_sees_the_readers_go_offline() {
    let mut gw = support::gateway::Gateway::start();
    let (url, _) = gw.admin();
    let w = Walkthrough {
        url,
        operator: gw.operator.clone(),
        gateway_words: vec!["university-main".into(), "Europe/Amsterdam".into()],
        readers: 3,
        // The three libosdp PDs share one process: stopping it takes all
        // three offline (the daemon's offline timeout is 8 s).
        offline: ("bus-1".into(), 2),
        online_after: 0,
        offline_within: Duration::from_secs(30),
        why: (
            "42:1005".into(),
            "side-entrance".into(),
            vec!["DENY".into(), "blocked".into()],
        ),
        unlock_door: "side-entrance".into(),
        screenshots: None,
        // What the libosdp PDs report (tests/interop/libosdp_pd.py).
        inventory: (
            "bus-1".into(),
            1,
            vec![
                "vendor b2a100".into(),
                "model 1 v2".into(),
                "serial 4097".into(),
                "fw 1.2.3".into(),
                "communication_security".into(),
                "receive_buffer_size".into(),
            ],
        ),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pds = &mut gw.pds;
    rt.block_on(run(&w, || async move {
        pds.child.kill().unwrap();
    }));
    gw.expect_event("the confirmed unlock, journaled", |e| {
        e["type"] == "remote_action" && e["source"] == "admin:op"
    });
}
