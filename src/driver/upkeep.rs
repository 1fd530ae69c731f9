//! The reader upkeep task: the thin driver of [`crate::upkeep`]. It takes
//! verified reader commands and firmware files from the uplink and the
//! buses' session/key/transfer reports from the daemon loop, and carries
//! out the core's outputs: requests to the bus tasks, the key files'
//! steps ([`KeyFiles`]), events into the journal (through the daemon
//! loop, like every other record).
//!
//! A new key is made here, from the OS's entropy, and written as the key
//! file's next version before the bus sees it; it never appears in a log,
//! an event or a message.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};

use super::daemon::{Control, DaemonView};
use super::key_files::KeyFiles;
use super::serial::BusRequest;
use crate::action::ReaderAction;
use crate::clock;
use crate::event::{EventKind, UpkeepFailure};
use crate::ids::{BusId, ReaderId};
use crate::osdp::BusEvent;
use crate::osdp::secure::Scbk;
use crate::upkeep::{Input, KeyStep, Output, ReaderPlace, Upkeep};

/// What the upkeep task is sent.
#[derive(Debug)]
pub enum UpkeepMessage {
    /// A verified reader command from central.
    Command {
        /// Its id.
        id: String,
        /// Its expiry.
        expires_at: Timestamp,
        /// What to do.
        action: ReaderAction,
    },
    /// A file from the firmware topic.
    File {
        /// The command it names.
        command: String,
        /// Its bytes.
        data: Arc<[u8]>,
    },
    /// A bus's report about a PD's life ([`BusEvent::concerns_upkeep`]).
    Bus(BusId, BusEvent),
}

/// Reports the daemon loop may queue before it drops one (with a
/// warning): a job then waits for its deadline instead of the loop
/// waiting for upkeep.
pub const QUEUE: usize = 256;

/// What the task is wired to.
pub struct UpkeepWiring {
    /// Every PD by name: where it is and its key file.
    pub places: Vec<(ReaderId, ReaderPlace, Option<PathBuf>)>,
    /// Each bus's requests.
    pub buses: HashMap<BusId, mpsc::Sender<BusRequest>>,
    /// The daemon loop (records).
    pub control: mpsc::Sender<Control>,
    /// The daemon's view, for the trusted time a command expires by.
    pub view: watch::Receiver<DaemonView>,
    /// Largest file taken, bytes.
    pub max_file: usize,
    /// Where reader-update jobs are kept over a restart
    /// (`<state_dir>/upkeep`).
    pub dir: PathBuf,
    /// Ends the task.
    pub shutdown: watch::Receiver<bool>,
}

/// Start the task; what it is sent goes through the returned sender.
pub fn start_upkeep(wiring: UpkeepWiring) -> mpsc::Sender<UpkeepMessage> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(wiring, rx));
    tx
}

/// A request the core asked for failed on its way (from a helper task).
type Failure = (ReaderId, UpkeepFailure, String);

async fn run(wiring: UpkeepWiring, mut inbox: mpsc::Receiver<UpkeepMessage>) {
    let key_files: HashMap<ReaderId, KeyFiles> = wiring
        .places
        .iter()
        .filter_map(|(r, _, k)| k.as_ref().map(|k| (r.clone(), KeyFiles::new(k))))
        .collect();
    let places = wiring.places.into_iter().map(|(r, p, _)| (r, p)).collect();
    let mut core = Upkeep::new(places, wiring.max_file);
    let mut driver = Driver {
        buses: wiring.buses,
        key_files,
        control: wiring.control,
        failures: mpsc::unbounded_channel(),
        kept: Kept { dir: wiring.dir },
        last_file: None,
    };
    // Updates a restart cut short start again (from byte 0) once their
    // reader is online; the buses report only after this.
    for message in driver.kept.load(wiring.view.borrow().trusted_now()) {
        core.handle(clock::monotonic(), to_input(message, &wiring.view));
    }
    let mut shutdown = wiring.shutdown;
    loop {
        driver.carry_out(&mut core).await;
        let deadline = core.poll_timeout();
        let input = tokio::select! {
            message = inbox.recv() => match message {
                Some(m) => {
                    driver.keep(&m);
                    to_input(m, &wiring.view)
                }
                None => return,
            },
            Some((reader, reason, detail)) = driver.failures.1.recv() => {
                Input::RequestFailed { reader, reason, detail }
            }
            () = sleep_until(deadline) => Input::Timeout,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
        };
        core.handle(clock::monotonic(), input);
    }
}

fn to_input(message: UpkeepMessage, view: &watch::Receiver<DaemonView>) -> Input {
    match message {
        UpkeepMessage::Command {
            id,
            expires_at,
            action,
        } => {
            let now = view.borrow().trusted_now();
            let left = expires_at.duration_since(now);
            Input::Command {
                id,
                valid_for: Duration::try_from(left).unwrap_or_default(),
                action,
            }
        }
        UpkeepMessage::File { command, data } => Input::File { command, data },
        UpkeepMessage::Bus(bus, event) => Input::Bus { bus, event },
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

struct Driver {
    buses: HashMap<BusId, mpsc::Sender<BusRequest>>,
    key_files: HashMap<ReaderId, KeyFiles>,
    control: mpsc::Sender<Control>,
    failures: (
        mpsc::UnboundedSender<Failure>,
        mpsc::UnboundedReceiver<Failure>,
    ),
    kept: Kept,
    /// The latest file, in case its command comes after it.
    last_file: Option<(String, Arc<[u8]>)>,
}

impl Driver {
    /// Keep a reader-update command, and its file once both are here, over
    /// a restart. A failure to write costs only the resume.
    fn keep(&mut self, message: &UpkeepMessage) {
        let kept = match message {
            UpkeepMessage::Command {
                id,
                expires_at,
                action: action @ ReaderAction::ReaderUpdate { .. },
            } => {
                let mut kept = self.kept.save_job(id, *expires_at, action);
                if let Some((file_for, data)) = &self.last_file
                    && file_for == id
                {
                    kept = kept.and_then(|()| self.kept.save_file(id, data));
                }
                kept
            }
            UpkeepMessage::File { command, data } => {
                self.last_file = Some((command.clone(), data.clone()));
                if self.kept.has_job(command) {
                    self.kept.save_file(command, data)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        };
        if let Err(e) = kept {
            tracing::warn!(error = %e, dir = %self.kept.dir.display(), "a reader update is not kept over a restart");
        }
    }

    async fn carry_out(&mut self, core: &mut Upkeep) {
        while let Some(output) = core.poll_output() {
            match output {
                Output::Record(event) => {
                    tracing::info!(event = %event.describe(), "reader upkeep");
                    if let EventKind::ReaderUpdateFinished {
                        command: Some(id), ..
                    }
                    | EventKind::ReaderUpdateFailed {
                        command: Some(id), ..
                    } = &event
                    {
                        self.kept.forget(id);
                    }
                    let _ = self.control.send(Control::Record(vec![event])).await;
                }
                Output::StartTransfer {
                    reader,
                    bus,
                    address,
                    offer,
                } => {
                    let (started, result) = oneshot::channel();
                    let request = BusRequest::StartTransfer {
                        address,
                        offer,
                        started,
                    };
                    self.ask_bus(reader, &bus, request, result, None).await;
                }
                Output::RotateKey {
                    reader,
                    bus,
                    address,
                } => self.rotate(reader, &bus, address).await,
                Output::KeyFile { reader, step } => self.key_step(&reader, step).await,
            }
        }
    }

    /// Send a request to a bus; a refusal comes back as a failure (after
    /// `undo`, for a rotation's written key).
    async fn ask_bus(
        &self,
        reader: ReaderId,
        bus: &BusId,
        request: BusRequest,
        result: oneshot::Receiver<Result<(), crate::osdp::BusError>>,
        undo: Option<KeyFiles>,
    ) {
        let failures = self.failures.0.clone();
        let Some(link) = self.buses.get(bus) else {
            let _ = failures.send((reader, UpkeepFailure::Bus, format!("no bus {bus}")));
            return;
        };
        if link.send(request).await.is_err() {
            let _ = failures.send((reader, UpkeepFailure::Bus, format!("bus {bus} stopped")));
            return;
        }
        tokio::spawn(async move {
            let refused = match result.await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "the bus stopped".to_owned(),
            };
            if let Some(files) = undo
                && let Err(e) = files.discard_next()
            {
                tracing::error!(error = %e, "the unused new key could not be removed");
            }
            let _ = failures.send((reader, UpkeepFailure::Bus, refused));
        });
    }

    /// Step 1 of a rotation here (a new key, on disk first), step 2 on the
    /// bus (KEYSET in the session); the core follows the rest.
    async fn rotate(&mut self, reader: ReaderId, bus: &BusId, address: u8) {
        let Some(files) = self.key_files.get(&reader).cloned() else {
            let detail = "the reader has no key file".to_owned();
            let _ = self
                .failures
                .0
                .send((reader, UpkeepFailure::NoSecureChannel, detail));
            return;
        };
        let mut key = [0u8; 16];
        clock::os_entropy(&mut key);
        let key = Scbk(key);
        let written = crate::config::check_configured_scbk(&key)
            .map_err(|e| e.to_string())
            .and_then(|()| files.write_next(&key).map_err(|e| e.to_string()));
        if let Err(e) = written {
            let _ = self.failures.0.send((reader, UpkeepFailure::KeyFile, e));
            return;
        }
        tracing::info!(reader = %reader, next = %files.next().display(), "key rotation: new key written, sending KEYSET in Secure Channel");
        let (started, result) = oneshot::channel();
        let request = BusRequest::RotateKey {
            address,
            key,
            started,
        };
        self.ask_bus(reader, bus, request, result, Some(files))
            .await;
    }

    async fn key_step(&self, reader: &ReaderId, step: KeyStep) {
        let Some(files) = self.key_files.get(reader) else {
            return;
        };
        let done = match step {
            KeyStep::Promote => files.promote(),
            KeyStep::Discard => files.discard_next(),
            KeyStep::Settle { pending } => files.settle(pending),
        };
        match done {
            Ok(()) => {
                tracing::info!(reader = %reader, ?step, key_file = %files.current().display(), "key files settled");
            }
            Err(e) => {
                // Both files stay: the bus tries both keys at the next
                // bring-up, so the reader stays reachable.
                tracing::error!(reader = %reader, ?step, error = %e, "key file step failed");
                let event = EventKind::ReaderKeyRotationFailed {
                    command: None,
                    reader: reader.clone(),
                    reason: UpkeepFailure::KeyFile,
                    detail: format!("{step:?}: {e}; both keys kept, the reader stays reachable"),
                };
                let _ = self.control.send(Control::Record(vec![event])).await;
            }
        }
    }
}

/// Reader-update jobs kept over a restart, in `dir`: `<hex id>.job` (the
/// command: id, expiry, action; CBOR) and `<hex id>.bin` (its file). Gone
/// once the job ends; an expired or unreadable one is removed at start.
struct Kept {
    dir: PathBuf,
}

/// A kept command.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptJob {
    id: String,
    expires_at: Timestamp,
    action: ReaderAction,
}

impl Kept {
    fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", hex::encode(id)))
    }

    fn has_job(&self, id: &str) -> bool {
        self.path(id, "job").exists()
    }

    fn save_job(
        &self,
        id: &str,
        expires_at: Timestamp,
        action: &ReaderAction,
    ) -> std::io::Result<()> {
        let job = KeptJob {
            id: id.to_owned(),
            expires_at,
            action: action.clone(),
        };
        let bytes = serde_cbor::to_vec(&job).map_err(std::io::Error::other)?;
        self.write(&self.path(id, "job"), &bytes)
    }

    fn save_file(&self, id: &str, data: &[u8]) -> std::io::Result<()> {
        self.write(&self.path(id, "bin"), data)
    }

    /// Whole or not at all: a temporary file, synced, renamed.
    fn write(&self, path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    fn forget(&self, id: &str) {
        for ext in ["job", "bin"] {
            let _ = std::fs::remove_file(self.path(id, ext));
        }
    }

    /// The kept jobs still valid at `now`, as messages (command, then its
    /// file when kept); everything else in the directory is removed.
    fn load(&self, now: Timestamp) -> Vec<UpkeepMessage> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut messages = Vec::new();
        let mut keep = std::collections::HashSet::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "job") {
                continue;
            }
            let job = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_cbor::from_slice::<KeptJob>(&b).ok())
                .filter(|j| j.expires_at > now && self.path(&j.id, "job") == path);
            let Some(job) = job else {
                continue;
            };
            tracing::info!(command = job.id, reader = %job.action.reader(), "a reader update cut short by a restart starts again");
            let file = std::fs::read(self.path(&job.id, "bin")).ok();
            keep.insert(self.path(&job.id, "job"));
            keep.insert(self.path(&job.id, "bin"));
            let id = job.id.clone();
            messages.push(UpkeepMessage::Command {
                id: job.id,
                expires_at: job.expires_at,
                action: job.action,
            });
            if let Some(data) = file {
                messages.push(UpkeepMessage::File {
                    command: id,
                    data: data.into(),
                });
            }
        }
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if !keep.contains(&entry.path()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        messages
    }
}
