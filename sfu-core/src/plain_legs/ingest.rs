//! One plain RTP ingest: a sender (ffmpeg, GStreamer, a camera) feeding one track of a room.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::ExtensionValues;

use crate::counters::DropReason;
use crate::plain::{IngestInfo, IngestSpec, PlainError};
use crate::protocol::{valid_name, PeerId, TrackKind};
use crate::rewrite::SeqExtender;
use crate::router::{Arrival, TrackKey};
use crate::wire::RtpPacket;

/// The mid an ingest's one track has.
const INGEST_MID: &str = "0";

/// A plain RTP source publishing into a room.
#[derive(Debug)]
pub struct Ingest {
    /// The name the room's members see.
    pub name: String,
    /// The room it publishes into.
    pub room: Arc<str>,
    /// Audio or video.
    pub kind: MediaKind,
    /// Its codec's payload format.
    params: PayloadParams,
    /// The payload type its packets carry.
    pub payload_type: u8,
    /// Where RTP is taken from; `None` until the first packet locks it.
    pub source: Option<SocketAddr>,
    seq: SeqExtender,
    /// Packets taken.
    packets: u64,
}

impl Ingest {
    /// An ingest for `spec` in `room`.
    pub fn new(spec: &IngestSpec, room: Arc<str>) -> Result<Ingest, PlainError> {
        if !valid_name(&spec.room) || !valid_name(&spec.name) {
            return Err(PlainError::Invalid(
                "room and name must be 1 to 64 characters".into(),
            ));
        }
        if spec.payload_type > 127 {
            return Err(PlainError::Invalid("payload type must be 0 to 127".into()));
        }
        let params = spec
            .codec
            .params()
            .ok_or_else(|| PlainError::Invalid("codec not available".into()))?;
        let kind = match spec.codec.kind() {
            TrackKind::Audio => MediaKind::Audio,
            TrackKind::Video => MediaKind::Video,
        };
        Ok(Ingest {
            name: spec.name.clone(),
            room,
            kind,
            params,
            payload_type: spec.payload_type,
            source: spec.source,
            seq: SeqExtender::default(),
            packets: 0,
        })
    }

    /// The key of its one track, given its id.
    pub fn track(id: PeerId) -> TrackKey {
        TrackKey {
            peer: id,
            mid: Mid::from(INGEST_MID),
        }
    }

    /// Reads one of its datagrams into an arrival of its track.
    pub fn accept<'a>(
        &mut self,
        id: PeerId,
        packet: &RtpPacket<&'a [u8]>,
        now: Instant,
    ) -> Result<(TrackKey, Arrival<'a>), DropReason> {
        if packet.payload_type() != self.payload_type {
            return Err(DropReason::NoMatchingCodec);
        }
        self.packets += 1;
        let arrival = Arrival {
            ssrc: packet.ssrc(),
            seq: self.seq.extend(packet.sequence_number()),
            timestamp: packet.timestamp(),
            marker: packet.marker(),
            at: now,
            payload: packet.payload_in_buffer(),
            pt: Pt::from(packet.payload_type()),
            params: self.params,
            ext: ExtensionValues::default(),
            rid: None,
        };
        Ok((Ingest::track(id), arrival))
    }

    /// The API's view of it; `port` is the media port it receives on.
    pub fn info(&self, id: PeerId, port: u16) -> IngestInfo {
        IngestInfo {
            id,
            room: self.room.to_string(),
            name: self.name.clone(),
            track_id: Ingest::track(id).id(),
            port,
            source: self.source,
            packets: self.packets,
        }
    }
}
