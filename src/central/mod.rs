//! The central side of Portier's MQTT contract (`portier central`): events
//! from every gateway into PostgreSQL, acknowledged only after they are
//! committed; the fleet's retained status; signed rules and commands out.
//!
//! Sans-IO parts: [`ingest`] (decoding event batches and status, planning a
//! flush, the contiguous-ack walk), [`import`] (credentials from CSV, JSON
//! or SQL rows), [`config`] (the `central.toml` file). The async driver that
//! owns PostgreSQL and the broker connection is [`driver`]; [`db`] holds the
//! SQL and the migrations (`migrations/central/*.sql`). See `docs/central.md`.

pub mod config;
pub mod db;
pub mod driver;
pub mod fuzz;
pub mod import;
pub mod ingest;
pub mod pgtls;
pub mod repair;

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

pub use config::CentralConfig;

/// A gateway id as it appears in topics (`portier/v1/<id>/…`), in the
/// certificate's CN and in every table: non-empty, at most 128 bytes, no
/// MQTT wildcard, separator or whitespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GatewayId(String);

/// A gateway id that cannot be one.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{0:?} is not a gateway id (1..=128 characters, no '/', '+', '#' or whitespace)")]
pub struct BadGatewayId(pub String);

impl GatewayId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for GatewayId {
    type Err = BadGatewayId;
    fn from_str(s: &str) -> Result<Self, BadGatewayId> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && !s
                .chars()
                .any(|c| matches!(c, '/' | '+' | '#') || c.is_whitespace() || c.is_control());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadGatewayId(s.to_owned()))
        }
    }
}

impl fmt::Display for GatewayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The topics of one gateway under the topic root (default `portier/v1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayTopics {
    /// `<root>/<gw>/snapshot` (retained).
    pub snapshot: String,
    /// `<root>/<gw>/delta`.
    pub delta: String,
    /// `<root>/<gw>/command`.
    pub command: String,
    /// `<root>/<gw>/ack`.
    pub ack: String,
    /// `<root>/<gw>/firmware`: reader firmware files.
    pub firmware: String,
}

impl GatewayTopics {
    /// The topics of `gateway` under `root`.
    pub fn new(root: &str, gateway: &GatewayId) -> Self {
        let p = format!("{root}/{gateway}");
        Self {
            snapshot: format!("{p}/snapshot"),
            delta: format!("{p}/delta"),
            command: format!("{p}/command"),
            ack: format!("{p}/ack"),
            firmware: format!("{p}/firmware"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Central is a peer of the gateway's drivers, not a user of them: its
    /// MQTT setup comes from the neutral [`crate::mqtt`], its events from
    /// [`crate::event`].
    #[test]
    fn central_imports_no_driver_and_no_event_through_the_journal() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/central");
        // Spelt in pieces so that this test does not find itself.
        let driver = ["crate::", "driver"].concat();
        let journal = ["journal", "::"].concat();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                assert!(!code.contains(&driver), "{}: {line}", path.display());
                let journal_event = code.contains(&journal)
                    && code.contains("Event")
                    && !code.contains("EventKind::");
                assert!(!journal_event, "{}: {line}", path.display());
            }
        }
    }

    #[test]
    fn gateway_ids() {
        assert!("gw-university-1".parse::<GatewayId>().is_ok());
        for bad in ["", "a/b", "+", "a#", "a b", &"x".repeat(129)] {
            assert!(bad.parse::<GatewayId>().is_err(), "{bad:?}");
        }
    }
}
