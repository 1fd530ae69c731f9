#![no_main]
//! What the broker hands the gateway on every inbound topic (ack, command,
//! delta, snapshot), raw and as a signed payload.
libfuzzer_sys::fuzz_target!(|data: &[u8]| portier::uplink::fuzz::inbound(data));
