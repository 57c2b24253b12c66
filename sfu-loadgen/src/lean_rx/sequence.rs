//! One RTP stream's extended sequence numbers: the rollover counter (RFC 3711 section 3.3.1 and
//! appendix A), duplicates, and the packets missing between the lowest and highest seen.

/// Packets behind the highest one whose arrival is remembered (duplicates older than that cannot
/// be told from late packets; on loopback reordering stays far below this).
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// What a packet is to its stream, before it is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not seen yet.
    New,
    /// Seen already.
    Duplicate,
    /// More than [`WINDOW`] packets behind the highest: whether it is new cannot be told.
    TooOld,
}

/// The receive state of one SSRC.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// Highest index accepted (rollover counter << 16 | sequence number); `None` before the first.
    highest: Option<u64>,
    /// Lowest index accepted.
    lowest: u64,
    /// Packets accepted.
    unique: u64,
    /// Bit `i % WINDOW` set: index `i` (within the window behind `highest`) was accepted.
    window: [u64; WORDS],
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            highest: None,
            lowest: 0,
            unique: 0,
            window: [0; WORDS],
        }
    }
}

impl SeqTracker {
    /// The packet index a sequence number most likely has (RFC 3711 appendix A): the rollover
    /// counter of the highest index so far, one less or one more when `seq` is closer that way.
    /// The first packet of a stream has rollover counter 0. `None` for a packet from before the
    /// stream's first rollover (it would need a negative counter).
    pub fn index_of(&self, seq: u16) -> Option<u64> {
        let Some(highest) = self.highest else {
            return Some(u64::from(seq));
        };
        let roc = highest >> 16;
        let s_l = (highest & 0xffff) as i64;
        let seq_i = i64::from(seq);
        let guess = if s_l < 0x8000 {
            if seq_i - s_l > 0x8000 {
                roc.checked_sub(1)?
            } else {
                roc
            }
        } else if s_l - 0x8000 > seq_i {
            roc + 1
        } else {
            roc
        };
        Some(guess << 16 | u64::from(seq))
    }

    /// Whether `index` was seen, without changing anything (so a packet that then fails
    /// authentication leaves no trace).
    pub fn check(&self, index: u64) -> Seen {
        let Some(highest) = self.highest else {
            return Seen::New;
        };
        if index > highest {
            return Seen::New;
        }
        if highest - index >= WINDOW {
            return Seen::TooOld;
        }
        if self.bit(index) {
            Seen::Duplicate
        } else {
            Seen::New
        }
    }

    /// Records an authenticated packet that [`SeqTracker::check`] found [`Seen::New`].
    pub fn accept(&mut self, index: u64) {
        match self.highest {
            None => {
                self.highest = Some(index);
                self.lowest = index;
            }
            Some(highest) if index > highest => {
                // Forget what falls out of the window as it moves forward.
                if index - highest >= WINDOW {
                    self.window = [0; WORDS];
                } else {
                    for i in highest + 1..index {
                        self.clear(i);
                    }
                }
                self.highest = Some(index);
            }
            Some(_) => self.lowest = self.lowest.min(index),
        }
        self.set(index);
        self.unique += 1;
    }

    /// Packets accepted.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Indexes between the lowest and the highest accepted that never arrived.
    pub fn missing(&self) -> u64 {
        match self.highest {
            Some(h) => (h - self.lowest + 1).saturating_sub(self.unique),
            None => 0,
        }
    }

    fn slot(index: u64) -> (usize, u64) {
        let bit = index % WINDOW;
        ((bit / 64) as usize, 1 << (bit % 64))
    }

    fn bit(&self, index: u64) -> bool {
        let (w, m) = Self::slot(index);
        self.window[w] & m != 0
    }

    fn set(&mut self, index: u64) {
        let (w, m) = Self::slot(index);
        self.window[w] |= m;
    }

    fn clear(&mut self, index: u64) {
        let (w, m) = Self::slot(index);
        self.window[w] &= !m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds sequence numbers; returns what each was.
    fn feed(t: &mut SeqTracker, seqs: &[u16]) -> Vec<(Option<u64>, Seen)> {
        seqs.iter()
            .map(|&s| {
                let Some(i) = t.index_of(s) else {
                    return (None, Seen::TooOld);
                };
                let seen = t.check(i);
                if seen == Seen::New {
                    t.accept(i);
                }
                (Some(i), seen)
            })
            .collect()
    }

    #[test]
    fn the_rollover_counter_follows_the_wrap_and_late_packets_from_before_it() {
        let mut t = SeqTracker::default();
        let got = feed(&mut t, &[65533, 65534, 65535, 0, 1, 65532, 2]);
        let idx: Vec<u64> = got.iter().map(|(i, _)| i.unwrap()).collect();
        assert_eq!(
            idx,
            [65533, 65534, 65535, 65536, 65537, 65532, 65538],
            "the late 65532 keeps the old counter"
        );
        assert!(got.iter().all(|(_, s)| *s == Seen::New));
        assert_eq!((t.unique(), t.missing()), (7, 0));

        // Several wraps in order.
        let mut t = SeqTracker::default();
        let mut last = 0;
        for n in 0..200_000u64 {
            let i = t.index_of((n % 65536) as u16).unwrap();
            assert_eq!(i, n);
            t.accept(i);
            last = i;
        }
        assert_eq!((last >> 16, t.unique(), t.missing()), (3, 200_000, 0));
    }

    #[test]
    fn duplicates_are_found_and_gaps_count_as_missing() {
        let mut t = SeqTracker::default();
        let got = feed(&mut t, &[10, 11, 11, 14, 12, 10, 14]);
        let seen: Vec<Seen> = got.iter().map(|(_, s)| *s).collect();
        use Seen::*;
        assert_eq!(seen, [New, New, Duplicate, New, New, Duplicate, Duplicate]);
        // 10..=14 spans 5, 4 arrived: 13 is missing.
        assert_eq!((t.unique(), t.missing()), (4, 1));
        // It turns up late: no longer missing.
        assert_eq!(feed(&mut t, &[13]), [(Some(13), New)]);
        assert_eq!(t.missing(), 0);
    }

    #[test]
    fn duplicates_across_the_wrap_and_window_edges() {
        let mut t = SeqTracker::default();
        feed(&mut t, &[65535, 0]);
        assert_eq!(
            feed(&mut t, &[65535, 0])
                .iter()
                .map(|x| x.1)
                .collect::<Vec<_>>(),
            [Seen::Duplicate, Seen::Duplicate]
        );
        // Jump far ahead: the old ones are now beyond the window.
        let far = (65536 + WINDOW + 5) as u16;
        assert_eq!(feed(&mut t, &[far])[0].1, Seen::New);
        assert_eq!(feed(&mut t, &[0])[0].1, Seen::TooOld);
        // The bits of the skipped range were cleared: a packet just inside the window is new.
        let inside = far.wrapping_sub(3);
        assert_eq!(feed(&mut t, &[inside])[0].1, Seen::New);
        assert_eq!(feed(&mut t, &[inside])[0].1, Seen::Duplicate);
    }

    #[test]
    fn a_packet_from_before_the_first_rollover_has_no_index() {
        let mut t = SeqTracker::default();
        feed(&mut t, &[5]);
        // 65000 after 5 with counter 0 would be counter -1.
        assert_eq!(t.index_of(65000), None);
        // A packet sent before the first one that arrived is new, and 4 is now missing.
        assert_eq!(feed(&mut t, &[3]), [(Some(3), Seen::New)]);
        assert_eq!((t.unique(), t.missing()), (2, 1));
    }

    #[test]
    fn nothing_is_recorded_until_accepted() {
        let mut t = SeqTracker::default();
        feed(&mut t, &[100]);
        let i = t.index_of(101).unwrap();
        assert_eq!(t.check(i), Seen::New);
        // Authentication failed: not accepted, so still new, and not counted.
        assert_eq!(t.check(i), Seen::New);
        assert_eq!((t.unique(), t.missing()), (1, 0));
    }
}
