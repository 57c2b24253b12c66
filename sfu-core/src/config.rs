//! Settings of one core, given by the shell at start.

use std::net::SocketAddr;
use std::time::Duration;

use str0m::format::Codec;

use crate::codec::DEFAULT_VIDEO_CODECS;
use crate::trunk::{FanoutConfig, TrunkEndpoint};

/// How one core (one worker) behaves.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The addresses this worker's media socket is reachable at, announced as ICE host
    /// candidates in every SDP (one per announced IP, all on the worker's port).
    pub candidates: Vec<SocketAddr>,
    /// The addresses this worker's ICE-TCP listener is reachable at (RFC 6544 passive host
    /// candidates, announced beside the UDP ones with a lower priority); empty without ICE-TCP.
    pub tcp_candidates: Vec<SocketAddr>,
    /// How long a joined peer may take to bring ICE and DTLS up before it is dropped.
    pub connect_timeout: Duration,
    /// A connected peer from which nothing (media, RTCP or the browser's ICE consent checks every
    /// ~5 s) arrived for this long is gone.
    pub idle_timeout: Duration,
    /// Datagrams larger than this are refused before any parsing (a browser never sends one
    /// above the path MTU).
    pub max_datagram: usize,
    /// Minimum spacing of keyframe requests forwarded to one published track.
    pub keyframe_request_interval: Duration,
    /// How many 5-tuples one peer may be reached on (ICE tries several candidate pairs).
    pub max_paths_per_peer: usize,
    /// Rooms recorded whenever they exist (`[[record]]` in the configuration file): their
    /// creation asks the shell to start a recording.
    pub record_rooms: Vec<String>,
    /// The video codecs rooms send, most preferred first: each publisher is asked for the first
    /// one it and every other member of its room have (`codec/policy.rs`).
    pub video_codecs: Vec<Codec>,
    /// This worker's end of the trunks to other nodes (`--cluster`); `None` on a lone node,
    /// which then never dials a trunk by itself.
    pub trunk_endpoint: Option<TrunkEndpoint>,
    /// Where plain trunks' video layers are handed to the kernel fan-out, which copies each to
    /// every far node taking it (`--kernel-interface`); `None`: each trunk sends its own copies.
    pub trunk_fanout: Option<FanoutConfig>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            candidates: Vec::new(),
            tcp_candidates: Vec::new(),
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10),
            max_datagram: 1500,
            keyframe_request_interval: Duration::from_millis(300),
            max_paths_per_peer: 8,
            record_rooms: Vec::new(),
            video_codecs: DEFAULT_VIDEO_CODECS.to_vec(),
            trunk_endpoint: None,
            trunk_fanout: None,
        }
    }
}
