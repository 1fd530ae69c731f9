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

impl Command {
    /// The command code on the wire.
    pub fn code(&self) -> u8 {
        todo!("message codec")
    }

    /// Append the command's data bytes (everything after the code) to `out`.
    pub fn encode_data(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!("message codec")
    }

    /// Decode a command from its code and data bytes.
    pub fn decode(code: u8, data: &[u8]) -> Result<Self, MessageError> {
        let _ = (code, data);
        todo!("message codec")
    }
}

impl Reply {
    /// The reply code on the wire.
    pub fn code(&self) -> u8 {
        todo!("message codec")
    }

    /// Append the reply's data bytes (everything after the code) to `out`.
    pub fn encode_data(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!("message codec")
    }

    /// Decode a reply from its code and data bytes.
    pub fn decode(code: u8, data: &[u8]) -> Result<Self, MessageError> {
        let _ = (code, data);
        todo!("message codec")
    }
}
