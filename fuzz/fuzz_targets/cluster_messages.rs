//! Fuzz target `cluster_messages`: see `fuzz_harness::cluster_messages`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::cluster_messages::run(data));
