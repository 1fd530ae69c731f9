//! Headless Chromium against the admin port over the fake backend: the
//! walkthrough of `admin_support::walkthrough` (log in, live refresh shows
//! a reader going offline, why box, confirmed unlock) and the screenshots
//! in `docs/` that the README shows. A daemon test runs the same
//! walkthrough with a real PD simulator to stop.

mod admin_support;

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
