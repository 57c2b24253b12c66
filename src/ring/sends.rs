//! Sends in flight: each submitted send owns its datagrams' buffers, its destination and (for a
//! segmented send) its message header until the kernel completes it.
//!
//! Slots are boxed so that the addresses handed to the kernel stay put while the slot list grows,
//! and reused (with their vectors' capacity) so a steady flow allocates nothing.

use std::net::SocketAddr;

use crate::sockaddr::to_storage;

/// `cmsg` space for one `UDP_SEGMENT` value (a `u16`), in `u64`s to keep it aligned.
const CONTROL_WORDS: usize = 4;

/// One send in flight.
pub struct SendSlot {
    /// The datagrams, in order; more than one only for a segmented (GSO) send.
    pub buffers: Vec<Vec<u8>>,
    /// Where they go.
    pub destination: SocketAddr,
    /// The address they were meant to leave from (kept for a resend).
    pub source: SocketAddr,
    addr: libc::sockaddr_storage,
    addr_len: libc::socklen_t,
    iovecs: Vec<libc::iovec>,
    msg: libc::msghdr,
    control: [u64; CONTROL_WORDS],
}

impl SendSlot {
    fn new() -> Box<Self> {
        Box::new(SendSlot {
            buffers: Vec::new(),
            destination: SocketAddr::from(([0, 0, 0, 0], 0)),
            source: SocketAddr::from(([0, 0, 0, 0], 0)),
            // SAFETY: all-zero bytes are a valid sockaddr_storage and msghdr.
            addr: unsafe { std::mem::zeroed() },
            addr_len: 0,
            iovecs: Vec::new(),
            msg: unsafe { std::mem::zeroed() },
            control: [0; CONTROL_WORDS],
        })
    }

    /// The destination as a `sockaddr` pointer and length, for a plain send.
    pub fn destination_raw(&self) -> (*const libc::sockaddr, libc::socklen_t) {
        (
            (&self.addr as *const libc::sockaddr_storage).cast(),
            self.addr_len,
        )
    }

    /// Points the message header at the buffers, the destination and one `UDP_SEGMENT` control
    /// message of `segment` bytes; returns it for a `sendmsg`. Valid until the slot is reused.
    pub fn segmented_msghdr(&mut self, segment: u16) -> *const libc::msghdr {
        self.iovecs.clear();
        self.iovecs.extend(self.buffers.iter().map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        }));
        self.control = [0; CONTROL_WORDS];
        let control_len = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
        debug_assert!(control_len <= std::mem::size_of_val(&self.control));
        self.msg.msg_name = (&mut self.addr as *mut libc::sockaddr_storage).cast();
        self.msg.msg_namelen = self.addr_len;
        self.msg.msg_iov = self.iovecs.as_mut_ptr();
        self.msg.msg_iovlen = self.iovecs.len();
        self.msg.msg_control = self.control.as_mut_ptr().cast();
        self.msg.msg_controllen = control_len;
        self.msg.msg_flags = 0;
        // SAFETY: the control buffer is aligned for cmsghdr and large enough for one header with
        // a u16 of data (CMSG_SPACE above); CMSG_FIRSTHDR and CMSG_DATA stay inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&self.msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
            libc::CMSG_DATA(cmsg).cast::<u16>().write_unaligned(segment);
        }
        &self.msg
    }
}

/// `UDP_SEGMENT` from `linux/udp.h` (the libc crate has it for some targets only).
const UDP_SEGMENT: libc::c_int = 103;

/// The slots, free and in flight.
#[derive(Default)]
pub struct SendSlots {
    // Boxed on purpose: the kernel holds pointers into a slot while the list grows.
    #[allow(clippy::vec_box)]
    slots: Vec<Box<SendSlot>>,
    free: Vec<u32>,
    datagrams_in_flight: usize,
}

impl SendSlots {
    /// A free slot, filled with `buffers` for `destination`; returns its index (the submission's
    /// user data). `buffers` is left empty with its capacity: the datagrams move, the vectors do
    /// not, so a slot's vector only grows to the longest run it carried.
    pub fn start(
        &mut self,
        buffers: &mut Vec<Vec<u8>>,
        source: SocketAddr,
        destination: SocketAddr,
    ) -> u32 {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(SendSlot::new());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.buffers.append(buffers);
        slot.source = source;
        slot.destination = destination;
        slot.addr_len = to_storage(destination, &mut slot.addr);
        self.datagrams_in_flight += slot.buffers.len();
        index
    }

    /// Slot `index`, in flight.
    pub fn get_mut(&mut self, index: u32) -> Option<&mut SendSlot> {
        self.slots.get_mut(index as usize).map(|b| &mut **b)
    }

    /// Ends slot `index`'s flight: its datagrams are handed to `done`, then it is free again.
    /// An index that is not in flight is ignored.
    pub fn finish(&mut self, index: u32, done: impl FnOnce(&mut SendSlot)) {
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return;
        };
        self.datagrams_in_flight -= slot.buffers.len();
        done(slot);
        slot.buffers.clear();
        self.free.push(index);
    }

    /// Datagrams submitted and not yet completed.
    pub fn datagrams_in_flight(&self) -> usize {
        self.datagrams_in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_count_their_datagrams() {
        let mut slots = SendSlots::default();
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut batch = vec![vec![1u8; 10], vec![2u8; 10]];
        let a = slots.start(&mut batch, to, to);
        assert!(batch.is_empty());
        let mut one = vec![vec![3u8; 5]];
        let b = slots.start(&mut one, to, to);
        assert_ne!(a, b);
        assert_eq!(slots.datagrams_in_flight(), 3);
        let mut seen = 0;
        slots.finish(a, |slot| seen = slot.buffers.len());
        assert_eq!(seen, 2);
        assert_eq!(slots.datagrams_in_flight(), 1);
        let mut again = vec![vec![4u8; 5]];
        assert_eq!(
            slots.start(&mut again, to, to),
            a,
            "a finished slot is reused"
        );
    }

    #[test]
    fn a_segmented_header_carries_every_buffer_and_the_segment_size() {
        let mut slots = SendSlots::default();
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut batch = vec![vec![1u8; 100], vec![2u8; 100], vec![3u8; 40]];
        let i = slots.start(&mut batch, to, to);
        let slot = slots.get_mut(i).unwrap();
        let msg = slot.segmented_msghdr(100);
        // SAFETY: the header and what it points at live in the slot.
        unsafe {
            assert_eq!((*msg).msg_iovlen, 3);
            assert_eq!((*(*msg).msg_iov.add(2)).iov_len, 40);
            let cmsg = libc::CMSG_FIRSTHDR(msg);
            assert_eq!((*cmsg).cmsg_type, UDP_SEGMENT);
            assert_eq!(libc::CMSG_DATA(cmsg).cast::<u16>().read_unaligned(), 100);
        }
    }
}
