//! The daemon loop: one task per bus (see [`super::serial`]), one loop that
//! owns the [`Building`] core, the rules (through a [`Decider`]) and the
//! [`Journal`]. It is the one place that turns the cores' actions into I/O:
//! OSDP commands to the bus tasks, journal appends, clock reads.
//!
//! Ordering guarantee: the journal records of one input are appended and
//! flushed before the commands of that input are sent, so no relay moves
//! for an event that is not on disk.

use std::collections::HashMap;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use super::clock;
use super::serial::BusRequest;
use crate::journal::{Journal, JournalError};
use crate::osdp::BusEvent;
use crate::osdp::message::RawCard;
use crate::site::{Building, BuildingAction, BuildingInput, PdRef, Verdict};

/// The rules engine as the daemon sees it: card at door → verdict.
pub trait Decider: Send {
    /// Decide for this raw card at this door, at wall-clock time `now`.
    fn decide(&mut self, door: &str, card: &RawCard, now: jiff::Timestamp) -> Verdict;
}

/// Daemon loop failures (each one stops the daemon: the doors stay locked).
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The journal could not be written: refusing to act without a record.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// A bus as the daemon loop sees it: where its commands go.
#[derive(Debug)]
pub struct BusLink {
    /// Bus name.
    pub name: String,
    /// Requests to that bus task.
    pub requests: mpsc::Sender<BusRequest>,
}

/// Run until `shutdown` turns true or every bus is gone.
pub async fn run(
    mut building: Building,
    mut decider: Box<dyn Decider>,
    mut journal: Journal,
    buses: Vec<BusLink>,
    mut events: mpsc::Receiver<(String, BusEvent)>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let links: HashMap<String, mpsc::Sender<BusRequest>> =
        buses.into_iter().map(|b| (b.name, b.requests)).collect();
    building.lock_all();
    drain(&mut building, &mut *decider, &mut journal, &links).await?;
    loop {
        let sleep = match building.poll_timeout() {
            Some(deadline) => tokio::time::sleep_until(deadline.into()),
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            event = events.recv() => match event {
                Some((bus, event)) => building.handle(clock::monotonic(), BuildingInput::Bus { bus, event }),
                None => return Ok(()),
            },
            () = sleep => building.handle_timeout(clock::monotonic()),
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() { return Ok(()); }
            }
        }
        drain(&mut building, &mut *decider, &mut journal, &links).await?;
    }
}

/// Process the building's actions until there are none: decisions feed
/// back as verdicts; records are appended (flushed) before commands go out.
async fn drain(
    building: &mut Building,
    decider: &mut dyn Decider,
    journal: &mut Journal,
    links: &HashMap<String, mpsc::Sender<BusRequest>>,
) -> Result<(), DaemonError> {
    loop {
        let mut records = Vec::new();
        let mut commands = Vec::new();
        while let Some(action) = building.poll_action() {
            match action {
                BuildingAction::Decide {
                    door, reader, card, ..
                } => {
                    let verdict = decider.decide(&door, &card, wall_now());
                    building.handle(
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
            }
        }
        if records.is_empty() && commands.is_empty() {
            return Ok(());
        }
        if !records.is_empty() {
            journal.append(wall_now(), records)?;
        }
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
            // An offline PD refuses commands; that is already an event.
            if let Ok(Err(err)) = result.await {
                tracing::warn!(bus, address, %err, "command not queued");
            }
        }
    }
}

fn wall_now() -> jiff::Timestamp {
    let since = clock::since_epoch();
    // The clock read point returns a Duration since the epoch; it fits.
    jiff::Timestamp::from_nanosecond(since.as_nanos() as i128)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}
