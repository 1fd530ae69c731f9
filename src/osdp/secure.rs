//! OSDP Secure Channel cryptography (OSDP v2.2 Annex D/E), sans-IO.
//!
//! Owns: the base key type [`Scbk`], session key derivation, the client and
//! server cryptograms, the initial R-MAC, the CBC-MAC chain and payload
//! encryption. It knows nothing of frames: callers pass the exact bytes to MAC
//! or encrypt. Randomness (RND.A, RND.B) is always passed in.
//!
//! Invariants: key material never appears in `Debug` output; comparisons of
//! cryptograms and MACs are constant-time.

use thiserror::Error;

/// Secure Channel failures.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecureError {
    /// The peer's cryptogram does not match: wrong key.
    #[error("cryptogram mismatch (wrong key?)")]
    CryptogramMismatch,
    /// A MAC did not verify.
    #[error("MAC mismatch")]
    MacMismatch,
    /// Encrypted data is not a whole number of blocks or its padding is bad.
    #[error("bad encrypted payload: {0}")]
    BadCiphertext(&'static str),
}

/// A Secure Channel Base Key (16 bytes). `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Scbk(pub [u8; 16]);

/// SCBK-D, the well-known default key used only in install mode.
pub const SCBK_DEFAULT: Scbk = Scbk([
    0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F,
]);

impl std::fmt::Debug for Scbk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scbk(<redacted>)")
    }
}

/// The three session keys derived from SCBK and RND.A.
#[derive(Clone)]
pub struct SessionKeys {
    /// S-ENC: cryptograms and payload encryption.
    pub s_enc: [u8; 16],
    /// S-MAC1: all MAC blocks but the last.
    pub s_mac1: [u8; 16],
    /// S-MAC2: the last MAC block.
    pub s_mac2: [u8; 16],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

impl SessionKeys {
    /// Derive S-ENC, S-MAC1 and S-MAC2 from the base key and the CP's RND.A.
    pub fn derive(scbk: &Scbk, rnd_a: &[u8; 8]) -> Self {
        let _ = (scbk, rnd_a);
        todo!("secure channel")
    }

    /// The PD's (client) cryptogram: E(S-ENC, RND.A ‖ RND.B).
    pub fn client_cryptogram(&self, rnd_a: &[u8; 8], rnd_b: &[u8; 8]) -> [u8; 16] {
        let _ = (rnd_a, rnd_b);
        todo!("secure channel")
    }

    /// The CP's (server) cryptogram: E(S-ENC, RND.B ‖ RND.A).
    pub fn server_cryptogram(&self, rnd_a: &[u8; 8], rnd_b: &[u8; 8]) -> [u8; 16] {
        let _ = (rnd_a, rnd_b);
        todo!("secure channel")
    }

    /// The initial R-MAC: E(S-MAC2, E(S-MAC1, server cryptogram)).
    pub fn initial_rmac(&self, server_cryptogram: &[u8; 16]) -> [u8; 16] {
        let _ = server_cryptogram;
        todo!("secure channel")
    }

    /// The full 16-byte MAC of `data`, chained from `iv` (the previous MAC in
    /// the other direction, or the initial R-MAC for the first command).
    /// Only the first 4 bytes go on the wire; the whole value chains.
    pub fn mac(&self, iv: &[u8; 16], data: &[u8]) -> [u8; 16] {
        let _ = (iv, data);
        todo!("secure channel")
    }

    /// Encrypt a payload (padded with 0x80 then zeros) with AES-CBC under
    /// S-ENC; `iv` is the bitwise complement of the last MAC received.
    pub fn encrypt(&self, iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
        let _ = (iv, plaintext);
        todo!("secure channel")
    }

    /// Reverse of [`SessionKeys::encrypt`], checking block size and padding.
    pub fn decrypt(&self, iv: &[u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>, SecureError> {
        let _ = (iv, ciphertext);
        todo!("secure channel")
    }
}

/// Constant-time equality of two byte strings of equal length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Bitwise complement of a MAC, the IV for payload encryption.
pub fn complement(mac: &[u8; 16]) -> [u8; 16] {
    let mut out = *mac;
    for b in &mut out {
        *b = !*b;
    }
    out
}
