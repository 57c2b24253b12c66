//! Bandwidth allocation for one subscriber: which layer of each video track it receives, given
//! the size of each tile, the layers the publishers send and what the subscriber's link takes.
//!
//! The policy (`docs/simulcast.md` explains it at length):
//! - The tile decides the highest layer wanted: the smallest layer that covers the tile; a hidden
//!   tile wants none; a client that reports no tile wants the highest.
//! - Every visible tile gets its lowest sendable layer, whatever the estimate: video degrades to
//!   the small layer, it never goes black for bandwidth (audio is never paced behind video, so
//!   it does not starve either).
//! - The rest of the budget upgrades tiles one layer at a time, largest tile first, round-robin.
//!   Keeping the layer a leg already has costs its rate; moving above it costs its rate plus
//!   [`UPGRADE_HEADROOM_PERCENT`], so an estimate hovering at a layer's rate does not flap.
//! - Below the floors: when even the lowest layers do not fit, the legs of scalable (SVC) streams
//!   drop to their base temporal layer (a lower frame rate), see [`temporal_cap`].

use super::layers::MAX_LAYERS;

/// An upgrade must fit with this much to spare (percent of the new layer's rate).
pub const UPGRADE_HEADROOM_PERCENT: u64 = 25;

/// The picture size assumed for the top layer when no keyframe said it (a 720p camera).
const ASSUMED_TOP: (u32, u32) = (1280, 720);

/// Rates assumed for a layer that is sending but not measured yet (just started), bits per second,
/// by position from the top layer down (browsers' defaults for 720p simulcast).
const ASSUMED_BPS_FROM_TOP: [u64; MAX_LAYERS] = [1_500_000, 500_000, 150_000, 100_000];

/// What one video leg wants and can get.
#[derive(Debug, Clone, Default)]
pub struct LegDemand {
    /// The highest layer the tile wants (`None`: hidden, no video).
    pub wanted: Option<u8>,
    /// Per layer, lowest first: its rate in bits per second when it can be forwarded now
    /// (`None`: the publisher is not sending it).
    pub rates: heapless::Vec<Option<u64>, MAX_LAYERS>,
    /// The layer forwarded now, if any.
    pub current: Option<u8>,
    /// Larger first when the budget is short (the tile's area).
    pub priority: u64,
}

/// The layer of a track with `count` layers that covers a tile of `tile` pixels. `sizes` are the
/// layers' picture sizes where known (from keyframes), lowest first. `None` tile (never reported)
/// wants the top layer; a zero-sized tile wants nothing.
pub fn layer_for_tile(tile: Option<(u32, u32)>, sizes: &[Option<(u16, u16)>]) -> Option<u8> {
    let count = sizes.len();
    let top = count.checked_sub(1)? as u8;
    let Some((tw, th)) = tile else {
        return Some(top);
    };
    if tw == 0 || th == 0 {
        return None;
    }
    // Layers whose size is unknown are taken as halvings of the top (scaleResolutionDownBy 4/2/1),
    // the top's size being known from any layer that told it.
    let known_top = sizes.iter().enumerate().find_map(|(i, s)| {
        s.map(|(w, h)| {
            let scale = 1u32 << (count - 1 - i).min(8);
            (u32::from(w) * scale, u32::from(h) * scale)
        })
    });
    let (top_w, top_h) = known_top.unwrap_or(ASSUMED_TOP);
    for (i, size) in sizes.iter().enumerate() {
        let (w, h) = size.map_or_else(
            || {
                let scale = 1u32 << (count - 1 - i).min(8);
                (top_w / scale, top_h / scale)
            },
            |(w, h)| (u32::from(w), u32::from(h)),
        );
        // Covers the tile within 10 %: a 320-pixel layer serves a 340-pixel tile.
        if w * 10 >= tw * 9 && h * 10 >= th * 9 {
            return Some(i as u8);
        }
    }
    Some(top)
}

/// The rate assumed for layer `index` of `count` when it is not measured yet.
pub fn assumed_bps(index: u8, count: usize) -> u64 {
    let from_top = count
        .saturating_sub(1 + usize::from(index))
        .min(MAX_LAYERS - 1);
    ASSUMED_BPS_FROM_TOP[from_top]
}

/// Lifting a temporal cap needs the floors to fit with this much to spare (percent). Less than
/// an upgrade's headroom: the estimator probes up to what the allocation would take with the
/// upgrade headroom, so a cap lifted only at that point would be reached by chance.
const TEMPORAL_HEADROOM_PERCENT: u64 = 10;

/// The highest temporal layer the legs of scalable streams forward (`None`: all), given the
/// allocation's `spent` rate within `budget` and whether they are `capped` now. The allocation
/// gives every visible tile at least its lowest layer, so spending more than the budget means
/// even those floors do not fit: then only the base temporal layer goes (a lower frame rate
/// rather than a frozen picture). The cap is lifted once the floors fit with
/// `TEMPORAL_HEADROOM_PERCENT` to spare, so an estimate hovering at the floors does not flap.
pub fn temporal_cap(budget: Option<u64>, spent: u64, capped: bool) -> Option<u8> {
    let budget = budget?;
    let needed = if capped {
        spent * (100 + TEMPORAL_HEADROOM_PERCENT) / 100
    } else {
        spent
    };
    (needed > budget).then_some(0)
}

/// Chooses each leg's layer within `budget` bits per second (`None`: no estimate, every leg gets
/// what its tile wants). Writes one entry per leg into `out` and returns the rate chosen in total.
pub fn allocate(budget: Option<u64>, legs: &[LegDemand], out: &mut Vec<Option<u8>>) -> u64 {
    out.clear();
    out.resize(legs.len(), None);
    let mut order: Vec<usize> = (0..legs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(legs[i].priority));
    let mut spent = 0u64;
    // Floors: the lowest sendable layer of every visible tile (even above what a small tile wants
    // when its own layer is not sent).
    for &i in &order {
        let leg = &legs[i];
        if leg.wanted.is_none() {
            continue;
        }
        let floor = leg
            .rates
            .iter()
            .enumerate()
            .find(|(_, r)| r.is_some())
            .map(|(l, _)| l as u8);
        if let Some(l) = floor {
            out[i] = Some(l);
            spent += rate(leg, l);
        }
    }
    // Upgrades, one layer per leg per round.
    loop {
        let mut upgraded = false;
        for &i in &order {
            let leg = &legs[i];
            let (Some(wanted), Some(have)) = (leg.wanted, out[i]) else {
                continue;
            };
            let Some(next) = (have + 1..=wanted).find(|&l| sendable(leg, l)) else {
                continue;
            };
            let extra = rate(leg, next).saturating_sub(rate(leg, have));
            let margin = if leg.current.is_some_and(|c| c >= next) {
                0
            } else {
                rate(leg, next) * UPGRADE_HEADROOM_PERCENT / 100
            };
            if budget.is_some_and(|b| spent + extra + margin > b) {
                continue;
            }
            spent += extra;
            out[i] = Some(next);
            upgraded = true;
        }
        if !upgraded {
            return spent;
        }
    }
}

fn sendable(leg: &LegDemand, layer: u8) -> bool {
    leg.rates
        .get(usize::from(layer))
        .is_some_and(|r| r.is_some())
}

fn rate(leg: &LegDemand, layer: u8) -> u64 {
    leg.rates
        .get(usize::from(layer))
        .copied()
        .flatten()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporal_layers_are_cut_only_below_the_floors_with_hysteresis() {
        assert_eq!(temporal_cap(None, 5_000_000, false), None, "no estimate");
        assert_eq!(temporal_cap(Some(1_000_000), 900_000, false), None);
        assert_eq!(temporal_cap(Some(1_000_000), 1_100_000, false), Some(0));
        // Back within the budget, but not by the headroom yet: stays capped.
        assert_eq!(temporal_cap(Some(1_000_000), 950_000, true), Some(0));
        assert_eq!(temporal_cap(Some(1_000_000), 900_000, true), None);
    }

    const RATES: [u64; 3] = [150_000, 500_000, 1_500_000];

    fn leg(wanted: Option<u8>, current: Option<u8>, priority: u64) -> LegDemand {
        LegDemand {
            wanted,
            rates: RATES.iter().map(|r| Some(*r)).collect(),
            current,
            priority,
        }
    }

    fn run(budget: Option<u64>, legs: &[LegDemand]) -> Vec<Option<u8>> {
        let mut out = Vec::new();
        allocate(budget, legs, &mut out);
        out
    }

    #[test]
    fn tile_size_picks_the_covering_layer() {
        let sizes = [Some((320, 180)), Some((640, 360)), Some((1280, 720))];
        let cases = [
            (Some((0, 0)), None),
            (Some((160, 90)), Some(0)),
            (Some((240, 135)), Some(0)),
            (Some((340, 190)), Some(0)),
            (Some((400, 225)), Some(1)),
            (Some((640, 360)), Some(1)),
            (Some((900, 500)), Some(2)),
            (Some((1920, 1080)), Some(2)),
            (None, Some(2)),
        ];
        for (tile, want) in cases {
            assert_eq!(layer_for_tile(tile, &sizes), want, "{tile:?}");
        }
        // Sizes unknown: halvings of an assumed 1280x720, or of what one layer told.
        assert_eq!(
            layer_for_tile(Some((240, 135)), &[None, None, None]),
            Some(0)
        );
        assert_eq!(
            layer_for_tile(Some((600, 340)), &[None, None, None]),
            Some(1)
        );
        assert_eq!(
            layer_for_tile(Some((600, 340)), &[None, None, Some((640, 360))]),
            Some(2)
        );
        assert_eq!(
            layer_for_tile(Some((300, 170)), &[None, None, Some((640, 360))]),
            Some(1)
        );
        assert_eq!(layer_for_tile(Some((100, 100)), &[]), None);
        assert_eq!(layer_for_tile(Some((1280, 720)), &[None]), Some(0));
    }

    #[test]
    fn estimates_from_starved_to_plenty() {
        let legs = [leg(Some(2), None, 10)];
        let cases = [
            (0, Some(0)),
            (100_000, Some(0)),
            (700_000, Some(1)),
            (1_800_000, Some(1)),
            (1_900_000, Some(2)),
        ];
        for (budget, want) in cases {
            assert_eq!(run(Some(budget), &legs), vec![want], "{budget}");
        }
        assert_eq!(run(None, &legs), vec![Some(2)]);
    }

    #[test]
    fn keeping_a_layer_needs_no_headroom_but_upgrading_does() {
        // 1.6 Mbit/s: not enough to move up to the top (1.5 M + 25 %), enough to stay on it.
        assert_eq!(
            run(Some(1_600_000), &[leg(Some(2), Some(1), 1)]),
            vec![Some(1)]
        );
        assert_eq!(
            run(Some(1_600_000), &[leg(Some(2), Some(2), 1)]),
            vec![Some(2)]
        );
        // And under the top's own rate it goes down.
        assert_eq!(
            run(Some(1_400_000), &[leg(Some(2), Some(2), 1)]),
            vec![Some(1)]
        );
    }

    #[test]
    fn hidden_tiles_get_nothing_and_big_tiles_go_first() {
        let legs = [
            leg(Some(2), None, 100),
            leg(None, Some(2), 1000),
            leg(Some(2), None, 900),
        ];
        // Floors 300 k; then the big tile's upgrade to 1 fits, the small one's does not.
        assert_eq!(run(Some(1_000_000), &legs), vec![Some(0), None, Some(1)]);
        assert_eq!(run(None, &legs), vec![Some(2), None, Some(2)]);
    }

    #[test]
    fn layers_not_sent_are_skipped() {
        let mut l = leg(Some(2), Some(2), 1);
        l.rates[2] = None;
        assert_eq!(run(None, &[l.clone()]), vec![Some(1)]);
        l.rates[0] = None;
        l.rates[1] = None;
        assert_eq!(run(None, &[l.clone()]), vec![None]);
        // A tile wanting the low layer while only the middle one is sent gets the middle one.
        let mut low = leg(Some(0), None, 1);
        low.rates[0] = None;
        assert_eq!(run(Some(10), &[low]), vec![Some(1)]);
    }
}
