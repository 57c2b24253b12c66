//! Fuzz target `client_message`: see `fuzz_harness::client_message`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::client_message::run(data));
