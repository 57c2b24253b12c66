//! Fuzz target `config_toml`: see `fuzz_harness::config_toml`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_harness::config_toml::run(data));
