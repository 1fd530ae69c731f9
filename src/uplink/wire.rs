//! What goes over MQTT (all CBOR; topics under `<prefix>` =
//! `portier/v1/<gateway-id>` by default, see `docs/uplink.md`).

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::journal::JournalId;

/// `<prefix>/events`: a batch of journal events, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    /// The gateway.
    pub gateway: String,
    /// The journal the events are from: their `seq` is unique within it.
    /// A batch without it (a gateway of an earlier version) is from the
    /// nil journal, under which central kept the events of that time.
    #[serde(default)]
    pub journal: JournalId,
    /// Events, ascending `seq`, no gaps within a batch.
    pub events: Vec<Event>,
}

/// `<prefix>/ack`: the highest sequence number such that central has
/// stored every event up to it, of one journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Highest contiguous sequence number stored centrally.
    pub seq: u64,
    /// The journal it acknowledges. A gateway ignores an ack naming
    /// another journal than its own (a drain of a journal moved aside
    /// shares the `ack` topic with the running daemon). An ack without it
    /// (a central of an earlier version) applies to whatever journal
    /// hears it, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalId>,
}

/// Whether the gateway is connected (its last will says `offline`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Connected and publishing.
    #[default]
    Online,
    /// Gone (the broker published the last will), or stopping.
    Offline,
    /// A state this version does not know (a newer gateway's): kept, not
    /// refused.
    #[serde(other)]
    Unknown,
}

impl LinkState {
    /// The contract name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Unknown => "unknown",
        }
    }
}

impl PartialEq<str> for LinkState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for LinkState {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

/// `<prefix>/status` (retained): the gateway's health. The last will
/// publishes the same shape with `state: "offline"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The gateway.
    pub gateway: String,
    /// `online` or `offline`.
    pub state: LinkState,
    /// Software version.
    pub version: String,
    /// Rules version in force.
    pub rules_version: Option<u64>,
    /// The last rules refusal, if the last apply failed.
    pub rules_refused: Option<String>,
    /// Events not yet acknowledged centrally.
    pub backlog: u64,
    /// Sequence number of the oldest of them.
    pub backlog_oldest_seq: Option<u64>,
    /// When the oldest of them happened (the backlog's age).
    pub backlog_oldest_at: Option<jiff::Timestamp>,
    /// Highest acknowledged sequence number.
    pub acked: u64,
    /// Events dropped because the journal's budget was full.
    pub dropped_events: u64,
    /// The journal the gateway writes now: central shows it and flags a
    /// change (`journal_changed`). Absent from gateways of an earlier
    /// version and from the last will.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalId>,
    /// The reader inventory (identity, firmware, capabilities, link
    /// state); central keeps it in its `readers` table. Absent from
    /// gateways of an earlier version and from the last will.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readers: Vec<crate::status::ReaderInventory>,
}

/// Encode as CBOR.
pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    serde_cbor::to_vec(value).expect("uplink payloads always encode")
}

/// The CBOR of an [`EventBatch`] built from events already encoded (the
/// journal stores each event as its CBOR): byte for byte what
/// `to_cbor(&EventBatch { gateway, journal, events })` writes (a map of
/// three text keys in field order, a definite-length array), without
/// decoding and re-encoding every event on the drain path.
pub fn event_batch_cbor<'a>(
    gateway: &str,
    journal: JournalId,
    events: impl ExactSizeIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + events.len() * 96);
    out.push(0xa3); // map, three entries
    out.extend_from_slice(&to_cbor(&"gateway"));
    out.extend_from_slice(&to_cbor(&gateway));
    out.extend_from_slice(&to_cbor(&"journal"));
    out.extend_from_slice(&to_cbor(&journal));
    out.extend_from_slice(&to_cbor(&"events"));
    cbor_head(&mut out, 4, events.len() as u64);
    for e in events {
        out.extend_from_slice(e);
    }
    out
}

/// A CBOR item head (RFC 8949 §3): major type and argument, shortest form.
fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// A reader firmware file on `<prefix>/firmware` (CBOR): the bytes and
/// the signed `reader_update` command they are for. Nothing here is
/// trusted: the gateway sends the bytes only if their SHA-256 and size are
/// the command's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareFile {
    /// The command's id.
    pub command: String,
    /// The file.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Largest payload accepted on the topics other than `snapshot`,
/// `delta` and `firmware`: `ack`, `command`, `time` (a few hundred bytes
/// in practice).
pub const MAX_SMALL_MESSAGE: usize = 64 << 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    #[test]
    fn a_spliced_batch_is_the_same_bytes_as_an_encoded_one() {
        for n in [0usize, 1, 23, 24, 255, 256, 1000, 70_000] {
            let events: Vec<Event> = (0..n as u64)
                .map(|seq| Event {
                    seq: seq + 1,
                    at: "2026-11-23T22:00:00Z".parse().unwrap(),
                    kind: EventKind::DoorClosed {
                        door: format!("door-{seq}").into(),
                    },
                })
                .collect();
            let encoded: Vec<Vec<u8>> = events.iter().map(to_cbor).collect();
            let journal = JournalId([0x5a; 16]);
            let spliced = event_batch_cbor("gw-a", journal, encoded.iter().map(Vec::as_slice));
            let whole = to_cbor(&EventBatch {
                gateway: "gw-a".into(),
                journal,
                events,
            });
            assert_eq!(spliced, whole, "{n} events");
        }
    }

    /// Payloads of an earlier version still decode: a batch without
    /// `journal` is from the nil journal, an ack without it names none.
    #[test]
    fn payloads_without_a_journal_still_decode() {
        #[derive(Serialize)]
        struct OldBatch {
            gateway: &'static str,
            events: Vec<Event>,
        }
        #[derive(Serialize)]
        struct OldAck {
            seq: u64,
        }
        let b: EventBatch = serde_cbor::from_slice(&to_cbor(&OldBatch {
            gateway: "gw-a",
            events: Vec::new(),
        }))
        .unwrap();
        assert_eq!(b.journal, JournalId::NIL);
        let a: Ack = serde_cbor::from_slice(&to_cbor(&OldAck { seq: 7 })).unwrap();
        assert_eq!(
            a,
            Ack {
                seq: 7,
                journal: None
            }
        );
        let j = JournalId([1; 16]);
        let a: Ack = serde_cbor::from_slice(&to_cbor(&Ack {
            seq: 7,
            journal: Some(j),
        }))
        .unwrap();
        assert_eq!(a.journal, Some(j));
        // An earlier version's decoder ignores the new fields.
        #[derive(Deserialize)]
        struct OldAckIn {
            seq: u64,
        }
        let old: OldAckIn = serde_cbor::from_slice(&to_cbor(&a)).unwrap();
        assert_eq!(old.seq, 7);
        let s: Status = serde_cbor::from_slice(&to_cbor(&Status::default())).unwrap();
        assert_eq!(s.journal, None);
    }
}
