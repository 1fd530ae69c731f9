//! The control panel's view of one PD: where it is in bring-up (identity →
//! capabilities → Secure Channel handshake → online), its command queue, and
//! what its replies mean.
//!
//! Security policy, enforced here and nowhere else: a PD with a key is only
//! ever online inside Secure Channel. A refused or failed handshake, a wrong
//! cryptogram, a plaintext or badly MAC'd reply in session all take it
//! offline with a [`SecurityAlarm`]; there is no fallback to SCBK-D or to
//! plaintext, and no card data is accepted from a PD that is not online.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::channel::{SecureSession, Side};
use super::frame::{Frame, Integrity, Received, SecurityBlock, scs};
use super::message::{
    Capability, Command, FormattedCard, KeySet, KeypadData, LocalStatus, NakCode, PdIdentity,
    RawCard, Reply,
};
use super::secure::{SCBK_DEFAULT, Scbk, SessionKeys, ct_eq};
use super::transfer::{FileOffer, Step, Transfer, TransferFailure, TransferProgress};

/// How a PD is secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPolicy {
    /// No Secure Channel (bench and legacy readers only; the daemon config
    /// must ask for it explicitly).
    Plaintext,
    /// Secure Channel with this base key; required.
    Secure(Scbk),
    /// Install mode: handshake with SCBK-D, send KEYSET with this new key
    /// (which the caller has already persisted), then continue as
    /// [`KeyPolicy::Secure`] with it.
    Install(Scbk),
    /// A key rotation may have been cut short: the PD holds one of these
    /// two. The handshake checks the PD's cryptogram against `current`,
    /// then `pending`, and continues as [`KeyPolicy::Secure`] with the one
    /// that matched ([`BusEvent::KeyResolved`] says which).
    Rotating {
        /// The key in force before the rotation.
        current: Scbk,
        /// The key the rotation sent.
        pending: Scbk,
    },
}

/// Configuration of one PD on a bus.
#[derive(Debug, Clone)]
pub struct PdConfig {
    /// Address 0..=126.
    pub address: u8,
    /// Secure Channel policy.
    pub key: KeyPolicy,
}

/// Why a PD went offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfflineReason {
    /// No valid reply within the offline timeout.
    NoReply,
    /// A security failure (see the alarm raised with it).
    Security(SecurityAlarm),
}

/// Secure Channel alarms. Each one also takes the PD offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityAlarm {
    /// The PD refused or ignored the challenge (claims no SC support).
    HandshakeRefused,
    /// The PD's cryptogram did not match: wrong key.
    WrongKey,
    /// The PD's initial R-MAC did not match.
    BadInitialRmac,
    /// A reply inside the session was plaintext.
    PlaintextInSession,
    /// A reply failed its MAC (tampering, replay, or lost sync).
    BadMac,
    /// The PD refused the new key in install mode.
    KeySetRefused(NakCode),
}

/// Why a key rotation did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationFailure {
    /// The PD answered KEYSET with NAK: it keeps the old key.
    Nak(NakCode),
    /// The PD went offline with KEYSET unanswered: it holds the old key or
    /// the new one, and the next bring-up finds out which.
    Offline,
    /// The PD went offline before KEYSET was sent: it keeps the old key.
    NotSent,
    /// KEYSET was sent more than once (a reply lost) and a copy was
    /// answered NAK: the first may have been taken. The session is dropped
    /// and the new handshake tries both keys (`KeyResolved` follows).
    Unsettled,
}

/// Why a queued command did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandFailure {
    /// The PD answered NAK with this code; the link stays up.
    Nak(NakCode),
    /// The PD went offline before the command was sent or answered.
    Offline,
}

/// Something the bus reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// The PD is online; `secure` says whether inside Secure Channel.
    Online {
        /// PD address.
        address: u8,
        /// Secure Channel active.
        secure: bool,
        /// Identity, if the PD answered ID.
        identity: Option<PdIdentity>,
        /// Capabilities, if the PD answered CAP.
        capabilities: Vec<Capability>,
    },
    /// The PD went offline.
    Offline {
        /// PD address.
        address: u8,
        /// Why.
        reason: OfflineReason,
    },
    /// A Secure Channel alarm (followed by `Offline`).
    SecurityAlarm {
        /// PD address.
        address: u8,
        /// What happened.
        alarm: SecurityAlarm,
    },
    /// Install mode finished: the PD accepted the new key.
    KeyInstalled {
        /// PD address.
        address: u8,
    },
    /// Key rotation: the PD acknowledged KEYSET inside Secure Channel; the
    /// session is being re-established with the new key (`Online` follows).
    KeyRotated {
        /// PD address.
        address: u8,
    },
    /// Key rotation failed; see the reason for which key the PD holds.
    KeyRotationFailed {
        /// PD address.
        address: u8,
        /// Why.
        reason: RotationFailure,
    },
    /// With a [`KeyPolicy::Rotating`] policy: which key the PD proved it
    /// holds (`pending` true: the new one).
    KeyResolved {
        /// PD address.
        address: u8,
        /// The pending key matched, not the current one.
        pending: bool,
    },
    /// A file transfer advanced: `confirmed` of `total` bytes taken.
    TransferProgress {
        /// PD address.
        address: u8,
        /// Bytes the PD confirmed.
        confirmed: u32,
        /// The file's size.
        total: u32,
    },
    /// The PD took the whole file.
    TransferFinished {
        /// PD address.
        address: u8,
        /// The PD restarts to apply it (expect it offline, then online).
        reboot: bool,
    },
    /// The transfer ended without the PD taking the file.
    TransferFailed {
        /// PD address.
        address: u8,
        /// Why.
        reason: TransferFailure,
    },
    /// A card was read.
    Card {
        /// PD address.
        address: u8,
        /// The raw bits.
        card: RawCard,
    },
    /// Formatted card data.
    FormattedCard {
        /// PD address.
        address: u8,
        /// The characters.
        card: FormattedCard,
    },
    /// Keypad digits.
    Keypad {
        /// PD address.
        address: u8,
        /// The digits.
        keys: KeypadData,
    },
    /// Tamper / power status.
    LocalStatus {
        /// PD address.
        address: u8,
        /// Status.
        status: LocalStatus,
    },
    /// Input states (door contact, REX, …).
    Inputs {
        /// PD address.
        address: u8,
        /// One byte per input.
        inputs: Vec<u8>,
    },
    /// Output states.
    Outputs {
        /// PD address.
        address: u8,
        /// One byte per output.
        outputs: Vec<u8>,
    },
    /// Reader tamper states.
    Readers {
        /// PD address.
        address: u8,
        /// One byte per attached reader.
        readers: Vec<u8>,
    },
    /// A queued command was acknowledged.
    CommandDone {
        /// PD address.
        address: u8,
        /// Command code.
        code: u8,
    },
    /// A queued command failed.
    CommandFailed {
        /// PD address.
        address: u8,
        /// Command code.
        code: u8,
        /// Why.
        reason: CommandFailure,
    },
    /// A reply the bus does not interpret (e.g. MFGREP, COM), passed on.
    Other {
        /// PD address.
        address: u8,
        /// The reply.
        reply: Reply,
    },
}

impl BusEvent {
    /// The PD it is about.
    pub fn address(&self) -> u8 {
        match self {
            Self::Online { address, .. }
            | Self::Offline { address, .. }
            | Self::SecurityAlarm { address, .. }
            | Self::KeyInstalled { address }
            | Self::KeyRotated { address }
            | Self::KeyRotationFailed { address, .. }
            | Self::KeyResolved { address, .. }
            | Self::TransferProgress { address, .. }
            | Self::TransferFinished { address, .. }
            | Self::TransferFailed { address, .. }
            | Self::Card { address, .. }
            | Self::FormattedCard { address, .. }
            | Self::Keypad { address, .. }
            | Self::LocalStatus { address, .. }
            | Self::Inputs { address, .. }
            | Self::Outputs { address, .. }
            | Self::Readers { address, .. }
            | Self::CommandDone { address, .. }
            | Self::CommandFailed { address, .. }
            | Self::Other { address, .. } => *address,
        }
    }

    /// A report about a PD's life (sessions, keys, file transfers) rather
    /// than its doors: what reader upkeep follows. Never a card or input.
    pub fn concerns_upkeep(&self) -> bool {
        matches!(
            self,
            Self::Online { .. }
                | Self::Offline { .. }
                | Self::SecurityAlarm { .. }
                | Self::KeyRotated { .. }
                | Self::KeyRotationFailed { .. }
                | Self::KeyResolved { .. }
                | Self::TransferProgress { .. }
                | Self::TransferFinished { .. }
                | Self::TransferFailed { .. }
        )
    }
}

/// Where a PD is in its life cycle.
#[derive(Debug, Clone)]
enum Phase {
    Identify,
    Capabilities,
    Challenge {
        rnd_a: [u8; 8],
    },
    ServerCryptogram {
        keys: SessionKeys,
        rnd_a: [u8; 8],
        rnd_b: [u8; 8],
    },
    InstallKey,
    Online,
    Offline {
        probe_at: Instant,
    },
}

/// The request in flight to this PD, kept for retries and reply handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    Handshake,
    Poll,
    Command(Command),
    /// KEYSET inside the session (key rotation).
    RotateKey,
    /// A file fragment.
    Fragment,
    /// osdp_ABORT before a new transfer or for an aborted one.
    AbortTransfer,
}

/// A public snapshot of a PD's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdStatus {
    /// Address.
    pub address: u8,
    /// Online (and, when keyed, inside Secure Channel).
    pub online: bool,
    /// Secure Channel active.
    pub secure: bool,
    /// Identity, once known.
    pub identity: Option<PdIdentity>,
    /// Last valid reply.
    pub last_reply: Option<Instant>,
    /// Time from the request to that reply.
    pub last_round_trip: Option<Duration>,
    /// Last reported local status.
    pub local_status: Option<LocalStatus>,
    /// Commands waiting.
    pub queued: usize,
    /// Capabilities, once known.
    pub capabilities: Vec<Capability>,
    /// A file transfer in progress.
    pub transfer: Option<TransferProgress>,
}

/// Timing knobs shared by all PDs of a bus.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How long to wait for a reply.
    pub reply_timeout: Duration,
    /// Offline after this long without a valid reply.
    pub offline_after: Duration,
    /// First delay before probing an offline PD again.
    pub backoff_initial: Duration,
    /// Longest delay between probes.
    pub backoff_max: Duration,
    /// Minimum time between two polls of the same idle PD.
    pub poll_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            reply_timeout: Duration::from_millis(200),
            offline_after: Duration::from_secs(8),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            poll_interval: Duration::ZERO,
        }
    }
}

/// One PD as the control panel sees it.
#[derive(Debug)]
pub(crate) struct Pd {
    pub(crate) address: u8,
    key: KeyPolicy,
    phase: Phase,
    /// Sequence number of the last request sent.
    sequence: u8,
    session: Option<SecureSession>,
    identity: Option<PdIdentity>,
    capabilities: Vec<Capability>,
    local_status: Option<LocalStatus>,
    commands: VecDeque<Command>,
    /// The request awaiting its reply (or a retry after a timeout).
    pub(crate) outstanding: Option<(Request, Vec<u8>)>,
    last_reply: Option<Instant>,
    pub(crate) last_round_trip: Option<Duration>,
    /// Start of the current silence (last valid reply or start of bring-up).
    silent_since: Option<Instant>,
    /// Set while probing an offline PD: one try, then back to offline.
    probing: bool,
    backoff: Duration,
    next_poll: Option<Instant>,
    poll_interval: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    /// A new key to send with KEYSET inside the session.
    rotation: Option<Scbk>,
    /// The KEYSET in flight was sent again (its reply was late or lost).
    keyset_resent: bool,
    /// A file being sent.
    transfer: Option<Transfer>,
    /// Send osdp_ABORT before the next fragment (a new transfer starts
    /// from a clean PD; an aborted one is stopped on the PD too).
    abort_first: bool,
}

impl Pd {
    pub(crate) fn new(config: PdConfig, timing: &Timing) -> Self {
        Self {
            address: config.address,
            key: config.key,
            phase: Phase::Identify,
            sequence: 0,
            session: None,
            identity: None,
            capabilities: Vec::new(),
            local_status: None,
            commands: VecDeque::new(),
            outstanding: None,
            last_reply: None,
            last_round_trip: None,
            silent_since: None,
            probing: false,
            backoff: timing.backoff_initial,
            next_poll: None,
            poll_interval: timing.poll_interval,
            backoff_initial: timing.backoff_initial,
            backoff_max: timing.backoff_max,
            rotation: None,
            keyset_resent: false,
            transfer: None,
            abort_first: false,
        }
    }

    pub(crate) fn status(&self) -> PdStatus {
        PdStatus {
            address: self.address,
            online: self.is_online(),
            secure: self.session.is_some() && self.is_online(),
            identity: self.identity,
            last_reply: self.last_reply,
            last_round_trip: self.last_round_trip,
            local_status: self.local_status,
            queued: self.commands.len(),
            capabilities: self.capabilities.clone(),
            transfer: self.transfer.as_ref().map(Transfer::progress),
        }
    }

    /// Whether the request being built carries key material (KEYSET).
    pub(crate) fn sending_key(&self) -> bool {
        matches!(self.phase, Phase::InstallKey)
            || matches!(self.outstanding, Some((Request::RotateKey, _)))
    }

    /// Whether the PD is online inside Secure Channel.
    pub(crate) fn is_secure(&self) -> bool {
        self.is_online() && self.session.is_some()
    }

    /// Send this new key with KEYSET inside the session, then re-establish
    /// the session with it. The caller has persisted it first.
    pub(crate) fn rotate_key(&mut self, key: Scbk) {
        self.rotation = Some(key);
    }

    pub(crate) fn key_policy(&self) -> &KeyPolicy {
        &self.key
    }

    /// Whether a file transfer is running.
    pub(crate) fn transferring(&self) -> bool {
        self.transfer.is_some()
    }

    /// Start sending a file (the offer is checked by the caller).
    pub(crate) fn start_transfer(&mut self, now: Instant, offer: FileOffer) {
        self.transfer = Some(Transfer::new(now, offer, &self.capabilities));
        self.abort_first = true;
    }

    /// Stop the running transfer (the PD is told with osdp_ABORT).
    pub(crate) fn abort_transfer(&mut self) -> bool {
        match &mut self.transfer {
            Some(t) => {
                t.abort();
                self.abort_first = true;
                true
            }
            None => false,
        }
    }

    pub(crate) fn is_online(&self) -> bool {
        matches!(self.phase, Phase::Online)
    }

    pub(crate) fn queue(&mut self, command: Command) {
        self.commands.push_back(command);
    }

    /// When this PD next wants the bus, or `None` if it wants it now.
    pub(crate) fn ready_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Offline { probe_at } => Some(probe_at),
            Phase::Online
                if self.outstanding.is_none()
                    && self.commands.is_empty()
                    && self.rotation.is_none()
                    && !self.abort_first =>
            {
                match &self.transfer {
                    // Waiting out the PD's delay: polls (when it allows
                    // them) or nothing until then; the other PDs have the bus.
                    Some(t) => match t.resume_at() {
                        Some(at) if t.interleave() => {
                            Some(self.next_poll.map_or(at, |p| p.min(at)))
                        }
                        at => at,
                    },
                    None => self.next_poll,
                }
            }
            _ => None,
        }
    }

    /// Build the next request's bytes: a retry of the outstanding one, or
    /// the next step of bring-up, a queued command, or a POLL.
    pub(crate) fn next_request(
        &mut self,
        now: Instant,
        entropy: &mut dyn FnMut(&mut [u8]),
    ) -> Vec<u8> {
        if let Some((request, bytes)) = &self.outstanding {
            if matches!(request, Request::RotateKey) {
                self.keyset_resent = true;
            }
            return bytes.clone();
        }
        if let Phase::Offline { .. } = self.phase {
            self.restart(now, true);
        }
        if self.silent_since.is_none() {
            self.silent_since = Some(now);
        }
        let (request, command, security) = match &self.phase {
            Phase::Identify => {
                // Sequence 0 tells the PD to start afresh (and drop any session).
                self.sequence = 0;
                self.session = None;
                (Request::Handshake, Command::Id, None)
            }
            Phase::Capabilities => (Request::Handshake, Command::Capabilities, None),
            Phase::Challenge { .. } => {
                let mut rnd_a = [0u8; 8];
                entropy(&mut rnd_a);
                self.phase = Phase::Challenge { rnd_a };
                let sb = SecurityBlock {
                    kind: scs::SCS_11,
                    data: vec![self.key_type()],
                };
                (Request::Handshake, Command::Challenge(rnd_a), Some(sb))
            }
            Phase::ServerCryptogram { keys, rnd_a, rnd_b } => {
                let cryptogram = keys.server_cryptogram(rnd_a, rnd_b);
                let sb = SecurityBlock {
                    kind: scs::SCS_13,
                    data: vec![self.key_type()],
                };
                (
                    Request::Handshake,
                    Command::ServerCryptogram(cryptogram),
                    Some(sb),
                )
            }
            Phase::InstallKey => {
                let KeyPolicy::Install(new_key) = &self.key else {
                    unreachable!("InstallKey phase only with an install policy")
                };
                let command = Command::KeySet(super::message::KeySet {
                    key_type: 1,
                    key: new_key.0.to_vec(),
                });
                (Request::Handshake, command, None)
            }
            Phase::Online => self.online_request(now),
            Phase::Offline { .. } => unreachable!("restarted above"),
        };
        if !matches!(self.phase, Phase::Identify) {
            self.sequence = if self.sequence >= 3 {
                1
            } else {
                self.sequence + 1
            };
        }
        let mut frame = Frame {
            address: self.address,
            is_reply: false,
            sequence: self.sequence,
            integrity: Integrity::Crc16,
            security,
            code: command.code(),
            data: Vec::new(),
            mac: None,
        };
        command.encode_data(&mut frame.data);
        if let Some(session) = &mut self.session {
            // Sealing cannot fail for frames we build: they are far below
            // the maximum size.
            session.seal(&mut frame).expect("own frame fits");
        }
        let bytes = frame.encode(true).expect("own frame fits");
        self.outstanding = Some((request, bytes.clone()));
        bytes
    }

    /// The request of an online PD: a key rotation first, then an abort
    /// owed to a transfer, queued commands, a file fragment, or a POLL.
    fn online_request(&mut self, now: Instant) -> (Request, Command, Option<SecurityBlock>) {
        if let Some(new_key) = self.rotation.take() {
            self.keyset_resent = false;
            // From here on the PD may hold either key (its answer can be
            // lost after it took the new one): bring-up tries both.
            if let KeyPolicy::Secure(current) = &self.key {
                self.key = KeyPolicy::Rotating {
                    current: current.clone(),
                    pending: new_key.clone(),
                };
            }
            let command = Command::KeySet(KeySet {
                key_type: 1,
                key: new_key.0.to_vec(),
            });
            return (Request::RotateKey, command, None);
        }
        if std::mem::take(&mut self.abort_first) {
            return (Request::AbortTransfer, Command::Abort, None);
        }
        if let Some(c) = self.commands.pop_front() {
            return (Request::Command(c.clone()), c, None);
        }
        if let Some(t) = &mut self.transfer
            && t.wants_send(now)
            && !t.take_poll_wanted()
        {
            return (
                Request::Fragment,
                Command::FileTransfer(t.next_fragment()),
                None,
            );
        }
        (Request::Poll, Command::Poll, None)
    }

    /// The PD's answer to KEYSET inside the session.
    fn rotation_answered(
        &mut self,
        now: Instant,
        reply: Reply,
        events: &mut VecDeque<BusEvent>,
    ) -> Phase {
        let address = self.address;
        if let Reply::Ack = reply {
            // The policy stays `Rotating`: the new handshake proves which
            // key the PD took (KeyResolved), so a PD that acknowledged and
            // kept its old key is still reached, and reported.
            self.session = None;
            events.push_back(BusEvent::KeyRotated { address });
            return Phase::Challenge { rnd_a: [0; 8] };
        }
        if self.keyset_resent {
            // A NAK to a copy says nothing of the first: keep both keys
            // and let a new handshake find out which the PD holds.
            self.session = None;
            events.push_back(BusEvent::KeyRotationFailed {
                address,
                reason: RotationFailure::Unsettled,
            });
            return Phase::Challenge { rnd_a: [0; 8] };
        }
        if let KeyPolicy::Rotating { current, .. } = &self.key {
            self.key = KeyPolicy::Secure(current.clone());
        }
        let code = match reply {
            Reply::Nak(code) => code,
            _ => NakCode::Other(0xFF),
        };
        events.push_back(BusEvent::KeyRotationFailed {
            address,
            reason: RotationFailure::Nak(code),
        });
        self.next_poll = Some(now + self.poll_interval);
        Phase::Online
    }

    /// The PD's answer to a file fragment.
    fn fragment_answered(&mut self, now: Instant, reply: Reply, events: &mut VecDeque<BusEvent>) {
        let address = self.address;
        let step = match reply {
            Reply::FileTransferStatus(status) => match &mut self.transfer {
                Some(t) => {
                    let step = t.handle_status(now, status);
                    if matches!(step, Step::Progress { .. }) && t.stalled(now) {
                        Step::Failed(TransferFailure::Stalled)
                    } else {
                        step
                    }
                }
                None => return,
            },
            Reply::Nak(code) => Step::Failed(TransferFailure::Nak(code)),
            other => {
                // Whatever it is (a card read?), it is not lost.
                let code = other.code();
                self.handle_online_reply(Request::Poll, other, events);
                Step::Failed(TransferFailure::UnexpectedReply(code))
            }
        };
        match step {
            Step::Progress { confirmed, total } => events.push_back(BusEvent::TransferProgress {
                address,
                confirmed,
                total,
            }),
            Step::Finished { reboot } => {
                self.transfer = None;
                events.push_back(BusEvent::TransferFinished { address, reboot });
            }
            Step::Failed(reason) => {
                self.transfer = None;
                events.push_back(BusEvent::TransferFailed { address, reason });
            }
        }
    }

    /// The PD's answer to osdp_ABORT (ACK, or NAK from a PD without it:
    /// either way the transfer goes on or ends as the owner asked).
    fn abort_answered(&mut self, events: &mut VecDeque<BusEvent>) {
        if self.transfer.as_ref().is_some_and(Transfer::aborting) {
            self.transfer = None;
            events.push_back(BusEvent::TransferFailed {
                address: self.address,
                reason: TransferFailure::Aborted,
            });
        }
    }

    fn key_type(&self) -> u8 {
        match self.key {
            KeyPolicy::Install(_) => 0,
            _ => 1,
        }
    }

    fn handshake_key(&self) -> Option<&Scbk> {
        match &self.key {
            KeyPolicy::Plaintext => None,
            KeyPolicy::Secure(k) | KeyPolicy::Rotating { current: k, .. } => Some(k),
            KeyPolicy::Install(_) => Some(&SCBK_DEFAULT),
        }
    }

    /// The key whose session keys produce the PD's client cryptogram, with
    /// whether it was a rotation's pending key (`None` outside a rotation).
    fn matching_key(
        &self,
        rnd_a: &[u8; 8],
        cc: &super::message::ClientCryptogram,
    ) -> Option<(SessionKeys, Scbk, Option<bool>)> {
        let candidates: Vec<(&Scbk, Option<bool>)> = match &self.key {
            KeyPolicy::Plaintext => Vec::new(),
            KeyPolicy::Secure(k) => vec![(k, None)],
            KeyPolicy::Install(_) => vec![(&SCBK_DEFAULT, None)],
            KeyPolicy::Rotating { current, pending } => {
                vec![(current, Some(false)), (pending, Some(true))]
            }
        };
        candidates.into_iter().find_map(|(key, pending)| {
            let keys = SessionKeys::derive(key, rnd_a);
            ct_eq(&keys.client_cryptogram(rnd_a, &cc.rnd_b), &cc.cryptogram)
                .then(|| (keys, key.clone(), pending))
        })
    }

    /// Whether a frame is the reply to the outstanding request.
    pub(crate) fn is_reply_to_outstanding(&self, rx: &Received) -> bool {
        rx.frame.is_reply
            && rx.frame.address == self.address
            && rx.frame.sequence == self.sequence
            && self.outstanding.is_some()
    }

    /// Handle the reply to the outstanding request.
    pub(crate) fn handle_reply(
        &mut self,
        now: Instant,
        rx: &Received,
        events: &mut VecDeque<BusEvent>,
    ) {
        let Some((request, _)) = self.outstanding.clone() else {
            return;
        };
        // Authenticate first: nothing from a keyed PD counts before this.
        let data = match &mut self.session {
            Some(session) => match session.open(rx) {
                Ok(data) => data,
                Err(super::channel::ChannelError::NotSecured) => {
                    self.fail_security(now, SecurityAlarm::PlaintextInSession, events);
                    return;
                }
                Err(_) => {
                    self.fail_security(now, SecurityAlarm::BadMac, events);
                    return;
                }
            },
            None => rx.frame.data.clone(),
        };
        let reply = match Reply::decode(rx.frame.code, &data) {
            Ok(reply) => reply,
            Err(_) => {
                // Authenticated but malformed: a PD bug. Count it as a reply
                // (the link is alive) and move on.
                self.mark_alive(now);
                self.outstanding = None;
                if let Request::Command(c) = request {
                    events.push_back(BusEvent::CommandFailed {
                        address: self.address,
                        code: c.code(),
                        reason: CommandFailure::Nak(NakCode::UnableToProcess),
                    });
                }
                return;
            }
        };
        if matches!(reply, Reply::Busy) {
            self.mark_alive(now);
            return;
        }
        self.outstanding = None;
        self.mark_alive(now);
        let phase = std::mem::replace(&mut self.phase, Phase::Identify);
        self.phase = match (phase, reply) {
            (Phase::Identify, Reply::Identity(id)) => {
                self.identity = Some(id);
                Phase::Capabilities
            }
            (Phase::Identify, _) => Phase::Capabilities,
            (Phase::Capabilities, reply) => {
                if let Reply::Capabilities(caps) = reply {
                    self.capabilities = caps;
                }
                if self.handshake_key().is_some() {
                    Phase::Challenge { rnd_a: [0; 8] }
                } else {
                    self.go_online(events);
                    Phase::Online
                }
            }
            (Phase::Challenge { rnd_a }, Reply::ClientCryptogram(cc)) => {
                let matched = (rx.frame.security.as_ref().map(|sb| sb.kind) == Some(scs::SCS_12))
                    .then(|| self.matching_key(&rnd_a, &cc))
                    .flatten();
                let Some((keys, key, pending)) = matched else {
                    self.fail_security(now, SecurityAlarm::WrongKey, events);
                    return;
                };
                if let Some(pending) = pending {
                    self.key = KeyPolicy::Secure(key);
                    events.push_back(BusEvent::KeyResolved {
                        address: self.address,
                        pending,
                    });
                }
                Phase::ServerCryptogram {
                    keys,
                    rnd_a,
                    rnd_b: cc.rnd_b,
                }
            }
            (Phase::Challenge { .. }, _) => {
                self.fail_security(now, SecurityAlarm::HandshakeRefused, events);
                return;
            }
            (Phase::ServerCryptogram { keys, rnd_a, rnd_b }, Reply::InitialRmac(rmac)) => {
                let expected = keys.initial_rmac(&keys.server_cryptogram(&rnd_a, &rnd_b));
                if rx.frame.security.as_ref().map(|sb| sb.kind) != Some(scs::SCS_14)
                    || !ct_eq(&expected, &rmac)
                {
                    self.fail_security(now, SecurityAlarm::BadInitialRmac, events);
                    return;
                }
                self.session = Some(SecureSession::new(Side::ControlPanel, keys, rmac));
                if matches!(self.key, KeyPolicy::Install(_)) {
                    Phase::InstallKey
                } else {
                    self.go_online(events);
                    Phase::Online
                }
            }
            (Phase::ServerCryptogram { .. }, _) => {
                self.fail_security(now, SecurityAlarm::HandshakeRefused, events);
                return;
            }
            (Phase::InstallKey, Reply::Ack) => {
                let KeyPolicy::Install(new_key) = self.key.clone() else {
                    unreachable!("InstallKey phase only with an install policy")
                };
                self.key = KeyPolicy::Secure(new_key);
                self.session = None;
                events.push_back(BusEvent::KeyInstalled {
                    address: self.address,
                });
                Phase::Challenge { rnd_a: [0; 8] }
            }
            (Phase::InstallKey, reply) => {
                let code = match reply {
                    Reply::Nak(code) => code,
                    _ => NakCode::Other(0xFF),
                };
                self.fail_security(now, SecurityAlarm::KeySetRefused(code), events);
                return;
            }
            (Phase::Online, reply) => match request {
                Request::RotateKey => self.rotation_answered(now, reply, events),
                Request::Fragment => {
                    self.fragment_answered(now, reply, events);
                    self.next_poll = Some(now + self.poll_interval);
                    Phase::Online
                }
                Request::AbortTransfer => {
                    self.abort_answered(events);
                    Phase::Online
                }
                request => {
                    self.handle_online_reply(request, reply, events);
                    self.next_poll = Some(now + self.poll_interval);
                    Phase::Online
                }
            },
            (offline @ Phase::Offline { .. }, _) => offline,
        };
    }

    fn handle_online_reply(
        &mut self,
        request: Request,
        reply: Reply,
        events: &mut VecDeque<BusEvent>,
    ) {
        let address = self.address;
        let command_code = match &request {
            Request::Command(c) => Some(c.code()),
            _ => None,
        };
        match reply {
            Reply::Ack => {}
            Reply::Nak(nak) => {
                if let Some(code) = command_code {
                    events.push_back(BusEvent::CommandFailed {
                        address,
                        code,
                        reason: CommandFailure::Nak(nak),
                    });
                    return;
                }
            }
            Reply::RawCard(card) => events.push_back(BusEvent::Card { address, card }),
            Reply::FormattedCard(card) => {
                events.push_back(BusEvent::FormattedCard { address, card })
            }
            Reply::Keypad(keys) => events.push_back(BusEvent::Keypad { address, keys }),
            Reply::LocalStatus(status) => {
                self.local_status = Some(status);
                events.push_back(BusEvent::LocalStatus { address, status });
            }
            Reply::InputStatus(inputs) => events.push_back(BusEvent::Inputs { address, inputs }),
            Reply::OutputStatus(outputs) => {
                events.push_back(BusEvent::Outputs { address, outputs })
            }
            Reply::ReaderStatus(readers) => {
                events.push_back(BusEvent::Readers { address, readers })
            }
            other => events.push_back(BusEvent::Other {
                address,
                reply: other,
            }),
        }
        if let Some(code) = command_code {
            events.push_back(BusEvent::CommandDone { address, code });
        }
    }

    fn go_online(&mut self, events: &mut VecDeque<BusEvent>) {
        self.probing = false;
        self.backoff = self.backoff_initial;
        events.push_back(BusEvent::Online {
            address: self.address,
            secure: self.session.is_some(),
            identity: self.identity,
            capabilities: self.capabilities.clone(),
        });
    }

    fn mark_alive(&mut self, now: Instant) {
        self.last_reply = Some(now);
        self.silent_since = Some(now);
    }

    fn fail_security(
        &mut self,
        now: Instant,
        alarm: SecurityAlarm,
        events: &mut VecDeque<BusEvent>,
    ) {
        events.push_back(BusEvent::SecurityAlarm {
            address: self.address,
            alarm: alarm.clone(),
        });
        self.go_offline(now, OfflineReason::Security(alarm), events);
    }

    /// Take the PD offline: drop the session, fail queued commands, and
    /// schedule the next probe with exponential back-off.
    pub(crate) fn go_offline(
        &mut self,
        now: Instant,
        reason: OfflineReason,
        events: &mut VecDeque<BusEvent>,
    ) {
        let was_probing = self.probing;
        let unanswered = matches!(self.outstanding, Some((Request::RotateKey, _)));
        let unsent = self.rotation.take().is_some();
        if unanswered || unsent {
            events.push_back(BusEvent::KeyRotationFailed {
                address: self.address,
                reason: if unanswered {
                    RotationFailure::Offline
                } else {
                    RotationFailure::NotSent
                },
            });
        }
        self.abort_first = false;
        if self.transfer.take().is_some() {
            events.push_back(BusEvent::TransferFailed {
                address: self.address,
                reason: TransferFailure::Offline,
            });
        }
        self.session = None;
        self.outstanding = None;
        self.silent_since = None;
        self.phase = Phase::Offline {
            probe_at: now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(self.backoff_max);
        for command in self.commands.drain(..) {
            events.push_back(BusEvent::CommandFailed {
                address: self.address,
                code: command.code(),
                reason: CommandFailure::Offline,
            });
        }
        // A failed probe of a PD already known to be offline is not news,
        // unless it failed for a security reason.
        if !was_probing || matches!(reason, OfflineReason::Security(_)) {
            events.push_back(BusEvent::Offline {
                address: self.address,
                reason,
            });
        }
    }

    fn restart(&mut self, now: Instant, probing: bool) {
        self.phase = Phase::Identify;
        self.session = None;
        self.outstanding = None;
        self.silent_since = Some(now);
        self.probing = probing;
    }

    /// The outstanding request got no valid reply in time. The request stays
    /// outstanding and is retried (same bytes, same sequence number) on this
    /// PD's next turn, unless the PD has been silent too long.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        timing: &Timing,
        events: &mut VecDeque<BusEvent>,
    ) {
        let silent_for = self
            .silent_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if self.probing || silent_for >= timing.offline_after {
            self.go_offline(now, OfflineReason::NoReply, events);
        }
    }
}
