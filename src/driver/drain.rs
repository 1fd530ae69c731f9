//! Delivering a journal that was moved aside (`portier journal drain`).
//!
//! Why: the documented recovery from a journal that cannot be opened
//! (damaged newest commits), a replaced gateway with the same id or a new
//! SD card all leave the gateway writing a new journal, numbered from 1
//! again, while the old one may still hold events central never got.
//! Journals have ids ([`JournalId`]), central stores by
//! `(gateway, journal, seq)`, so the old journal can be sent beside the
//! new one at any time, by the same uplink code: its batches name its own
//! journal, central acks them naming it, and the running daemon ignores
//! those acks (and the drain the daemon's).
//!
//! The drain connects with the gateway's `[uplink]` config but its own
//! MQTT client id, `<gateway>-drain-<first 8 hex digits of the journal
//! id>` (the broker would otherwise disconnect the daemon), with a clean
//! session and no last will, subscribes to `ack` only and publishes no
//! status (the gateway's retained status is the daemon's). Events are
//! deleted from the moved journal as central acknowledges them, as in the
//! daemon, so a drain interrupted goes on where it stopped.

use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::journal::{Journal, JournalError, JournalId};
use crate::uplink::UplinkConfig;
use crate::uplink::wire::Status;

use super::uplink::{Role, UplinkError, UplinkHandles, UplinkState, link_as};

/// Why a drain did not finish.
#[derive(Debug, Error)]
pub enum DrainError {
    /// The moved journal cannot be opened.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The uplink cannot work (certificates, keys) or ended.
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    /// Central did not acknowledge everything in time.
    #[error(
        "journal {journal}: {backlog} event(s) still unacknowledged after {waited_s} s \
         (central acknowledged up to {acked}; connected: {connected}{error}). Is `portier central` \
         running (and of a version that stores journals)? Run the drain again to go on"
    )]
    Timeout {
        /// The journal.
        journal: JournalId,
        /// Events left.
        backlog: u64,
        /// What central acknowledged.
        acked: u64,
        /// How long it waited, seconds.
        waited_s: u64,
        /// Whether the broker connection was up at the end.
        connected: bool,
        /// The last connection error, as `; last error: …`.
        error: String,
    },
    /// The link task ended without an error (shut down from outside).
    #[error("the drain's uplink stopped before everything was acknowledged")]
    Stopped,
    /// The link task panicked (a bug).
    #[error("the drain's uplink task failed: {0}")]
    Panicked(String),
}

/// What a finished drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// The journal drained.
    pub journal: JournalId,
    /// Events that were waiting when it started (all acknowledged now).
    pub events: u64,
    /// The highest sequence number central acknowledged.
    pub acked: u64,
}

/// The MQTT client id of a drain of `journal` for `gateway`.
pub fn client_id(gateway: &str, journal: JournalId) -> String {
    format!("{gateway}-drain-{}", journal.short())
}

/// Send every unacknowledged event of `journal` (opened with
/// [`Journal::open_to_drain`]) to central as `gateway`, under the
/// journal's own id, until central acknowledged all of them or `timeout`
/// passed. `progress` hears the link's state whenever it changes.
pub async fn drain_journal(
    cfg: UplinkConfig,
    gateway: &str,
    journal: Journal,
    timeout: Duration,
    mut progress: impl FnMut(&UplinkState),
) -> Result<Drained, DrainError> {
    let Journal { reader, acker, .. } = journal;
    let id = reader.id();
    let events = reader.len();
    if events == 0 {
        return Ok(Drained {
            journal: id,
            events,
            acked: reader.acked(),
        });
    }
    super::uplink::tls_config(&cfg)?;
    let (_appended_tx, appended) = watch::channel(reader.next_seq().saturating_sub(1));
    let (_status_tx, status) = watch::channel(Status {
        gateway: gateway.to_owned(),
        ..Status::default()
    });
    // Not subscribed to rules or commands: nothing arrives on these.
    let (rules, _) = mpsc::unbounded_channel();
    let (commands, _) = mpsc::unbounded_channel();
    let (alarms, mut alarms_rx) = mpsc::unbounded_channel();
    let (state_tx, mut state) = watch::channel(UplinkState::default());
    let (shutdown_tx, shutdown) = watch::channel(false);
    let mut handles = UplinkHandles {
        journal: reader,
        acker,
        appended,
        // A drain sends a journal moved aside: in order, nothing ahead.
        urgent: watch::channel(Vec::new()).1,
        status,
        rules,
        commands,
        alarms,
        state: state_tx,
        shutdown,
    };
    let role = Role::Drain {
        client_id: client_id(gateway, id),
    };
    let gw = gateway.to_owned();
    let mut task = tokio::spawn(async move { link_as(&cfg, &gw, &role, &mut handles).await });
    let deadline = crate::clock::timer() + timeout;
    let stop = |task: tokio::task::JoinHandle<_>| async move {
        let _ = shutdown_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    };
    loop {
        tokio::select! {
            changed = state.changed() => {
                if changed.is_err() {
                    return Err(DrainError::Stopped);
                }
                let s = state.borrow_and_update().clone();
                progress(&s);
                if s.backlog == 0 {
                    stop(task).await;
                    return Ok(Drained { journal: id, events, acked: s.acked });
                }
            }
            Some(alarm) = alarms_rx.recv() => {
                // The drain has no journal to write them to (the moved
                // one is being emptied): they are logged.
                tracing::warn!(?alarm, "journal drain: alarm");
            }
            ended = &mut task => {
                return Err(match ended {
                    Ok(Err(e)) => e.into(),
                    Ok(Ok(())) => DrainError::Stopped,
                    Err(e) => DrainError::Panicked(e.to_string()),
                });
            }
            () = tokio::time::sleep_until(deadline) => {
                let s = state.borrow().clone();
                stop(task).await;
                return Err(DrainError::Timeout {
                    journal: id,
                    backlog: s.backlog,
                    acked: s.acked,
                    waited_s: timeout.as_secs(),
                    connected: s.connected,
                    error: s.last_error.map(|e| format!("; last error: {e}")).unwrap_or_default(),
                });
            }
        }
    }
}
