//! Headless Chromium against the admin port: log in, see the status, watch
//! a reader go offline without reloading (the page refreshes itself), ask
//! the "why" box, unlock a door through the confirmation step, and save
//! screenshots into `docs/` (the README shows them).
//!
//! The backend is the fake of `admin_support`; [`browser_walkthrough`] only
//! needs an [`AdminHarness`] and a way to take a reader offline, so the
//! daemon's test can run it against the real thing (stop a PD simulator).

mod admin_support;

use std::time::Duration;

use admin_support::webdriver::Browser;
use admin_support::{AdminHarness, start_fake};
use portier::admin::DoorCommand;
use portier::admin::auth::LockoutConfig;

async fn browser_walkthrough<F, Fut>(h: &AdminHarness, take_reader_offline: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let b = Browser::start(1280, 2200).await;
    // Anonymous: the page sends us to the login form.
    b.goto(&format!("{}/", h.url)).await;
    b.wait_for("#password", Duration::from_secs(10)).await;
    assert!(b.url().await.ends_with("/login"));
    // A wrong password is refused in words.
    b.type_into("#user", &h.operator.0).await;
    b.type_into("#password", "not the password").await;
    b.click("#login").await;
    let err = b.text("#login-error").await;
    assert!(err.contains("Wrong user name or password"), "{err}");
    // The right one lands on the status page.
    b.type_into("#user", &h.operator.0).await;
    b.type_into("#password", &h.operator.1).await;
    b.click("#login").await;
    b.wait_for("#live", Duration::from_secs(10)).await;
    let summary = b.text("#summary").await;
    assert!(summary.contains("readers online 2/2"), "{summary}");
    let gateway = b.text("#gateway").await;
    assert!(
        gateway.contains("Ravelijn") && gateway.contains("version 42"),
        "{gateway}"
    );
    let events = b.text("#events").await;
    assert!(
        events.contains("access to this door, but not at this time"),
        "{events}"
    );
    // The script took over refreshing.
    let refreshed = b.text("#refreshed").await;
    assert!(refreshed.starts_with("live"), "{refreshed}");

    // A reader goes offline: the page shows it by itself.
    take_reader_offline().await;
    let offline = "tr[data-bus=\"bus0\"][data-address=\"2\"][data-online=\"false\"]";
    b.wait_for(offline, Duration::from_secs(20)).await;
    let summary = b.text("#summary").await;
    assert!(summary.contains("readers online 1/2"), "{summary}");

    // The why box: a known card outside its hours, at the main entrance.
    b.type_into("#why-card", "42:1002").await;
    b.click("#why-ask").await;
    let answer = b.text("#why-answer").await;
    assert!(
        answer.contains("DENY") && answer.contains("access to this door, but not at this time"),
        "{answer}"
    );
    let png = b.screenshot().await;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/docs/admin-page.png"),
        &png,
    )
    .unwrap();

    // On a phone-sized window the page still reads.
    b.resize(412, 915).await;
    let png = b.screenshot().await;
    std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/docs/admin-phone.png"),
        &png,
    )
    .unwrap();
    b.resize(1280, 1000).await;

    // An operator action goes through a confirmation step.
    b.click("#unlock").await;
    let confirm = b.text("#confirm-text").await;
    assert!(
        confirm.contains("main-entrance") && confirm.contains("unlock 5 s"),
        "{confirm}"
    );
    b.click("#confirm").await;
    let result = b.text("#result").await;
    assert!(result.contains("unlock 5 s"), "{result}");
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_logs_in_watches_asks_why_and_unlocks() {
    let h = start_fake(LockoutConfig::default()).await;
    let fake = h.fake.clone();
    browser_walkthrough(&h, || async move { fake.set_pd_online("bus0", 2, false) }).await;
    let actions = h.fake.actions();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].command, DoorCommand::Unlock { seconds: 5 });
    assert_eq!(actions[0].by, h.operator.0);
    h.stop().await;
}
