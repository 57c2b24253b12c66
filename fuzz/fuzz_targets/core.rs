//! Fuzz target `core`: see `fuzz_harness::core`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::core::run(data));
