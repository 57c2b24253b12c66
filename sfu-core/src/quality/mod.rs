//! Media quality per subscriber: the layer each video subscription takes (tile size and
//! bandwidth estimate), fallbacks when a publisher stops a layer, layer hints to publishers,
//! keyframe pacing and the per-subscriber stats message. The pure policies live in the
//! submodules; [`Quality`] applies them to a member's subscriptions and the router's tracks.

pub mod allocation;
pub mod layers;
pub mod rate;
pub mod selector;
pub mod speaker;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::media::MediaKind;
use tracing::{debug, info};

use allocation::{
    allocate, assumed_bps, layer_for_tile, temporal_cap, LegDemand, UPGRADE_HEADROOM_PERCENT,
};
use layers::{TrackLayers, MAX_LAYERS};

use crate::membership::Peer;
use crate::protocol::{LayerStats, LegStats, MediaStats, PeerId, PublicationStats, ServerMessage};
use crate::router::{track_kind, Origin, Router, TrackKey};

/// How often layer choices, fallbacks and layer hints are revisited (besides the events that
/// change them at once: a tile resize, a subscription opening).
pub const QUALITY_TICK: Duration = Duration::from_millis(250);
/// Share of the estimate the allocation may use: the rest absorbs estimate error and
/// retransmissions.
const BUDGET_PERCENT: u64 = 95;
/// A layer nobody took for this long is paused at the publisher (with a `layerHint`); a layer
/// wanted again is resumed at once.
const HINT_HOLD: Duration = Duration::from_secs(2);
/// A subscription still waiting for the keyframe of its target asks again after this long. A
/// PLI can be lost, and a PLI to Chrome within 300 ms of one for another layer of the same
/// encoder was seen to go unanswered: a downgrade in two steps (top to middle, then to low) would
/// otherwise wait a whole retry for its second keyframe.
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
pub const MAX_TILE_SIDE: u32 = 16_384;

/// The quality state of one worker: the layers subscribers want, and when to look again.
#[derive(Debug, Default)]
pub struct Quality {
    /// Simulcast layers subscribers want per track since the last tick (bit i: layer i).
    layer_demand: HashMap<TrackKey, u8>,
    /// When layer choices and hints are next revisited.
    next_tick: Option<Instant>,
}

/// What a reallocation asks of the rest of the core.
#[derive(Debug, Default)]
pub struct Reallocation {
    /// Keyframes to ask of publishers: (track, layer).
    pub keyframes: Vec<(TrackKey, u8)>,
    /// The subscriber's session was told new rates: poll it.
    pub session_changed: bool,
}

impl Quality {
    /// When the next tick is due.
    pub fn next_tick(&self) -> Option<Instant> {
        self.next_tick
    }

    /// Starts the ticks when the first member joins.
    pub fn start_ticks(&mut self, now: Instant) {
        self.next_tick.get_or_insert(now + QUALITY_TICK);
    }

    /// Whether a tick is due at `now`; when it is, the next one is scheduled (or the ticks stop
    /// when nobody is left).
    pub fn tick_due(&mut self, now: Instant, anybody: bool) -> bool {
        let due = self.next_tick.is_some_and(|t| now >= t);
        if due {
            self.next_tick = Some(now + QUALITY_TICK);
        }
        if !anybody {
            self.next_tick = None;
        }
        due
    }

    /// The layers of `key` this node's subscribers wished for since the last tick (bit n: layer
    /// n).
    pub fn demand_of(&self, key: TrackKey) -> u8 {
        self.layer_demand.get(&key).copied().unwrap_or(0)
    }

    /// Adds layers of `key` that something other than a subscription of this node takes (a
    /// trunk's far node), so the publisher keeps sending them.
    pub fn add_demand(&mut self, key: TrackKey, layers: u8) {
        if layers != 0 {
            *self.layer_demand.entry(key).or_insert(0) |= layers;
        }
    }

    /// Chooses the layer of each of `peer`'s video subscriptions from its tiles and its bandwidth
    /// estimate, and tells its estimator what to probe for. Returns the keyframes the changes
    /// need.
    pub fn reallocate(&mut self, now: Instant, peer: &mut Peer, router: &Router) -> Reallocation {
        let mut result = Reallocation::default();
        // Per open video subscription: its slot, what it can get now, and what it would take if
        // every layer were sent (for hints and probing).
        let mut slots: Vec<usize> = Vec::new();
        let mut actual: Vec<LegDemand> = Vec::new();
        let mut ideal: Vec<LegDemand> = Vec::new();
        let mut audio_bps = 0;
        for (slot, sub) in &peer.subscriptions {
            if sub.open_mid().is_none() {
                continue;
            }
            if sub.kind == MediaKind::Audio {
                audio_bps += sub.stats.rate.bps(now);
                continue;
            }
            let Some(track) = router.track(sub.source) else {
                continue;
            };
            let (now_demand, ideal_demand) = demands(&track.layers, track.muted, sub.tile, now);
            slots.push(slot);
            actual.push(LegDemand {
                current: sub.selector.current(),
                ..now_demand
            });
            ideal.push(LegDemand {
                current: sub.selector.current(),
                ..ideal_demand
            });
        }
        if slots.is_empty() {
            return result;
        }
        let budget = peer
            .bandwidth
            .estimate
            .map(|e| (e * BUDGET_PERCENT / 100).saturating_sub(audio_bps));
        let mut targets = Vec::new();
        let allocated = allocate(budget, &actual, &mut targets);
        let mut wished = Vec::new();
        let desired = allocate(None, &ideal, &mut wished);
        let next_step = next_step(&ideal, &targets);
        let estimate = peer.bandwidth.estimate;
        let id = peer.id;
        for ((&slot, d), target) in slots.iter().zip(&actual).zip(&targets) {
            let Some(sub) = peer.subscriptions.get_mut(slot) else {
                continue;
            };
            let capped = sub.selector.temporal_target().is_some();
            let temporal = temporal_cap(budget, allocated, capped);
            if sub.selector.is_scalable() && sub.selector.set_temporal_target(temporal) {
                info!(
                    subscriber = id,
                    track = %sub.source.id(),
                    temporal = ?temporal,
                    estimate_bps = ?estimate,
                    "temporal layer target"
                );
            }
            let before = sub.selector.target();
            let changed = sub.selector.set_target(*target);
            // Down while the tile still wants the current layer: the link cannot carry it.
            let forced = matches!((*target, sub.selector.current(), d.wanted),
                (Some(t), Some(c), Some(w)) if t < c && w >= c);
            if changed && forced {
                sub.selector.drop_current();
            }
            if changed {
                info!(
                    subscriber = id,
                    track = %sub.source.id(),
                    from = ?before,
                    to = ?target,
                    estimate_bps = ?estimate,
                    tile = ?sub.tile,
                    "layer target"
                );
            }
            if let (true, Some(layer)) = (sub.selector.awaits_keyframe(), *target) {
                if changed || sub.keyframe_asked.is_none_or(|t| now >= t + KEYFRAME_RETRY) {
                    sub.keyframe_asked = Some(now);
                    result.keyframes.push((sub.source, layer));
                }
            }
        }
        for (&slot, wish) in slots.iter().zip(&wished) {
            if let (Some(layer), Some(sub)) = (wish, peer.subscriptions.get(slot)) {
                let mask = self.layer_demand.entry(sub.source).or_insert(0);
                // Every layer up to the one wished for: the lower ones are the fallbacks when the
                // link gets worse.
                *mask |= (2u8 << layer) - 1;
            }
        }
        peer.bandwidth.allocated = allocated;
        result.session_changed = request_rates(now, peer, allocated, desired, next_step, audio_bps);
        result
    }

    /// Tells publishers which simulcast layers anybody takes, from the demand the last
    /// reallocations recorded, after `HINT_HOLD` for a layer no longer wanted. Returns the
    /// messages to send.
    pub fn layer_hints(
        &mut self,
        now: Instant,
        router: &mut Router,
    ) -> Vec<(PeerId, ServerMessage)> {
        let demand = std::mem::take(&mut self.layer_demand);
        let mut hints = Vec::new();
        for (key, track) in router.tracks_mut() {
            if track.origin != Origin::Member || !track.layers.is_simulcast() {
                continue;
            }
            let mut mask = demand.get(&key).copied().unwrap_or(0);
            if track.sinks().iter().any(|s| s.takes_top_layer()) {
                mask |= 1 << (track.layers.count() - 1);
            }
            if let Some(active) = track.layers.hint(mask, now, HINT_HOLD) {
                info!(peer = key.peer, track = %key.id(), ?active, "layer hint");
                hints.push((
                    key.peer,
                    ServerMessage::LayerHint {
                        mid: key.mid.to_string(),
                        active,
                    },
                ));
            }
        }
        hints
    }
}

/// What a subscription to a track with `layers` can take now, and what it would take if every
/// layer were sent.
fn demands(
    layers: &TrackLayers,
    muted: bool,
    tile: Option<(u32, u32)>,
    now: Instant,
) -> (LegDemand, LegDemand) {
    let sizes: heapless::Vec<Option<(u16, u16)>, MAX_LAYERS> =
        layers.iter().map(|l| l.size).collect();
    let wanted = if muted {
        None
    } else {
        layer_for_tile(tile, &sizes)
    };
    let priority = tile.map_or(u64::MAX, |(w, h)| u64::from(w) * u64::from(h));
    // A layer that just (re)started is still ramping up: until its rate is measured over a whole
    // window it counts at least at the rate such a layer usually settles at, or the allocation
    // would take it cheaply and drop it a second later.
    let layer_rate = |l: u8| {
        let measured = layers.bps(l, now);
        if layers.is_settled(l, now) && measured > 0 {
            measured
        } else {
            measured.max(assumed_bps(l, layers.count()))
        }
    };
    // Nested (SVC) layers cost the layers below them too.
    let rate_of = |l: u8| layers.forwarded_bps(l, layer_rate);
    let n = layers.count() as u8;
    // A track without simulcast has nothing to fall back to: its one layer is taken whether or
    // not it is sending right now.
    let actual = LegDemand {
        wanted,
        rates: (0..n)
            .map(|l| (layers.is_active(l, now) || !layers.is_simulcast()).then(|| rate_of(l)))
            .collect(),
        current: None,
        priority,
    };
    let ideal = LegDemand {
        wanted,
        rates: (0..n).map(|l| Some(rate_of(l))).collect(),
        current: None,
        priority,
    };
    (actual, ideal)
}

/// The next step up any subscription could take: padding up to it lets the estimator find out
/// whether it fits before media depends on it. 0 when none can go up.
fn next_step(ideal: &[LegDemand], targets: &[Option<u8>]) -> u64 {
    ideal
        .iter()
        .zip(targets)
        .filter_map(|(d, t)| {
            let have = (*t)?;
            let next = have + 1;
            (d.wanted? >= next).then(|| {
                let up = d.rates.get(usize::from(next)).copied().flatten()?;
                let now_rate = d.rates.get(usize::from(have)).copied().flatten()?;
                Some(up.saturating_sub(now_rate))
            })?
        })
        .min()
        .unwrap_or(0)
}

/// Tells `peer`'s estimator the (minimum, desired) rates the allocation implies, when they moved
/// or a probe is due; true when it told it something.
fn request_rates(
    now: Instant,
    peer: &mut Peer,
    allocated: u64,
    desired: u64,
    next_step: u64,
    audio_bps: u64,
) -> bool {
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
    let estimate = peer.bandwidth.estimate;
    let bw = &mut peer.bandwidth;
    let (old_min, old_desired) = bw.requested;
    // str0m probes when the desired rate goes up, not when it stays: while the estimate is
    // short of it, nudge it up a little now and then so the estimator probes again (a probe
    // asked for during its start-up or under congestion is skipped).
    let short = estimate.is_some_and(|e| e < desired);
    let nudge = short && bw.probe_requested.is_none_or(|t| now >= t + PROBE_RETRY);
    if !(moved(old_min, minimum)
        || moved(old_desired.saturating_sub(bw.probe_nudge), desired)
        || nudge)
    {
        return false;
    }
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
    debug!(peer = peer.id, minimum, desired, "bandwidth wanted");
    bw.requested = (minimum, desired);
    peer.rtc
        .bwe()
        .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired));
    true
}

/// Whether `new` differs from `old` by more than [`REQUEST_CHANGE_PERCENT`].
fn moved(old: u64, new: u64) -> bool {
    old.abs_diff(new) * 100 > old.max(1) * REQUEST_CHANGE_PERCENT
}

/// Takes a new bandwidth estimate toward `peer`: TWCC when the session has it, else the
/// client's REMB.
pub fn on_estimate(peer: &mut Peer, kind: BweKind) {
    let id = peer.id;
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

/// The `mediaStats` answer to `getStats` from `peer`.
pub fn media_stats(peer: &Peer, router: &Router, now: Instant) -> MediaStats {
    let receiving = peer
        .subscriptions
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.wanted)
        .map(|sub| {
            let layers = router.track(sub.source).map(|t| &t.layers);
            let size = sub
                .selector
                .current()
                .and_then(|l| layers.and_then(|ls| ls.get(l)))
                .and_then(|l| l.size);
            LegStats {
                track_id: sub.source.id(),
                kind: Some(track_kind(sub.kind)),
                layer: sub.selector.current(),
                target_layer: sub.selector.target(),
                width: size.map(|s| u32::from(s.0)),
                height: size.map(|s| u32::from(s.1)),
                bitrate_bps: sub.stats.rate.bps(now),
                packets: sub.stats.packets,
                nacks: sub.stats.nacks,
                plis: sub.stats.plis,
                switches: sub.selector.switches,
                tile: sub.tile,
                // While a cap is wanted; once lifted, the cap rises at the stream's switching
                // points and its last value says nothing.
                temporal_layer: sub.selector.temporal_target().and(sub.selector.temporal()),
            }
        })
        .collect();
    let mut published = router.keys_of(peer.id);
    published.sort_by_key(|k| k.mid.to_string());
    let publishing = published
        .into_iter()
        .filter_map(|key| {
            let track = router.track(key)?;
            Some(PublicationStats {
                track_id: key.id(),
                kind: Some(track_kind(track.kind)),
                layers: layer_stats(&track.layers, now),
                keyframe_requests: track.layers.keyframe_requests,
            })
        })
        .collect();
    MediaStats {
        estimate_bps: peer.bandwidth.estimate,
        allocated_bps: peer.bandwidth.allocated,
        receiving,
        publishing,
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

/// The `activeSpeaker` message for `speaker`.
pub fn speaker_message(speaker: Option<TrackKey>) -> ServerMessage {
    ServerMessage::ActiveSpeaker {
        peer_id: speaker.map(|k| k.peer),
        track_id: speaker.map(|k| k.id()),
    }
}
