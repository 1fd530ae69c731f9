//! Sans-IO ingest: what arrives on `<root>/+/events` and `<root>/+/status`
//! becomes rows; rows from many deliveries become one flush (one
//! transaction); after the commit, the contiguous prefix per gateway is
//! what may be acknowledged.
//!
//! Guarantees: one bad record never costs more than itself. A message
//! that cannot be read (undecodable, oversized, another gateway's name in
//! it) becomes one [`Rejected`] record; an event without a usable `seq`,
//! `at` or `type` becomes one, and the rest of its batch is stored. Text
//! PostgreSQL cannot hold (a NUL, refused by `jsonb` and `text`) is
//! escaped, not dropped: NUL becomes the six visible characters `\u0000`
//! ([`escape_nul`]). Event types this build does not know are stored as
//! they are (a newer gateway is never refused for its vocabulary); a flush
//! holds each `(gateway, journal, seq)` once, sorted. Sequence numbers are
//! unique per journal ([`JournalId`]), not per gateway: a journal moved
//! aside and a new one both start at 1.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::GatewayId;
use crate::journal::JournalId;

/// A payload that cannot be stored.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IngestError {
    /// The topic is not `<root>/<gateway>/events|status`.
    #[error("topic {0:?} is not <root>/<gateway>/events or /status")]
    Topic(String),
    /// Not a CBOR event batch / status.
    #[error("{topic}: undecodable payload: {message}")]
    Decode {
        /// Where it came from.
        topic: String,
        /// The decoder's message.
        message: String,
    },
    /// The payload names another gateway than its topic.
    #[error("{topic}: payload is from gateway {payload:?}, topic says {topic_gateway}")]
    WrongGateway {
        /// Where it came from.
        topic: String,
        /// The topic's gateway.
        topic_gateway: GatewayId,
        /// The payload's.
        payload: String,
    },
    /// An event without a usable `seq`, `at` or `type`.
    #[error("{topic}: event #{index} has no valid {field}")]
    Event {
        /// Where it came from.
        topic: String,
        /// Position in the batch.
        index: usize,
        /// The missing field.
        field: &'static str,
    },
}

impl IngestError {
    /// The quarantine reason for this error.
    pub fn reason(&self) -> RejectReason {
        match self {
            Self::Topic(_) => RejectReason::BadTopic,
            Self::Decode { .. } => RejectReason::Undecodable,
            Self::WrongGateway { .. } => RejectReason::WrongGateway,
            Self::Event { .. } => RejectReason::BadEvent,
        }
    }
}

/// At most this many bytes of a rejected message or event are kept in
/// `events_rejected.raw` (its full length and SHA-256 are kept too).
pub const REJECT_PREFIX: usize = 4096;

/// Why a message or an event went to `events_rejected` (the `reason`
/// column; the codes are part of the contract: more may be added, none
/// renamed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// Larger than `[broker] max_message_mib`; not decoded.
    Oversized,
    /// Not a CBOR event batch (or status).
    Undecodable,
    /// The payload names another gateway than its topic.
    WrongGateway,
    /// The topic is not `<root>/<gateway>/events|status`.
    BadTopic,
    /// An event without a usable `seq`, `at` or `type`.
    BadEvent,
    /// A seq further than `[ingest] seq_window` beyond the gateway's ack.
    SeqOutOfWindow,
    /// PostgreSQL refused the row (SQLSTATE class 22, 23 or 54), even
    /// after escaping.
    RefusedByDatabase,
}

impl RejectReason {
    /// Every reason, for tests and documentation.
    pub const ALL: [RejectReason; 7] = [
        Self::Oversized,
        Self::Undecodable,
        Self::WrongGateway,
        Self::BadTopic,
        Self::BadEvent,
        Self::SeqOutOfWindow,
        Self::RefusedByDatabase,
    ];

    /// The text code stored in `events_rejected.reason`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Undecodable => "undecodable",
            Self::WrongGateway => "wrong_gateway",
            Self::BadTopic => "bad_topic",
            Self::BadEvent => "bad_event",
            Self::SeqOutOfWindow => "seq_out_of_window",
            Self::RefusedByDatabase => "refused_by_database",
        }
    }

    /// Whether a record with this reason and a seq counts as settled in
    /// the contiguous-ack walk: the gateway's own event, which central
    /// will never be able to store in `events` (it is kept here instead).
    /// A seq beyond the window is a claim, not an event: never settled.
    pub fn settles(self) -> bool {
        matches!(self, Self::BadEvent | Self::RefusedByDatabase)
    }
}

/// One record for `events_rejected`: a whole message, or one event of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The gateway the topic names, when it names one.
    pub gateway: Option<GatewayId>,
    /// The journal the record is from, when it is one event of a batch
    /// (its seq is that journal's).
    pub journal: Option<JournalId>,
    /// The topic (NUL escaped).
    pub topic: String,
    /// The event's seq, when it has a usable one (fits an `int8`).
    pub seq: Option<u64>,
    /// Length of the whole record, bytes.
    pub length: usize,
    /// Its first [`REJECT_PREFIX`] bytes.
    pub raw: Vec<u8>,
    /// SHA-256 of the whole record (a redelivery is counted, not stored
    /// again).
    pub digest: [u8; 32],
    /// Why.
    pub reason: RejectReason,
    /// Details for people (the decoder's or PostgreSQL's message).
    pub detail: String,
}

impl Rejected {
    /// A rejected record of `bytes` (only a prefix is kept).
    pub fn new(
        gateway: Option<GatewayId>,
        topic: &str,
        seq: Option<u64>,
        bytes: &[u8],
        reason: RejectReason,
        detail: String,
    ) -> Self {
        Self {
            gateway,
            journal: None,
            topic: escape_nul(topic).into_owned(),
            seq: seq.filter(|s| i64::try_from(*s).is_ok()),
            length: bytes.len(),
            raw: bytes[..bytes.len().min(REJECT_PREFIX)].to_vec(),
            digest: Sha256::digest(bytes).into(),
            reason,
            detail: escape_nul(&detail).into_owned(),
        }
    }

    /// The same record, as an event of `journal`.
    pub fn of_journal(mut self, journal: JournalId) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Whether this record settles its seq in the contiguous-ack walk (of
    /// its journal).
    pub fn settles(&self) -> bool {
        self.seq.is_some() && self.journal.is_some() && self.reason.settles()
    }
}

/// Text PostgreSQL can store: NUL (refused by `jsonb` as `\u0000`, and by
/// `text`) becomes the six visible characters `\u0000`. Everything else
/// (escape sequences, other control characters) is stored as it is; the
/// event is still JSON, so readers see it escaped.
pub fn escape_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\\u0000"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// [`escape_nul`] on every string and key of `v`; whether anything changed.
pub fn escape_value(v: &mut Value) -> bool {
    match v {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(e) = escape_nul(s) {
                *s = e;
                true
            } else {
                false
            }
        }
        Value::Array(a) => a.iter_mut().fold(false, |c, v| escape_value(v) | c),
        Value::Object(m) => {
            let mut changed = m.values_mut().fold(false, |c, v| escape_value(v) | c);
            if m.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(m);
                for (k, v) in old {
                    m.insert(escape_nul(&k).into_owned(), v);
                }
                changed = true;
            }
            changed
        }
        _ => false,
    }
}

/// Whether `seq` is further beyond the gateway's acknowledged `acked`
/// than `window` (such a seq is quarantined, not stored).
pub fn beyond_window(seq: u64, acked: u64, window: u64) -> bool {
    seq > acked.saturating_add(window)
}

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// `<root>/<gw>/events`.
    Events,
    /// `<root>/<gw>/status` (retained; the last will too).
    Status,
    /// `<root>/<gw>/urgent`: urgent events ahead of the backlog (the
    /// urgent lane's own connection).
    Urgent,
}

/// Split `<root>/<gateway>/<kind>` (`root` may contain `/`).
pub fn parse_topic(root: &str, topic: &str) -> Result<(GatewayId, TopicKind), IngestError> {
    let bad = || IngestError::Topic(topic.to_owned());
    let rest = topic
        .strip_prefix(root)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(bad)?;
    let (gw, kind) = rest.split_once('/').ok_or_else(bad)?;
    let kind = match kind {
        "events" => TopicKind::Events,
        "status" => TopicKind::Status,
        "urgent" => TopicKind::Urgent,
        _ => return Err(bad()),
    };
    Ok((gw.parse().map_err(|_| bad())?, kind))
}

/// One event row of the `events` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The gateway.
    pub gateway: GatewayId,
    /// The journal the event is from.
    pub journal: JournalId,
    /// Its sequence number.
    pub seq: u64,
    /// Time of the happening.
    pub at: jiff::Timestamp,
    /// Event type (`access_granted`, …).
    pub kind: String,
    /// `door`, when the event has one.
    pub door: Option<String>,
    /// `credential`, when the event has one.
    pub credential: Option<String>,
    /// `reason`, when the event has one.
    pub reason: Option<String>,
    /// The whole event as JSON text.
    pub json: String,
}

#[derive(Deserialize)]
struct WireBatch {
    gateway: String,
    /// Absent from gateways of an earlier version: the nil journal.
    #[serde(default)]
    journal: JournalId,
    events: Vec<Value>,
}

/// One decoded event batch: the rows to store and the events that cannot
/// be (each quarantined alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The journal the batch is from.
    pub journal: JournalId,
    /// Storable rows (text escaped).
    pub rows: Vec<Row>,
    /// Events without a usable `seq`, `at` or `type`.
    pub rejected: Vec<Rejected>,
}

/// Decode one `<root>/<gw>/events` payload into rows. A payload that is
/// not a batch, or names another gateway, is an error (the caller
/// quarantines the message); an unusable event is quarantined alone.
pub fn decode_batch(
    topic: &str,
    gateway: &GatewayId,
    payload: &[u8],
) -> Result<Batch, IngestError> {
    let batch: WireBatch = serde_cbor::from_slice(payload).map_err(|e| IngestError::Decode {
        topic: topic.to_owned(),
        message: e.to_string(),
    })?;
    if batch.gateway != gateway.as_str() {
        return Err(IngestError::WrongGateway {
            topic: topic.to_owned(),
            topic_gateway: gateway.clone(),
            payload: escape_nul(&batch.gateway).into_owned(),
        });
    }
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut out = Batch {
        journal: batch.journal,
        ..Batch::default()
    };
    for (index, mut e) in batch.events.into_iter().enumerate() {
        let seq = e
            .get("seq")
            .and_then(Value::as_u64)
            .filter(|s| *s > 0 && i64::try_from(*s).is_ok());
        let original = e.to_string();
        escape_value(&mut e);
        // Parsed, and in PostgreSQL's timestamptz range with a margin.
        let at = text(&e, "at")
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .filter(|ts| ts.as_second() >= -2_208_988_800);
        let kind = text(&e, "type");
        let missing = match (seq, at, &kind) {
            (None, _, _) => Some("seq"),
            (_, None, _) => Some("at"),
            (_, _, None) => Some("type"),
            _ => None,
        };
        if let Some(field) = missing {
            let err = IngestError::Event {
                topic: topic.to_owned(),
                index,
                field,
            };
            out.rejected.push(
                Rejected::new(
                    Some(gateway.clone()),
                    topic,
                    seq,
                    original.as_bytes(),
                    err.reason(),
                    err.to_string(),
                )
                .of_journal(batch.journal),
            );
            continue;
        }
        let (Some(seq), Some(at), Some(kind)) = (seq, at, kind) else {
            unreachable!("checked above")
        };
        out.rows.push(Row {
            gateway: gateway.clone(),
            journal: batch.journal,
            seq,
            at,
            door: text(&e, "door"),
            credential: text(&e, "credential"),
            reason: text(&e, "reason"),
            kind,
            json: e.to_string(),
        });
    }
    Ok(out)
}

/// A gateway's retained status (or last will), as stored in `gateways`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// The gateway.
    pub gateway: GatewayId,
    /// `online` or `offline`.
    pub state: String,
    /// The whole status as JSON text.
    pub json: String,
    /// The decoded fields.
    pub status: crate::uplink::wire::Status,
}

/// Decode one `<root>/<gw>/status` payload. An empty payload (a cleared
/// retained message) is `None`.
pub fn decode_status(
    topic: &str,
    gateway: &GatewayId,
    payload: &[u8],
) -> Result<Option<StatusRow>, IngestError> {
    if payload.is_empty() {
        return Ok(None);
    }
    let mut status: crate::uplink::wire::Status =
        serde_cbor::from_slice(payload).map_err(|e| IngestError::Decode {
            topic: topic.to_owned(),
            message: e.to_string(),
        })?;
    if status.gateway != gateway.as_str() {
        return Err(IngestError::WrongGateway {
            topic: topic.to_owned(),
            topic_gateway: gateway.clone(),
            payload: escape_nul(&status.gateway).into_owned(),
        });
    }
    for t in std::iter::once(&mut status.version).chain(status.rules_refused.as_mut()) {
        if let std::borrow::Cow::Owned(e) = escape_nul(t) {
            *t = e;
        }
    }
    bound_readers(&mut status.readers);
    let json = serde_json::to_string(&status).expect("status always encodes");
    Ok(Some(StatusRow {
        gateway: gateway.clone(),
        state: status.state.as_str().to_owned(),
        json,
        status,
    }))
}

/// The most readers kept from one status (a bus holds at most 127 PDs;
/// a gateway with more than 8 full buses is not a building gateway).
pub const MAX_READERS: usize = 1024;

/// The longest text kept from a reader's inventory entry (bus and reader
/// names, vendor, firmware, capability names), in characters.
pub const MAX_READER_TEXT: usize = 64;

/// Keep a status's reader list to its documented bounds: at most
/// [`MAX_READERS`] entries, text cut to [`MAX_READER_TEXT`] characters and
/// without NUL (which PostgreSQL text cannot hold).
fn bound_readers(readers: &mut Vec<crate::status::ReaderInventory>) {
    readers.truncate(MAX_READERS);
    let bound = |t: &mut String| {
        let cut: String = t.chars().take(MAX_READER_TEXT).collect();
        *t = escape_nul(&cut).into_owned();
    };
    for r in readers {
        bound(&mut r.bus);
        bound(&mut r.name);
        if let Some(id) = &mut r.identity {
            bound(&mut id.vendor);
            bound(&mut id.firmware);
        }
        r.capabilities.truncate(64);
        for c in &mut r.capabilities {
            bound(&mut c.name);
        }
    }
}

/// Deliveries gathered for one transaction. `T` is the driver's token for
/// a delivery (what it must acknowledge to the broker after the commit).
#[derive(Debug)]
pub struct Plan<T> {
    rows: BTreeMap<(GatewayId, JournalId, u64), Row>,
    rejected: Vec<Rejected>,
    statuses: BTreeMap<GatewayId, StatusRow>,
    touched: BTreeSet<GatewayId>,
    journals: BTreeSet<(GatewayId, JournalId)>,
    tokens: Vec<T>,
    max_rows: usize,
}

/// One transaction's worth: rows sorted by `(gateway, journal, seq)`,
/// each once; the latest status per gateway; every journal whose ack may
/// move.
#[derive(Debug)]
pub struct Flush<T> {
    /// Event rows, sorted, unique.
    pub rows: Vec<Row>,
    /// Messages and events for `events_rejected`, in arrival order.
    pub rejected: Vec<Rejected>,
    /// Latest status per gateway, in arrival order of the last one.
    pub statuses: Vec<StatusRow>,
    /// Gateways that sent anything (their rows are locked first).
    pub gateways: Vec<GatewayId>,
    /// The journals of the event batches, sorted (each gets an ack after
    /// the commit).
    pub journals: Vec<(GatewayId, JournalId)>,
    /// Broker deliveries to acknowledge after the commit.
    pub tokens: Vec<T>,
}

impl<T> Plan<T> {
    /// A plan that asks to be flushed at `max_rows` rows.
    pub fn new(max_rows: usize) -> Self {
        Self {
            rows: BTreeMap::new(),
            rejected: Vec::new(),
            statuses: BTreeMap::new(),
            touched: BTreeSet::new(),
            journals: BTreeSet::new(),
            tokens: Vec::new(),
            max_rows: max_rows.max(1),
        }
    }

    /// Add a delivered event batch (its rows may repeat earlier ones).
    pub fn add_events(&mut self, gateway: GatewayId, batch: Batch, token: T) {
        for r in batch.rows {
            self.rows.insert((r.gateway.clone(), r.journal, r.seq), r);
        }
        self.rejected.extend(batch.rejected);
        self.journals.insert((gateway.clone(), batch.journal));
        self.touched.insert(gateway);
        self.tokens.push(token);
    }

    /// Add a delivery that is quarantined whole (oversized, undecodable,
    /// another gateway's); acknowledged to the broker once it is recorded.
    pub fn add_rejected(&mut self, rejected: Rejected, token: T) {
        if let Some(g) = &rejected.gateway {
            self.touched.insert(g.clone());
        }
        self.rejected.push(rejected);
        self.tokens.push(token);
    }

    /// Add a delivered status (a later one replaces an earlier one).
    pub fn add_status(&mut self, status: StatusRow, token: T) {
        self.statuses.insert(status.gateway.clone(), status);
        self.tokens.push(token);
    }

    /// A delivery that carries nothing to store (undecodable, cleared);
    /// acknowledged to the broker with the next flush.
    pub fn add_nothing(&mut self, token: T) {
        self.tokens.push(token);
    }

    /// Whether the plan is full.
    pub fn is_full(&self) -> bool {
        self.rows.len() + self.rejected.len() >= self.max_rows
    }

    /// Whether anything is waiting.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Take what was gathered; the plan is empty again.
    pub fn take(&mut self) -> Flush<T> {
        let rows = std::mem::take(&mut self.rows).into_values().collect();
        Flush {
            rows,
            rejected: std::mem::take(&mut self.rejected),
            statuses: std::mem::take(&mut self.statuses).into_values().collect(),
            gateways: std::mem::take(&mut self.touched).into_iter().collect(),
            journals: std::mem::take(&mut self.journals).into_iter().collect(),
            tokens: std::mem::take(&mut self.tokens),
        }
    }
}

/// The contiguous-ack walk: given the stored acknowledgement `acked` and
/// the stored sequence numbers above it in ascending order, the highest
/// `n` such that every seq in `1..=n` is stored.
pub fn contiguous_end(acked: u64, stored_above: impl IntoIterator<Item = u64>) -> u64 {
    let mut end = acked;
    for s in stored_above {
        if s <= end {
            continue;
        }
        if s != end + 1 {
            break;
        }
        end = s;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind};
    use crate::uplink::wire::{EventBatch, Status, to_cbor};

    fn gw(s: &str) -> GatewayId {
        s.parse().unwrap()
    }

    fn batch(g: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<u8> {
        to_cbor(&EventBatch {
            gateway: g.into(),
            journal: JournalId::NIL,
            events: seqs
                .map(|seq| Event {
                    seq,
                    at: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
                    kind: EventKind::AccessDenied {
                        door: "side".into(),
                        reader: "r".into(),
                        credential: Some("h10301:42:1".into()),
                        reason: crate::rules::DenyReason::Blocked,
                    },
                })
                .collect(),
        })
    }

    #[test]
    fn topics() {
        assert_eq!(
            parse_topic("portier/v1", "portier/v1/gw-1/events").unwrap(),
            (gw("gw-1"), TopicKind::Events)
        );
        assert_eq!(
            parse_topic("portier/v1", "portier/v1/gw-1/status").unwrap(),
            (gw("gw-1"), TopicKind::Status)
        );
        for bad in [
            "portier/v1/gw-1/ack",
            "portier/v2/gw-1/events",
            "portier/v1/events",
            "portier/v1//events",
        ] {
            assert!(parse_topic("portier/v1", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn batches_become_rows_with_the_columns() {
        let rows = decode_batch("t", &gw("gw-1"), &batch("gw-1", 1..=3))
            .unwrap()
            .rows;
        assert_eq!(rows.len(), 3);
        let r = &rows[0];
        assert_eq!((r.seq, r.kind.as_str()), (1, "access_denied"));
        assert_eq!(r.door.as_deref(), Some("side"));
        assert_eq!(r.credential.as_deref(), Some("h10301:42:1"));
        assert_eq!(r.reason.as_deref(), Some("blocked"));
        let v: Value = serde_json::from_str(&r.json).unwrap();
        assert_eq!(v["reader"], "r");
    }

    #[test]
    fn wrong_gateway_and_garbage_are_refused() {
        assert!(matches!(
            decode_batch("t", &gw("gw-1"), &batch("gw-2", 1..=1)),
            Err(IngestError::WrongGateway { .. })
        ));
        assert!(matches!(
            decode_batch("t", &gw("gw-1"), b"\xff\x00"),
            Err(IngestError::Decode { .. })
        ));
        #[derive(serde::Serialize)]
        struct B {
            gateway: &'static str,
            events: Vec<serde_json::Value>,
        }
        // An unusable event is quarantined alone; the rest is stored.
        let mixed = to_cbor(&B {
            gateway: "gw-1",
            events: vec![
                serde_json::json!({"seq": 1, "at": "2026-01-01T00:00:00Z", "type": "x"}),
                serde_json::json!({"at": "2026-01-01T00:00:00Z", "type": "x"}),
                // A time PostgreSQL could not store is refused here, not in SQL.
                serde_json::json!({"seq": 3, "at": "-005000-01-01T00:00:00Z", "type": "x"}),
                serde_json::json!({"seq": 4, "at": "2026-01-01T00:00:00Z"}),
                serde_json::json!({"seq": 9_223_372_036_854_775_808u64, "at": "2026-01-01T00:00:00Z", "type": "x"}),
                "not an object".into(),
                serde_json::json!({"seq": 5, "at": "2026-01-01T00:00:00Z", "type": "x"}),
            ],
        });
        let b = decode_batch("t", &gw("gw-1"), &mixed).unwrap();
        assert_eq!(b.rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 5]);
        let rej: Vec<_> = b
            .rejected
            .iter()
            .map(|r| (r.seq, r.reason, r.settles(), r.detail.as_str()))
            .collect();
        assert_eq!(
            rej,
            [
                (
                    None,
                    RejectReason::BadEvent,
                    false,
                    "t: event #1 has no valid seq"
                ),
                (
                    Some(3),
                    RejectReason::BadEvent,
                    true,
                    "t: event #2 has no valid at"
                ),
                (
                    Some(4),
                    RejectReason::BadEvent,
                    true,
                    "t: event #3 has no valid type"
                ),
                (
                    None,
                    RejectReason::BadEvent,
                    false,
                    "t: event #4 has no valid seq"
                ),
                (
                    None,
                    RejectReason::BadEvent,
                    false,
                    "t: event #5 has no valid seq"
                ),
            ]
        );
        assert_eq!(
            b.rejected[0].raw,
            br#"{"at":"2026-01-01T00:00:00Z","type":"x"}"#
        );
        // An event type this build does not know is stored as it is.
        let future = to_cbor(&B {
            gateway: "gw-1",
            events: vec![serde_json::json!({"seq": 1, "at": "2026-01-01T00:00:00Z",
                "type": "lift_called", "floor": 3})],
        });
        let rows = decode_batch("t", &gw("gw-1"), &future).unwrap().rows;
        assert_eq!(rows[0].kind, "lift_called");
    }

    #[test]
    fn nul_is_escaped_not_dropped_and_escapes_are_kept() {
        #[derive(serde::Serialize)]
        struct B {
            gateway: &'static str,
            events: Vec<serde_json::Value>,
        }
        let name = "a\u{0}b\u{1b}[31m";
        let payload = to_cbor(&B {
            gateway: "gw-1",
            events: vec![serde_json::json!({"seq": 1, "at": "2026-01-01T00:00:00Z",
                "type": "admin_login", "user": name, "door": "d\u{0}",
                "nested": {"k\u{0}": ["\u{0}"]}})],
        });
        let b = decode_batch("t", &gw("gw-1"), &payload).unwrap();
        assert!(b.rejected.is_empty());
        let r = &b.rows[0];
        let v: Value = serde_json::from_str(&r.json).unwrap();
        assert_eq!(v["user"], "a\\u0000b\u{1b}[31m");
        assert_eq!(v["nested"]["k\\u0000"][0], "\\u0000");
        assert_eq!(r.door.as_deref(), Some("d\\u0000"));
        assert!(!r.json.contains('\0'));
        assert_eq!(escape_nul("plain"), std::borrow::Cow::Borrowed("plain"));
    }

    #[test]
    fn rejected_records_keep_a_prefix_the_length_and_a_digest() {
        let big = vec![7u8; REJECT_PREFIX * 3];
        let r = Rejected::new(
            Some(gw("gw-1")),
            "t\u{0}",
            Some(u64::MAX),
            &big,
            RejectReason::Oversized,
            "x".into(),
        );
        assert_eq!(
            (r.length, r.raw.len(), r.seq),
            (big.len(), REJECT_PREFIX, None)
        );
        assert_eq!(r.topic, "t\\u0000");
        assert!(!r.settles());
        let codes: BTreeSet<_> = RejectReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), RejectReason::ALL.len());
        assert!(beyond_window(1_000_001, 0, 1_000_000));
        assert!(!beyond_window(1_000_000, 0, 1_000_000));
        assert!(!beyond_window(u64::MAX, u64::MAX - 1, 1_000_000));
        assert!(beyond_window(i64::MAX as u64, 5, 1_000_000));
    }

    #[test]
    fn status_and_last_will() {
        let s = Status {
            gateway: "gw-1".into(),
            state: crate::uplink::wire::LinkState::Offline,
            ..Default::default()
        };
        let row = decode_status("t", &gw("gw-1"), &to_cbor(&s))
            .unwrap()
            .unwrap();
        assert_eq!(row.state, "offline");
        assert_eq!(decode_status("t", &gw("gw-1"), b"").unwrap(), None);
    }

    #[test]
    fn a_plan_dedups_sorts_and_remembers_deliveries() {
        let mut p = Plan::new(5);
        let rows = |g: &str, r| decode_batch("t", &gw(g), &batch(g, r)).unwrap();
        let bad = Rejected::new(
            Some(gw("gw-3")),
            "t",
            None,
            b"x",
            RejectReason::Undecodable,
            String::new(),
        );
        p.add_rejected(bad, 0);
        p.add_events(gw("gw-2"), rows("gw-2", 1..=2), 1);
        p.add_events(gw("gw-1"), rows("gw-1", 3..=4), 2);
        p.add_events(gw("gw-1"), rows("gw-1", 1..=4), 3); // a resend
        assert!(p.is_full());
        let f = p.take();
        let keys: Vec<_> = f.rows.iter().map(|r| (r.gateway.as_str(), r.seq)).collect();
        assert_eq!(
            keys,
            [
                ("gw-1", 1),
                ("gw-1", 2),
                ("gw-1", 3),
                ("gw-1", 4),
                ("gw-2", 1),
                ("gw-2", 2)
            ]
        );
        assert_eq!(f.gateways, [gw("gw-1"), gw("gw-2"), gw("gw-3")]);
        assert_eq!(f.tokens, [0, 1, 2, 3]);
        assert_eq!(f.rejected.len(), 1);
        assert!(p.is_empty());
    }

    #[test]
    fn the_same_seqs_of_two_journals_are_two_sets_of_rows() {
        let (a, b) = (JournalId([0xa; 16]), JournalId([0xb; 16]));
        let of = |j: JournalId, seqs: std::ops::RangeInclusive<u64>| {
            let mut batch: EventBatch = serde_cbor::from_slice(&batch("gw-1", seqs)).unwrap();
            batch.journal = j;
            decode_batch("t", &gw("gw-1"), &to_cbor(&batch)).unwrap()
        };
        let mut p = Plan::new(100);
        p.add_events(gw("gw-1"), of(a, 1..=3), 0);
        p.add_events(gw("gw-1"), of(b, 1..=2), 1);
        p.add_events(gw("gw-1"), of(a, 2..=3), 2); // a resend of A
        let f = p.take();
        let keys: Vec<_> = f.rows.iter().map(|r| (r.journal, r.seq)).collect();
        assert_eq!(keys, [(a, 1), (a, 2), (a, 3), (b, 1), (b, 2)]);
        assert_eq!(f.journals, [(gw("gw-1"), a), (gw("gw-1"), b)]);
        // A batch of an earlier version is the nil journal's.
        assert_eq!(
            decode_batch("t", &gw("gw-1"), &batch("gw-1", 1..=1))
                .unwrap()
                .journal,
            JournalId::NIL
        );
    }

    #[test]
    fn contiguous_prefix_only() {
        assert_eq!(contiguous_end(0, []), 0);
        assert_eq!(contiguous_end(0, [1, 2, 3]), 3);
        assert_eq!(contiguous_end(0, [2, 3]), 0);
        assert_eq!(contiguous_end(5, [6, 7, 9, 10]), 7);
        assert_eq!(contiguous_end(5, [5, 6]), 6);
        assert_eq!(contiguous_end(5, [7]), 5);
    }

    proptest::proptest! {
        /// Against a model: the walk equals "count up from acked while stored".
        #[test]
        fn walk_matches_model(acked in 0u64..20, stored in proptest::collection::btree_set(1u64..60, 0..40)) {
            let mut want = acked;
            while stored.contains(&(want + 1)) { want += 1; }
            let got = contiguous_end(acked, stored.iter().copied().filter(|s| *s > acked));
            proptest::prop_assert_eq!(got, want);
        }
    }
}
