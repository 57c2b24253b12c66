//! Which queued datagrams leave together as one UDP GSO send (`UDP_SEGMENT`): the kernel then
//! builds one large packet and cuts it into datagrams late (in the device, or just before it),
//! so a run of N datagrams to one destination costs one trip through the socket layer.
//!
//! The forwarding order is packet-major (each received packet goes to every viewer before the
//! next one arrives), so consecutive datagrams rarely share a destination. The plan therefore
//! groups a batch by destination, keeping the order within each destination — the only order a
//! receiver sees — and cuts each destination's datagrams into runs the kernel accepts: equal
//! sizes except a shorter last one, at most [`MAX_SEGMENTS`] datagrams and [`MAX_BYTES`] bytes.

use std::net::SocketAddr;

/// Most datagrams in one segmented send (the kernel's `UDP_MAX_SEGMENTS` is 64 on older kernels).
pub const MAX_SEGMENTS: usize = 64;
/// Most bytes in one segmented send: under the 65 507-byte UDP payload limit.
pub const MAX_BYTES: usize = 60_000;

/// A run of the plan: `order()[start..end]` go out as one send, cut at `segment` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First position in [`GsoPlan::order`].
    pub start: usize,
    /// One past the last position.
    pub end: usize,
    /// The size of every datagram of the run but the last, which may be shorter.
    pub segment: usize,
}

/// The plan for one batch, with its vectors kept for the next.
#[derive(Debug)]
pub struct GsoPlan {
    segmenting: bool,
    /// A destination whose datagrams always go one per send.
    whole: Option<SocketAddr>,
    keys: Vec<(SocketAddr, u32)>,
    order: Vec<u32>,
    runs: Vec<Run>,
}

impl GsoPlan {
    /// A planner; with `segmenting` off, every datagram is a run of its own in queue order.
    pub fn new(segmenting: bool) -> Self {
        GsoPlan {
            segmenting,
            whole: None,
            keys: Vec::new(),
            order: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Datagrams to `destination` go one per send: the hand-off to the kernel's TC fan-out on
    /// `lo`, which reads each datagram's own RTP header (a segmented send is one packet with
    /// one header until the device cuts it, and the fan-out passes it untouched).
    pub fn keep_whole(&mut self, destination: SocketAddr) {
        self.whole = Some(destination);
    }

    /// From now on, one datagram per run (the route's device refused a segmented send).
    pub fn stop_segmenting(&mut self) {
        self.segmenting = false;
    }

    /// Plans a batch given as (destination, length) in queue order. The runs come back grouped by
    /// destination and index the batch through [`Self::order`].
    pub fn plan(&mut self, batch: impl Iterator<Item = (SocketAddr, usize)>) {
        self.keys.clear();
        self.keys
            .extend(batch.map(|(to, len)| (to, len.min(u32::MAX as usize) as u32)));
        self.order.clear();
        self.order.extend(0..self.keys.len() as u32);
        self.runs.clear();
        if !self.segmenting {
            self.runs.extend((0..self.keys.len()).map(|i| Run {
                start: i,
                end: i + 1,
                segment: self.keys[i].1 as usize,
            }));
            return;
        }
        // Unstable sort on (destination, position): no allocation, and the position keeps each
        // destination's own order.
        let keys = &self.keys;
        self.order
            .sort_unstable_by_key(|&i| (keys[i as usize].0, i));
        let mut i = 0;
        while i < self.order.len() {
            let (to, segment) = keys[self.order[i] as usize];
            let mut bytes = segment as usize;
            let mut end = i + 1;
            let whole = self.whole == Some(to);
            while !whole && end < self.order.len() && end - i < MAX_SEGMENTS {
                let (next_to, len) = keys[self.order[end] as usize];
                if next_to != to || len > segment || bytes + len as usize > MAX_BYTES {
                    break;
                }
                bytes += len as usize;
                end += 1;
                if len < segment {
                    // A shorter datagram can only be the last of a run.
                    break;
                }
            }
            self.runs.push(Run {
                start: i,
                end,
                segment: segment as usize,
            });
            i = end;
        }
    }

    /// The runs of the last plan.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Batch positions in run order: run `r` sends `order()[r.start..r.end]`.
    pub fn order(&self) -> &[u32] {
        &self.order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The plan as lists of batch positions, one per run.
    fn runs_of(plan: &mut GsoPlan, batch: &[(SocketAddr, usize)]) -> Vec<Vec<u32>> {
        plan.plan(batch.iter().copied());
        plan.runs()
            .iter()
            .map(|r| plan.order()[r.start..r.end].to_vec())
            .collect()
    }

    #[test]
    fn each_destination_keeps_its_order_in_one_run() {
        let mut plan = GsoPlan::new(true);
        // A frame of three packets forwarded to two viewers: packet-major order.
        let batch = [
            (addr(1), 1100),
            (addr(2), 1100),
            (addr(1), 1100),
            (addr(2), 1100),
            (addr(1), 700),
            (addr(2), 700),
        ];
        assert_eq!(
            runs_of(&mut plan, &batch),
            vec![vec![0, 2, 4], vec![1, 3, 5]]
        );
        assert_eq!(plan.runs()[0].segment, 1100);
    }

    #[test]
    fn a_shorter_datagram_ends_a_run_and_a_longer_one_starts_the_next() {
        let mut plan = GsoPlan::new(true);
        let batch = [
            (addr(1), 500),
            (addr(1), 400),
            (addr(1), 500),
            (addr(1), 900),
            (addr(1), 900),
        ];
        assert_eq!(
            runs_of(&mut plan, &batch),
            vec![vec![0, 1], vec![2], vec![3, 4]]
        );
    }

    #[test]
    fn runs_stay_within_the_segment_and_byte_limits() {
        let mut plan = GsoPlan::new(true);
        let batch: Vec<_> = (0..100).map(|_| (addr(1), 100)).collect();
        let sizes: Vec<usize> = runs_of(&mut plan, &batch).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![MAX_SEGMENTS, 100 - MAX_SEGMENTS]);
        let big: Vec<_> = (0..60).map(|_| (addr(1), 1200)).collect();
        plan.plan(big.iter().copied());
        for run in plan.runs() {
            assert!((run.end - run.start) * 1200 <= MAX_BYTES);
        }
    }

    #[test]
    fn datagrams_to_the_kernel_hand_off_go_one_per_send() {
        let mut plan = GsoPlan::new(true);
        plan.keep_whole(addr(9));
        let batch = [
            (addr(9), 900),
            (addr(1), 900),
            (addr(9), 900),
            (addr(1), 900),
            (addr(9), 400),
        ];
        assert_eq!(
            runs_of(&mut plan, &batch),
            vec![vec![1, 3], vec![0], vec![2], vec![4]]
        );
    }

    #[test]
    fn without_segmentation_every_datagram_goes_alone_in_queue_order() {
        let mut plan = GsoPlan::new(false);
        let batch = [(addr(2), 100), (addr(1), 100), (addr(2), 100)];
        assert_eq!(runs_of(&mut plan, &batch), vec![vec![0], vec![1], vec![2]]);
        let mut on = GsoPlan::new(true);
        on.stop_segmenting();
        assert_eq!(runs_of(&mut on, &batch).len(), 3);
    }
}
