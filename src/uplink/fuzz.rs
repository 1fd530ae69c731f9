//! Fuzz entry point for what the broker hands the gateway (used by
//! `fuzz/` and replayed by `tests/fuzz_replay.rs`). Guarantee: arbitrary
//! bytes on any inbound topic never panic.

use crate::command::{COMMAND_CONTEXT, verify_command};
use crate::rules::TrustedKeys;
use crate::rules::envelope::{DELTA_CONTEXT, SNAPSHOT_CONTEXT, SignedBlob, verify_delta};
use crate::rules::fuzz::test_key;

/// The bytes as each inbound topic's decoder takes them: an ack, a
/// command, a delta and a snapshot as received, and the same bytes as the
/// signed payload of each (signed with the fuzz key, so the fuzzer reaches
/// the payload decoders and their checks).
pub fn inbound(data: &[u8]) {
    let _ = serde_cbor::from_slice::<super::wire::Ack>(data);
    let _ = serde_cbor::from_slice::<super::wire::Status>(data);
    let key = test_key();
    let mut keys = TrustedKeys::new();
    keys.add(key.verifying_key());
    let now = jiff::Timestamp::UNIX_EPOCH;
    let _ = verify_command(data, &keys, "gw", now, |_| false);
    let signed = SignedBlob::sign(&key, COMMAND_CONTEXT, data.to_vec()).to_cbor();
    if let Ok(c) = verify_command(&signed, &keys, "gw", now, |_| false) {
        let _ = serde_json::to_string(&c.action);
        if let crate::action::CommandAction::Reader(action) = c.action {
            upkeep(action, data);
        }
    }
    if let Ok(file) = serde_cbor::from_slice::<super::wire::FirmwareFile>(data) {
        let _ = file.data.len();
    }
    // A command payload's times are checked against its own issue time,
    // so that the fuzzer gets past expiry to the id and action checks.
    if let Ok(c) = serde_cbor::from_slice::<crate::command::Command>(data) {
        let _ = verify_command(&signed, &keys, &c.gateway, c.issued_at, |_| false);
    }
    let _ = verify_delta(data, &keys, "gw", "b", now);
    let delta = SignedBlob::sign(&key, DELTA_CONTEXT, data.to_vec()).to_cbor();
    let _ = verify_delta(&delta, &keys, "gw", "b", now);
    let _ = crate::rules::envelope::decode_snapshot_payload(data);
    let snapshot = SignedBlob::sign(&key, SNAPSHOT_CONTEXT, data.to_vec()).to_cbor();
    let _ = crate::rules::verify_snapshot(&snapshot, &keys, "gw", "b", now, None);
}

/// A reader command that passed its checks, then these bytes as its file
/// and the reader's reports: the upkeep core never panics.
fn upkeep(action: crate::action::ReaderAction, data: &[u8]) {
    use crate::osdp::BusEvent;
    use crate::upkeep::{Input, ReaderPlace, Upkeep};
    use std::time::Duration;
    let place = ReaderPlace {
        bus: "bus-1".into(),
        address: 1,
        secure: true,
    };
    let places = std::iter::once((action.reader().clone(), place)).collect();
    let mut core = Upkeep::new(places, 1 << 20);
    let now = crate::clock::monotonic();
    core.handle(
        now,
        Input::Command {
            id: "c".into(),
            valid_for: Duration::from_secs(60),
            action,
        },
    );
    let data: std::sync::Arc<[u8]> = data.into();
    let digest = crate::action::FileDigest::of(&data);
    let inputs = [
        Input::File {
            command: "c".into(),
            data,
            digest,
        },
        Input::Bus {
            bus: "bus-1".into(),
            event: BusEvent::Online {
                address: 1,
                secure: true,
                identity: None,
                capabilities: Vec::new(),
            },
        },
        Input::Bus {
            bus: "bus-1".into(),
            event: BusEvent::TransferProgress {
                address: 1,
                confirmed: 1,
                total: 0,
            },
        },
        Input::Bus {
            bus: "bus-1".into(),
            event: BusEvent::KeyResolved {
                address: 1,
                pending: true,
            },
        },
        Input::Timeout,
    ];
    for input in inputs {
        core.handle(now, input);
        while core.poll_output().is_some() {}
    }
    core.handle(now + Duration::from_secs(3600), Input::Timeout);
}
