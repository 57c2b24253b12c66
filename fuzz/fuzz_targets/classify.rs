//! Fuzz target `classify`: see `fuzz_harness::classify`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::classify::run(data));
