//! The journal's identity: a random 128-bit id created with the journal
//! and kept in its directory (file `id`, 32 hex digits and a newline).
//!
//! Why: sequence numbers are unique only within one journal. A journal
//! moved aside (the recovery from damaged commits), a replaced gateway
//! with the same id, a new SD card: each starts again at 1, and central,
//! which stores by `(gateway, journal, seq)`, must not take the new
//! events for duplicates of the old ones. The id travels in every event
//! batch, in the retained status and in every ack, so acks for one
//! journal never delete events of another.
//!
//! A journal written by an earlier version (segments, no `id` file) is
//! the **nil id** (all zeros): central stored its events before journals
//! had ids, and keeps them (and its acknowledged bound) under the nil id,
//! so such a journal goes on where it was.

use std::fmt;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The file in the journal directory that holds the id.
pub(super) const ID_FILE: &str = "id";

/// A journal's identity: 16 random bytes, written as 32 lowercase hex
/// digits (on the wire as a CBOR / JSON text string).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JournalId(pub [u8; 16]);

/// Why a text is not a journal id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a journal id is 32 hex digits, not {0:?}")]
pub struct BadJournalId(pub String);

impl JournalId {
    /// The id of a journal written before journals had ids (and of event
    /// batches that name none): central's rows from then are under it.
    pub const NIL: JournalId = JournalId([0; 16]);

    /// A fresh random id (the operating system's entropy).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        crate::clock::os_entropy(&mut bytes);
        Self(bytes)
    }

    /// Whether this is the nil id (a journal of an earlier version).
    pub fn is_nil(&self) -> bool {
        *self == Self::NIL
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The first 8 hex digits (a short name, e.g. in an MQTT client id).
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for JournalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for JournalId {
    type Err = BadJournalId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadJournalId(crate::text::bounded_owned(s.to_owned(), crate::text::ID));
        if s.len() != 32 {
            return Err(bad());
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| bad())?;
        Ok(Self(bytes))
    }
}

impl TryFrom<&[u8]> for JournalId {
    type Error = BadJournalId;

    fn try_from(b: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 16]>::try_from(b)
            .map(Self)
            .map_err(|_| BadJournalId(hex::encode(&b[..b.len().min(64)])))
    }
}

impl Serialize for JournalId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for JournalId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Read the id file of `dir`: `Ok(None)` when there is none.
pub(super) fn read(dir: &Path) -> std::io::Result<Option<JournalId>> {
    let text = match std::fs::read_to_string(dir.join(ID_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    text.trim_end()
        .parse()
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Write `id` as the id of the journal in `dir` (created if missing):
/// under a temporary name, flushed, renamed into place, and the directory
/// flushed, so that the file is there whole or not at all before the
/// first segment is written.
pub(super) fn write(dir: &Path, id: JournalId) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(ID_FILE);
    let tmp = dir.join("id.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(format!("{id}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_refusals() {
        let id = JournalId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(id.to_string().parse::<JournalId>().unwrap(), id);
        assert_eq!(id.short(), "abababab");
        assert!(JournalId::NIL.is_nil());
        for bad in ["", "ab", &"zz".repeat(16), &"ab".repeat(17)] {
            assert!(bad.parse::<JournalId>().is_err(), "{bad}");
        }
        let cbor = serde_cbor::to_vec(&id).unwrap();
        assert_eq!(serde_cbor::from_slice::<JournalId>(&cbor).unwrap(), id);
        assert_ne!(JournalId::random(), JournalId::random());
    }
}
