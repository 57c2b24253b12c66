//! Forwarding: one published packet to every leg that carries its track, and keyframe requests
//! back to publishers.

use std::time::Instant;

use super::*;

impl Core {
    /// Hands one incoming RTP packet to every member subscribed to its track.
    pub(super) fn forward(&mut self, _now: Instant, from: PeerId, packet: Str0mRtp) {
        self.counters.received_packets += 1;
        let Some(publisher) = self.peers.get_mut(&from) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        let Some(mid) = publisher.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid()) else {
            return;
        };
        let Some(publication) = publisher.publications.iter().find(|p| p.mid == mid) else {
            return;
        };
        if publication.muted {
            return;
        }
        let in_pt = packet.header.payload_type;
        let Some(params) = publisher
            .rtc
            .codec_config()
            .find(|p| p.pt() == in_pt)
            .copied()
        else {
            self.counters.drop(DropReason::NoMatchingCodec);
            return;
        };
        let key = TrackKey { peer: from, mid };
        let nackable = publication.kind == MediaKind::Video;
        let mut ext = packet.header.ext_vals.clone();
        // These name the publisher's m-line and transport; the subscriber's session sets its own.
        ext.mid = None;
        ext.rid = None;
        ext.rid_repair = None;
        ext.transport_cc = None;
        let Some(room) = self.rooms.get(&publisher.room) else {
            return;
        };
        for &member in &room.members {
            if member == from {
                continue;
            }
            let Some(sub_peer) = self.peers.get_mut(&member) else {
                continue;
            };
            let Some(leg) = sub_peer.subscriptions.iter_mut().find(|s| s.source == key) else {
                continue;
            };
            let Some(out_mid) = leg.open_mid() else {
                continue;
            };
            let rtc = &sub_peer.rtc;
            let Some((out_pt, clock_rate)) =
                leg.map_pt(in_pt, || rtc.codec_config().match_params(params).copied())
            else {
                self.counters.drop(DropReason::NoMatchingCodec);
                continue;
            };
            let Some(out) = leg.rewriter.rewrite(
                *ssrc,
                *packet.seq_no,
                packet.header.timestamp,
                packet.timestamp,
                clock_rate,
            ) else {
                self.counters.drop(DropReason::StaleSource);
                continue;
            };
            // No allocation of ours here: the payload `Arc` is shared by every leg. str0m allocates
            // twice per packet on its own: the decrypted payload (once, before this event) and the
            // sealed datagram (`DatagramSend`, per leg, in `poll_output`).
            let mut api = sub_peer.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(out_mid, None) else {
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(
                    out_pt,
                    out.seq.into(),
                    out.timestamp,
                    packet.timestamp,
                    packet.payload.clone(),
                )
                .marker(packet.header.marker)
                .ext_vals(ext.clone())
                .nackable(nackable),
            );
            self.counters.forwarded_packets += 1;
            self.counters.forwarded_bytes += packet.payload.len() as u64;
            if !sub_peer.dirty {
                sub_peer.dirty = true;
                self.dirty.push(member);
            }
        }
    }

    /// Asks the publisher of `source` for a keyframe, at most once per configured interval.
    pub(super) fn request_keyframe(&mut self, now: Instant, source: TrackKey) {
        let interval = self.config.keyframe_request_interval;
        let Some(publisher) = self.peers.get_mut(&source.peer) else {
            return;
        };
        let Some(publication) = publisher
            .publications
            .iter_mut()
            .find(|p| p.mid == source.mid)
        else {
            return;
        };
        if publication.kind != MediaKind::Video
            || publication
                .last_keyframe_request
                .is_some_and(|t| now < t + interval)
        {
            return;
        }
        publication.last_keyframe_request = Some(now);
        if let Some(rx) = publisher
            .rtc
            .direct_api()
            .stream_rx_by_mid(source.mid, None)
        {
            rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        }
        self.mark_dirty(source.peer);
    }
}
