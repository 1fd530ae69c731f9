#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    portier::osdp::fuzz::secure_channel(data);
});
