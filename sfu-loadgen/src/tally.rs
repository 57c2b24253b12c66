//! What one receiver counted: measured packets, one-way latency, the tracks it got, and (on the
//! lean receive path) what its socket brought besides.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::continuity::StreamContinuity;
use crate::lean_rx::LeanCounts;
use crate::transport::Arrival;

/// Run-wide receive counters every receiver adds to (the progress line, the window's out-pps and
/// the settle check read them).
#[derive(Debug, Default)]
pub struct RxCounters {
    /// Generator packets received.
    pub packets: AtomicU64,
    /// Their payload bytes.
    pub bytes: AtomicU64,
    /// Stable receivers that got at least one packet of every track they should.
    pub ready: AtomicU32,
}

/// A latency histogram: 1 µs to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // The bounds are valid constants, so this cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// One receiver's counts.
#[derive(Debug)]
pub struct Tally {
    epoch: Instant,
    joined_at: Instant,
    stable: bool,
    counters: Arc<RxCounters>,
    /// Global track numbers it should receive.
    expected: Vec<u32>,
    /// Per expected track: whether a packet of it arrived.
    seen: Vec<bool>,
    unseen: usize,
    /// Per expected track: its continuity from this receiver's first packet of it on.
    pub streams: Vec<StreamContinuity>,
    /// Seconds from the start of the join to the first generator packet.
    pub first_media_s: Option<f64>,
    /// Measured packets received (once each: the lean path drops duplicates before counting).
    pub measured: u64,
    /// One-way latency of measured audio packets, µs.
    pub latency_audio: Histogram<u64>,
    /// One-way latency of measured video packets, µs.
    pub latency_video: Histogram<u64>,
    /// What the lean receive path counted besides (all zero on the full path).
    pub lean: LeanCounts,
}

impl Tally {
    /// A receiver expecting `expected` (global track numbers), which started joining at
    /// `joined_at`; `epoch` is the run's time zero that payload stamps count from. Only `stable`
    /// receivers count towards [`RxCounters::ready`].
    pub fn new(
        epoch: Instant,
        joined_at: Instant,
        stable: bool,
        expected: Vec<u32>,
        counters: Arc<RxCounters>,
    ) -> Tally {
        Tally {
            epoch,
            joined_at,
            stable,
            counters,
            seen: vec![false; expected.len()],
            streams: vec![StreamContinuity::default(); expected.len()],
            unseen: expected.len(),
            expected,
            first_media_s: None,
            measured: 0,
            latency_audio: histogram(),
            latency_video: histogram(),
            lean: LeanCounts::default(),
        }
    }

    /// Counts one generator packet.
    pub fn record(&mut self, a: &Arrival) {
        self.counters.packets.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes
            .fetch_add(a.len as u64, Ordering::Relaxed);
        if self.first_media_s.is_none() {
            self.first_media_s = Some(a.at.saturating_duration_since(self.joined_at).as_secs_f64());
        }
        let Some(pos) = self.expected.iter().position(|t| *t == a.stamp.track) else {
            return;
        };
        self.streams[pos].record(a);
        if !self.seen[pos] {
            self.seen[pos] = true;
            self.unseen -= 1;
            if self.unseen == 0 && self.stable {
                self.counters.ready.fetch_add(1, Ordering::Relaxed);
            }
        }
        if a.stamp.measured() {
            self.measured += 1;
            let at_ns = a.at.saturating_duration_since(self.epoch).as_nanos() as u64;
            let us = at_ns.saturating_sub(a.stamp.sent_ns) / 1000;
            let h = if a.stamp.track.is_multiple_of(2) {
                &mut self.latency_audio
            } else {
                &mut self.latency_video
            };
            let _ = h.record(us.max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{Stamp, FLAG_MEASURED};
    use std::time::Duration;

    fn arrival(epoch: Instant, track: u32, measured: bool, sent_us: u64, at_us: u64) -> Arrival {
        Arrival {
            stamp: Stamp {
                track,
                seq: 0,
                sent_ns: sent_us * 1000,
                flags: if measured { FLAG_MEASURED } else { 0 },
            },
            len: 100,
            at: epoch + Duration::from_micros(at_us),
            marker: false,
        }
    }

    #[test]
    fn ready_once_every_track_arrived_and_only_measured_packets_count() {
        let epoch = Instant::now();
        let counters = Arc::new(RxCounters::default());
        let mut t = Tally::new(epoch, epoch, true, vec![2, 3], counters.clone());
        t.record(&arrival(epoch, 2, false, 0, 500));
        assert_eq!(counters.ready.load(Ordering::Relaxed), 0);
        t.record(&arrival(epoch, 3, true, 1000, 1250));
        t.record(&arrival(epoch, 3, true, 2000, 2300));
        assert_eq!(counters.ready.load(Ordering::Relaxed), 1);
        assert_eq!(t.measured, 2);
        assert_eq!(t.latency_video.len(), 2);
        assert_eq!(t.latency_video.max(), 300);
        assert!(t.latency_audio.is_empty());
        assert_eq!(counters.packets.load(Ordering::Relaxed), 3);
        assert!(t.first_media_s.is_some_and(|s| s > 0.0));
        // A track it does not expect counts as traffic, not as measured.
        t.record(&arrival(epoch, 9, true, 0, 10));
        assert_eq!(t.measured, 2);
    }
}
