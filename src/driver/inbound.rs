//! What arrives from central and from technicians: signed rules (applied
//! beside running decisions) and signed commands (verified, remembered
//! against replay, handed to the daemon loop). Every outcome is journaled.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::daemon::{Control, DaemonView};
use super::upkeep::UpkeepMessage;
use super::uplink::{self, Delivered, Inbound, UplinkHandles, UplinkState};
use crate::action::CommandAction;
use crate::event::EventKind;
use crate::journal::{JournalAcker, JournalReader};
use crate::store::Store;
use crate::uplink::wire::{FirmwareFile, Status};

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
    now: jiff::Timestamp,
) -> Result<crate::store::Applied, ApplyError> {
    let result = tokio::task::spawn_blocking(move || match kind {
        RulesBlob::Snapshot => store.apply_snapshot(&bytes, now),
        RulesBlob::Delta => store.apply_delta(&bytes, now),
    })
    .await
    .map_err(ApplyError::Task)?
    .map_err(ApplyError::Refused);
    let record = match &result {
        Ok(a) => EventKind::RulesApplied { version: a.version },
        Err(e) => EventKind::RulesRefused {
            reason: e.to_string(),
        },
    };
    match &result {
        Ok(a) => tracing::info!(
            version = a.version,
            credentials = a.credentials,
            unchanged = a.unchanged,
            "rules applied"
        ),
        Err(e) => tracing::warn!(reason = %e, "rules refused"),
    }
    let _ = control.send(Control::Record(vec![record])).await;
    let _ = control.send(Control::RulesChanged).await;
    result
}

/// Why a rules blob was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The store refused it (signature, gateway, version, expiry, …).
    #[error(transparent)]
    Refused(crate::store::StoreError),
    /// The task applying it failed.
    #[error("apply task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// What the uplink and its inbound lanes are wired to.
pub(crate) struct UplinkWiring {
    /// This gateway's id (topics, and the target a command must name).
    pub gateway: String,
    /// Central's keys that signed rules and commands are checked against.
    pub keys: crate::rules::TrustedKeys,
    /// The seen-commands tree (replay protection; survives restarts).
    pub seen: sled::Tree,
    /// The journal's reader and acker (the uplink's half of the journal).
    pub journal: (JournalReader, JournalAcker),
    /// The rules store.
    pub store: Arc<Store>,
    /// The daemon loop.
    pub control: mpsc::Sender<Control>,
    /// The daemon's view (appended events, trusted time).
    pub view: watch::Receiver<DaemonView>,
    /// Ends everything.
    pub shutdown: watch::Receiver<bool>,
    /// The reader inventory for the `status` message.
    pub readers: watch::Receiver<Vec<crate::status::ReaderInventory>>,
    /// Reader upkeep: reader commands and firmware files go there.
    pub upkeep: super::upkeep::UpkeepLink,
}

/// Start the MQTT uplink and the tasks that act on what it receives: two
/// lanes, so a snapshot being applied never holds up a lockdown.
pub(crate) fn start_uplink(
    uplink: crate::uplink::UplinkConfig,
    wiring: UplinkWiring,
) -> watch::Receiver<UplinkState> {
    let UplinkWiring {
        gateway,
        keys,
        seen,
        journal: (journal, acker),
        store,
        control,
        view,
        shutdown,
        readers,
        upkeep,
    } = wiring;
    let trusted = view.clone();
    let mut view = view;
    let (appended_tx, appended) = watch::channel(0u64);
    let (urgent_tx, urgent) = watch::channel(Vec::new());
    tokio::spawn(async move {
        while view.changed().await.is_ok() {
            let (seq, latest) = {
                let v = view.borrow_and_update();
                (v.last_seq, v.urgent.clone())
            };
            urgent_tx.send_if_modified(|u| {
                let changed = *u != latest;
                *u = latest;
                changed
            });
            appended_tx.send_if_modified(|s| std::mem::replace(s, seq) != seq);
            if appended_tx.is_closed() {
                return;
            }
        }
    });
    let (status_tx, status) = watch::channel(Status {
        gateway: gateway.clone(),
        state: crate::uplink::wire::LinkState::Online,
        version: env!("CARGO_PKG_VERSION").into(),
        rules_version: store.version(),
        ..Status::default()
    });
    keep_readers_in_status(readers, status_tx.clone());
    let (rules_tx, rules) = mpsc::unbounded_channel();
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (alarms_tx, mut alarms) = mpsc::unbounded_channel();
    let (state, state_rx) = watch::channel(UplinkState::default());
    let handles = UplinkHandles {
        journal,
        acker,
        appended,
        urgent,
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
        keys,
        gateway,
        seen,
        status: status_tx,
        view: trusted,
        upkeep,
    };
    let actor = Arc::new(actor);
    tokio::spawn(actor.clone().run(rules));
    tokio::spawn(actor.run(commands));
    state_rx
}

/// Copy the reader inventory into the `status` message whenever it changes.
fn keep_readers_in_status(
    mut readers: watch::Receiver<Vec<crate::status::ReaderInventory>>,
    status: watch::Sender<Status>,
) {
    tokio::spawn(async move {
        loop {
            let current = readers.borrow_and_update().clone();
            status.send_modify(|s| s.readers = current);
            if readers.changed().await.is_err() || status.is_closed() {
                return;
            }
        }
    });
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
    /// Reader upkeep.
    upkeep: super::upkeep::UpkeepLink,
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
                Inbound::Firmware(bytes) => self.firmware(&bytes).await,
                Inbound::Time { bytes, live, came } => self.time(&bytes, live, came).await,
            }
            receipt.done().await;
        }
    }

    /// The core's trusted time (see `docs/rules.md`): a clock that went
    /// back must not make expired rules or commands valid, and one that
    /// jumped ahead must not refuse them as expired.
    fn now(&self) -> jiff::Timestamp {
        self.view.borrow().trusted_now()
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
            s.rules_refused = result.err().map(|e| e.to_string());
        });
    }

    /// A time beacon: a live one bounds "now" both ways, a retained copy
    /// (of unknown age) only from below. A refused one is journaled: a
    /// forged time is an attack on the doors.
    async fn time(&self, bytes: &[u8], live: bool, came: std::time::Instant) {
        let control = match crate::command::beacon::verify_beacon(bytes, &self.keys, &self.gateway)
        {
            Ok(at) if live => Control::Beacon { at, came },
            Ok(at) => Control::TrustedTime(at),
            Err(e) => {
                tracing::warn!(error = %e, "time beacon refused");
                Control::Record(vec![EventKind::TimeBeaconRefused {
                    reason: e.to_string(),
                }])
            }
        };
        let _ = self.control.send(control).await;
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
        let action = match command.action {
            CommandAction::Door(action) => action,
            CommandAction::Reader(action) => {
                let message = UpkeepMessage::Command {
                    id: command.id.clone(),
                    expires_at: command.expires_at,
                    action,
                };
                // Never waits: a door command may be next on this lane.
                if self.upkeep.messages.try_send(message).is_err() {
                    let record = EventKind::CommandRefused {
                        id: Some(command.id),
                        reason: "reader upkeep is busy: send the command again later".into(),
                    };
                    let _ = self.control.send(Control::Record(vec![record])).await;
                }
                return;
            }
        };
        let (reply, answer) = oneshot::channel();
        let sent = self
            .control
            .send(Control::Remote {
                source: "central".into(),
                command: Some(command.id.clone()),
                action,
                reply: Some(reply),
            })
            .await;
        if sent.is_ok() {
            let _ = answer.await;
        }
    }

    /// A firmware file: handed to upkeep, which holds it against the
    /// signed command's hash.
    async fn firmware(&self, bytes: &[u8]) {
        match serde_cbor::from_slice::<FirmwareFile>(bytes) {
            Ok(file) if (1..=crate::command::MAX_ID_BYTES).contains(&file.command.len()) => {
                // One file waits for upkeep at most; this (the rules and
                // files lane) waits meanwhile.
                let _ = self
                    .upkeep
                    .files
                    .send((file.command, file.data.into()))
                    .await;
            }
            // Its command, if any, ends `file_not_received` at its expiry.
            Ok(_) | Err(_) => {
                tracing::warn!(bytes = bytes.len(), "unreadable firmware message dropped");
            }
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
