//! Fuzz target `admin_bodies`: see `fuzz_harness::admin_bodies`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::admin_bodies::run(data));
