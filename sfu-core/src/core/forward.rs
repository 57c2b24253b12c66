//! Forwarding: one published packet to every leg that carries its track (browser legs through
//! their str0m sessions, plain RTP outputs as datagrams), and keyframe requests back to publishers.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::{Codec, PayloadParams};
use str0m::media::Pt;
use str0m::rtp::{ExtensionValues, Vp8Descriptor};

use super::*;
use crate::plain::OutputPath;
use crate::rewrite::SeqTsRewriter;
use crate::selector::Decision;
use crate::wire::{keyframe_start, RtpRepr, VideoCodec};

/// One packet of a published track on its way out, whichever kind of publisher sent it.
pub(super) struct Forwarded {
    /// The track.
    pub key: TrackKey,
    /// The publisher's SSRC (a change means a new source behind the track).
    pub ssrc: u32,
    /// Extended sequence number at the publisher.
    pub seq: u64,
    /// RTP timestamp at the publisher.
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// When it arrived.
    pub arrival: Instant,
    /// The payload, shared by every leg.
    pub payload: Arc<[u8]>,
    /// The publisher's payload type.
    pub pt: Pt,
    /// The codec behind that payload type, to find each leg's own payload type.
    pub params: PayloadParams,
    /// Header extension values to carry over.
    pub ext: ExtensionValues,
    /// Whether subscribers may NACK it (video).
    pub nackable: bool,
    /// The simulcast layer it belongs to (0 without simulcast).
    pub layer: u8,
    /// The track has more than one layer: legs switch between them at keyframes.
    pub simulcast: bool,
    /// It starts a keyframe.
    pub keyframe: bool,
    /// The track's top layer (plain outputs take that one).
    pub top_layer: u8,
    /// The VP8 payload descriptor of a simulcast track's packet, whose ids each leg rewrites.
    pub vp8: Option<Vp8Descriptor>,
}

/// The payload format a codec's keyframes are recognised in, for video.
pub(super) fn video_codec(params: &PayloadParams) -> Option<VideoCodec> {
    match params.spec().codec {
        Codec::Vp8 => Some(VideoCodec::Vp8),
        Codec::H264 => Some(VideoCodec::H264),
        _ => None,
    }
}

impl Core {
    /// Hands one RTP packet a browser published to the track's legs.
    pub(super) fn forward(&mut self, from: PeerId, packet: Str0mRtp) {
        self.counters.received_packets += 1;
        let Some(publisher) = self.peers.get_mut(&from) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        let Some((mid, rid)) = publisher
            .rtc
            .direct_api()
            .stream_rx(&ssrc)
            .map(|s| (s.mid(), s.rid()))
        else {
            return;
        };
        let pt = packet.header.payload_type;
        let Some(params) = publisher.rtc.codec_config().find(|p| p.pt() == pt).copied() else {
            self.counters.drop(DropReason::NoMatchingCodec);
            return;
        };
        let Some(publication) = publisher.publications.iter_mut().find(|p| p.mid == mid) else {
            return;
        };
        if publication.muted {
            return;
        }
        let Some(layer) = publication.layers.index_of(rid) else {
            self.counters.drop(DropReason::UnknownLayer);
            return;
        };
        let now = packet.timestamp;
        let video = publication.kind == MediaKind::Video;
        let codec = video_codec(&params).filter(|_| video);
        let keyframe = codec.and_then(|c| keyframe_start(c, &packet.payload));
        publication
            .layers
            .on_packet(layer, now, packet.payload.len(), keyframe);
        let simulcast = publication.layers.is_simulcast();
        let vp8 = (simulcast && codec == Some(VideoCodec::Vp8))
            .then(|| Vp8Descriptor::parse(&packet.payload).ok())
            .flatten();
        let top_layer = publication.layers.count() as u8 - 1;
        let key = TrackKey { peer: from, mid };
        let level = packet.header.ext_vals.audio_level.filter(|_| !video);
        let mut ext = packet.header.ext_vals;
        // These name the publisher's m-line and transport; each leg's session sets its own.
        ext.mid = None;
        ext.rid = None;
        ext.rid_repair = None;
        ext.transport_cc = None;
        let forwarded = Forwarded {
            key,
            ssrc: *ssrc,
            seq: *packet.seq_no,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            arrival: now,
            payload: packet.payload,
            pt,
            params,
            ext,
            nackable: video,
            layer,
            simulcast,
            keyframe: keyframe.is_some(),
            top_layer,
            vp8,
        };
        let room = publisher.room.clone();
        if let Some(level) = level {
            self.on_audio_level(&room, key, now, level.unsigned_abs());
        }
        self.fan_out(&room, &forwarded);
    }

    /// Feeds one packet's audio level to its room's speaker detection.
    fn on_audio_level(&mut self, room: &str, key: TrackKey, now: Instant, dbov: u8) {
        let change = self
            .rooms
            .get_mut(room)
            .and_then(|r| r.speaker.on_level(key, now, dbov));
        if let Some(speaker) = change {
            self.announce_speaker(room, speaker);
        }
    }

    /// Writes `pkt` to every member's open leg for its track and to the track's plain outputs.
    pub(super) fn fan_out(&mut self, room: &str, pkt: &Forwarded) {
        // Taken out and put back (a move, not a copy) so the peers can be borrowed mutably.
        let Some(members) = self
            .rooms
            .get_mut(room)
            .map(|r| std::mem::take(&mut r.members))
        else {
            return;
        };
        for &member in &members {
            if member == pkt.key.peer {
                continue;
            }
            let Some(sub_peer) = self.peers.get_mut(&member) else {
                continue;
            };
            let Some(leg) = sub_peer
                .subscriptions
                .iter_mut()
                .find(|s| s.source == pkt.key)
            else {
                continue;
            };
            let Some(out_mid) = leg.open_mid() else {
                continue;
            };
            if leg.kind == MediaKind::Video {
                // Without simulcast there is nothing to switch between: the leg starts (or resumes
                // after a hidden tile) at once, and the keyframe asked for then follows.
                match leg
                    .selector
                    .on_packet(pkt.layer, pkt.keyframe || !pkt.simulcast)
                {
                    Decision::Drop => continue,
                    Decision::Forward => {}
                    Decision::Switch => {
                        leg.rewriter.resync();
                        leg.vp8_ids.resync();
                        if pkt.simulcast {
                            info!(
                                subscriber = member,
                                track = %pkt.key.id(),
                                layer = pkt.layer,
                                switches = leg.selector.switches,
                                "layer switch"
                            );
                        }
                    }
                }
            }
            let rtc = &sub_peer.rtc;
            let Some((out_pt, clock_rate)) = leg.map_pt(pkt.pt, || {
                rtc.codec_config().match_params(pkt.params).copied()
            }) else {
                self.counters.drop(DropReason::NoMatchingCodec);
                continue;
            };
            let Some(out) =
                leg.rewriter
                    .rewrite(pkt.ssrc, pkt.seq, pkt.timestamp, pkt.arrival, clock_rate)
            else {
                self.counters.drop(DropReason::StaleSource);
                continue;
            };
            // No allocation of ours here: the payload `Arc` is shared by every leg. str0m allocates
            // twice per packet on its own: the decrypted payload (once, before this event) and the
            // sealed datagram (`DatagramSend`, per leg, in `poll_output`).
            let patch = pkt.vp8.and_then(|d| leg.vp8_ids.patch(&d));
            let mut api = sub_peer.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(out_mid, None) else {
                continue;
            };
            let mut write = RtpWrite::new(
                out_pt,
                out.seq.into(),
                out.timestamp,
                pkt.arrival,
                pkt.payload.clone(),
            )
            .marker(pkt.marker)
            .ext_vals(pkt.ext.clone())
            .nackable(pkt.nackable);
            if let Some(patch) = patch {
                write = write.vp8_patch(patch);
            }
            tx.write_rtp(write);
            self.counters.forwarded_packets += 1;
            self.counters.forwarded_bytes += pkt.payload.len() as u64;
            leg.stats.packets += 1;
            leg.stats.rate.add(pkt.arrival, pkt.payload.len());
            sub_peer.written = true;
            if !sub_peer.dirty {
                sub_peer.dirty = true;
                self.dirty.push(member);
            }
        }
        if let Some(r) = self.rooms.get_mut(room) {
            r.members = members;
        }
        self.write_outputs(pkt);
    }

    /// Writes `pkt` as plain RTP for the track's outputs: one datagram per receiver, or one for
    /// the kernel to copy.
    fn write_outputs(&mut self, pkt: &Forwarded) {
        let Some(ids) = self.outputs_by_track.get(&pkt.key) else {
            return;
        };
        // A recorder or relay takes one layer of a simulcast track: the best.
        if pkt.layer != pkt.top_layer {
            return;
        }
        let mut egress = PlainEgress {
            pool: &mut self.pool,
            transmits: &mut self.transmits,
            counters: &mut self.counters,
            candidates: &self.config.candidates,
            clock_rate: pkt.params.spec().clock_rate.get(),
        };
        let len = pkt.payload.len() as u64;
        for id in ids {
            let Some(output) = self.outputs.get_mut(id) else {
                continue;
            };
            match output.path {
                OutputPath::Kernel { handoff, ssrc } => {
                    if egress.send(&mut output.handoff, pkt, ssrc, *pkt.pt, handoff) {
                        for target in &mut output.targets {
                            target.packets += 1;
                            target.bytes += len;
                        }
                    }
                }
                OutputPath::Userspace => {
                    for t in &mut output.targets {
                        let pt = t.payload_type.unwrap_or(*pkt.pt);
                        if egress.send(&mut t.rewriter, pkt, t.ssrc, pt, t.address) {
                            t.packets += 1;
                            t.bytes += len;
                        }
                    }
                }
            }
        }
    }
}

/// Where plain RTP copies go: built in pooled buffers, queued for the shell, counted.
struct PlainEgress<'a> {
    pool: &'a mut BufferPool,
    transmits: &'a mut VecDeque<Transmit>,
    counters: &'a mut Counters,
    candidates: &'a [SocketAddr],
    clock_rate: u32,
}

impl PlainEgress<'_> {
    /// Numbers `pkt` with `rewriter` and queues it to `destination` with `ssrc` and `pt`; false
    /// when it is not sent (a late packet of an earlier source).
    fn send(
        &mut self,
        rewriter: &mut SeqTsRewriter,
        pkt: &Forwarded,
        ssrc: u32,
        pt: u8,
        destination: SocketAddr,
    ) -> bool {
        let Some(out) = rewriter.rewrite(
            pkt.ssrc,
            pkt.seq,
            pkt.timestamp,
            pkt.arrival,
            self.clock_rate,
        ) else {
            self.counters.drop(DropReason::StaleSource);
            return false;
        };
        let repr = RtpRepr {
            payload_type: pt,
            // The low 16 bits are the wire's sequence number.
            sequence_number: out.seq as u16,
            timestamp: out.timestamp,
            ssrc,
            marker: pkt.marker,
        };
        let Some(contents) = build_plain(self.pool, &repr, &pkt.payload) else {
            return false;
        };
        self.counters.forwarded_packets += 1;
        self.counters.forwarded_bytes += pkt.payload.len() as u64;
        self.transmits.push_back(Transmit {
            proto: Protocol::Udp,
            source: local_for(self.candidates, destination),
            destination,
            contents,
        });
        true
    }
}

/// A plain RTP datagram in a pooled buffer.
fn build_plain(pool: &mut BufferPool, repr: &RtpRepr, payload: &[u8]) -> Option<Vec<u8>> {
    let mut buf = pool.take(repr.header_len() + payload.len());
    buf.resize(repr.header_len(), 0);
    repr.emit(&mut buf).ok()?;
    buf.extend_from_slice(payload);
    Some(buf)
}

/// The announced address a datagram to `destination` leaves from: loopback for loopback, else the
/// first other one.
pub(super) fn local_for(candidates: &[SocketAddr], destination: SocketAddr) -> SocketAddr {
    let loopback = destination.ip().is_loopback();
    candidates
        .iter()
        .find(|c| c.ip().is_loopback() == loopback)
        .or(candidates.first())
        .copied()
        .unwrap_or(destination)
}
