//! The daemon loop: one task per bus (see [`super::serial`]), one loop that
//! owns the [`Building`] core, the [`ModePlanner`], the presence list, the
//! rules (through a [`Decider`]) and the [`Journal`]. It is the one place
//! that turns the cores' actions into I/O: OSDP commands to the bus tasks,
//! journal appends, clock reads.
//!
//! Ordering guarantees:
//! - the journal records of one input are appended and flushed before the
//!   commands of that input are sent, so no relay moves for an event that
//!   is not on disk;
//! - the presence list is written in the same sled database before that
//!   flush, so a passage on disk is also in the list after a restart.
//!
//! Wake-ups: bus events, control requests, the building's next deadline,
//! the next wall-clock minute (door-mode schedules are minute-grained) and
//! the next remote-mode expiry.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use super::clock;
use super::serial::BusRequest;
use crate::door::{CredentialId, Direction, Passage, Presence, PresenceEvent};
use crate::door::{DoorInput, RevolvingInput};
use crate::journal::{EventKind, JournalError, JournalWriter};
use crate::osdp::BusEvent;
use crate::osdp::message::RawCard;
use crate::site::modes::{ModePlanner, StandingMode};
use crate::site::remote::RemoteAction;
use crate::site::trusted_time::TrustedTime;
use crate::site::{Building, BuildingAction, BuildingInput, PdRef, Verdict};

/// The rules engine as the daemon sees it.
pub trait Decider: Send {
    /// Decide for this raw card at this door, at wall-clock time `now`.
    fn decide(&mut self, door: &str, card: &RawCard, now: Timestamp) -> Verdict;

    /// The scheduled mode name of `door` at `now`, if a schedule says one.
    fn door_mode(&self, _door: &str, _now: Timestamp) -> Option<String> {
        None
    }

    /// Whether it is office hours at `now`; `None` without rules (then
    /// every passage is recorded, the safe side for people's safety).
    fn office_hours(&self, _now: Timestamp) -> Option<bool> {
        None
    }

    /// Display name of a credential granted recently, for presence.
    fn display_name(&self, _credential: &str) -> Option<String> {
        None
    }
}

/// The loop wakes at least this often, so its published view proves it is
/// alive (the systemd watchdog checks that).
pub const MAX_IDLE: Duration = Duration::from_secs(10);

/// Daemon loop failures (each one stops the daemon: the doors stay locked).
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The journal could not be written: refusing to act without a record.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The presence list could not be written.
    #[error("presence list: {0}")]
    Presence(String),
}

/// A bus as the daemon loop sees it: where its commands go.
#[derive(Debug)]
pub struct BusLink {
    /// Bus name.
    pub name: String,
    /// Requests to that bus task.
    pub requests: mpsc::Sender<BusRequest>,
}

/// Requests to the daemon loop from other tasks (uplink commands, the
/// admin page, the test hook).
#[derive(Debug)]
pub enum Control {
    /// A remote door action; the reply says whether it was accepted.
    Remote {
        /// Who asked (`central`, `admin:<user>`, `control-socket`).
        source: String,
        /// The signed command's id, when it came from central.
        command: Option<String>,
        /// The action.
        action: RemoteAction,
        /// Accepted, or refused with the reason.
        reply: Option<oneshot::Sender<Result<(), String>>>,
    },
    /// The rules changed: re-evaluate door-mode schedules now.
    RulesChanged,
    /// Append these records (rules applied or refused, uplink, admin).
    Record(Vec<EventKind>),
    /// Use these reader feedback patterns from now on (config reload).
    SetFeedback(crate::site::outputs::FeedbackTable),
    /// A time vouched for by a signature (snapshot or command issue time).
    TrustedTime(Timestamp),
}

/// The daemon's own durable state, in a sled tree of the journal's
/// database so the journal's flush makes it durable with the events: the
/// presence list and the latest trusted time.
#[derive(Debug)]
pub struct PresenceBook {
    tree: sled::Tree,
    list: Presence,
    clock: TrustedTime,
    clock_saved: Option<Timestamp>,
}

const PRESENCE_KEY: &[u8] = b"list";
const TRUSTED_TIME_KEY: &[u8] = b"trusted_time";

impl PresenceBook {
    /// Load (or start) the list in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, DaemonError> {
        let fail = |e: String| DaemonError::Presence(e);
        let tree = db.open_tree("presence").map_err(|e| fail(e.to_string()))?;
        let list = match tree.get(PRESENCE_KEY).map_err(|e| fail(e.to_string()))? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?,
            None => Presence::new(),
        };
        let saved = match tree
            .get(TRUSTED_TIME_KEY)
            .map_err(|e| fail(e.to_string()))?
        {
            Some(bytes) => Some(
                std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .ok_or_else(|| fail("trusted time unreadable".into()))?,
            ),
            None => None,
        };
        Ok(Self {
            tree,
            list,
            clock: TrustedTime::new(saved),
            clock_saved: saved,
        })
    }

    /// The time to decide with (never earlier than a time already
    /// trusted); a `clock_went_back` record when the system clock jumped
    /// back. The trusted time is saved when it moved by a minute or more.
    fn now(&mut self, records: &mut Vec<EventKind>) -> Timestamp {
        let (now, alarm) = self.clock.now(wall_now());
        if let Some(a) = alarm {
            tracing::error!(seen = %a.seen, trusted = %a.trusted, "system clock went back");
            records.push(EventKind::ClockWentBack {
                seen: a.seen,
                trusted: a.trusted,
            });
        }
        self.save_clock(false);
        now
    }

    fn observe_trusted(&mut self, t: Timestamp) {
        self.clock.observe_trusted(t);
        self.save_clock(true);
    }

    fn save_clock(&mut self, force: bool) {
        let Some(latest) = self.clock.latest() else {
            return;
        };
        let moved = self
            .clock_saved
            .is_none_or(|s| latest.duration_since(s) >= jiff::SignedDuration::from_mins(1));
        if (force || moved) && self.clock_saved != Some(latest) {
            // Best effort: losing it only loses part of the floor.
            if self
                .tree
                .insert(TRUSTED_TIME_KEY, latest.to_string().as_bytes())
                .is_ok()
            {
                self.clock_saved = Some(latest);
            }
        }
    }

    /// Who is inside.
    pub fn list(&self) -> &Presence {
        &self.list
    }

    fn record(&mut self, passage: Passage) -> Result<Option<PresenceEvent>, DaemonError> {
        let event = self.list.record(passage);
        let bytes =
            serde_json::to_vec(&self.list).map_err(|e| DaemonError::Presence(e.to_string()))?;
        self.tree
            .insert(PRESENCE_KEY, bytes)
            .map_err(|e| DaemonError::Presence(e.to_string()))?;
        Ok(event)
    }
}

impl Daemon {
    /// A daemon for this building (its mode planner follows the doors).
    pub fn new(
        building: Building,
        decider: Box<dyn Decider>,
        journal: JournalWriter,
        presence: PresenceBook,
        buses: Vec<BusLink>,
    ) -> Self {
        Self {
            planner: building.mode_planner(),
            building,
            decider,
            journal,
            presence,
            buses,
            metrics: None,
        }
    }

    /// Count decisions in these metrics.
    pub fn with_metrics(mut self, metrics: crate::admin::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

/// Everything the loop owns.
pub struct Daemon {
    /// The building core.
    pub building: Building,
    /// Standing modes.
    pub planner: ModePlanner,
    /// The rules.
    pub decider: Box<dyn Decider>,
    /// The event journal.
    pub journal: JournalWriter,
    /// Who is inside.
    pub presence: PresenceBook,
    /// Where commands go, by bus name.
    pub buses: Vec<BusLink>,
    /// Decision counters for `/metrics`, when the admin port runs.
    pub metrics: Option<crate::admin::Metrics>,
}

/// What the loop listens to.
#[derive(Debug)]
pub struct DaemonInputs {
    /// Bus events, tagged with the bus name.
    pub events: mpsc::Receiver<(String, BusEvent)>,
    /// Control requests.
    pub control: mpsc::Receiver<Control>,
    /// Ends the loop when it turns true.
    pub shutdown: watch::Receiver<bool>,
}

/// Observable state, published after every round (at least every
/// [`MAX_IDLE`]).
#[derive(Debug, Clone, Default)]
pub struct DaemonView {
    /// Who is inside.
    pub presence: Presence,
    /// Last appended event sequence number.
    pub last_seq: u64,
    /// What every door is doing.
    pub doors: Vec<crate::site::DoorState>,
    /// The latest trusted time (never below a signed issue time).
    pub trusted_time: Option<Timestamp>,
}

/// Run until shutdown. Doors are locked first.
pub async fn run(
    mut daemon: Daemon,
    mut inputs: DaemonInputs,
    view: watch::Sender<DaemonView>,
) -> Result<(), DaemonError> {
    let links: HashMap<String, mpsc::Sender<BusRequest>> = std::mem::take(&mut daemon.buses)
        .into_iter()
        .map(|b| (b.name, b.requests))
        .collect();
    daemon.building.lock_all();
    let mut pending = Vec::new();
    let now = daemon.presence.now(&mut pending);
    daemon.apply_modes(now, &mut pending);
    daemon.drain(&links, pending).await?;
    daemon.publish(&view);
    let mut control_open = true;
    let mut events_open = true;
    loop {
        let mut records = Vec::new();
        let deadline = daemon.next_wake();
        tokio::select! {
            // Every bus task gone (or none configured): keep serving control
            // requests; a dead bus task stops the watchdog pings instead.
            event = inputs.events.recv(), if events_open => match event {
                Some((bus, event)) => daemon.building.handle(clock::monotonic(), BuildingInput::Bus { bus, event }),
                None => events_open = false,
            },
            control = inputs.control.recv(), if control_open => match control {
                Some(c) => daemon.control(c, &mut records),
                None => control_open = false,
            },
            () = tokio::time::sleep_until(deadline.into()) => {
                daemon.building.handle_timeout(clock::monotonic());
                let now = daemon.presence.now(&mut records);
                daemon.apply_modes(now, &mut records);
            }
            changed = inputs.shutdown.changed() => {
                if changed.is_err() || *inputs.shutdown.borrow() { return Ok(()); }
            }
        }
        daemon.drain(&links, records).await?;
        daemon.publish(&view);
    }
}

impl Daemon {
    fn publish(&self, view: &watch::Sender<DaemonView>) {
        view.send_replace(DaemonView {
            presence: self.presence.list().clone(),
            last_seq: self.journal.next_seq().saturating_sub(1),
            doors: self.building.door_states(),
            trusted_time: self.presence.clock.latest(),
        });
    }

    /// The earliest of: a door deadline, the next wall-clock minute, a
    /// remote-mode expiry.
    fn next_wake(&self) -> std::time::Instant {
        let now = clock::monotonic();
        let wall = wall_now();
        let to_minute = 60 - (wall.as_second().rem_euclid(60) as u64);
        let mut wake = now + Duration::from_secs(to_minute).min(MAX_IDLE);
        if let Some(t) = self.building.poll_timeout() {
            wake = wake.min(t);
        }
        if let Some(expiry) = self.planner.next_expiry() {
            let left = expiry.duration_since(wall).unsigned_abs();
            let left = if expiry > wall { left } else { Duration::ZERO };
            wake = wake.min(now + left);
        }
        wake
    }

    /// Re-read the schedules and feed mode changes to the doors.
    fn apply_modes(&mut self, wall: Timestamp, records: &mut Vec<EventKind>) {
        let decider = &self.decider;
        let scheduled: HashMap<String, String> = self
            .planner_doors()
            .into_iter()
            .filter_map(|d| decider.door_mode(&d, wall).map(|m| (d, m)))
            .collect();
        for (door, e) in self
            .planner
            .set_scheduled(|d| scheduled.get(d).map(String::as_str))
        {
            tracing::warn!(door, error = %e, "door-mode schedule ignored");
            records.push(EventKind::RulesRefused {
                reason: format!("door-mode schedule for {door}: {e}"),
            });
        }
        for (door, mode) in self.planner.changes(wall) {
            let input = match mode {
                StandingMode::Standard(m) => BuildingInput::Door {
                    door,
                    input: DoorInput::SetMode(m),
                },
                StandingMode::Revolving(m) => BuildingInput::Revolving {
                    door,
                    input: RevolvingInput::SetMode(m),
                },
            };
            self.building.handle(clock::monotonic(), input);
        }
    }

    fn planner_doors(&self) -> Vec<String> {
        self.building.door_ids().map(str::to_owned).collect()
    }

    fn control(&mut self, control: Control, records: &mut Vec<EventKind>) {
        match control {
            Control::Remote {
                source,
                command,
                action,
                reply,
            } => {
                let wall = self.presence.now(records);
                let result = action.plan(&mut self.planner, clock::monotonic(), wall);
                let outcome = match &result {
                    Ok(_) => "accepted".to_owned(),
                    Err(e) => format!("refused: {e}"),
                };
                tracing::info!(source, action = action.name(), outcome, "remote action");
                records.push(EventKind::RemoteAction {
                    source,
                    command,
                    action: serde_json::to_string(&action).unwrap_or_default(),
                    outcome,
                });
                let answer = match result {
                    Ok(inputs) => {
                        for input in inputs {
                            self.building.handle(clock::monotonic(), input);
                        }
                        self.apply_modes(wall, records);
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                };
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
            Control::RulesChanged => {
                let now = self.presence.now(records);
                self.apply_modes(now, records);
            }
            Control::Record(kinds) => records.extend(kinds),
            Control::SetFeedback(table) => self.building.set_feedback(table),
            Control::TrustedTime(t) => self.presence.observe_trusted(t),
        }
    }

    /// Process the building's actions until there are none: decisions feed
    /// back as verdicts; passages update presence; records are appended
    /// (flushed) before commands go out.
    async fn drain(
        &mut self,
        links: &HashMap<String, mpsc::Sender<BusRequest>>,
        mut records: Vec<EventKind>,
    ) -> Result<(), DaemonError> {
        loop {
            let mut commands = Vec::new();
            while let Some(action) = self.building.poll_action() {
                match action {
                    BuildingAction::Decide {
                        door, reader, card, ..
                    } => {
                        let now = self.presence.now(&mut records);
                        let verdict = self.decider.decide(&door, &card, now);
                        if let Some(m) = &self.metrics {
                            m.decision(match &verdict {
                                Verdict::Grant { .. } => None,
                                Verdict::Deny { reason, .. } => Some(reason.as_str()),
                            });
                        }
                        self.building.handle(
                            clock::monotonic(),
                            BuildingInput::Verdict {
                                door,
                                reader,
                                verdict,
                            },
                        );
                    }
                    BuildingAction::Record(kind) => records.push(kind),
                    BuildingAction::Command { pd, command } => commands.push((pd, command)),
                    BuildingAction::Passage {
                        credential,
                        direction,
                        ..
                    } => {
                        let at = self.presence.now(&mut records);
                        if let Some(kind) = self.passage(credential, direction, at)? {
                            records.push(kind);
                        }
                    }
                }
            }
            if records.is_empty() && commands.is_empty() {
                return Ok(());
            }
            if !records.is_empty() {
                let at = self.presence.now(&mut records);
                let appended = self.journal.append(at, std::mem::take(&mut records))?;
                appended.iter().for_each(log_event);
            }
            send_commands(links, commands).await;
        }
    }

    fn passage(
        &mut self,
        credential: String,
        direction: Direction,
        at: Timestamp,
    ) -> Result<Option<EventKind>, DaemonError> {
        let name = self.decider.display_name(&credential);
        let office_hours = self.decider.office_hours(at).unwrap_or(false);
        let event = self.presence.record(Passage {
            credential: CredentialId(credential),
            name,
            direction,
            at,
            office_hours,
        })?;
        Ok(event.map(|e| match e {
            PresenceEvent::Entered {
                credential, name, ..
            } => EventKind::Presence {
                credential: credential.0,
                name,
                direction: "in".into(),
            },
            PresenceEvent::Left {
                credential, name, ..
            } => EventKind::Presence {
                credential: credential.0,
                name,
                direction: "out".into(),
            },
        }))
    }
}

async fn send_commands(
    links: &HashMap<String, mpsc::Sender<BusRequest>>,
    commands: Vec<(PdRef, crate::osdp::message::Command)>,
) {
    for (PdRef { bus, address }, command) in commands {
        let Some(link) = links.get(&bus) else {
            tracing::error!(bus, address, "command for an unknown bus dropped");
            continue;
        };
        let (queued, result) = oneshot::channel();
        if link
            .send(BusRequest::Command {
                address,
                command,
                queued,
            })
            .await
            .is_err()
        {
            tracing::error!(bus, address, "bus task gone; command dropped");
            continue;
        }
        // An offline PD refuses commands; that is already an event, and the
        // PD gets its doors' current state when it comes back.
        if let Ok(Err(err)) = result.await {
            tracing::debug!(bus, address, %err, "command not queued");
        }
    }
}

/// One line per journaled event: what `portier demo` shows and what a
/// technician greps for. Structured fields go to journald as such.
fn log_event(event: &crate::journal::Event) {
    let json = serde_json::to_value(&event.kind).unwrap_or_default();
    let kind = json["type"].as_str().unwrap_or("event");
    let door = json["door"].as_str().unwrap_or("");
    let credential = json["credential"].as_str().unwrap_or("");
    let reason = json["reason"].as_str().unwrap_or("");
    tracing::info!(
        seq = event.seq,
        kind,
        door,
        credential,
        reason,
        "event {json}"
    );
}

/// Wall-clock now, from the one clock read point.
pub fn wall_now() -> Timestamp {
    let since = clock::since_epoch();
    // The clock read point returns a Duration since the epoch; it fits.
    Timestamp::from_nanosecond(since.as_nanos() as i128).unwrap_or(Timestamp::UNIX_EPOCH)
}
