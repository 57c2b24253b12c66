//! HTTP + WebSocket signaling server of edge-sfu.
//!
//! It serves the embedded browser client and demo pages, speaks the JSON protocol of
//! [`sfu_core::protocol`] on `/ws` with per-connection limits, places each room on one worker
//! ([`dispatch`]) and relays each peer's messages to that worker. Forwarding itself happens in the
//! workers; nothing media-related runs here. With a key configured, joining takes a room token
//! ([`auth`]); join attempts are limited per client address ([`join_limit`]).

pub mod admin;
pub mod api;
pub mod assets;
pub mod auth;
pub mod cluster_api;
pub mod dispatch;
pub mod ice_servers;
pub mod join_limit;
pub mod limits;
pub mod metrics;
pub mod recording_api;
pub mod revocation;
pub mod revoke_api;
pub mod server;
pub mod server_joins;
pub mod shutdown;
pub mod token_life;
pub mod webhooks;
pub mod whip;

pub use dispatch::{Dispatch, HttpJoin, PlainReply, PlainRequest, WorkerCommand, WorkerHandle};
pub use ice_servers::{IceServers, TurnRest};
pub use recording_api::{RecordingRefusal, RecordingReply, RecordingRequest};
pub use server::{router, AppState, Leg, SignalingCounters};
