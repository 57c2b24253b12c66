//! Sequence number and timestamp rewriting for one outgoing leg.
//!
//! A subscriber must see one continuous RTP stream per receiving m-line, even when the packets
//! behind it change source (the publisher restarts its encoder with a new SSRC, or the router
//! switches simulcast layers). Each source gets an offset; on a switch the new offsets are chosen so
//! that the outgoing sequence continues at `last + 1` and the timestamp advances by the wall-clock
//! time that passed, so the receiver's jitter buffer sees neither a gap nor a jump.

use std::time::Instant;

/// One source's mapping onto the outgoing stream.
#[derive(Debug, Clone, Copy)]
struct SourceMapping {
    /// Identifies the source (its SSRC).
    source: u32,
    /// Added (wrapping) to the source's extended sequence number.
    seq_offset: u64,
    /// Added (wrapping) to the source's timestamp.
    ts_offset: u32,
    /// The first outgoing sequence number of this source: anything at or below belongs to an
    /// earlier source and would collide, so it is dropped.
    floor: u64,
}

/// The outgoing sequence number and timestamp for one forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// Extended (ROC-carrying) outgoing sequence number.
    pub seq: u64,
    /// Outgoing RTP timestamp.
    pub timestamp: u32,
}

/// Rewrites sequence numbers and timestamps of one outgoing leg.
#[derive(Debug, Clone, Default)]
pub struct SeqTsRewriter {
    mapping: Option<SourceMapping>,
    /// Highest outgoing extended sequence number so far.
    last_seq: u64,
    /// Timestamp of the packet that carried `last_seq`.
    last_ts: u32,
    /// When the packet carrying `last_seq` arrived.
    last_at: Option<Instant>,
    /// The next packet starts a new mapping even from the current source.
    resync: bool,
}

impl SeqTsRewriter {
    /// A rewriter that has forwarded nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps one incoming packet. `seq` is the source's extended sequence number, `clock_rate` the
    /// codec's RTP clock. Returns `None` for a late packet of an earlier source, which must not be
    /// forwarded because its number is already taken.
    pub fn rewrite(
        &mut self,
        source: u32,
        seq: u64,
        timestamp: u32,
        arrival: Instant,
        clock_rate: u32,
    ) -> Option<Rewritten> {
        let mapping = match self.mapping {
            Some(m) if m.source == source && !self.resync => m,
            current => {
                self.resync = false;
                let m = self.switch_to(
                    source,
                    seq,
                    timestamp,
                    arrival,
                    clock_rate,
                    current.is_none(),
                );
                self.mapping = Some(m);
                m
            }
        };
        let out_seq = seq.wrapping_add(mapping.seq_offset);
        if out_seq < mapping.floor || out_seq > mapping.floor + (1 << 47) {
            return None;
        }
        let out_ts = timestamp.wrapping_add(mapping.ts_offset);
        if out_seq > self.last_seq || self.last_at.is_none() {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
            self.last_at = Some(arrival);
        }
        Some(Rewritten {
            seq: out_seq,
            timestamp: out_ts,
        })
    }

    fn switch_to(
        &self,
        source: u32,
        seq: u64,
        timestamp: u32,
        arrival: Instant,
        clock_rate: u32,
        first: bool,
    ) -> SourceMapping {
        if first {
            // Start below 2^16 so the receiver's SRTP rollover counter starts at 0, as it must
            // without out-of-band signalling.
            let start = seq & 0xffff;
            return SourceMapping {
                source,
                seq_offset: start.wrapping_sub(seq),
                ts_offset: 0,
                floor: start,
            };
        }
        let next_seq = self.last_seq + 1;
        let elapsed = self
            .last_at
            .map(|at| arrival.saturating_duration_since(at))
            .unwrap_or_default();
        let ticks = (elapsed.as_micros() * u128::from(clock_rate) / 1_000_000).max(1);
        // Truncation to u32 is RTP timestamp arithmetic: it wraps.
        let next_ts = self.last_ts.wrapping_add(ticks as u32);
        SourceMapping {
            source,
            seq_offset: next_seq.wrapping_sub(seq),
            ts_offset: next_ts.wrapping_sub(timestamp),
            floor: next_seq,
        }
    }

    /// Makes the next packet start a new mapping even if it comes from the current source: after
    /// a pause, or a switch back to a layer forwarded before, the outgoing stream continues at
    /// `last + 1` with the time that passed, instead of jumping over what was not forwarded.
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// A packet of the current source (`source`, extended sequence number `seq`) is not
    /// forwarded (a layer of a scalable stream the receiver does not take): the packets after
    /// it move down one number, so the receiver sees no gap to NACK. A packet older than the
    /// last forwarded one changes nothing.
    pub fn skip(&mut self, source: u32, seq: u64) {
        let Some(mapping) = self.mapping.as_mut().filter(|m| m.source == source) else {
            return;
        };
        if self.resync || seq.wrapping_add(mapping.seq_offset) <= self.last_seq {
            return;
        }
        mapping.seq_offset = mapping.seq_offset.wrapping_sub(1);
    }

    /// The highest outgoing sequence number written so far (0 before the first packet).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

/// Turns 16-bit RTP sequence numbers into 64-bit ones that count the wraps (RFC 3550 A.1), for
/// sources whose packets str0m does not see (plain RTP ingests).
#[derive(Debug, Clone, Default)]
pub struct SeqExtender {
    last: Option<u64>,
}

impl SeqExtender {
    /// The extended number of `seq`, taken as the closest to the last one seen.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let Some(last) = self.last else {
            // Start one cycle up so a packet reordered across the start does not go below zero.
            let first = (1 << 16) + u64::from(seq);
            self.last = Some(first);
            return first;
        };
        let delta = i64::from(seq.wrapping_sub(last as u16) as i16);
        let extended = (last as i64 + delta).max(0) as u64;
        if extended > last {
            self.last = Some(extended);
        }
        extended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn extended_sequence_counts_wraps_and_tolerates_reordering() {
        let mut x = SeqExtender::default();
        let a = x.extend(65534);
        assert_eq!(x.extend(65535), a + 1);
        assert_eq!(x.extend(0), a + 2);
        assert_eq!(x.extend(65535), a + 1, "a late packet keeps its place");
        assert_eq!(x.extend(1), a + 3);
        assert_eq!(x.extend(2), a + 4);
    }

    const VIDEO: u32 = 90_000;

    #[test]
    fn same_source_keeps_numbers_and_gaps() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::new();
        let a = r.rewrite(1, 1000, 5000, t0, VIDEO).unwrap();
        assert_eq!(
            a,
            Rewritten {
                seq: 1000,
                timestamp: 5000
            }
        );
        let b = r.rewrite(1, 1001, 8000, t0, VIDEO).unwrap();
        assert_eq!(
            b,
            Rewritten {
                seq: 1001,
                timestamp: 8000
            }
        );
        // Loss upstream stays loss downstream (the receiver NACKs it), no renumbering.
        let c = r.rewrite(1, 1005, 9000, t0, VIDEO).unwrap();
        assert_eq!(c.seq, 1005);
    }

    #[test]
    fn layer_switches_and_pauses_keep_numbers_and_time_continuous() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut r = SeqTsRewriter::new();
        // Layer A (SSRC 1) for three packets.
        for i in 0..3u64 {
            r.rewrite(1, 100 + i, 1000 + 3000 * i as u32, ms(33 * i), VIDEO);
        }
        // Switch to layer B (SSRC 2), 33 ms later: numbers go on at +1, time by 33 ms.
        let b = r.rewrite(2, 7000, 444_000, ms(99), VIDEO).unwrap();
        assert_eq!(b.seq, 103);
        assert_eq!(b.timestamp, 7000 + 33 * 90);
        // Paused (hidden tile) for 2 s while B went on by 60 packets, then resumed on B.
        r.resync();
        let resumed = r
            .rewrite(2, 7060, 444_000 + 60 * 3000, ms(2099), VIDEO)
            .unwrap();
        assert_eq!(resumed.seq, 104, "no gap the subscriber would NACK");
        assert_eq!(resumed.timestamp, b.timestamp + 2000 * 90);
        // A late packet of B from before the pause is not sent (its number is taken).
        assert_eq!(r.rewrite(2, 7001, 447_000, ms(2100), VIDEO), None);
        // Back to A, whose numbers moved on meanwhile.
        let a = r.rewrite(1, 200, 999_000, ms(2133), VIDEO).unwrap();
        assert_eq!(a.seq, 105);
        assert_eq!(a.timestamp, resumed.timestamp + 34 * 90);
    }

    #[test]
    fn a_late_joiner_on_a_long_running_source_starts_below_rollover() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::new();
        // The source already wrapped 3 times: extended seq 3*65536 + 10.
        let a = r.rewrite(1, 3 * 65536 + 10, 1, t0, VIDEO).unwrap();
        assert_eq!(a.seq, 10);
        let b = r.rewrite(1, 3 * 65536 + 11, 2, t0, VIDEO).unwrap();
        assert_eq!(b.seq, 11);
    }

    #[test]
    fn sequence_and_timestamp_wrap_around_continuously() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::new();
        let mut ts = u32::MAX - 3000;
        let mut prev: Option<Rewritten> = None;
        for seq in 65530u64..65550 {
            let out = r.rewrite(9, seq, ts, t0, VIDEO).unwrap();
            if let Some(p) = prev {
                assert_eq!(out.seq, p.seq + 1, "extended seq continues across 65535");
                assert_eq!(
                    out.timestamp,
                    p.timestamp.wrapping_add(3000),
                    "ts wraps modulo 2^32"
                );
                assert_eq!((out.seq & 0xffff) as u16, ((p.seq + 1) & 0xffff) as u16);
            }
            prev = Some(out);
            ts = ts.wrapping_add(3000);
        }
        assert!(prev.unwrap().seq > 65535);
    }

    #[test]
    fn switching_source_continues_without_gap_and_advances_time() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::new();
        for i in 0..10u64 {
            r.rewrite(
                1,
                100 + i,
                1000 + 3000 * i as u32,
                t0 + Duration::from_millis(33 * i),
                VIDEO,
            )
            .unwrap();
        }
        let last = Rewritten {
            seq: 109,
            timestamp: 1000 + 27000,
        };
        assert_eq!(r.last_seq(), last.seq);
        // A new source with unrelated numbers arrives 100 ms after the last packet.
        let switch_at = t0 + Duration::from_millis(33 * 9 + 100);
        let first_new = r.rewrite(2, 50_000, 7, switch_at, VIDEO).unwrap();
        assert_eq!(first_new.seq, last.seq + 1);
        assert_eq!(
            first_new.timestamp,
            last.timestamp + 9000,
            "100 ms at 90 kHz"
        );
        let second_new = r.rewrite(2, 50_001, 3007, switch_at, VIDEO).unwrap();
        assert_eq!(second_new.seq, last.seq + 2);
        assert_eq!(second_new.timestamp, last.timestamp + 12000);
    }

    #[test]
    fn switch_back_and_forth_stays_monotonic() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::new();
        let mut last = 0;
        for round in 0..6u64 {
            let source = (round % 2) as u32;
            for i in 0..5u64 {
                let out = r
                    .rewrite(
                        source,
                        1000 * (source as u64 + 1) + round * 5 + i,
                        0,
                        t0,
                        VIDEO,
                    )
                    .unwrap();
                if last != 0 {
                    assert_eq!(out.seq, last + 1);
                }
                last = out.seq;
            }
        }
    }

    #[test]
    fn late_packet_from_before_a_switch_is_dropped_not_duplicated() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::new();
        r.rewrite(1, 10, 0, t0, VIDEO).unwrap();
        r.rewrite(2, 500, 0, t0, VIDEO).unwrap();
        // A reordered packet of the new source numbered before its first one would collide.
        assert_eq!(r.rewrite(2, 499, 0, t0, VIDEO), None);
        assert_eq!(r.rewrite(2, 501, 0, t0, VIDEO).unwrap().seq, 12);
    }

    #[test]
    fn skipped_packets_leave_no_gap() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::new();
        assert_eq!(r.rewrite(1, 100, 0, t0, VIDEO).unwrap().seq, 100);
        r.skip(1, 101);
        r.skip(1, 102);
        assert_eq!(r.rewrite(1, 103, 0, t0, VIDEO).unwrap().seq, 101);
        // Loss upstream (104 never came) still shows as a gap.
        assert_eq!(r.rewrite(1, 105, 0, t0, VIDEO).unwrap().seq, 103);
        // A late skipped packet from before the last forwarded one changes nothing.
        r.skip(1, 104);
        assert_eq!(r.rewrite(1, 106, 0, t0, VIDEO).unwrap().seq, 104);
        // Nor does one of another source.
        r.skip(2, 900);
        assert_eq!(r.rewrite(1, 107, 0, t0, VIDEO).unwrap().seq, 105);
    }

    #[test]
    fn timestamp_advances_at_least_one_tick_on_an_instant_switch() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::new();
        let a = r.rewrite(1, 1, 100, t0, 48_000).unwrap();
        let b = r.rewrite(2, 77, 999_999, t0, 48_000).unwrap();
        assert_eq!(b.timestamp, a.timestamp + 1);
    }
}
