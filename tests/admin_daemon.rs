//! The admin port of a running `portier run` (three libosdp PDs in Secure
//! Channel, the example building): every route refuses an anonymous
//! request but `/healthz`; a viewer reads but cannot act; an operator's
//! unlock releases the strike at the libosdp PD and is journaled; a POST
//! without its CSRF token is refused; the "why" box answers from the rules
//! in force; repeated wrong passwords lock the account.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use portier::admin::ROUTES;
use portier::admin::client::{AdminClient, Auth};
use portier::admin::tls::Trust;
use serde_json::{Value, json};
use support::gateway::{Gateway, STAFF, TIMED_ON};

fn path(p: &str) -> String {
    p.replace("{id}", "side-entrance")
}

#[test]
fn the_admin_port_of_the_running_daemon() {
    let gw = &mut Gateway::start();
    let (url, fingerprint) = gw.admin();
    let trust = Trust::Fingerprint(fingerprint);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (operator, viewer) = (gw.operator.clone(), gw.viewer.clone());

    // Anonymous: only /healthz and the login form answer.
    rt.block_on(async {
        let anon = AdminClient::new(&url, &trust, Auth::Anonymous).unwrap();
        for route in ROUTES {
            let (method, p) = (route.method, route.path);
            let r = anon.send(method, &path(p), &[], Vec::new()).await.unwrap();
            let open = matches!((method, p), ("GET", "/healthz") | ("GET", "/login"));
            assert_eq!(
                (200..300).contains(&r.status),
                open,
                "{method} {p} answered {} anonymously",
                r.status
            );
        }
    });

    // A viewer reads the real status, and cannot act.
    rt.block_on(async {
        let mut v = AdminClient::new(&url, &trust, Auth::Anonymous).unwrap();
        v.login(&viewer.0, &viewer.1).await.unwrap();
        let status: Value = v.get_json("/api/v1/status").await.unwrap();
        assert_eq!(status["gateway"]["id"], "gw-university-1");
        assert_eq!(status["rules"]["version"], 1);
        let pds = status["buses"][0]["pds"].as_array().unwrap();
        assert_eq!(pds.len(), 3);
        assert!(
            pds.iter()
                .all(|p| p["online"] == true && p["secure_channel"] == true),
            "{pds:?}"
        );
        let doors: Vec<&str> = status["doors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            doors,
            ["main-revolving", "side-entrance", "lab-1", "lab-1-inner"]
        );
        let why: Value = v
            .get_json("/api/v1/why?door=side-entrance&card=42:1005")
            .await
            .unwrap();
        assert_eq!(
            (why["decision"].as_str(), why["reason"].as_str()),
            (Some("deny"), Some("blocked")),
            "{why}"
        );
        let r = v
            .send(
                "POST",
                "/api/v1/doors/side-entrance/unlock",
                &[("content-type", "application/json")],
                json!({"seconds": 5}).to_string().into_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 403, "a viewer unlocked: {}", r.text());
    });

    // The door, the why box and `portier snapshot decide` answer alike: in
    // lockdown, the staff card (granted by the rules) is denied for the
    // lockdown — one decision path.
    gw.act(json!({"action": "lockdown", "doors": ["side-entrance"]}));
    gw.badge(2, STAFF);
    let denied = gw.expect_event("the door's lockdown denial", |e| {
        e["type"] == "access_denied" && e["door"] == "side-entrance" && e["credential"] == STAFF
    });
    assert_eq!(denied["reason"], "lockdown", "{denied}");
    let now = jiff::Timestamp::now().to_string();
    let decide = |lockdown: bool| -> Value {
        let snapshot = gw.dir.path().join("snapshot.cbor");
        let pubkey = gw.dir.path().join("central.pub");
        let mut args = vec![
            "snapshot",
            "decide",
            snapshot.to_str().unwrap(),
            "--pubkey",
            pubkey.to_str().unwrap(),
            "--door",
            "side-entrance",
            "--card",
            "42:1001",
            "--at",
            &now,
        ];
        if lockdown {
            args.push("--lockdown");
        }
        serde_json::from_str(&support::portier_ok(&args)).unwrap()
    };
    assert_eq!(decide(false)["decision"], "grant");
    let in_lockdown = decide(true);
    assert_eq!(
        (
            in_lockdown["decision"].as_str(),
            in_lockdown["reason"].as_str()
        ),
        (Some("deny"), Some("lockdown")),
        "{in_lockdown}"
    );
    rt.block_on(async {
        let mut v = AdminClient::new(&url, &trust, Auth::Anonymous).unwrap();
        v.login(&viewer.0, &viewer.1).await.unwrap();
        let why: Value = v
            .get_json("/api/v1/why?door=side-entrance&card=42:1001")
            .await
            .unwrap();
        assert_eq!(
            (why["decision"].as_str(), why["reason"].as_str()),
            (Some("deny"), Some("lockdown")),
            "{why}"
        );
    });
    gw.act(json!({"action": "release_lockdown", "doors": ["side-entrance"]}));

    // An operator without the CSRF token is refused; with it, the strike
    // releases at the libosdp PD.
    let mark = gw.mark();
    rt.block_on(async {
        let mut op = AdminClient::new(&url, &trust, Auth::Anonymous).unwrap();
        op.login(&operator.0, &operator.1).await.unwrap();
        let Auth::Session { cookie, .. } = op.auth.clone() else {
            panic!("no session")
        };
        let no_csrf = AdminClient::new(&url, &trust, Auth::Session { cookie, csrf: None }).unwrap();
        let body = json!({"seconds": 5}).to_string().into_bytes();
        let json_type = [("content-type", "application/json")];
        let r = no_csrf
            .send(
                "POST",
                "/api/v1/doors/side-entrance/unlock",
                &json_type,
                body.clone(),
            )
            .await
            .unwrap();
        assert_eq!(
            r.status,
            403,
            "a POST without CSRF token acted: {}",
            r.text()
        );
        let r = op
            .send(
                "POST",
                "/api/v1/doors/side-entrance/unlock",
                &json_type,
                body,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        // The status shows the override and when it reverts by itself.
        let status: Value = op.get_json("/api/v1/status").await.unwrap();
        let door = status["doors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == "side-entrance")
            .unwrap()
            .clone();
        assert_eq!(door["mode"], "card_only", "{door}");
        assert_eq!(door["override_state"]["state"], "unlocked", "{door}");
        let until: jiff::Timestamp = door["override_state"]["until"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let now: jiff::Timestamp = status["gateway"]["now"].as_str().unwrap().parse().unwrap();
        let left = until.duration_since(now).as_secs_f64();
        assert!((0.0..=5.5).contains(&left), "override reverts in {left} s");
    });
    let out = gw.expect_pd(mark, "strike released by the operator", |v| {
        v["event"] == "output" && v["address"] == 2 && v["control_code"] == TIMED_ON
    });
    assert_eq!(out["timer"], 50, "{out}");
    gw.expect_event("journaled as an admin action", |e| {
        e["type"] == "remote_action" && e["source"] == "admin:op"
    });

    // A decision shows in /metrics by result and reason.
    gw.badge(2, support::gateway::LOST);
    gw.expect_event("the lost pass denied", |e| {
        e["type"] == "access_denied" && e["reason"] == "blocked"
    });
    let metrics = rt.block_on(async {
        let mut v = AdminClient::new(&url, &trust, Auth::Anonymous).unwrap();
        v.login(&viewer.0, &viewer.1).await.unwrap();
        v.send("GET", "/metrics", &[], Vec::new())
            .await
            .unwrap()
            .text()
    });
    let line = metrics
        .lines()
        .find(|l| l.contains("reason=\"blocked\"") && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no blocked decision in /metrics:\n{metrics}"));
    assert!(line.trim_end().ends_with(" 1"), "{line}");
    // Poll round trips of the SC exchanges are measured per bus.
    let count = metrics
        .lines()
        .find(|l| l.contains("round_trip") && l.contains("_count") && l.contains("bus-1"))
        .unwrap_or_else(|| panic!("no poll round-trip histogram for bus-1:\n{metrics}"));
    let n: f64 = count.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n > 10.0, "{count}");

    // The time is not confirmed (no central here): the operator confirms
    // it on the page, journaled with their name; the daemon says so.
    assert_eq!(
        gw.ask(json!({"query": "time"}))["result"]["confirmed"],
        false
    );
    rt.block_on(async {
        let mut op = AdminClient::new(&url, &trust, Auth::Anonymous).unwrap();
        op.login(&operator.0, &operator.1).await.unwrap();
        let page = op.send("GET", "/", &[], Vec::new()).await.unwrap().text();
        assert!(page.contains("confirm-time-button"), "no confirm form");
        let Auth::Session {
            csrf: Some(csrf), ..
        } = op.auth.clone()
        else {
            panic!("no session")
        };
        let body = format!("csrf={csrf}").into_bytes();
        let r = op
            .send(
                "POST",
                "/time/confirm",
                &[("content-type", "application/x-www-form-urlencoded")],
                body,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    });
    gw.expect_event("the confirmation journaled with who", |e| {
        e["type"] == "clock_confirmed" && e["by"] == "admin:op"
    });
    assert_eq!(
        gw.ask(json!({"query": "time"}))["result"]["confirmed"],
        true
    );

    // Lockout: five wrong passwords, then the right one is refused too.
    rt.block_on(async {
        let mut c = AdminClient::new(&url, &trust, Auth::Anonymous).unwrap();
        for _ in 0..5 {
            assert!(c.login(&operator.0, "wrong").await.is_err());
        }
        let e = c
            .login(&operator.0, &operator.1)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("refused"), "{e}");
    });
    // Journaled per address: the first failure at once, the rest of the
    // minute (the lockout's refusals among them) summed when it ends.
    gw.expect_event("the first failure journaled", |e| {
        e["type"] == "admin_login_failed" && e["count"] == 1 && e["user"] == operator.0.as_str()
    });
}
