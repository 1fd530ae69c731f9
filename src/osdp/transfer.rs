//! Sending a file to one PD (osdp_FILETRANSFER, OSDP v2.2 §6.25) and
//! following its answers (osdp_FTSTAT, §7.25), sans-IO.
//!
//! The sender owns the file, the offset the PD has confirmed, the fragment
//! size and the PD's last delay request. The PD (`pd.rs`) asks it for the
//! next fragment when the bus gives that PD its turn, and hands it each
//! FTSTAT; the bus keeps polling the other PDs between fragments, so a
//! transfer never takes the bus from them.
//!
//! Rules it guarantees:
//! - a fragment never exceeds what the PD can receive: its receive buffer
//!   (PDCAP function 10) less the frame and Secure Channel overhead, or the
//!   smaller size the PD asked for in FTSTAT (FtUpdateMsgMax);
//! - a delay the PD asks for (FtDelay) is waited out before the next
//!   fragment, without holding the bus;
//! - the offset only advances on the PD's confirmation, so a retried
//!   request resends the same bytes;
//! - a negative status, a NAK, the PD going offline or the caller's abort
//!   ends it as [`TransferFailure`]; the PD's "processed" or "rebooting"
//!   ends it as finished. There is no resume across a restart of the
//!   sender: the next transfer starts with osdp_ABORT, which resets a PD
//!   still in the middle of an old one, and sends from offset 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::message::{Capability, FileFragment, FileTransferStatus, NakCode};

/// The largest file accepted (FtSizeTotal is 32 bits; 64 MiB is far above
/// any reader firmware and bounds the memory a transfer holds).
pub const MAX_FILE_LEN: usize = 64 * 1024 * 1024;

/// Fragment size when the PD does not report its receive buffer: fits the
/// smallest buffer the spec lets a PD have with Secure Channel overhead.
pub const DEFAULT_FRAGMENT: u16 = 128;

/// The largest fragment Portier sends, whatever the PD reports: a frame of
/// [`super::frame::MAX_FRAME_LEN`] with header, SC block, padding and MAC.
pub const MAX_FRAGMENT: u16 = 1024;

/// Without a confirmation for this long (delays included), the transfer
/// is given up.
pub const STALL_LIMIT: Duration = Duration::from_secs(120);

/// PDCAP function code of "receive buffer size" (compliance = LSB, count = MSB).
const CAP_RECEIVE_BUFFER: u8 = 10;

/// Bytes a fragment's frame needs besides the fragment itself: mark, SOM,
/// address, length (2), control, SC block (2), command code, the
/// FILETRANSFER header (11), up to 16 bytes of padding, MAC (4), CRC (2).
const FRAME_OVERHEAD: u16 = 1 + 1 + 1 + 2 + 1 + 2 + 1 + 11 + 16 + 4 + 2;

/// A file to send.
#[derive(Clone, PartialEq, Eq)]
pub struct FileOffer {
    /// FtType: 1 = opaque firmware image; other values vendor-defined.
    pub file_type: u8,
    /// The file's bytes (1 ..= [`MAX_FILE_LEN`]).
    pub data: Arc<[u8]>,
    /// Fragment size to use instead of the one derived from the PD's
    /// receive buffer (still capped at [`MAX_FRAGMENT`]).
    pub fragment: Option<u16>,
}

impl std::fmt::Debug for FileOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileOffer")
            .field("file_type", &self.file_type)
            .field("len", &self.data.len())
            .field("fragment", &self.fragment)
            .finish()
    }
}

/// Why a file transfer ended without the PD taking the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransferFailure {
    /// The PD reported a negative FtStatusDetail: -1 aborted, -2
    /// unrecognised contents, -3 malformed, others vendor-defined.
    #[error("the PD refused the file (status {0})")]
    Refused(i16),
    /// The PD answered a fragment with NAK.
    #[error("the PD answered NAK ({0:?})")]
    Nak(NakCode),
    /// The PD answered a fragment with something other than FTSTAT or NAK.
    #[error("the PD answered a fragment with reply 0x{0:02x}")]
    UnexpectedReply(u8),
    /// The PD went offline during the transfer.
    #[error("the PD went offline")]
    Offline,
    /// The owner aborted it.
    #[error("aborted")]
    Aborted,
    /// No confirmation for [`STALL_LIMIT`].
    #[error("no progress for {} s", STALL_LIMIT.as_secs())]
    Stalled,
}

/// Why a file could not be offered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OfferError {
    /// Empty file.
    #[error("the file is empty")]
    Empty,
    /// Larger than [`MAX_FILE_LEN`].
    #[error("the file is {0} bytes, more than the {MAX_FILE_LEN} accepted")]
    TooLarge(usize),
    /// A fragment size of 0.
    #[error("a fragment size of 0")]
    ZeroFragment,
}

impl FileOffer {
    /// Check the offer's sizes.
    pub fn check(&self) -> Result<(), OfferError> {
        match self.data.len() {
            0 => Err(OfferError::Empty),
            n if n > MAX_FILE_LEN => Err(OfferError::TooLarge(n)),
            _ if self.fragment == Some(0) => Err(OfferError::ZeroFragment),
            _ => Ok(()),
        }
    }
}

/// What one FTSTAT meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// More to send (or the PD still processing): `confirmed` of `total`.
    Progress { confirmed: u32, total: u32 },
    /// The PD has the file; `reboot` when it restarts to apply it.
    Finished { reboot: bool },
    /// It ended badly.
    Failed(TransferFailure),
}

/// Progress of a running transfer, for status pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferProgress {
    /// Bytes the PD has confirmed.
    pub confirmed: u32,
    /// The file's size.
    pub total: u32,
    /// Current fragment size.
    pub fragment: u16,
}

/// The fragment size a PD's capabilities allow.
pub fn fragment_for(capabilities: &[Capability]) -> u16 {
    capabilities
        .iter()
        .find(|c| c.function == CAP_RECEIVE_BUFFER)
        .map(|c| u16::from_le_bytes([c.compliance, c.count]))
        .filter(|&buffer| buffer > FRAME_OVERHEAD)
        .map_or(DEFAULT_FRAGMENT, |buffer| {
            // Keep the encrypted part a whole number of blocks below the buffer.
            (buffer - FRAME_OVERHEAD).min(MAX_FRAGMENT)
        })
}

/// One running transfer.
#[derive(Debug)]
pub(crate) struct Transfer {
    offer: FileOffer,
    /// Bytes confirmed by the PD.
    confirmed: u32,
    /// Length of the fragment sent and not yet confirmed.
    in_flight: Option<u32>,
    fragment: u16,
    /// No fragment before this (the PD's FtDelay).
    resume_at: Option<Instant>,
    /// The PD lets the CP poll it between fragments (FtAction bit 0).
    interleave: bool,
    /// The PD has a poll response waiting (FtAction bit 2).
    poll_wanted: bool,
    last_progress: Instant,
    /// Aborted by the owner: send osdp_ABORT next.
    aborting: bool,
}

impl Transfer {
    pub(crate) fn new(now: Instant, offer: FileOffer, capabilities: &[Capability]) -> Self {
        let fragment = offer
            .fragment
            .unwrap_or_else(|| fragment_for(capabilities))
            .clamp(1, MAX_FRAGMENT);
        Self {
            offer,
            confirmed: 0,
            in_flight: None,
            fragment,
            resume_at: None,
            interleave: true,
            poll_wanted: false,
            last_progress: now,
            aborting: false,
        }
    }

    fn total(&self) -> u32 {
        // `FileOffer::check` bounds the length far below u32::MAX.
        self.offer.data.len() as u32
    }

    pub(crate) fn progress(&self) -> TransferProgress {
        TransferProgress {
            confirmed: self.confirmed,
            total: self.total(),
            fragment: self.fragment,
        }
    }

    /// When the next fragment may go; `None` for now.
    pub(crate) fn resume_at(&self) -> Option<Instant> {
        self.resume_at
    }

    /// Whether the PD may be polled while the transfer waits.
    pub(crate) fn interleave(&self) -> bool {
        self.interleave
    }

    /// The PD has a poll response waiting: poll it once before the next fragment.
    pub(crate) fn take_poll_wanted(&mut self) -> bool {
        std::mem::take(&mut self.poll_wanted)
    }

    pub(crate) fn wants_send(&self, now: Instant) -> bool {
        self.resume_at.is_none_or(|t| t <= now)
    }

    pub(crate) fn stalled(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_progress) >= STALL_LIMIT
    }

    pub(crate) fn abort(&mut self) {
        self.aborting = true;
    }

    pub(crate) fn aborting(&self) -> bool {
        self.aborting
    }

    /// The next fragment: from the confirmed offset, at most the fragment
    /// size; a header-only keep-alive once everything is confirmed and the
    /// PD is still processing.
    pub(crate) fn next_fragment(&mut self) -> FileFragment {
        let start = self.confirmed as usize;
        let end = (start + usize::from(self.fragment)).min(self.offer.data.len());
        self.in_flight = Some((end - start) as u32);
        FileFragment {
            file_type: self.offer.file_type,
            total_size: self.total(),
            offset: self.confirmed,
            data: self.offer.data[start..end].to_vec(),
        }
    }

    /// The PD's answer to the fragment in flight.
    pub(crate) fn handle_status(&mut self, now: Instant, status: FileTransferStatus) -> Step {
        if status.status < 0 {
            return Step::Failed(TransferFailure::Refused(status.status));
        }
        if let Some(len) = self.in_flight.take() {
            self.confirmed = (self.confirmed + len).min(self.total());
            if len > 0 {
                self.last_progress = now;
            }
        }
        if status.max_fragment != 0 {
            self.fragment = status.max_fragment.min(MAX_FRAGMENT);
        }
        self.interleave = status.action & 0x01 != 0;
        self.poll_wanted = status.action & 0x04 != 0;
        self.resume_at =
            (status.delay_ms > 0).then(|| now + Duration::from_millis(u64::from(status.delay_ms)));
        match status.status {
            1 => Step::Finished { reboot: false },
            2 => Step::Finished { reboot: true },
            _ => Step::Progress {
                confirmed: self.confirmed,
                total: self.total(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(len: usize) -> FileOffer {
        FileOffer {
            file_type: 1,
            data: (0..len).map(|i| i as u8).collect::<Vec<_>>().into(),
            fragment: None,
        }
    }

    fn ok(delay_ms: u16, status: i16, max_fragment: u16) -> FileTransferStatus {
        FileTransferStatus {
            action: 1,
            delay_ms,
            status,
            max_fragment,
        }
    }

    fn start() -> Instant {
        crate::test_clock::epoch()
    }

    #[test]
    fn fragment_size_follows_the_receive_buffer() {
        let buffer = |size: u16| {
            let [lsb, msb] = size.to_le_bytes();
            vec![Capability {
                function: 10,
                compliance: lsb,
                count: msb,
            }]
        };
        assert_eq!(fragment_for(&[]), DEFAULT_FRAGMENT);
        assert_eq!(fragment_for(&buffer(256)), 256 - FRAME_OVERHEAD);
        assert_eq!(fragment_for(&buffer(20)), DEFAULT_FRAGMENT);
        assert_eq!(fragment_for(&buffer(60_000)), MAX_FRAGMENT);
    }

    #[test]
    fn offsets_advance_only_on_confirmation_and_follow_size_and_delay() {
        let t0 = start();
        let mut t = Transfer::new(
            t0,
            FileOffer {
                fragment: Some(100),
                ..offer(250)
            },
            &[],
        );
        let f = t.next_fragment();
        assert_eq!((f.offset, f.data.len()), (0, 100));
        // A retry before any answer sends the same bytes again.
        let again = t.next_fragment();
        assert_eq!(again, f);
        let step = t.handle_status(t0, ok(300, 0, 60));
        assert_eq!(
            step,
            Step::Progress {
                confirmed: 100,
                total: 250
            }
        );
        assert!(!t.wants_send(t0 + Duration::from_millis(299)));
        assert!(t.wants_send(t0 + Duration::from_millis(300)));
        let f = t.next_fragment();
        assert_eq!((f.offset, f.data.len()), (100, 60), "the PD asked for 60");
        assert_eq!(f.data[0], 100);
        t.handle_status(t0, ok(0, 0, 0));
        let f = t.next_fragment();
        assert_eq!((f.offset, f.data.len()), (160, 60));
        t.handle_status(t0, ok(0, 0, 0));
        let f = t.next_fragment();
        assert_eq!((f.offset, f.data.len()), (220, 30), "the tail");
        assert_eq!(
            t.handle_status(t0, ok(0, 2, 0)),
            Step::Finished { reboot: true }
        );
    }

    #[test]
    fn a_negative_status_fails_and_keep_alive_is_header_only() {
        let t0 = start();
        let mut t = Transfer::new(t0, offer(10), &[]);
        t.next_fragment();
        assert!(matches!(
            t.handle_status(t0, ok(0, 0, 0)),
            Step::Progress { confirmed: 10, .. }
        ));
        // Everything confirmed, PD still working: header-only fragments.
        assert!(t.next_fragment().data.is_empty());
        assert_eq!(
            t.handle_status(t0, ok(0, -2, 0)),
            Step::Failed(TransferFailure::Refused(-2))
        );
        assert!(t.stalled(t0 + STALL_LIMIT));
    }

    #[test]
    fn offers_are_bounded() {
        assert_eq!(offer(0).check(), Err(OfferError::Empty));
        assert_eq!(offer(1).check(), Ok(()));
        let zero = FileOffer {
            fragment: Some(0),
            ..offer(1)
        };
        assert_eq!(zero.check(), Err(OfferError::ZeroFragment));
    }
}
