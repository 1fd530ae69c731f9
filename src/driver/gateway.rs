//! `portier run`: builds the gateway of one building from its config and
//! runs it — the rules store, the event journal and standing state, one
//! task per bus, the daemon loop around the [`crate::site::Gateway`] core,
//! the uplink and (when asked) the local control socket. Everything here is
//! assembly, in named steps that each get the narrow values they need;
//! behaviour lives in the cores.
//!
//! State directory layout: `rules/` (the signed rules in sled, see
//! [`crate::store`]), `journal/` (the event journal with the standing state
//! in its frames, so one flush covers both, see [`crate::journal`]) and
//! `events/` (sled: the remote commands already seen; in earlier versions
//! also the journal, moved to `journal/` at the first start).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use super::admin_backend::{BusView, GatewayIdentity};
use super::control_socket::{ControlContext, ControlSocketError, serve_control_socket};
use super::daemon::{self, BusLink, Daemon, DaemonError, DaemonInputs, DaemonView, StandingBook};
use super::decider::StoreDecider;
use super::inbound::{UplinkWiring, start_uplink};
pub use super::running::Running;
use super::serial::{BusStart, SerialError, open_port, spawn_bus};
use super::service;
use super::uplink::UplinkState;
use crate::clock;
use crate::config::{BusPlan, Config, ConfigError};
use crate::event::EventKind;
use crate::ids::BusId;
use crate::journal::{Journal, JournalAcker, JournalError, JournalReader};
use crate::osdp::{Bus, BusError, BusEvent, PdStatus};
use crate::rules::TrustedKeys;
use crate::site::{Building, Gateway, Input};
use crate::store::{Store, StoreError};

/// Page-cache budget of the events database (the replay guard only).
const EVENTS_CACHE: u64 = 4 * 1024 * 1024;

/// Options of `portier run` beyond the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Serve the local control socket here (JSON lines; the test hook for
    /// remote actions until the uplink carries signed commands).
    pub control_socket: Option<PathBuf>,
}

/// Why the gateway could not start, or stopped with an error. The texts
/// name the file or device; the sources say what went wrong there.
#[derive(Debug, Error)]
pub enum RunError {
    /// The config (trusted keys, PD key files) could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state directory could not be made.
    #[error("creating state directory {}", .dir.display())]
    StateDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The rules store could not be opened.
    #[error("opening the rules store in {}", .dir.display())]
    Store {
        /// Its directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The events database (replay guard) could not be opened or written.
    #[error("opening the replay guard in {}", .dir.display())]
    ReplayGuard {
        /// Its directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: sled::Error,
    },
    /// An earlier version's journal could not be moved over.
    #[error("moving the event journal to {}", .dir.display())]
    LegacyJournal {
        /// The new journal's directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: JournalError,
    },
    /// The event journal could not be opened.
    #[error("opening the event journal in {}", .dir.display())]
    Journal {
        /// Its directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: JournalError,
    },
    /// The standing state could not be read.
    #[error("reading the standing state (lockdown, overrides, presence) in {}", .dir.display())]
    Standing {
        /// The journal's directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: DaemonError,
    },
    /// A bus's port could not be opened.
    #[error("bus {bus}: opening {}", .port.display())]
    Port {
        /// The bus.
        bus: String,
        /// Its device.
        port: PathBuf,
        /// Why.
        #[source]
        source: SerialError,
    },
    /// A bus's PDs are configured wrongly.
    #[error("bus {bus}")]
    Bus {
        /// The bus.
        bus: String,
        /// Why.
        #[source]
        source: BusError,
    },
    /// The control socket could not be served.
    #[error(transparent)]
    ControlSocket(#[from] ControlSocketError),
    /// The daemon loop failed.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

/// Build and run the gateway until `shutdown` turns true or the daemon
/// loop fails.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: watch::Receiver<bool>,
    started: Option<oneshot::Sender<Running>>,
) -> Result<(), RunError> {
    let keys = config.trusted_keys(&config.file)?;
    let state = open_state(&config, keys.clone())?;
    // Doors locked and the standing state restored before any bus starts.
    let mut gateway = start_core(&config, &state.store, state.restored);
    let buses = spawn_buses(config.bus_plans()?, &shutdown)?;
    announce_start(&mut gateway, &state.store, state.store_alarms);
    let (control, control_rx) = mpsc::channel(64);
    let (view_tx, view) = watch::channel(DaemonView::default());
    let running = Running {
        control,
        view,
        bus_status: buses.status.clone(),
        store: state.store.clone(),
        journal: Arc::new(state.journal.reader.clone()),
        admin: None,
    };
    if let Some(path) = &options.control_socket {
        let context = ControlContext::of(&running, keys.clone(), config.gateway.id.clone());
        serve_control_socket(path, context, shutdown.clone())?;
    }
    let readers = super::inventory::watch_inventory(buses.views.clone());
    let upkeep = start_reader_upkeep(&config, &buses.links, &running, &shutdown);
    let uplink = start_uplink_if(
        &config,
        keys,
        &state.events_db,
        (state.journal.reader, state.journal.acker),
        (&running, readers, upkeep.clone()),
        &shutdown,
    )?;
    let metrics = crate::admin::Metrics::new();
    watch_round_trips(&buses.status, &metrics);
    let sight = AdminSight {
        buses: buses.views,
        uplink: uplink.clone(),
        running: &running,
    };
    let admin = start_admin(&config, sight, &metrics, &shutdown).await;
    start_watchdog(buses.watched, &running.view, uplink, &shutdown);
    if let Some(started) = started {
        let _ = started.send(Running { admin, ..running });
    }
    let daemon = Daemon {
        gateway,
        journal: state.journal.writer,
        buses: buses.links,
        observer: Some(Arc::new(metrics)),
        disk: Some(disk_space(&config)),
        low_disk_dropped: None,
        urgent: Default::default(),
        duress_total: 0,
        upkeep: Some(upkeep.messages),
    };
    let inputs = DaemonInputs {
        events: buses.events,
        control: control_rx,
        shutdown: shutdown.clone(),
    };
    service::ready(&format!(
        "rules version {}, {} bus(es) open",
        state
            .store
            .version()
            .map_or("none".into(), |v| v.to_string()),
        buses.count
    ));
    let result = daemon::run(daemon, inputs, view_tx).await;
    service::stopping();
    result?;
    flush_replay_guard(&state.events_db, &config.gateway.state_dir).await?;
    tracing::info!("stopped; doors left to their PDs' locked state");
    Ok(())
}

/// Reader upkeep (firmware updates and key rotations from central), on
/// every bus.
fn start_reader_upkeep(
    config: &Config,
    links: &[BusLink],
    running: &Running,
    shutdown: &watch::Receiver<bool>,
) -> super::upkeep::UpkeepLink {
    super::upkeep::start_upkeep(super::upkeep::UpkeepWiring {
        places: config.pd_places(),
        buses: links
            .iter()
            .map(|l| (l.name.clone(), l.requests.clone()))
            .collect(),
        control: running.control.clone(),
        view: running.view.clone(),
        max_file: config
            .uplink
            .as_ref()
            .map_or(16 << 20, crate::uplink::UplinkConfig::max_firmware_bytes),
        dir: config.gateway.state_dir.join("upkeep"),
        shutdown: shutdown.clone(),
    })
}

/// Write the replay guard out before the process ends.
async fn flush_replay_guard(events_db: &sled::Db, state_dir: &Path) -> Result<(), RunError> {
    let flushed = events_db.flush_async().await;
    flushed.map(drop).map_err(|source| RunError::ReplayGuard {
        dir: state_dir.join("events"),
        source,
    })
}

/// The free-space watch of the state directory, with the configured
/// reserve for alarms.
fn disk_space(config: &Config) -> super::disk::DiskSpace {
    let reserve = config.journal.reserve_mib.saturating_mul(1024 * 1024);
    super::disk::DiskSpace::new(&config.gateway.state_dir, reserve)
}

/// What is on disk when the gateway starts.
struct OpenedState {
    store: Arc<Store>,
    /// Alarms of the store's opening (untrusted rules), for the journal.
    store_alarms: Vec<EventKind>,
    events_db: sled::Db,
    journal: OpenedJournal,
    restored: crate::site::StandingState,
}

/// The journal's three handles.
struct OpenedJournal {
    writer: crate::journal::JournalWriter,
    reader: crate::journal::JournalReader,
    acker: crate::journal::JournalAcker,
}

/// Open the state directory: the rules store, the replay guard, the event
/// journal (moving an earlier version's over first) and the standing state.
fn open_state(config: &Config, keys: TrustedKeys) -> Result<OpenedState, RunError> {
    let dir = &config.gateway.state_dir;
    create_private_dir(dir)?;
    let rules_dir = dir.join("rules");
    let store = Store::open(
        &rules_dir,
        keys,
        &config.gateway.id,
        &config.gateway.building,
    )
    .map_err(|source| RunError::Store {
        dir: rules_dir,
        source,
    })?;
    // Never fatal: untrusted rules open, deny, and raise an alarm.
    let store_alarms = store.startup_report();
    let events_dir = dir.join("events");
    let events_db = crate::storage::open_db(&events_dir, EVENTS_CACHE).map_err(|source| {
        RunError::ReplayGuard {
            dir: events_dir,
            source,
        }
    })?;
    let journal_dir = config.journal_dir();
    move_legacy_journal(&events_db, &journal_dir)?;
    let opened = Journal::open(&journal_dir).map_err(|source| RunError::Journal {
        dir: journal_dir.clone(),
        source,
    })?;
    let restored = StandingBook::load(
        opened.state.as_deref(),
        &opened.state_changes,
        Some(&events_db),
    )
    .map_err(|source| RunError::Standing {
        dir: journal_dir,
        source,
    })?;
    Ok(OpenedState {
        store: Arc::new(store),
        store_alarms,
        events_db,
        journal: OpenedJournal {
            writer: opened.writer.with_budget(config.journal.max_events),
            reader: opened.reader,
            acker: opened.acker,
        },
        restored,
    })
}

/// An earlier version kept the journal in sled: move it over once,
/// telling systemd the start takes longer while it runs.
fn move_legacy_journal(events_db: &sled::Db, journal_dir: &Path) -> Result<(), RunError> {
    let mut reported = 0;
    let mut progress = |moved: u64| {
        if moved >= reported + 100_000 {
            reported = moved;
            service::extend_start(std::time::Duration::from_secs(30));
            service::status(&format!("moving the event journal: {moved} events"));
            tracing::info!(moved, "moving the sled event journal of an earlier version");
        }
    };
    let moved = crate::journal::legacy::migrate(events_db, journal_dir, &mut progress).map_err(
        |source| RunError::LegacyJournal {
            dir: journal_dir.to_owned(),
            source,
        },
    )?;
    if let Some(moved) = moved {
        tracing::info!(
            events = moved.events,
            standing_state = moved.state,
            dir = %journal_dir.display(),
            "moved the sled event journal of an earlier version"
        );
    }
    Ok(())
}

/// The gateway core over the building's doors and the rules store,
/// restored to the standing state.
fn start_core(
    config: &Config,
    store: &Arc<Store>,
    restored: crate::site::StandingState,
) -> Gateway {
    let decider = StoreDecider::new(store.clone(), config.presence.office_hours_schedule.clone());
    let building = Building::new(config.door_wiring())
        .with_fire_alarms(config.fire_alarm_wiring())
        .with_feedback(config.feedback_table())
        .with_areas(config.door_areas())
        .with_interlocks(config.interlocks());
    Gateway::new(building, Box::new(decider), restored, daemon::now())
}

/// The first records of a start (and the rules' issue time as the clock's
/// first floor: trusted rules vouch for it before central says anything).
fn announce_start(gateway: &mut Gateway, store: &Store, store_alarms: Vec<EventKind>) {
    let mut first = vec![EventKind::DaemonStarted {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        rules_version: store.version(),
    }];
    first.extend(store_alarms);
    if let (crate::store::RulesTrust::Trusted, Some(header)) = (store.trust(), store.header()) {
        let issued = header.snapshot().issued_at;
        gateway.handle(daemon::now(), Input::SignedTime(issued));
    }
    gateway.handle(daemon::now(), Input::Record(first));
}

/// The running bus tasks.
struct Buses {
    /// Where the daemon loop sends each bus's requests.
    links: Vec<BusLink>,
    /// Every bus's PD status, by name.
    status: HashMap<String, watch::Receiver<Vec<PdStatus>>>,
    /// Buses with PDs, for the watchdog.
    watched: Vec<(String, watch::Receiver<Vec<PdStatus>>)>,
    /// Each bus as the admin page shows it.
    views: Vec<BusView>,
    /// Their events, tagged with the bus.
    events: mpsc::Receiver<(BusId, BusEvent)>,
    count: usize,
}

/// Open every bus's port and start its task.
fn spawn_buses(plans: Vec<BusPlan>, shutdown: &watch::Receiver<bool>) -> Result<Buses, RunError> {
    let (events_tx, events) = mpsc::channel(256);
    let mut buses = Buses {
        links: Vec::new(),
        status: HashMap::new(),
        watched: Vec::new(),
        views: Vec::new(),
        events,
        count: plans.len(),
    };
    for plan in plans {
        let port = open_port(&plan.port).map_err(|source| RunError::Port {
            bus: plan.name.clone(),
            port: plan.port.path.clone(),
            source,
        })?;
        let bus = Bus::new(plan.timing, plan.pds.clone(), Box::new(clock::os_entropy)).map_err(
            |source| RunError::Bus {
                bus: plan.name.clone(),
                source,
            },
        )?;
        let start = BusStart {
            name: plan.name.as_str().into(),
            events: events_tx.clone(),
            shutdown: shutdown.clone(),
            suppress_echo: plan.port.suppress_echo,
            capture: None,
        };
        let spawned = spawn_bus(port, bus, start);
        let name = plan.name.clone();
        tokio::spawn(async move {
            if let Ok(Err(e)) = spawned.task.await {
                tracing::error!(bus = name, error = %e, "bus task ended");
            }
        });
        tracing::info!(bus = plan.name, port = %plan.port.path.display(), pds = plan.pds.len(), "bus open");
        if !plan.pds.is_empty() {
            buses
                .watched
                .push((plan.name.clone(), spawned.status.clone()));
        }
        buses.views.push(BusView {
            name: plan.name.clone(),
            device: plan.port.path.display().to_string(),
            roles: plan.names.clone(),
            status: spawned.status.clone(),
        });
        buses.status.insert(plan.name, spawned.status);
        buses.links.push(spawned.link);
    }
    Ok(buses)
}

/// The MQTT uplink and its inbound lanes, when `[uplink]` is configured.
fn start_uplink_if(
    config: &Config,
    keys: TrustedKeys,
    events_db: &sled::Db,
    journal: (JournalReader, JournalAcker),
    (running, readers, upkeep): (
        &Running,
        watch::Receiver<Vec<crate::status::ReaderInventory>>,
        super::upkeep::UpkeepLink,
    ),
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<watch::Receiver<UplinkState>>, RunError> {
    let Some(uplink) = config.uplink.clone() else {
        return Ok(None);
    };
    let wiring = UplinkWiring {
        gateway: config.gateway.id.clone(),
        keys,
        seen: replay_guard(events_db, &config.gateway.state_dir)?,
        journal,
        store: running.store.clone(),
        control: running.control.clone(),
        view: running.view.clone(),
        shutdown: shutdown.clone(),
        readers,
        upkeep,
    };
    Ok(Some(start_uplink(uplink, wiring)))
}

/// The seen-commands tree (replay protection of signed commands).
fn replay_guard(events_db: &sled::Db, state_dir: &Path) -> Result<sled::Tree, RunError> {
    events_db
        .open_tree("commands.seen")
        .map_err(|source| RunError::ReplayGuard {
            dir: state_dir.join("events"),
            source,
        })
}

/// Feed the poll round-trip histogram from every bus's status: one sample
/// per new reply seen (a reply between two reads may be missed).
fn watch_round_trips(
    buses: &HashMap<String, watch::Receiver<Vec<PdStatus>>>,
    metrics: &crate::admin::Metrics,
) {
    for (bus, status) in buses {
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
}

/// What the admin page sees of the running gateway.
struct AdminSight<'a> {
    /// The buses as opened.
    buses: Vec<BusView>,
    /// The uplink's state, when there is one.
    uplink: Option<watch::Receiver<UplinkState>>,
    /// The daemon loop and its views.
    running: &'a Running,
}

/// The admin port, when configured: its address and certificate
/// fingerprint. Never fatal: a fault leaves it off with an alarm; the doors
/// work on.
async fn start_admin(
    config: &Config,
    sight: AdminSight<'_>,
    metrics: &crate::admin::Metrics,
    shutdown: &watch::Receiver<bool>,
) -> Option<(std::net::SocketAddr, String)> {
    let admin = config.admin.as_ref()?;
    let uplink = config
        .uplink
        .as_ref()
        .zip(sight.uplink)
        .map(|(u, state)| (format!("mqtts://{}:{}", u.host, u.port), state));
    let identity = GatewayIdentity::of(config);
    let now = daemon::wall_now();
    let backend = super::admin_backend::backend(identity, sight.buses, uplink, sight.running, now);
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

/// systemd's watchdog, fed while the buses and the uplink are alive.
fn start_watchdog(
    buses: Vec<(String, watch::Receiver<Vec<PdStatus>>)>,
    view: &watch::Receiver<DaemonView>,
    uplink: Option<watch::Receiver<UplinkState>>,
    shutdown: &watch::Receiver<bool>,
) {
    let mut liveness = service::Liveness::new(buses, view.clone());
    if let Some(uplink) = uplink {
        liveness = liveness.with_uplink(uplink);
    }
    tokio::spawn(service::watchdog(liveness, shutdown.clone()));
}

fn create_private_dir(dir: &Path) -> Result<(), RunError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| RunError::StateDir {
            dir: dir.to_owned(),
            source,
        })
}
