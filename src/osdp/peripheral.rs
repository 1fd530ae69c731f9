//! The PD side of OSDP, sans-IO: what a card reader or I/O module does with
//! the control panel's commands. Portier's PD simulator (tests, demo) is this
//! core behind a serial driver.
//!
//! It answers only frames addressed to it (or broadcast), resends its last
//! reply when the CP repeats a sequence number, restarts on sequence 0,
//! requires Secure Channel for everything but ID/CAP/handshake once keyed,
//! and accepts SCBK-D only in install mode.

use std::collections::VecDeque;

use super::channel::{SecureSession, Side};
use super::frame::{BROADCAST, Frame, FrameReader, Integrity, Received, SecurityBlock, scs};
use super::message::{
    Capability, ClientCryptogram, Command, KeypadData, LocalStatus, NakCode, PdIdentity, RawCard,
    Reply, command_code,
};
use super::secure::{SCBK_DEFAULT, Scbk, SessionKeys, ct_eq};

/// Configuration of a simulated PD.
#[derive(Debug, Clone)]
pub struct PeripheralConfig {
    /// Address 0..=126.
    pub address: u8,
    /// Base key; `None` = plaintext only.
    pub scbk: Option<Scbk>,
    /// Accept SCBK-D for a KEYSET (install mode).
    pub install_mode: bool,
    /// What PDID answers.
    pub identity: PdIdentity,
    /// What PDCAP answers.
    pub capabilities: Vec<Capability>,
    /// Number of inputs.
    pub inputs: usize,
    /// Number of outputs.
    pub outputs: usize,
    /// How it takes files (osdp_FILETRANSFER).
    pub files: FileReceive,
}

/// How the simulated PD answers file fragments: what a slow or small
/// reader asks of the CP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileReceive {
    /// FtDelay in every FTSTAT (ms).
    pub delay_ms: u16,
    /// FtUpdateMsgMax in every FTSTAT; a larger fragment after it is
    /// refused as malformed (-3). 0 = no limit.
    pub max_fragment: u16,
    /// Answer the last fragment with "rebooting" (2) instead of
    /// "processed" (1).
    pub reboot: bool,
}

/// The largest file the simulator takes.
const MAX_RECEIVED_FILE: u32 = 16 * 1024 * 1024;

impl PeripheralConfig {
    /// Portier's reader simulator: vendor "POR", serial 0x1000 + address,
    /// contact monitoring (4 inputs), 2 outputs, a card reader, and Secure
    /// Channel when keyed.
    pub fn simulator(address: u8, scbk: Option<Scbk>) -> Self {
        Self {
            address,
            scbk,
            install_mode: false,
            identity: PdIdentity {
                vendor: [0x50, 0x4F, 0x52],
                model: 1,
                version: 1,
                serial: 0x1000 + u32::from(address),
                firmware: [0, 1, 0],
            },
            capabilities: vec![
                Capability {
                    function: 1,
                    compliance: 1,
                    count: 4,
                },
                Capability {
                    function: 2,
                    compliance: 1,
                    count: 2,
                },
                Capability {
                    function: 4,
                    compliance: 1,
                    count: 1,
                },
                Capability {
                    function: 9,
                    compliance: 1,
                    count: 1,
                },
            ],
            inputs: 4,
            outputs: 2,
            files: FileReceive::default(),
        }
    }
}

/// What the PD was told to do, for the simulator's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeripheralEvent {
    /// A command that drives something (LED, buzzer, output, text, comset, mfg).
    Command(Command),
    /// A new base key was installed (the owner should persist it).
    KeyInstalled(Scbk),
    /// A Secure Channel session was established.
    SecureChannel,
    /// A whole file arrived ([`Peripheral::received_file`]).
    FileReceived,
}

/// A simulated PD.
#[derive(Debug)]
pub struct Peripheral {
    config: PeripheralConfig,
    reader: FrameReader,
    session: Option<SecureSession>,
    handshake: Option<(SessionKeys, [u8; 8], [u8; 8])>,
    last_reply: Option<(u8, Vec<u8>)>,
    reports: VecDeque<Reply>,
    inputs: Vec<u8>,
    outputs: Vec<u8>,
    tamper: u8,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<PeripheralEvent>,
    /// A file being received: its type and bytes.
    receiving: Option<(u8, Vec<u8>)>,
    /// The last file received whole.
    received: Option<(u8, Vec<u8>)>,
    /// The PD has announced its FtUpdateMsgMax.
    fragment_limit_sent: bool,
}

impl Peripheral {
    /// A PD in its power-on state.
    pub fn new(config: PeripheralConfig) -> Self {
        let inputs = vec![0; config.inputs];
        let outputs = vec![0; config.outputs];
        Self {
            config,
            reader: FrameReader::new(),
            session: None,
            handshake: None,
            last_reply: None,
            reports: VecDeque::new(),
            inputs,
            outputs,
            tamper: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            receiving: None,
            received: None,
            fragment_limit_sent: false,
        }
    }

    /// The PD's address.
    pub fn address(&self) -> u8 {
        self.config.address
    }

    /// The PD's current base key.
    pub fn scbk(&self) -> Option<&Scbk> {
        self.config.scbk.as_ref()
    }

    /// Whether a Secure Channel session is up.
    pub fn is_secure(&self) -> bool {
        self.session.is_some()
    }

    /// Output states (one byte each).
    pub fn outputs(&self) -> &[u8] {
        &self.outputs
    }

    /// Report a card read at the next POLL.
    pub fn present_card(&mut self, card: RawCard) {
        self.reports.push_back(Reply::RawCard(card));
    }

    /// Report keypad digits at the next POLL.
    pub fn press_keys(&mut self, digits: &[u8]) {
        self.reports.push_back(Reply::Keypad(KeypadData {
            reader: 0,
            digits: digits.to_vec(),
        }));
    }

    /// Change an input; reported at the next POLL.
    pub fn set_input(&mut self, input: usize, active: bool) {
        if let Some(slot) = self.inputs.get_mut(input) {
            *slot = u8::from(active);
            self.reports
                .push_back(Reply::InputStatus(self.inputs.clone()));
        }
    }

    /// Change the tamper state; reported at the next POLL.
    pub fn set_tamper(&mut self, tamper: bool) {
        self.tamper = u8::from(tamper);
        self.reports.push_back(Reply::LocalStatus(LocalStatus {
            tamper: self.tamper,
            power: 0,
        }));
    }

    /// Bytes from the wire. `entropy` supplies RND.B for handshakes.
    pub fn handle_input(&mut self, bytes: &[u8], entropy: &mut dyn FnMut(&mut [u8])) {
        self.reader.push(bytes);
        while let Some(item) = self.reader.next_frame() {
            let Ok(rx) = item else { continue };
            let frame = &rx.frame;
            if frame.is_reply
                || (frame.address != self.config.address && frame.address != BROADCAST)
            {
                continue;
            }
            if frame.sequence == 0 {
                self.session = None;
                self.handshake = None;
            } else if let Some((seq, bytes)) = &self.last_reply
                && *seq == frame.sequence
            {
                // The CP did not get our reply: send it again as is.
                self.transmit.push_back(bytes.clone());
                continue;
            }
            let reply_frame = self.respond(&rx, entropy);
            let bytes = reply_frame.encode(rx.had_mark).expect("own reply fits");
            self.last_reply = Some((frame.sequence, bytes.clone()));
            self.transmit.push_back(bytes);
        }
    }

    /// The next reply to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next thing the CP told this PD to do.
    pub fn poll_event(&mut self) -> Option<PeripheralEvent> {
        self.events.pop_front()
    }

    fn reply_frame(&self, rx: &Received, reply: &Reply, security: Option<SecurityBlock>) -> Frame {
        let mut data = Vec::new();
        reply.encode_data(&mut data);
        Frame {
            address: self.config.address,
            is_reply: true,
            sequence: rx.frame.sequence,
            integrity: Integrity::Crc16,
            security,
            code: reply.code(),
            data,
            mac: None,
        }
    }

    fn respond(&mut self, rx: &Received, entropy: &mut dyn FnMut(&mut [u8])) -> Frame {
        let sb_kind = rx.frame.security.as_ref().map(|sb| sb.kind);
        match sb_kind {
            Some(scs::SCS_11) => return self.challenge(rx, entropy),
            Some(scs::SCS_13) => return self.server_cryptogram(rx),
            _ => {}
        }
        let secured = matches!(sb_kind, Some(scs::SCS_15 | scs::SCS_17));
        let data = if secured {
            let Some(session) = &mut self.session else {
                return self.nak(rx, NakCode::UnsupportedSecurityBlock);
            };
            match session.open(rx) {
                Ok(data) => data,
                Err(_) => {
                    // A bad MAC ends the session; the CP must start over.
                    self.session = None;
                    return self.nak(rx, NakCode::UnsupportedSecurityBlock);
                }
            }
        } else {
            let code = rx.frame.code;
            let always_plain = matches!(code, command_code::ID | command_code::CAP);
            if self.config.scbk.is_some() && !always_plain {
                return self.nak(rx, NakCode::EncryptionRequired);
            }
            if self.session.is_some() && !always_plain {
                return self.nak(rx, NakCode::EncryptionRequired);
            }
            rx.frame.data.clone()
        };
        let reply = match Command::decode(rx.frame.code, &data) {
            Ok(command) => self.execute(command, secured),
            Err(_) => Reply::Nak(NakCode::CommandLength),
        };
        let mut frame = self.reply_frame(rx, &reply, None);
        if secured && let Some(session) = &mut self.session {
            session.seal(&mut frame).expect("own reply fits");
        }
        frame
    }

    fn nak(&self, rx: &Received, code: NakCode) -> Frame {
        self.reply_frame(rx, &Reply::Nak(code), None)
    }

    /// The last file received whole: its type and bytes.
    pub fn received_file(&self) -> Option<&(u8, Vec<u8>)> {
        self.received.as_ref()
    }

    /// Bytes of the file being received so far (its total size).
    pub fn receiving_len(&self) -> Option<usize> {
        self.receiving.as_ref().map(|(_, d)| d.len())
    }

    fn take_fragment(&mut self, fragment: &super::message::FileFragment) -> Reply {
        let files = self.config.files;
        let status = |status: i16| {
            Reply::FileTransferStatus(super::message::FileTransferStatus {
                action: 0x01,
                delay_ms: files.delay_ms,
                status,
                max_fragment: files.max_fragment,
            })
        };
        let too_big = files.max_fragment != 0
            && self.fragment_limit_sent
            && fragment.data.len() > usize::from(files.max_fragment);
        let end = u64::from(fragment.offset) + fragment.data.len() as u64;
        if too_big
            || fragment.total_size == 0
            || fragment.total_size > MAX_RECEIVED_FILE
            || end > u64::from(fragment.total_size)
        {
            self.receiving = None;
            return status(-3);
        }
        self.fragment_limit_sent = true;
        let fresh = fragment.offset == 0 && !fragment.data.is_empty();
        let receiving = match &mut self.receiving {
            Some((kind, data))
                if !fresh
                    && *kind == fragment.file_type
                    && data.len() as u64 == u64::from(fragment.total_size) =>
            {
                data
            }
            _ => {
                let data = vec![0; fragment.total_size as usize];
                &mut self.receiving.insert((fragment.file_type, data)).1
            }
        };
        let start = fragment.offset as usize;
        receiving[start..start + fragment.data.len()].copy_from_slice(&fragment.data);
        if end == u64::from(fragment.total_size) {
            self.received = self.receiving.take();
            self.events.push_back(PeripheralEvent::FileReceived);
            return status(if files.reboot { 2 } else { 1 });
        }
        status(0)
    }

    fn execute(&mut self, command: Command, secured: bool) -> Reply {
        match command {
            Command::FileTransfer(ref fragment) => self.take_fragment(fragment),
            Command::Abort => {
                self.receiving = None;
                Reply::Ack
            }
            Command::Poll => self.reports.pop_front().unwrap_or(Reply::Ack),
            Command::Id => Reply::Identity(self.config.identity),
            Command::Capabilities => Reply::Capabilities(self.config.capabilities.clone()),
            Command::LocalStatus => Reply::LocalStatus(LocalStatus {
                tamper: self.tamper,
                power: 0,
            }),
            Command::InputStatus => Reply::InputStatus(self.inputs.clone()),
            Command::OutputStatus => Reply::OutputStatus(self.outputs.clone()),
            Command::ReaderStatus => Reply::ReaderStatus(vec![0]),
            Command::Output(ref records) => {
                for r in records {
                    if let Some(slot) = self.outputs.get_mut(usize::from(r.output)) {
                        use super::message::OutputAction::*;
                        match r.action {
                            PermanentOnAbortTimed | PermanentOnAllowTimed | TimedOn => *slot = 1,
                            PermanentOffAbortTimed | PermanentOffAllowTimed | TimedOff => *slot = 0,
                            Nop => {}
                        }
                    }
                }
                self.events.push_back(PeripheralEvent::Command(command));
                Reply::Ack
            }
            Command::KeySet(ref keyset) => {
                if !secured || keyset.key_type != 1 || keyset.key.len() != 16 {
                    return Reply::Nak(NakCode::UnableToProcess);
                }
                let mut key = [0u8; 16];
                key.copy_from_slice(&keyset.key);
                self.config.scbk = Some(Scbk(key));
                self.config.install_mode = false;
                self.events
                    .push_back(PeripheralEvent::KeyInstalled(Scbk(key)));
                Reply::Ack
            }
            Command::ComSet(settings) => {
                self.events.push_back(PeripheralEvent::Command(command));
                Reply::ComSettings(settings)
            }
            Command::Led(_) | Command::Buzzer(_) | Command::Text(_) | Command::Manufacturer(_) => {
                self.events.push_back(PeripheralEvent::Command(command));
                Reply::Ack
            }
            Command::AcuReceiveSize(_) | Command::KeepActive(_) => Reply::Ack,
            Command::Challenge(_) | Command::ServerCryptogram(_) => {
                Reply::Nak(NakCode::UnsupportedSecurityBlock)
            }
        }
    }

    fn handshake_key(&self, key_type: u8) -> Option<Scbk> {
        match key_type {
            0 if self.config.install_mode => Some(SCBK_DEFAULT),
            1 => self.config.scbk.clone(),
            _ => None,
        }
    }

    fn challenge(&mut self, rx: &Received, entropy: &mut dyn FnMut(&mut [u8])) -> Frame {
        self.session = None;
        let key_type = rx
            .frame
            .security
            .as_ref()
            .and_then(|sb| sb.data.first().copied())
            .unwrap_or(1);
        let (Some(key), Ok(Command::Challenge(rnd_a))) = (
            self.handshake_key(key_type),
            Command::decode(rx.frame.code, &rx.frame.data),
        ) else {
            return self.nak(rx, NakCode::UnsupportedSecurityBlock);
        };
        let mut rnd_b = [0u8; 8];
        entropy(&mut rnd_b);
        let keys = SessionKeys::derive(&key, &rnd_a);
        let cryptogram = keys.client_cryptogram(&rnd_a, &rnd_b);
        self.handshake = Some((keys, rnd_a, rnd_b));
        let mut client_uid = [0u8; 8];
        client_uid[..3].copy_from_slice(&self.config.identity.vendor);
        client_uid[4..].copy_from_slice(&self.config.identity.serial.to_le_bytes());
        let reply = Reply::ClientCryptogram(ClientCryptogram {
            client_uid,
            rnd_b,
            cryptogram,
        });
        let sb = SecurityBlock {
            kind: scs::SCS_12,
            data: vec![key_type],
        };
        self.reply_frame(rx, &reply, Some(sb))
    }

    fn server_cryptogram(&mut self, rx: &Received) -> Frame {
        let Some((keys, rnd_a, rnd_b)) = self.handshake.take() else {
            return self.nak(rx, NakCode::UnsupportedSecurityBlock);
        };
        let Ok(Command::ServerCryptogram(got)) = Command::decode(rx.frame.code, &rx.frame.data)
        else {
            return self.nak(rx, NakCode::UnsupportedSecurityBlock);
        };
        let expected = keys.server_cryptogram(&rnd_a, &rnd_b);
        if !ct_eq(&expected, &got) {
            return self.nak(rx, NakCode::UnsupportedSecurityBlock);
        }
        let rmac = keys.initial_rmac(&got);
        self.session = Some(SecureSession::new(Side::Peripheral, keys, rmac));
        self.events.push_back(PeripheralEvent::SecureChannel);
        let sb = SecurityBlock {
            kind: scs::SCS_14,
            data: vec![1],
        };
        self.reply_frame(rx, &Reply::InitialRmac(rmac), Some(sb))
    }
}
