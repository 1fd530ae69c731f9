//! Reader upkeep asked by central, sans-IO: firmware updates over OSDP
//! file transfer and Secure Channel key rotations of readers the running
//! gateway drives. Commands, files and the buses' reports go in with
//! `now`; requests to the buses, key-file steps and events come out
//! ([`Upkeep::poll_output`]), with the next deadline
//! ([`Upkeep::poll_timeout`]).
//!
//! Rules it keeps:
//! - one job at a time per bus (a transfer slows the bus's other polls;
//!   a rotation re-opens a session), a second is refused `busy`;
//! - not a byte of a file is sent unless its size and SHA-256 are the
//!   signed command's (the file itself travels unsigned, apart);
//! - a file may arrive before its command: one is held, for
//!   [`HELD_FILE_FOR`]; a command waits as long for its file;
//! - a job waits for its reader to be online until its command expires
//!   (a reader that drops out between its `Online` and the request is
//!   asked again once online; a refusal is matched to its request by the
//!   reader's online period, so a late one changes nothing); a reader lost mid-file gets it again from byte 0,
//!   at most [`ATTEMPTS`] times; a transfer or rotation that hears nothing
//!   for [`QUIET_LIMIT`] ends, so a lost report never blocks a bus;
//! - a command naming the reader's vendor or model is refused when the
//!   reader never said who it is;
//! - a key rotation retires the old key as soon as the reader proved the
//!   new one (its client cryptogram in the new session, `KeyResolved`);
//!   whatever happens, the key files keep a key the reader holds (the bus
//!   tries both while a rotation is unsettled, and the driver refuses a
//!   new rotation while one is).
//!
//! An accepted file goes out as [`Output::KeepFile`]: the driver keeps an
//! update over a gateway restart and gives it back as a command and a
//! file at start (the transfer starts again at byte 0).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::action::{FileDigest, ReaderAction};
use crate::event::{EventKind, UpkeepFailure};
use crate::ids::{BusId, ReaderId};
use crate::osdp::transfer::{FileOffer, TransferFailure};
use crate::osdp::{BusEvent, RotationFailure};

/// How long a file that came before its command is kept.
pub const HELD_FILE_FOR: Duration = Duration::from_secs(600);

/// How many times a file is started when its reader drops out mid-file.
pub const ATTEMPTS: u32 = 3;

/// A transfer with no progress, or a rotation with no answer, for this
/// long ends: past the bus core's own limits (its stall limit, its offline
/// timeout), so it fires only when a report was lost or a PD keeps a
/// transfer alive without progress (answering BUSY).
pub const QUIET_LIMIT: Duration = Duration::from_secs(180);

/// Where a reader is, as the gateway's config says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderPlace {
    /// Its bus.
    pub bus: BusId,
    /// Its OSDP address.
    pub address: u8,
    /// It has a key file (Secure Channel), so its key can be rotated.
    pub secure: bool,
}

/// What goes into the upkeep core.
#[derive(Debug)]
pub enum Input {
    /// A verified command from central.
    Command {
        /// Its id.
        id: String,
        /// How long until it expires, by the gateway's trusted time.
        valid_for: Duration,
        /// What to do.
        action: ReaderAction,
    },
    /// A file from central's firmware topic, for the command `command`.
    File {
        /// The command it says it belongs to (unsigned: only the hash in
        /// the command counts).
        command: String,
        /// Its bytes.
        data: Arc<[u8]>,
        /// Their SHA-256 (computed by the driver off the runtime's
        /// threads: megabytes).
        digest: FileDigest,
    },
    /// A bus's report about one of its PDs.
    Bus {
        /// The bus.
        bus: BusId,
        /// The report.
        event: BusEvent,
    },
    /// A request this core asked for failed before it reached the PD (the
    /// bus refused it, the key file could not be written). With reason
    /// `reader_offline` (the PD dropped out before the request reached it)
    /// the job waits for the reader again.
    RequestFailed {
        /// The reader.
        reader: ReaderId,
        /// Why.
        reason: UpkeepFailure,
        /// More, in words.
        detail: String,
        /// The request's [`Output`] generation: a refusal of an older
        /// request than the job's latest is ignored.
        generation: u64,
    },
    /// A deadline passed.
    Timeout,
}

/// A step on a reader's key files (the driver's `KeyFiles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStep {
    /// The new key in force, the old one retired.
    Promote,
    /// The new key dropped; the old one stays.
    Discard,
    /// A rotation left unsettled: keep the key the reader proved.
    Settle {
        /// The pending (new) key.
        pending: bool,
    },
}

/// What the driver carries out.
#[derive(Debug)]
pub enum Output {
    /// Send a file to a PD.
    StartTransfer {
        /// The reader.
        reader: ReaderId,
        /// Its bus.
        bus: BusId,
        /// Its address.
        address: u8,
        /// The file.
        offer: FileOffer,
        /// Which of the reader's online periods it was asked in (given
        /// back with a refusal).
        generation: u64,
    },
    /// Stop a transfer that went quiet.
    AbortTransfer {
        /// Its bus.
        bus: BusId,
        /// Its address.
        address: u8,
    },
    /// The file of `command` matched its hash: keep it over a restart.
    KeepFile {
        /// The command.
        command: String,
        /// The file.
        data: Arc<[u8]>,
    },
    /// Make a new key, write it as the key file's next version, then ask
    /// the bus to send it with KEYSET inside the session.
    RotateKey {
        /// The reader.
        reader: ReaderId,
        /// Its bus.
        bus: BusId,
        /// Its address.
        address: u8,
        /// As for [`Output::StartTransfer`].
        generation: u64,
    },
    /// A step on a reader's key files.
    KeyFile {
        /// The reader.
        reader: ReaderId,
        /// The step.
        step: KeyStep,
    },
    /// Journal this.
    Record(EventKind),
}

/// A firmware update's stage.
#[derive(Debug)]
enum UpdateStage {
    /// Waiting for the file.
    AwaitingFile,
    /// The file checked; waiting for the reader to be online.
    AwaitingOnline(Arc<[u8]>),
    /// Bytes moving.
    Sending {
        data: Arc<[u8]>,
        /// Tenths reported in this attempt.
        tenths: u64,
        /// The reader's online period it was started in.
        generation: u64,
    },
}

/// A key rotation's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RotateStage {
    /// Waiting for the reader to be online in Secure Channel.
    AwaitingOnline,
    /// KEYSET asked for (in the reader's online period `.0`); waiting for
    /// the reader to prove a key.
    Sent(u64),
}

#[derive(Debug)]
enum Work {
    Update {
        digest: FileDigest,
        bytes: u64,
        file_type: u8,
        vendor: Option<String>,
        model: Option<u8>,
        stage: UpdateStage,
        attempt: u32,
        started: Option<Instant>,
    },
    Rotate(RotateStage),
}

#[derive(Debug)]
struct Job {
    command: String,
    reader: ReaderId,
    /// The command's expiry.
    expires: Instant,
    /// When the job ends if nothing moves it: [`HELD_FILE_FOR`] for its
    /// file, the command's expiry for its reader, [`QUIET_LIMIT`] after
    /// the last sign of life while under way.
    deadline: Instant,
    work: Work,
}

/// What the core knows of a reader besides its place.
#[derive(Debug, Default)]
struct Seen {
    online: bool,
    /// Counts its `Online` reports: which online period a request was
    /// made in.
    generation: u64,
    secure: bool,
    vendor: Option<[u8; 3]>,
    model: Option<u8>,
}

/// The upkeep core.
#[derive(Debug)]
pub struct Upkeep {
    places: HashMap<ReaderId, ReaderPlace>,
    seen: HashMap<ReaderId, Seen>,
    /// At most one per bus.
    jobs: HashMap<BusId, Job>,
    /// A file that came before its command: (command, file, its digest,
    /// dropped at).
    held: Option<(String, Arc<[u8]>, FileDigest, Instant)>,
    max_file: usize,
    outputs: VecDeque<Output>,
}

impl Upkeep {
    /// The core for these readers; files over `max_file` bytes are
    /// refused.
    pub fn new(places: HashMap<ReaderId, ReaderPlace>, max_file: usize) -> Self {
        Self {
            places,
            seen: HashMap::new(),
            jobs: HashMap::new(),
            held: None,
            max_file,
            outputs: VecDeque::new(),
        }
    }

    /// Take one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Command {
                id,
                valid_for,
                action,
            } => self.command(now, id, valid_for, action),
            Input::File {
                command,
                data,
                digest,
            } => self.file(now, command, data, digest),
            Input::Bus { bus, event } => self.bus(now, &bus, event),
            Input::RequestFailed {
                reader,
                reason,
                detail,
                generation,
            } => self.request_failed(now, &reader, reason, detail, generation),
            Input::Timeout => self.timeout(now),
        }
    }

    /// The next thing to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Input::Timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let jobs = self.jobs.values().map(|j| j.deadline);
        jobs.chain(self.held.as_ref().map(|h| h.3)).min()
    }

    /// Whether a job runs on `bus` (tests, status).
    pub fn busy(&self, bus: &BusId) -> bool {
        self.jobs.contains_key(bus)
    }

    fn command(&mut self, now: Instant, id: String, valid_for: Duration, action: ReaderAction) {
        let reader = action.reader().clone();
        let Some(place) = self.places.get(&reader).cloned() else {
            let detail = format!("no reader {:?} in this gateway's config", reader.as_str());
            return self.refuse(&id, &action, UpkeepFailure::UnknownReader, detail);
        };
        if let Some(other) = self.jobs.get(&place.bus) {
            let detail = format!(
                "command {} for {} runs on bus {}: one at a time per bus",
                other.command, other.reader, place.bus
            );
            return self.refuse(&id, &action, UpkeepFailure::Busy, detail);
        }
        let expires = now + valid_for;
        let (work, deadline) = match action {
            ReaderAction::ReaderUpdate {
                sha256,
                bytes,
                file_type,
                vendor,
                model,
                ..
            } => {
                if let Some((why, detail)) = self.bad_update(bytes, vendor.as_deref()) {
                    return self.record_update_failed(&id, &reader, why, detail);
                }
                let work = Work::Update {
                    digest: sha256,
                    bytes,
                    file_type,
                    vendor,
                    model,
                    stage: UpdateStage::AwaitingFile,
                    attempt: 1,
                    started: None,
                };
                (work, expires.min(now + HELD_FILE_FOR))
            }
            ReaderAction::RotateKey { .. } => {
                if !place.secure {
                    let detail = "the reader has no key file (plaintext)".to_owned();
                    let why = UpkeepFailure::NoSecureChannel;
                    return self.record_rotation_failed(Some(&id), &reader, why, detail);
                }
                (Work::Rotate(RotateStage::AwaitingOnline), expires)
            }
        };
        let job = Job {
            command: id,
            reader,
            expires,
            deadline,
            work,
        };
        self.jobs.insert(place.bus.clone(), job);
        // A file that came first.
        if let Some((command, data, digest, until)) = self.held.take() {
            if self.job_for_command(&command).is_some() {
                self.file(now, command, data, digest);
            } else {
                self.held = Some((command, data, digest, until));
            }
        }
        self.advance(now, &place.bus);
    }

    /// Why an update command cannot be taken, if it cannot.
    fn bad_update(&self, bytes: u64, vendor: Option<&str>) -> Option<(UpkeepFailure, String)> {
        if bytes == 0 || bytes > self.max_file as u64 {
            let detail = format!("{bytes} bytes: 1..={} taken", self.max_file);
            return Some((UpkeepFailure::FileTooLarge, detail));
        }
        match vendor {
            Some(v) if v.len() != 6 || !v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                let v = crate::text::bounded(v, 16);
                let detail = format!("vendor {v:?}: 6 hex digits expected");
                Some((UpkeepFailure::WrongVendor, detail))
            }
            _ => None,
        }
    }

    fn refuse(&mut self, id: &str, action: &ReaderAction, reason: UpkeepFailure, detail: String) {
        let reader = action.reader();
        match action {
            ReaderAction::ReaderUpdate { .. } => {
                self.record_update_failed(id, reader, reason, detail);
            }
            ReaderAction::RotateKey { .. } => {
                self.record_rotation_failed(Some(id), reader, reason, detail);
            }
        }
    }

    fn job_for_command(&mut self, command: &str) -> Option<&mut Job> {
        self.jobs.values_mut().find(|j| j.command == command)
    }

    fn file(&mut self, now: Instant, command: String, data: Arc<[u8]>, actual: FileDigest) {
        let Some(job) = self.job_for_command(&command) else {
            // Before its command (or for one already over): held a while.
            self.held = Some((command, data, actual, now + HELD_FILE_FOR));
            return;
        };
        let Work::Update {
            digest,
            bytes,
            stage: stage @ UpdateStage::AwaitingFile,
            ..
        } = &mut job.work
        else {
            // A copy of a file already taken (QoS 1 delivers twice).
            return;
        };
        if data.len() as u64 != *bytes || actual != *digest {
            let detail = format!(
                "the file received is {} bytes with sha256 {actual}; the command says {bytes} bytes, {digest}: nothing sent",
                data.len()
            );
            let (reader, command) = (job.reader.clone(), job.command.clone());
            self.end_job(&reader);
            return self.record_update_failed(
                &command,
                &reader,
                UpkeepFailure::HashMismatch,
                detail,
            );
        }
        *stage = UpdateStage::AwaitingOnline(data.clone());
        job.deadline = job.expires;
        let (reader, command) = (job.reader.clone(), job.command.clone());
        self.outputs.push_back(Output::KeepFile { command, data });
        if let Some(bus) = self.places.get(&reader).map(|p| p.bus.clone()) {
            self.advance(now, &bus);
        }
    }

    fn bus(&mut self, now: Instant, bus: &BusId, event: BusEvent) {
        let address = event.address();
        let Some(reader) = self
            .places
            .iter()
            .find(|(_, p)| p.bus == *bus && p.address == address)
            .map(|(r, _)| r.clone())
        else {
            return;
        };
        let seen = self.seen.entry(reader.clone()).or_default();
        match &event {
            BusEvent::Online {
                secure, identity, ..
            } => {
                seen.online = true;
                seen.generation += 1;
                seen.secure = *secure;
                if let Some(id) = identity {
                    seen.vendor = Some(id.vendor);
                    seen.model = Some(id.model);
                }
            }
            // The bus says so before its `Offline`: the file waits for
            // the next `Online`, not for this report's turn.
            BusEvent::Offline { .. }
            | BusEvent::TransferFailed {
                reason: TransferFailure::Offline,
                ..
            } => seen.online = false,
            _ => {}
        }
        let job = self.jobs.get(bus).filter(|j| j.reader == reader);
        let rotating = job.is_some_and(|j| matches!(j.work, Work::Rotate(RotateStage::Sent(_))));
        let updating = job.is_some_and(|j| matches!(j.work, Work::Update { .. }));
        let resolved = match event {
            BusEvent::KeyResolved { pending, .. } => Some(pending),
            _ => None,
        };
        if updating {
            self.update_report(now, bus, event);
        } else if rotating {
            self.rotation_report(bus, event);
        }
        // A rotation cut short (an earlier run, or a job that lost its
        // reader): the bring-up found out which key the reader holds.
        if let Some(pending) = resolved
            && !rotating
        {
            self.outputs.push_back(Output::KeyFile {
                reader: reader.clone(),
                step: KeyStep::Settle { pending },
            });
            if pending {
                self.record(EventKind::ReaderKeyRotated {
                    command: None,
                    reader: reader.clone(),
                });
            }
        }
        self.advance(now, bus);
    }

    fn update_report(&mut self, now: Instant, bus: &BusId, event: BusEvent) {
        let Some(job) = self.jobs.get_mut(bus) else {
            return;
        };
        let Work::Update {
            stage,
            attempt,
            started,
            bytes,
            ..
        } = &mut job.work
        else {
            return;
        };
        let UpdateStage::Sending { data, tenths, .. } = stage else {
            return;
        };
        match event {
            BusEvent::TransferProgress {
                confirmed, total, ..
            } => {
                job.deadline = now + QUIET_LIMIT;
                let tenth = u64::from(confirmed) * 10 / u64::from(total.max(1));
                if tenth > *tenths && tenth < 10 {
                    *tenths = tenth;
                    let event = EventKind::ReaderUpdateProgress {
                        command: Some(job.command.clone()),
                        reader: job.reader.clone(),
                        confirmed: u64::from(confirmed),
                        total: u64::from(total),
                        attempt: *attempt,
                    };
                    self.record(event);
                }
            }
            BusEvent::TransferFinished { reboot, .. } => {
                let millis = started.map_or(0, |s| now.duration_since(s).as_millis() as u64);
                let event = EventKind::ReaderUpdateFinished {
                    command: Some(job.command.clone()),
                    reader: job.reader.clone(),
                    bytes: *bytes,
                    millis,
                    reboot,
                };
                self.jobs.remove(bus);
                self.record(event);
            }
            // `Offline` alone: the transfer's own report was lost.
            BusEvent::TransferFailed {
                reason: TransferFailure::Offline,
                ..
            }
            | BusEvent::Offline { .. }
                if *attempt < ATTEMPTS =>
            {
                // Once the reader is back, from byte 0 (the bus core tells
                // it with osdp_ABORT first).
                *attempt += 1;
                *stage = UpdateStage::AwaitingOnline(data.clone());
                job.deadline = job.expires.max(now + QUIET_LIMIT);
            }
            BusEvent::Offline { .. } => {
                let detail = format!("the reader went offline (attempt {attempt} of {ATTEMPTS})");
                let (command, reader) = (job.command.clone(), job.reader.clone());
                self.jobs.remove(bus);
                self.record_update_failed(&command, &reader, UpkeepFailure::ReaderLost, detail);
            }
            BusEvent::TransferFailed { reason, .. } => {
                let why = match reason {
                    TransferFailure::Offline => UpkeepFailure::ReaderLost,
                    TransferFailure::Stalled => UpkeepFailure::Stalled,
                    TransferFailure::Aborted => UpkeepFailure::Bus,
                    TransferFailure::Refused(_)
                    | TransferFailure::Nak(_)
                    | TransferFailure::UnexpectedReply(_) => UpkeepFailure::RefusedByReader,
                };
                let detail = format!("{reason} (attempt {attempt} of {ATTEMPTS})");
                let (command, reader) = (job.command.clone(), job.reader.clone());
                self.jobs.remove(bus);
                self.record_update_failed(&command, &reader, why, detail);
            }
            _ => {}
        }
    }

    fn rotation_report(&mut self, bus: &BusId, event: BusEvent) {
        let Some(job) = self.jobs.get(bus) else {
            return;
        };
        if !matches!(job.work, Work::Rotate(RotateStage::Sent(_))) {
            return;
        }
        let (command, reader) = (job.command.clone(), job.reader.clone());
        let (step, outcome) = match event {
            // The reader's client cryptogram proved the new key: it holds
            // it, whatever happens to this session.
            BusEvent::KeyResolved { pending: true, .. } => (KeyStep::Promote, None),
            BusEvent::KeyResolved { pending: false, .. } => {
                let detail = "the reader acknowledged the new key but proved the old one: \
                              the old key stays";
                (
                    KeyStep::Discard,
                    Some((UpkeepFailure::OldKeyKept, detail.to_owned())),
                )
            }
            // A NAK to a resent KEYSET: the new handshake decides
            // (`KeyResolved` above), within this job.
            BusEvent::KeyRotationFailed {
                reason: RotationFailure::Unsettled,
                ..
            } => return,
            BusEvent::KeyRotationFailed {
                reason: RotationFailure::NotSent,
                ..
            } => {
                let detail = "the reader went offline before the new key was sent: the old \
                              key stays";
                (
                    KeyStep::Discard,
                    Some((UpkeepFailure::ReaderLost, detail.to_owned())),
                )
            }
            BusEvent::KeyRotationFailed {
                reason: RotationFailure::Nak(code),
                ..
            } => {
                let detail =
                    format!("the reader refused the new key ({code:?}): the old key stays");
                (
                    KeyStep::Discard,
                    Some((UpkeepFailure::RefusedByReader, detail)),
                )
            }
            BusEvent::KeyRotationFailed { .. }
            | BusEvent::Offline { .. }
            | BusEvent::SecurityAlarm { .. } => {
                self.jobs.remove(bus);
                return self.record_rotation_failed(
                    Some(&command),
                    &reader,
                    UpkeepFailure::ReaderLost,
                    UNSETTLED.into(),
                );
            }
            _ => return,
        };
        self.jobs.remove(bus);
        self.outputs.push_back(Output::KeyFile {
            reader: reader.clone(),
            step,
        });
        match outcome {
            None => self.record(EventKind::ReaderKeyRotated {
                command: Some(command),
                reader,
            }),
            Some((why, detail)) => {
                self.record_rotation_failed(Some(&command), &reader, why, detail)
            }
        }
    }

    fn request_failed(
        &mut self,
        now: Instant,
        reader: &ReaderId,
        reason: UpkeepFailure,
        detail: String,
        generation: u64,
    ) {
        let Some(bus) = self.places.get(reader).map(|p| p.bus.clone()) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&bus).filter(|j| j.reader == *reader) else {
            return;
        };
        let asked_in = match &job.work {
            Work::Update {
                stage: UpdateStage::Sending { generation, .. },
                ..
            }
            | Work::Rotate(RotateStage::Sent(generation)) => *generation,
            // Nothing asked of the bus now: an old refusal.
            _ => return,
        };
        if asked_in != generation {
            return;
        }
        let seen = self.seen.entry(reader.clone()).or_default();
        if reason == UpkeepFailure::ReaderOffline {
            // The reader dropped out between its `Online` and the request,
            // which never reached it: ask again once it is online — at
            // once if it came back since (this refusal is older).
            if seen.generation == generation {
                seen.online = false;
            }
            match &mut job.work {
                Work::Update { stage, .. } => {
                    if let UpdateStage::Sending { data, .. } = stage {
                        *stage = UpdateStage::AwaitingOnline(data.clone());
                    }
                }
                Work::Rotate(stage) => *stage = RotateStage::AwaitingOnline,
            }
            job.deadline = job.expires.max(now + QUIET_LIMIT);
            return self.advance(now, &bus);
        }
        let Some(job) = self.jobs.remove(&bus) else {
            return;
        };
        match job.work {
            Work::Update { .. } => self.record_update_failed(&job.command, reader, reason, detail),
            Work::Rotate(_) => {
                self.record_rotation_failed(Some(&job.command), reader, reason, detail);
            }
        }
    }

    fn timeout(&mut self, now: Instant) {
        if self.held.as_ref().is_some_and(|h| h.3 <= now) {
            self.held = None;
        }
        let due: Vec<BusId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.deadline <= now)
            .map(|(b, _)| b.clone())
            .collect();
        for bus in due {
            let Some(job) = self.jobs.remove(&bus) else {
                continue;
            };
            let (command, reader) = (job.command, job.reader);
            let failed = |why, detail: &str| (why, detail.to_owned());
            let (why, detail) = match job.work {
                Work::Update {
                    stage: UpdateStage::AwaitingFile,
                    ..
                } => failed(
                    UpkeepFailure::FileNotReceived,
                    "the file did not arrive on the firmware topic in time",
                ),
                Work::Update {
                    stage: UpdateStage::AwaitingOnline(_),
                    ..
                } => failed(
                    UpkeepFailure::ReaderOffline,
                    "the reader was not online before the command expired",
                ),
                Work::Update {
                    stage: UpdateStage::Sending { .. },
                    ..
                } => {
                    if let Some(p) = self.places.get(&reader) {
                        self.outputs.push_back(Output::AbortTransfer {
                            bus: p.bus.clone(),
                            address: p.address,
                        });
                    }
                    failed(
                        UpkeepFailure::Stalled,
                        "no progress from the reader for 3 minutes: transfer aborted",
                    )
                }
                Work::Rotate(RotateStage::AwaitingOnline) => {
                    let detail =
                        "the reader was not online in Secure Channel before the command expired";
                    self.record_rotation_failed(
                        Some(&command),
                        &reader,
                        UpkeepFailure::ReaderOffline,
                        detail.into(),
                    );
                    continue;
                }
                Work::Rotate(RotateStage::Sent(_)) => {
                    self.record_rotation_failed(
                        Some(&command),
                        &reader,
                        UpkeepFailure::ReaderLost,
                        UNSETTLED.into(),
                    );
                    continue;
                }
            };
            self.record_update_failed(&command, &reader, why, detail.to_owned());
        }
    }

    /// Move the bus's job on as far as what is known allows.
    fn advance(&mut self, now: Instant, bus: &BusId) {
        let Some(job) = self.jobs.get_mut(bus) else {
            return;
        };
        let Some(place) = self.places.get(&job.reader).cloned() else {
            return;
        };
        let seen = self.seen.get(&job.reader);
        if !seen.is_some_and(|s| s.online) {
            return;
        }
        match &mut job.work {
            Work::Update {
                stage: stage @ UpdateStage::AwaitingOnline(_),
                vendor,
                model,
                file_type,
                digest,
                bytes,
                started,
                ..
            } => {
                if let Some((why, detail)) = identity_mismatch(seen, vendor.as_deref(), *model) {
                    let (command, reader) = (job.command.clone(), job.reader.clone());
                    self.jobs.remove(bus);
                    return self.record_update_failed(&command, &reader, why, detail);
                }
                let UpdateStage::AwaitingOnline(data) =
                    std::mem::replace(stage, UpdateStage::AwaitingFile)
                else {
                    return;
                };
                let generation = seen.map_or(0, |s| s.generation);
                *stage = UpdateStage::Sending {
                    data: data.clone(),
                    tenths: 0,
                    generation,
                };
                job.deadline = now + QUIET_LIMIT;
                let first = started.is_none();
                started.get_or_insert(now);
                let (digest, bytes) = (*digest, *bytes);
                let offer = FileOffer {
                    file_type: *file_type,
                    data,
                    fragment: None,
                };
                let (command, reader) = (job.command.clone(), job.reader.clone());
                self.outputs.push_back(Output::StartTransfer {
                    reader: reader.clone(),
                    bus: place.bus,
                    address: place.address,
                    offer,
                    generation,
                });
                if first {
                    self.record(EventKind::ReaderUpdateStarted {
                        command: Some(command),
                        reader,
                        bytes,
                        sha256: digest,
                    });
                }
            }
            Work::Rotate(stage @ RotateStage::AwaitingOnline) if seen.is_some_and(|s| s.secure) => {
                let generation = seen.map_or(0, |s| s.generation);
                *stage = RotateStage::Sent(generation);
                job.deadline = now + QUIET_LIMIT;
                let (command, reader) = (job.command.clone(), job.reader.clone());
                // Said first: the journal has it before any key is written.
                self.record(EventKind::ReaderKeyRotationStarted {
                    command: Some(command),
                    reader: reader.clone(),
                });
                self.outputs.push_back(Output::RotateKey {
                    reader,
                    bus: place.bus,
                    address: place.address,
                    generation,
                });
            }
            _ => {}
        }
    }

    fn end_job(&mut self, reader: &ReaderId) {
        if let Some(bus) = self.places.get(reader).map(|p| p.bus.clone()) {
            self.jobs.remove(&bus);
        }
    }

    fn record(&mut self, event: EventKind) {
        self.outputs.push_back(Output::Record(event));
    }

    fn record_update_failed(
        &mut self,
        command: &str,
        reader: &ReaderId,
        reason: UpkeepFailure,
        detail: String,
    ) {
        self.record(EventKind::ReaderUpdateFailed {
            command: Some(command.to_owned()),
            reader: reader.clone(),
            reason,
            detail,
        });
    }

    fn record_rotation_failed(
        &mut self,
        command: Option<&str>,
        reader: &ReaderId,
        reason: UpkeepFailure,
        detail: String,
    ) {
        self.record(EventKind::ReaderKeyRotationFailed {
            command: command.map(str::to_owned),
            reader: reader.clone(),
            reason,
            detail,
        });
    }
}

/// What a rotation that lost its reader leaves.
const UNSETTLED: &str = "the reader was lost during the rotation: both keys are kept, and its \
                         next Secure Channel bring-up settles which one it holds";

/// The reader's reported identity against what the command names; a
/// reader that never reported one is not sent a file meant for a vendor
/// or a model.
fn identity_mismatch(
    seen: Option<&Seen>,
    vendor: Option<&str>,
    model: Option<u8>,
) -> Option<(UpkeepFailure, String)> {
    let reported_vendor = seen.and_then(|s| s.vendor);
    let reported_model = seen.and_then(|s| s.model);
    if (vendor.is_some() && reported_vendor.is_none())
        || (model.is_some() && reported_model.is_none())
    {
        let detail = "the reader has not reported its identity (osdp_PDID), so the file's \
                      vendor or model cannot be checked: nothing sent";
        return Some((UpkeepFailure::IdentityUnknown, detail.to_owned()));
    }
    if let (Some(want), Some(got)) = (vendor, reported_vendor)
        && !want.eq_ignore_ascii_case(&hex::encode(got))
    {
        let detail = format!(
            "the reader reports vendor {}, the file is for {want}: nothing sent",
            hex::encode(got)
        );
        return Some((UpkeepFailure::WrongVendor, detail));
    }
    if let (Some(want), Some(got)) = (model, reported_model)
        && want != got
    {
        let detail =
            format!("the reader reports model {got}, the file is for model {want}: nothing sent");
        return Some((UpkeepFailure::WrongModel, detail));
    }
    None
}

#[cfg(test)]
mod tests;
