//! OSDP wire framing: encode a [`Frame`], and find frames in a byte stream.
//!
//! Layout (OSDP v2.2 §5): optional mark `0xFF`, SOM `0x53`, address (bit 7
//! set in replies, `0x7F` broadcast), 16-bit little-endian length of the
//! whole packet from SOM to the last check byte, control byte (bits 0–1
//! sequence number, bit 2 CRC-16 instead of checksum, bit 3 security block
//! present), optional security block (length, type, data), command or reply
//! code, data, 4-byte MAC when the security block type is 15–18, then CRC-16
//! (little-endian) or an 8-bit checksum.
//!
//! This module does not interpret the security block or the MAC; `channel`
//! does. [`FrameReader`] never panics and resynchronises on garbage: it skips
//! to the next SOM after anything that does not check out.

use thiserror::Error;

/// Optional mark byte sent before SOM.
pub const MARK: u8 = 0xFF;
/// Start of message.
pub const SOM: u8 = 0x53;
/// The broadcast address.
pub const BROADCAST: u8 = 0x7F;
/// Bit 7 of the address byte marks a reply.
pub const REPLY_FLAG: u8 = 0x80;
/// Largest packet this implementation accepts or builds (SOM to last check byte).
pub const MAX_FRAME_LEN: usize = 1440;

const CTRL_SEQUENCE: u8 = 0x03;
const CTRL_CRC: u8 = 0x04;
const CTRL_SECURITY: u8 = 0x08;
/// SOM, address, length (2), control.
const HEADER_LEN: usize = 5;

/// Security block types (OSDP v2.2 Annex D).
#[allow(missing_docs)]
pub mod scs {
    pub const SCS_11: u8 = 0x11;
    pub const SCS_12: u8 = 0x12;
    pub const SCS_13: u8 = 0x13;
    pub const SCS_14: u8 = 0x14;
    pub const SCS_15: u8 = 0x15;
    pub const SCS_16: u8 = 0x16;
    pub const SCS_17: u8 = 0x17;
    pub const SCS_18: u8 = 0x18;
}

/// How the packet's integrity is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// CRC-16/AUG-CCITT (poly 0x1021, init 0x1D0F), two bytes little-endian.
    Crc16,
    /// 8-bit two's-complement checksum.
    Checksum,
}

/// The security control block of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityBlock {
    /// SCS type, 0x11..=0x18.
    pub kind: u8,
    /// Data bytes of the block (0 or 1 byte in OSDP v2.2).
    pub data: Vec<u8>,
}

impl SecurityBlock {
    /// Whether packets with this block carry a 4-byte MAC.
    pub fn has_mac(&self) -> bool {
        (scs::SCS_15..=scs::SCS_18).contains(&self.kind)
    }
}

/// One OSDP packet, as on the wire (data may be ciphertext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// PD address, 0..=0x7F, without the reply flag.
    pub address: u8,
    /// Whether this is a reply (PD → CP).
    pub is_reply: bool,
    /// Sequence number 0..=3.
    pub sequence: u8,
    /// CRC or checksum.
    pub integrity: Integrity,
    /// Security block, if any.
    pub security: Option<SecurityBlock>,
    /// Command or reply code.
    pub code: u8,
    /// Data bytes after the code (ciphertext for SCS 17/18).
    pub data: Vec<u8>,
    /// The MAC's first four bytes, for SCS 15..=18.
    pub mac: Option<[u8; 4]>,
}

/// Why bytes did not make a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The length field is smaller than a minimal packet or larger than allowed.
    #[error("length field {0} out of range")]
    BadLength(usize),
    /// CRC-16 mismatch.
    #[error("CRC mismatch")]
    BadCrc,
    /// Checksum mismatch.
    #[error("checksum mismatch")]
    BadChecksum,
    /// The security block does not fit the packet or has an impossible length.
    #[error("malformed security block")]
    BadSecurityBlock,
    /// The frame would be larger than [`MAX_FRAME_LEN`].
    #[error("frame too large")]
    TooLarge,
}

impl Frame {
    fn mac_len(&self) -> usize {
        match &self.security {
            Some(sb) if sb.has_mac() => 4,
            _ => 0,
        }
    }

    fn check_len(&self) -> usize {
        match self.integrity {
            Integrity::Crc16 => 2,
            Integrity::Checksum => 1,
        }
    }

    /// Total packet length from SOM to the last check byte.
    pub fn wire_len(&self) -> usize {
        let sb = self.security.as_ref().map_or(0, |sb| 2 + sb.data.len());
        HEADER_LEN + sb + 1 + self.data.len() + self.mac_len() + self.check_len()
    }

    /// The bytes a MAC covers: SOM through the last data byte, with the
    /// length field already counting the MAC and check bytes.
    pub fn authenticated_bytes(&self) -> Result<Vec<u8>, FrameError> {
        let len = self.wire_len();
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge);
        }
        let mut out = Vec::with_capacity(len);
        let mut ctrl = self.sequence & CTRL_SEQUENCE;
        if self.integrity == Integrity::Crc16 {
            ctrl |= CTRL_CRC;
        }
        if self.security.is_some() {
            ctrl |= CTRL_SECURITY;
        }
        let address = if self.is_reply {
            self.address | REPLY_FLAG
        } else {
            self.address & !REPLY_FLAG
        };
        // `len` ≤ MAX_FRAME_LEN < 65536, so the cast is lossless.
        out.extend_from_slice(&[SOM, address, len as u8, (len >> 8) as u8, ctrl]);
        if let Some(sb) = &self.security {
            out.push((2 + sb.data.len()) as u8);
            out.push(sb.kind);
            out.extend_from_slice(&sb.data);
        }
        out.push(self.code);
        out.extend_from_slice(&self.data);
        Ok(out)
    }

    /// Encode the whole packet, with a leading mark byte when `mark` is set.
    /// A frame whose security block needs a MAC must carry one.
    pub fn encode(&self, mark: bool) -> Result<Vec<u8>, FrameError> {
        let body = self.authenticated_bytes()?;
        let mut out = Vec::with_capacity(body.len() + 7);
        if mark {
            out.push(MARK);
        }
        out.extend_from_slice(&body);
        if self.mac_len() == 4 {
            out.extend_from_slice(&self.mac.ok_or(FrameError::BadSecurityBlock)?);
        }
        let start = usize::from(mark);
        match self.integrity {
            Integrity::Crc16 => {
                let crc = crc16(&out[start..]);
                out.extend_from_slice(&crc.to_le_bytes());
            }
            Integrity::Checksum => {
                let sum = checksum(&out[start..]);
                out.push(sum);
            }
        }
        Ok(out)
    }
}

/// CRC-16/AUG-CCITT as OSDP uses it: poly 0x1021, init 0x1D0F, no reflection.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0x1D0F;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The 8-bit checksum: the two's complement of the byte sum.
pub fn checksum(data: &[u8]) -> u8 {
    data.iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// A frame found in the byte stream, with what the security layer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The decoded frame.
    pub frame: Frame,
    /// SOM through the last data byte: what the MAC covers.
    pub authenticated: Vec<u8>,
    /// Whether a mark byte preceded SOM.
    pub had_mark: bool,
}

/// Finds frames in a byte stream, resynchronising on garbage.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// A reader with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        // Bound memory: a buffer longer than two maximal frames can only
        // hold garbage before the part that matters.
        if self.buf.len() > 2 * MAX_FRAME_LEN {
            let cut = self.buf.len() - MAX_FRAME_LEN;
            self.buf.drain(..cut);
        }
    }

    /// Drop buffered bytes (e.g. at the start of a new exchange).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame or framing error; `None` when more bytes are
    /// needed. After an error, call again: the reader has moved past the SOM.
    pub fn next_frame(&mut self) -> Option<Result<Received, FrameError>> {
        let som = self.buf.iter().position(|&b| b == SOM)?;
        let had_mark = som > 0 && self.buf[som - 1] == MARK;
        self.buf.drain(..som);
        if self.buf.len() < HEADER_LEN {
            return None;
        }
        let len = usize::from(u16::from_le_bytes([self.buf[2], self.buf[3]]));
        let ctrl = self.buf[4];
        let min = HEADER_LEN + 1 + if ctrl & CTRL_CRC != 0 { 2 } else { 1 };
        if !(min..=MAX_FRAME_LEN).contains(&len) {
            self.buf.drain(..1);
            return Some(Err(FrameError::BadLength(len)));
        }
        if self.buf.len() < len {
            return None;
        }
        let result = parse(&self.buf[..len], had_mark);
        match &result {
            Ok(_) => drop(self.buf.drain(..len)),
            // The length may have been garbage: resume right after SOM.
            Err(_) => drop(self.buf.drain(..1)),
        }
        Some(result)
    }
}

/// Parse exactly one packet (SOM to last check byte); `packet.len()` equals
/// its length field and is at least a minimal packet.
fn parse(packet: &[u8], had_mark: bool) -> Result<Received, FrameError> {
    let ctrl = packet[4];
    let integrity = if ctrl & CTRL_CRC != 0 {
        Integrity::Crc16
    } else {
        Integrity::Checksum
    };
    let body_end = match integrity {
        Integrity::Crc16 => {
            let end = packet.len() - 2;
            let got = u16::from_le_bytes([packet[end], packet[end + 1]]);
            if crc16(&packet[..end]) != got {
                return Err(FrameError::BadCrc);
            }
            end
        }
        Integrity::Checksum => {
            let end = packet.len() - 1;
            if checksum(&packet[..end]) != packet[end] {
                return Err(FrameError::BadChecksum);
            }
            end
        }
    };
    let mut pos = HEADER_LEN;
    let security = if ctrl & CTRL_SECURITY != 0 {
        let sb_len = usize::from(*packet.get(pos).ok_or(FrameError::BadSecurityBlock)?);
        if sb_len < 2 || pos + sb_len >= body_end {
            return Err(FrameError::BadSecurityBlock);
        }
        let block = SecurityBlock {
            kind: packet[pos + 1],
            data: packet[pos + 2..pos + sb_len].to_vec(),
        };
        pos += sb_len;
        Some(block)
    } else {
        None
    };
    let mac_len = match &security {
        Some(sb) if sb.has_mac() => 4,
        _ => 0,
    };
    // The code byte must remain after the security block, before the MAC.
    if pos + 1 + mac_len > body_end {
        return Err(FrameError::BadSecurityBlock);
    }
    let data_end = body_end - mac_len;
    let mac = (mac_len == 4).then(|| {
        let mut m = [0u8; 4];
        m.copy_from_slice(&packet[data_end..body_end]);
        m
    });
    Ok(Received {
        frame: Frame {
            address: packet[1] & !REPLY_FLAG,
            is_reply: packet[1] & REPLY_FLAG != 0,
            sequence: ctrl & CTRL_SEQUENCE,
            integrity,
            security,
            code: packet[pos],
            data: packet[pos + 1..data_end].to_vec(),
            mac,
        },
        authenticated: packet[..data_end].to_vec(),
        had_mark,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn poll(address: u8, sequence: u8) -> Frame {
        Frame {
            address,
            is_reply: false,
            sequence,
            integrity: Integrity::Crc16,
            security: None,
            code: 0x60,
            data: vec![],
            mac: None,
        }
    }

    #[test]
    fn crc16_matches_the_aug_ccitt_check_value() {
        // CRC-16/AUG-CCITT check value for "123456789".
        assert_eq!(crc16(b"123456789"), 0xE5CC);
    }

    #[test]
    fn poll_encodes_as_on_the_wire() {
        // POLL to address 0, sequence 1, CRC: 53 00 08 00 05 60 + CRC.
        let bytes = poll(0, 1).encode(false).unwrap();
        assert_eq!(&bytes[..6], &[0x53, 0x00, 0x08, 0x00, 0x05, 0x60]);
        let crc = crc16(&bytes[..6]).to_le_bytes();
        assert_eq!(&bytes[6..], &crc);
        let with_mark = poll(0, 1).encode(true).unwrap();
        assert_eq!(with_mark[0], MARK);
        assert_eq!(&with_mark[1..], &bytes[..]);
    }

    #[test]
    fn checksum_frames_round_trip() {
        let mut f = poll(5, 2);
        f.integrity = Integrity::Checksum;
        f.is_reply = true;
        f.code = 0x40;
        let bytes = f.encode(false).unwrap();
        assert_eq!(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let mut r = FrameReader::new();
        r.push(&bytes);
        let got = r.next_frame().unwrap().unwrap();
        assert_eq!(got.frame, f);
        assert!(!got.had_mark);
    }

    #[test]
    fn secure_frames_carry_block_and_mac() {
        let f = Frame {
            address: 0x65,
            is_reply: false,
            sequence: 3,
            integrity: Integrity::Crc16,
            security: Some(SecurityBlock {
                kind: scs::SCS_17,
                data: vec![],
            }),
            code: 0x69,
            data: vec![1; 16],
            mac: Some([9, 8, 7, 6]),
        };
        let bytes = f.encode(true).unwrap();
        let mut r = FrameReader::new();
        r.push(&bytes);
        let got = r.next_frame().unwrap().unwrap();
        assert_eq!(got.frame, f);
        assert!(got.had_mark);
        assert_eq!(got.authenticated, f.authenticated_bytes().unwrap());
        assert_eq!(got.authenticated.len(), bytes.len() - 1 - 4 - 2);
    }

    #[test]
    fn reader_skips_garbage_and_bad_crc_then_finds_the_frame() {
        let good = poll(1, 1).encode(true).unwrap();
        let mut bad = poll(2, 1).encode(false).unwrap();
        let last = bad.len() - 1;
        bad[last] ^= 0xFF;
        let mut r = FrameReader::new();
        r.push(&[0x00, 0x12, 0xFF]);
        r.push(&bad);
        r.push(&good);
        assert_eq!(r.next_frame(), Some(Err(FrameError::BadCrc)));
        let mut found = None;
        while let Some(item) = r.next_frame() {
            if let Ok(rx) = item {
                found = Some(rx);
            }
        }
        assert_eq!(found.unwrap().frame, poll(1, 1));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn a_split_frame_waits_for_the_rest() {
        let bytes = poll(3, 0).encode(false).unwrap();
        let mut r = FrameReader::new();
        r.push(&bytes[..4]);
        assert_eq!(r.next_frame(), None);
        r.push(&bytes[4..]);
        assert_eq!(r.next_frame().unwrap().unwrap().frame, poll(3, 0));
    }

    #[test]
    fn impossible_lengths_are_errors() {
        let mut r = FrameReader::new();
        r.push(&[0x53, 0x00, 0x02, 0x00, 0x04, 0x60]);
        assert_eq!(r.next_frame(), Some(Err(FrameError::BadLength(2))));
        r.clear();
        r.push(&[0x53, 0x00, 0xFF, 0xFF, 0x04, 0x60]);
        assert_eq!(r.next_frame(), Some(Err(FrameError::BadLength(0xFFFF))));
    }

    #[test]
    fn security_block_overrunning_the_packet_is_an_error() {
        // Control says SCB present, SCB length 200 in a 9-byte packet.
        let mut p = vec![0x53, 0x00, 0x09, 0x00, 0x0C, 200, 0x11];
        let crc = crc16(&p).to_le_bytes();
        p.extend_from_slice(&crc);
        let mut r = FrameReader::new();
        r.push(&p);
        assert_eq!(r.next_frame(), Some(Err(FrameError::BadSecurityBlock)));
    }

    proptest! {
        #[test]
        fn reader_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut r = FrameReader::new();
            for c in &chunks {
                r.push(c);
                while r.next_frame().is_some() {}
            }
            prop_assert!(r.buffered() <= 2 * MAX_FRAME_LEN);
        }

        #[test]
        fn encode_then_read_round_trips(
            address in 0u8..0x7F, is_reply: bool, sequence in 0u8..4, crc: bool,
            code: u8, data in proptest::collection::vec(any::<u8>(), 0..300),
            sc in proptest::option::of((0x11u8..=0x18, proptest::option::of(any::<u8>()))),
            mac: [u8; 4],
            // Garbage without SOM: a SOM in noise with a long length field
            // legitimately holds the reader until the bus clears it.
            garbage in proptest::collection::vec(any::<u8>().prop_filter("no SOM", |b| *b != SOM), 0..8),
        ) {
            let security = sc.map(|(kind, d)| SecurityBlock { kind, data: d.into_iter().collect() });
            let has_mac = security.as_ref().is_some_and(SecurityBlock::has_mac);
            let f = Frame {
                address, is_reply, sequence,
                integrity: if crc { Integrity::Crc16 } else { Integrity::Checksum },
                security, code, data, mac: has_mac.then_some(mac),
            };
            let mut r = FrameReader::new();
            r.push(&garbage);
            r.push(&f.encode(true).unwrap());
            let mut last = None;
            while let Some(item) = r.next_frame() {
                if let Ok(rx) = item { last = Some(rx.frame); }
            }
            prop_assert_eq!(last, Some(f));
        }
    }
}
