//! Plain (unencrypted) RTP legs: ingests that feed a room track from an RTP source such as ffmpeg,
//! GStreamer or an IP camera, and outputs that copy a room track as plain RTP to receivers such as
//! recorders or another SFU. Browsers receive an ingest like any other member's track.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use str0m::format::{Codec, PayloadParams};

use crate::protocol::{PeerId, TrackKind};

/// Codecs a plain RTP ingest may carry: those every browser can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngestCodec {
    /// Opus audio, 48 kHz.
    Opus,
    /// VP8 video, 90 kHz.
    Vp8,
    /// H.264 video (packetization mode 1, constrained baseline), 90 kHz.
    H264,
}

impl IngestCodec {
    /// Audio or video.
    pub fn kind(self) -> TrackKind {
        match self {
            IngestCodec::Opus => TrackKind::Audio,
            IngestCodec::Vp8 | IngestCodec::H264 => TrackKind::Video,
        }
    }

    /// str0m's description of the codec, used to find each subscriber's payload type for it.
    pub(crate) fn params(self) -> Option<PayloadParams> {
        let codec = match self {
            IngestCodec::Opus => Codec::Opus,
            IngestCodec::Vp8 => Codec::Vp8,
            IngestCodec::H264 => Codec::H264,
        };
        crate::codec::ALL
            .iter()
            .find(|d| d.codec == codec)
            .and_then(|d| d.ingest_params())
    }
}

/// What creates an ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngestSpec {
    /// The room it publishes into (created if needed).
    pub room: String,
    /// The name the room's members see it under.
    pub name: String,
    /// What the source sends.
    pub codec: IngestCodec,
    /// The payload type the source puts in its packets.
    #[serde(alias = "payload_type")]
    pub payload_type: u8,
    /// Where the source sends from; without it, the first RTP packet with this payload type from
    /// an unknown address locks the ingest to that address.
    #[serde(default)]
    pub source: Option<SocketAddr>,
}

/// An ingest as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestInfo {
    /// Its id (it appears in the room as a member with this id).
    pub id: PeerId,
    /// Its room.
    pub room: String,
    /// Its name.
    pub name: String,
    /// The track id browsers see, `"<id>:0"`.
    pub track_id: String,
    /// The UDP port to send the RTP to.
    pub port: u16,
    /// The source address, once known.
    pub source: Option<SocketAddr>,
    /// RTP packets taken in.
    pub packets: u64,
}

/// One receiver of an output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputTarget {
    /// Where the RTP goes.
    pub address: SocketAddr,
    /// The SSRC this receiver sees; chosen by the SFU when absent.
    #[serde(default)]
    pub ssrc: Option<u32>,
    /// The payload type this receiver sees; the source's when absent.
    #[serde(default, alias = "payload_type")]
    pub payload_type: Option<u8>,
}

/// What creates an output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputSpec {
    /// The room of the track.
    pub room: String,
    /// The track to copy, `"<peerId>:<mid>"`.
    pub track_id: String,
    /// Its receivers.
    pub targets: Vec<OutputTarget>,
}

/// Counters of one output receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetInfo {
    /// Where the RTP goes.
    pub address: SocketAddr,
    /// The SSRC it sees.
    pub ssrc: u32,
    /// The payload type it sees, if rewritten.
    pub payload_type: Option<u8>,
    /// Packets sent to it.
    pub packets: u64,
    /// Payload bytes sent to it.
    pub bytes: u64,
}

/// An output as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputInfo {
    /// Its id.
    pub id: u64,
    /// The room of the track.
    pub room: String,
    /// The track copied.
    pub track_id: String,
    /// Which path makes the copies: `userspace` (one datagram per receiver from the worker) or
    /// `kernel` (one datagram to the kernel, copies made by the eBPF fan-out program).
    pub path: &'static str,
    /// Its receivers.
    pub targets: Vec<TargetInfo>,
}

/// Where an output's copies are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputPath {
    /// One datagram per receiver, sent by the worker.
    Userspace,
    /// One datagram, sent to `handoff` with SSRC `ssrc`; the kernel's fan-out program (TC, on the
    /// egress of `lo`) turns it into the receivers' copies, each with its own SSRC and addresses.
    Kernel {
        /// Where the one copy goes (a loopback address whose port the fan-out program watches).
        handoff: SocketAddr,
        /// The SSRC that keys this output in the fan-out map.
        ssrc: u32,
    },
}

impl OutputPath {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            OutputPath::Userspace => "userspace",
            OutputPath::Kernel { .. } => "kernel",
        }
    }
}

/// Why a plain-leg request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    /// No such ingest.
    #[error("no ingest with id {0}")]
    UnknownIngest(PeerId),
    /// No such output.
    #[error("no output with id {0}")]
    UnknownOutput(u64),
    /// No such track in that room.
    #[error("no track {0} in room {1}")]
    UnknownTrack(String, String),
    /// Another ingest already takes RTP from that address.
    #[error("another ingest already takes RTP from {0}")]
    SourceInUse(SocketAddr),
    /// The request does not make sense.
    #[error("invalid request: {0}")]
    Invalid(String),
}
