//! The bodies of edge-sfu's fuzz targets, one module per target, each a `run(&[u8])` that must
//! never panic whatever the bytes.
//!
//! The cargo-fuzz crate in `fuzz/` (nightly, libFuzzer) calls these functions, one per target
//! file; the corpus replay test (`tests/corpus.rs`) calls the same functions on every file of
//! `fuzz/corpus/<target>/` on stable, so each CI run replays what fuzzing found interesting.
//! docs/robustness.md records the fuzzing runs.

#![deny(missing_docs)]

pub mod admin_bodies;
pub mod api_bodies;
pub mod classify;
pub mod client_message;
pub mod cluster_messages;
pub mod codec_descriptors;
pub mod config_toml;
pub mod core;
pub mod offers;
pub mod room_token;
pub mod seeds;
pub mod tcp_framing;
pub mod whip_whep;

/// A target's body: takes any bytes, panics only on a bug.
pub type Body = fn(&[u8]);

/// Every target: its name (the file in `fuzz/fuzz_targets/` and the folder in `fuzz/corpus/`)
/// and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("classify", classify::run),
    ("tcp_framing", tcp_framing::run),
    ("codec_descriptors", codec_descriptors::run),
    ("client_message", client_message::run),
    ("api_bodies", api_bodies::run),
    ("config_toml", config_toml::run),
    ("room_token", room_token::run),
    ("core", core::run),
    ("whip_whep", whip_whep::run),
    ("admin_bodies", admin_bodies::run),
    ("cluster_messages", cluster_messages::run),
];
