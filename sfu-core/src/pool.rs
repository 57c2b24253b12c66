//! Datagram buffers, reused: the shell gives every buffer back after sending it, and the core
//! builds the datagrams it writes itself (plain RTP outputs) in them.

/// Most buffers kept; beyond that, returned ones are freed.
const MAX_POOLED: usize = 4096;

/// A free list of byte buffers.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Vec<Vec<u8>>,
}

impl BufferPool {
    /// An empty buffer with room for at least `capacity` bytes, reused when one is free.
    pub fn take(&mut self, capacity: usize) -> Vec<u8> {
        match self.free.pop() {
            Some(mut buf) => {
                buf.clear();
                buf.reserve(capacity);
                buf
            }
            None => Vec::with_capacity(capacity.max(1500)),
        }
    }

    /// Gives a buffer back for reuse.
    pub fn give(&mut self, buf: Vec<u8>) {
        if self.free.len() < MAX_POOLED && buf.capacity() >= 1500 {
            self.free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_empty() {
        let mut pool = BufferPool::default();
        let mut a = pool.take(100);
        a.extend_from_slice(b"hello");
        let ptr = a.as_ptr();
        pool.give(a);
        assert_eq!(pool.free.len(), 1);
        let b = pool.take(100);
        assert!(b.is_empty());
        assert_eq!(b.as_ptr(), ptr, "the same allocation comes back");
        pool.give(Vec::with_capacity(10));
        assert!(
            pool.free.is_empty(),
            "buffers too small for a datagram are not kept"
        );
    }
}
