//! Sans-IO ingest: what arrives on `<root>/+/events` and `<root>/+/status`
//! becomes rows; rows from many deliveries become one flush (one
//! transaction); after the commit, the contiguous prefix per gateway is
//! what may be acknowledged.
//!
//! Guarantees: a batch is refused whole when its topic and payload name
//! different gateways or an event lacks `seq`, `at` or `type` (the gateway
//! resends nothing it was not acked for, so a refusal loses nothing that
//! was stored); event types this build does not know are stored as they
//! are (a newer gateway is never refused for its vocabulary); a flush holds
//! each `(gateway, seq)` once, sorted.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use super::GatewayId;

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

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// `<root>/<gw>/events`.
    Events,
    /// `<root>/<gw>/status` (retained; the last will too).
    Status,
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
        _ => return Err(bad()),
    };
    Ok((gw.parse().map_err(|_| bad())?, kind))
}

/// One event row of the `events` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The gateway.
    pub gateway: GatewayId,
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
    events: Vec<Value>,
}

/// Decode one `<root>/<gw>/events` payload into rows.
pub fn decode_batch(
    topic: &str,
    gateway: &GatewayId,
    payload: &[u8],
) -> Result<Vec<Row>, IngestError> {
    let batch: WireBatch = serde_cbor::from_slice(payload).map_err(|e| IngestError::Decode {
        topic: topic.to_owned(),
        message: e.to_string(),
    })?;
    if batch.gateway != gateway.as_str() {
        return Err(IngestError::WrongGateway {
            topic: topic.to_owned(),
            topic_gateway: gateway.clone(),
            payload: batch.gateway,
        });
    }
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    batch
        .events
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            let missing = |field| IngestError::Event {
                topic: topic.to_owned(),
                index,
                field,
            };
            let seq = e
                .get("seq")
                .and_then(Value::as_u64)
                .filter(|s| *s > 0 && i64::try_from(*s).is_ok())
                .ok_or_else(|| missing("seq"))?;
            // Parsed, and in PostgreSQL's timestamptz range with a margin.
            let at = text(&e, "at")
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .filter(|ts| ts.as_second() >= -2_208_988_800)
                .ok_or_else(|| missing("at"))?;
            let kind = text(&e, "type").ok_or_else(|| missing("type"))?;
            Ok(Row {
                gateway: gateway.clone(),
                seq,
                at,
                door: text(&e, "door"),
                credential: text(&e, "credential"),
                reason: text(&e, "reason"),
                kind,
                json: e.to_string(),
            })
        })
        .collect()
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
    let status: crate::uplink::wire::Status =
        serde_cbor::from_slice(payload).map_err(|e| IngestError::Decode {
            topic: topic.to_owned(),
            message: e.to_string(),
        })?;
    if status.gateway != gateway.as_str() {
        return Err(IngestError::WrongGateway {
            topic: topic.to_owned(),
            topic_gateway: gateway.clone(),
            payload: status.gateway,
        });
    }
    let json = serde_json::to_string(&status).expect("status always encodes");
    Ok(Some(StatusRow {
        gateway: gateway.clone(),
        state: status.state.clone(),
        json,
        status,
    }))
}

/// Deliveries gathered for one transaction. `T` is the driver's token for
/// a delivery (what it must acknowledge to the broker after the commit).
#[derive(Debug)]
pub struct Plan<T> {
    rows: BTreeMap<(GatewayId, u64), Row>,
    statuses: BTreeMap<GatewayId, StatusRow>,
    touched: BTreeSet<GatewayId>,
    tokens: Vec<T>,
    max_rows: usize,
}

/// One transaction's worth: rows sorted by `(gateway, seq)`, each once;
/// the latest status per gateway; every gateway whose ack may move.
#[derive(Debug)]
pub struct Flush<T> {
    /// Event rows, sorted, unique.
    pub rows: Vec<Row>,
    /// Latest status per gateway, in arrival order of the last one.
    pub statuses: Vec<StatusRow>,
    /// Gateways that sent events (each gets an ack after the commit).
    pub gateways: Vec<GatewayId>,
    /// Broker deliveries to acknowledge after the commit.
    pub tokens: Vec<T>,
}

impl<T> Plan<T> {
    /// A plan that asks to be flushed at `max_rows` rows.
    pub fn new(max_rows: usize) -> Self {
        Self {
            rows: BTreeMap::new(),
            statuses: BTreeMap::new(),
            touched: BTreeSet::new(),
            tokens: Vec::new(),
            max_rows: max_rows.max(1),
        }
    }

    /// Add a delivered event batch (its rows may repeat earlier ones).
    pub fn add_events(&mut self, gateway: GatewayId, rows: Vec<Row>, token: T) {
        for r in rows {
            self.rows.insert((r.gateway.clone(), r.seq), r);
        }
        self.touched.insert(gateway);
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
        self.rows.len() >= self.max_rows
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
            statuses: std::mem::take(&mut self.statuses).into_values().collect(),
            gateways: std::mem::take(&mut self.touched).into_iter().collect(),
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
    use crate::journal::{Event, EventKind};
    use crate::uplink::wire::{EventBatch, Status, to_cbor};

    fn gw(s: &str) -> GatewayId {
        s.parse().unwrap()
    }

    fn batch(g: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<u8> {
        to_cbor(&EventBatch {
            gateway: g.into(),
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
        let rows = decode_batch("t", &gw("gw-1"), &batch("gw-1", 1..=3)).unwrap();
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
        let no_seq = to_cbor(&B {
            gateway: "gw-1",
            events: vec![serde_json::json!({"at": "2026-01-01T00:00:00Z", "type": "x"})],
        });
        assert_eq!(
            decode_batch("t", &gw("gw-1"), &no_seq),
            Err(IngestError::Event {
                topic: "t".into(),
                index: 0,
                field: "seq"
            })
        );
        // A time PostgreSQL could not store is refused here, not in SQL.
        let ancient = to_cbor(&B {
            gateway: "gw-1",
            events: vec![
                serde_json::json!({"seq": 1, "at": "-005000-01-01T00:00:00Z", "type": "x"}),
            ],
        });
        assert!(matches!(
            decode_batch("t", &gw("gw-1"), &ancient),
            Err(IngestError::Event { field: "at", .. })
        ));
        // An event type this build does not know is stored as it is.
        let future = to_cbor(&B {
            gateway: "gw-1",
            events: vec![serde_json::json!({"seq": 1, "at": "2026-01-01T00:00:00Z",
                "type": "lift_called", "floor": 3})],
        });
        let rows = decode_batch("t", &gw("gw-1"), &future).unwrap();
        assert_eq!(rows[0].kind, "lift_called");
    }

    #[test]
    fn status_and_last_will() {
        let s = Status {
            gateway: "gw-1".into(),
            state: "offline".into(),
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
        assert_eq!(f.gateways, [gw("gw-1"), gw("gw-2")]);
        assert_eq!(f.tokens, [1, 2, 3]);
        assert!(p.is_empty());
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
