//! The recent packets of one track, kept once for all of its sinks: their payloads in a ring
//! sized in bytes, oldest overwritten first. Sinks name a packet by its [`PacketIndex`] (a
//! counter that never repeats) and keep only their own numbering of it; a retransmission reads
//! the payload back from here, so no sink keeps a copy of its own.

use std::collections::VecDeque;

/// Names one packet a track kept: the n-th packet it ever kept.
pub type PacketIndex = u64;

/// Where one kept payload lies in the ring.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u32,
    len: u32,
}

/// The recent payloads of one track.
#[derive(Debug)]
pub struct PacketHistory {
    /// The ring, allocated at the first packet (a track published but silent costs nothing).
    bytes: Vec<u8>,
    /// Its size once allocated.
    capacity: usize,
    /// Where the kept payloads lie, oldest first.
    spans: VecDeque<Span>,
    /// The index of `spans[0]`.
    first: PacketIndex,
    /// Where the next payload goes.
    head: usize,
}

impl PacketHistory {
    /// A history keeping about `capacity` bytes of payload.
    pub fn new(capacity: usize) -> Self {
        PacketHistory {
            bytes: Vec::new(),
            capacity,
            spans: VecDeque::new(),
            first: 0,
            head: 0,
        }
    }

    /// Keeps `payload` (dropping the oldest payloads its bytes overwrite) and returns its index.
    /// `None` when it is larger than the whole ring.
    pub fn push(&mut self, payload: &[u8]) -> Option<PacketIndex> {
        let len = payload.len();
        if len > self.capacity {
            return None;
        }
        if self.bytes.is_empty() {
            self.bytes = vec![0; self.capacity];
            // About one span per full-size packet; more small ones grow it once.
            self.spans.reserve(self.capacity / 1000 + 16);
        }
        if self.head + len > self.capacity {
            // Wrap: what lies beyond the old head is the rest of the lap before, older than
            // anything at the start of the ring, so it goes first (spans are kept in age order).
            let old_head = self.head;
            self.forget_while(|span| span.offset as usize >= old_head);
            self.head = 0;
        }
        let (start, end) = (self.head, self.head + len);
        // Then every kept payload this one overlaps, oldest first.
        self.forget_while(|span| {
            let (o_start, o_end) = (span.offset as usize, (span.offset + span.len) as usize);
            o_start < end && start < o_end
        });
        self.bytes[start..end].copy_from_slice(payload);
        self.head = end;
        self.spans.push_back(Span {
            offset: start as u32,
            len: len as u32,
        });
        Some(self.first + self.spans.len() as u64 - 1)
    }

    /// Forgets the oldest payloads while `stale` says so.
    fn forget_while(&mut self, stale: impl Fn(&Span) -> bool) {
        while self.spans.front().is_some_and(&stale) {
            self.spans.pop_front();
            self.first += 1;
        }
    }

    /// The payload kept as `index`, if it is still there.
    pub fn get(&self, index: PacketIndex) -> Option<&[u8]> {
        let position = usize::try_from(index.checked_sub(self.first)?).ok()?;
        let span = self.spans.get(position)?;
        self.bytes
            .get(span.offset as usize..(span.offset + span.len) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_come_back_until_overwritten() {
        let mut h = PacketHistory::new(100);
        assert_eq!(h.get(0), None);
        let a = h.push(&[1; 40]).unwrap();
        let b = h.push(&[2; 40]).unwrap();
        assert_eq!((a, b), (0, 1));
        assert_eq!(h.get(a), Some(&[1; 40][..]));
        // Does not fit after b: wraps to the start and overwrites a only.
        let c = h.push(&[3; 30]).unwrap();
        assert_eq!(h.get(a), None);
        assert_eq!(h.get(b), Some(&[2; 40][..]));
        assert_eq!(h.get(c), Some(&[3; 30][..]));
        // Fills up to b's start, then overwrites b.
        let d = h.push(&[4; 10]).unwrap();
        assert_eq!(h.get(b), Some(&[2; 40][..]));
        let e = h.push(&[5; 20]).unwrap();
        assert_eq!(h.get(b), None);
        for (i, byte) in [(c, 3u8), (d, 4), (e, 5)] {
            assert!(h.get(i).unwrap().iter().all(|x| *x == byte), "{i}");
        }
        assert_eq!(h.get(e + 1), None);
        assert_eq!(h.push(&[0; 101]), None, "larger than the ring");
    }

    #[test]
    fn a_long_run_keeps_the_most_recent_bytes_and_never_a_stale_payload() {
        let mut h = PacketHistory::new(4096);
        let mut kept = Vec::new();
        for n in 0u32..10_000 {
            let len = 50 + (n * 37 % 900) as usize;
            let byte = (n % 251) as u8;
            let i = h.push(&vec![byte; len]).unwrap();
            kept.push((i, len, byte));
        }
        let mut alive = 0;
        for (i, len, byte) in kept.iter().rev().take(200) {
            if let Some(p) = h.get(*i) {
                alive += 1;
                assert_eq!(p.len(), *len);
                assert!(p.iter().all(|x| x == byte), "packet {i} corrupted");
            }
        }
        // At least the last ring's worth (4096 bytes / at most 949 per packet) is there.
        assert!(alive >= 4, "{alive}");
        assert!(h.get(kept[0].0).is_none());
    }
}
