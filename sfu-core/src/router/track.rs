//! A published track: who publishes it, in which room, what it is, and the sinks it goes to.

use std::sync::Arc;

use str0m::media::{MediaKind, Mid};

use super::history::PacketHistory;
use super::sink::SinkRef;
use crate::codec::dependency_descriptor::{DependencyDescriptor, FrameTemplates};
use crate::codec::SvcPacket;
use crate::protocol::{PeerId, TrackInfo, TrackKind, TrackSource};
use crate::quality::layers::TrackLayers;

/// Names one published track: the publisher and the mid of its sending m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackKey {
    /// The publisher (a member, or a plain RTP ingest).
    pub peer: PeerId,
    /// The mid of the publisher's sending m-line.
    pub mid: Mid,
}

impl TrackKey {
    /// The server-wide id the protocol uses, `"<peerId>:<mid>"`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.peer, self.mid)
    }

    /// The track a protocol id (`"<peerId>:<mid>"`, as [`TrackKey::id`] writes it) names, if it
    /// has that shape.
    pub fn parse(id: &str) -> Option<TrackKey> {
        let (peer, mid) = id.split_once(':')?;
        Some(TrackKey {
            peer: peer.parse().ok()?,
            mid: Mid::from(mid),
        })
    }
}

/// Where a track's packets come from, and so where its keyframe requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A member's WebRTC session (its sending m-line).
    Member,
    /// A plain RTP ingest: it cannot be asked for keyframes.
    PlainIngest,
    /// Another node, over a trunk: keyframe requests go back over it to the publisher's node.
    Trunk(crate::trunk::TrunkId),
}

/// A published track.
#[derive(Debug)]
pub struct Track {
    /// The room it is published in.
    pub room: Arc<str>,
    /// Who sends it.
    pub origin: Origin,
    /// Audio or video.
    pub kind: MediaKind,
    /// What it shows.
    pub source: TrackSource,
    /// A muted track is not forwarded.
    pub muted: bool,
    /// Muted by an admin: its member's own unmute is refused until an admin unmutes it.
    pub admin_muted: bool,
    /// Its layers as received (one without simulcast), with their rates and keyframe requests.
    pub layers: TrackLayers,
    /// Where its packets go.
    pub(super) sinks: Vec<SinkRef>,
    /// Its recent packets, kept once for every sink.
    pub(super) history: PacketHistory,
    /// The frame templates of its dependency descriptors (AV1), from the last keyframe's.
    pub(super) frame_templates: Option<FrameTemplates>,
}

/// Payload bytes a video track keeps for retransmissions: about a second at 3 Mbit/s, more
/// than a NACK round trip needs.
const VIDEO_HISTORY_BYTES: usize = 384 * 1024;
/// Payload bytes an audio track keeps: only while a packet is fanned out (browsers do not NACK
/// audio), so a few packets.
const AUDIO_HISTORY_BYTES: usize = 8 * 1024;

impl Track {
    /// A track of `kind` published into `room`, with no sinks yet.
    pub fn new(
        room: Arc<str>,
        origin: Origin,
        kind: MediaKind,
        source: TrackSource,
        muted: bool,
        layers: TrackLayers,
    ) -> Self {
        Track {
            room,
            origin,
            kind,
            source,
            muted,
            admin_muted: false,
            layers,
            sinks: Vec::new(),
            frame_templates: None,
            history: PacketHistory::new(match kind {
                MediaKind::Audio => AUDIO_HISTORY_BYTES,
                MediaKind::Video => VIDEO_HISTORY_BYTES,
            }),
        }
    }

    /// The protocol's view of this track.
    pub fn info(&self, key: TrackKey) -> TrackInfo {
        TrackInfo {
            id: key.id(),
            kind: track_kind(self.kind),
            source: self.source,
            muted: self.muted,
        }
    }

    /// The layers of a packet whose dependency descriptor is `descriptor`, keeping the template
    /// structure it carries; `None` for a malformed descriptor or before any structure.
    pub fn frame_layers(&mut self, descriptor: &[u8]) -> Option<SvcPacket> {
        let d = DependencyDescriptor::new_checked(descriptor).ok()?;
        if let Some(structure) = &d.structure {
            self.frame_templates = Some(structure.clone());
        }
        d.svc_packet(self.frame_templates.as_ref()?)
    }

    /// Where its packets go now.
    pub fn sinks(&self) -> &[SinkRef] {
        &self.sinks
    }

    /// The payload of its packet `index`, if it is still kept.
    pub fn payload(&self, index: super::PacketIndex) -> Option<&[u8]> {
        self.history.get(index)
    }
}

/// Maps str0m's media kind onto the protocol's.
pub fn track_kind(kind: MediaKind) -> TrackKind {
    match kind {
        MediaKind::Audio => TrackKind::Audio,
        MediaKind::Video => TrackKind::Video,
    }
}
