//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): receive buffers the kernel picks from
//! itself, one per datagram, so a single multishot receive keeps filling them without a new
//! submission per datagram.
//!
//! Both the ring of buffer descriptors and the buffers live in anonymous mappings of their own:
//! the kernel writes into them while no Rust reference to them exists, and a buffer is only read
//! (as a slice) between the completion that hands it over and [`ProvidedBuffers::give_back`].

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

/// `count` buffers of `buffer_len` bytes each, and the ring that offers them to the kernel.
pub struct ProvidedBuffers {
    entries: Mapping,
    memory: Mapping,
    count: u16,
    buffer_len: usize,
    group: u16,
    /// The next free slot of the ring (ours until published).
    tail: u16,
}

impl ProvidedBuffers {
    /// Maps `count` buffers (a power of two, at most 32 768) of `buffer_len` bytes for buffer
    /// group `group`, every one of them offered.
    pub fn new(count: u16, buffer_len: usize, group: u16) -> io::Result<Self> {
        if !count.is_power_of_two() || count > 1 << 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the buffer count must be a power of two up to 32768",
            ));
        }
        let entries = Mapping::new(usize::from(count) * std::mem::size_of::<BufRingEntry>())?;
        let memory = Mapping::new(usize::from(count) * buffer_len)?;
        let mut buffers = ProvidedBuffers {
            entries,
            memory,
            count,
            buffer_len,
            group,
            tail: 0,
        };
        for id in 0..count {
            buffers.give_back(id);
        }
        Ok(buffers)
    }

    /// Registers the ring with `submitter`'s io_uring and offers every buffer.
    pub fn register(&self, submitter: &Submitter<'_>) -> io::Result<()> {
        // SAFETY: the ring's mapping is page-aligned, holds `count` entries and lives as long as
        // `self`; the io_uring that owns the registration is dropped before `self` (see `Ring`).
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.entries.ptr.as_ptr() as u64,
                self.count,
                self.group,
                0,
            )?;
        }
        self.publish();
        Ok(())
    }

    /// The buffer group id receives name.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The first `len` bytes of buffer `id`, which the kernel has handed over with a completion.
    /// `None` for an id or length outside the ring.
    pub fn get(&self, id: u16, len: usize) -> Option<&[u8]> {
        if id >= self.count || len > self.buffer_len {
            return None;
        }
        // SAFETY: in bounds of the mapping; the kernel does not write buffer `id` between the
        // completion that handed it over and `give_back(id)`, which needs `&mut self`.
        Some(unsafe {
            std::slice::from_raw_parts(
                self.memory
                    .ptr
                    .as_ptr()
                    .add(usize::from(id) * self.buffer_len),
                len,
            )
        })
    }

    /// Offers buffer `id` to the kernel again (seen once [`ProvidedBuffers::publish`] runs).
    pub fn give_back(&mut self, id: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot` < `count`, the number of entries in the mapping; the kernel reads only
        // entries before the published tail, and this one is at or after it.
        let entry = unsafe { &mut *self.entries.ptr.as_ptr().cast::<BufRingEntry>().add(slot) };
        // SAFETY: `id` < `count`, in bounds of the buffers' mapping.
        let addr = unsafe {
            self.memory
                .ptr
                .as_ptr()
                .add(usize::from(id) * self.buffer_len)
        };
        entry.set_addr(addr as u64);
        entry.set_len(self.buffer_len as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every buffer given back so far visible to the kernel.
    pub fn publish(&self) {
        // SAFETY: the tail field overlays the first entry's reserved field, which the kernel
        // reads as an atomic u16; the mapping is page-aligned, so it is aligned for one.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.ptr.as_ptr().cast::<BufRingEntry>());
            AtomicU16::from_ptr(tail.cast_mut()).store(self.tail, Ordering::Release);
        }
    }
}

/// An anonymous, private, page-aligned mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: an anonymous mapping of `len` bytes with no address hint; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Mapping::new` with this length and is not used after.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_in_ring_order_with_their_ids() {
        let mut buffers = ProvidedBuffers::new(4, 64, 7).unwrap();
        assert_eq!(buffers.tail, 4, "every buffer is offered at the start");
        buffers.give_back(2);
        let first = buffers.entries.ptr.as_ptr().cast::<BufRingEntry>();
        // SAFETY: slot 0 of a 4-entry ring.
        let reused = unsafe { &*first };
        assert_eq!(reused.bid(), 2, "the fifth offer reuses the first slot");
        assert_eq!(reused.len(), 64);
        assert_eq!(buffers.get(3, 64).map(<[u8]>::len), Some(64));
        assert!(buffers.get(4, 1).is_none());
        assert!(buffers.get(0, 65).is_none());
        assert!(ProvidedBuffers::new(3, 64, 0).is_err());
    }
}
