//! Replays every fuzz corpus through the fuzz entry points, so the corpora
//! run on every `cargo test` (cargo-fuzz itself needs a nightly-flagged build).

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        run(&std::fs::read(&path).unwrap());
        count += 1;
    }
    assert!(count > 0, "empty corpus {}", dir.display());
    count
}

#[test]
fn osdp_frame_corpus() {
    replay("frame", portier::osdp::fuzz::frame);
}

#[test]
fn osdp_secure_channel_corpus() {
    replay("secure_channel", portier::osdp::fuzz::secure_channel);
}

#[test]
fn rules_envelope_corpus() {
    replay("envelope", portier::rules::fuzz::envelope);
}

#[test]
fn rules_snapshot_corpus() {
    replay("snapshot", portier::rules::fuzz::snapshot);
}

#[test]
fn journal_segment_corpus() {
    replay("journal_segment", portier::journal::fuzz::segment);
}

#[test]
fn mqtt_inbound_corpus() {
    replay("mqtt_inbound", portier::uplink::fuzz::inbound);
}

#[test]
fn admin_request_corpus() {
    replay("admin_request", portier::admin::fuzz_request_text);
}

#[test]
fn central_batch_corpus() {
    replay("central_batch", portier::central::fuzz::batch);
}

#[test]
fn central_import_corpus() {
    replay("central_import", portier::central::fuzz::import);
}
