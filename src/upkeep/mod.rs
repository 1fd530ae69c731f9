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
//! - not a byte of a file is sent unless its SHA-256 and size are the
//!   signed command's (the file itself travels unsigned, apart);
//! - a file may arrive before its command: one is held, for
//!   [`HELD_FILE_FOR`], then dropped;
//! - a job waits for its file and for its reader to be online until its
//!   command expires; a reader lost mid-file gets it again from byte 0,
//!   at most [`ATTEMPTS`] times;
//! - a key rotation retires the old key only after the reader proved the
//!   new one in a new session; whatever happens, the key files keep a key
//!   the reader holds (the bus tries both while a rotation is unsettled).
//!
//! A job lives in memory: a gateway restart ends it (the reader is told to
//! abort by the next session's first transfer, which starts at byte 0);
//! central sees `reader_update_started` without an end and asks again.

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
    },
    /// A bus's report about one of its PDs.
    Bus {
        /// The bus.
        bus: BusId,
        /// The report.
        event: BusEvent,
    },
    /// A request this core asked for failed before it reached the PD (the
    /// bus refused it, the key file could not be written).
    RequestFailed {
        /// The reader.
        reader: ReaderId,
        /// Why.
        reason: UpkeepFailure,
        /// More, in words.
        detail: String,
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
    /// Waiting for the file (until the command expires).
    AwaitingFile,
    /// The file checked; waiting for the reader to be online.
    AwaitingOnline(Arc<[u8]>),
    /// Bytes moving.
    Sending {
        data: Arc<[u8]>,
        /// Tenths reported in this attempt.
        tenths: u64,
    },
}

/// A key rotation's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RotateStage {
    /// Waiting for the reader to be online in Secure Channel.
    AwaitingOnline,
    /// KEYSET asked for; waiting for the reader to prove the new key.
    Sent,
    /// The reader proved the new key; waiting for its new session.
    Proven,
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
    /// The command's expiry: a job not yet under way ends here.
    deadline: Instant,
    work: Work,
}

/// What the core knows of a reader besides its place.
#[derive(Debug, Default)]
struct Seen {
    online: bool,
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
    held: Option<(String, Arc<[u8]>, Instant)>,
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
            Input::File { command, data } => self.file(now, command, data),
            Input::Bus { bus, event } => self.bus(now, &bus, event),
            Input::RequestFailed {
                reader,
                reason,
                detail,
            } => self.request_failed(&reader, reason, detail),
            Input::Timeout => self.timeout(now),
        }
    }

    /// The next thing to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Input::Timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let jobs = self
            .jobs
            .values()
            .filter(|j| j.waiting())
            .map(|j| j.deadline);
        jobs.chain(self.held.as_ref().map(|h| h.2)).min()
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
        let work = match action {
            ReaderAction::ReaderUpdate {
                sha256,
                bytes,
                file_type,
                vendor,
                model,
                ..
            } => {
                if bytes == 0 || bytes > self.max_file as u64 {
                    let detail = format!("{bytes} bytes: 1..={} taken", self.max_file);
                    self.record_update_failed(&id, &reader, UpkeepFailure::FileTooLarge, detail);
                    return;
                }
                Work::Update {
                    digest: sha256,
                    bytes,
                    file_type,
                    vendor,
                    model,
                    stage: UpdateStage::AwaitingFile,
                    attempt: 1,
                    started: None,
                }
            }
            ReaderAction::RotateKey { .. } => {
                if !place.secure {
                    let detail = "the reader has no key file (plaintext)".to_owned();
                    self.record_rotation_failed(
                        Some(&id),
                        &reader,
                        UpkeepFailure::NoSecureChannel,
                        detail,
                    );
                    return;
                }
                Work::Rotate(RotateStage::AwaitingOnline)
            }
        };
        let job = Job {
            command: id,
            reader,
            deadline: now + valid_for,
            work,
        };
        self.jobs.insert(place.bus.clone(), job);
        // A file that came first.
        if let Some((command, data, _)) = self.held.take() {
            if self.job_for_command(&command).is_some() {
                self.file(now, command, data);
            } else {
                self.held = Some((command, data, now + HELD_FILE_FOR));
            }
        }
        self.advance(now, &place.bus);
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

    fn file(&mut self, now: Instant, command: String, data: Arc<[u8]>) {
        let Some(job) = self.job_for_command(&command) else {
            // Before its command, or for one already over: held a while.
            self.held = Some((command, data, now + HELD_FILE_FOR));
            return;
        };
        let Work::Update {
            digest,
            bytes,
            stage: stage @ UpdateStage::AwaitingFile,
            ..
        } = &mut job.work
        else {
            return;
        };
        let actual = FileDigest::of(&data);
        if actual != *digest || data.len() as u64 != *bytes {
            let detail = format!(
                "the file received is {} bytes with sha256 {actual}; the command says {bytes} bytes, {digest}: nothing sent",
                data.len()
            );
            let (reader, command) = (job.reader.clone(), job.command.clone());
            self.end_job(&reader);
            self.record_update_failed(&command, &reader, UpkeepFailure::HashMismatch, detail);
            return;
        }
        *stage = UpdateStage::AwaitingOnline(data);
        let reader = job.reader.clone();
        if let Some(place) = self.places.get(&reader) {
            let bus = place.bus.clone();
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
        // A rotation cut short (an earlier run, or a job that lost its
        // reader): the bring-up found out which key the reader holds.
        if let BusEvent::KeyResolved { pending, .. } = event
            && !self.rotating(bus, &reader)
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
        let Some(job) = self.jobs.get_mut(bus) else {
            return;
        };
        if job.reader != reader {
            return;
        }
        if matches!(job.work, Work::Update { .. }) {
            self.update_report(now, bus, event);
        } else {
            self.rotation_report(bus, event);
        }
        self.advance(now, bus);
    }

    fn rotating(&self, bus: &BusId, reader: &ReaderId) -> bool {
        self.jobs.get(bus).is_some_and(|j| {
            j.reader == *reader
                && matches!(j.work, Work::Rotate(s) if s != RotateStage::AwaitingOnline)
        })
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
        let UpdateStage::Sending { data, tenths } = stage else {
            return;
        };
        match event {
            BusEvent::TransferProgress {
                confirmed, total, ..
            } => {
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
            BusEvent::TransferFailed {
                reason: TransferFailure::Offline,
                ..
            } if *attempt < ATTEMPTS => {
                // Once the reader is back, from byte 0 (the bus core tells
                // it with osdp_ABORT first).
                *attempt += 1;
                *stage = UpdateStage::AwaitingOnline(data.clone());
                job.deadline = job.deadline.max(now + Duration::from_secs(600));
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
        let Some(job) = self.jobs.get_mut(bus) else {
            return;
        };
        let Work::Rotate(stage) = &mut job.work else {
            return;
        };
        let (command, reader) = (job.command.clone(), job.reader.clone());
        let lost = "the reader was lost during the rotation: both keys are kept and the next \
                    session finds out which one it holds";
        match (event, *stage) {
            (BusEvent::KeyResolved { pending: true, .. }, RotateStage::Sent) => {
                *stage = RotateStage::Proven;
            }
            (BusEvent::Online { secure: true, .. }, RotateStage::Proven) => {
                self.jobs.remove(bus);
                self.outputs.push_back(Output::KeyFile {
                    reader: reader.clone(),
                    step: KeyStep::Promote,
                });
                self.record(EventKind::ReaderKeyRotated {
                    command: Some(command),
                    reader,
                });
            }
            (BusEvent::KeyResolved { pending: false, .. }, RotateStage::Sent) => {
                self.jobs.remove(bus);
                self.outputs.push_back(Output::KeyFile {
                    reader: reader.clone(),
                    step: KeyStep::Discard,
                });
                let detail = "the reader acknowledged the new key but proved the old one: \
                              the old key stays";
                self.record_rotation_failed(
                    Some(&command),
                    &reader,
                    UpkeepFailure::OldKeyKept,
                    detail.into(),
                );
            }
            (
                BusEvent::KeyRotationFailed {
                    reason: RotationFailure::Nak(code),
                    ..
                },
                RotateStage::Sent,
            ) => {
                self.jobs.remove(bus);
                self.outputs.push_back(Output::KeyFile {
                    reader: reader.clone(),
                    step: KeyStep::Discard,
                });
                let detail =
                    format!("the reader refused the new key ({code:?}): the old key stays");
                self.record_rotation_failed(
                    Some(&command),
                    &reader,
                    UpkeepFailure::RefusedByReader,
                    detail,
                );
            }
            (
                BusEvent::KeyRotationFailed { .. }
                | BusEvent::Offline { .. }
                | BusEvent::SecurityAlarm { .. },
                RotateStage::Sent | RotateStage::Proven,
            ) => {
                self.jobs.remove(bus);
                self.record_rotation_failed(
                    Some(&command),
                    &reader,
                    UpkeepFailure::ReaderLost,
                    lost.into(),
                );
            }
            _ => {}
        }
    }

    fn request_failed(&mut self, reader: &ReaderId, reason: UpkeepFailure, detail: String) {
        let Some(bus) = self.places.get(reader).map(|p| p.bus.clone()) else {
            return;
        };
        let Some(job) = self.jobs.remove(&bus) else {
            return;
        };
        match job.work {
            Work::Update { .. } => {
                self.record_update_failed(&job.command, reader, reason, detail);
            }
            Work::Rotate(_) => {
                self.record_rotation_failed(Some(&job.command), reader, reason, detail);
            }
        }
    }

    fn timeout(&mut self, now: Instant) {
        if self.held.as_ref().is_some_and(|h| h.2 <= now) {
            self.held = None;
        }
        let due: Vec<BusId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.waiting() && j.deadline <= now)
            .map(|(b, _)| b.clone())
            .collect();
        for bus in due {
            let Some(job) = self.jobs.remove(&bus) else {
                continue;
            };
            match job.work {
                Work::Update {
                    stage: UpdateStage::AwaitingFile,
                    ..
                } => self.record_update_failed(
                    &job.command,
                    &job.reader,
                    UpkeepFailure::FileNotReceived,
                    "the file did not arrive on the firmware topic before the command expired"
                        .into(),
                ),
                Work::Update { .. } => self.record_update_failed(
                    &job.command,
                    &job.reader,
                    UpkeepFailure::ReaderOffline,
                    "the reader was not online before the command expired".into(),
                ),
                Work::Rotate(_) => self.record_rotation_failed(
                    Some(&job.command),
                    &job.reader,
                    UpkeepFailure::ReaderOffline,
                    "the reader was not online in Secure Channel before the command expired".into(),
                ),
            }
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
        let online = seen.is_some_and(|s| s.online);
        match &mut job.work {
            Work::Update {
                stage: stage @ UpdateStage::AwaitingOnline(_),
                vendor,
                model,
                file_type,
                digest,
                bytes,
                attempt,
                started,
            } if online => {
                let mismatch = identity_mismatch(seen, vendor.as_deref(), *model);
                if let Some((why, detail)) = mismatch {
                    let (command, reader) = (job.command.clone(), job.reader.clone());
                    self.jobs.remove(bus);
                    self.record_update_failed(&command, &reader, why, detail);
                    return;
                }
                let UpdateStage::AwaitingOnline(data) = std::mem::replace(
                    stage,
                    UpdateStage::Sending {
                        data: Arc::from(Vec::new()),
                        tenths: 0,
                    },
                ) else {
                    return;
                };
                *stage = UpdateStage::Sending {
                    data: data.clone(),
                    tenths: 0,
                };
                let first = *attempt == 1;
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
            Work::Rotate(stage @ RotateStage::AwaitingOnline)
                if online && seen.is_some_and(|s| s.secure) =>
            {
                *stage = RotateStage::Sent;
                self.outputs.push_back(Output::RotateKey {
                    reader: job.reader.clone(),
                    bus: place.bus,
                    address: place.address,
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

impl Job {
    /// Waiting for something that may never come (its file, its reader):
    /// ends at the command's expiry. Moving bytes or keys is bounded by
    /// the bus core's own timeouts.
    fn waiting(&self) -> bool {
        match &self.work {
            Work::Update { stage, .. } => !matches!(stage, UpdateStage::Sending { .. }),
            Work::Rotate(stage) => *stage == RotateStage::AwaitingOnline,
        }
    }
}

/// The reader's reported identity against what the command names.
fn identity_mismatch(
    seen: Option<&Seen>,
    vendor: Option<&str>,
    model: Option<u8>,
) -> Option<(UpkeepFailure, String)> {
    let seen = seen?;
    if let (Some(want), Some(got)) = (vendor, seen.vendor)
        && !want.eq_ignore_ascii_case(&hex::encode(got))
    {
        let detail = format!(
            "the reader reports vendor {}, the file is for {want}: nothing sent",
            hex::encode(got)
        );
        return Some((UpkeepFailure::WrongVendor, detail));
    }
    if let (Some(want), Some(got)) = (model, seen.model)
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
