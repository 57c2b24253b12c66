//! What a receiver saw of each stream's continuity, from its own first packet on: the measured
//! packets missing inside the span of sequence numbers it got (so a slow join is not counted as
//! loss), and for video the longest wait between two frames' last packets (a freeze).
//!
//! The run-wide loss figure ([`crate::report::Report::loss_pct`]) counts from the window's start
//! for stable receivers only; these figures are per stream and include churning receivers.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::transport::Arrival;

/// A wait between video frames longer than this is a freeze.
pub const FREEZE: Duration = Duration::from_secs(1);

/// One received stream (a track this receiver expects).
#[derive(Debug, Clone, Default)]
pub struct StreamContinuity {
    /// Lowest and highest per-track sequence number of the measured packets received.
    span: Option<(u64, u64)>,
    /// Measured packets received (each once).
    received: u64,
    /// When the last packet of the previous video frame arrived.
    last_frame_end: Option<Instant>,
    /// The longest wait between the last packets of two frames.
    longest_frame_gap: Duration,
}

impl StreamContinuity {
    /// Counts one packet of this stream.
    pub fn record(&mut self, a: &Arrival) {
        if a.stamp.measured() {
            self.received += 1;
            let seq = a.stamp.seq;
            self.span = Some(match self.span {
                None => (seq, seq),
                Some((lo, hi)) => (lo.min(seq), hi.max(seq)),
            });
        }
        if a.marker {
            if let Some(prev) = self.last_frame_end {
                self.longest_frame_gap = self
                    .longest_frame_gap
                    .max(a.at.saturating_duration_since(prev));
            }
            // A retransmitted frame end arriving late does not move the clock back.
            if self.last_frame_end.is_none_or(|prev| a.at > prev) {
                self.last_frame_end = Some(a.at);
            }
        }
    }

    /// Measured packets this stream should have brought between its first and last received.
    pub fn expected(&self) -> u64 {
        self.span.map_or(0, |(lo, hi)| hi - lo + 1)
    }

    /// Measured packets it brought.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The longest wait between two frames (zero before the second frame).
    pub fn longest_frame_gap(&self) -> Duration {
        self.longest_frame_gap
    }
}

/// The continuity of every stream of every receiver that joined, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContinuityReport {
    /// Audio: measured packets expected inside each stream's received span.
    pub audio_expected: u64,
    /// Audio: of those, missing after the receiver's session did what it could (audio is not
    /// retransmitted).
    pub audio_missing_pct: f64,
    /// Video: measured packets expected inside each stream's received span.
    pub video_expected: u64,
    /// Video: of those, missing after NACK and retransmission.
    pub video_missing_pct: f64,
    /// Video streams received (a receiver's stream of one publisher).
    pub video_streams: u64,
    /// Video streams with a wait over [`FREEZE`] between two frames, after their first frame.
    pub freezes_over_1s: u64,
    /// The longest wait between two frames of any video stream, ms.
    pub longest_frame_gap_ms: f64,
}

impl ContinuityReport {
    /// Adds one receiver's stream; `video` says which kind it is.
    pub fn add(&mut self, video: bool, s: &StreamContinuity) {
        let missing = s.expected().saturating_sub(s.received());
        let (expected, pct) = if video {
            (&mut self.video_expected, &mut self.video_missing_pct)
        } else {
            (&mut self.audio_expected, &mut self.audio_missing_pct)
        };
        // Kept as a running percentage so the report needs no second pass.
        let before = *pct * *expected as f64 / 100.0;
        *expected += s.expected();
        if *expected > 0 {
            *pct = (before + missing as f64) * 100.0 / *expected as f64;
        }
        if video && s.span.is_some() {
            self.video_streams += 1;
            if s.longest_frame_gap > FREEZE {
                self.freezes_over_1s += 1;
            }
            self.longest_frame_gap_ms = self
                .longest_frame_gap_ms
                .max(s.longest_frame_gap.as_secs_f64() * 1000.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{Stamp, FLAG_MEASURED};

    fn arrival(t0: Instant, seq: u64, at_ms: u64, marker: bool) -> Arrival {
        Arrival {
            stamp: Stamp {
                track: 1,
                seq,
                sent_ns: 0,
                flags: FLAG_MEASURED,
            },
            len: 100,
            at: t0 + Duration::from_millis(at_ms),
            marker,
        }
    }

    #[test]
    fn loss_counts_inside_the_span_and_a_late_frame_is_a_freeze() {
        let t0 = Instant::now();
        let mut s = StreamContinuity::default();
        // It joined late: sequence numbers 0..10 were never its to miss.
        s.record(&arrival(t0, 10, 0, false));
        s.record(&arrival(t0, 11, 10, true));
        s.record(&arrival(t0, 14, 40, true));
        // 12 and 13 come back 1.5 s later (a retransmission), 13 ending its frame.
        s.record(&arrival(t0, 13, 1540, true));
        assert_eq!((s.expected(), s.received()), (5, 4));
        assert_eq!(s.longest_frame_gap(), Duration::from_millis(1500));

        let mut r = ContinuityReport::default();
        r.add(true, &s);
        r.add(true, &StreamContinuity::default());
        assert_eq!(
            (r.video_expected, r.video_streams, r.freezes_over_1s),
            (5, 1, 1)
        );
        assert!((r.video_missing_pct - 20.0).abs() < 1e-9);
        assert_eq!(r.longest_frame_gap_ms, 1500.0);
        assert_eq!(r.audio_expected, 0);
    }
}
