//! A Secure Channel session over frames: seal outgoing frames (encrypt data,
//! append the MAC) and open incoming ones (verify the MAC, decrypt).
//!
//! Both sides keep the last full MAC of each direction. A command's MAC is
//! chained from the last reply MAC (the initial R-MAC for the first command)
//! and a reply's MAC from the command it answers; payload encryption uses the
//! complement of that same MAC as IV. A replayed or reordered frame therefore
//! fails the MAC check. The session never falls back to plaintext: a frame
//! without a MAC is an error here, and the caller decides what that means.

use thiserror::Error;

use super::frame::{Frame, FrameError, Received, SecurityBlock, scs};
use super::secure::{SecureError, SessionKeys, complement, ct_eq};

/// Which end of the link this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The control panel: seals commands, opens replies.
    ControlPanel,
    /// The peripheral device: seals replies, opens commands.
    Peripheral,
}

/// Why an incoming frame was refused by the session.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChannelError {
    /// The frame had no MAC-carrying security block: plaintext inside a
    /// secure session.
    #[error("plaintext frame inside a secure session")]
    NotSecured,
    /// The security block type does not belong to this direction.
    #[error("security block type 0x{0:02x} not valid here")]
    WrongBlockType(u8),
    /// MAC or payload check failed.
    #[error(transparent)]
    Secure(#[from] SecureError),
    /// The frame could not be built.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// An established Secure Channel session.
#[derive(Debug, Clone)]
pub struct SecureSession {
    keys: SessionKeys,
    side: Side,
    /// Last full command MAC (CP → PD).
    command_mac: [u8; 16],
    /// Last full reply MAC (PD → CP); starts as the initial R-MAC.
    reply_mac: [u8; 16],
}

impl SecureSession {
    /// A session right after the handshake.
    pub fn new(side: Side, keys: SessionKeys, initial_rmac: [u8; 16]) -> Self {
        Self {
            keys,
            side,
            command_mac: [0; 16],
            reply_mac: initial_rmac,
        }
    }

    /// The session keys (for the KEYSET exchange and tests).
    pub fn keys(&self) -> &SessionKeys {
        &self.keys
    }

    fn chain_in(&self) -> [u8; 16] {
        match self.side {
            Side::ControlPanel => self.reply_mac,
            Side::Peripheral => self.command_mac,
        }
    }

    /// Seal `frame` (whose `data` is plaintext): pick SCS 15/16 or 17/18,
    /// encrypt non-empty data, compute and set the MAC.
    pub fn seal(&mut self, frame: &mut Frame) -> Result<(), ChannelError> {
        let iv = self.chain_in();
        let encrypt = !frame.data.is_empty();
        let kind = match (self.side, encrypt) {
            (Side::ControlPanel, false) => scs::SCS_15,
            (Side::ControlPanel, true) => scs::SCS_17,
            (Side::Peripheral, false) => scs::SCS_16,
            (Side::Peripheral, true) => scs::SCS_18,
        };
        if encrypt {
            frame.data = self.keys.encrypt(&complement(&iv), &frame.data);
        }
        frame.security = Some(SecurityBlock { kind, data: vec![] });
        frame.mac = Some([0; 4]);
        let mac = self.keys.mac(&iv, &frame.authenticated_bytes()?);
        frame.mac = Some([mac[0], mac[1], mac[2], mac[3]]);
        match self.side {
            Side::ControlPanel => self.command_mac = mac,
            Side::Peripheral => self.reply_mac = mac,
        }
        Ok(())
    }

    /// Open a received frame: verify its MAC against the chain and return
    /// the plaintext data. The chain advances only on success.
    pub fn open(&mut self, rx: &Received) -> Result<Vec<u8>, ChannelError> {
        let frame = &rx.frame;
        let (Some(sb), Some(got_mac)) = (&frame.security, frame.mac) else {
            return Err(ChannelError::NotSecured);
        };
        let (plain_kind, encrypted_kind) = match self.side {
            Side::ControlPanel => (scs::SCS_16, scs::SCS_18),
            Side::Peripheral => (scs::SCS_15, scs::SCS_17),
        };
        if sb.kind != plain_kind && sb.kind != encrypted_kind {
            return Err(ChannelError::WrongBlockType(sb.kind));
        }
        let iv = match self.side {
            Side::ControlPanel => self.command_mac,
            Side::Peripheral => self.reply_mac,
        };
        let mac = self.keys.mac(&iv, &rx.authenticated);
        if !ct_eq(&mac[..4], &got_mac) {
            return Err(SecureError::MacMismatch.into());
        }
        let data = if sb.kind == encrypted_kind {
            self.keys.decrypt(&complement(&iv), &frame.data)?
        } else {
            frame.data.clone()
        };
        match self.side {
            Side::ControlPanel => self.reply_mac = mac,
            Side::Peripheral => self.command_mac = mac,
        }
        Ok(data)
    }
}
