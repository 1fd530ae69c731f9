#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    portier::central::fuzz::import(data);
});
