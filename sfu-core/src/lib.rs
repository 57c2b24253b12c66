//! The sans-IO heart of edge-sfu: rooms, members, tracks and the forwarding of RTP between them.
//!
//! Nothing here touches a socket, a clock or a thread: datagrams, signaling messages and time go in,
//! datagrams, signaling messages and the next deadline come out ([`Core`]). That keeps the core
//! deterministic and testable with simulated time; the I/O shell of the `edge-sfu` binary drives it.
//!
//! [`Core`] orchestrates owned parts: [`membership`] (rooms, members, their sessions and
//! subscriptions), [`router`] (published tracks, their sinks, the fan-out), [`plain_legs`] (plain
//! RTP sources and sinks), [`quality`] (layer choice, hints, speaker), [`demux`], and the
//! codec knowledge in [`codec`]; [`recording`] turns a room's tracks into files' frames.

pub mod admin;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod counters;
pub mod demux;
mod engine;
pub mod events;
pub mod latency;
pub mod membership;
mod outbox;
pub mod permissions;
pub mod plain;
pub mod plain_legs;
mod pool;
pub mod protocol;
pub mod quality;
pub mod recording;
pub mod rewrite;
pub mod router;
mod timers;
pub mod trunk;
pub mod viewers;
pub mod wire;

pub use crate::config::CoreConfig;
pub use crate::counters::{Counters, DropReason, StatsSnapshot};
pub use crate::engine::{Action, Core, Footprint, JoinRefusal};
pub use crate::events::RoomEvent;
pub use crate::outbox::Transmit;
pub use crate::permissions::Permissions;
pub use str0m;
