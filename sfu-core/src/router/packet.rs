//! One RTP packet on its way through the router: what its source received ([`Arrival`]) and what
//! the router made of it for the sinks ([`RoutedPacket`]).

use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::{Pt, Rid};
use str0m::rtp::{DirectReceived, ExtensionValues};

use super::history::PacketIndex;
use super::track::TrackKey;
use crate::codec::{CodecDescriptor, PictureIds, SvcPacket};
use crate::rewrite::{Rewritten, SeqTsRewriter};

/// One RTP packet as a source received it, whichever kind of source.
#[derive(Debug)]
pub struct Arrival<'a> {
    /// The publisher's SSRC (a change means a new source behind the track).
    pub ssrc: u32,
    /// Extended sequence number at the publisher.
    pub seq: u64,
    /// RTP timestamp at the publisher.
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// When it arrived.
    pub at: Instant,
    /// The payload: where the source has it, then where its track keeps it for every sink.
    pub payload: &'a [u8],
    /// The publisher's payload type.
    pub pt: Pt,
    /// The payload format behind that payload type.
    pub params: PayloadParams,
    /// Header extension values to carry over (those naming the publisher's m-line removed).
    pub ext: ExtensionValues,
    /// The simulcast encoding it belongs to, if the source sends several.
    pub rid: Option<Rid>,
}

impl<'a> Arrival<'a> {
    /// What a WebRTC session (a member's or a trunk's) received at `at`: its header from `rx`,
    /// its decrypted `payload`, its payload format `params`, simulcast encoding `rid`. The
    /// extensions that name the sender's m-line and transport are dropped: each receiving
    /// session sets its own.
    pub fn received(
        rx: DirectReceived,
        payload: &'a [u8],
        params: PayloadParams,
        rid: Option<Rid>,
        at: Instant,
    ) -> Self {
        let mut ext = rx.header.ext_vals;
        ext.mid = None;
        ext.rid = None;
        ext.rid_repair = None;
        ext.transport_cc = None;
        Arrival {
            ssrc: *rx.header.ssrc,
            seq: *rx.seq_no,
            timestamp: rx.header.timestamp,
            marker: rx.header.marker,
            at,
            payload: &payload[..rx.payload_len],
            pt: rx.header.payload_type,
            params,
            ext,
            rid,
        }
    }
}

/// One packet of a published track, ready for the sinks.
#[derive(Debug)]
pub struct RoutedPacket<'a> {
    /// The track.
    pub track: TrackKey,
    /// The packet as its source received it, its payload where the track keeps it.
    pub arrival: Arrival<'a>,
    /// Where the track keeps it, for retransmissions.
    pub index: PacketIndex,
    /// Its codec.
    pub codec: &'static CodecDescriptor,
    /// The simulcast layer it belongs to (0 without simulcast).
    pub layer: u8,
    /// The track's top layer.
    pub top_layer: u8,
    /// The track's layers were just put in order of picture size: the layer indices legs hold
    /// from before name other encodings now.
    pub layers_reordered: bool,
    /// It starts a keyframe.
    pub keyframe: bool,
    /// The per-picture ids of a simulcast track's packet, which each leg renumbers.
    pub picture_ids: Option<PictureIds>,
    /// The layers of a packet of a scalable (SVC) stream (spatial, temporal or both), whose
    /// legs forward the layers up to the ones they take.
    pub svc: Option<SvcPacket>,
}

impl Arrival<'_> {
    /// Its sequence number and timestamp in the numbering `rewriter` keeps for one receiver;
    /// `None` for a late packet of a source the receiver already switched away from.
    pub fn renumber(&self, rewriter: &mut SeqTsRewriter) -> Option<Rewritten> {
        let clock_rate = self.params.spec().clock_rate.get();
        rewriter.rewrite(self.ssrc, self.seq, self.timestamp, self.at, clock_rate)
    }
}

impl RoutedPacket<'_> {
    /// Whether the track has more than one layer, each its own stream (legs switch between
    /// them at keyframes).
    pub fn is_simulcast(&self) -> bool {
        self.top_layer > 0 && self.svc.is_none()
    }

    /// Whether a sink that takes a track's top layer takes this packet: one of the top simulcast
    /// layer, or any of a scalable stream (its top spatial layer is decoded from those below).
    pub fn serves_top_layer(&self) -> bool {
        self.layer == self.top_layer || self.svc.is_some()
    }

    /// Whether subscribers may ask for it again (video; browsers do not NACK audio).
    pub fn is_nackable(&self) -> bool {
        self.codec.is_video()
    }
}
