//! Fuzz entry points for the rules parsers (used by `fuzz/` and replayed by
//! `tests/fuzz_replay.rs`). Guarantee: arbitrary bytes never panic.

use super::{Card, Request, TrustedKeys, decide, verify_snapshot};

/// The fixed test key of the fuzz targets (seed 7 repeated).
pub fn test_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

/// Envelope decoding and verification of arbitrary bytes.
pub fn envelope(data: &[u8]) {
    let mut keys = TrustedKeys::new();
    keys.add(test_key().verifying_key());
    let _ = super::SignedBlob::from_cbor(data);
    let _ = super::envelope::verify_delta(data, &keys, "gw", "b", jiff::Timestamp::UNIX_EPOCH);
    let _ = verify_snapshot(data, &keys, "gw", "b", jiff::Timestamp::UNIX_EPOCH, None);
}

/// Snapshot payload decoding: the bytes are signed with the test key, so the
/// fuzzer reaches the payload and record decoders, validation and one
/// decision per door. The bytes are also fed to the record parser directly.
pub fn snapshot(data: &[u8]) {
    let _ = super::record::check_section(data, 4);
    if let Some(r) = super::record::Records::new(data)
        .next()
        .and_then(Result::ok)
    {
        let _ = r.decode(&["a".into(), "b".into()]);
        let _ = r.with_blocked(None);
    }
    let key = test_key();
    let mut keys = TrustedKeys::new();
    keys.add(key.verifying_key());
    let blob = super::SignedBlob::sign(&key, super::envelope::SNAPSHOT_CONTEXT, data.to_vec());
    let Ok(gw) = super::envelope::decode_snapshot_payload(data) else {
        return;
    };
    if let Ok(v) = verify_snapshot(
        &blob.to_cbor(),
        &keys,
        &gw.gateway_id,
        &gw.building,
        gw.issued_at,
        None,
    ) {
        for door in v.header().snapshot().doors.keys() {
            for c in v.credentials().keys().take(4) {
                let req = Request {
                    door: door.as_str().into(),
                    card: Card::Key(c.clone()),
                    pin: Some("1234".into()),
                };
                let _ = decide(&v, &req, gw.issued_at);
            }
        }
    }
}
