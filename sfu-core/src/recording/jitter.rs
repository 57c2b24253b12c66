//! A recorded track's jitter buffer: puts its packets back in sequence order, waiting a little for
//! late ones (and for NACK to fill holes), and reports a hole it gave up on as a gap.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One packet held for the recorder (a copy: the track's history is a ring that moves on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPacket {
    /// Extended sequence number.
    pub seq: u64,
    /// RTP timestamp.
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// When it arrived.
    pub at: Instant,
    /// It starts a keyframe (as the router saw it).
    pub keyframe: bool,
    /// The RTP payload.
    pub payload: Vec<u8>,
}

/// What the buffer releases, in sequence order.
#[derive(Debug, PartialEq, Eq)]
pub enum Released {
    /// The next packet.
    Packet(HeldPacket),
    /// This many packets never came (or came too late); what follows is after the hole.
    Gap(u64),
}

/// Reorders one SSRC's packets by extended sequence number.
#[derive(Debug)]
pub struct JitterBuffer {
    /// How long a hole may stay open before the packets after it are released.
    latency: Duration,
    /// The most packets held; beyond that the oldest hole is given up on at once.
    capacity: usize,
    /// The sequence number released next; `None` before the first packet.
    next: Option<u64>,
    held: BTreeMap<u64, HeldPacket>,
    /// Packets that came after their place was released (or twice).
    late: u64,
}

impl JitterBuffer {
    /// A buffer that waits up to `latency` for a missing packet and holds at most `capacity`.
    pub fn new(latency: Duration, capacity: usize) -> Self {
        JitterBuffer {
            latency,
            capacity: capacity.max(1),
            next: None,
            held: BTreeMap::new(),
            late: 0,
        }
    }

    /// Takes a packet in; a packet whose place was already released is dropped and counted.
    pub fn push(&mut self, packet: HeldPacket) {
        let next = *self.next.get_or_insert(packet.seq);
        if packet.seq < next || self.held.contains_key(&packet.seq) {
            self.late += 1;
            return;
        }
        self.held.insert(packet.seq, packet);
    }

    /// The next packet in order, or the gap before it once the oldest packet after a hole has
    /// waited `latency` (measured with `now`) or the buffer is full; `None` while waiting.
    pub fn pop(&mut self, now: Instant) -> Option<Released> {
        let next = self.next?;
        let first = *self.held.first_key_value()?.0;
        if first == next {
            self.next = Some(next + 1);
            return self.held.remove(&first).map(Released::Packet);
        }
        // The hole is as old as the earliest packet that arrived after it (a scan, only while a
        // hole is open, over what arrived within the latency).
        let oldest = self.held.values().map(|p| p.at).min()?;
        let waited = now.saturating_duration_since(oldest);
        if waited >= self.latency || self.held.len() > self.capacity {
            self.next = Some(first);
            return Some(Released::Gap(first - next));
        }
        None
    }

    /// Everything held, holes reported as gaps: the track ends or the recording stops.
    pub fn drain(&mut self) -> Vec<Released> {
        let mut out = Vec::with_capacity(self.held.len());
        while let Some((seq, packet)) = self.held.pop_first() {
            if let Some(next) = self.next.filter(|n| *n < seq) {
                out.push(Released::Gap(seq - next));
            }
            self.next = Some(seq + 1);
            out.push(Released::Packet(packet));
        }
        out
    }

    /// Packets dropped for coming after their place was released.
    pub fn late(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u64, at: Instant) -> HeldPacket {
        HeldPacket {
            seq,
            timestamp: seq as u32 * 3000,
            marker: true,
            at,
            keyframe: false,
            payload: vec![seq as u8],
        }
    }

    fn seqs(out: &[Released]) -> Vec<i64> {
        out.iter()
            .map(|r| match r {
                Released::Packet(p) => p.seq as i64,
                Released::Gap(n) => -(*n as i64),
            })
            .collect()
    }

    fn pop_all(buffer: &mut JitterBuffer, now: Instant) -> Vec<Released> {
        std::iter::from_fn(|| buffer.pop(now)).collect()
    }

    #[test]
    fn reordered_packets_come_out_in_sequence() {
        let t0 = Instant::now();
        let mut buffer = JitterBuffer::new(Duration::from_millis(100), 64);
        buffer.push(packet(10, t0));
        buffer.push(packet(12, t0));
        buffer.push(packet(11, t0));
        assert_eq!(seqs(&pop_all(&mut buffer, t0)), [10, 11, 12]);
        buffer.push(packet(11, t0));
        assert_eq!(buffer.late(), 1, "a packet after its place was released");
        assert!(buffer.pop(t0).is_none());
    }

    #[test]
    fn a_hole_waits_for_the_latency_then_becomes_a_gap() {
        let t0 = Instant::now();
        let mut buffer = JitterBuffer::new(Duration::from_millis(100), 64);
        buffer.push(packet(1, t0));
        buffer.push(packet(4, t0));
        assert_eq!(
            seqs(&pop_all(&mut buffer, t0)),
            [1],
            "2 and 3 may still come"
        );
        buffer.push(packet(3, t0 + Duration::from_millis(50)));
        assert!(buffer.pop(t0 + Duration::from_millis(99)).is_none());
        let out = pop_all(&mut buffer, t0 + Duration::from_millis(100));
        assert_eq!(seqs(&out), [-1, 3, 4], "2 given up on, the rest in order");
        buffer.push(packet(2, t0 + Duration::from_millis(120)));
        assert_eq!(buffer.late(), 1);
    }

    #[test]
    fn a_full_buffer_gives_up_on_its_hole_at_once() {
        let t0 = Instant::now();
        let mut buffer = JitterBuffer::new(Duration::from_secs(10), 2);
        buffer.push(packet(1, t0));
        assert_eq!(seqs(&pop_all(&mut buffer, t0)), [1]);
        for seq in 3..6 {
            buffer.push(packet(seq, t0));
        }
        assert_eq!(seqs(&pop_all(&mut buffer, t0)), [-1, 3, 4, 5]);
    }

    #[test]
    fn draining_releases_everything_with_its_gaps() {
        let t0 = Instant::now();
        let mut buffer = JitterBuffer::new(Duration::from_secs(10), 64);
        buffer.push(packet(1, t0));
        buffer.push(packet(3, t0));
        buffer.push(packet(7, t0));
        assert_eq!(seqs(&buffer.drain()), [1, -1, 3, -3, 7]);
    }
}
