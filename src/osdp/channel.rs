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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osdp::frame::{FrameReader, Integrity};
    use crate::osdp::secure::Scbk;

    fn bytes(hex_digits: &str) -> Vec<u8> {
        hex::decode(hex_digits.replace(' ', "")).unwrap()
    }

    fn received(hex_digits: &str) -> Received {
        let mut r = FrameReader::new();
        r.push(&bytes(hex_digits));
        r.next_frame().unwrap().unwrap()
    }

    fn frame(is_reply: bool, sequence: u8, code: u8, data: &[u8]) -> Frame {
        Frame {
            address: 1,
            is_reply,
            sequence,
            integrity: Integrity::Crc16,
            security: None,
            code,
            data: data.to_vec(),
            mac: None,
        }
    }

    /// A Secure Channel conversation between libosdp 3.2.9's CP and PD,
    /// captured on a PTY (tests/interop/captures/secure_channel.socat.log):
    /// our sessions must reproduce every byte and accept every frame.
    #[test]
    fn replays_a_libosdp_secure_channel_conversation() {
        let key = Scbk(
            bytes("A1B2C3D4E5F60718293A4B5C6D7E8F90")
                .try_into()
                .unwrap(),
        );
        let rnd_a: [u8; 8] = bytes("d764c8cce93255c4").try_into().unwrap();
        let rnd_b = rnd_a; // libosdp's two PRNGs happened to agree
        let keys = SessionKeys::derive(&key, &rnd_a);
        let cryptogram = bytes("5f647db468749668 3469b87f6c6657dc");
        assert_eq!(keys.client_cryptogram(&rnd_a, &rnd_b).to_vec(), cryptogram);
        let server = keys.server_cryptogram(&rnd_a, &rnd_b);
        assert_eq!(server.to_vec(), cryptogram);
        let rmac = keys.initial_rmac(&server);
        assert_eq!(rmac.to_vec(), bytes("196e83e460549fd81fe72931e6f6d08d"));

        let mut cp = SecureSession::new(Side::ControlPanel, keys.clone(), rmac);
        let mut pd = SecureSession::new(Side::Peripheral, keys, rmac);

        // CP → PD: POLL, MAC only.
        let mut poll = frame(false, 1, 0x60, &[]);
        cp.seal(&mut poll).unwrap();
        let wire = "ff 53 01 0e 00 0d 02 15 60 84 a9 82 ac de ec";
        assert_eq!(poll.encode(true).unwrap(), bytes(wire));
        assert_eq!(pd.open(&received(wire)).unwrap(), Vec::<u8>::new());

        // PD → CP: RAW card, encrypted.
        let card = bytes("00 00 1a 00 95 01 f4 80");
        let mut raw = frame(true, 1, 0x50, &card);
        pd.seal(&mut raw).unwrap();
        let wire = "53 81 1e 00 0d 02 18 50 c0 cc 84 2b 50 8d 3c a7 85 78 7d 86 72 c2 f2 f1 e4 a7 d2 40 74 3c";
        assert_eq!(raw.encode(false).unwrap(), bytes(wire));
        assert_eq!(cp.open(&received(wire)).unwrap(), card);

        // CP → PD: LED, encrypted; decrypt with the PD session, re-seal with ours.
        let wire = "ff 53 01 1e 00 0e 02 17 69 87 14 b4 ca ca cc 2e fb dd 77 46 27 04 ad a5 58 87 43 23 80 a6 e3";
        let led = pd.open(&received(wire)).unwrap();
        assert_eq!(led.len(), 14);
        let mut ours = frame(false, 2, 0x69, &led);
        cp.seal(&mut ours).unwrap();
        assert_eq!(ours.encode(true).unwrap(), bytes(wire));

        // PD → CP: ACK, MAC only.
        let mut ack = frame(true, 2, 0x40, &[]);
        pd.seal(&mut ack).unwrap();
        let wire = "53 81 0e 00 0e 02 16 40 98 cc 25 fe 05 b1";
        assert_eq!(ack.encode(false).unwrap(), bytes(wire));
        assert_eq!(cp.open(&received(wire)).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_replayed_reply_fails_the_mac_chain() {
        let keys = SessionKeys::derive(&Scbk([7; 16]), &[1; 8]);
        let mut cp = SecureSession::new(Side::ControlPanel, keys.clone(), [9; 16]);
        let mut pd = SecureSession::new(Side::Peripheral, keys, [9; 16]);
        let mut replies = Vec::new();
        for seq in 1..=2 {
            let mut poll = frame(false, seq, 0x60, &[]);
            cp.seal(&mut poll).unwrap();
            let mut r = FrameReader::new();
            r.push(&poll.encode(true).unwrap());
            pd.open(&r.next_frame().unwrap().unwrap()).unwrap();
            let mut ack = frame(true, seq, 0x40, &[]);
            pd.seal(&mut ack).unwrap();
            let mut r = FrameReader::new();
            r.push(&ack.encode(false).unwrap());
            let rx = r.next_frame().unwrap().unwrap();
            if seq == 1 {
                replies.push(rx.clone());
            }
            cp.open(&rx).unwrap();
        }
        // Replaying the first ACK later fails, even with a matching sequence.
        let mut poll = frame(false, 1, 0x60, &[]);
        cp.seal(&mut poll).unwrap();
        assert_eq!(
            cp.open(&replies[0]),
            Err(ChannelError::Secure(SecureError::MacMismatch))
        );
        // And plaintext is refused outright.
        let mut r = FrameReader::new();
        r.push(&frame(true, 1, 0x40, &[]).encode(false).unwrap());
        assert_eq!(
            cp.open(&r.next_frame().unwrap().unwrap()),
            Err(ChannelError::NotSecured)
        );
    }
}
