//! The admin port over real HTTPS on loopback, with a fake backend:
//! authentication on every route, roles, CSRF, lockout, cookies, TLS
//! pinning, the OpenAPI file against the router, and the CLI verbs
//! (`portier admin passwd`, `portier status`).

mod admin_support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use admin_support::{AdminHarness, start_fake};
use portier::admin::auth::LockoutConfig;
use portier::admin::client::{AdminClient, Auth, HttpResponse, hidden_field, set_cookie_value};
use portier::admin::tls::Trust;
use portier::admin::{DoorCommand, ROUTES};
use portier::event::EventKind;
use portier::status::Status;
use serde_json::Value;

fn concrete(path: &str) -> String {
    path.replace("{id}", "main-entrance")
}

async fn send(c: &AdminClient, method: &str, path: &str, body: &str) -> HttpResponse {
    let ctype = if path.starts_with("/api/") {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    c.send(
        method,
        path,
        &[("content-type", ctype)],
        body.as_bytes().to_vec(),
    )
    .await
    .unwrap()
}

/// Door-action events the fake journaled, as (user, door, result).
fn action_events(h: &AdminHarness) -> Vec<(String, String, String)> {
    h.fake
        .recorded()
        .into_iter()
        .filter_map(|e| match e {
            EventKind::AdminAction {
                user, door, result, ..
            } => Some((user, door, result)),
            _ => None,
        })
        .collect()
}

fn login_events(h: &AdminHarness) -> Vec<(String, String)> {
    h.fake
        .recorded()
        .into_iter()
        .filter_map(|e| match e {
            EventKind::AdminLogin { user, result, .. } => Some((user, result.to_string())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_are_refused_everywhere_but_healthz() {
    let h = start_fake(LockoutConfig::default()).await;
    let anon = h.client(Auth::Anonymous);
    let bad_token = h.client(Auth::Token(
        "ptk_0000000000000000000000000000000000000000000000000000000000000000".into(),
    ));
    let forged_cookie = h.client(Auth::Session {
        cookie: "__Host-portier_session=00112233".into(),
        csrf: Some("x".into()),
    });
    for route in ROUTES {
        let (method, path) = (&route.method, concrete(route.path));
        let body = if path.starts_with("/api/") {
            r#"{"seconds":5}"#
        } else {
            "seconds=5&csrf=x&user=tech&password=x"
        };
        for (who, c) in [
            ("anonymous", &anon),
            ("bad token", &bad_token),
            ("forged cookie", &forged_cookie),
        ] {
            let r = send(c, method, &path, body).await;
            let text = r.text();
            match (*method, path.as_str()) {
                ("GET", "/healthz") => assert_eq!((r.status, text.as_str()), (200, "ok\n")),
                ("GET", "/login") => {
                    assert_eq!(r.status, 200);
                    assert!(text.contains("name=\"password\""));
                }
                ("POST", "/login") => {
                    // No login cookie: the form is refused before any
                    // password is checked, and no session is handed out.
                    assert_eq!(r.status, 403, "{who} {method} {path}");
                    assert!(set_cookie_value(&r, "__Host-portier_session").is_none());
                }
                (_, p) if p.starts_with("/api/") || p == "/metrics" => {
                    assert_eq!(r.status, 401, "{who} {method} {path}: {text}");
                    assert!(r.header("www-authenticate").is_some());
                    assert!(!text.contains("Ravelijn"), "{who} {method} {path} leaks");
                }
                _ => {
                    assert_eq!(r.status, 303, "{who} {method} {path}: {text}");
                    assert_eq!(r.header("location"), Some("/login"));
                    assert!(!text.contains("Ravelijn"), "{who} {method} {path} leaks");
                }
            }
        }
    }
    // Unknown paths look the same as known ones to an anonymous caller.
    assert_eq!(send(&anon, "GET", "/api/v1/nothing", "").await.status, 401);
    assert!(h.fake.actions().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_reads_everything_but_cannot_act() {
    let h = start_fake(LockoutConfig::default()).await;
    let v = h.login(&h.viewer).await;
    let Auth::Session {
        csrf: Some(csrf), ..
    } = v.auth.clone()
    else {
        panic!("viewer session has a CSRF token")
    };
    let s: Status = v.get_json("/api/v1/status").await.unwrap();
    assert_eq!(s.gateway.building, "Ravelijn");
    let ev: Value = v
        .get_json("/api/v1/events?after=1042&limit=5")
        .await
        .unwrap();
    let seqs: Vec<u64> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1043]);
    assert_eq!(ev["events"][0]["reason"], "outside_schedule");
    let occ: Value = v.get_json("/api/v1/occupancy").await.unwrap();
    assert_eq!(occ["inside"][0]["name"], "Ada Lovelace");
    assert_eq!(occ["inside"][0]["area"], "building");
    assert_eq!(occ["inside"][0]["door"], "main-entrance");
    let occ: Value = v.get_json("/api/v1/occupancy?area=lab-wing").await.unwrap();
    assert_eq!(
        (occ["area"].as_str(), occ["inside"].as_array().map(Vec::len)),
        (Some("lab-wing"), Some(0))
    );
    let long = format!("/api/v1/occupancy?area={}", "x".repeat(65));
    assert_eq!(send(&v, "GET", &long, "").await.status, 400);
    assert_eq!(
        send(&v, "GET", "/api/v1/occupancy?room=1", "").await.status,
        400
    );
    let why: Value = v
        .get_json("/api/v1/why?door=main-entrance&card=42:1002")
        .await
        .unwrap();
    assert_eq!(why["decision"], "deny");
    assert_eq!(why["reason"], "outside_schedule");
    assert_eq!(
        why["reason_text"],
        "access to this door, but not at this time"
    );
    assert!(why.get("day_type").is_none(), "an ordinary day: {why}");
    // On a special day the answer says which day type applied, and the
    // page's why box shows it.
    let why: Value = v
        .get_json("/api/v1/why?door=main-entrance&card=42:1001")
        .await
        .unwrap();
    assert_eq!(
        (&why["day_type"], &why["day_name"]),
        (&"holiday_b".into(), &"Christmas break".into())
    );
    let page = send(&v, "GET", "/?door=main-entrance&card=42%3A1001", "").await;
    assert!(
        page.text().contains("day type holiday_b (Christmas break)"),
        "the why box does not say the day type"
    );
    let metrics = send(&v, "GET", "/metrics", "").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .text()
            .contains("portier_pd_online{bus=\"bus0\",address=\"1\"} 1")
    );
    assert!(metrics.text().contains("portier_event_backlog 2"));

    // Acting: refused with or without CSRF, through the API and the forms.
    let api = v
        .send(
            "POST",
            "/api/v1/doors/main-entrance/unlock",
            &[("content-type", "application/json")],
            br#"{"seconds":5}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(api.status, 403, "{}", api.text());
    let form = send(
        &v,
        "POST",
        "/doors/main-entrance/unlock",
        &format!("seconds=5&csrf={csrf}"),
    )
    .await;
    assert_eq!(form.status, 403);
    let confirm = send(
        &v,
        "GET",
        "/confirm?door=main-entrance&action=unlock&seconds=5",
        "",
    )
    .await;
    assert_eq!(confirm.status, 403);
    let token = h.client(Auth::Token(h.viewer_token.clone()));
    let r = send(
        &token,
        "POST",
        "/api/v1/doors/revolving-east/release",
        r#"{"direction":"in"}"#,
    )
    .await;
    assert_eq!(r.status, 403);
    // The role is known before the body is read: a body that would not
    // even parse gets 403, not 400.
    let r = send(
        &token,
        "POST",
        "/api/v1/doors/main-entrance/unlock",
        "{not json",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(h.fake.actions().is_empty(), "a viewer reached the door");
    let refused = action_events(&h);
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(refused.iter().all(|(_, _, r)| r.starts_with("forbidden")));
    assert!(login_events(&h).contains(&("guard".into(), "ok".into())));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_acts_only_with_the_csrf_token() {
    let h = start_fake(LockoutConfig::default()).await;
    let op = h.login(&h.operator).await;
    let Auth::Session {
        cookie,
        csrf: Some(csrf),
    } = op.auth.clone()
    else {
        panic!("operator session")
    };
    let no_csrf = h.client(Auth::Session {
        cookie: cookie.clone(),
        csrf: None,
    });
    let wrong_csrf = h.client(Auth::Session {
        cookie: cookie.clone(),
        csrf: Some("0".repeat(32)),
    });
    let unlock = r#"{"seconds":5}"#;
    for c in [&no_csrf, &wrong_csrf] {
        let r = send(c, "POST", "/api/v1/doors/main-entrance/unlock", unlock).await;
        assert_eq!(r.status, 403, "{}", r.text());
    }
    let r = send(&no_csrf, "POST", "/doors/main-entrance/unlock", "seconds=5").await;
    assert_eq!(r.status, 403);
    let r = send(
        &no_csrf,
        "POST",
        "/doors/main-entrance/unlock",
        "seconds=5&csrf=abc",
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(
        h.fake.actions().is_empty(),
        "a POST without CSRF reached the door"
    );

    // With the token: the API and the confirmed form both act.
    let r = send(&op, "POST", "/api/v1/doors/main-entrance/unlock", unlock).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let confirm = send(
        &op,
        "GET",
        "/confirm?door=main-entrance&action=override&state=unlocked&minutes=30",
        "",
    )
    .await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.text().contains("override unlocked 30 min"));
    assert_eq!(
        hidden_field(&confirm.text(), "csrf").as_deref(),
        Some(csrf.as_str())
    );
    let r = send(
        &no_csrf,
        "POST",
        "/doors/main-entrance/override",
        &format!("state=unlocked&minutes=30&csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Done"));
    // A bearer token carries no ambient authority and needs no CSRF.
    let token = h.client(Auth::Token(h.operator_token.clone()));
    let r = send(
        &token,
        "POST",
        "/api/v1/doors/revolving-east/release",
        r#"{"direction":"out"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cmds: Vec<(String, DoorCommand, String)> = h
        .fake
        .actions()
        .into_iter()
        .map(|a| (a.door, a.command, a.by))
        .collect();
    use portier::admin::{OverrideChoice, PassageDirection};
    assert_eq!(
        cmds,
        [
            (
                "main-entrance".into(),
                DoorCommand::Unlock { seconds: 5 },
                "tech".into()
            ),
            (
                "main-entrance".into(),
                DoorCommand::Override {
                    state: OverrideChoice::Unlocked,
                    minutes: 30
                },
                "tech".into()
            ),
            (
                "revolving-east".into(),
                DoorCommand::ReleasePassage {
                    direction: PassageDirection::Out
                },
                "ops-script".into()
            ),
        ]
    );

    // Errors map to statuses and are journaled too.
    for (path, body, status) in [
        ("/api/v1/doors/nowhere/unlock", unlock, 404),
        (
            "/api/v1/doors/main-entrance/unlock",
            r#"{"seconds":0}"#,
            400,
        ),
        (
            "/api/v1/doors/main-entrance/unlock",
            r#"{"seconds":"5"}"#,
            400,
        ),
        (
            "/api/v1/doors/main-entrance/mode",
            r#"{"state":"open","minutes":5}"#,
            400,
        ),
        (
            "/api/v1/doors/main-entrance/release",
            r#"{"direction":"in"}"#,
            409,
        ),
    ] {
        let r = send(&op, "POST", path, body).await;
        assert_eq!(r.status, status, "{path} {body}: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let events = action_events(&h);
    let ok = events.iter().filter(|(_, _, r)| r == "ok").count();
    assert_eq!(ok, 3, "{events:?}");
    assert!(
        events
            .iter()
            .any(|(_, d, r)| d == "main-entrance" && r.contains("revolving"))
    );
    assert!(
        events
            .iter()
            .any(|(_, d, r)| d == "nowhere" && r.contains("no door"))
    );
    h.stop().await;
}

/// Failed logins back off per (user, address) and per address, never per
/// user name alone: an attacker at one address failing for "tech" over and
/// over slows only itself; tech logs in from another address at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_back_off_per_address_and_cannot_lock_out_a_user() {
    let h = start_fake(LockoutConfig {
        max_failures: 3,
        max_failures_per_address: 6,
        window_secs: 600,
        lockout_secs: 600,
    })
    .await;
    let mut attacker = h.client(Auth::Anonymous);
    attacker.source = Some("127.0.0.2".parse().unwrap());
    for i in 0..3 {
        let e = attacker
            .login(&h.operator.0, "wrong password")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("Wrong user name or password"), "{i}: {e}");
    }
    // From the attacker's address further tries must now wait, the right
    // password too; the waits double while the attacker keeps on. (Exact
    // waits are unit-tested in virtual time; here only that a refusal
    // comes, which needs no timing: tries take milliseconds, waits ≥ 1 s.)
    let mut refusals = Vec::new();
    for i in 0..20 {
        let password = if i == 0 {
            h.operator.1.as_str()
        } else {
            "guess"
        };
        let e = attacker
            .login(&h.operator.0, password)
            .await
            .unwrap_err()
            .to_string();
        if e.contains("locked") {
            refusals.push(e);
        }
    }
    assert!(!refusals.is_empty(), "the attacker was never held back");
    assert!(refusals[0].contains("try again in"), "{}", refusals[0]);
    // The operator, from another address, is not held up at all.
    let mut tech = h.client(Auth::Anonymous);
    tech.source = Some("127.0.0.3".parse().unwrap());
    tech.login(&h.operator.0, &h.operator.1).await.unwrap();
    let s: Status = tech.get_json("/api/v1/status").await.unwrap();
    assert_eq!(s.gateway.building, "Ravelijn");
    // An address failing for many names waits, also for a name it never
    // tried (6 failures from one address, each name only once).
    let mut other = h.client(Auth::Anonymous);
    other.source = Some("127.0.0.4".parse().unwrap());
    other.login(&h.viewer.0, &h.viewer.1).await.unwrap();
    let mut held = false;
    for i in 0..20 {
        let e = other
            .login(&format!("nobody{i}"), "guess")
            .await
            .unwrap_err()
            .to_string();
        if e.contains("locked") {
            assert!(i >= 6, "held back after {i} failures: {e}");
            held = true;
            break;
        }
    }
    assert!(held, "the address was never held back");
    let logins = login_events(&h);
    let count = |u: &str, r: &str| logins.iter().filter(|(a, b)| a == u && b == r).count();
    assert_eq!(count("tech", "ok"), 1);
    assert_eq!(count("guard", "ok"), 1);
    // Failures are journaled per address: the first at once, the rest of
    // the minute as one sum (here at shutdown).
    let fake = h.fake.clone();
    h.stop().await;
    let failed = |client: &str| {
        fake.recorded()
            .into_iter()
            .filter_map(|e| match e {
                EventKind::AdminLoginFailed {
                    client: c,
                    count,
                    refused,
                    ..
                } if c == client => Some((count, refused)),
                _ => None,
            })
            .fold((0, 0, 0), |(n, c, r), (count, refused)| {
                (n + 1, c + count, r + refused)
            })
    };
    let (records, failures, refused) = failed("127.0.0.2");
    assert_eq!(
        (records, failures),
        (2, 23),
        "the attacker's failures summed"
    );
    assert!(refused >= 1, "the lockout's refusals counted");
    let (records, failures, _) = failed("127.0.0.4");
    assert!(records <= 2 && failures >= 7, "{records} {failures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_is_locked_down_and_logout_ends_it() {
    let h = start_fake(LockoutConfig::default()).await;
    let anon = h.client(Auth::Anonymous);
    let form = send(&anon, "GET", "/login", "").await;
    let login_cookie = set_cookie_value(&form, "__Host-portier_login")
        .unwrap()
        .to_owned();
    let csrf = hidden_field(&form.text(), "csrf").unwrap();
    let body = serde_urlencoded::to_string([
        ("user", h.operator.0.as_str()),
        ("password", h.operator.1.as_str()),
        ("csrf", csrf.as_str()),
    ])
    .unwrap();
    let r = anon
        .send(
            "POST",
            "/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &login_cookie),
            ],
            body.into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 303);
    let set = r
        .headers_named("set-cookie")
        .find(|c| c.starts_with("__Host-portier_session="))
        .unwrap()
        .to_owned();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    for hdr in [
        "content-security-policy",
        "x-frame-options",
        "cache-control",
    ] {
        assert!(r.header(hdr).is_some(), "{hdr}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let c = h.client(Auth::Session {
        cookie: cookie.clone(),
        csrf: None,
    });
    let page = send(&c, "GET", "/", "").await;
    assert_eq!(page.status, 200);
    let page_csrf = hidden_field(&page.text(), "csrf").unwrap();
    // Logout needs the CSRF token too.
    assert_eq!(send(&c, "POST", "/logout", "").await.status, 403);
    let r = send(&c, "POST", "/logout", &format!("csrf={page_csrf}")).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    let after = send(&c, "GET", "/api/v1/status", "").await;
    assert_eq!(after.status, 401);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_the_building_and_escapes_what_it_shows() {
    let h = start_fake(LockoutConfig::default()).await;
    h.fake.status.lock().unwrap().doors[0].mode = "<script>alert(1)</script>".into();
    h.fake.status.lock().unwrap().interlocks = vec![portier::status::InterlockStatus {
        id: "lab-airlock".into(),
        doors: vec!["lab-1".into(), "lab-1-inner".into()],
        busy: vec!["lab-1".into()],
        waiting: 1,
    }];
    let op = h.login(&h.operator).await;
    let page = send(&op, "GET", "/?door=main-entrance&card=42%3A1002", "").await;
    assert_eq!(page.status, 200);
    let t = page.text();
    for want in [
        "Ravelijn",
        "gw-ravelijn-1",
        "Ada Lovelace",
        "access to this door, but not at this time",
        "id=\"why-answer\"",
        "vendor 0A1B2C model 3 v1 serial 123456 fw 1.4.2",
        "communication_security",
        "Europe/Amsterdam",
        "Unlock momentarily",
        "Inside now — muster list (1)",
        "<td>building</td>",
        "<td>main-entrance</td>",
        "<h2>Airlocks</h2>",
        "<td>lab-airlock</td><td>lab-1, lab-1-inner</td>",
        "@media print",
    ] {
        assert!(t.contains(want), "page lacks {want:?}");
    }
    assert!(!t.contains("<script>alert(1)"), "unescaped status text");
    assert!(t.contains("&lt;script&gt;alert(1)"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'sha256-") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    // A viewer's page has no action forms.
    let v = h.login(&h.viewer).await;
    let t = send(&v, "GET", "/", "").await.text();
    assert!(!t.contains("Unlock momentarily"));
    // The live fragment follows the status.
    h.fake.set_pd_online("bus0", 2, false);
    let live = send(&v, "GET", "/live", "").await.text();
    assert!(
        live.contains("data-address=\"2\" data-online=\"false\""),
        "{live}"
    );
    assert!(live.contains("readers online 1/2"));
    // A fire alarm: a red banner first, escaped like everything else, and
    // the metrics count it and the duress alarms.
    {
        let mut status = h.fake.status.lock().unwrap();
        status.fire_alarms = vec!["fire<panel>".into()];
        status.duress_since_start = 2;
    }
    let live = send(&v, "GET", "/live", "").await.text();
    let banner = live.find("id=\"fire-alarm\"").expect("fire banner");
    assert!(
        banner < live.find("readers online").unwrap(),
        "banner first"
    );
    assert!(live.contains("fire&lt;panel&gt;"), "{live}");
    let metrics = send(&v, "GET", "/metrics", "").await.text();
    assert!(
        metrics.contains("portier_fire_alarms_active 1"),
        "{metrics}"
    );
    assert!(metrics.contains("portier_duress_alarms 2"), "{metrics}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_pin_the_generated_certificate() {
    let h = start_fake(LockoutConfig::default()).await;
    let pem = std::fs::read_to_string(h.state_dir.join("admin-tls/cert.pem")).unwrap();
    let der = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
    )
    .unwrap();
    assert_eq!(portier::admin::tls::fingerprint(&der), h.fingerprint);
    // The start, with the fingerprint, is journaled.
    let fake = h.fake.clone();
    let fp = h.fingerprint.clone();
    admin_support::wait_until(Duration::from_secs(5), "admin_started event", move || {
        let started = fake.recorded().iter().any(|e| matches!(
            e,
            EventKind::AdminStarted { fingerprint, cert_generated: true, .. } if *fingerprint == fp
        ));
        async move { started }
    })
    .await;
    let wrong = portier::admin::tls::fingerprint(b"another certificate");
    let c = AdminClient::new(&h.url, &Trust::Fingerprint(wrong), Auth::Anonymous).unwrap();
    let e = c
        .send("GET", "/healthz", &[], Vec::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("fingerprint"), "{e}");
    let c = AdminClient::new(&h.url, &h.trust(), Auth::Anonymous).unwrap();
    assert_eq!(
        c.send("GET", "/healthz", &[], Vec::new())
            .await
            .unwrap()
            .status,
        200
    );
    h.stop().await;
}

/// `docs/openapi.json` is OpenAPI 3, its references resolve, and its
/// operations are exactly the router's routes; every listed route exists
/// in the running router (not 404) and an unlisted one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_file_matches_the_router() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0"));
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let m = method.to_uppercase();
            assert!(["GET", "POST"].contains(&m.as_str()), "{method} {path}");
            assert!(op["operationId"].is_string(), "{m} {path}: operationId");
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{m} {path}: responses");
            for (code, r) in responses {
                assert!(code.parse::<u16>().is_ok(), "{m} {path} {code}");
                assert!(
                    r["description"].is_string(),
                    "{m} {path} {code}: description"
                );
            }
            // Every {param} in the path is declared as a path parameter.
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(|c| c == '{' || c == '}');
                let declared = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["in"] == "path" && p["name"] == name && p["required"] == true)
                });
                assert!(declared, "{m} {path}: path parameter {name}");
            }
            documented.insert((m, path.clone()));
        }
    }
    // Every $ref points at an existing schema.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling {r}"
        );
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(
        documented, routed,
        "docs/openapi.json and admin::ROUTES differ"
    );

    // ROUTES is what the router serves.
    let h = start_fake(LockoutConfig::default()).await;
    let c = h.client(Auth::Token(h.operator_token.clone()));
    for route in ROUTES {
        let (method, path) = (route.method, route.path);
        let r = send(&c, method, &concrete(path), "{}").await;
        assert_ne!(r.status, 404, "{method} {path} not routed");
        assert_ne!(r.status, 405, "{method} {path} wrong method");
    }
    assert_eq!(send(&c, "GET", "/api/v1/nothing", "").await.status, 404);
    h.stop().await;
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref" {
                    out.push(v.as_str().unwrap().to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// `portier admin passwd` adds a user the running server accepts without a
/// restart; `portier admin token` makes a token; `portier status` prints the
/// status with it (pinned fingerprint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_passwd_token_and_status() {
    let h = start_fake(LockoutConfig::default()).await;
    let cfg = h.dir.path().join("portier.toml");
    let bin = env!("CARGO_BIN_EXE_portier");
    let mut child = Command::new(bin)
        .args(["admin", "passwd", "--config"])
        .arg(&cfg)
        .args(["--user", "night-tech", "--role", "operator"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough passphrase\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&h.users_file).unwrap();
    assert!(text.contains("night-tech") && text.contains("$argon2id$"));
    assert!(!text.contains("a long enough passphrase"));
    // Too short a password is refused and nothing is written.
    let mut child = Command::new(bin)
        .args(["admin", "passwd", "--config"])
        .arg(&cfg)
        .args(["--user", "x", "--role", "viewer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    assert!(!child.wait().unwrap().success());
    assert!(
        !std::fs::read_to_string(&h.users_file)
            .unwrap()
            .contains("name = \"x\"")
    );

    // The running server re-reads the users file: no restart needed.
    let mut c = h.client(Auth::Anonymous);
    c.login("night-tech", "a long enough passphrase")
        .await
        .unwrap();

    let out = Command::new(bin)
        .args(["admin", "token", "--config"])
        .arg(&cfg)
        .args(["--name", "nagios", "--role", "viewer"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("ptk_"), "{token}");

    let out = Command::new(bin)
        .args(["status", "--url", &h.url, "--fingerprint", &h.fingerprint])
        .env("PORTIER_ADMIN_TOKEN", &token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "Ravelijn",
        "gw-ravelijn-1",
        "rules v42",
        "bus0",
        "main-entrance",
        "Ada Lovelace",
        "outside_schedule",
    ] {
        assert!(stdout.contains(want), "status lacks {want:?}:\n{stdout}");
    }
    let out = Command::new(bin)
        .args([
            "status",
            "--json",
            "--url",
            &h.url,
            "--fingerprint",
            &h.fingerprint,
        ])
        .env("PORTIER_ADMIN_TOKEN", &token)
        .output()
        .unwrap();
    assert!(out.status.success());
    let s: Status = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s.doors.len(), 2);
    // The muster list, of everyone and of one area.
    let muster = |area: Option<&str>| {
        let mut args = vec![
            "status",
            "--muster",
            "--url",
            &h.url,
            "--fingerprint",
            &h.fingerprint,
        ];
        if let Some(a) = area {
            args.extend(["--area", a]);
        }
        let out = Command::new(bin)
            .args(&args)
            .env("PORTIER_ADMIN_TOKEN", &token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let all = muster(None);
    assert!(
        all.contains("1 inside")
            && all.contains("Ada Lovelace (h10301:42:1001) in building since")
            && all.contains("last door main-entrance"),
        "{all}"
    );
    let lab = muster(Some("lab wing"));
    assert!(
        lab.contains("muster list of lab wing") && lab.contains("0 inside"),
        "{lab}"
    );
    // On the gateway, --config finds the address and the certificate.
    let gw_cfg = h.dir.path().join("gateway.toml");
    std::fs::write(
        &gw_cfg,
        format!(
            "[gateway]\nstate_dir = \"{}\"\n[admin]\nlisten = \"0.0.0.0:{}\"\n",
            h.state_dir.display(),
            h.url.rsplit(':').next().unwrap()
        ),
    )
    .unwrap();
    let out = Command::new(bin)
        .args(["status", "--config"])
        .arg(&gw_cfg)
        .env("PORTIER_ADMIN_TOKEN", &token)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Ravelijn"), "{stdout}");
    // A wrong fingerprint fails loudly.
    let out = Command::new(bin)
        .args(["status", "--url", &h.url, "--fingerprint", &"AB".repeat(32)])
        .env("PORTIER_ADMIN_TOKEN", &token)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fingerprint"));
    h.stop().await;
}

/// A password change or `portier admin remove`, done with the CLI while
/// the server runs, ends that user's sessions at their next request; other
/// users' sessions go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_and_remove_end_the_users_sessions() {
    let h = start_fake(LockoutConfig::default()).await;
    let cfg = h.dir.path().join("portier.toml");
    let bin = env!("CARGO_BIN_EXE_portier");
    let op = h.login(&h.operator).await;
    let viewer = h.login(&h.viewer).await;
    assert_eq!(send(&op, "GET", "/api/v1/status", "").await.status, 200);
    let mut child = Command::new(bin)
        .args(["admin", "passwd", "--config"])
        .arg(&cfg)
        .args(["--user", &h.operator.0, "--role", "operator"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a brand new passphrase\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(send(&op, "GET", "/api/v1/status", "").await.status, 401);
    assert_eq!(send(&op, "GET", "/", "").await.status, 303);
    assert_eq!(send(&viewer, "GET", "/api/v1/status", "").await.status, 200);
    // The new password opens a new session.
    let mut again = h.client(Auth::Anonymous);
    again
        .login(&h.operator.0, "a brand new passphrase")
        .await
        .unwrap();
    assert_eq!(send(&again, "GET", "/api/v1/status", "").await.status, 200);
    // Removing the viewer ends the viewer's session.
    let out = Command::new(bin)
        .args(["admin", "remove", "--config"])
        .arg(&cfg)
        .args(["--name", &h.viewer.0])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(send(&viewer, "GET", "/api/v1/status", "").await.status, 401);
    assert_eq!(send(&again, "GET", "/api/v1/status", "").await.status, 200);
    h.stop().await;
}

/// `portier admin token/passwd` keep who may read the users file: an
/// existing file keeps its group and mode; a new one gets the config
/// file's group and mode 0640 (so a root-run CLI does not lock the service
/// user out of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_keeps_the_users_file_readable_by_the_service() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let h = start_fake(LockoutConfig::default()).await;
    let cfg = h.dir.path().join("portier.toml");
    let bin = env!("CARGO_BIN_EXE_portier");
    let token = |name: &str| {
        let out = Command::new(bin)
            .args(["admin", "token", "--config"])
            .arg(&cfg)
            .args(["--name", name, "--role", "viewer"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    std::fs::set_permissions(&h.users_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let gid = std::fs::metadata(&h.users_file).unwrap().gid();
    token("a");
    assert_eq!(mode(&h.users_file), 0o640);
    assert_eq!(std::fs::metadata(&h.users_file).unwrap().gid(), gid);
    std::fs::remove_file(&h.users_file).unwrap();
    token("b");
    assert_eq!(mode(&h.users_file), 0o640);
    assert_eq!(
        std::fs::metadata(&h.users_file).unwrap().gid(),
        std::fs::metadata(&cfg).unwrap().gid()
    );
    h.stop().await;
}
