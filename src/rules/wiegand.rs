//! Wiegand card formats: decoding raw reader bits (as OSDP delivers them,
//! first bit in the high bit of the first byte) into credential keys, with
//! parity checks, and encoding keys back to bits.
//!
//! Guarantees: H10301 (26 bits), Corporate 1000 (35 bits) and H10304
//! (37 bits) are recognised by length and their parity is always checked; a
//! parity failure is an error, never a guess. Any other length becomes a raw
//! credential keyed by its (masked) bytes and bit count.

use thiserror::Error;

use super::CredentialKey;

/// Why raw card bits could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WiegandError {
    /// The byte count does not match the bit count.
    #[error("{bytes} bytes cannot carry {bits} bits")]
    Length {
        /// Bytes given.
        bytes: usize,
        /// Bits claimed.
        bits: u16,
    },
    /// A parity bit is wrong.
    #[error("parity check failed for a {0}-bit card")]
    Parity(u16),
    /// A field value does not fit its format.
    #[error("value out of range for the format")]
    Range,
    /// `HEX/BITS` text could not be parsed.
    #[error("raw card data must be HEX/BITS, e.g. 9501f480/26")]
    Syntax,
}

fn bit(bytes: &[u8], i: usize) -> bool {
    bytes[i / 8] & (0x80 >> (i % 8)) != 0
}

fn field(bytes: &[u8], from: usize, len: usize) -> u64 {
    (from..from + len).fold(0, |acc, i| (acc << 1) | u64::from(bit(bytes, i)))
}

fn ones(bytes: &[u8], idx: impl Iterator<Item = usize>) -> u32 {
    idx.map(|i| u32::from(bit(bytes, i))).sum()
}

/// Decode raw bits into a credential key. Known lengths are parity-checked.
pub fn decode(bytes: &[u8], bits: u16) -> Result<CredentialKey, WiegandError> {
    let n = usize::from(bits);
    if bits == 0 || bytes.len() != n.div_ceil(8) {
        return Err(WiegandError::Length {
            bytes: bytes.len(),
            bits,
        });
    }
    match bits {
        26 => {
            if ones(bytes, 0..13) % 2 != 0 || ones(bytes, 13..26) % 2 != 1 {
                return Err(WiegandError::Parity(26));
            }
            Ok(CredentialKey::H10301 {
                facility: field(bytes, 1, 8) as u32,
                number: field(bytes, 9, 16),
            })
        }
        35 => {
            let p2 = ones(
                bytes,
                (1..34).filter(|i| *i == 1 || (*i >= 2 && i % 3 != 1)),
            );
            let p3 = ones(bytes, (1..35).filter(|i| *i == 34 || i % 3 != 0));
            let p1 = ones(bytes, 0..35);
            if p2 % 2 != 0 || p3 % 2 != 1 || p1 % 2 != 1 {
                return Err(WiegandError::Parity(35));
            }
            Ok(CredentialKey::Corporate1000 {
                company: field(bytes, 2, 12) as u32,
                number: field(bytes, 14, 20),
            })
        }
        37 => {
            if ones(bytes, 0..19) % 2 != 0 || ones(bytes, 18..37) % 2 != 1 {
                return Err(WiegandError::Parity(37));
            }
            Ok(CredentialKey::H10304 {
                facility: field(bytes, 1, 16) as u32,
                number: field(bytes, 17, 19),
            })
        }
        _ => Ok(CredentialKey::Raw {
            data: raw_text(bytes, bits),
        }),
    }
}

/// The canonical `HEX/BITS` text of raw bits: bits past the count are zeroed.
pub fn raw_text(bytes: &[u8], bits: u16) -> String {
    let mut masked = bytes.to_vec();
    let rem = usize::from(bits) % 8;
    if rem != 0
        && let Some(last) = masked.last_mut()
    {
        *last &= 0xffu8 << (8 - rem);
    }
    format!("{}/{bits}", hex::encode(masked))
}

/// Parse `HEX/BITS` (e.g. `9501f480/26`) into bytes and bit count.
pub fn parse_raw(text: &str) -> Result<(Vec<u8>, u16), WiegandError> {
    let (h, b) = text.split_once('/').ok_or(WiegandError::Syntax)?;
    let bytes = hex::decode(h.trim()).map_err(|_| WiegandError::Syntax)?;
    let bits: u16 = b.trim().parse().map_err(|_| WiegandError::Syntax)?;
    Ok((bytes, bits))
}

struct Bits(Vec<bool>);

impl Bits {
    fn push(&mut self, value: u64, len: usize) {
        for i in (0..len).rev() {
            self.0.push(value >> i & 1 == 1);
        }
    }
    fn count(&self, idx: impl Iterator<Item = usize>) -> usize {
        idx.filter(|i| self.0[*i]).count()
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.0.len().div_ceil(8)];
        for (i, b) in self.0.iter().enumerate() {
            if *b {
                out[i / 8] |= 0x80 >> (i % 8);
            }
        }
        out
    }
}

/// Encode a key as raw reader bits with correct parity.
pub fn encode(key: &CredentialKey) -> Result<(Vec<u8>, u16), WiegandError> {
    let mut b = Bits(Vec::new());
    match key {
        CredentialKey::H10301 { facility, number } => {
            if *facility > 0xff || *number > 0xffff {
                return Err(WiegandError::Range);
            }
            b.push(0, 1);
            b.push(u64::from(*facility), 8);
            b.push(*number, 16);
            b.push(0, 1);
            b.0[0] = b.count(1..13) % 2 == 1;
            b.0[25] = b.count(13..25).is_multiple_of(2);
            Ok((b.bytes(), 26))
        }
        CredentialKey::Corporate1000 { company, number } => {
            if *company > 0xfff || *number > 0xf_ffff {
                return Err(WiegandError::Range);
            }
            b.push(0, 2);
            b.push(u64::from(*company), 12);
            b.push(*number, 20);
            b.push(0, 1);
            b.0[1] = b.count((2..34).filter(|i| i % 3 != 1)) % 2 == 1;
            b.0[34] = b.count((1..34).filter(|i| i % 3 != 0)).is_multiple_of(2);
            b.0[0] = b.count(1..35).is_multiple_of(2);
            Ok((b.bytes(), 35))
        }
        CredentialKey::H10304 { facility, number } => {
            if *facility > 0xffff || *number > 0x7_ffff {
                return Err(WiegandError::Range);
            }
            b.push(0, 1);
            b.push(u64::from(*facility), 16);
            b.push(*number, 19);
            b.push(0, 1);
            b.0[0] = b.count(1..19) % 2 == 1;
            b.0[36] = b.count(18..36).is_multiple_of(2);
            Ok((b.bytes(), 37))
        }
        CredentialKey::Raw { data } => parse_raw(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h10301_known_vector() {
        let key = CredentialKey::H10301 {
            facility: 42,
            number: 1001,
        };
        assert_eq!(encode(&key).unwrap(), (vec![0x95, 0x01, 0xf4, 0x80], 26));
        assert_eq!(decode(&[0x95, 0x01, 0xf4, 0x80], 26).unwrap(), key);
    }

    #[test]
    fn round_trip_and_parity_all_formats() {
        let keys = [
            CredentialKey::H10301 {
                facility: 200,
                number: 54321,
            },
            CredentialKey::Corporate1000 {
                company: 3000,
                number: 987_654,
            },
            CredentialKey::H10304 {
                facility: 60000,
                number: 400_000,
            },
        ];
        for key in keys {
            let (bytes, bits) = encode(&key).unwrap();
            assert_eq!(decode(&bytes, bits).unwrap(), key);
            // Flipping any single bit must break parity.
            for i in 0..usize::from(bits) {
                let mut bad = bytes.clone();
                bad[i / 8] ^= 0x80 >> (i % 8);
                assert_eq!(
                    decode(&bad, bits),
                    Err(WiegandError::Parity(bits)),
                    "{key} bit {i}"
                );
            }
        }
    }

    #[test]
    fn unknown_length_is_raw() {
        let k = decode(&[0xab, 0xff], 12).unwrap();
        assert_eq!(
            k,
            CredentialKey::Raw {
                data: "abf0/12".into()
            }
        );
        assert!(decode(&[0xab], 12).is_err());
        assert_eq!(parse_raw("9501f480/26").unwrap().1, 26);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_decode_round_trip(f in 0u32..=0xff, n in 0u64..=0xffff,
                                    c in 0u32..=0xfff, m in 0u64..=0xf_ffff,
                                    g in 0u32..=0xffff, k in 0u64..=0x7_ffff) {
            for key in [
                CredentialKey::H10301 { facility: f, number: n },
                CredentialKey::Corporate1000 { company: c, number: m },
                CredentialKey::H10304 { facility: g, number: k },
            ] {
                let (bytes, bits) = encode(&key).unwrap();
                prop_assert_eq!(decode(&bytes, bits).unwrap(), key);
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..8), bits in 0u16..80) {
            let _ = decode(&bytes, bits);
        }
    }
}
