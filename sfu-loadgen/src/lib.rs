//! edge-sfu-loadgen: a load generator for edge-sfu.
//!
//! Simulated participants ([`sfu_client::Client`]: real signaling, ICE, DTLS-SRTP and RTCP) join
//! rooms of a running edge-sfu and publish Opus-like audio and VP8-like video at chosen rates;
//! every payload carries the sending time and a per-track sequence number, so the receivers
//! measure forwarded packets and bits per second, loss and one-way latency. The same participants
//! can instead speak plain UDP to the [`reflector`] (recvmmsg/sendmmsg, no crypto), which gives
//! the kernel's ceiling on the same box for the same fan-out, or join Janus's videoroom
//! ([`janus`]) or mediasoup ([`mediasoup`], through `sfu-loadgen/mediasoup/server.mjs`) for a
//! comparison with classic SFUs. The SFU's CPU time and memory come from `/proc/<pid>` when it
//! runs on this machine.
//!
//! The binary is `edge-sfu-loadgen`; the library exposes the pieces so tests can drive an
//! in-process server.

#![deny(missing_docs)]

pub mod continuity;
pub mod error;
pub mod find_max;
pub mod http;
pub mod janus;
pub mod json_ws;
pub mod lean_rx;
pub mod mediasoup;
pub mod payload;
pub mod peer;
pub mod procfs;
pub mod reflector;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod tally;
pub mod transport;

pub use error::{LoadgenError, Result};
pub use report::Report;
pub use runner::{run, RunOptions, Target};
pub use scenario::Scenario;
