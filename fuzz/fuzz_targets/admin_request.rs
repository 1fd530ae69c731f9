#![no_main]
//! The text of an admin-port request: forms, queries, JSON bodies, cards.
libfuzzer_sys::fuzz_target!(|data: &[u8]| portier::admin::fuzz_request_text(data));
