//! Test support for the admin port: a fake [`AdminBackend`] with a small
//! building, and a harness that starts the real HTTPS server on loopback
//! with generated users and tokens.
//!
//! The browser and HTTP tests talk to an [`AdminHarness`] only (URL,
//! fingerprint, logins, tokens, and the [`Building`] hooks); a harness over
//! the real daemon can replace [`start_fake`] without touching the tests.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::disallowed_methods)] // tests wait on real time

pub mod walkthrough;
pub mod webdriver;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use portier::admin::auth::{
    LockoutConfig, Role, TokenEntry, UserEntry, UsersFile, hash_password, token_hash, token_text,
};
use portier::admin::client::{AdminClient, Auth};
use portier::admin::tls::Trust;
use portier::admin::{
    ActionOutcome, AdminBackend, AdminConfig, AdminServer, BackendError, BoxFuture,
    DoorActionRequest, DoorCommand, Metrics, WhyAnswer, WhyDecision, WhyQuery,
};
use portier::event::{Event, EventKind};
use portier::rules::{Card, CredentialKey, DenyReason};
use portier::status::{
    BusStatus, DoorKindName, DoorStatus, GatewayStatus, Occupancy, PdIdentity, PdStatus,
    PresenceEntry, RulesStatus, Status, UplinkStatus,
};
use tokio::sync::watch;

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A small building: one bus with two readers, a standard door and a
/// revolving door, a few events, one person inside.
pub fn sample_status() -> Status {
    let pd = |address: u8, role: &str| PdStatus {
        address,
        role: role.into(),
        online: true,
        secure_channel: true,
        last_reply_age_ms: Some(40),
        offline_reason: None,
        tamper: false,
        power_failure: false,
        identity: Some(PdIdentity {
            vendor: "0A1B2C".into(),
            model: 3,
            version: 1,
            serial: 123456,
            firmware: "1.4.2".into(),
        }),
        capabilities: vec![portier::status::CapabilityStatus::new(9, 1, 1)],
        last_seen: None,
        update: None,
    };
    let door = |id: &str, kind| DoorStatus {
        id: id.into(),
        kind,
        mode: if kind == DoorKindName::Standard {
            "card_only".into()
        } else {
            "cardholders_only".into()
        },
        override_state: None,
        locked: true,
        open: false,
        forced: false,
        held_open: false,
        schedule_open: Some(false),
    };
    let ev = |seq, at: &str, kind| Event {
        seq,
        at: ts(at),
        kind,
    };
    Status {
        gateway: GatewayStatus {
            id: "gw-ravelijn-1".into(),
            building: "Ravelijn".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: ts("2026-11-23T06:00:00Z"),
            uptime_secs: 15 * 3600 + 120,
            now: ts("2026-11-23T21:02:00Z"),
            time_zone: "Europe/Amsterdam".into(),
            time: Default::default(),
        },
        rules: Some(RulesStatus {
            version: 42,
            issued_at: ts("2026-11-23T20:55:00Z"),
            age_secs: 420,
            signer_key_id: "9f3a2b1c0d4e5f60".into(),
            credentials: 18_250,
            too_old: false,
        }),
        rules_untrusted: None,
        buses: vec![BusStatus {
            name: "bus0".into(),
            device: "/dev/ttyUSB0".into(),
            pds: vec![pd(1, "reader"), pd(2, "reader")],
        }],
        doors: vec![
            door("main-entrance", DoorKindName::Standard),
            door("revolving-east", DoorKindName::Revolving),
        ],
        uplink: UplinkStatus {
            configured: true,
            connected: true,
            broker: Some("mqtts://central.example:8883".into()),
            last_ack_at: Some(ts("2026-11-23T21:01:58Z")),
            last_ack_seq: Some(1041),
            backlog: 2,
            oldest_backlog_age_secs: Some(3),
        },
        recent_events: vec![
            ev(
                1042,
                "2026-11-23T21:01:30Z",
                EventKind::AccessGranted {
                    door: "main-entrance".into(),
                    reader: "main-in".into(),
                    credential: "h10301:42:1001".into(),
                },
            ),
            ev(
                1043,
                "2026-11-23T21:01:59Z",
                EventKind::AccessDenied {
                    door: "main-entrance".into(),
                    reader: "main-in".into(),
                    credential: Some("h10301:42:1002".into()),
                    reason: portier::rules::DenyReason::OutsideSchedule,
                },
            ),
        ],
        presence: vec![PresenceEntry {
            credential: "h10301:42:1001".into(),
            name: Some("Ada Lovelace".into()),
            since: ts("2026-11-23T21:01:31Z"),
            area: Some("building".into()),
            door: Some("main-entrance".into()),
        }],
        interlocks: Vec::new(),
        fire_alarms: Vec::new(),
        duress_since_start: 0,
    }
}

/// The fake daemon: status from a mutex, canned "why" answers, and a log
/// of what the admin port asked for.
#[derive(Debug)]
pub struct FakeBackend {
    pub status: Mutex<Status>,
    pub recorded: Mutex<Vec<EventKind>>,
    pub actions: Mutex<Vec<DoorActionRequest>>,
}

impl FakeBackend {
    pub fn new() -> Self {
        Self {
            status: Mutex::new(sample_status()),
            recorded: Mutex::new(Vec::new()),
            actions: Mutex::new(Vec::new()),
        }
    }

    pub fn recorded(&self) -> Vec<EventKind> {
        self.recorded.lock().unwrap().clone()
    }

    pub fn actions(&self) -> Vec<DoorActionRequest> {
        self.actions.lock().unwrap().clone()
    }

    /// Take a PD offline (what stopping its simulator does to the daemon).
    pub fn set_pd_online(&self, bus: &str, address: u8, online: bool) {
        let mut s = self.status.lock().unwrap();
        for b in s.buses.iter_mut().filter(|b| b.name == bus) {
            for p in b.pds.iter_mut().filter(|p| p.address == address) {
                p.online = online;
                p.secure_channel = online;
                p.offline_reason = (!online).then(|| "no reply for 8 s".into());
                p.last_reply_age_ms = Some(if online { 40 } else { 8_200 });
            }
        }
    }
}

fn h10301(card: &Card) -> Option<(u32, u64)> {
    match card {
        Card::Key(CredentialKey::H10301 { facility, number }) => Some((*facility, *number)),
        Card::Raw { bytes, bits } => match portier::rules::wiegand::decode(bytes, *bits) {
            Ok(CredentialKey::H10301 { facility, number }) => Some((facility, number)),
            _ => None,
        },
        _ => None,
    }
}

impl AdminBackend for FakeBackend {
    fn status(&self) -> BoxFuture<'_, Result<Status, BackendError>> {
        Box::pin(async move { Ok(self.status.lock().unwrap().clone()) })
    }

    fn events(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Event>, BackendError>> {
        Box::pin(async move {
            let s = self.status.lock().unwrap();
            Ok(s.recent_events
                .iter()
                .filter(|e| e.seq > after)
                .take(limit)
                .cloned()
                .collect())
        })
    }

    fn occupancy(&self, area: Option<String>) -> BoxFuture<'_, Result<Occupancy, BackendError>> {
        Box::pin(async move {
            let s = self.status.lock().unwrap();
            let inside = s
                .presence
                .iter()
                .filter(|p| area.is_none() || p.area == area)
                .cloned()
                .collect();
            Ok(Occupancy {
                now: s.gateway.now,
                area,
                inside,
            })
        })
    }

    /// 42:1001 is Ada, let in anywhere; 42:1002 is known but outside its
    /// schedule; other cards are unknown; bad bits are bad_format.
    fn why(&self, q: WhyQuery) -> BoxFuture<'_, Result<WhyAnswer, BackendError>> {
        Box::pin(async move {
            let s = self.status.lock().unwrap();
            if !s.doors.iter().any(|d| d.id == q.door) {
                return Err(BackendError::UnknownDoor(q.door));
            }
            let deny = |reason: DenyReason, credential: Option<String>| WhyAnswer {
                decision: WhyDecision::Deny,
                reason: Some(reason),
                credential,
                name: None,
                rules_version: Some(42),
                at: q.at,
                detail: None,
                day_type: None,
                day_name: None,
            };
            Ok(match h10301(&q.card) {
                None => deny(DenyReason::BadFormat, None),
                Some((42, 1001)) => WhyAnswer {
                    decision: WhyDecision::Grant,
                    reason: None,
                    credential: Some("h10301:42:1001".into()),
                    name: Some("Ada Lovelace".into()),
                    rules_version: Some(42),
                    at: q.at,
                    detail: None,
                    day_type: Some("holiday_b".into()),
                    day_name: Some("Christmas break".into()),
                },
                Some((42, 1002)) => {
                    deny(DenyReason::OutsideSchedule, Some("h10301:42:1002".into()))
                }
                Some((f, n)) => deny(
                    DenyReason::UnknownCredential,
                    Some(format!("h10301:{f}:{n}")),
                ),
            })
        })
    }

    fn door_action(
        &self,
        request: DoorActionRequest,
    ) -> BoxFuture<'_, Result<ActionOutcome, BackendError>> {
        Box::pin(async move {
            let kind = {
                let s = self.status.lock().unwrap();
                s.doors
                    .iter()
                    .find(|d| d.id == request.door)
                    .map(|d| d.kind)
            };
            let Some(kind) = kind else {
                return Err(BackendError::UnknownDoor(request.door));
            };
            if matches!(request.command, DoorCommand::ReleasePassage { .. })
                && kind != DoorKindName::Revolving
            {
                return Err(BackendError::Refused(
                    "only a revolving door releases one passage".into(),
                ));
            }
            self.actions.lock().unwrap().push(request.clone());
            Ok(ActionOutcome {
                door: request.door.clone(),
                done: request.command.describe(),
                until: None,
            })
        })
    }

    fn record(&self, event: EventKind) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.recorded.lock().unwrap().push(event);
            Ok(())
        })
    }
}

/// A password nobody could guess from the source.
pub fn random_secret() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

/// What the tests need to reach an admin port, whatever the backend.
pub struct AdminHarness {
    pub url: String,
    pub fingerprint: String,
    /// Operator login (name, password).
    pub operator: (String, String),
    /// Viewer login.
    pub viewer: (String, String),
    pub operator_token: String,
    pub viewer_token: String,
    /// The fake, when the backend is the fake.
    pub fake: Arc<FakeBackend>,
    pub metrics: Metrics,
    pub users_file: std::path::PathBuf,
    pub state_dir: std::path::PathBuf,
    pub server: Option<AdminServer>,
    shutdown: watch::Sender<bool>,
    pub dir: tempfile::TempDir,
}

impl AdminHarness {
    pub fn trust(&self) -> Trust {
        Trust::Fingerprint(self.fingerprint.clone())
    }

    pub fn client(&self, auth: Auth) -> AdminClient {
        AdminClient::new(&self.url, &self.trust(), auth).unwrap()
    }

    pub async fn login(&self, who: &(String, String)) -> AdminClient {
        let mut c = self.client(Auth::Anonymous);
        c.login(&who.0, &who.1).await.unwrap();
        c
    }

    /// Stop the server and wait for it.
    pub async fn stop(mut self) {
        self.shutdown.send(true).unwrap();
        if let Some(s) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), s.join())
                .await
                .expect("admin server stops within 10 s")
                .unwrap();
        }
    }
}

/// Start the real admin server on 127.0.0.1:0 over the fake backend, with
/// an operator, a viewer and a token for each role in a users file.
pub async fn start_fake(lockout: LockoutConfig) -> AdminHarness {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let operator = ("tech".to_owned(), random_secret());
    let viewer = ("guard".to_owned(), random_secret());
    let operator_token = token_text(&rand32());
    let viewer_token = token_text(&rand32());
    let users = UsersFile {
        users: vec![
            UserEntry {
                name: operator.0.clone(),
                role: Role::Operator,
                password_hash: hash_password(&operator.1, &[3; 16]).unwrap(),
            },
            UserEntry {
                name: viewer.0.clone(),
                role: Role::Viewer,
                password_hash: hash_password(&viewer.1, &[4; 16]).unwrap(),
            },
        ],
        tokens: vec![
            TokenEntry {
                name: "ops-script".into(),
                role: Role::Operator,
                token_sha256: token_hash(&operator_token),
            },
            TokenEntry {
                name: "prometheus".into(),
                role: Role::Viewer,
                token_sha256: token_hash(&viewer_token),
            },
        ],
    };
    let users_file = dir.path().join("admin-users.toml");
    portier::admin::write_users_file(&users_file, &users, None).unwrap();
    let cfg_text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nusers_file = \"{}\"\n\
         [admin.lockout]\nmax_failures = {}\nmax_failures_per_address = {}\nwindow_secs = {}\nlockout_secs = {}\n",
        users_file.display(),
        lockout.max_failures,
        lockout.max_failures_per_address,
        lockout.window_secs,
        lockout.lockout_secs
    );
    let cfg_path = dir.path().join("portier.toml");
    std::fs::write(&cfg_path, cfg_text).unwrap();
    let cfg = AdminConfig::from_config_file(&cfg_path).unwrap();
    let fake = Arc::new(FakeBackend::new());
    let metrics = Metrics::new();
    let (tx, rx) = watch::channel(false);
    let server = portier::admin::serve(&cfg, &state_dir, fake.clone(), metrics.clone(), rx)
        .await
        .unwrap();
    assert!(server.cert_generated);
    assert_eq!(server.users, 2);
    AdminHarness {
        url: format!("https://127.0.0.1:{}", server.addr.port()),
        fingerprint: server.fingerprint.clone(),
        operator,
        viewer,
        operator_token,
        viewer_token,
        fake,
        metrics,
        users_file,
        state_dir,
        server: Some(server),
        shutdown: tx,
        dir,
    }
}

fn rand32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).unwrap();
    b
}

/// Poll an async condition until it holds or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}
