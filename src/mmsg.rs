//! Batched UDP system calls: `recvmmsg` fills many datagrams per call, `sendmmsg` sends many.
//!
//! Each batch owns its buffers, address storage and message headers, allocated once and reused for
//! every call; the headers are re-pointed at them right before each call, so nothing moves under
//! the kernel.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use crate::sockaddr::{from_storage, to_storage};

/// Receive buffers for up to `capacity` datagrams per call.
pub struct RecvBatch {
    buffers: Vec<u8>,
    buffer_len: usize,
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    /// `capacity` datagrams of at most `buffer_len` bytes each (longer ones arrive truncated).
    pub fn new(capacity: usize, buffer_len: usize) -> Self {
        RecvBatch {
            buffers: vec![0; capacity * buffer_len],
            buffer_len,
            // SAFETY: all-zero bytes are a valid sockaddr_storage, iovec and mmsghdr.
            addrs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            iovecs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            headers: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
        }
    }

    /// Receives what is queued on the non-blocking socket `fd`, up to the capacity; returns how
    /// many datagrams arrived (`WouldBlock` when none).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let capacity = self.headers.len();
        for i in 0..capacity {
            self.iovecs[i] = libc::iovec {
                iov_base: self.buffers[i * self.buffer_len..].as_mut_ptr().cast(),
                iov_len: self.buffer_len,
            };
            let hdr = &mut self.headers[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by `self` that outlive the call, with
        // lengths matching their allocations.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                capacity as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Datagram `i` of the last call and its source, if the source is an IP address.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let len = (self.headers.get(i)?.msg_len as usize).min(self.buffer_len);
        let data = &self.buffers[i * self.buffer_len..i * self.buffer_len + len];
        Some((data, from_storage(&self.addrs[i])?))
    }
}

/// Message headers for sending up to `capacity` datagrams per call.
pub struct SendBatch {
    addrs: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl SendBatch {
    /// Room for `capacity` datagrams per call.
    pub fn new(capacity: usize) -> Self {
        SendBatch {
            // SAFETY: all-zero bytes are a valid sockaddr_storage, iovec and mmsghdr.
            addrs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            iovecs: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
            headers: (0..capacity).map(|_| unsafe { zeroed() }).collect(),
        }
    }

    /// Sends `datagrams` (at most [`SendBatch::capacity`] are taken) on the non-blocking socket
    /// `fd`; returns how many the kernel took (`WouldBlock` when none).
    pub fn send<'a>(
        &mut self,
        fd: RawFd,
        datagrams: impl Iterator<Item = (&'a [u8], SocketAddr)>,
    ) -> io::Result<usize> {
        let mut n = 0;
        for (i, (data, to)) in datagrams.take(self.headers.len()).enumerate() {
            let name_len = to_storage(to, &mut self.addrs[i]);
            self.iovecs[i] = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            let hdr = &mut self.headers[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = name_len;
            hdr.msg_iov = &mut self.iovecs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            n = i + 1;
        }
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: the first `n` headers point at address storage owned by `self` and at the
        // callers' datagrams, which are borrowed for the duration of this call.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                self.headers.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_goes_out_and_comes_back_whole() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let to = b.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        let mut send = SendBatch::new(8);
        let mut sent = 0;
        while sent < payloads.len() {
            sent += send
                .send(
                    a.as_raw_fd(),
                    payloads[sent..].iter().map(|p| (p.as_slice(), to)),
                )
                .unwrap();
        }
        let mut recv = RecvBatch::new(16, 2048);
        let mut got = Vec::new();
        for _ in 0..100 {
            match recv.recv(b.as_raw_fd()) {
                Ok(n) => (0..n).for_each(|i| got.push(recv.get(i).unwrap().0.to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got.len() == payloads.len() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, payloads);
        assert_eq!(recv.get(0).unwrap().1, a.local_addr().unwrap());
    }
}
