//! What goes over MQTT (all CBOR; topics under `<prefix>` =
//! `portier/v1/<gateway-id>` by default, see `docs/uplink.md`).

use serde::{Deserialize, Serialize};

use crate::journal::Event;

/// `<prefix>/events`: a batch of journal events, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    /// The gateway.
    pub gateway: String,
    /// Events, ascending `seq`, no gaps within a batch.
    pub events: Vec<Event>,
}

/// `<prefix>/ack`: the highest sequence number such that central has
/// stored every event up to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Highest contiguous sequence number stored centrally.
    pub seq: u64,
}

/// `<prefix>/status` (retained): the gateway's health. The last will
/// publishes the same shape with `state: "offline"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The gateway.
    pub gateway: String,
    /// `online` or `offline`.
    pub state: String,
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
}

/// Encode as CBOR.
pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    serde_cbor::to_vec(value).expect("uplink payloads always encode")
}
