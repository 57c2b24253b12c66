//! Fuzz target `codec_descriptors`: see `fuzz_harness::codec_descriptors`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::codec_descriptors::run(data));
