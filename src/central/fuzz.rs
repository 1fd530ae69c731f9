//! Fuzz entry points for central's decoders (used by `fuzz/` and replayed
//! by `tests/fuzz_replay.rs`). Guarantees: arbitrary bytes never panic,
//! and what decodes is storable: no NUL in any text or JSON, JSON that
//! parses, quarantined records bounded to their prefix, seqs that fit an
//! `int8`.

use serde_json::Value;

use super::GatewayId;
use super::ingest::{REJECT_PREFIX, decode_batch, decode_status};

fn storable(text: &str) {
    assert!(!text.contains('\0'), "NUL left in {text:?}");
}

/// `<root>/<gw>/events` and `/status` payloads.
pub fn batch(data: &[u8]) {
    let gw: GatewayId = "gw-1".parse().expect("a valid id");
    if let Ok(b) = decode_batch("portier/v1/gw-1/events", &gw, data) {
        for r in &b.rows {
            assert!(r.seq > 0 && i64::try_from(r.seq).is_ok());
            storable(&r.json);
            storable(&r.kind);
            for t in [&r.door, &r.credential, &r.reason].into_iter().flatten() {
                storable(t);
            }
            let v: Value = serde_json::from_str(&r.json).expect("row JSON parses");
            assert_eq!(v["type"].as_str(), Some(r.kind.as_str()));
        }
        for r in &b.rejected {
            assert!(r.raw.len() <= REJECT_PREFIX && r.raw.len() <= r.length);
            assert!(r.seq.is_none_or(|s| i64::try_from(s).is_ok()));
            storable(&r.detail);
        }
    }
    if let Ok(Some(s)) = decode_status("portier/v1/gw-1/status", &gw, data) {
        storable(&s.json);
        storable(&s.state);
    }
}

/// Credential exports: the bytes as CSV and as JSON.
pub fn import(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(rows) = super::import::parse_csv("f.csv", &text) {
        let lines: Vec<usize> = rows.iter().map(|(l, _)| *l).collect();
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "lines ascend");
    }
    match super::import::from_csv("f.csv", &text) {
        Ok(c) => assert!(c.len() <= text.lines().count()),
        Err(e) => assert!(e.record >= 1 && e.unit == "line"),
    }
    let _ = super::import::from_json("f.json", &text);
}
