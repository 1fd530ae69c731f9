//! The browser walkthrough of the admin page, independent of the backend:
//! what to expect comes in a [`Walkthrough`], and taking a reader offline
//! is a closure (the fake flips a flag; a daemon test stops a PD
//! simulator).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use super::webdriver::Browser;

/// What the page should show and what to do on it.
#[derive(Debug, Clone)]
pub struct Walkthrough {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// An operator login.
    pub operator: (String, String),
    /// Text the gateway section must contain (building, rules version…).
    pub gateway_words: Vec<String>,
    /// Readers configured (for "readers online N/N").
    pub readers: usize,
    /// The reader `take_offline` stops: bus and address.
    pub offline: (String, u8),
    /// Readers still online after `take_offline`.
    pub online_after: usize,
    /// How long the page may take to show it (the daemon's offline timeout
    /// plus the page's 5 s refresh).
    pub offline_within: Duration,
    /// The why box: card text, door, and words the answer must contain.
    pub why: (String, String, Vec<String>),
    /// Door to unlock (5 s) through the confirmation step.
    pub unlock_door: String,
    /// Where to save the screenshots (`admin-page.png`, `admin-phone.png`).
    pub screenshots: Option<PathBuf>,
    /// The reader inventory: a reader (bus, address) and words its row's
    /// identity / firmware and capabilities cells must show.
    pub inventory: (String, u8, Vec<String>),
}

/// Log in (after one wrong password), check the status, take a reader
/// offline and watch the page show it without a reload, ask the why box,
/// save screenshots, and unlock a door through the confirmation step.
pub async fn run<F, Fut>(w: &Walkthrough, take_offline: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let b = Browser::start(1280, 2200).await;
    // Anonymous: the page sends us to the login form.
    b.goto(&format!("{}/", w.url)).await;
    b.wait_for("#password", Duration::from_secs(10)).await;
    assert!(b.url().await.ends_with("/login"));
    // A wrong password is refused in words.
    b.type_into("#user", &w.operator.0).await;
    b.type_into("#password", "not the password").await;
    b.click("#login").await;
    let err = b.text("#login-error").await;
    assert!(err.contains("Wrong user name or password"), "{err}");
    // The right one lands on the status page.
    b.type_into("#user", &w.operator.0).await;
    b.type_into("#password", &w.operator.1).await;
    b.click("#login").await;
    b.wait_for("#live", Duration::from_secs(10)).await;
    // Every reader online (a loaded machine may show one a refresh late).
    let all = format!("readers online {0}/{0}", w.readers);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let summary = b.text("#summary").await;
        if summary.contains(&all) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "summary never showed {all:?}: {summary}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let gateway = b.text("#gateway").await;
    for word in &w.gateway_words {
        assert!(
            gateway.contains(word.as_str()),
            "gateway lacks {word:?}: {gateway}"
        );
    }
    // The script took over refreshing.
    let refreshed = b.text("#refreshed").await;
    assert!(refreshed.starts_with("live"), "{refreshed}");

    // The reader inventory: identity, firmware and capabilities per reader.
    let (bus, address, words) = &w.inventory;
    let row = format!("tr[data-bus=\"{bus}\"][data-address=\"{address}\"]");
    let inventory = format!(
        "{} {}",
        b.text(&format!("{row} td.firmware")).await,
        b.text(&format!("{row} td.caps")).await
    );
    for word in words {
        assert!(
            inventory.contains(word.as_str()),
            "inventory lacks {word:?}: {inventory}"
        );
    }

    // A reader goes offline: the page shows it by itself.
    take_offline().await;
    let offline = format!(
        "tr[data-bus=\"{}\"][data-address=\"{}\"][data-online=\"false\"]",
        w.offline.0, w.offline.1
    );
    b.wait_for(&offline, w.offline_within).await;
    // Readers that share a stopped process go offline one by one (each at
    // its own reply timeout): wait for the count, with the same deadline.
    let one_less = format!("readers online {}/{}", w.online_after, w.readers);
    let deadline = tokio::time::Instant::now() + w.offline_within;
    loop {
        let summary = b.text("#summary").await;
        if summary.contains(&one_less) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "summary never showed {one_less:?}: {summary}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The why box.
    let (card, door, words) = &w.why;
    b.type_into("#why-card", card).await;
    b.click(&format!("#why-door option[value=\"{door}\"]"))
        .await;
    b.click("#why-ask").await;
    let answer = b.text("#why-answer").await;
    for word in words {
        assert!(
            answer.contains(word.as_str()),
            "why answer lacks {word:?}: {answer}"
        );
    }
    if let Some(dir) = &w.screenshots {
        let png = b.screenshot().await;
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::write(dir.join("admin-page.png"), &png).unwrap();
        // On a phone-sized window the page still reads.
        b.resize(412, 915).await;
        std::fs::write(dir.join("admin-phone.png"), b.screenshot().await).unwrap();
        b.resize(1280, 1000).await;
    }

    // An operator action goes through a confirmation step.
    b.click(&format!("#unlock-door option[value=\"{}\"]", w.unlock_door))
        .await;
    b.click("#unlock").await;
    let confirm = b.text("#confirm-text").await;
    assert!(
        confirm.contains(w.unlock_door.as_str()) && confirm.contains("unlock 5 s"),
        "{confirm}"
    );
    b.click("#confirm").await;
    let title = b.text("#result-title").await;
    let result = b.text("#result").await;
    assert_eq!(title, "Done", "{result}");
    assert!(result.contains("unlock 5 s"), "{result}");
    b.quit().await;
}
