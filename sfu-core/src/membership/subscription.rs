//! A subscription: one m-line of a member's WebRTC session carrying one published track to it,
//! with its own numbering, payload types, layer choice and counters. It is the router's
//! [`SinkRef::Subscription`](crate::router::SinkRef) kind.

use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::RtpWrite;
use str0m::Rtc;
use tracing::info;

use crate::codec::{PayloadPatch, PictureIdRewriter};
use crate::counters::{Counters, DropReason};
use crate::quality::rate::RateMeter;
use crate::quality::selector::{Decision, LayerSelector};
use crate::rewrite::SeqTsRewriter;
use crate::router::{RoutedPacket, TrackKey};

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

/// A member's m-line for one published track.
#[derive(Debug)]
pub struct Subscription {
    /// The track it carries.
    pub source: TrackKey,
    /// Audio or video.
    pub kind: MediaKind,
    /// Negotiation state of its m-line.
    pub state: LegState,
    /// False once the source is unpublished: the m-line is torn down at the next chance.
    pub wanted: bool,
    /// Keeps the subscriber's sequence and timestamps continuous.
    pub rewriter: SeqTsRewriter,
    /// Publisher PT → subscriber PT: filled on first use of each PT, a handful at most.
    pt_map: heapless::Vec<(Pt, Pt), 8>,
    /// Which layer of a video track it forwards (audio forwards everything).
    pub selector: LayerSelector,
    /// Keeps picture ids continuous across the selector's switches.
    pub picture_ids: PictureIdRewriter,
    /// The size the subscriber renders the track at (`None` until it reports one).
    pub tile: Option<(u32, u32)>,
    /// What it forwarded, and how fast.
    pub stats: LegCounters,
    /// When a keyframe of the selector's target was last asked for.
    pub keyframe_asked: Option<Instant>,
}

/// Counters of one subscription, for the stats message and the allocation's audio reserve.
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
    /// A subscription to `source`, to be offered.
    pub fn new(source: TrackKey, kind: MediaKind) -> Self {
        Subscription {
            source,
            kind,
            state: LegState::ToOpen,
            wanted: true,
            rewriter: SeqTsRewriter::new(),
            pt_map: heapless::Vec::new(),
            selector: LayerSelector::new(),
            picture_ids: PictureIdRewriter::default(),
            tile: None,
            stats: LegCounters::default(),
            keyframe_asked: None,
        }
    }

    /// The mid of its m-line once it is open.
    pub fn open_mid(&self) -> Option<Mid> {
        match self.state {
            LegState::Open(mid) => Some(mid),
            _ => None,
        }
    }

    /// The mid of its m-line in the subscriber's session, once one was offered.
    pub fn mid(&self) -> Option<Mid> {
        match self.state {
            LegState::ToOpen => None,
            LegState::Negotiating(m)
            | LegState::Open(m)
            | LegState::ToStop(m)
            | LegState::Stopping(m) => Some(m),
        }
    }

    /// Pauses or resumes it: what was not forwarded in between leaves no gap in its numbering.
    pub fn resync(&mut self) {
        self.rewriter.resync();
        self.picture_ids.resync();
    }

    /// The subscriber's PT for a publisher PT, computing and caching it with `resolve` the
    /// first time.
    fn map_pt(&mut self, in_pt: Pt, resolve: impl FnOnce() -> Option<PayloadParams>) -> Option<Pt> {
        if let Some(&(_, out)) = self.pt_map.iter().find(|(p, _)| *p == in_pt) {
            return Some(out);
        }
        let out = resolve()?.pt();
        // A full map only loses the cache, not correctness.
        let _ = self.pt_map.push((in_pt, out));
        Some(out)
    }

    /// Writes one packet of its track to `rtc`, the subscriber's session, if the m-line is open
    /// and the packet is of the layer it forwards. True when something was written.
    pub fn deliver(
        &mut self,
        rtc: &mut Rtc,
        packet: &RoutedPacket,
        counters: &mut Counters,
    ) -> bool {
        let Some(out_mid) = self.open_mid() else {
            return false;
        };
        if self.kind == MediaKind::Video {
            // Without simulcast there is nothing to switch between: the leg starts (or resumes
            // after a hidden tile) at once, and the keyframe asked for then follows.
            let switch_point = packet.keyframe || !packet.is_simulcast();
            match self.selector.on_packet(packet.layer, switch_point) {
                Decision::Drop => return false,
                Decision::Forward => {}
                Decision::Switch => {
                    self.resync();
                    if packet.is_simulcast() {
                        info!(
                            track = %packet.track.id(),
                            layer = packet.layer,
                            switches = self.selector.switches,
                            "layer switch"
                        );
                    }
                }
            }
        }
        let rtp = &packet.arrival;
        let Some(out_pt) = self.map_pt(rtp.pt, || {
            rtc.codec_config().match_params(rtp.params).copied()
        }) else {
            counters.drop(DropReason::NoMatchingCodec);
            return false;
        };
        let Some(out) = rtp.renumber(&mut self.rewriter) else {
            counters.drop(DropReason::StaleSource);
            return false;
        };
        let patch = packet
            .picture_ids
            .as_ref()
            .and_then(|ids| self.picture_ids.patch(ids));
        let mut api = rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(out_mid, None) else {
            return false;
        };
        let mut write = RtpWrite::new(
            out_pt,
            out.seq.into(),
            out.timestamp,
            rtp.at,
            rtp.payload.clone(),
        )
        .marker(rtp.marker)
        .ext_vals(rtp.ext.clone())
        .nackable(packet.is_nackable());
        if let Some(PayloadPatch::Vp8(patch)) = patch {
            write = write.vp8_patch(patch);
        }
        tx.write_rtp(write);
        let len = rtp.payload.len();
        counters.forwarded_packets += 1;
        counters.forwarded_bytes += len as u64;
        self.stats.packets += 1;
        self.stats.rate.add(rtp.at, len);
        true
    }
}
