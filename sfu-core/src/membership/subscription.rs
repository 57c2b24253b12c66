//! A subscription: one m-line of a member's WebRTC session carrying one published track to it,
//! with its own numbering, payload types, layer choice and counters. It is the router's
//! [`SinkRef::Subscription`](crate::router::SinkRef) kind.

use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::{DirectRtp, ExtensionValues, SeqNo, Ssrc, DIRECT_SEND_HEADROOM};
use str0m::Rtc;
use tracing::info;

use super::resend_log::{ResendLog, Sent};
use crate::codec::{PayloadPatch, PictureIdRewriter, SvcPacket};
use crate::counters::DropReason;
use crate::outbox::{Egress, Transmit};
use crate::quality::rate::RateMeter;
use crate::quality::selector::{Decision, LayerSelector};
use crate::rewrite::SeqTsRewriter;
use crate::router::{RoutedPacket, Router, TrackKey};

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
    /// The SSRC of its send stream in the subscriber's session, once the m-line is open.
    pub ssrc: Option<Ssrc>,
    /// Its video starts at a keyframe even without simulcast: its m-line already carried another
    /// source (a WHEP viewer's leg), whose pictures the decoder would take the new deltas for.
    keyframe_first: bool,
    /// What it sent (video), to answer NACKs from the track's history.
    resend_log: ResendLog,
    /// Resends it may still make, in quarters: each packet sent earns one, a resend costs
    /// [`RESEND_COST`] (see [`MAX_RESEND_CREDIT`]).
    resend_credit: u32,
}

/// A resend costs the credit of this many packets sent: at most one resend per four packets
/// over time, enough for heavy loss and no more (a receiver NACKing everything would otherwise
/// make the SFU send it everything twice).
const RESEND_COST: u32 = 4;
/// Most resends a burst of NACKs may take at once.
const MAX_RESEND_CREDIT: u32 = 64 * RESEND_COST;

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
            ssrc: None,
            keyframe_first: false,
            resend_log: ResendLog::default(),
            resend_credit: 0,
        }
    }

    /// A subscription to `source` on m-line `mid` that the subscriber itself offered to receive
    /// on (a WHEP viewer's), open at once on send stream `ssrc`; its video starts at a keyframe.
    pub fn opened(source: TrackKey, kind: MediaKind, mid: Mid, ssrc: Option<Ssrc>) -> Self {
        Subscription {
            state: LegState::Open(mid),
            ssrc,
            keyframe_first: true,
            ..Subscription::new(source, kind)
        }
    }

    /// Carries `source` from now on, on the same m-line: the numbering continues where the old
    /// source left off (as at a simulcast layer switch), the layer is chosen anew and video
    /// resumes at the new source's keyframe; what was sent of the old source is no longer
    /// resent.
    pub fn retarget(&mut self, source: TrackKey) {
        self.source = source;
        self.wanted = true;
        self.resync();
        self.pt_map.clear();
        self.selector = LayerSelector::new();
        self.keyframe_asked = None;
        self.keyframe_first = true;
        self.resend_log = ResendLog::default();
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

    /// Sends one packet of its track through `rtc`, the subscriber's session, sealed straight
    /// into a datagram buffer, if the m-line is open and the packet is of the layer it
    /// forwards. True when a datagram was queued.
    pub fn deliver(&mut self, rtc: &mut Rtc, packet: &RoutedPacket, egress: &mut Egress) -> bool {
        let (Some(ssrc), Some(mid)) = (self.ssrc, self.open_mid()) else {
            return false;
        };
        let mut marker = packet.arrival.marker;
        if let Some(svc) = packet.svc {
            match self.svc_marker(packet, svc) {
                Some(m) => marker = m,
                None => return false,
            }
        } else if self.kind == MediaKind::Video {
            // Without simulcast there is nothing to switch between: the leg starts (or resumes
            // after a hidden tile) at once, and the keyframe asked for then follows; unless it
            // carried another source before.
            let switch_point = packet.keyframe || (!packet.is_simulcast() && !self.keyframe_first);
            if packet.layers_reordered {
                // The layer forwarded until now has another index: start over from a keyframe.
                self.selector.restart();
            }
            match self.selector.on_packet(packet.layer, switch_point) {
                Decision::Drop => return false,
                Decision::Forward => {}
                Decision::Switch => {
                    self.keyframe_first = false;
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
        // The subscriber's format closest to the publisher's (for H.264 the same profile and
        // packetization mode), and only one its answer accepted on this m-line: a codec it did
        // not accept is one it cannot decode (the room's codec policy is switching publishers).
        let Some(pt) = self.map_pt(rtp.pt, || {
            let params = rtc.codec_config().match_params(rtp.params).copied()?;
            let accepted = rtc.media(mid)?.remote_pts().contains(&params.pt());
            accepted.then_some(params)
        }) else {
            egress.counters.drop(DropReason::NoMatchingCodec);
            return false;
        };
        let Some(out) = rtp.renumber(&mut self.rewriter) else {
            egress.counters.drop(DropReason::StaleSource);
            return false;
        };
        let patch = packet
            .picture_ids
            .as_ref()
            .and_then(|ids| self.picture_ids.patch(ids));
        let sent = Sent {
            seq: out.seq,
            packet: packet.index,
            timestamp: out.timestamp,
            pt,
            marker,
            patch,
        };
        if !seal(
            rtc,
            ssrc,
            &sent,
            &rtp.ext,
            rtp.payload,
            None,
            rtp.at,
            egress,
        ) {
            return false;
        }
        if packet.is_nackable() {
            self.resend_log.record(sent);
            self.resend_credit = (self.resend_credit + 1).min(MAX_RESEND_CREDIT);
        }
        let len = rtp.payload.len();
        egress.counters.forwarded_packets += 1;
        egress.counters.forwarded_bytes += len as u64;
        self.stats.packets += 1;
        self.stats.rate.add(rtp.at, len);
        true
    }

    /// Decides on one packet of a scalable (SVC) stream: `None` to drop it (a spatial or
    /// temporal layer above the ones the leg takes; the numbers after it close up), else the
    /// marker bit it goes with: set on the end of the highest forwarded spatial layer's frame,
    /// which ends the picture for this receiver.
    fn svc_marker(&mut self, packet: &RoutedPacket, svc: SvcPacket) -> Option<bool> {
        if svc.begins_picture {
            let before = self.selector.current();
            if self.selector.on_picture(packet.keyframe) == Decision::Switch {
                self.keyframe_first = false;
                self.resync();
            }
            if self.selector.current() != before {
                info!(
                    track = %packet.track.id(),
                    from = ?before,
                    layer = ?self.selector.current(),
                    switches = self.selector.switches,
                    "spatial layer switch"
                );
            }
            self.selector
                .on_temporal(svc.temporal, svc.switch_up, packet.keyframe);
        }
        let rtp = &packet.arrival;
        if !self.selector.forwards_nested(svc.spatial)
            || !self.selector.forwards_temporal(svc.temporal)
        {
            if self.selector.current().is_some() {
                self.rewriter.skip(rtp.ssrc, rtp.seq);
            }
            return None;
        }
        let top = self.selector.current() == Some(svc.spatial);
        Some(rtp.marker || (top && svc.ends_frame))
    }

    /// Resends what the subscriber NACKed since the last call, as RTX, from the track's history
    /// in `router`, as far as its resend credit goes (the rest is dropped and counted).
    pub fn answer_nacks(
        &mut self,
        now: Instant,
        rtc: &mut Rtc,
        router: &Router,
        egress: &mut Egress,
    ) {
        let Some(ssrc) = self.ssrc.filter(|_| self.kind == MediaKind::Video) else {
            return;
        };
        let track = router.track(self.source);
        // No header extensions but the transport ones str0m writes itself.
        let ext = ExtensionValues::default();
        while let Some(seq) = rtc
            .direct_api()
            .stream_tx(&ssrc)
            .and_then(|s| s.poll_nack())
        {
            if self.resend_credit < RESEND_COST {
                egress.counters.drop(DropReason::ResendLimited);
                continue;
            }
            let Some(sent) = self.resend_log.get(*seq) else {
                continue;
            };
            let Some(payload) = track.and_then(|t| t.payload(sent.packet)) else {
                continue;
            };
            if seal(rtc, ssrc, &sent, &ext, payload, Some(seq), now, egress) {
                self.resend_credit -= RESEND_COST;
                egress.counters.resent_packets += 1;
            }
        }
    }
}

/// Seals one packet as `sent` says (a resend of `resend_of`, if set) on stream `ssrc` of `rtc`
/// into a pooled buffer and queues it; false when the session could not send it.
#[allow(clippy::too_many_arguments)] // one packet's parts, and where it goes
pub(crate) fn seal(
    rtc: &mut Rtc,
    ssrc: Ssrc,
    sent: &Sent,
    ext: &ExtensionValues,
    payload: &[u8],
    resend_of: Option<SeqNo>,
    now: Instant,
    egress: &mut Egress,
) -> bool {
    let vp8_patch = sent.patch.as_ref().map(|PayloadPatch::Vp8(p)| p);
    let rtp = DirectRtp {
        pt: sent.pt,
        seq_no: sent.seq.into(),
        time: sent.timestamp,
        wallclock: now,
        marker: sent.marker,
        ext_vals: ext,
        payload,
        vp8_patch,
    };
    let mut buf = egress
        .outbox
        .buffer_of_len(payload.len() + DIRECT_SEND_HEADROOM);
    match rtc.send_rtp_direct(now, ssrc, &rtp, resend_of, &mut buf) {
        Some(t) => {
            buf.truncate(t.len);
            egress.outbox.transmit(Transmit {
                proto: t.proto,
                source: t.source,
                destination: t.destination,
                contents: buf,
            });
            true
        }
        None => {
            egress.outbox.recycle(buf);
            false
        }
    }
}
