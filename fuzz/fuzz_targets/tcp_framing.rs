//! Fuzz target `tcp_framing`: see `fuzz_harness::tcp_framing`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::tcp_framing::run(data));
