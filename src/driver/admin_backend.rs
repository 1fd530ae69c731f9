//! The daemon's side of the admin port: [`AdminBackend`] over the running
//! gateway — the daemon view (doors, presence, trusted time), the bus
//! statuses, the uplink state, the rules store (status and the "why" box),
//! the journal, and the daemon loop's control channel for door actions
//! (the same path as central's commands, so they are journaled alike).

use crate::door::Presence;
use crate::ids::DoorId;
use crate::site::modes::DoorClass;
use crate::site::remote::RemoteError;
use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};

use super::daemon::{self, Control, DaemonView};
use super::uplink::UplinkState;
use crate::admin::{
    ActionOutcome, AdminBackend, BackendError, BoxFuture, DoorActionRequest, DoorCommand,
    OverrideChoice, PassageDirection, WhyAnswer, WhyQuery, why_answer,
};
use crate::config::Config;
use crate::door::Direction;
use crate::event::{Event, EventKind};
use crate::journal::JournalReader;
use crate::osdp;
use crate::site::remote::RemoteAction;
use crate::status::{
    BusStatus, DoorKindName, DoorStatus, GatewayStatus, Occupancy, PresenceEntry, RulesStatus,
    Status, UntrustedRules, UplinkStatus,
};
use crate::store::{RulesTrust, Store};

/// One bus as the admin port shows it.
#[derive(Debug, Clone)]
pub struct BusView {
    /// Bus name.
    pub name: String,
    /// Serial device.
    pub device: String,
    /// PD roles by address.
    pub roles: HashMap<u8, String>,
    /// Live PD statuses.
    pub status: watch::Receiver<Vec<osdp::PdStatus>>,
}

/// The running gateway, seen by the admin port.
pub struct GatewayBackend {
    /// Gateway id.
    pub gateway: String,
    /// Building.
    pub building: String,
    /// Time zone shown on the page.
    pub time_zone: String,
    /// When the daemon started.
    pub started_at: Timestamp,
    /// Monotonic start, for uptime.
    pub started: std::time::Instant,
    /// The rules.
    pub store: Arc<Store>,
    /// A read handle on the journal.
    pub journal: Arc<JournalReader>,
    /// Daemon state.
    pub view: watch::Receiver<DaemonView>,
    /// Buses.
    pub buses: Vec<BusView>,
    /// The uplink, when configured: its broker and state.
    pub uplink: Option<(String, watch::Receiver<UplinkState>)>,
    /// The daemon loop.
    pub control: mpsc::Sender<Control>,
}

fn unavailable(e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(e.to_string())
}

impl GatewayBackend {
    fn now(&self) -> Timestamp {
        let system = daemon::wall_now();
        self.view
            .borrow()
            .trusted_time
            .map_or(system, |t| t.max(system))
    }

    fn status_now(&self, inside: &Presence) -> Result<Status, BackendError> {
        let now = self.now();
        let view = self.view.borrow().clone();
        let rules = self.store.header().map(|h| {
            let issued_at = h.snapshot().issued_at;
            let too_old = h
                .snapshot()
                .doors
                .keys()
                .any(|d| h.too_old(d, now).is_some());
            RulesStatus {
                version: self.store.version().unwrap_or(0),
                issued_at,
                age_secs: now.duration_since(issued_at).as_secs().max(0) as u64,
                signer_key_id: self.store.signer_key_id().unwrap_or_default(),
                credentials: self.store.credential_count().unwrap_or(0),
                too_old,
            }
        });
        let mono = super::clock::monotonic();
        let buses = self
            .buses
            .iter()
            .map(|b| BusStatus {
                name: b.name.clone(),
                device: b.device.clone(),
                pds: b
                    .status
                    .borrow()
                    .iter()
                    .map(|p| {
                        let role = b.roles.get(&p.address).cloned().unwrap_or_default();
                        super::inventory::pd_status(p, role, mono, now)
                    })
                    .collect(),
            })
            .collect();
        let header = self.store.header();
        let doors = view
            .doors
            .iter()
            .map(|d| {
                // A timed override's end, from the door's monotonic deadline.
                let until = d.reverts_at.and_then(|t| {
                    let left = t.saturating_duration_since(mono);
                    now.checked_add(jiff::SignedDuration::try_from(left).ok()?)
                        .ok()
                });
                let override_state = d.override_state.zip(until).map(|(state, until)| {
                    crate::status::OverrideStatus {
                        state: state.to_owned(),
                        until,
                    }
                });
                DoorStatus {
                    id: d.id.to_string(),
                    kind: match d.kind {
                        DoorClass::Revolving => DoorKindName::Revolving,
                        DoorClass::Standard => DoorKindName::Standard,
                    },
                    mode: d.mode.to_string(),
                    override_state,
                    locked: !d.released,
                    open: d.open,
                    forced: d.forced,
                    held_open: d.held_open,
                    schedule_open: header
                        .as_ref()
                        .and_then(|h| h.door_mode(&d.id, now).map(|_| true)),
                }
            })
            .collect();
        let uplink = match &self.uplink {
            None => UplinkStatus {
                configured: false,
                connected: false,
                broker: None,
                last_ack_at: None,
                last_ack_seq: None,
                backlog: self.journal.len(),
                oldest_backlog_age_secs: None,
            },
            Some((broker, state)) => {
                let s = state.borrow().clone();
                UplinkStatus {
                    configured: true,
                    connected: s.connected,
                    broker: Some(broker.clone()),
                    last_ack_at: None,
                    last_ack_seq: Some(s.acked),
                    backlog: s.backlog,
                    oldest_backlog_age_secs: s
                        .backlog_oldest_at
                        .map(|t| now.duration_since(t).as_secs().max(0) as u64),
                }
            }
        };
        let last = view.last_seq;
        let recent_events = self
            .journal
            .after(last.saturating_sub(20), 20)
            .map_err(unavailable)?;
        Ok(Status {
            gateway: GatewayStatus {
                id: self.gateway.clone(),
                building: self.building.clone(),
                version: env!("CARGO_PKG_VERSION").into(),
                started_at: self.started_at,
                uptime_secs: super::clock::monotonic()
                    .saturating_duration_since(self.started)
                    .as_secs(),
                now,
                time_zone: self.time_zone.clone(),
                time: view.time.clone(),
            },
            rules,
            rules_untrusted: match self.store.trust() {
                RulesTrust::Trusted => None,
                RulesTrust::Untrusted { key_id, version } => Some(UntrustedRules {
                    version,
                    signer_key_id: key_id,
                }),
            },
            buses,
            doors,
            uplink,
            recent_events,
            presence: presence(inside),
            interlocks: view.interlocks.clone(),
            fire_alarms: view.fire_alarms.iter().map(|i| i.to_string()).collect(),
            duress_since_start: view.duress_total,
        })
    }
}

impl GatewayBackend {
    /// The core's decision for the query's card at its door (the one
    /// decision path, with the door's situation now); `None` when the
    /// loop is gone.
    async fn door_decides(
        &self,
        query: &WhyQuery,
    ) -> Option<(crate::site::Verdict, Option<String>)> {
        let (reply, answer) = oneshot::channel();
        // "Now" is the core's proven time, not the admin port's reading.
        let now = query.at.duration_since(self.now()).abs() <= jiff::SignedDuration::from_mins(1);
        let why = Control::Why {
            door: DoorId::from(&query.door),
            presented: query.card.clone().into(),
            at: (!now).then_some(query.at),
            reply,
        };
        self.control.send(why).await.ok()?;
        answer.await.ok()
    }
}

/// Who is inside, from the daemon loop (empty when it is gone).
async fn inside(control: &mpsc::Sender<Control>) -> Presence {
    crate::driver::daemon::ask_presence(control)
        .await
        .unwrap_or_default()
}

fn presence(inside: &Presence) -> Vec<PresenceEntry> {
    inside
        .inside()
        .map(|(credential, o)| PresenceEntry {
            credential: credential.0.clone(),
            name: o.name.clone(),
            since: o.since,
            area: o.area.as_ref().map(|a| a.to_string()),
            door: o.door.as_ref().map(|d| d.to_string()),
        })
        .collect()
}

/// The muster list of `area` from the daemon loop (empty when it is gone).
async fn muster(control: &mpsc::Sender<Control>, area: Option<String>) -> Vec<PresenceEntry> {
    let (reply, answer) = oneshot::channel();
    if control.send(Control::Muster { area, reply }).await.is_err() {
        return Vec::new();
    }
    answer
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l| PresenceEntry {
            credential: l.credential,
            name: l.name,
            since: l.since,
            area: l.area.map(String::from),
            door: l.door,
        })
        .collect()
}

impl AdminBackend for GatewayBackend {
    fn status(&self) -> BoxFuture<'_, Result<Status, BackendError>> {
        Box::pin(async move { self.status_now(&inside(&self.control).await) })
    }

    fn events(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Event>, BackendError>> {
        Box::pin(async move { self.journal.after(after, limit).map_err(unavailable) })
    }

    fn occupancy(&self, area: Option<String>) -> BoxFuture<'_, Result<Occupancy, BackendError>> {
        Box::pin(async move {
            Ok(Occupancy {
                now: self.now(),
                inside: muster(&self.control, area.clone()).await,
                area,
            })
        })
    }

    fn why(&self, query: WhyQuery) -> BoxFuture<'_, Result<WhyAnswer, BackendError>> {
        Box::pin(async move {
            if !self.view.borrow().doors.iter().any(|d| d.id == query.door) {
                return Err(BackendError::UnknownDoor(query.door));
            }
            let (verdict, detail) = self
                .door_decides(&query)
                .await
                .ok_or_else(|| BackendError::Unavailable("the daemon loop is gone".into()))?;
            let mut answer = why_answer(&verdict, self.store.version(), query.at);
            answer.detail = detail;
            if let Some(header) = self.store.header() {
                let (_, day) = header.day_of(query.at);
                answer.day_type = day.day_type.map(str::to_owned);
                answer.day_name = day.name.map(str::to_owned);
            }
            Ok(answer)
        })
    }

    fn confirm_time(&self, by: String) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.control
                .send(Control::ConfirmTime { by })
                .await
                .map_err(|_| BackendError::Unavailable("the daemon loop is gone".into()))
        })
    }

    fn door_action(
        &self,
        request: DoorActionRequest,
    ) -> BoxFuture<'_, Result<ActionOutcome, BackendError>> {
        Box::pin(async move {
            let door = request.door.clone();
            let door_id = DoorId::from(&door);
            let done = request.command.describe();
            let (action, secs) = match request.command {
                DoorCommand::Unlock { seconds } => (
                    RemoteAction::Unlock {
                        door: door_id.clone(),
                        seconds: u64::from(seconds),
                    },
                    Some(u64::from(seconds)),
                ),
                DoorCommand::Override { state, minutes } => {
                    let class = self
                        .view
                        .borrow()
                        .doors
                        .iter()
                        .find(|d| d.id == door_id)
                        .map(|d| d.kind)
                        .ok_or_else(|| BackendError::UnknownDoor(door.clone()))?;
                    use crate::door::{Mode, RevolvingMode, StandingMode};
                    let mode = match (class, state) {
                        (DoorClass::Revolving, OverrideChoice::Unlocked) => {
                            StandingMode::Revolving(RevolvingMode::FreeRotation)
                        }
                        (DoorClass::Revolving, OverrideChoice::Locked) => {
                            StandingMode::Revolving(RevolvingMode::Locked)
                        }
                        (DoorClass::Standard, OverrideChoice::Unlocked) => {
                            StandingMode::Standard(Mode::ScheduledUnlock)
                        }
                        (DoorClass::Standard, OverrideChoice::Locked) => {
                            StandingMode::Standard(Mode::CardOnly)
                        }
                    };
                    (
                        RemoteAction::SetMode {
                            door: door_id.clone(),
                            mode,
                            seconds: u64::from(minutes) * 60,
                        },
                        Some(u64::from(minutes) * 60),
                    )
                }
                DoorCommand::ReleasePassage { direction } => (
                    RemoteAction::ReleasePassage {
                        door: door_id.clone(),
                        direction: match direction {
                            PassageDirection::In => Direction::In,
                            PassageDirection::Out => Direction::Out,
                        },
                    },
                    None,
                ),
            };
            let (reply, answer) = oneshot::channel();
            self.control
                .send(Control::Remote {
                    source: format!("admin:{}", request.by),
                    command: None,
                    action,
                    reply: Some(reply),
                })
                .await
                .map_err(|_| unavailable("daemon stopping"))?;
            match answer.await.map_err(|_| unavailable("daemon stopping"))? {
                Ok(()) => Ok(ActionOutcome {
                    door,
                    done,
                    until: secs.and_then(|s| {
                        request
                            .at
                            .checked_add(jiff::SignedDuration::from_secs(s as i64))
                            .ok()
                    }),
                }),
                Err(RemoteError::UnknownDoor(_)) => Err(BackendError::UnknownDoor(door)),
                Err(e) => Err(BackendError::Refused(e.to_string())),
            }
        })
    }

    fn record(&self, event: EventKind) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.control
                .send(Control::Record(vec![event]))
                .await
                .map_err(|_| unavailable("daemon stopping"))
        })
    }
}

/// Who the gateway is, as the admin page names it.
#[derive(Debug, Clone)]
pub struct GatewayIdentity {
    /// Gateway id.
    pub id: String,
    /// Building.
    pub building: String,
    /// Time zone of the page's times.
    pub time_zone: String,
}

impl GatewayIdentity {
    /// From the config's `[gateway]` table.
    pub fn of(config: &Config) -> Self {
        Self {
            id: config.gateway.id.clone(),
            building: config.gateway.building.clone(),
            time_zone: config
                .gateway
                .time_zone
                .as_ref()
                .map(|t| t.get_ref().clone())
                .unwrap_or_else(|| "UTC".into()),
        }
    }
}

/// Build the backend for a running gateway: its identity, its buses (as
/// opened, with their live status), the uplink (broker URL and state).
pub fn backend(
    identity: GatewayIdentity,
    buses: Vec<BusView>,
    uplink: Option<(String, watch::Receiver<UplinkState>)>,
    running: &super::running::Running,
    started_at: Timestamp,
) -> GatewayBackend {
    GatewayBackend {
        gateway: identity.id,
        building: identity.building,
        time_zone: identity.time_zone,
        started_at,
        started: super::clock::monotonic(),
        store: running.store.clone(),
        journal: running.journal.clone(),
        view: running.view.clone(),
        buses,
        uplink,
        control: running.control.clone(),
    }
}
