//! A recorded track's place on the room's clock: RTP timestamps mapped to time since the
//! recording started.
//!
//! Each SSRC is anchored at the arrival of its first frame: RTP time then advances the track's
//! clock, so jitter does not move frames and a mute (RTP time keeps running at the sender) leaves
//! a gap of the right length. A new SSRC (the publisher restarted its encoder, or the top layer
//! moved to another stream) has another timestamp base and is anchored anew at its arrival, and
//! so is a timestamp jump that puts a frame far from when it arrived. Audio and video of one
//! participant are aligned by their arrival times.

use std::time::Duration;

/// A frame's time differing from its arrival by more than this re-anchors the track: its
/// sender's timestamps jumped.
const MAX_DRIFT: Duration = Duration::from_secs(2);

/// Timestamps further than this from the anchor move the anchor (keeps the 32-bit difference
/// far from wrapping on long recordings).
const REANCHOR_TICKS: i64 = 1 << 30;

/// Maps one track's RTP timestamps onto the room's clock.
#[derive(Debug, Clone)]
pub struct TrackClock {
    clock_rate: u32,
    anchor: Option<Anchor>,
    /// The last time handed out: frames of a track never go back in time.
    last: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    ssrc: u32,
    timestamp: u32,
    time: Duration,
}

impl TrackClock {
    /// A clock for a track whose RTP clock runs at `clock_rate` Hz.
    pub fn new(clock_rate: u32) -> Self {
        TrackClock {
            clock_rate: clock_rate.max(1),
            anchor: None,
            last: Duration::ZERO,
        }
    }

    /// The room time of a frame of `ssrc` with RTP `timestamp` whose first packet arrived at
    /// `arrival` (room time).
    pub fn time(&mut self, ssrc: u32, timestamp: u32, arrival: Duration) -> Duration {
        let anchor = match self.anchor {
            Some(a) if a.ssrc == ssrc => a,
            _ => self.anchor_at(ssrc, timestamp, arrival),
        };
        let ticks = i64::from(timestamp.wrapping_sub(anchor.timestamp) as i32);
        let mut time = offset(anchor.time, ticks, self.clock_rate);
        if time.abs_diff(arrival) > MAX_DRIFT {
            self.anchor_at(ssrc, timestamp, arrival);
            time = arrival;
        } else if ticks.abs() > REANCHOR_TICKS {
            self.anchor = Some(Anchor {
                ssrc,
                timestamp,
                time,
            });
        }
        self.last = time.max(self.last);
        self.last
    }

    fn anchor_at(&mut self, ssrc: u32, timestamp: u32, arrival: Duration) -> Anchor {
        // A new source continues where the last one was, not before it.
        let anchor = Anchor {
            ssrc,
            timestamp,
            time: arrival.max(self.last),
        };
        self.anchor = Some(anchor);
        anchor
    }
}

/// `base` moved by `ticks` of a `rate` Hz clock (never below zero).
fn offset(base: Duration, ticks: i64, rate: u32) -> Duration {
    let nanos = ticks.unsigned_abs() as u128 * 1_000_000_000 / u128::from(rate);
    let delta = Duration::from_nanos(nanos.min(u64::MAX as u128) as u64);
    if ticks >= 0 {
        base + delta
    } else {
        base.saturating_sub(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn rtp_time_advances_the_clock_whatever_the_jitter() {
        let mut clock = TrackClock::new(90_000);
        assert_eq!(clock.time(1, 1_000, 500 * MS), 500 * MS);
        // 3000 ticks at 90 kHz is 33.3 ms, however late the frame arrived.
        let t = clock.time(1, 4_000, 580 * MS);
        assert_eq!(t.as_micros(), 533_333);
    }

    #[test]
    fn a_mute_gap_keeps_its_length() {
        let mut clock = TrackClock::new(48_000);
        clock.time(7, 0, 100 * MS);
        // 1.5 s muted: the sender's RTP clock ran on.
        assert_eq!(clock.time(7, 72_000, 1_610 * MS), 1_600 * MS);
    }

    #[test]
    fn a_new_ssrc_is_anchored_at_its_arrival_and_never_goes_back() {
        let mut clock = TrackClock::new(90_000);
        clock.time(1, 0, Duration::ZERO);
        assert_eq!(clock.time(1, 90_000, 1_000 * MS), 1_000 * MS);
        // Another layer's stream: another timestamp base, continuing on the same timeline.
        assert_eq!(clock.time(2, 123_456_789, 1_040 * MS), 1_040 * MS);
        assert_eq!(clock.time(2, 123_456_789 + 9_000, 1_200 * MS), 1_140 * MS);
        // Arriving before the last frame handed out: clamped.
        assert_eq!(clock.time(3, 5, 1_100 * MS), 1_140 * MS);
    }

    #[test]
    fn a_timestamp_jump_re_anchors() {
        let mut clock = TrackClock::new(90_000);
        clock.time(1, 0, Duration::ZERO);
        let t = clock.time(1, 0x4000_0000, 40 * MS);
        assert_eq!(t, 40 * MS, "a jump of hours is taken as arrival");
        assert_eq!(clock.time(1, 0x4000_0000 + 90_000, 1_040 * MS), 1_040 * MS);
    }

    #[test]
    fn timestamps_wrap() {
        let mut clock = TrackClock::new(90_000);
        clock.time(1, u32::MAX - 899, 10 * MS);
        assert_eq!(clock.time(1, 8_100, 110 * MS), 110 * MS);
    }
}
