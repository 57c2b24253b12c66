//! The eBPF fast path of edge-sfu, for **plain-RTP** legs (browser legs are SRTP with
//! per-receiver keys and stay in userspace).
//!
//! Three BPF programs, written in C under `bpf/` and compiled by `build.rs` with clang:
//!
//! - `guard` (XDP, media interface): drops datagrams to the media ports that come from neither
//!   an admitted 5-tuple nor a rate-limited STUN binding request, counting each reason.
//! - `fanout` (TC): turns ONE plain RTP packet into N copies, each with its own SSRC, payload
//!   type, addresses and ports, checksums fixed, sent with `bpf_clone_redirect`.
//! - `rewrite` (XDP): the 1:1 case, rewritten in place and sent with `XDP_TX`/`bpf_redirect`.
//!
//! [`KernelPath::open`] loads and attaches them; its methods update the maps while traffic
//! flows and read the counters. Any [`Error`] from `open` means "forward in userspace"; its
//! `Display` text is the one line to log. See the crate's README for what runs where and why.

#![warn(missing_docs)]

mod error;
mod kernel_path;
pub mod maps;
mod sys;

pub use error::Error;
pub use kernel_path::{
    AttachedXdpMode, Direction, FanoutKey, Flow, ForwardCounters, GuardCounters, KernelPath,
    NextHop, Options, Output, OutputCounters, OutputId, PacketCount, StunRate, TcHook,
    XdpAttachMode,
};

/// Whether this build embeds the BPF programs (clang was found and they compiled). When false,
/// [`KernelPath::open`] always fails with [`Error::BuiltWithoutClang`] or
/// [`Error::BpfCompileFailed`].
pub const KERNEL_PATH_AVAILABLE: bool = cfg!(xdp_bpf_built);
