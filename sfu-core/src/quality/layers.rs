//! The layers of one published video track as the SFU receives them: which simulcast encodings
//! exist (by RID, lowest first), how fast each arrives, what size its keyframes say it is, and
//! when a keyframe was last asked of it. A track without simulcast has one layer, unless its
//! one stream is scalable (SVC): then its layers are the stream's spatial layers, nested (a
//! receiver of layer `n` takes every layer up to `n`), found from the stream's own descriptors.
//!
//! "Lowest first" is the offer's `a=simulcast` order until the keyframes tell the picture sizes:
//! then the layers are put in order of size, whatever order the publisher listed them in (older
//! Firefox and some other stacks list the largest first). Layer hints still go out in the offer's
//! order, which is the order of the publisher's encodings.

use std::time::{Duration, Instant};

use str0m::media::Rid;

use super::rate::{RateMeter, RATE_WINDOW};
use crate::codec::Keyframe;

/// Most simulcast layers of one track (browsers send at most three; RFC 8853 allows more, the
/// rest are ignored).
pub const MAX_LAYERS: usize = 4;

/// A layer that sent nothing for this long counts as stopped: viewers on it fall back to another
/// layer. Long enough to ride out a jitter burst at 15 fps, short enough that a viewer whose layer
/// the publisher stopped freezes for well under a second before the fallback keyframe.
pub const LAYER_TIMEOUT: Duration = Duration::from_millis(600);

/// One encoding of a published track.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    /// Its RTP stream id, for simulcast.
    pub rid: Option<Rid>,
    /// Bytes received, for the allocation and the stats.
    pub rate: RateMeter,
    /// When its last packet arrived.
    pub last_packet: Option<Instant>,
    /// When it started sending (again) after being stopped.
    active_since: Option<Instant>,
    /// Picture size from its last keyframe, when the codec carries it.
    pub size: Option<(u16, u16)>,
    /// When a keyframe was last asked of it.
    pub last_keyframe_request: Option<Instant>,
    /// A keyframe was wanted before the layer's first packet (no stream to ask yet, or a
    /// publisher still connecting): it is asked for when that packet arrives.
    keyframe_deferred: bool,
    /// When a subscriber last wanted it (for the publisher's layer hint).
    last_wanted: Option<Instant>,
    /// Its place in the publisher's `a=simulcast` line: the index of its encoding, which layer
    /// hints use.
    position: u8,
}

/// The layers of one published track, lowest first.
#[derive(Debug, Clone)]
pub struct TrackLayers {
    layers: heapless::Vec<Layer, MAX_LAYERS>,
    /// Keyframe requests sent to the publisher for this track, over all layers.
    pub keyframe_requests: u64,
    /// The active-layer mask last hinted to the publisher (bit i: layer i).
    hinted: Option<u8>,
    /// When hints were first computed: every layer counts as wanted for a hold from then, so a
    /// new publication is not paused before its first viewers ask.
    hints_since: Option<Instant>,
    /// The layers are the nested spatial layers of one scalable stream (SVC).
    nested: bool,
}

impl TrackLayers {
    /// A track without simulcast: one layer.
    pub fn single() -> Self {
        let mut layers = heapless::Vec::new();
        // Capacity is MAX_LAYERS >= 1.
        let _ = layers.push(Layer::default());
        TrackLayers {
            layers,
            keyframe_requests: 0,
            hinted: None,
            hints_since: None,
            nested: false,
        }
    }

    /// A simulcast track whose encodings are `rids`, lowest first (the order of the publisher's
    /// `a=simulcast` line, which is the order of a browser's `sendEncodings`). More than
    /// [`MAX_LAYERS`] are cut; none makes a single-layer track.
    pub fn simulcast(rids: &[Rid]) -> Self {
        if rids.is_empty() {
            return Self::single();
        }
        let mut layers = heapless::Vec::new();
        for (position, rid) in rids.iter().take(MAX_LAYERS).enumerate() {
            let _ = layers.push(Layer {
                rid: Some(*rid),
                position: position as u8,
                ..Layer::default()
            });
        }
        TrackLayers {
            layers,
            keyframe_requests: 0,
            hinted: None,
            hints_since: None,
            nested: false,
        }
    }

    /// Number of layers (at least one).
    pub fn count(&self) -> usize {
        self.layers.len()
    }

    /// Whether there is more than one layer, each its own stream.
    pub fn is_simulcast(&self) -> bool {
        self.layers.len() > 1 && !self.nested
    }

    /// Whether the layers are the nested spatial layers of one scalable stream.
    pub fn is_nested(&self) -> bool {
        self.nested
    }

    /// The track's one stream turns out scalable with `count` spatial layers (its keyframe
    /// said): its layers become those, their sizes `sizes` where known. Nothing changes when
    /// they already are (rates and requests go on); a simulcast track stays as it is.
    pub fn set_nested(&mut self, count: u8, sizes: Option<&[(u16, u16)]>) {
        if self.is_simulcast() {
            return;
        }
        let count = usize::from(count).clamp(1, MAX_LAYERS);
        if self.layers.len() != count {
            self.layers.clear();
            for _ in 0..count {
                let _ = self.layers.push(Layer::default());
            }
            self.nested = count > 1;
        }
        for (layer, size) in self.layers.iter_mut().zip(sizes.unwrap_or_default()) {
            layer.size = Some(*size);
        }
    }

    /// What forwarding layer `index` costs, bits per second: its own rate, plus the layers
    /// below it when they are nested.
    pub fn forwarded_bps(&self, index: u8, rate_of: impl Fn(u8) -> u64) -> u64 {
        if self.nested {
            (0..=index).map(rate_of).sum()
        } else {
            rate_of(index)
        }
    }

    /// The index of the layer a packet with `rid` belongs to. A single-layer track takes any
    /// packet; a simulcast one only those of its RIDs.
    pub fn index_of(&self, rid: Option<Rid>) -> Option<u8> {
        if !self.is_simulcast() {
            return Some(0);
        }
        let rid = rid?;
        self.layers
            .iter()
            .position(|l| l.rid == Some(rid))
            .map(|i| i as u8)
    }

    /// The layer at `index`.
    pub fn get(&self, index: u8) -> Option<&Layer> {
        self.layers.get(usize::from(index))
    }

    /// All layers, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = &Layer> {
        self.layers.iter()
    }

    /// Counts one packet of `bytes` on layer `index` arriving at `now`, and the keyframe it
    /// starts.
    pub fn on_packet(&mut self, index: u8, now: Instant, bytes: usize, keyframe: Option<Keyframe>) {
        let Some(layer) = self.layers.get_mut(usize::from(index)) else {
            return;
        };
        let resumed = layer
            .last_packet
            .is_none_or(|t| now.saturating_duration_since(t) >= LAYER_TIMEOUT);
        if resumed {
            layer.active_since = Some(now);
        }
        layer.rate.add(now, bytes);
        layer.last_packet = Some(now);
        if let Some(Keyframe {
            width: Some(w),
            height: Some(h),
        }) = keyframe
        {
            layer.size = Some((w, h));
        }
    }

    /// Puts the layers in order of picture size, smallest first, once the keyframes of every layer
    /// told their size (ties keep the offer's order). True when the order changed: layer indices
    /// then name other encodings, and whoever holds one must choose again.
    pub fn order_by_size(&mut self) -> bool {
        // A scalable stream's nested layers are in order by construction.
        if !self.is_simulcast() {
            return false;
        }
        let mut keys = heapless::Vec::<(u32, u8, usize), MAX_LAYERS>::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let Some((w, h)) = layer.size else {
                return false;
            };
            let _ = keys.push((u32::from(w) * u32::from(h), layer.position, i));
        }
        if keys.windows(2).all(|pair| pair[0] <= pair[1]) {
            return false;
        }
        keys.sort_unstable();
        // The hint last sent keeps its meaning: its bits move with their layers.
        self.hinted = self.hinted.map(|mask| {
            keys.iter()
                .enumerate()
                .filter(|(_, &(_, _, old))| mask & (1 << old) != 0)
                .fold(0, |moved, (new, _)| moved | (1 << new))
        });
        self.layers = keys
            .iter()
            .map(|&(_, _, old)| self.layers[old].clone())
            .collect();
        true
    }

    /// Whether layer `index` is arriving at `now`.
    pub fn is_active(&self, index: u8, now: Instant) -> bool {
        self.get(index)
            .and_then(|l| l.last_packet)
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_TIMEOUT)
    }

    /// Whether layer `index` has been sending for longer than the rate window, so its measured
    /// rate is its real one.
    pub fn is_settled(&self, index: u8, now: Instant) -> bool {
        self.is_active(index, now)
            && self
                .get(index)
                .and_then(|l| l.active_since)
                .is_some_and(|t| now.saturating_duration_since(t) > RATE_WINDOW)
    }

    /// Layer `index`'s rate over the last second, bits per second.
    pub fn bps(&self, index: u8, now: Instant) -> u64 {
        self.get(index).map_or(0, |l| l.rate.bps(now))
    }

    /// Records a keyframe request for layer `index` at `now` unless one was made less than
    /// `interval` ago; true when the caller should send it. However many viewers ask, the
    /// publisher sees at most one request per layer per interval.
    pub fn claim_keyframe_request(&mut self, index: u8, now: Instant, interval: Duration) -> bool {
        let Some(layer) = self.layers.get_mut(usize::from(index)) else {
            return false;
        };
        if layer
            .last_keyframe_request
            .is_some_and(|t| now < t + interval)
        {
            return false;
        }
        layer.last_keyframe_request = Some(now);
        self.keyframe_requests += 1;
        true
    }

    /// Notes that a keyframe of layer `index` was wanted while the publisher had no stream of it
    /// yet (or was still connecting), so that [`TrackLayers::take_deferred_keyframe`] asks on
    /// its first packet.
    pub fn defer_keyframe_request(&mut self, index: u8) {
        if let Some(layer) = self.layers.get_mut(usize::from(index)) {
            layer.keyframe_deferred = true;
        }
    }

    /// Whether a keyframe of layer `index` was deferred (see
    /// [`TrackLayers::defer_keyframe_request`]); the note is cleared.
    pub fn take_deferred_keyframe(&mut self, index: u8) -> bool {
        self.layers
            .get_mut(usize::from(index))
            .is_some_and(|l| std::mem::take(&mut l.keyframe_deferred))
    }
}

impl TrackLayers {
    /// Records which layers subscribers want now (`wanted`: bit i for layer i) and returns the
    /// per-layer active list to send the publisher when it changed. A layer stays active until it
    /// has been unwanted for `hold`, so a viewer resizing its tile back and forth does not make
    /// the publisher's encoder stop and restart.
    pub fn hint(&mut self, wanted: u8, now: Instant, hold: Duration) -> Option<Vec<bool>> {
        let since = *self.hints_since.get_or_insert(now);
        let mut active = 0u8;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            if wanted & (1 << i) != 0 {
                layer.last_wanted = Some(now);
            }
            let last = layer.last_wanted.unwrap_or(since).max(since);
            if now < last + hold {
                active |= 1 << i;
            }
        }
        if self.hinted == Some(active) {
            return None;
        }
        let all = (1u8 << self.layers.len()) - 1;
        let first = self.hinted.is_none();
        self.hinted = Some(active);
        // A publisher sends every layer until told otherwise.
        if first && active == all {
            return None;
        }
        // In the offer's order: the publisher's encodings are in that order.
        let mut by_position = vec![false; self.layers.len()];
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(slot) = by_position.get_mut(usize::from(layer.position)) {
                *slot = active & (1 << i) != 0;
            }
        }
        Some(by_position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rids() -> Vec<Rid> {
        ["q", "h", "f"].into_iter().map(Rid::from).collect()
    }

    #[test]
    fn packets_map_to_layers_by_rid_in_offer_order() {
        let layers = TrackLayers::simulcast(&rids());
        assert_eq!(layers.index_of(Some(Rid::from("q"))), Some(0));
        assert_eq!(layers.index_of(Some(Rid::from("f"))), Some(2));
        assert_eq!(layers.index_of(Some(Rid::from("x"))), None);
        assert_eq!(layers.index_of(None), None);
        assert_eq!(TrackLayers::single().index_of(None), Some(0));
    }

    #[test]
    fn keyframe_requests_are_limited_per_layer() {
        let t0 = Instant::now();
        let interval = Duration::from_millis(300);
        let mut layers = TrackLayers::simulcast(&rids());
        assert!(layers.claim_keyframe_request(2, t0, interval));
        // Many viewers asking within the interval: one request.
        for ms in [1, 50, 150, 299] {
            assert!(!layers.claim_keyframe_request(2, t0 + Duration::from_millis(ms), interval));
        }
        // Another layer has its own budget.
        assert!(layers.claim_keyframe_request(0, t0 + Duration::from_millis(10), interval));
        assert!(layers.claim_keyframe_request(2, t0 + interval, interval));
        assert_eq!(layers.keyframe_requests, 3);
    }

    #[test]
    fn a_deferred_keyframe_request_is_taken_once() {
        let mut layers = TrackLayers::simulcast(&rids());
        assert!(!layers.take_deferred_keyframe(1));
        layers.defer_keyframe_request(1);
        assert!(!layers.take_deferred_keyframe(0), "another layer's note");
        assert!(layers.take_deferred_keyframe(1));
        assert!(!layers.take_deferred_keyframe(1), "asked once");
        layers.defer_keyframe_request(7);
        assert!(!layers.take_deferred_keyframe(7), "no such layer");
    }

    #[test]
    fn hints_pause_unwanted_layers_after_the_hold_and_resume_at_once() {
        let t0 = Instant::now();
        let hold = Duration::from_secs(2);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut layers = TrackLayers::simulcast(&rids());
        // Nothing to say while everything counts as wanted.
        assert_eq!(layers.hint(0b001, at(0), hold), None);
        assert_eq!(layers.hint(0b001, at(1000), hold), None);
        // Only the low layer wanted for the whole hold: the others pause.
        assert_eq!(
            layers.hint(0b001, at(2000), hold),
            Some(vec![true, false, false])
        );
        assert_eq!(layers.hint(0b001, at(2250), hold), None);
        // A viewer wants the top: resumed at the next hint.
        assert_eq!(
            layers.hint(0b111, at(2500), hold),
            Some(vec![true, true, true])
        );
        // Gone again: kept for the hold, then paused.
        assert_eq!(layers.hint(0b001, at(4000), hold), None);
        assert_eq!(
            layers.hint(0, at(4500), hold),
            Some(vec![true, false, false])
        );
        // Nobody left: everything pauses.
        assert_eq!(
            layers.hint(0, at(6000), hold),
            Some(vec![false, false, false])
        );
    }

    fn keyframe(width: u16, height: u16) -> Option<Keyframe> {
        Some(Keyframe {
            width: Some(width),
            height: Some(height),
        })
    }

    #[test]
    fn layers_listed_largest_first_are_put_in_order_of_size() {
        let t0 = Instant::now();
        let hold = Duration::from_secs(2);
        let rid = |r: &str| Some(Rid::from(r));
        // The offer lists f, h, q: at first the order is the offer's.
        let mut layers = TrackLayers::simulcast(
            &["f", "h", "q"]
                .into_iter()
                .map(Rid::from)
                .collect::<Vec<_>>(),
        );
        assert_eq!(layers.index_of(rid("f")), Some(0));
        assert_eq!(layers.hint(0b001, t0, hold), None);
        layers.on_packet(0, t0, 1000, keyframe(1280, 720));
        layers.on_packet(1, t0, 1000, keyframe(640, 360));
        // Not before every layer's size is known.
        assert!(!layers.order_by_size());
        layers.on_packet(2, t0, 1000, keyframe(320, 180));
        assert!(layers.order_by_size());
        assert_eq!(layers.index_of(rid("q")), Some(0));
        assert_eq!(layers.index_of(rid("h")), Some(1));
        assert_eq!(layers.index_of(rid("f")), Some(2));
        assert_eq!(layers.get(2).and_then(|l| l.size), Some((1280, 720)));
        // Once in order, it stays.
        assert!(!layers.order_by_size());
        // Hints name the encodings in the offer's order: only q (the last one) wanted.
        assert_eq!(
            layers.hint(0b001, t0 + hold, hold),
            Some(vec![false, false, true])
        );
    }

    #[test]
    fn layers_in_order_or_of_equal_size_keep_the_offer_order() {
        let t0 = Instant::now();
        let mut layers = TrackLayers::simulcast(&rids());
        for (i, (w, h)) in [(320, 180), (640, 360), (1280, 720)]
            .into_iter()
            .enumerate()
        {
            layers.on_packet(i as u8, t0, 1000, keyframe(w, h));
        }
        assert!(!layers.order_by_size());
        // A small camera: the two upper layers come out the same size.
        let mut layers = TrackLayers::simulcast(&rids());
        for (i, (w, h)) in [(160, 120), (320, 240), (320, 240)].into_iter().enumerate() {
            layers.on_packet(i as u8, t0, 1000, keyframe(w, h));
        }
        assert!(!layers.order_by_size());
        assert_eq!(layers.index_of(Some(Rid::from("f"))), Some(2));
    }

    #[test]
    fn a_scalable_stream_becomes_nested_layers_with_cumulative_cost() {
        let mut layers = TrackLayers::single();
        layers.set_nested(3, Some(&[(320, 180), (640, 360), (1280, 720)]));
        assert!(layers.is_nested() && !layers.is_simulcast());
        assert_eq!(layers.count(), 3);
        assert_eq!(layers.get(2).unwrap().size, Some((1280, 720)));
        assert_eq!(layers.forwarded_bps(2, |l| 100 << l), 700);
        // The next keyframe's structure changes nothing but sizes.
        let t0 = Instant::now();
        layers.on_packet(1, t0, 1000, None);
        layers.set_nested(3, None);
        assert!(layers.is_active(1, t0));
        // A simulcast track is never made nested.
        let mut simulcast = TrackLayers::simulcast(&rids());
        simulcast.set_nested(2, None);
        assert!(simulcast.is_simulcast() && simulcast.count() == 3);
    }

    #[test]
    fn a_layer_is_active_while_packets_arrive() {
        let t0 = Instant::now();
        let mut layers = TrackLayers::simulcast(&rids());
        assert!(!layers.is_active(1, t0));
        layers.on_packet(1, t0, 1000, None);
        assert!(layers.is_active(1, t0 + Duration::from_millis(500)));
        assert!(!layers.is_active(1, t0 + LAYER_TIMEOUT));
        // Settled once it has sent for a whole rate window; a restart starts over.
        for ms in (0..=1500).step_by(100) {
            layers.on_packet(2, t0 + Duration::from_millis(ms), 1000, None);
        }
        assert!(!layers.is_settled(2, t0 + Duration::from_millis(900)));
        assert!(layers.is_settled(2, t0 + Duration::from_millis(1500)));
        let later = t0 + Duration::from_secs(5);
        layers.on_packet(2, later, 1000, None);
        assert!(!layers.is_settled(2, later + Duration::from_millis(100)));
    }
}
