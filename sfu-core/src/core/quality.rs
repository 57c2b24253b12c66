//! Media quality per subscriber: the layer each video leg takes (tile size and bandwidth
//! estimate), fallbacks when a publisher stops a layer, layer hints to publishers, keyframe
//! requests, the dominant speaker, and the per-leg stats message.

use std::time::Duration;

use str0m::bwe::{Bitrate, BweKind};
use str0m::media::KeyframeRequestKind;
use str0m::stats::MediaEgressStats;

use super::*;
use crate::allocation::{
    allocate, assumed_bps, layer_for_tile, LegDemand, UPGRADE_HEADROOM_PERCENT,
};
use crate::layers::{TrackLayers, MAX_LAYERS};
use crate::protocol::{LayerStats, LegStats, MediaStats, PublicationStats};
use crate::track::track_kind;

/// How often layer choices, fallbacks and layer hints are revisited (besides the events that
/// change them at once: a tile resize, a leg opening).
pub(super) const QUALITY_TICK: Duration = Duration::from_millis(250);
/// Share of the estimate the allocation may use: the rest absorbs estimate error and
/// retransmissions.
const BUDGET_PERCENT: u64 = 95;
/// A layer nobody took for this long is paused at the publisher (with a `layerHint`); a layer
/// wanted again is resumed at once.
const HINT_HOLD: Duration = Duration::from_secs(2);
/// A leg still waiting for the keyframe of its target asks again after this long. A PLI can be
/// lost, and a PLI to Chrome within 300 ms of one for another layer of the same encoder was seen
/// to go unanswered: a downgrade in two steps (top to middle, then to low) would otherwise wait a
/// whole retry for its second keyframe.
const KEYFRAME_RETRY: Duration = Duration::from_millis(400);
/// The estimator is told new (minimum, desired) rates only when one moved by more than this
/// (percent).
const REQUEST_CHANGE_PERCENT: u64 = 5;
/// While the estimate is short of the desired rate, the estimator is asked to probe again this
/// often.
const PROBE_RETRY: Duration = Duration::from_secs(3);
/// How much each of those requests raises the desired rate (an increase is what asks for a
/// probe).
const PROBE_NUDGE_BPS: u64 = 1000;
/// The nudges wrap after this many.
const PROBE_NUDGE_WRAP: u64 = 50;
/// Largest tile side taken from a client (larger reports are clamped).
const MAX_TILE_SIDE: u32 = 16_384;

impl Core {
    /// The publication behind `key`, from a member or a plain RTP ingest.
    fn publication(&self, key: TrackKey) -> Option<&Publication> {
        match self.peers.get(&key.peer) {
            Some(p) => p.publications.iter().find(|p| p.mid == key.mid),
            None => self
                .ingests
                .get(&key.peer)
                .map(|i| &i.publication)
                .filter(|p| p.mid == key.mid),
        }
    }

    /// A subscriber reported the size of a tile.
    pub(super) fn on_tile_size(
        &mut self,
        now: Instant,
        id: PeerId,
        track_id: &str,
        width: u32,
        height: u32,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let key = TrackKey::parse(track_id);
        let Some(leg) = peer
            .subscriptions
            .iter_mut()
            .find(|s| s.wanted && Some(s.source) == key)
        else {
            // Not an error: a resize can race the track's removal.
            debug!(
                peer = id,
                track = track_id,
                "tile size for a track not received"
            );
            return;
        };
        leg.tile = Some((width.min(MAX_TILE_SIDE), height.min(MAX_TILE_SIDE)));
        self.reallocate(now, id);
    }

    /// Pauses (`muted`) or resumes `subscriber`'s legs of `key`. Whatever was not forwarded in
    /// between leaves no gap in the leg's numbering, and a video leg resumes at a keyframe.
    pub(super) fn mute_legs(
        &mut self,
        now: Instant,
        subscriber: PeerId,
        key: TrackKey,
        muted: bool,
    ) {
        let Some(peer) = self.peers.get_mut(&subscriber) else {
            return;
        };
        let mut video = false;
        for leg in peer.subscriptions.iter_mut().filter(|s| s.source == key) {
            leg.rewriter.resync();
            leg.vp8_ids.resync();
            if leg.kind == MediaKind::Video {
                video = true;
                if muted {
                    leg.selector.set_target(None);
                }
            }
        }
        if video && !muted {
            self.reallocate(now, subscriber);
        }
    }

    /// The subscriber's session has a new bandwidth estimate.
    pub(super) fn on_estimate(&mut self, id: PeerId, kind: BweKind) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let bw = &mut peer.bandwidth;
        match kind {
            BweKind::Twcc {
                estimate,
                can_probe,
            } => {
                debug!(
                    peer = id,
                    estimate = estimate.as_u64(),
                    can_probe,
                    "bandwidth estimate"
                );
                bw.estimate = Some(estimate.as_u64());
                bw.from_twcc = true;
            }
            BweKind::Remb { estimate, .. } if !bw.from_twcc => {
                bw.estimate = Some(estimate.as_u64());
            }
            _ => {}
        }
    }

    /// The subscriber's session reported a leg's counters.
    pub(super) fn on_egress_stats(&mut self, id: PeerId, stats: &MediaEgressStats) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if let Some(leg) = peer.subscription_by_mid_mut(stats.mid) {
            leg.stats.nacks = stats.nacks;
        }
    }

    /// A subscriber asked for a keyframe on the leg with `mid`: passed on for the layer it
    /// receives, within the publisher's rate limit.
    pub(super) fn on_subscriber_keyframe_request(&mut self, now: Instant, id: PeerId, mid: Mid) {
        let Some(leg) = self
            .peers
            .get_mut(&id)
            .and_then(|p| p.subscription_by_mid_mut(mid))
        else {
            return;
        };
        leg.stats.plis += 1;
        let source = leg.source;
        if let Some(layer) = leg.selector.current().or(leg.selector.target()) {
            self.request_keyframe(now, source, layer);
        }
    }

    /// Asks the publisher of `source` for a keyframe of `layer`, at most once per configured
    /// interval per layer however many subscribers ask. Plain RTP ingests cannot be asked.
    pub(super) fn request_keyframe(&mut self, now: Instant, source: TrackKey, layer: u8) {
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
            || !publication
                .layers
                .claim_keyframe_request(layer, now, interval)
        {
            return;
        }
        let rid = publication.layers.get(layer).and_then(|l| l.rid);
        if let Some(rx) = publisher.rtc.direct_api().stream_rx_by_mid(source.mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
        self.mark_dirty(source.peer);
    }

    /// Revisits every subscriber's layers and every publisher's layer hints.
    pub(super) fn quality_tick(&mut self, now: Instant) {
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        ids.extend(self.peers.keys().copied());
        for &id in &ids {
            self.reallocate(now, id);
        }
        self.scratch = ids;
        self.send_layer_hints(now);
    }

    /// Chooses the layer of each of `id`'s video legs from its tiles and its bandwidth estimate,
    /// asks for the keyframes the changes need, and tells its estimator what to probe for.
    pub(super) fn reallocate(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        // Per open video leg: its index in the subscriber's leg list, what it can get now, and
        // what it would take if every layer were sent (for hints and probing).
        let mut legs: Vec<usize> = Vec::new();
        let mut actual: Vec<LegDemand> = Vec::new();
        let mut ideal: Vec<LegDemand> = Vec::new();
        let mut audio_bps = 0;
        for (i, leg) in peer.subscriptions.iter().enumerate() {
            if leg.open_mid().is_none() {
                continue;
            }
            if leg.kind == MediaKind::Audio {
                audio_bps += leg.stats.rate.bps(now);
                continue;
            }
            let Some(publication) = self.publication(leg.source) else {
                continue;
            };
            let layers = &publication.layers;
            let sizes: heapless::Vec<Option<(u16, u16)>, MAX_LAYERS> =
                layers.iter().map(|l| l.size).collect();
            let wanted = if publication.muted {
                None
            } else {
                layer_for_tile(leg.tile, &sizes)
            };
            let current = leg.selector.current();
            let priority = leg
                .tile
                .map_or(u64::MAX, |(w, h)| u64::from(w) * u64::from(h));
            // A layer that just (re)started is still ramping up: until its rate is measured over
            // a whole window it counts at least at the rate such a layer usually settles at, or
            // the allocation would take it cheaply and drop it a second later.
            let rate_of = |l: u8| {
                let measured = layers.bps(l, now);
                if layers.is_settled(l, now) && measured > 0 {
                    measured
                } else {
                    measured.max(assumed_bps(l, layers.count()))
                }
            };
            let n = layers.count() as u8;
            legs.push(i);
            // A track without simulcast has nothing to fall back to: its one layer is taken
            // whether or not it is sending right now.
            actual.push(LegDemand {
                wanted,
                rates: (0..n)
                    .map(|l| {
                        (layers.is_active(l, now) || !layers.is_simulcast()).then(|| rate_of(l))
                    })
                    .collect(),
                current,
                priority,
            });
            ideal.push(LegDemand {
                wanted,
                rates: (0..n).map(|l| Some(rate_of(l))).collect(),
                current,
                priority,
            });
        }
        if legs.is_empty() {
            return;
        }
        let budget = peer
            .bandwidth
            .estimate
            .map(|e| (e * BUDGET_PERCENT / 100).saturating_sub(audio_bps));
        let mut targets = Vec::new();
        let allocated = allocate(budget, &actual, &mut targets);
        let mut wished = Vec::new();
        let desired = allocate(None, &ideal, &mut wished);
        // The next step up any leg could take: padding up to it lets the estimator find out
        // whether it fits before media depends on it.
        let next_step = ideal
            .iter()
            .zip(&targets)
            .filter_map(|(d, t)| {
                let have = (*t)?;
                let next = have + 1;
                (d.wanted? >= next).then(|| {
                    let rates = &d.rates;
                    let up = rates.get(usize::from(next)).copied().flatten()?;
                    let now_rate = rates.get(usize::from(have)).copied().flatten()?;
                    Some(up.saturating_sub(now_rate))
                })?
            })
            .min()
            .unwrap_or(0);
        let estimate = peer.bandwidth.estimate;
        let mut keyframes: Vec<(TrackKey, u8)> = Vec::new();
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        for ((&i, d), target) in legs.iter().zip(&actual).zip(&targets) {
            let Some(leg) = peer.subscriptions.get_mut(i) else {
                continue;
            };
            let before = leg.selector.target();
            let changed = leg.selector.set_target(*target);
            // Down while the tile still wants the current layer: the link cannot carry it.
            let forced = matches!((*target, leg.selector.current(), d.wanted),
                (Some(t), Some(c), Some(w)) if t < c && w >= c);
            if changed && forced {
                leg.selector.drop_current();
            }
            if changed {
                info!(
                    subscriber = id,
                    track = %leg.source.id(),
                    from = ?before,
                    to = ?target,
                    estimate_bps = ?estimate,
                    tile = ?leg.tile,
                    "layer target"
                );
            }
            if let (true, Some(layer)) = (leg.selector.awaits_keyframe(), *target) {
                if changed || leg.keyframe_asked.is_none_or(|t| now >= t + KEYFRAME_RETRY) {
                    leg.keyframe_asked = Some(now);
                    keyframes.push((leg.source, layer));
                }
            }
        }
        for (&i, wish) in legs.iter().zip(&wished) {
            if let (Some(layer), Some(leg)) = (wish, peer.subscriptions.get(i)) {
                let mask = self.layer_demand.entry(leg.source).or_insert(0);
                // Every layer up to the one wished for: the lower ones are the fallbacks when the
                // link gets worse.
                *mask |= (2u8 << layer) - 1;
            }
        }
        peer.bandwidth.allocated = allocated;
        // What the estimate must reach for the allocation to take these rates: the budget is a
        // share of the estimate, and an upgrade needs its headroom on top. Probing stops at
        // `desired`, so without the headroom the top layer would never be reached.
        let estimate_for = |video: u64| video * 100 / BUDGET_PERCENT + audio_bps;
        let desired = estimate_for(desired * (100 + UPGRADE_HEADROOM_PERCENT) / 100);
        // Padding toward the next upgrade, if there is one; otherwise media alone.
        let minimum = match next_step {
            0 => allocated + audio_bps,
            step => estimate_for(allocated + step * (100 + UPGRADE_HEADROOM_PERCENT) / 100),
        }
        .min(desired);
        let bw = &mut peer.bandwidth;
        let (old_min, old_desired) = bw.requested;
        // str0m probes when the desired rate goes up, not when it stays: while the estimate is
        // short of it, nudge it up a little now and then so the estimator probes again (a probe
        // asked for during its start-up or under congestion is skipped).
        let short = estimate.is_some_and(|e| e < desired);
        let nudge = short && bw.probe_requested.is_none_or(|t| now >= t + PROBE_RETRY);
        if moved(old_min, minimum)
            || moved(old_desired.saturating_sub(bw.probe_nudge), desired)
            || nudge
        {
            // Bounded: wrapping to 0 skips one probe, the next nudge goes up again.
            bw.probe_nudge = if nudge {
                (bw.probe_nudge + PROBE_NUDGE_BPS) % (PROBE_NUDGE_WRAP * PROBE_NUDGE_BPS)
            } else {
                0
            };
            if short {
                bw.probe_requested = Some(now);
            }
            let desired = desired + bw.probe_nudge;
            debug!(peer = id, minimum, desired, "bandwidth wanted");
            bw.requested = (minimum, desired);
            peer.rtc
                .bwe()
                .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired));
            self.mark_dirty(id);
        }
        for (source, layer) in keyframes {
            self.request_keyframe(now, source, layer);
        }
    }

    /// Tells publishers which simulcast layers anybody takes, from the demand the last
    /// reallocations recorded, after [`HINT_HOLD`] for a layer no longer wanted.
    fn send_layer_hints(&mut self, now: Instant) {
        let demand = std::mem::take(&mut self.layer_demand);
        let mut hints = Vec::new();
        for (&id, peer) in &mut self.peers {
            for publication in &mut peer.publications {
                if !publication.layers.is_simulcast() {
                    continue;
                }
                let key = TrackKey {
                    peer: id,
                    mid: publication.mid,
                };
                // Plain RTP outputs (recorders, relays) take the top layer.
                let mut mask = demand.get(&key).copied().unwrap_or(0);
                if self.outputs_by_track.contains_key(&key) {
                    mask |= 1 << (publication.layers.count() - 1);
                }
                if let Some(active) = publication.layers.hint(mask, now, HINT_HOLD) {
                    info!(peer = id, track = %key.id(), ?active, "layer hint");
                    hints.push((
                        id,
                        ServerMessage::LayerHint {
                            mid: publication.mid.to_string(),
                            active,
                        },
                    ));
                }
            }
        }
        for (id, msg) in hints {
            self.signal(id, msg);
        }
    }

    /// Tells the room its dominant speaker changed.
    pub(super) fn announce_speaker(&mut self, room: &str, speaker: Option<TrackKey>) {
        let Some(members) = self.rooms.get(room).map(|r| r.members.clone()) else {
            return;
        };
        debug!(room, speaker = ?speaker.map(|k| k.id()), "dominant speaker");
        for member in members {
            self.signal(member, speaker_message(speaker));
        }
    }

    /// Forgets `key` in its room's speaker detection (the track or its member is gone).
    pub(super) fn forget_speaker(&mut self, room: &str, key: TrackKey) {
        let change = self.rooms.get_mut(room).and_then(|r| r.speaker.remove(key));
        if let Some(speaker) = change {
            self.announce_speaker(room, speaker);
        }
    }

    /// Answers `getStats`.
    pub(super) fn on_get_stats(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let receiving = peer
            .subscriptions
            .iter()
            .filter(|s| s.wanted)
            .map(|leg| {
                let layers = self.publication(leg.source).map(|p| &p.layers);
                let size = leg
                    .selector
                    .current()
                    .and_then(|l| layers.and_then(|ls| ls.get(l)))
                    .and_then(|l| l.size);
                LegStats {
                    track_id: leg.source.id(),
                    kind: Some(track_kind(leg.kind)),
                    layer: leg.selector.current(),
                    target_layer: leg.selector.target(),
                    width: size.map(|s| u32::from(s.0)),
                    height: size.map(|s| u32::from(s.1)),
                    bitrate_bps: leg.stats.rate.bps(now),
                    packets: leg.stats.packets,
                    nacks: leg.stats.nacks,
                    plis: leg.stats.plis,
                    switches: leg.selector.switches,
                    tile: leg.tile,
                }
            })
            .collect();
        let publishing = peer
            .publications
            .iter()
            .map(|p| PublicationStats {
                track_id: TrackKey {
                    peer: id,
                    mid: p.mid,
                }
                .id(),
                kind: Some(track_kind(p.kind)),
                layers: layer_stats(&p.layers, now),
                keyframe_requests: p.layers.keyframe_requests,
            })
            .collect();
        let stats = MediaStats {
            estimate_bps: peer.bandwidth.estimate,
            allocated_bps: peer.bandwidth.allocated,
            receiving,
            publishing,
        };
        self.signal(id, ServerMessage::MediaStats(stats));
    }
}

/// Whether `new` differs from `old` by more than [`REQUEST_CHANGE_PERCENT`].
fn moved(old: u64, new: u64) -> bool {
    old.abs_diff(new) * 100 > old.max(1) * REQUEST_CHANGE_PERCENT
}

/// The `activeSpeaker` message for `speaker`.
pub(super) fn speaker_message(speaker: Option<TrackKey>) -> ServerMessage {
    ServerMessage::ActiveSpeaker {
        peer_id: speaker.map(|k| k.peer),
        track_id: speaker.map(|k| k.id()),
    }
}

fn layer_stats(layers: &TrackLayers, now: Instant) -> Vec<LayerStats> {
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| LayerStats {
            rid: l.rid.map(|r| r.to_string()),
            bitrate_bps: l.rate.bps(now),
            width: l.size.map(|s| u32::from(s.0)),
            height: l.size.map(|s| u32::from(s.1)),
            active: layers.is_active(i as u8, now),
        })
        .collect()
}
