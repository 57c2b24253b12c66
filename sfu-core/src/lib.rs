//! The sans-IO heart of edge-sfu: rooms, peers, tracks and the forwarding of RTP between them.
//!
//! Nothing here touches a socket, a clock or a thread: datagrams, signaling messages and time go in,
//! datagrams, signaling messages and the next deadline come out ([`Core`]). That keeps the core
//! deterministic and testable with simulated time; the I/O shell of the `edge-sfu` binary drives it.

pub mod allocation;
pub mod config;
mod core;
pub mod counters;
pub mod demux;
pub mod layers;
mod peer;
pub mod permissions;
pub mod plain;
pub mod pool;
pub mod protocol;
pub mod rate;
pub mod rewrite;
mod room;
pub mod selector;
pub mod speaker;
mod track;
pub mod vp8_ids;
pub mod wire;

pub use crate::config::CoreConfig;
pub use crate::core::{Core, Output, Transmit};
pub use crate::counters::{Counters, DropReason, StatsSnapshot};
pub use crate::permissions::Permissions;
pub use str0m;
