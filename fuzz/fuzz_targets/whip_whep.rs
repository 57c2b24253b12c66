//! Fuzz target `whip_whep`: see `fuzz_harness::whip_whep`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::whip_whep::run(data));
