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
    /// A bus's report about a PD's life ([`BusEvent::concerns_upkeep`]).
    Bus(BusId, BusEvent),
}

/// Reports and commands that may wait for the task before the daemon
/// loop drops a report (with a warning) and the uplink refuses a command
/// (`command_refused`): neither waits for upkeep.
pub const QUEUE: usize = 256;

/// Free space a kept firmware file must leave in the state directory
/// (the journal's, which alarms need).
const KEEP_FILE_MARGIN: u64 = 64 << 20;

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

/// Where the task is sent things: reports and commands on one queue,
/// files (up to 64 MiB each) one at a time on their own.
#[derive(Debug, Clone)]
pub struct UpkeepLink {
    /// Commands and PD reports ([`QUEUE`] deep).
    pub messages: mpsc::Sender<UpkeepMessage>,
    /// Firmware files: (command id, bytes), one waiting at most.
    pub files: mpsc::Sender<(String, Arc<[u8]>)>,
}

/// Start the task.
pub fn start_upkeep(wiring: UpkeepWiring) -> UpkeepLink {
    let (messages, inbox) = mpsc::channel(QUEUE);
    let (files, file_inbox) = mpsc::channel(1);
    tokio::spawn(run(wiring, inbox, file_inbox));
    UpkeepLink { messages, files }
}

/// A request the core asked for failed on its way (from a helper task):
/// the reader, why, in words, and the request's generation.
type Failure = (ReaderId, UpkeepFailure, String, u64);

async fn run(
    wiring: UpkeepWiring,
    mut inbox: mpsc::Receiver<UpkeepMessage>,
    mut file_inbox: mpsc::Receiver<(String, Arc<[u8]>)>,
) {
    let key_files: HashMap<ReaderId, KeyFiles> = wiring
        .places
        .iter()
        .filter_map(|(r, _, k)| k.as_ref().map(|k| (r.clone(), KeyFiles::new(k))))
        .collect();
    let shared_keys = shared_key_files(&wiring.places);
    let places = wiring.places.into_iter().map(|(r, p, _)| (r, p)).collect();
    let mut core = Upkeep::new(places, wiring.max_file);
    let mut driver = Driver {
        buses: wiring.buses,
        key_files,
        control: wiring.control,
        failures: mpsc::unbounded_channel(),
        kept: Arc::new(Kept { dir: wiring.dir }),
        shared_keys,
        view: wiring.view.clone(),
    };
    // Updates a restart cut short start again (from byte 0) once their
    // reader is online; the buses report only after this.
    let kept = driver.kept.clone();
    let now = wiring.view.borrow().trusted_now();
    let resumed = tokio::task::spawn_blocking(move || kept.load(now))
        .await
        .unwrap_or_default();
    for resume in resumed {
        match resume {
            Resumed::Job(input) => core.handle(clock::monotonic(), input),
            Resumed::Lost(event) => {
                let _ = driver.control.send(Control::Record(vec![event])).await;
            }
        }
    }
    let mut shutdown = wiring.shutdown;
    loop {
        driver.carry_out(&mut core).await;
        let deadline = core.poll_timeout();
        let input = tokio::select! {
            message = inbox.recv() => match message {
                Some(m) => {
                    driver.keep_job(&m).await;
                    to_input(m, &wiring.view)
                }
                None => return,
            },
            Some((command, data)) = file_inbox.recv() => {
                // Hashing megabytes is not for the runtime's threads.
                let file = tokio::task::spawn_blocking(move || {
                    core_file_input(command, data)
                })
                .await;
                match file {
                    Ok(input) => input,
                    Err(_) => continue,
                }
            }
            Some((reader, reason, detail, generation)) = driver.failures.1.recv() => {
                Input::RequestFailed { reader, reason, detail, generation }
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

/// A file as the core takes it, its digest computed beforehand (the
/// core's check then costs a comparison, see [`Input::File`]).
fn core_file_input(command: String, data: Arc<[u8]>) -> Input {
    let digest = crate::action::FileDigest::of(&data);
    Input::File {
        command,
        data,
        digest,
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
    kept: Arc<Kept>,
    /// Readers whose key file another PD uses too: a rotation would lock
    /// the other one out at the next start.
    shared_keys: std::collections::HashSet<ReaderId>,
    /// The daemon's view: when a record is in the journal.
    view: watch::Receiver<DaemonView>,
}

/// A request the core made: whose, and in which of the reader's online
/// periods (given back with a refusal).
struct Asked {
    reader: ReaderId,
    generation: u64,
}

impl Asked {
    fn failed(self, to: &mpsc::UnboundedSender<Failure>, reason: UpkeepFailure, detail: String) {
        let _ = to.send((self.reader, reason, detail, self.generation));
    }
}

/// The readers whose key file (by its canonical path) is another PD's too.
fn shared_key_files(
    places: &[(ReaderId, ReaderPlace, Option<PathBuf>)],
) -> std::collections::HashSet<ReaderId> {
    let mut by_path: HashMap<PathBuf, Vec<ReaderId>> = HashMap::new();
    for (reader, _, key) in places {
        if let Some(key) = key {
            let path = std::fs::canonicalize(key).unwrap_or_else(|_| key.clone());
            by_path.entry(path).or_default().push(reader.clone());
        }
    }
    by_path
        .into_values()
        .filter(|readers| readers.len() > 1)
        .flatten()
        .collect()
}

impl Driver {
    /// Keep a reader command over a restart (an update's file once the
    /// core took it, [`Output::KeepFile`]; a rotation only so that its
    /// end is said after a restart). A failure costs only the resume.
    async fn keep_job(&self, message: &UpkeepMessage) {
        let UpkeepMessage::Command {
            id,
            expires_at,
            action,
        } = message
        else {
            return;
        };
        let kept = self.kept.clone();
        let (id, expires_at, action) = (id.clone(), *expires_at, action.clone());
        let saved =
            tokio::task::spawn_blocking(move || kept.save_job(&id, expires_at, &action)).await;
        if let Ok(Err(e)) = saved {
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
                    }
                    | EventKind::ReaderKeyRotated {
                        command: Some(id), ..
                    }
                    | EventKind::ReaderKeyRotationFailed {
                        command: Some(id), ..
                    } = &event
                    {
                        let (kept, id) = (self.kept.clone(), id.clone());
                        let _ = tokio::task::spawn_blocking(move || kept.forget(&id)).await;
                    }
                    let journaled_first =
                        matches!(event, EventKind::ReaderKeyRotationStarted { .. });
                    let before = self.view.borrow().last_seq;
                    let _ = self.control.send(Control::Record(vec![event])).await;
                    if journaled_first {
                        // In the journal before a key is written: a crash
                        // in the rotation is then seen as one by central.
                        let mut view = self.view.clone();
                        let _ = tokio::time::timeout(
                            Duration::from_secs(2),
                            view.wait_for(|v| v.last_seq > before),
                        )
                        .await;
                    }
                }
                Output::StartTransfer {
                    reader,
                    bus,
                    address,
                    offer,
                    generation,
                } => {
                    let (started, result) = oneshot::channel();
                    let request = BusRequest::StartTransfer {
                        address,
                        offer,
                        started,
                    };
                    let asked = Asked { reader, generation };
                    self.ask_bus(asked, &bus, request, result, None).await;
                }
                Output::AbortTransfer { bus, address } => {
                    if let Some(link) = self.buses.get(&bus) {
                        let _ = link.send(BusRequest::AbortTransfer { address }).await;
                    }
                }
                Output::KeepFile { command, data } => self.keep_file(command, data).await,
                Output::RotateKey {
                    reader,
                    bus,
                    address,
                    generation,
                } => {
                    self.rotate(Asked { reader, generation }, &bus, address)
                        .await
                }
                Output::KeyFile { reader, step } => self.key_step(&reader, step).await,
            }
        }
    }

    /// Keep an accepted file beside its job, if the state directory has
    /// room for it and the journal's margin. Waited for: a job that ends
    /// at once must not find its file written after it was forgotten.
    async fn keep_file(&self, command: String, data: Arc<[u8]>) {
        let kept = self.kept.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let room = super::disk::available_bytes(kept.dir.parent().unwrap_or(&kept.dir))
                .is_ok_and(|free| free > data.len() as u64 + KEEP_FILE_MARGIN);
            let saved = if room {
                kept.save_file(&command, &data)
            } else {
                Err(std::io::Error::other("too little free space"))
            };
            if let Err(e) = saved {
                tracing::warn!(error = %e, command, "a reader update's file is not kept over a restart");
            }
        })
        .await;
    }

    /// Send a request to a bus; a refusal comes back as a failure (after
    /// `undo`, for a rotation's written key). A PD that dropped out just
    /// before is `reader_offline`: the core waits for it again.
    async fn ask_bus(
        &self,
        asked: Asked,
        bus: &BusId,
        request: BusRequest,
        result: oneshot::Receiver<Result<(), crate::osdp::BusError>>,
        undo: Option<KeyFiles>,
    ) {
        let failures = self.failures.0.clone();
        let Some(link) = self.buses.get(bus) else {
            asked.failed(&failures, UpkeepFailure::Bus, format!("no bus {bus}"));
            return;
        };
        if link.send(request).await.is_err() {
            asked.failed(&failures, UpkeepFailure::Bus, format!("bus {bus} stopped"));
            return;
        }
        tokio::spawn(async move {
            let (reason, refused) = match result.await {
                Ok(Ok(())) => return,
                Ok(Err(
                    e @ (crate::osdp::BusError::Offline(_) | crate::osdp::BusError::NotSecure(_)),
                )) => (UpkeepFailure::ReaderOffline, e.to_string()),
                Ok(Err(e)) => (UpkeepFailure::Bus, e.to_string()),
                Err(_) => (UpkeepFailure::Bus, "the bus stopped".to_owned()),
            };
            if let Some(files) = undo
                && let Err(e) = files.discard_next()
            {
                tracing::error!(error = %e, "the unused new key could not be removed");
            }
            asked.failed(&failures, reason, refused);
        });
    }

    /// Step 1 of a rotation here (a new key, on disk first), step 2 on the
    /// bus (KEYSET in the session); the core follows the rest. Refused
    /// while an earlier rotation is unsettled: its `F.next` may be the
    /// only copy of the reader's key.
    async fn rotate(&mut self, asked: Asked, bus: &BusId, address: u8) {
        let failures = self.failures.0.clone();
        let Some(files) = self.key_files.get(&asked.reader).cloned() else {
            let detail = "the reader has no key file".to_owned();
            asked.failed(&failures, UpkeepFailure::NoSecureChannel, detail);
            return;
        };
        if self.shared_keys.contains(&asked.reader) {
            let detail = format!(
                "{} is another reader's key file too: rotating it would lock that reader out; give each reader its own key file",
                files.current().display()
            );
            asked.failed(&failures, UpkeepFailure::KeyFile, detail);
            return;
        }
        if files.next().exists() {
            let detail = format!(
                "{} exists: an earlier rotation is unsettled (it settles at the reader's next Secure Channel bring-up)",
                files.next().display()
            );
            asked.failed(&failures, UpkeepFailure::KeyFile, detail);
            return;
        }
        let mut key = [0u8; 16];
        clock::os_entropy(&mut key);
        let key = Scbk(key);
        let written = crate::config::check_configured_scbk(&key)
            .map_err(|e| e.to_string())
            .and_then(|()| files.write_next(&key).map_err(|e| e.to_string()));
        if let Err(e) = written {
            asked.failed(&failures, UpkeepFailure::KeyFile, e);
            return;
        }
        super::key_files::crash_point("next_written");
        tracing::info!(reader = %asked.reader, next = %files.next().display(), "key rotation: new key written, sending KEYSET in Secure Channel");
        let (started, result) = oneshot::channel();
        let request = BusRequest::RotateKey {
            address,
            key,
            started,
        };
        self.ask_bus(asked, bus, request, result, Some(files)).await;
    }

    async fn key_step(&self, reader: &ReaderId, step: KeyStep) {
        let Some(files) = self.key_files.get(reader) else {
            return;
        };
        let done = match step {
            KeyStep::Promote => {
                super::key_files::crash_point("new_session");
                files.promote()
            }
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
    /// A file name of any id: its SHA-256 (an id may hold `/`, and up to
    /// 128 bytes of it in hex would pass `NAME_MAX`).
    fn path(&self, id: &str) -> PathBuf {
        self.dir
            .join(crate::action::FileDigest::of(id.as_bytes()).to_string())
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
        self.write(&self.path(id).with_extension("job"), &bytes)
    }

    /// A resumed job's file is there already: not written again.
    fn save_file(&self, id: &str, data: &[u8]) -> std::io::Result<()> {
        let path = self.path(id).with_extension("bin");
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == data.len() as u64) {
            return Ok(());
        }
        self.write(&path, data)
    }

    /// Whole or not at all: a temporary file, synced, renamed.
    fn write(&self, path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    fn forget(&self, id: &str) {
        for ext in ["job", "bin"] {
            let _ = std::fs::remove_file(self.path(id).with_extension(ext));
        }
    }

    /// The kept jobs still valid at `now`, as the core's inputs (the
    /// command, then its file, hashed here, off the runtime), or as the
    /// failure of a job whose file was not kept; everything else in the
    /// directory is removed.
    fn load(&self, now: Timestamp) -> Vec<Resumed> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut resumed = Vec::new();
        let mut keep = std::collections::HashSet::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "job") {
                continue;
            }
            let job = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_cbor::from_slice::<KeptJob>(&b).ok())
                .filter(|j| j.expires_at > now && self.path(&j.id).with_extension("job") == path);
            let Some(job) = job else {
                continue;
            };
            let reader = job.action.reader().clone();
            let command = Some(job.id.clone());
            if let ReaderAction::RotateKey { .. } = job.action {
                // Not resumed: its key files settle at the reader's next
                // bring-up (`reader_key_rotated` without a command).
                resumed.push(Resumed::Lost(EventKind::ReaderKeyRotationFailed {
                    command,
                    reader,
                    reason: UpkeepFailure::ReaderLost,
                    detail: "the gateway restarted before the rotation ended: its key files \
                             settle at the reader's next bring-up; send the command again"
                        .into(),
                }));
                continue;
            }
            let Ok(data) = std::fs::read(self.path(&job.id).with_extension("bin")) else {
                resumed.push(Resumed::Lost(EventKind::ReaderUpdateFailed {
                    command,
                    reader,
                    reason: UpkeepFailure::FileNotReceived,
                    detail: "the gateway restarted before it had kept the file (it came \
                             too late, or there was too little free space): send the \
                             command again"
                        .into(),
                }));
                continue;
            };
            tracing::info!(command = job.id, reader = %job.action.reader(), "a reader update cut short by a restart starts again");
            keep.insert(self.path(&job.id).with_extension("job"));
            keep.insert(self.path(&job.id).with_extension("bin"));
            let valid_for =
                Duration::try_from(job.expires_at.duration_since(now)).unwrap_or_default();
            resumed.push(Resumed::Job(Input::Command {
                id: job.id.clone(),
                valid_for,
                action: job.action,
            }));
            resumed.push(Resumed::Job(core_file_input(job.id, data.into())));
        }
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if !keep.contains(&entry.path()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        resumed
    }
}

/// A kept job at start.
enum Resumed {
    /// Its inputs to the core.
    Job(Input),
    /// It cannot go on: this says why.
    Lost(EventKind),
}
