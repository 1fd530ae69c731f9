//! The daemon loop: plumbing around the [`Gateway`] core. It reads the
//! clocks, feeds the core bus events, control requests and timeouts, and
//! carries out its outputs in order:
//! - a commit: the standing state and the records go into **one journal
//!   frame, one flush** (see [`crate::journal`]), before any command of
//!   the same input is sent;
//! - commands go to the bus tasks without waiting for each other;
//! - replies go back to whoever asked; decisions are counted.
//!
//! Nothing here decides anything about a door.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use super::disk::DiskSpace;
use super::serial::BusRequest;
use crate::clock;
use crate::door::{Presence, PresenceChange};
use crate::event::EventKind;
use crate::ids::BusId;
use crate::journal::{Journal, JournalError, JournalReader, JournalWriter, StateWrite};
use crate::osdp::BusEvent;
use crate::site::outputs::FeedbackTable;
use crate::site::remote::{RemoteAction, RemoteError};
use crate::site::standing::StandingError;
use crate::site::{
    Commit, DecisionObserver, Gateway, Input, Now, Output, StandingChange, StandingState, Ticket,
};

/// The loop wakes at least this often, so its published view proves it is
/// alive (the systemd watchdog checks that).
pub const MAX_IDLE: Duration = Duration::from_secs(10);

/// Daemon loop failures (each one stops the daemon: the doors stay locked).
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The journal could not be written: refusing to act without a record.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The standing state could not be read or written.
    #[error("standing state (lockdown, overrides, presence): {0}")]
    Standing(String),
}

pub use super::serial::BusLink;

/// Requests to the daemon loop from other tasks (uplink commands, the
/// admin page, the control socket).
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
        reply: Option<oneshot::Sender<Result<(), RemoteError>>>,
    },
    /// The rules changed: re-evaluate door-mode schedules now.
    RulesChanged,
    /// Append these records (rules applied or refused, uplink, admin).
    Record(Vec<EventKind>),
    /// Use these reader feedback patterns from now on (config reload).
    SetFeedback(FeedbackTable),
    /// A time vouched for by a signature (snapshot or command issue time,
    /// a retained beacon).
    TrustedTime(Timestamp),
    /// A live time beacon, verified, and when it arrived.
    Beacon {
        /// Its signed time.
        at: Timestamp,
        /// When the driver received it (monotonic).
        came: std::time::Instant,
    },
    /// An operator vouches for the clock.
    ConfirmTime {
        /// Who.
        by: String,
    },
    /// Who is inside now. Asked for, not published with every round: a
    /// copy of the list costs its length, which a passage must not.
    Presence(oneshot::Sender<Presence>),
    /// The muster list of an area (its inner areas included), or of
    /// everyone: the core knows how the areas nest.
    Muster {
        /// The area.
        area: Option<String>,
        /// The lines.
        reply: oneshot::Sender<Vec<crate::site::areas::MusterLine>>,
    },
    /// What the door would decide for this card (the admin "why" box):
    /// the core's own decision path, lockdown and the clock included.
    Why {
        /// The door.
        door: crate::ids::DoorId,
        /// The card (as a reader sends it or as a credential key) and PIN.
        presented: crate::site::Presented,
        /// Another time than now, asked with today's situation.
        at: Option<Timestamp>,
        /// The answer.
        reply: oneshot::Sender<(crate::site::Verdict, Option<String>)>,
    },
}

/// Who is inside now, from the daemon loop; `None` when it is gone.
pub async fn ask_presence(control: &mpsc::Sender<Control>) -> Option<Presence> {
    let (reply, answer) = oneshot::channel();
    control.send(Control::Presence(reply)).await.ok()?;
    answer.await.ok()
}

/// The standing state's encoding in the journal: it travels, as opaque
/// bytes, in the same frame as the events of the commit that changed it.
#[derive(Debug, Clone, Copy)]
pub struct StandingBook;

/// Before the gateway core, only the presence list was kept, as JSON, in
/// the `events/` sled database.
const LEGACY_PRESENCE_TREE: &str = "presence";
const LEGACY_PRESENCE_KEY: &[u8] = b"list";

impl StandingBook {
    /// The state last committed whole (`committed`, from
    /// [`Journal::state`]) with the presence changes committed after it
    /// (`changes`, from [`Journal::state_changes`]); an earlier version's
    /// presence list from `legacy` when there is none yet; defaults on a
    /// fresh gateway. A state that cannot be read is an error: starting
    /// from defaults would lift a lockdown.
    pub fn load(
        committed: Option<&[u8]>,
        changes: &[Vec<u8>],
        legacy: Option<&sled::Db>,
    ) -> Result<StandingState, DaemonError> {
        let mut state = Self::load_whole(committed, legacy)?;
        for bytes in changes {
            let lines: Vec<PresenceChange> = serde_cbor::from_slice(bytes).map_err(|e| {
                DaemonError::Standing(format!(
                    "a presence change is unreadable ({e}); move the state directory's \
                     journal/ aside only if every door's lockdown and overrides may be \
                     forgotten (the events waiting stay in the moved directory: \
                     `portier journal drain` delivers them)"
                ))
            })?;
            state.presence.apply(lines);
        }
        Ok(state)
    }

    fn load_whole(
        committed: Option<&[u8]>,
        legacy: Option<&sled::Db>,
    ) -> Result<StandingState, DaemonError> {
        if let Some(bytes) = committed {
            // Earlier layouts are upgraded; a newer one (a downgrade) is
            // not guessed at: starting from defaults would lift a lockdown.
            return crate::site::standing::decode(bytes).map_err(|e| match e {
                StandingError::Unreadable { .. } => DaemonError::Standing(format!(
                    "{e}; move the state directory's journal/ aside only if \
                     every door's lockdown and overrides may be forgotten (the events \
                     waiting stay in the moved directory: `portier journal drain` \
                     delivers them)"
                )),
                e => DaemonError::Standing(e.to_string()),
            });
        }
        let mut state = StandingState::default();
        if let Some(db) = legacy {
            let list = db
                .open_tree(LEGACY_PRESENCE_TREE)
                .and_then(|t| t.get(LEGACY_PRESENCE_KEY))
                .map_err(|e| DaemonError::Standing(e.to_string()))?;
            if let Some(bytes) = list
                && let Ok(list) = serde_json::from_slice::<Presence>(&bytes)
            {
                state.presence = list;
            }
        }
        Ok(state)
    }

    /// The bytes committed with the journal.
    pub fn encode(state: &StandingState) -> Result<Vec<u8>, DaemonError> {
        crate::site::standing::encode(state).map_err(|e| DaemonError::Standing(e.to_string()))
    }

    /// The bytes of presence lines that changed.
    pub fn encode_change(lines: &[PresenceChange]) -> Result<Vec<u8>, DaemonError> {
        serde_cbor::to_vec(&lines).map_err(|e| DaemonError::Standing(e.to_string()))
    }

    /// What to write of `change`: the lines, or the whole state once the
    /// lines kept since the last whole would outgrow it (never less than
    /// [`CHANGES_AT_LEAST`]). So a passage costs its line, amortised, and
    /// a segment's head (the whole and the changes since) stays within
    /// twice the whole.
    fn write(
        change: StandingChange,
        whole_now: impl FnOnce() -> StandingState,
        journal: &JournalWriter,
    ) -> Result<StateWrite, DaemonError> {
        match change {
            StandingChange::Whole(state) => Ok(StateWrite::Whole(Self::encode(&state)?)),
            StandingChange::Presence(lines) => {
                let bytes = Self::encode_change(&lines)?;
                let kept = journal.state_change_bytes().saturating_add(bytes.len());
                if kept > journal.state_bytes().max(CHANGES_AT_LEAST) {
                    Ok(StateWrite::Whole(Self::encode(&whole_now())?))
                } else {
                    Ok(StateWrite::Change(bytes))
                }
            }
        }
    }
}

/// Presence changes kept after a whole state before it is written whole
/// again, at least (bytes): a small list is not rewritten every few
/// passages.
pub const CHANGES_AT_LEAST: usize = 64 << 10;

impl StandingBook {}

/// What the loop listens to.
#[derive(Debug)]
pub struct DaemonInputs {
    /// Bus events, tagged by their bus task.
    pub events: mpsc::Receiver<(BusId, BusEvent)>,
    /// Control requests.
    pub control: mpsc::Receiver<Control>,
    /// Ends the loop when it turns true.
    pub shutdown: watch::Receiver<bool>,
}

/// Observable state, published after every round (at least every
/// [`MAX_IDLE`]).
#[derive(Debug, Clone, Default)]
pub struct DaemonView {
    /// How many are inside (the list itself: [`ask_presence`]).
    pub inside: usize,
    /// What the core knows of the time.
    pub time: crate::status::TimeStatus,
    /// Last appended event sequence number.
    pub last_seq: u64,
    /// What every door is doing.
    pub doors: Vec<crate::site::DoorState>,
    /// The interlocks (airlocks) now.
    pub interlocks: Vec<crate::status::InterlockStatus>,
    /// The trusted time of the last round.
    pub trusted_time: Option<Timestamp>,
    /// When this view was published (monotonic).
    pub published_at: Option<std::time::Instant>,
    /// Sequence numbers of the latest urgent events (at most
    /// [`URGENT_KEPT`]), for the uplink to publish ahead of the backlog.
    pub urgent: Vec<u64>,
    /// Duress alarms since the daemon started.
    pub duress_total: u64,
    /// The fire-alarm inputs active now.
    pub fire_alarms: Vec<crate::ids::InputId>,
}

/// How many urgent sequence numbers the view keeps: more at once than a
/// building produces between two uplink rounds; an older one still goes
/// out in turn.
pub const URGENT_KEPT: usize = 64;

impl DaemonView {
    /// The core's trusted time now: the last round's, advanced by the
    /// monotonic clock since (never the raw system clock, which may be off
    /// by years on a bad day); the system clock only before the first round.
    pub fn trusted_now(&self) -> Timestamp {
        match (self.trusted_time, self.published_at) {
            (Some(t), Some(at)) => {
                let since = clock::monotonic().saturating_duration_since(at);
                jiff::SignedDuration::try_from(since)
                    .ok()
                    .and_then(|d| t.checked_add(d).ok())
                    .unwrap_or(t)
            }
            (Some(t), None) => t,
            _ => wall_now(),
        }
    }
}

/// Everything the loop owns besides the core.
pub struct Daemon {
    /// The core.
    pub gateway: Gateway,
    /// The event journal's one writer (the standing state goes with it).
    pub journal: JournalWriter,
    /// Where commands go, by bus name.
    pub buses: Vec<BusLink>,
    /// Who counts decisions, when someone does.
    pub observer: Option<Arc<dyn DecisionObserver>>,
    /// Free space of the state directory, when watched.
    pub disk: Option<DiskSpace>,
    /// Routine events dropped in the current low-disk episode.
    pub low_disk_dropped: Option<u64>,
    /// The latest urgent events' sequence numbers (see [`DaemonView::urgent`]).
    pub urgent: std::collections::VecDeque<u64>,
    /// Duress alarms journaled since the start.
    pub duress_total: u64,
    /// Reader upkeep, which follows the PDs' sessions, keys and file
    /// transfers (a copy of those reports only; never a card or input).
    pub upkeep: Option<mpsc::Sender<super::upkeep::UpkeepMessage>>,
}

impl Daemon {
    /// A daemon on the journal (and standing state) in `dir` (tests,
    /// benches and the demo): the core starts from the standing state last
    /// committed there. The journal's reader comes back beside it (its
    /// acker is not used: nothing here acknowledges events).
    pub fn open(
        dir: &std::path::Path,
        building: crate::site::Building,
        rules: Box<dyn crate::site::Rules>,
        buses: Vec<BusLink>,
    ) -> Result<(Self, JournalReader), DaemonError> {
        let Journal {
            writer,
            reader,
            state,
            state_changes,
            ..
        } = Journal::open(dir)?;
        let restored = StandingBook::load(state.as_deref(), &state_changes, None)?;
        let daemon = Self {
            gateway: Gateway::new(building, rules, restored, now()),
            journal: writer,
            buses,
            observer: None,
            disk: None,
            low_disk_dropped: None,
            urgent: std::collections::VecDeque::new(),
            duress_total: 0,
            upkeep: None,
        };
        Ok((daemon, reader))
    }

    /// Copy a PD's session, key or transfer report to reader upkeep. Never
    /// waits: a full queue drops the copy (upkeep then times out a job)
    /// rather than hold up a door.
    /// Progress (one report per fragment) goes only while the queue is
    /// less than half full, so the reports that end a job find room.
    fn tell_upkeep(&self, bus: &BusId, event: &BusEvent) {
        let Some(upkeep) = &self.upkeep else {
            return;
        };
        if !event.concerns_upkeep()
            || (matches!(event, BusEvent::TransferProgress { .. })
                && upkeep.capacity() < super::upkeep::QUEUE / 2)
        {
            return;
        }
        let report = super::upkeep::UpkeepMessage::Bus(bus.clone(), event.clone());
        if let Err(mpsc::error::TrySendError::Full(_)) = upkeep.try_send(report) {
            tracing::warn!(bus = %bus, "reader upkeep busy: a PD report was not passed on");
        }
    }
}

/// Both clocks, from the one read point.
pub fn now() -> Now {
    let mono = clock::monotonic();
    Now {
        mono,
        system: wall_now(),
        boot: clock::boot().map(|b| crate::site::Boot {
            id: b.id,
            since: b.since_boot + mono.saturating_duration_since(b.at),
        }),
    }
}

/// Run until shutdown. The core's first outputs (every door locked, then
/// the restored state) are carried out before any input is read.
pub async fn run(
    mut daemon: Daemon,
    mut inputs: DaemonInputs,
    view: watch::Sender<DaemonView>,
) -> Result<(), DaemonError> {
    let links: HashMap<BusId, mpsc::Sender<BusRequest>> = std::mem::take(&mut daemon.buses)
        .into_iter()
        .map(|b| (b.name, b.requests))
        .collect();
    let mut waiting: HashMap<Ticket, oneshot::Sender<Result<(), RemoteError>>> = HashMap::new();
    let mut next_ticket: Ticket = 0;
    let mut control_open = true;
    let mut events_open = true;
    let shutdown = inputs.shutdown.clone();
    loop {
        daemon.carry_out(&links, &mut waiting, &shutdown).await?;
        daemon.publish(&view);
        let deadline = daemon
            .gateway
            .poll_timeout()
            .unwrap_or_else(|| clock::monotonic() + MAX_IDLE)
            .min(clock::monotonic() + MAX_IDLE);
        let input = tokio::select! {
            // Every bus task gone (or none configured): keep serving control
            // requests; a dead bus task stops the watchdog pings instead.
            event = inputs.events.recv(), if events_open => match event {
                Some((bus, event)) => {
                    daemon.tell_upkeep(&bus, &event);
                    Input::Bus { bus, event }
                }
                None => { events_open = false; continue; }
            },
            control = inputs.control.recv(), if control_open => match control {
                Some(c) => match daemon_input(c, &mut waiting, &mut next_ticket, &mut daemon.gateway) {
                    Some(input) => input,
                    None => continue,
                },
                None => { control_open = false; continue; }
            },
            () = tokio::time::sleep_until(deadline.into()) => Input::Timeout,
            changed = inputs.shutdown.changed() => {
                if changed.is_err() || *inputs.shutdown.borrow() { return Ok(()); }
                continue;
            }
        };
        daemon.gateway.handle(now(), input);
    }
}

fn daemon_input(
    control: Control,
    waiting: &mut HashMap<Ticket, oneshot::Sender<Result<(), RemoteError>>>,
    next_ticket: &mut Ticket,
    gateway: &mut Gateway,
) -> Option<Input> {
    Some(match control {
        Control::Remote {
            source,
            command,
            action,
            reply,
        } => {
            *next_ticket += 1;
            if let Some(reply) = reply {
                waiting.insert(*next_ticket, reply);
            }
            tracing::info!(source, action = action.name(), "remote action");
            Input::Remote {
                ticket: *next_ticket,
                source,
                command,
                action,
            }
        }
        Control::RulesChanged => Input::RulesChanged,
        Control::Record(kinds) => Input::Record(kinds),
        Control::SetFeedback(table) => Input::SetFeedback(table),
        Control::TrustedTime(t) => Input::SignedTime(t),
        Control::Beacon { at, came } => Input::Beacon { at, came },
        Control::ConfirmTime { by } => Input::ConfirmTime { by },
        Control::Presence(reply) => {
            let _ = reply.send(gateway.presence().clone());
            return None;
        }
        Control::Muster { area, reply } => {
            let _ = reply.send(gateway.muster(area.as_deref()));
            return None;
        }
        Control::Why {
            door,
            presented,
            at,
            reply,
        } => {
            let verdict = gateway.decide(&door, &presented, at);
            let detail = (verdict.deny_reason() == Some(crate::rules::DenyReason::Antipassback))
                .then(|| gateway.antipassback_why(&door, &presented))
                .flatten();
            let _ = reply.send((verdict, detail));
            return None;
        }
    })
}

impl Daemon {
    /// Carry out the core's outputs in order.
    async fn carry_out(
        &mut self,
        links: &HashMap<BusId, mpsc::Sender<BusRequest>>,
        waiting: &mut HashMap<Ticket, oneshot::Sender<Result<(), RemoteError>>>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), DaemonError> {
        while let Some(output) = self.gateway.poll_output() {
            match output {
                Output::Commit(commit) => self.commit(commit)?,
                Output::Command { pd, command } => {
                    let Some(link) = links.get(&pd.bus) else {
                        tracing::error!(bus = %pd.bus, address = pd.address, "command for an unknown bus dropped");
                        continue;
                    };
                    let request = BusRequest::Command {
                        address: pd.address,
                        command,
                        queued: None,
                    };
                    // Not awaited per command, but never dropped: a full queue
                    // waits for room, because a dropped lock could leave an
                    // open-ended release (a scheduled unlock) in force. Only a
                    // bus task that is gone loses the command.
                    if link.send(request).await.is_err() {
                        if *shutdown.borrow() {
                            tracing::debug!(bus = %pd.bus, "stopping; command not sent");
                        } else {
                            tracing::error!(bus = %pd.bus, address = pd.address, "bus task gone; command dropped");
                        }
                    }
                }
                Output::Reply { ticket, result } => {
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, "remote action refused");
                    }
                    if let Some(reply) = waiting.remove(&ticket) {
                        let _ = reply.send(result);
                    }
                }
                Output::Decided { deny, .. } => {
                    if let Some(observer) = &self.observer {
                        observer.decided(deny);
                    }
                }
            }
        }
        Ok(())
    }

    /// The standing state and the records, one flush. Below the disk
    /// reserve, routine records are dropped and counted; alarms use it.
    fn commit(&mut self, mut commit: Commit) -> Result<(), DaemonError> {
        self.guard_disk(&mut commit.records);
        let state = match commit.state {
            Some(change) => Some(StandingBook::write(
                change,
                || self.gateway.standing(),
                &self.journal,
            )?),
            None => None,
        };
        let appended = self
            .journal
            .commit_state(commit.at, commit.records, state)?;
        appended.iter().for_each(log_event);
        for e in appended.iter().filter(|e| e.kind.is_urgent()) {
            if matches!(e.kind, EventKind::Duress { .. }) {
                self.duress_total += 1;
            }
            if self.urgent.len() == URGENT_KEPT {
                self.urgent.pop_front();
            }
            self.urgent.push_back(e.seq);
        }
        Ok(())
    }

    fn guard_disk(&mut self, records: &mut Vec<EventKind>) {
        let Some(disk) = &mut self.disk else {
            return;
        };
        let now = clock::monotonic();
        if disk.low(now) {
            if self.low_disk_dropped.is_none() {
                let available = disk.available(now);
                tracing::error!(
                    available,
                    reserve = disk.reserve,
                    "disk full: routine events are dropped, alarms use the reserve; doors go on"
                );
                records.insert(
                    0,
                    EventKind::DiskFull {
                        available,
                        reserve: disk.reserve,
                    },
                );
            }
            let before = records.len();
            records.retain(EventKind::must_keep);
            let dropped = (before - records.len()) as u64;
            *self.low_disk_dropped.get_or_insert(0) += dropped;
        } else if let Some(dropped) = self.low_disk_dropped.take() {
            tracing::warn!(dropped, "disk space back above the reserve");
            records.insert(0, EventKind::DiskSpaceRecovered { dropped });
        }
    }

    fn publish(&self, view: &watch::Sender<DaemonView>) {
        view.send_replace(DaemonView {
            inside: self.gateway.presence().count(),
            time: {
                let r = self.gateway.reading();
                crate::status::TimeStatus {
                    trusted: r.trusted,
                    confirmed: r.confirmed(),
                    earliest: r.earliest,
                    latest: r.latest,
                }
            },
            last_seq: self.journal.next_seq().saturating_sub(1),
            doors: self.gateway.doors(),
            interlocks: self
                .gateway
                .interlocks()
                .into_iter()
                .map(|g| crate::status::InterlockStatus {
                    id: g.id,
                    doors: g.doors.into_iter().map(String::from).collect(),
                    busy: g.busy.into_iter().map(String::from).collect(),
                    waiting: g.waiting,
                })
                .collect(),
            trusted_time: Some(self.gateway.trusted_now()),
            published_at: Some(clock::monotonic()),
            urgent: self.urgent.iter().copied().collect(),
            duress_total: self.duress_total,
            fire_alarms: self.gateway.fire_alarms(),
        });
    }
}

/// One line per journaled event: what `portier demo` shows and what a
/// technician greps for. Structured fields go to journald as such.
fn log_event(event: &crate::event::Event) {
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
    clock::wall()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standing_state_round_trips_and_an_unknown_layout_is_refused() {
        let mut state = StandingState::default();
        state.lockdown.insert("lab".into());
        let bytes = StandingBook::encode(&state).unwrap();
        assert_eq!(StandingBook::load(Some(&bytes), &[], None).unwrap(), state);
        state.version = crate::site::standing::VERSION + 1;
        let bytes = serde_cbor::to_vec(&state).unwrap();
        let e = StandingBook::load(Some(&bytes), &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("newer Portier version"), "{e}");
        let e = StandingBook::load(Some(b"\xff"), &[], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unreadable"), "{e}");
    }

    #[test]
    fn an_upgrade_keeps_a_lockdown_written_by_the_sled_journal() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::storage::open_db(&dir.path().join("events"), 1 << 20).unwrap();
        let mut state = StandingState::default();
        state.lockdown.insert("lab".into());
        db.open_tree("standing")
            .unwrap()
            .insert(b"state", StandingBook::encode(&state).unwrap())
            .unwrap();
        let journal_dir = dir.path().join("journal");
        crate::journal::legacy::migrate(&db, &journal_dir, &mut |_| {}).unwrap();
        let journal = Journal::open(&journal_dir).unwrap();
        let restored =
            StandingBook::load(journal.state.as_deref(), &journal.state_changes, Some(&db))
                .unwrap();
        assert_eq!(restored, state);
    }
}
