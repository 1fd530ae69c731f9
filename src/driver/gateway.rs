//! `portier run`: builds the gateway of one building from its config and
//! runs it — the rules store, the event journal and standing state, one
//! task per bus, the daemon loop around the [`crate::site::Gateway`] core,
//! the uplink and (when asked) the local control socket. Everything here is
//! assembly; behaviour lives in the cores.
//!
//! State directory layout: `rules/` (the signed rules in sled, see
//! [`crate::store`]), `journal/` (the event journal with the standing state
//! in its frames, so one flush covers both, see [`crate::journal`]) and
//! `events/` (sled: the remote commands already seen; in earlier versions also the
//! journal, moved to `journal/` at the first start).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot, watch};

use super::control_socket::{ControlContext, serve_control_socket};
use super::daemon::{self, BusLink, Daemon, DaemonInputs, DaemonView, StandingBook};
use super::decider::StoreDecider;
use super::inbound::{UplinkWiring, start_uplink};
pub use super::running::Running;
use super::serial::{BusHandles, open_port, run_bus};
use super::service;
use crate::clock;
use crate::config::Config;
use crate::event::EventKind;
use crate::journal::Journal;
use crate::osdp::Bus;
use crate::site::{Building, Gateway};
use crate::store::Store;

/// Page-cache budget of the events database (the replay guard only).
const EVENTS_CACHE: u64 = 4 * 1024 * 1024;

/// Options of `portier run` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Serve the local control socket here (JSON lines; the test hook for
    /// remote actions until the uplink carries signed commands).
    pub control_socket: Option<PathBuf>,
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
        keys.clone(),
        &config.gateway.id,
        &config.gateway.building,
    )
    .with_context(|| {
        format!(
            "opening the rules store in {}",
            state.join("rules").display()
        )
    })?;
    // Never fatal: untrusted rules open, deny, and raise an alarm.
    let store_alarms = store.startup_report();
    let store = Arc::new(store);
    let events_db =
        crate::storage::open_db(&state.join("events"), EVENTS_CACHE).with_context(|| {
            format!(
                "opening the replay guard in {}",
                state.join("events").display()
            )
        })?;
    // Opened once: the writer goes to the daemon loop, the reader and the
    // acker to the uplink, clones of the reader to the status page.
    let journal_dir = config.journal_dir();
    let mut reported = 0;
    let mut progress = |moved: u64| {
        if moved >= reported + 100_000 {
            reported = moved;
            service::extend_start(std::time::Duration::from_secs(30));
            service::status(&format!("moving the event journal: {moved} events"));
            tracing::info!(moved, "moving the sled event journal of an earlier version");
        }
    };
    if let Some(moved) = crate::journal::legacy::migrate(&events_db, &journal_dir, &mut progress)
        .with_context(|| format!("moving the event journal to {}", journal_dir.display()))?
    {
        tracing::info!(
            events = moved.events,
            standing_state = moved.state,
            dir = %journal_dir.display(),
            "moved the sled event journal of an earlier version"
        );
    }
    let Journal {
        writer: journal,
        reader: journal_reader,
        acker: journal_acker,
        state: committed,
        state_changes,
    } = Journal::open(&journal_dir)
        .with_context(|| format!("opening the event journal in {}", journal_dir.display()))?;
    let journal = journal.with_budget(config.journal.max_events);
    let restored = StandingBook::load(committed.as_deref(), &state_changes, Some(&events_db))
        .with_context(|| {
            format!(
                "reading the standing state (lockdown, overrides, presence) in {}",
                journal_dir.display()
            )
        })?;
    let decider = StoreDecider::new(store.clone(), config.presence.office_hours_schedule.clone());
    let building = Building::new(config.door_wiring()).with_feedback(config.feedback_table());
    // The core starts here: doors locked, the standing state restored, all
    // before any bus task is spawned, so no PD is driven from a stale state.
    let mut gateway = Gateway::new(building, Box::new(decider), restored, daemon::now());

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
        let (requests, requests_rx) = mpsc::channel(256);
        let (status, status_rx) = watch::channel(Vec::new());
        let handles = BusHandles {
            requests: requests_rx,
            bus: plan.name.as_str().into(),
            events: bus_tx.clone(),
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
        tracing::info!(bus = plan.name, port = %plan.port.path.display(), pds = plan.pds.len(), "bus open");
        if !plan.pds.is_empty() {
            watched_buses.push((plan.name.clone(), status_rx.clone()));
        }
        bus_status.insert(plan.name.clone(), status_rx);
        links.push(BusLink {
            name: plan.name.as_str().into(),
            requests,
        });
    }
    drop(bus_tx);

    let mut first = vec![EventKind::DaemonStarted {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        rules_version: store.version(),
    }];
    first.extend(store_alarms);
    // Trusted rules in force vouch for their issue time: the clock floor
    // starts there even before central says anything.
    if let (crate::store::RulesTrust::Trusted, Some(header)) = (store.trust(), store.header()) {
        let issued = header.snapshot().issued_at;
        gateway.handle(daemon::now(), crate::site::Input::SignedTime(issued));
    }
    gateway.handle(daemon::now(), crate::site::Input::Record(first));

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
            keys: keys.clone(),
            gateway: config.gateway.id.clone(),
        };
        serve_control_socket(path, context, shutdown.clone())?;
    }
    let uplink_state = match config.uplink.clone() {
        None => None,
        Some(uplink) => Some(start_uplink(
            uplink,
            UplinkWiring {
                config: &config,
                events_db: &events_db,
                journal: uplink_journal,
                store: store.clone(),
                control: control_tx.clone(),
                view: view_rx.clone(),
                shutdown: shutdown.clone(),
            },
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
            // Never fatal: a fault of the admin port leaves it off with an
            // alarm; the doors work on.
            crate::admin::serve_or_alarm(
                admin,
                &config.gateway.state_dir,
                Arc::new(backend),
                metrics.clone(),
                shutdown.clone(),
            )
            .await
            .map(|server| (server.addr, server.fingerprint.clone()))
        }
    };
    if let Some(started) = started {
        let _ = started.send(Running { admin, ..running });
    }
    let daemon = Daemon {
        gateway,
        journal,
        buses: links,
        observer: Some(Arc::new(metrics)),
        disk: Some(super::disk::DiskSpace::new(
            state,
            config.journal.reserve_mib.saturating_mul(1024 * 1024),
        )),
        low_disk_dropped: None,
    };
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
