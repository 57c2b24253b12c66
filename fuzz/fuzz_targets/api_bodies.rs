//! Fuzz target `api_bodies`: see `fuzz_harness::api_bodies`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::api_bodies::run(data));
