//! Typed OSDP v2.2 commands (CP → PD) and replies (PD → CP).
//!
//! This module owns the mapping between a command/reply code plus its data
//! bytes and a typed value. It knows nothing about framing, sequence numbers or
//! Secure Channel: `frame` gives it `(code, data)` after any decryption.
//! Decoding is checked: a short, long or otherwise malformed payload is a
//! [`MessageError`], never a panic.

use thiserror::Error;

/// Why a command or reply payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    /// The code is not one this implementation knows.
    #[error("unknown code 0x{0:02x}")]
    UnknownCode(u8),
    /// The payload length does not fit the message.
    #[error("code 0x{code:02x}: payload of {len} bytes is malformed ({why})")]
    BadLength {
        /// Command or reply code.
        code: u8,
        /// Payload length received.
        len: usize,
        /// What was expected.
        why: &'static str,
    },
    /// A field holds a value the spec does not allow.
    #[error("code 0x{code:02x}: invalid field {field}")]
    BadField {
        /// Command or reply code.
        code: u8,
        /// Field name.
        field: &'static str,
    },
}

/// Command codes (OSDP v2.2, table 5).
#[allow(missing_docs)]
pub mod command_code {
    pub const POLL: u8 = 0x60;
    pub const ID: u8 = 0x61;
    pub const CAP: u8 = 0x62;
    pub const LSTAT: u8 = 0x64;
    pub const ISTAT: u8 = 0x65;
    pub const OSTAT: u8 = 0x66;
    pub const RSTAT: u8 = 0x67;
    pub const OUT: u8 = 0x68;
    pub const LED: u8 = 0x69;
    pub const BUZ: u8 = 0x6A;
    pub const TEXT: u8 = 0x6B;
    pub const COMSET: u8 = 0x6E;
    pub const KEYSET: u8 = 0x75;
    pub const CHLNG: u8 = 0x76;
    pub const SCRYPT: u8 = 0x77;
    pub const ACURXSIZE: u8 = 0x7B;
    pub const FILETRANSFER: u8 = 0x7C;
    pub const ABORT: u8 = 0xA2;
    pub const MFG: u8 = 0x80;
    pub const KEEPACTIVE: u8 = 0xA7;
}

/// Reply codes (OSDP v2.2, table 6).
#[allow(missing_docs)]
pub mod reply_code {
    pub const ACK: u8 = 0x40;
    pub const NAK: u8 = 0x41;
    pub const PDID: u8 = 0x45;
    pub const PDCAP: u8 = 0x46;
    pub const LSTATR: u8 = 0x48;
    pub const ISTATR: u8 = 0x49;
    pub const OSTATR: u8 = 0x4A;
    pub const RSTATR: u8 = 0x4B;
    pub const RAW: u8 = 0x50;
    pub const FMT: u8 = 0x51;
    pub const KEYPAD: u8 = 0x53;
    pub const COM: u8 = 0x54;
    pub const CCRYPT: u8 = 0x76;
    pub const RMAC_I: u8 = 0x78;
    pub const BUSY: u8 = 0x79;
    pub const FTSTAT: u8 = 0x7A;
    pub const MFGREP: u8 = 0x90;
}

/// A command from the CP to a PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// osdp_POLL: "anything to report?"
    Poll,
    /// osdp_ID: request the PD's identity (reply PDID).
    Id,
    /// osdp_CAP: request the PD's capabilities (reply PDCAP).
    Capabilities,
    /// osdp_LSTAT: local status (tamper, power).
    LocalStatus,
    /// osdp_ISTAT: input status.
    InputStatus,
    /// osdp_OSTAT: output status.
    OutputStatus,
    /// osdp_RSTAT: attached reader tamper status.
    ReaderStatus,
    /// osdp_OUT: drive one or more outputs (relays).
    Output(Vec<OutputControl>),
    /// osdp_LED: LED control records.
    Led(Vec<LedControl>),
    /// osdp_BUZ: buzzer control.
    Buzzer(BuzzerControl),
    /// osdp_TEXT: text output.
    Text(TextControl),
    /// osdp_COMSET: change the PD's address and baud rate.
    ComSet(ComSettings),
    /// osdp_KEYSET: install a new Secure Channel base key.
    KeySet(KeySet),
    /// osdp_CHLNG: Secure Channel challenge carrying RND.A.
    Challenge([u8; 8]),
    /// osdp_SCRYPT: the CP's (server) cryptogram.
    ServerCryptogram([u8; 16]),
    /// osdp_ACURXSIZE: largest message the CP can receive.
    AcuReceiveSize(u16),
    /// osdp_KEEPACTIVE: keep a card read session active for this many ms.
    KeepActive(u16),
    /// osdp_MFG: manufacturer specific command.
    Manufacturer(ManufacturerData),
    /// osdp_FILETRANSFER: one fragment of a file (OSDP v2.2 §6.25).
    FileTransfer(FileFragment),
    /// osdp_ABORT: stop the current operation (a file transfer among them).
    Abort,
}

/// A reply from a PD to the CP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// osdp_ACK.
    Ack,
    /// osdp_NAK with its error code.
    Nak(NakCode),
    /// osdp_PDID: identity.
    Identity(PdIdentity),
    /// osdp_PDCAP: capability records.
    Capabilities(Vec<Capability>),
    /// osdp_LSTATR: local status.
    LocalStatus(LocalStatus),
    /// osdp_ISTATR: one byte per input (0 inactive, 1 active).
    InputStatus(Vec<u8>),
    /// osdp_OSTATR: one byte per output.
    OutputStatus(Vec<u8>),
    /// osdp_RSTATR: one byte per attached reader (tamper status).
    ReaderStatus(Vec<u8>),
    /// osdp_RAW: raw card data.
    RawCard(RawCard),
    /// osdp_FMT: formatted card data (deprecated in 2.2 but still sent).
    FormattedCard(FormattedCard),
    /// osdp_KEYPAD: keypad digits.
    Keypad(KeypadData),
    /// osdp_COM: communication settings now in use.
    ComSettings(ComSettings),
    /// osdp_BUSY: PD busy, retry later.
    Busy,
    /// osdp_CCRYPT: the PD's answer to CHLNG.
    ClientCryptogram(ClientCryptogram),
    /// osdp_RMAC_I: the initial reply MAC, ends the SC handshake.
    InitialRmac([u8; 16]),
    /// osdp_MFGREP: manufacturer specific reply.
    Manufacturer(ManufacturerData),
    /// osdp_FTSTAT: the PD's answer to a file fragment (OSDP v2.2 §7.25).
    FileTransferStatus(FileTransferStatus),
}

/// osdp_NAK error codes (OSDP v2.2, table 48). Unknown codes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NakCode {
    /// 0: no error.
    None,
    /// 1: message check character(s) error (bad CRC/checksum).
    CheckCharacter,
    /// 2: command length error.
    CommandLength,
    /// 3: unknown command code.
    UnknownCommand,
    /// 4: sequence number error.
    SequenceNumber,
    /// 5: unsupported security block or security conditions not met.
    UnsupportedSecurityBlock,
    /// 6: encrypted communication required.
    EncryptionRequired,
    /// 7: BIO type not supported.
    BioTypeNotSupported,
    /// 8: BIO format not supported.
    BioFormatNotSupported,
    /// 9: unable to process command record.
    UnableToProcess,
    /// Any other code.
    Other(u8),
}

/// One osdp_OUT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputControl {
    /// Output number (0-based).
    pub output: u8,
    /// Control code (see [`OutputAction`]).
    pub action: OutputAction,
    /// Timer in units of 100 ms (for the timed actions).
    pub timer_100ms: u16,
}

/// osdp_OUT control codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputAction {
    /// 0: no operation.
    Nop,
    /// 1: permanent off, abort timed operation.
    PermanentOffAbortTimed,
    /// 2: permanent on, abort timed operation.
    PermanentOnAbortTimed,
    /// 3: permanent off, allow timed operation to finish.
    PermanentOffAllowTimed,
    /// 4: permanent on, allow timed operation to finish.
    PermanentOnAllowTimed,
    /// 5: temporary on for the timer, then resume permanent state.
    TimedOn,
    /// 6: temporary off for the timer, then resume permanent state.
    TimedOff,
}

/// LED colours (OSDP v2.2 table 21). Unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedColor {
    /// 0.
    Off,
    /// 1.
    Red,
    /// 2.
    Green,
    /// 3.
    Amber,
    /// 4.
    Blue,
    /// 5.
    Magenta,
    /// 6.
    Cyan,
    /// 7.
    White,
    /// Any other value.
    Other(u8),
}

/// The temporary part of an LED record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedTemporary {
    /// 0 no-op, 1 cancel temporary, 2 set temporary and start timer.
    pub control: u8,
    /// On time in 100 ms units.
    pub on_100ms: u8,
    /// Off time in 100 ms units.
    pub off_100ms: u8,
    /// Colour during on time.
    pub on_color: LedColor,
    /// Colour during off time.
    pub off_color: LedColor,
    /// Duration of the temporary state in 100 ms units.
    pub timer_100ms: u16,
}

/// The permanent part of an LED record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedPermanent {
    /// 0 no-op, 1 set permanent state.
    pub control: u8,
    /// On time in 100 ms units.
    pub on_100ms: u8,
    /// Off time in 100 ms units.
    pub off_100ms: u8,
    /// Colour during on time.
    pub on_color: LedColor,
    /// Colour during off time.
    pub off_color: LedColor,
}

/// One osdp_LED record (14 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedControl {
    /// Reader number (0 = the PD itself).
    pub reader: u8,
    /// LED number.
    pub led: u8,
    /// Temporary settings.
    pub temporary: LedTemporary,
    /// Permanent settings.
    pub permanent: LedPermanent,
}

/// osdp_BUZ (5 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuzzerControl {
    /// Reader number.
    pub reader: u8,
    /// Tone code: 0 no tone (off), 1 off, 2 default tone.
    pub tone: u8,
    /// On time in 100 ms units.
    pub on_100ms: u8,
    /// Off time in 100 ms units.
    pub off_100ms: u8,
    /// Number of cycles, 0 = forever.
    pub count: u8,
}

/// osdp_TEXT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextControl {
    /// Reader number.
    pub reader: u8,
    /// Text command (1 permanent no wrap, 2 permanent wrap, 3 temp no wrap, 4 temp wrap).
    pub command: u8,
    /// Temporary text time in seconds.
    pub temp_seconds: u8,
    /// Row offset (1-based).
    pub row: u8,
    /// Column offset (1-based).
    pub column: u8,
    /// The text (printable ASCII).
    pub text: Vec<u8>,
}

/// osdp_COMSET / osdp_COM: address and baud rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComSettings {
    /// PD address 0..=126.
    pub address: u8,
    /// Baud rate.
    pub baud: u32,
}

/// osdp_KEYSET: a new SCBK.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySet {
    /// Key type: 1 = SCBK.
    pub key_type: u8,
    /// The key bytes (16 for SCBK).
    pub key: Vec<u8>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach logs.
        f.debug_struct("KeySet")
            .field("key_type", &self.key_type)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Manufacturer-specific data: vendor OUI and opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManufacturerData {
    /// IEEE OUI of the vendor.
    pub vendor: [u8; 3],
    /// Opaque payload.
    pub data: Vec<u8>,
}

/// One osdp_FILETRANSFER fragment: an 11-byte header, then the data.
#[derive(Clone, PartialEq, Eq)]
pub struct FileFragment {
    /// File type (FtType): 1 = opaque firmware image, others vendor-defined.
    pub file_type: u8,
    /// Size of the whole file in bytes (FtSizeTotal).
    pub total_size: u32,
    /// Where this fragment starts in the file (FtOffset).
    pub offset: u32,
    /// The fragment (FtFragmentSize is its length; at most 65 535 bytes).
    pub data: Vec<u8>,
}

impl std::fmt::Debug for FileFragment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A fragment can be a kilobyte: its length says enough in a log.
        f.debug_struct("FileFragment")
            .field("file_type", &self.file_type)
            .field("total_size", &self.total_size)
            .field("offset", &self.offset)
            .field("len", &self.data.len())
            .finish()
    }
}

/// osdp_FTSTAT (7 bytes): how the PD took the last fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileTransferStatus {
    /// FtAction bits: 0x01 the PD can interleave polls, 0x02 it wants the
    /// rest in plaintext (Portier never obliges), 0x04 it has a poll
    /// response waiting.
    pub action: u8,
    /// FtDelay: wait this many milliseconds before the next fragment.
    pub delay_ms: u16,
    /// FtStatusDetail: 0 go on, 1 file processed, 2 rebooting to apply it,
    /// 3 finished (keep-alive), negative: aborted (-1), unrecognised
    /// contents (-2), malformed (-3).
    pub status: i16,
    /// FtUpdateMsgMax: the largest fragment the PD wants from now on; 0
    /// keeps the current size.
    pub max_fragment: u16,
}

/// osdp_PDID (12 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdIdentity {
    /// IEEE OUI of the vendor.
    pub vendor: [u8; 3],
    /// Model number.
    pub model: u8,
    /// Model version.
    pub version: u8,
    /// Serial number (little-endian on the wire).
    pub serial: u32,
    /// Firmware major, minor, build.
    pub firmware: [u8; 3],
}

/// One osdp_PDCAP record (3 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Function code (1 contact status monitoring, 2 output control, …, 9 communication security, …).
    pub function: u8,
    /// Compliance level.
    pub compliance: u8,
    /// Number of items.
    pub count: u8,
}

/// osdp_LSTATR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalStatus {
    /// 0 normal, 1 tamper.
    pub tamper: u8,
    /// 0 normal, 1 power failure.
    pub power: u8,
}

/// osdp_RAW: raw card bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCard {
    /// Reader number.
    pub reader: u8,
    /// Format code: 0 not specified (raw bits), 1 Wiegand.
    pub format: u8,
    /// Number of valid bits.
    pub bits: u16,
    /// The bits, first bit in the high bit of the first byte.
    pub data: Vec<u8>,
}

/// osdp_FMT: formatted (ASCII) card data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormattedCard {
    /// Reader number.
    pub reader: u8,
    /// Read direction: 0 forward, 1 reverse.
    pub direction: u8,
    /// The characters.
    pub data: Vec<u8>,
}

/// osdp_KEYPAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeypadData {
    /// Reader number.
    pub reader: u8,
    /// ASCII digits, '*' = 0x7F, '#' = 0x0D as the spec encodes them.
    pub digits: Vec<u8>,
}

/// osdp_CCRYPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCryptogram {
    /// The PD's unique id.
    pub client_uid: [u8; 8],
    /// RND.B, the PD's random number.
    pub rnd_b: [u8; 8],
    /// The PD's cryptogram.
    pub cryptogram: [u8; 16],
}

impl From<NakCode> for u8 {
    fn from(code: NakCode) -> u8 {
        match code {
            NakCode::None => 0,
            NakCode::CheckCharacter => 1,
            NakCode::CommandLength => 2,
            NakCode::UnknownCommand => 3,
            NakCode::SequenceNumber => 4,
            NakCode::UnsupportedSecurityBlock => 5,
            NakCode::EncryptionRequired => 6,
            NakCode::BioTypeNotSupported => 7,
            NakCode::BioFormatNotSupported => 8,
            NakCode::UnableToProcess => 9,
            NakCode::Other(v) => v,
        }
    }
}

impl From<u8> for NakCode {
    fn from(v: u8) -> Self {
        match v {
            0 => NakCode::None,
            1 => NakCode::CheckCharacter,
            2 => NakCode::CommandLength,
            3 => NakCode::UnknownCommand,
            4 => NakCode::SequenceNumber,
            5 => NakCode::UnsupportedSecurityBlock,
            6 => NakCode::EncryptionRequired,
            7 => NakCode::BioTypeNotSupported,
            8 => NakCode::BioFormatNotSupported,
            9 => NakCode::UnableToProcess,
            other => NakCode::Other(other),
        }
    }
}

impl From<LedColor> for u8 {
    fn from(color: LedColor) -> u8 {
        match color {
            LedColor::Off => 0,
            LedColor::Red => 1,
            LedColor::Green => 2,
            LedColor::Amber => 3,
            LedColor::Blue => 4,
            LedColor::Magenta => 5,
            LedColor::Cyan => 6,
            LedColor::White => 7,
            LedColor::Other(v) => v,
        }
    }
}

impl From<u8> for LedColor {
    fn from(v: u8) -> Self {
        match v {
            0 => LedColor::Off,
            1 => LedColor::Red,
            2 => LedColor::Green,
            3 => LedColor::Amber,
            4 => LedColor::Blue,
            5 => LedColor::Magenta,
            6 => LedColor::Cyan,
            7 => LedColor::White,
            other => LedColor::Other(other),
        }
    }
}

impl From<OutputAction> for u8 {
    fn from(action: OutputAction) -> u8 {
        match action {
            OutputAction::Nop => 0,
            OutputAction::PermanentOffAbortTimed => 1,
            OutputAction::PermanentOnAbortTimed => 2,
            OutputAction::PermanentOffAllowTimed => 3,
            OutputAction::PermanentOnAllowTimed => 4,
            OutputAction::TimedOn => 5,
            OutputAction::TimedOff => 6,
        }
    }
}

impl OutputAction {
    /// The action for a control code, if the spec defines one.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => OutputAction::Nop,
            1 => OutputAction::PermanentOffAbortTimed,
            2 => OutputAction::PermanentOnAbortTimed,
            3 => OutputAction::PermanentOffAllowTimed,
            4 => OutputAction::PermanentOnAllowTimed,
            5 => OutputAction::TimedOn,
            6 => OutputAction::TimedOff,
            _ => return None,
        })
    }
}

/// A checked reader over a payload: every accessor returns an error rather
/// than panicking when the payload is short.
struct Payload<'a> {
    code: u8,
    data: &'a [u8],
}

impl<'a> Payload<'a> {
    fn new(code: u8, data: &'a [u8]) -> Self {
        Self { code, data }
    }

    fn bad(&self, why: &'static str) -> MessageError {
        MessageError::BadLength {
            code: self.code,
            len: self.data.len(),
            why,
        }
    }

    /// Require exactly `n` bytes.
    fn exact(&self, n: usize, why: &'static str) -> Result<&'a [u8], MessageError> {
        if self.data.len() == n {
            Ok(self.data)
        } else {
            Err(self.bad(why))
        }
    }

    fn array<const N: usize>(&self, why: &'static str) -> Result<[u8; N], MessageError> {
        let bytes = self.exact(N, why)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Split into records of `n` bytes, at least one.
    fn records(
        &self,
        n: usize,
        why: &'static str,
    ) -> Result<std::slice::ChunksExact<'a, u8>, MessageError> {
        if self.data.is_empty() || !self.data.len().is_multiple_of(n) {
            return Err(self.bad(why));
        }
        Ok(self.data.chunks_exact(n))
    }

    fn u16_le(&self, why: &'static str) -> Result<u16, MessageError> {
        let b = self.array::<2>(why)?;
        Ok(u16::from_le_bytes(b))
    }
}

fn encode_com(settings: &ComSettings, out: &mut Vec<u8>) {
    out.push(settings.address);
    out.extend_from_slice(&settings.baud.to_le_bytes());
}

fn decode_com(p: &Payload<'_>) -> Result<ComSettings, MessageError> {
    let b = p.array::<5>("address + 4-byte baud")?;
    Ok(ComSettings {
        address: b[0],
        baud: u32::from_le_bytes([b[1], b[2], b[3], b[4]]),
    })
}

fn decode_manufacturer(p: &Payload<'_>) -> Result<ManufacturerData, MessageError> {
    if p.data.len() < 3 {
        return Err(p.bad("3-byte vendor code + data"));
    }
    Ok(ManufacturerData {
        vendor: [p.data[0], p.data[1], p.data[2]],
        data: p.data[3..].to_vec(),
    })
}

fn encode_manufacturer(m: &ManufacturerData, out: &mut Vec<u8>) {
    out.extend_from_slice(&m.vendor);
    out.extend_from_slice(&m.data);
}

impl Command {
    /// The command code on the wire.
    pub fn code(&self) -> u8 {
        use command_code::*;
        match self {
            Command::Poll => POLL,
            Command::Id => ID,
            Command::Capabilities => CAP,
            Command::LocalStatus => LSTAT,
            Command::InputStatus => ISTAT,
            Command::OutputStatus => OSTAT,
            Command::ReaderStatus => RSTAT,
            Command::Output(_) => OUT,
            Command::Led(_) => LED,
            Command::Buzzer(_) => BUZ,
            Command::Text(_) => TEXT,
            Command::ComSet(_) => COMSET,
            Command::KeySet(_) => KEYSET,
            Command::Challenge(_) => CHLNG,
            Command::ServerCryptogram(_) => SCRYPT,
            Command::AcuReceiveSize(_) => ACURXSIZE,
            Command::KeepActive(_) => KEEPACTIVE,
            Command::Manufacturer(_) => MFG,
            Command::FileTransfer(_) => FILETRANSFER,
            Command::Abort => ABORT,
        }
    }

    /// Append the command's data bytes (everything after the code) to `out`.
    pub fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            Command::Poll
            | Command::LocalStatus
            | Command::InputStatus
            | Command::OutputStatus
            | Command::ReaderStatus => {}
            Command::Id | Command::Capabilities => out.push(0),
            Command::Output(records) => {
                for r in records {
                    out.push(r.output);
                    out.push(r.action.into());
                    out.extend_from_slice(&r.timer_100ms.to_le_bytes());
                }
            }
            Command::Led(records) => {
                for r in records {
                    let t = &r.temporary;
                    let p = &r.permanent;
                    out.extend_from_slice(&[r.reader, r.led, t.control, t.on_100ms, t.off_100ms]);
                    out.extend_from_slice(&[t.on_color.into(), t.off_color.into()]);
                    out.extend_from_slice(&t.timer_100ms.to_le_bytes());
                    out.extend_from_slice(&[p.control, p.on_100ms, p.off_100ms]);
                    out.extend_from_slice(&[p.on_color.into(), p.off_color.into()]);
                }
            }
            Command::Buzzer(b) => {
                out.extend_from_slice(&[b.reader, b.tone, b.on_100ms, b.off_100ms, b.count])
            }
            Command::Text(t) => {
                // The length byte bounds the text; `decode` enforces the same.
                let len = t.text.len().min(usize::from(u8::MAX));
                out.extend_from_slice(&[
                    t.reader,
                    t.command,
                    t.temp_seconds,
                    t.row,
                    t.column,
                    len as u8,
                ]);
                out.extend_from_slice(&t.text[..len]);
            }
            Command::ComSet(c) => encode_com(c, out),
            Command::KeySet(k) => {
                let len = k.key.len().min(usize::from(u8::MAX));
                out.extend_from_slice(&[k.key_type, len as u8]);
                out.extend_from_slice(&k.key[..len]);
            }
            Command::Challenge(rnd) => out.extend_from_slice(rnd),
            Command::ServerCryptogram(c) => out.extend_from_slice(c),
            Command::AcuReceiveSize(n) | Command::KeepActive(n) => {
                out.extend_from_slice(&n.to_le_bytes())
            }
            Command::Manufacturer(m) => encode_manufacturer(m, out),
            Command::FileTransfer(f) => {
                // The fragment size field bounds the data; `decode` enforces the same.
                let len = f.data.len().min(usize::from(u16::MAX));
                out.push(f.file_type);
                out.extend_from_slice(&f.total_size.to_le_bytes());
                out.extend_from_slice(&f.offset.to_le_bytes());
                out.extend_from_slice(&(len as u16).to_le_bytes());
                out.extend_from_slice(&f.data[..len]);
            }
            Command::Abort => {}
        }
    }

    /// Decode a command from its code and data bytes.
    pub fn decode(code: u8, data: &[u8]) -> Result<Self, MessageError> {
        use command_code::*;
        let p = Payload::new(code, data);
        Ok(match code {
            POLL => {
                p.exact(0, "no data")?;
                Command::Poll
            }
            LSTAT | ISTAT | OSTAT | RSTAT => {
                p.exact(0, "no data")?;
                match code {
                    LSTAT => Command::LocalStatus,
                    ISTAT => Command::InputStatus,
                    OSTAT => Command::OutputStatus,
                    _ => Command::ReaderStatus,
                }
            }
            ID | CAP => {
                p.exact(1, "one reply-type byte")?;
                if code == ID {
                    Command::Id
                } else {
                    Command::Capabilities
                }
            }
            OUT => Command::Output(
                p.records(4, "records of 4 bytes")?
                    .map(|r| {
                        let action =
                            OutputAction::from_code(r[1]).ok_or(MessageError::BadField {
                                code,
                                field: "output control code",
                            })?;
                        Ok(OutputControl {
                            output: r[0],
                            action,
                            timer_100ms: u16::from_le_bytes([r[2], r[3]]),
                        })
                    })
                    .collect::<Result<_, MessageError>>()?,
            ),
            LED => Command::Led(
                p.records(14, "records of 14 bytes")?
                    .map(|r| LedControl {
                        reader: r[0],
                        led: r[1],
                        temporary: LedTemporary {
                            control: r[2],
                            on_100ms: r[3],
                            off_100ms: r[4],
                            on_color: r[5].into(),
                            off_color: r[6].into(),
                            timer_100ms: u16::from_le_bytes([r[7], r[8]]),
                        },
                        permanent: LedPermanent {
                            control: r[9],
                            on_100ms: r[10],
                            off_100ms: r[11],
                            on_color: r[12].into(),
                            off_color: r[13].into(),
                        },
                    })
                    .collect(),
            ),
            BUZ => {
                let b = p.array::<5>("5 bytes")?;
                Command::Buzzer(BuzzerControl {
                    reader: b[0],
                    tone: b[1],
                    on_100ms: b[2],
                    off_100ms: b[3],
                    count: b[4],
                })
            }
            TEXT => {
                if data.len() < 6 || data.len() != 6 + usize::from(data[5]) {
                    return Err(p.bad("6 header bytes + text of the given length"));
                }
                Command::Text(TextControl {
                    reader: data[0],
                    command: data[1],
                    temp_seconds: data[2],
                    row: data[3],
                    column: data[4],
                    text: data[6..].to_vec(),
                })
            }
            COMSET => Command::ComSet(decode_com(&p)?),
            KEYSET => {
                if data.len() < 2 || data.len() != 2 + usize::from(data[1]) {
                    return Err(p.bad("key type, key length, key"));
                }
                Command::KeySet(KeySet {
                    key_type: data[0],
                    key: data[2..].to_vec(),
                })
            }
            CHLNG => Command::Challenge(p.array::<8>("8-byte RND.A")?),
            SCRYPT => Command::ServerCryptogram(p.array::<16>("16-byte cryptogram")?),
            ACURXSIZE => Command::AcuReceiveSize(p.u16_le("2-byte size")?),
            KEEPACTIVE => Command::KeepActive(p.u16_le("2-byte time")?),
            MFG => Command::Manufacturer(decode_manufacturer(&p)?),
            FILETRANSFER => {
                if data.len() < 11 {
                    return Err(p.bad("11-byte header, then the fragment"));
                }
                let len = u16::from_le_bytes([data[9], data[10]]);
                if data.len() != 11 + usize::from(len) {
                    return Err(p.bad("the fragment size must match the data"));
                }
                Command::FileTransfer(FileFragment {
                    file_type: data[0],
                    total_size: u32::from_le_bytes([data[1], data[2], data[3], data[4]]),
                    offset: u32::from_le_bytes([data[5], data[6], data[7], data[8]]),
                    data: data[11..].to_vec(),
                })
            }
            ABORT => {
                p.exact(0, "no data")?;
                Command::Abort
            }
            other => return Err(MessageError::UnknownCode(other)),
        })
    }
}

impl Reply {
    /// The reply code on the wire.
    pub fn code(&self) -> u8 {
        use reply_code::*;
        match self {
            Reply::Ack => ACK,
            Reply::Nak(_) => NAK,
            Reply::Identity(_) => PDID,
            Reply::Capabilities(_) => PDCAP,
            Reply::LocalStatus(_) => LSTATR,
            Reply::InputStatus(_) => ISTATR,
            Reply::OutputStatus(_) => OSTATR,
            Reply::ReaderStatus(_) => RSTATR,
            Reply::RawCard(_) => RAW,
            Reply::FormattedCard(_) => FMT,
            Reply::Keypad(_) => KEYPAD,
            Reply::ComSettings(_) => COM,
            Reply::Busy => BUSY,
            Reply::ClientCryptogram(_) => CCRYPT,
            Reply::InitialRmac(_) => RMAC_I,
            Reply::Manufacturer(_) => MFGREP,
            Reply::FileTransferStatus(_) => FTSTAT,
        }
    }

    /// Append the reply's data bytes (everything after the code) to `out`.
    pub fn encode_data(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Ack | Reply::Busy => {}
            Reply::Nak(code) => out.push((*code).into()),
            Reply::Identity(id) => {
                out.extend_from_slice(&id.vendor);
                out.extend_from_slice(&[id.model, id.version]);
                out.extend_from_slice(&id.serial.to_le_bytes());
                out.extend_from_slice(&id.firmware);
            }
            Reply::Capabilities(caps) => {
                for c in caps {
                    out.extend_from_slice(&[c.function, c.compliance, c.count]);
                }
            }
            Reply::LocalStatus(s) => out.extend_from_slice(&[s.tamper, s.power]),
            Reply::InputStatus(v) | Reply::OutputStatus(v) | Reply::ReaderStatus(v) => {
                out.extend_from_slice(v)
            }
            Reply::RawCard(card) => {
                out.extend_from_slice(&[card.reader, card.format]);
                out.extend_from_slice(&card.bits.to_le_bytes());
                out.extend_from_slice(&card.data);
            }
            Reply::FormattedCard(card) => {
                let len = card.data.len().min(usize::from(u8::MAX));
                out.extend_from_slice(&[card.reader, card.direction, len as u8]);
                out.extend_from_slice(&card.data[..len]);
            }
            Reply::Keypad(k) => {
                let len = k.digits.len().min(usize::from(u8::MAX));
                out.extend_from_slice(&[k.reader, len as u8]);
                out.extend_from_slice(&k.digits[..len]);
            }
            Reply::ComSettings(c) => encode_com(c, out),
            Reply::ClientCryptogram(cc) => {
                out.extend_from_slice(&cc.client_uid);
                out.extend_from_slice(&cc.rnd_b);
                out.extend_from_slice(&cc.cryptogram);
            }
            Reply::InitialRmac(m) => out.extend_from_slice(m),
            Reply::Manufacturer(m) => encode_manufacturer(m, out),
            Reply::FileTransferStatus(s) => {
                out.push(s.action);
                out.extend_from_slice(&s.delay_ms.to_le_bytes());
                out.extend_from_slice(&s.status.to_le_bytes());
                out.extend_from_slice(&s.max_fragment.to_le_bytes());
            }
        }
    }

    /// Decode a reply from its code and data bytes.
    pub fn decode(code: u8, data: &[u8]) -> Result<Self, MessageError> {
        use reply_code::*;
        let p = Payload::new(code, data);
        Ok(match code {
            ACK => {
                p.exact(0, "no data")?;
                Reply::Ack
            }
            BUSY => {
                p.exact(0, "no data")?;
                Reply::Busy
            }
            // Extra bytes after the error code carry optional detail.
            NAK => Reply::Nak(
                data.first()
                    .copied()
                    .ok_or_else(|| p.bad("an error code"))?
                    .into(),
            ),
            PDID => {
                let b = p.array::<12>("12 bytes")?;
                Reply::Identity(PdIdentity {
                    vendor: [b[0], b[1], b[2]],
                    model: b[3],
                    version: b[4],
                    serial: u32::from_le_bytes([b[5], b[6], b[7], b[8]]),
                    firmware: [b[9], b[10], b[11]],
                })
            }
            PDCAP => Reply::Capabilities(
                p.records(3, "records of 3 bytes")?
                    .map(|r| Capability {
                        function: r[0],
                        compliance: r[1],
                        count: r[2],
                    })
                    .collect(),
            ),
            LSTATR => {
                let b = p.array::<2>("tamper and power")?;
                Reply::LocalStatus(LocalStatus {
                    tamper: b[0],
                    power: b[1],
                })
            }
            ISTATR => Reply::InputStatus(data.to_vec()),
            OSTATR => Reply::OutputStatus(data.to_vec()),
            RSTATR => Reply::ReaderStatus(data.to_vec()),
            RAW => {
                if data.len() < 4 {
                    return Err(p.bad("reader, format, 2-byte bit count, data"));
                }
                let bits = u16::from_le_bytes([data[2], data[3]]);
                if data.len() - 4 != usize::from(bits).div_ceil(8) {
                    return Err(p.bad("data length must be the bit count rounded up to bytes"));
                }
                Reply::RawCard(RawCard {
                    reader: data[0],
                    format: data[1],
                    bits,
                    data: data[4..].to_vec(),
                })
            }
            FMT => {
                if data.len() < 3 || data.len() != 3 + usize::from(data[2]) {
                    return Err(p.bad("reader, direction, length, characters"));
                }
                Reply::FormattedCard(FormattedCard {
                    reader: data[0],
                    direction: data[1],
                    data: data[3..].to_vec(),
                })
            }
            KEYPAD => {
                if data.len() < 2 || data.len() != 2 + usize::from(data[1]) {
                    return Err(p.bad("reader, digit count, digits"));
                }
                Reply::Keypad(KeypadData {
                    reader: data[0],
                    digits: data[2..].to_vec(),
                })
            }
            COM => Reply::ComSettings(decode_com(&p)?),
            CCRYPT => {
                let b = p.array::<32>("cUID 8 + RND.B 8 + cryptogram 16")?;
                let mut cc = ClientCryptogram {
                    client_uid: [0; 8],
                    rnd_b: [0; 8],
                    cryptogram: [0; 16],
                };
                cc.client_uid.copy_from_slice(&b[..8]);
                cc.rnd_b.copy_from_slice(&b[8..16]);
                cc.cryptogram.copy_from_slice(&b[16..]);
                Reply::ClientCryptogram(cc)
            }
            RMAC_I => Reply::InitialRmac(p.array::<16>("16-byte R-MAC")?),
            MFGREP => Reply::Manufacturer(decode_manufacturer(&p)?),
            FTSTAT => {
                let b = p.array::<7>("action, delay, status, update size")?;
                Reply::FileTransferStatus(FileTransferStatus {
                    action: b[0],
                    delay_ms: u16::from_le_bytes([b[1], b[2]]),
                    status: i16::from_le_bytes([b[3], b[4]]),
                    max_fragment: u16::from_le_bytes([b[5], b[6]]),
                })
            }
            other => return Err(MessageError::UnknownCode(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(hex_digits: &str) -> Vec<u8> {
        hex::decode(hex_digits.replace(' ', "")).unwrap()
    }

    fn command_round_trip(command: &Command, wire: &str) {
        let mut data = Vec::new();
        command.encode_data(&mut data);
        assert_eq!(data, bytes(wire), "{command:?}");
        assert_eq!(&Command::decode(command.code(), &data).unwrap(), command);
    }

    fn reply_round_trip(reply: &Reply, wire: &str) {
        let mut data = Vec::new();
        reply.encode_data(&mut data);
        assert_eq!(data, bytes(wire), "{reply:?}");
        assert_eq!(&Reply::decode(reply.code(), &data).unwrap(), reply);
    }

    // Payloads below are from libosdp 3.2.9 traffic captured on a PTY
    // (tests/interop/captures/plaintext.socat.log).

    #[test]
    fn pdid_from_libosdp() {
        let id = PdIdentity {
            vendor: [0xb2, 0xa1, 0x00],
            model: 1,
            version: 2,
            serial: 0x1001,
            firmware: [1, 2, 3],
        };
        reply_round_trip(&Reply::Identity(id), "b2 a1 00 01 02 01 10 00 00 01 02 03");
    }

    #[test]
    fn pdcap_from_libosdp() {
        let wire = "01 01 08 02 01 04 03 01 01 04 01 01 05 01 01 06 01 01 08 01 00 09 01 00 0a 00 01 10 02 00";
        let Reply::Capabilities(caps) = Reply::decode(reply_code::PDCAP, &bytes(wire)).unwrap()
        else {
            panic!("not PDCAP")
        };
        assert_eq!(caps.len(), 10);
        assert_eq!(
            caps[0],
            Capability {
                function: 1,
                compliance: 1,
                count: 8
            }
        );
        assert_eq!(
            caps[7],
            Capability {
                function: 9,
                compliance: 1,
                count: 0
            }
        );
        reply_round_trip(&Reply::Capabilities(caps), wire);
    }

    #[test]
    fn raw_keypad_and_istatr_from_libosdp() {
        let card = RawCard {
            reader: 0,
            format: 0,
            bits: 26,
            data: bytes("9501f480"),
        };
        reply_round_trip(&Reply::RawCard(card), "00 00 1a 00 95 01 f4 80");
        let keys = KeypadData {
            reader: 0,
            digits: b"1234".to_vec(),
        };
        reply_round_trip(&Reply::Keypad(keys), "00 04 31 32 33 34");
        reply_round_trip(
            &Reply::InputStatus(bytes("0000010000000000")),
            "00 00 01 00 00 00 00 00",
        );
    }

    #[test]
    fn led_buz_out_as_libosdp_sends_them() {
        let led = Command::Led(vec![LedControl {
            reader: 0,
            led: 0,
            temporary: LedTemporary {
                control: 0,
                on_100ms: 0,
                off_100ms: 0,
                on_color: LedColor::Off,
                off_color: LedColor::Off,
                timer_100ms: 0,
            },
            permanent: LedPermanent {
                control: 1,
                on_100ms: 10,
                off_100ms: 0,
                on_color: LedColor::Red,
                off_color: LedColor::Off,
            },
        }]);
        command_round_trip(&led, "00 00 00 00 00 00 00 00 00 01 0a 00 01 00");
        let buz = Command::Buzzer(BuzzerControl {
            reader: 0,
            tone: 2,
            on_100ms: 10,
            off_100ms: 10,
            count: 1,
        });
        command_round_trip(&buz, "00 02 0a 0a 01");
        let out = Command::Output(vec![OutputControl {
            output: 1,
            action: OutputAction::PermanentOnAbortTimed,
            timer_100ms: 5,
        }]);
        command_round_trip(&out, "01 02 05 00");
    }

    #[test]
    fn small_and_fixed_messages() {
        command_round_trip(&Command::Poll, "");
        command_round_trip(&Command::Id, "00");
        command_round_trip(&Command::Capabilities, "00");
        command_round_trip(
            &Command::ComSet(ComSettings {
                address: 5,
                baud: 115_200,
            }),
            "05 00 c2 01 00",
        );
        command_round_trip(
            &Command::KeySet(KeySet {
                key_type: 1,
                key: vec![0xAB; 16],
            }),
            &format!("01 10 {}", "ab".repeat(16)),
        );
        command_round_trip(
            &Command::Challenge([1, 2, 3, 4, 5, 6, 7, 8]),
            "0102030405060708",
        );
        command_round_trip(&Command::AcuReceiveSize(1024), "00 04");
        command_round_trip(&Command::KeepActive(300), "2c 01");
        command_round_trip(
            &Command::Text(TextControl {
                reader: 0,
                command: 1,
                temp_seconds: 0,
                row: 1,
                column: 1,
                text: b"Hi".to_vec(),
            }),
            "00 01 00 01 01 02 48 69",
        );
        command_round_trip(
            &Command::Manufacturer(ManufacturerData {
                vendor: [1, 2, 3],
                data: vec![9],
            }),
            "010203 09",
        );
        // File transfer: type 1, 1000 bytes in all, this fragment at 256.
        command_round_trip(
            &Command::FileTransfer(FileFragment {
                file_type: 1,
                total_size: 1000,
                offset: 256,
                data: vec![0xAA, 0xBB],
            }),
            "01 e8030000 00010000 0200 aabb",
        );
        command_round_trip(&Command::Abort, "");
        reply_round_trip(
            &Reply::FileTransferStatus(FileTransferStatus {
                action: 1,
                delay_ms: 500,
                status: -2,
                max_fragment: 128,
            }),
            "01 f401 feff 8000",
        );
        reply_round_trip(&Reply::Ack, "");
        reply_round_trip(&Reply::Busy, "");
        reply_round_trip(&Reply::Nak(NakCode::UnableToProcess), "09");
        reply_round_trip(
            &Reply::LocalStatus(LocalStatus {
                tamper: 1,
                power: 0,
            }),
            "01 00",
        );
        reply_round_trip(
            &Reply::ComSettings(ComSettings {
                address: 2,
                baud: 9600,
            }),
            "02 80 25 00 00",
        );
        reply_round_trip(
            &Reply::FormattedCard(FormattedCard {
                reader: 0,
                direction: 0,
                data: b"123".to_vec(),
            }),
            "00 00 03 31 32 33",
        );
        reply_round_trip(&Reply::InitialRmac([7; 16]), &"07".repeat(16));
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        use command_code as c;
        use reply_code as r;
        assert_eq!(
            Command::decode(0x00, &[]),
            Err(MessageError::UnknownCode(0x00))
        );
        assert!(matches!(
            Command::decode(c::POLL, &[1]),
            Err(MessageError::BadLength { .. })
        ));
        assert!(matches!(
            Command::decode(c::OUT, &[1, 2, 3]),
            Err(MessageError::BadLength { .. })
        ));
        assert_eq!(
            Command::decode(c::OUT, &[1, 9, 0, 0]),
            Err(MessageError::BadField {
                code: c::OUT,
                field: "output control code"
            })
        );
        assert!(matches!(
            Command::decode(c::LED, &[0; 13]),
            Err(MessageError::BadLength { .. })
        ));
        assert!(matches!(
            Command::decode(c::TEXT, &[0, 1, 0, 1, 1, 5, b'a']),
            Err(MessageError::BadLength { .. })
        ));
        assert!(matches!(
            Command::decode(c::KEYSET, &[1, 16, 0]),
            Err(MessageError::BadLength { .. })
        ));
        assert!(matches!(
            Command::decode(c::CHLNG, &[0; 7]),
            Err(MessageError::BadLength { .. })
        ));
        assert!(matches!(
            Reply::decode(r::NAK, &[]),
            Err(MessageError::BadLength { .. })
        ));
        assert!(matches!(
            Reply::decode(r::RAW, &[0, 0, 26, 0, 1, 2, 3]),
            Err(MessageError::BadLength { .. })
        ));
        assert!(matches!(
            Reply::decode(r::PDID, &[0; 11]),
            Err(MessageError::BadLength { .. })
        ));
        assert!(matches!(
            Reply::decode(r::CCRYPT, &[0; 31]),
            Err(MessageError::BadLength { .. })
        ));
        assert!(matches!(
            Reply::decode(r::PDCAP, &[0; 4]),
            Err(MessageError::BadLength { .. })
        ));
        // NAK detail bytes after the code are tolerated.
        assert_eq!(
            Reply::decode(r::NAK, &[6, 1, 2]),
            Ok(Reply::Nak(NakCode::EncryptionRequired))
        );
        assert_eq!(NakCode::from(42), NakCode::Other(42));
        assert_eq!(u8::from(NakCode::Other(42)), 42);
    }

    fn led_color() -> impl Strategy<Value = LedColor> {
        any::<u8>().prop_map(LedColor::from)
    }

    fn command() -> impl Strategy<Value = Command> {
        let output = (any::<u8>(), 0u8..=6, any::<u16>()).prop_map(|(output, a, timer_100ms)| {
            OutputControl {
                output,
                action: OutputAction::from_code(a).unwrap(),
                timer_100ms,
            }
        });
        let led = (
            any::<[u8; 5]>(),
            led_color(),
            led_color(),
            any::<u16>(),
            any::<[u8; 3]>(),
            led_color(),
            led_color(),
        )
            .prop_map(|(a, c1, c2, timer_100ms, b, c3, c4)| LedControl {
                reader: a[0],
                led: a[1],
                temporary: LedTemporary {
                    control: a[2],
                    on_100ms: a[3],
                    off_100ms: a[4],
                    on_color: c1,
                    off_color: c2,
                    timer_100ms,
                },
                permanent: LedPermanent {
                    control: b[0],
                    on_100ms: b[1],
                    off_100ms: b[2],
                    on_color: c3,
                    off_color: c4,
                },
            });
        prop_oneof![
            Just(Command::Poll),
            Just(Command::Id),
            Just(Command::Capabilities),
            Just(Command::LocalStatus),
            Just(Command::InputStatus),
            Just(Command::OutputStatus),
            Just(Command::ReaderStatus),
            proptest::collection::vec(output, 1..5).prop_map(Command::Output),
            proptest::collection::vec(led, 1..4).prop_map(Command::Led),
            any::<[u8; 5]>().prop_map(|b| Command::Buzzer(BuzzerControl {
                reader: b[0],
                tone: b[1],
                on_100ms: b[2],
                off_100ms: b[3],
                count: b[4]
            })),
            (
                any::<[u8; 5]>(),
                proptest::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(h, text)| Command::Text(TextControl {
                    reader: h[0],
                    command: h[1],
                    temp_seconds: h[2],
                    row: h[3],
                    column: h[4],
                    text
                })),
            (any::<u8>(), any::<u32>())
                .prop_map(|(address, baud)| Command::ComSet(ComSettings { address, baud })),
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..32))
                .prop_map(|(key_type, key)| Command::KeySet(KeySet { key_type, key })),
            any::<[u8; 8]>().prop_map(Command::Challenge),
            any::<[u8; 16]>().prop_map(Command::ServerCryptogram),
            any::<u16>().prop_map(Command::AcuReceiveSize),
            any::<u16>().prop_map(Command::KeepActive),
            (
                any::<[u8; 3]>(),
                proptest::collection::vec(any::<u8>(), 0..20)
            )
                .prop_map(|(vendor, data)| Command::Manufacturer(ManufacturerData {
                    vendor,
                    data
                })),
            (
                any::<(u8, u32, u32)>(),
                proptest::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|((file_type, total_size, offset), data)| {
                    Command::FileTransfer(FileFragment {
                        file_type,
                        total_size,
                        offset,
                        data,
                    })
                }),
            Just(Command::Abort),
        ]
    }

    fn reply() -> impl Strategy<Value = Reply> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..16);
        prop_oneof![
            Just(Reply::Ack),
            Just(Reply::Busy),
            any::<u8>().prop_map(|c| Reply::Nak(c.into())),
            (any::<[u8; 5]>(), any::<u32>(), any::<[u8; 3]>()).prop_map(|(a, serial, firmware)| {
                Reply::Identity(PdIdentity {
                    vendor: [a[0], a[1], a[2]],
                    model: a[3],
                    version: a[4],
                    serial,
                    firmware,
                })
            }),
            proptest::collection::vec(any::<[u8; 3]>(), 1..8).prop_map(|v| Reply::Capabilities(
                v.into_iter()
                    .map(|c| Capability {
                        function: c[0],
                        compliance: c[1],
                        count: c[2]
                    })
                    .collect()
            )),
            any::<[u8; 2]>().prop_map(|b| Reply::LocalStatus(LocalStatus {
                tamper: b[0],
                power: b[1]
            })),
            bytes().prop_map(Reply::InputStatus),
            bytes().prop_map(Reply::OutputStatus),
            bytes().prop_map(Reply::ReaderStatus),
            (any::<[u8; 2]>(), 0u16..200).prop_flat_map(|(h, bits)| proptest::collection::vec(
                any::<u8>(),
                usize::from(bits).div_ceil(8)
            )
            .prop_map(move |data| Reply::RawCard(RawCard {
                reader: h[0],
                format: h[1],
                bits,
                data
            }))),
            (any::<[u8; 2]>(), bytes()).prop_map(|(h, data)| Reply::FormattedCard(FormattedCard {
                reader: h[0],
                direction: h[1],
                data
            })),
            (any::<u8>(), bytes())
                .prop_map(|(reader, digits)| Reply::Keypad(KeypadData { reader, digits })),
            (any::<u8>(), any::<u32>())
                .prop_map(|(address, baud)| Reply::ComSettings(ComSettings { address, baud })),
            (any::<[u8; 8]>(), any::<[u8; 8]>(), any::<[u8; 16]>()).prop_map(
                |(client_uid, rnd_b, cryptogram)| Reply::ClientCryptogram(ClientCryptogram {
                    client_uid,
                    rnd_b,
                    cryptogram
                })
            ),
            any::<[u8; 16]>().prop_map(Reply::InitialRmac),
            (any::<[u8; 3]>(), bytes())
                .prop_map(|(vendor, data)| Reply::Manufacturer(ManufacturerData { vendor, data })),
            any::<(u8, u16, i16, u16)>().prop_map(|(action, delay_ms, status, max_fragment)| {
                Reply::FileTransferStatus(FileTransferStatus {
                    action,
                    delay_ms,
                    status,
                    max_fragment,
                })
            }),
        ]
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(code: u8, data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Command::decode(code, &data);
            let _ = Reply::decode(code, &data);
        }

        #[test]
        fn commands_round_trip(command in command()) {
            let mut data = Vec::new();
            command.encode_data(&mut data);
            prop_assert_eq!(Command::decode(command.code(), &data), Ok(command));
        }

        #[test]
        fn replies_round_trip(reply in reply()) {
            let mut data = Vec::new();
            reply.encode_data(&mut data);
            prop_assert_eq!(Reply::decode(reply.code(), &data), Ok(reply));
        }
    }
}
