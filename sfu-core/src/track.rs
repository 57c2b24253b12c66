//! Published tracks and the subscriptions (outgoing legs) that carry them to other members.

use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt};

use crate::layers::TrackLayers;
use crate::protocol::{PeerId, TrackInfo, TrackKind, TrackSource};
use crate::rate::RateMeter;
use crate::rewrite::SeqTsRewriter;
use crate::selector::LayerSelector;
use crate::vp8_ids::Vp8Ids;

/// Names one published track: the publisher and the mid of its sending m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackKey {
    /// The publisher.
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

/// A track a peer publishes.
#[derive(Debug)]
pub struct Publication {
    /// Mid of the sending m-line in the publisher's session.
    pub mid: Mid,
    /// Audio or video.
    pub kind: MediaKind,
    /// What it shows.
    pub source: TrackSource,
    /// A muted track is not forwarded.
    pub muted: bool,
    /// Its layers as received (one without simulcast), with their rates and keyframe requests.
    pub layers: TrackLayers,
}

impl Publication {
    /// A track published on `mid`, with `layers`.
    pub fn new(
        mid: Mid,
        kind: MediaKind,
        source: TrackSource,
        muted: bool,
        layers: TrackLayers,
    ) -> Self {
        Publication {
            mid,
            kind,
            source,
            muted,
            layers,
        }
    }

    /// The protocol's view of this track.
    pub fn info(&self, publisher: PeerId) -> TrackInfo {
        TrackInfo {
            id: TrackKey {
                peer: publisher,
                mid: self.mid,
            }
            .id(),
            kind: track_kind(self.kind),
            source: self.source,
            muted: self.muted,
        }
    }
}

/// Maps str0m's media kind onto the protocol's.
pub fn track_kind(kind: MediaKind) -> TrackKind {
    match kind {
        MediaKind::Audio => TrackKind::Audio,
        MediaKind::Video => TrackKind::Video,
    }
}

/// Where the negotiation of a subscription's m-line stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    /// Wanted, not yet in any offer.
    ToOpen,
    /// In an offer awaiting the answer.
    Negotiating(Mid),
    /// Negotiated: packets flow.
    Open(Mid),
    /// Source gone; the m-line is to be stopped in the next offer.
    ToStop(Mid),
    /// Stopped in an offer awaiting the answer.
    Stopping(Mid),
}

/// A subscriber's outgoing leg for one published track.
#[derive(Debug)]
pub struct Subscription {
    /// The track it carries.
    pub source: TrackKey,
    /// Audio or video.
    pub kind: MediaKind,
    /// Negotiation state of its m-line.
    pub state: LegState,
    /// False once the source is unpublished: the leg is torn down at the next chance.
    pub wanted: bool,
    /// Keeps the subscriber's sequence and timestamps continuous.
    pub rewriter: SeqTsRewriter,
    /// Publisher PT → (subscriber PT, clock rate): filled on first use of each PT, a handful at most.
    pub pt_map: heapless::Vec<(Pt, Pt, u32), 8>,
    /// Which layer of a video track it forwards (audio legs forward everything).
    pub selector: LayerSelector,
    /// Keeps VP8 picture ids continuous across the selector's switches.
    pub vp8_ids: Vp8Ids,
    /// The size the subscriber renders the track at (`None` until it reports one).
    pub tile: Option<(u32, u32)>,
    /// What it forwarded, and how fast.
    pub stats: LegCounters,
    /// When a keyframe of the selector's target was last asked for.
    pub keyframe_asked: Option<Instant>,
}

/// Counters of one leg, for the stats message and the allocation's audio reserve.
#[derive(Debug, Clone, Default)]
pub struct LegCounters {
    /// Bytes forwarded over the last second.
    pub rate: RateMeter,
    /// Packets forwarded.
    pub packets: u64,
    /// NACKs the subscriber sent (from the session's egress stats).
    pub nacks: u64,
    /// Keyframe requests the subscriber sent.
    pub plis: u64,
}

impl Subscription {
    /// A leg for `source`, to be offered.
    pub fn new(source: TrackKey, kind: MediaKind) -> Self {
        Subscription {
            source,
            kind,
            state: LegState::ToOpen,
            wanted: true,
            rewriter: SeqTsRewriter::new(),
            pt_map: heapless::Vec::new(),
            selector: LayerSelector::new(),
            vp8_ids: Vp8Ids::new(),
            tile: None,
            stats: LegCounters::default(),
            keyframe_asked: None,
        }
    }

    /// The mid of this leg's m-line once it is open.
    pub fn open_mid(&self) -> Option<Mid> {
        match self.state {
            LegState::Open(mid) => Some(mid),
            _ => None,
        }
    }

    /// The mid of this leg's m-line in the subscriber's session, once one was offered.
    pub fn mid(&self) -> Option<Mid> {
        match self.state {
            LegState::ToOpen => None,
            LegState::Negotiating(m)
            | LegState::Open(m)
            | LegState::ToStop(m)
            | LegState::Stopping(m) => Some(m),
        }
    }

    /// The subscriber's PT and clock rate for a publisher PT, computing and caching it with
    /// `resolve` the first time.
    pub fn map_pt(
        &mut self,
        in_pt: Pt,
        resolve: impl FnOnce() -> Option<PayloadParams>,
    ) -> Option<(Pt, u32)> {
        if let Some(&(_, out, rate)) = self.pt_map.iter().find(|(p, _, _)| *p == in_pt) {
            return Some((out, rate));
        }
        let params = resolve()?;
        let entry = (in_pt, params.pt(), params.spec().clock_rate.get());
        // A full map only loses the cache, not correctness.
        let _ = self.pt_map.push(entry);
        Some((entry.1, entry.2))
    }
}
