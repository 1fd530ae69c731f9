//! `portier run`: builds the gateway of one building from its config and
//! runs it — the rules store, the event journal and presence list, one
//! task per bus, the daemon loop, and (when asked) the local control
//! socket. Everything here is assembly; behaviour lives in the cores.
//!
//! State directory layout: `rules/` (the signed rules in sled, see
//! [`crate::store`]) and `events/` (journal and presence list, one sled
//! database so one flush covers both).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use super::clock;
use super::daemon::{
    self, BusLink, Control, Daemon, DaemonInputs, DaemonView, Decider, PresenceBook,
};
use super::serial::{BusHandles, open_port, run_bus};
use super::service;
use super::uplink::{self, Delivered, Inbound, UplinkHandles, UplinkState};
use crate::config::Config;
use crate::door::DenyReason;
use crate::journal::{EventKind, Journal, JournalAcker, JournalReader};
use crate::osdp::message::RawCard;
use crate::osdp::{Bus, PdStatus};
use crate::rules::{Card, Decision, Request};
use crate::site::remote::RemoteAction;
use crate::site::{Building, Verdict};
use crate::store::{Store, StoreError};
use crate::uplink::wire::Status;

/// Page-cache budget of the events database.
const EVENTS_CACHE: u64 = 16 * 1024 * 1024;

/// The rules store as the daemon's [`Decider`]. Shared so that an apply
/// (from the uplink, the admin page or the control socket) runs beside
/// decisions: the store swaps generations atomically, so decisions never
/// wait for an apply.
pub struct StoreDecider {
    store: Arc<Store>,
    office_hours_schedule: String,
    /// Display names of recent grants, for the presence list.
    names: HashMap<String, Option<String>>,
}

/// How many recent grant names are kept for presence.
const NAME_CACHE: usize = 4096;

impl StoreDecider {
    /// A decider over `store`; `office_hours_schedule` names the rules'
    /// schedule that means office hours.
    pub fn new(store: Arc<Store>, office_hours_schedule: String) -> Self {
        Self {
            store,
            office_hours_schedule,
            names: HashMap::new(),
        }
    }
}

impl Decider for StoreDecider {
    fn decide(&mut self, door: &str, card: &RawCard, now: Timestamp) -> Verdict {
        let req = Request {
            door: door.to_owned(),
            card: Card::Raw {
                bytes: card.data.clone(),
                bits: card.bits,
            },
            pin: None,
            lockdown: false,
        };
        let credential = crate::rules::wiegand::decode(&card.data, card.bits)
            .ok()
            .map(|k| k.to_string());
        match self.store.decide(&req, now) {
            Ok(Decision::Grant {
                credential,
                extended_unlock,
                lockdown_exempt,
                display_name,
                ..
            }) => {
                let credential = credential.to_string();
                if self.names.len() >= NAME_CACHE {
                    self.names.clear();
                }
                self.names.insert(credential.clone(), display_name);
                Verdict::Grant {
                    credential,
                    extended: extended_unlock,
                    lockdown_exempt,
                }
            }
            Ok(Decision::Deny(reason)) => Verdict::Deny { credential, reason },
            // No rules at all: as old as rules can be.
            Err(StoreError::Empty) => Verdict::Deny {
                credential,
                reason: DenyReason::RulesTooOld,
            },
            Err(e) => {
                tracing::error!(door, error = %e, "rules lookup failed; denying");
                Verdict::Deny {
                    credential,
                    reason: DenyReason::UnknownCredential,
                }
            }
        }
    }

    fn door_mode(&self, door: &str, now: Timestamp) -> Option<String> {
        let header = self.store.header()?;
        header.door_mode(door, now).map(str::to_owned)
    }

    fn office_hours(&self, now: Timestamp) -> Option<bool> {
        self.store
            .header()
            .map(|h| h.schedule_open(&self.office_hours_schedule, now))
    }

    fn display_name(&self, credential: &str) -> Option<String> {
        self.names.get(credential).cloned().flatten()
    }
}

/// Which kind of signed rules blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesBlob {
    /// A full snapshot.
    Snapshot,
    /// A delta on the version in force.
    Delta,
}

/// Verify and apply a signed rules blob beside running decisions, journal
/// the outcome (`rules_applied` / `rules_refused` with the reason), and
/// have the daemon re-read door-mode schedules. The entry point for the
/// control socket, the uplink and the admin page.
pub async fn apply_rules(
    store: Arc<Store>,
    control: &mpsc::Sender<Control>,
    kind: RulesBlob,
    bytes: Vec<u8>,
    now: Timestamp,
) -> Result<crate::store::Applied, String> {
    let result = tokio::task::spawn_blocking(move || match kind {
        RulesBlob::Snapshot => store.apply_snapshot(&bytes, now),
        RulesBlob::Delta => store.apply_delta(&bytes, now),
    })
    .await
    .map_err(|e| format!("apply task failed: {e}"))?
    .map_err(|e| e.to_string());
    let record = match &result {
        Ok(a) => EventKind::RulesApplied { version: a.version },
        Err(reason) => EventKind::RulesRefused {
            reason: reason.clone(),
        },
    };
    match &result {
        Ok(a) => tracing::info!(
            version = a.version,
            credentials = a.credentials,
            unchanged = a.unchanged,
            "rules applied"
        ),
        Err(reason) => tracing::warn!(reason, "rules refused"),
    }
    let _ = control.send(Control::Record(vec![record])).await;
    let _ = control.send(Control::RulesChanged).await;
    result
}

/// Start the MQTT uplink and the task that acts on what it receives.
#[allow(clippy::too_many_arguments)] // plain wiring; the core rewrite folds these into one context
fn start_uplink(
    uplink: crate::uplink::UplinkConfig,
    config: &Config,
    events_db: &sled::Db,
    (journal, acker): (JournalReader, JournalAcker),
    store: Arc<Store>,
    control: mpsc::Sender<Control>,
    view: watch::Receiver<DaemonView>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<watch::Receiver<UplinkState>> {
    let gateway = config.gateway.id.clone();
    let trusted = view.clone();
    let mut view = view;
    let (appended_tx, appended) = watch::channel(0u64);
    tokio::spawn(async move {
        while view.changed().await.is_ok() {
            let seq = view.borrow_and_update().last_seq;
            appended_tx.send_if_modified(|s| std::mem::replace(s, seq) != seq);
            if appended_tx.is_closed() {
                return;
            }
        }
    });
    let (status_tx, status) = watch::channel(Status {
        gateway: gateway.clone(),
        state: "online".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        rules_version: store.version(),
        ..Status::default()
    });
    let (rules_tx, rules) = mpsc::unbounded_channel();
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (alarms_tx, mut alarms) = mpsc::unbounded_channel();
    let (state, state_rx) = watch::channel(UplinkState::default());
    let handles = UplinkHandles {
        journal,
        acker,
        appended,
        status,
        rules: rules_tx,
        commands: commands_tx,
        alarms: alarms_tx,
        state,
        shutdown,
    };
    let recorder = control.clone();
    tokio::spawn(async move {
        while let Some(alarm) = alarms.recv().await {
            let _ = recorder.send(Control::Record(vec![alarm])).await;
        }
    });
    let g = gateway.clone();
    tokio::spawn(async move {
        if let Err(e) = uplink::run_uplink(uplink, g, handles).await {
            tracing::error!(error = %e, "uplink stopped");
        }
    });
    let actor = InboundActor {
        store,
        control,
        keys: config.trusted_keys(&config.file)?,
        gateway,
        seen: events_db.open_tree("commands.seen")?,
        status: status_tx,
        view: trusted,
    };
    // Two lanes: a snapshot being applied never holds up a command.
    let actor = Arc::new(actor);
    tokio::spawn(actor.clone().run(rules));
    tokio::spawn(actor.run(commands));
    Ok(state_rx)
}

/// Acts on what central sent: rules are verified and applied beside the
/// decisions; commands are verified (signature, gateway, expiry at the
/// trusted time, replay) and handed to the daemon loop. Every outcome is
/// journaled.
struct InboundActor {
    store: Arc<Store>,
    control: mpsc::Sender<Control>,
    keys: crate::rules::TrustedKeys,
    gateway: String,
    /// Accepted command ids → their expiry (replay protection; survives
    /// restarts; pruned after expiry).
    seen: sled::Tree,
    status: watch::Sender<Status>,
    /// For the latest trusted time: a clock that went back must not make
    /// an expired command valid.
    view: watch::Receiver<DaemonView>,
}

impl InboundActor {
    /// Act on one lane; each message is acknowledged to the broker only
    /// once applied or refused.
    async fn run(self: Arc<Self>, mut lane: mpsc::UnboundedReceiver<Delivered>) {
        while let Some(delivered) = lane.recv().await {
            let (inbound, receipt) = delivered.into_parts();
            match inbound {
                Inbound::Snapshot(bytes) => self.rules(RulesBlob::Snapshot, bytes).await,
                Inbound::Delta(bytes) => self.rules(RulesBlob::Delta, bytes).await,
                Inbound::Command(bytes) => self.command(&bytes).await,
            }
            receipt.done().await;
        }
    }

    /// The trusted time: never earlier than a time already trusted (a
    /// clock that went back must not make expired rules or commands
    /// valid). The lead's trusted-time type plugs in here.
    fn now(&self) -> jiff::Timestamp {
        let system = daemon::wall_now();
        self.view
            .borrow()
            .trusted_time
            .map_or(system, |t| t.max(system))
    }

    async fn rules(&self, kind: RulesBlob, bytes: Vec<u8>) {
        let result = apply_rules(self.store.clone(), &self.control, kind, bytes, self.now()).await;
        if result.is_ok()
            && let Some(h) = self.store.header()
        {
            let _ = self
                .control
                .send(Control::TrustedTime(h.snapshot().issued_at))
                .await;
        }
        self.status.send_modify(|s| {
            s.rules_version = self.store.version();
            s.rules_refused = result.err();
        });
    }

    async fn command(&self, bytes: &[u8]) {
        let now = self.now();
        let seen = |id: &str| self.seen.contains_key(id.as_bytes()).unwrap_or(true);
        let command =
            match crate::command::verify_command(bytes, &self.keys, &self.gateway, now, seen) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "command refused");
                    let record = EventKind::CommandRefused {
                        id: e.id().map(str::to_owned),
                        reason: e.to_string(),
                    };
                    let _ = self.control.send(Control::Record(vec![record])).await;
                    return;
                }
            };
        // Recorded before acting: a crash after acting must not replay it.
        if let Err(e) = self.remember(&command.id, command.expires_at, now) {
            tracing::error!(error = %e, "cannot record the command id; not acting on it");
            let record = EventKind::CommandRefused {
                id: Some(command.id.clone()),
                reason: format!("replay store unavailable: {e}"),
            };
            let _ = self.control.send(Control::Record(vec![record])).await;
            return;
        }
        let _ = self
            .control
            .send(Control::TrustedTime(command.issued_at))
            .await;
        let (reply, answer) = oneshot::channel();
        let sent = self
            .control
            .send(Control::Remote {
                source: "central".into(),
                command: Some(command.id.clone()),
                action: command.action,
                reply: Some(reply),
            })
            .await;
        if sent.is_ok() {
            let _ = answer.await;
        }
    }

    fn remember(
        &self,
        id: &str,
        expires_at: jiff::Timestamp,
        now: jiff::Timestamp,
    ) -> sled::Result<()> {
        for item in self.seen.iter() {
            let (k, v) = item?;
            let expired = std::str::from_utf8(&v)
                .ok()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_none_or(|t| t <= now);
            if expired {
                self.seen.remove(k)?;
            }
        }
        self.seen
            .insert(id.as_bytes(), expires_at.to_string().as_bytes())?;
        self.seen.flush()?;
        Ok(())
    }
}

/// Options of `portier run` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Serve the local control socket here (JSON lines; the test hook for
    /// remote actions until the uplink carries signed commands).
    pub control_socket: Option<PathBuf>,
}

/// Handles to a running gateway.
#[derive(Debug)]
pub struct Running {
    /// Requests to the daemon loop.
    pub control: mpsc::Sender<Control>,
    /// Daemon state after every round.
    pub view: watch::Receiver<DaemonView>,
    /// PD statuses per bus.
    pub bus_status: HashMap<String, watch::Receiver<Vec<PdStatus>>>,
    /// The rules store.
    pub store: Arc<Store>,
    /// A read handle on the event journal.
    pub journal: Arc<JournalReader>,
    /// The admin port's address and certificate fingerprint, when it runs.
    pub admin: Option<(std::net::SocketAddr, String)>,
}

/// Build and run the gateway until `shutdown` turns true or the daemon
/// loop fails.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: watch::Receiver<bool>,
    started: Option<oneshot::Sender<Running>>,
) -> anyhow::Result<()> {
    let keys = config.trusted_keys(&config.file)?;
    let state = &config.gateway.state_dir;
    create_private_dir(state)?;
    let store = Store::open(
        &state.join("rules"),
        keys,
        &config.gateway.id,
        &config.gateway.building,
    )
    .with_context(|| {
        format!(
            "opening the rules store in {}",
            state.join("rules").display()
        )
    })?;
    match store.version() {
        Some(v) => tracing::info!(version = v, "rules in force"),
        None => tracing::warn!(
            "no rules yet: every card is denied (rules_too_old) until a snapshot is applied"
        ),
    }
    let store = Arc::new(store);
    let events_db =
        crate::storage::open_db(&state.join("events"), EVENTS_CACHE).with_context(|| {
            format!(
                "opening the event journal in {}",
                state.join("events").display()
            )
        })?;
    // Opened once: the writer goes to the daemon loop, the reader and the
    // acker to the uplink, clones of the reader to the status page.
    let Journal {
        writer: journal,
        reader: journal_reader,
        acker: journal_acker,
    } = Journal::open(&events_db)?;
    let mut journal = journal.with_budget(config.journal.max_events);
    let presence = PresenceBook::open(&events_db)?;
    let decider = StoreDecider::new(store.clone(), config.presence.office_hours_schedule.clone());
    let building = Building::new(config.door_wiring()).with_feedback(config.feedback_table());

    let (bus_tx, bus_rx) = mpsc::channel(256);
    let mut links = Vec::new();
    let mut bus_status = HashMap::new();
    let mut watched_buses = Vec::new();
    let plans = config.bus_plans()?;
    let bus_count = plans.len();
    for plan in plans {
        let port = open_port(&plan.port)
            .with_context(|| format!("bus {}: opening {}", plan.name, plan.port.path.display()))?;
        let bus = Bus::new(plan.timing, plan.pds.clone(), Box::new(clock::os_entropy))
            .with_context(|| format!("bus {}", plan.name))?;
        let (events_tx, mut events) = mpsc::channel(64);
        let (requests, requests_rx) = mpsc::channel(64);
        let (status, status_rx) = watch::channel(Vec::new());
        let handles = BusHandles {
            requests: requests_rx,
            events: events_tx,
            status,
            shutdown: shutdown.clone(),
        };
        let name = plan.name.clone();
        let suppress = plan.port.suppress_echo;
        tokio::spawn(async move {
            if let Err(e) = run_bus(port, bus, handles, suppress, None).await {
                tracing::error!(bus = name, error = %e, "bus task ended");
            }
        });
        let tagged = bus_tx.clone();
        let name = plan.name.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if tagged.send((name.clone(), e)).await.is_err() {
                    return;
                }
            }
        });
        tracing::info!(bus = plan.name, port = %plan.port.path.display(), pds = plan.pds.len(), "bus open");
        if !plan.pds.is_empty() {
            watched_buses.push((plan.name.clone(), status_rx.clone()));
        }
        bus_status.insert(plan.name.clone(), status_rx);
        links.push(BusLink {
            name: plan.name,
            requests,
        });
    }
    drop(bus_tx);

    let mut first = vec![EventKind::DaemonStarted {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        rules_version: store.version(),
    }];
    if let Some(r) = store.recovery() {
        tracing::error!(
            reason = r.reason,
            "rules store rebuilt from its last-good files"
        );
        first.push(EventKind::RulesRecovered {
            reason: r.reason.clone(),
            moved_aside: r.moved_aside.as_ref().map(|p| p.display().to_string()),
            version: r.version,
        });
    }
    journal.append(daemon::wall_now(), first)?;

    let (control_tx, control_rx) = mpsc::channel(64);
    let (view_tx, view_rx) = watch::channel(DaemonView::default());
    let uplink_journal = (journal_reader.clone(), journal_acker);
    let journal_reader = Arc::new(journal_reader);
    if let Some(path) = &options.control_socket {
        let context = ControlContext {
            control: control_tx.clone(),
            store: store.clone(),
            view: view_rx.clone(),
            journal: journal_reader.clone(),
            buses: bus_status.clone(),
        };
        serve_control_socket(path, context, shutdown.clone())?;
    }
    let uplink_state = match config.uplink.clone() {
        None => None,
        Some(uplink) => Some(start_uplink(
            uplink,
            &config,
            &events_db,
            uplink_journal,
            store.clone(),
            control_tx.clone(),
            view_rx.clone(),
            shutdown.clone(),
        )?),
    };
    let running = Running {
        control: control_tx.clone(),
        view: view_rx.clone(),
        bus_status: bus_status.clone(),
        store: store.clone(),
        journal: journal_reader.clone(),
        admin: None,
    };
    let metrics = crate::admin::Metrics::new();
    // Feed the poll round-trip histogram from every bus's status: one
    // sample per new reply seen (a reply between two reads may be missed).
    for (bus, status) in &bus_status {
        let (bus, mut status, metrics) = (bus.clone(), status.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut seen: HashMap<u8, std::time::Instant> = HashMap::new();
            while status.changed().await.is_ok() {
                let pds = status.borrow_and_update().clone();
                for p in pds {
                    if let (Some(at), Some(rtt)) = (p.last_reply, p.last_round_trip)
                        && seen.insert(p.address, at) != Some(at)
                    {
                        metrics.poll_round_trip(&bus, rtt);
                    }
                }
            }
        });
    }
    let admin = match &config.admin {
        None => None,
        Some(admin) => {
            let backend = super::admin_backend::backend(
                &config,
                &running,
                uplink_state.clone(),
                daemon::wall_now(),
            );
            let server = crate::admin::serve(
                admin,
                &config.gateway.state_dir,
                Arc::new(backend),
                metrics.clone(),
                shutdown.clone(),
            )
            .await
            .context("starting the admin port")?;
            tracing::info!(listen = %server.addr, fingerprint = server.fingerprint, "admin page");
            Some((server.addr, server.fingerprint.clone()))
        }
    };
    if let Some(started) = started {
        let _ = started.send(Running { admin, ..running });
    }
    let daemon =
        Daemon::new(building, Box::new(decider), journal, presence, links).with_metrics(metrics);
    let inputs = DaemonInputs {
        events: bus_rx,
        control: control_rx,
        shutdown: shutdown.clone(),
    };
    let mut liveness = service::Liveness::new(watched_buses, view_rx.clone());
    if let Some(uplink) = &uplink_state {
        liveness = liveness.with_uplink(uplink.clone());
    }
    tokio::spawn(service::watchdog(liveness, shutdown.clone()));
    service::ready(&format!(
        "rules version {}, {} bus(es) open",
        store.version().map_or("none".into(), |v| v.to_string()),
        bus_count
    ));
    let result = daemon::run(daemon, inputs, view_tx).await;
    service::stopping();
    result?;
    events_db.flush_async().await?;
    tracing::info!("stopped; doors left to their PDs' locked state");
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating state directory {}", dir.display()))
}

/// What the control socket serves.
#[derive(Clone)]
struct ControlContext {
    control: mpsc::Sender<Control>,
    store: Arc<Store>,
    view: watch::Receiver<DaemonView>,
    journal: Arc<JournalReader>,
    buses: HashMap<String, watch::Receiver<Vec<PdStatus>>>,
}

/// The local control socket: one JSON request per line in, one JSON answer
/// per line out. A request is a [`RemoteAction`] (`{"action":"unlock",…}`
/// → `{"ok":true}` or `{"ok":false,"error":"…"}`) or a query:
/// `{"query":"events","after":N,"limit":M}`, `{"query":"presence"}`,
/// `{"query":"buses"}`, `{"query":"doors"}`; or a rules file to apply:
/// `{"apply":"snapshot","file":PATH}`. Mode 0600 in a directory only the service user
/// reads: a maintenance and test hook, not a network interface.
fn serve_control_socket(
    path: &Path,
    context: ControlContext,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    tokio::spawn(control_connection(stream, context.clone()));
                }
                _ = shutdown.changed() => return,
            }
        }
    });
    Ok(())
}

async fn control_connection(stream: tokio::net::UnixStream, context: ControlContext) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match serde_json::from_str::<serde_json::Value>(&line) {
            Err(e) => Err(format!("bad request: {e}")),
            Ok(v) if v.get("query").is_some() => query(&context, &v),
            Ok(v) if v.get("apply").is_some() => apply(&context, &v).await,
            Ok(v) => action(&context, v).await,
        };
        let json = match answer {
            Ok(serde_json::Value::Null) => serde_json::json!({"ok": true}),
            Ok(v) => serde_json::json!({"ok": true, "result": v}),
            Err(e) => serde_json::json!({"ok": false, "error": e}),
        };
        if write
            .write_all(format!("{json}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn action(
    context: &ControlContext,
    v: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let action: RemoteAction =
        serde_json::from_value(v).map_err(|e| format!("bad request: {e}"))?;
    let (reply, result) = oneshot::channel();
    context
        .control
        .send(Control::Remote {
            source: "control-socket".into(),
            command: None,
            action,
            reply: Some(reply),
        })
        .await
        .map_err(|_| "daemon stopping".to_owned())?;
    result
        .await
        .unwrap_or(Err("daemon stopping".into()))
        .map(|()| serde_json::Value::Null)
}

/// `{"apply":"snapshot"|"delta","file":PATH}`: the file is read by the
/// daemon (its user must be able to read it).
async fn apply(
    context: &ControlContext,
    v: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let kind = match v["apply"].as_str() {
        Some("snapshot") => RulesBlob::Snapshot,
        Some("delta") => RulesBlob::Delta,
        other => {
            return Err(format!(
                "apply {other:?}: expected \"snapshot\" or \"delta\""
            ));
        }
    };
    let file = v["file"].as_str().ok_or("apply: `file` missing")?;
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|e| format!("{file}: {e}"))?;
    let applied = apply_rules(
        context.store.clone(),
        &context.control,
        kind,
        bytes,
        daemon::wall_now(),
    )
    .await?;
    serde_json::to_value(applied).map_err(|e| e.to_string())
}

fn query(context: &ControlContext, v: &serde_json::Value) -> Result<serde_json::Value, String> {
    let to_json = |r: Result<serde_json::Value, serde_json::Error>| r.map_err(|e| e.to_string());
    match v["query"].as_str() {
        Some("events") => {
            let after = v["after"].as_u64().unwrap_or(0);
            let limit = v["limit"].as_u64().unwrap_or(100).min(10_000) as usize;
            let events = context
                .journal
                .after(after, limit)
                .map_err(|e| e.to_string())?;
            to_json(serde_json::to_value(events))
        }
        Some("presence") => to_json(serde_json::to_value(&context.view.borrow().presence)),
        Some("doors") => to_json(serde_json::to_value(&context.view.borrow().doors)),
        Some("buses") => {
            let mut buses = serde_json::Map::new();
            for (name, status) in &context.buses {
                let pds: Vec<serde_json::Value> = status
                    .borrow()
                    .iter()
                    .map(|p| serde_json::json!({"address": p.address, "online": p.online, "secure": p.secure}))
                    .collect();
                buses.insert(name.clone(), pds.into());
            }
            Ok(buses.into())
        }
        other => Err(format!(
            "unknown query {other:?} (events, presence, buses, doors)"
        )),
    }
}
