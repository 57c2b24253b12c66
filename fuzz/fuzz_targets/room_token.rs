//! Fuzz target `room_token`: see `fuzz_harness::room_token`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::room_token::run(data));
