//! The multi-drop bus scheduler: one exchange in flight per bus, round-robin
//! over the PDs, queued commands ahead of polls, reply timeout, retries and
//! offline detection with back-off.
//!
//! Sans-IO contract (after quinn-proto and str0m): feed received bytes with
//! [`Bus::handle_input`], call [`Bus::handle_timeout`] when the deadline from
//! [`Bus::poll_timeout`] passes, and after every input drain
//! [`Bus::poll_transmit`] and [`Bus::poll_event`] until they return `None`.
//! The bus never reads a clock and draws randomness only from the entropy
//! source it was given.
//!
//! Fairness: a silent PD costs at most one reply timeout per round, and an
//! offline PD one timeout per back-off period, so live PDs keep being polled.

use std::collections::VecDeque;
use std::time::Instant;

use thiserror::Error;

use super::frame::FrameReader;
use super::message::Command;
use super::pd::{BusEvent, KeyPolicy, Pd, PdConfig, PdStatus, Timing};
use super::secure::Scbk;
use super::transfer::{FileOffer, OfferError};

/// A source of unpredictable bytes (RND.A for the Secure Channel challenge).
pub type Entropy = Box<dyn FnMut(&mut [u8]) + Send>;

/// Bytes to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The packet, mark byte included.
    pub bytes: Vec<u8>,
    /// Address it is sent to.
    pub address: u8,
    /// Carries key material (KEYSET): never capture or log it.
    pub sensitive: bool,
}

/// Errors from the bus API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BusError {
    /// No PD with that address on this bus.
    #[error("no PD at address {0} on this bus")]
    UnknownAddress(u8),
    /// The PD is not online; the command was not queued.
    #[error("PD {0} is offline")]
    Offline(u8),
    /// Two PDs configured at one address.
    #[error("address {0} configured twice")]
    DuplicateAddress(u8),
    /// Address outside 0..=126.
    #[error("address {0} is not a PD address (0..=126)")]
    BadAddress(u8),
    /// Key rotation needs the PD online inside Secure Channel.
    #[error("PD {0} is not in Secure Channel")]
    NotSecure(u8),
    /// One file transfer at a time per bus, and no key rotation during one.
    #[error("a file transfer to PD {0} is running on this bus")]
    TransferRunning(u8),
    /// No transfer to abort.
    #[error("no file transfer to PD {0}")]
    NoTransfer(u8),
    /// The file cannot be offered.
    #[error("file: {0}")]
    BadOffer(#[from] OfferError),
}

/// Counters for diagnostics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Requests sent (including retries).
    pub sent: u64,
    /// Valid replies to the outstanding request.
    pub replies: u64,
    /// Reply timeouts.
    pub timeouts: u64,
    /// Frames that failed CRC/checksum or length checks.
    pub framing_errors: u64,
    /// Valid frames that did not answer the outstanding request (late,
    /// duplicate, wrong address or sequence, or our own echo).
    pub ignored_frames: u64,
}

struct InFlight {
    pd: usize,
    deadline: Instant,
    sent_at: Instant,
}

/// One RS-485 bus with its PDs.
pub struct Bus {
    timing: Timing,
    pds: Vec<Pd>,
    reader: FrameReader,
    in_flight: Option<InFlight>,
    next_pd: usize,
    events: VecDeque<BusEvent>,
    entropy: Entropy,
    stats: BusStats,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("pds", &self.pds.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// A bus with these PDs. Addresses must be distinct and in 0..=126.
    pub fn new(timing: Timing, pds: Vec<PdConfig>, entropy: Entropy) -> Result<Self, BusError> {
        let mut seen = [false; 128];
        for pd in &pds {
            if pd.address > 126 {
                return Err(BusError::BadAddress(pd.address));
            }
            if std::mem::replace(&mut seen[usize::from(pd.address)], true) {
                return Err(BusError::DuplicateAddress(pd.address));
            }
        }
        let pds = pds.into_iter().map(|c| Pd::new(c, &timing)).collect();
        Ok(Self {
            timing,
            pds,
            reader: FrameReader::new(),
            in_flight: None,
            next_pd: 0,
            events: VecDeque::new(),
            entropy,
            stats: BusStats::default(),
        })
    }

    /// Queue a command for an online PD; it goes out ahead of that PD's polls.
    pub fn queue_command(&mut self, address: u8, command: Command) -> Result<(), BusError> {
        let pd = self.pd_mut(address)?;
        if !pd.is_online() {
            return Err(BusError::Offline(address));
        }
        pd.queue(command);
        Ok(())
    }

    /// Rotate an online PD's Secure Channel key: KEYSET with `key` inside
    /// the session, then a new session with it ([`BusEvent::KeyRotated`],
    /// [`BusEvent::KeyResolved`], `Online`, or
    /// [`BusEvent::KeyRotationFailed`]). Persist `key` before calling.
    pub fn rotate_key(&mut self, address: u8, key: Scbk) -> Result<(), BusError> {
        if let Some(busy) = self.pds.iter().find(|p| p.transferring()) {
            return Err(BusError::TransferRunning(busy.address));
        }
        let pd = self.pd_mut(address)?;
        if !pd.is_secure() {
            return Err(BusError::NotSecure(address));
        }
        pd.rotate_key(key);
        Ok(())
    }

    /// Send a file to an online PD, one transfer per bus at a time. The
    /// other PDs keep their turns; events `TransferProgress`, then
    /// `TransferFinished` or `TransferFailed`.
    pub fn start_transfer(
        &mut self,
        now: Instant,
        address: u8,
        offer: FileOffer,
    ) -> Result<(), BusError> {
        offer.check()?;
        if let Some(busy) = self.pds.iter().find(|p| p.transferring()) {
            return Err(BusError::TransferRunning(busy.address));
        }
        let pd = self.pd_mut(address)?;
        if !pd.is_online() {
            return Err(BusError::Offline(address));
        }
        pd.start_transfer(now, offer);
        Ok(())
    }

    /// Abort the transfer to a PD (it is told with osdp_ABORT).
    pub fn abort_transfer(&mut self, address: u8) -> Result<(), BusError> {
        if self.pd_mut(address)?.abort_transfer() {
            Ok(())
        } else {
            Err(BusError::NoTransfer(address))
        }
    }

    /// The key policy of a PD (which keys its bring-up tries).
    pub fn key_policy(&self, address: u8) -> Option<&KeyPolicy> {
        self.pds
            .iter()
            .find(|p| p.address == address)
            .map(Pd::key_policy)
    }

    /// The state of one PD.
    pub fn status(&self, address: u8) -> Option<PdStatus> {
        self.pds
            .iter()
            .find(|p| p.address == address)
            .map(Pd::status)
    }

    /// The state of every PD, in configuration order.
    pub fn statuses(&self) -> Vec<PdStatus> {
        self.pds.iter().map(Pd::status).collect()
    }

    /// Counters.
    pub fn stats(&self) -> &BusStats {
        &self.stats
    }

    fn pd_mut(&mut self, address: u8) -> Result<&mut Pd, BusError> {
        self.pds
            .iter_mut()
            .find(|p| p.address == address)
            .ok_or(BusError::UnknownAddress(address))
    }

    /// Bytes received from the wire.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        self.reader.push(bytes);
        while let Some(item) = self.reader.next_frame() {
            let rx = match item {
                Ok(rx) => rx,
                Err(_) => {
                    self.stats.framing_errors += 1;
                    continue;
                }
            };
            let Some(flight) = &self.in_flight else {
                self.stats.ignored_frames += 1;
                continue;
            };
            let pd = &mut self.pds[flight.pd];
            if !pd.is_reply_to_outstanding(&rx) {
                self.stats.ignored_frames += 1;
                continue;
            }
            self.stats.replies += 1;
            pd.last_round_trip = Some(now.saturating_duration_since(flight.sent_at));
            // BUSY leaves the request outstanding; the PD retries it on its next turn.
            pd.handle_reply(now, &rx, &mut self.events);
            self.in_flight = None;
            self.reader.clear();
        }
    }

    /// Call when [`Bus::poll_timeout`]'s deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(flight) = &self.in_flight
            && now >= flight.deadline
        {
            self.stats.timeouts += 1;
            let index = flight.pd;
            self.in_flight = None;
            self.pds[index].handle_timeout(now, &self.timing, &mut self.events);
        }
    }

    /// The next packet to send, if the bus is free and a PD wants it.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.in_flight.is_some() || self.pds.is_empty() {
            return None;
        }
        let count = self.pds.len();
        let index = (0..count)
            .map(|i| (self.next_pd + i) % count)
            .find(|&i| self.pds[i].ready_at().is_none_or(|t| t <= now))?;
        self.next_pd = (index + 1) % count;
        let pd = &mut self.pds[index];
        let bytes = pd.next_request(now, &mut *self.entropy);
        let address = pd.address;
        let sensitive = pd.sending_key();
        self.in_flight = Some(InFlight {
            pd: index,
            deadline: now + self.timing.reply_timeout,
            sent_at: now,
        });
        self.reader.clear();
        self.stats.sent += 1;
        Some(Transmit {
            bytes,
            address,
            sensitive,
        })
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<BusEvent> {
        self.events.pop_front()
    }

    /// When [`Bus::handle_timeout`] or [`Bus::poll_transmit`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(flight) = &self.in_flight {
            return Some(flight.deadline);
        }
        self.pds.iter().filter_map(Pd::ready_at).min()
    }
}
