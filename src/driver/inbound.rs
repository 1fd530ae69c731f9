//! What arrives from central and from technicians: signed rules (applied
//! beside running decisions) and signed commands (verified, remembered
//! against replay, handed to the daemon loop). Every outcome is journaled.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::daemon::{self, Control, DaemonView};
use super::uplink::{self, Inbound, UplinkHandles, UplinkState};
use crate::config::Config;
use crate::event::EventKind;
use crate::journal::Journal;
use crate::store::Store;
use crate::uplink::wire::Status;

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
) -> Result<crate::store::Applied, String> {
    let now = daemon::wall_now();
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
pub(crate) fn start_uplink(
    uplink: crate::uplink::UplinkConfig,
    config: &Config,
    events_db: &sled::Db,
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
    let (inbound_tx, inbound) = mpsc::channel(16);
    let (state, state_rx) = watch::channel(UplinkState::default());
    let handles = UplinkHandles {
        journal: Journal::open(events_db)?,
        appended,
        status,
        inbound: inbound_tx,
        state,
        shutdown,
    };
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
    tokio::spawn(actor.run(inbound));
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
    async fn run(self, mut inbound: mpsc::Receiver<Inbound>) {
        while let Some(message) = inbound.recv().await {
            match message {
                Inbound::Snapshot(bytes) => self.rules(RulesBlob::Snapshot, bytes).await,
                Inbound::Delta(bytes) => self.rules(RulesBlob::Delta, bytes).await,
                Inbound::Command(bytes) => self.command(&bytes).await,
            }
        }
    }

    async fn rules(&self, kind: RulesBlob, bytes: Vec<u8>) {
        let result = apply_rules(self.store.clone(), &self.control, kind, bytes).await;
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
        let system = daemon::wall_now();
        let now = self
            .view
            .borrow()
            .trusted_time
            .map_or(system, |t| t.max(system));
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
