//! One `recvmmsg` batch: buffers, addresses and control space allocated once and reused for every
//! socket a thread drains.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams read per `recvmmsg` call.
pub const BATCH: usize = 32;
/// Largest datagram kept; longer ones are cut (and then fail authentication).
const MAX_DATAGRAM: usize = 2048;
/// Control space per datagram: an `SO_TIMESTAMPNS` message (a `timespec`) and an `SO_RXQ_OVFL`
/// one (a `u32`), with room to spare.
const CONTROL: usize = 96;

/// Buffers for one `recvmmsg` of up to [`BATCH`] datagrams.
pub struct Batch {
    data: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    control: Vec<u8>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside point only into the batch's own heap buffers, which move with
// it; nothing else holds them.
unsafe impl Send for Batch {}

impl Batch {
    /// Allocates the buffers (about 70 KiB).
    pub fn new() -> Batch {
        // SAFETY: all-zero is a valid value of these plain C structs.
        let mut b = Batch {
            data: vec![0; BATCH * MAX_DATAGRAM],
            names: vec![unsafe { std::mem::zeroed() }; BATCH],
            control: vec![0; BATCH * CONTROL],
            iovs: Vec::with_capacity(BATCH),
            msgs: vec![unsafe { std::mem::zeroed() }; BATCH],
        };
        for i in 0..BATCH {
            let iov = libc::iovec {
                iov_base: b.data[i * MAX_DATAGRAM..].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            b.iovs.push(iov);
        }
        for i in 0..BATCH {
            let h = &mut b.msgs[i].msg_hdr;
            h.msg_name = (&mut b.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut b.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = b.control[i * CONTROL..].as_mut_ptr().cast();
        }
        b
    }

    /// Reads up to [`BATCH`] datagrams from non-blocking socket `fd`; 0 when none is waiting.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for m in &mut self.msgs {
            m.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_hdr.msg_controllen = CONTROL as _;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        loop {
            // SAFETY: every header points at this batch's buffers, which outlive the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    /// Datagram `i` of the last [`Batch::recv`].
    pub fn datagram(&self, i: usize) -> &[u8] {
        let len = (self.msgs[i].msg_len as usize).min(MAX_DATAGRAM);
        &self.data[i * MAX_DATAGRAM..i * MAX_DATAGRAM + len]
    }

    /// Where datagram `i` came from.
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        let name = &self.names[i];
        match i32::from(name.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in here (family AF_INET); storage is
                // large and aligned enough for it.
                let a = unsafe {
                    &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let a = unsafe {
                    &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    /// What the kernel attached to datagram `i`.
    pub fn control(&self, i: usize) -> Control {
        let mut out = Control::default();
        let h = &self.msgs[i].msg_hdr;
        if h.msg_controllen < std::mem::size_of::<libc::cmsghdr>() as _ {
            return out;
        }
        // SAFETY: the kernel filled msg_control with msg_controllen bytes of well-formed control
        // messages; CMSG_FIRSTHDR/CMSG_NXTHDR stay within them, and each message's data has the
        // size its type says.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET {
                    let data = libc::CMSG_DATA(c);
                    match (*c).cmsg_type {
                        libc::SO_RXQ_OVFL => {
                            out.drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                        }
                        libc::SO_TIMESTAMPNS => {
                            let ts = std::ptr::read_unaligned(data.cast::<libc::timespec>());
                            out.arrived_ns = Some(timespec_ns(&ts));
                        }
                        _ => {}
                    }
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        out
    }
}

/// The control messages of one datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    /// When the kernel received it, ns of `CLOCK_REALTIME` (`SO_TIMESTAMPNS`).
    pub arrived_ns: Option<u64>,
    /// The socket's count of datagrams dropped for a full receive buffer (`SO_RXQ_OVFL`; the
    /// kernel attaches it once the count is above zero).
    pub drops: Option<u32>,
}

/// `CLOCK_REALTIME` now, ns (the clock of the kernel's receive timestamps).
pub fn realtime_ns() -> u64 {
    // SAFETY: all-zero is a valid timespec; clock_gettime writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    timespec_ns(&ts)
}

fn timespec_ns(ts: &libc::timespec) -> u64 {
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Prepares a socket for the lean path: a large receive buffer (the forced size when allowed,
/// else as much as `rmem_max` gives), the drop counter and the kernel's receive time on every
/// datagram.
pub fn tune(fd: RawFd) {
    let size: libc::c_int = 8 * 1024 * 1024;
    let one: libc::c_int = 1;
    let set = |opt: libc::c_int, v: &libc::c_int| {
        // SAFETY: fd is an open socket; the value is a c_int of the given size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    // Best effort: without the privilege for the forced size, the plain one is capped.
    if set(libc::SO_RCVBUFFORCE, &size) != 0 {
        set(libc::SO_RCVBUF, &size);
    }
    set(libc::SO_RXQ_OVFL, &one);
    set(libc::SO_TIMESTAMPNS, &one);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_reads_several_datagrams_with_their_sources() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        tune(rx.as_raw_fd());
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut b = Batch::new();
        assert_eq!(b.recv(rx.as_raw_fd()).unwrap(), 0);
        for i in 0..(BATCH + 3) {
            tx.send_to(&[i as u8; 5], to).unwrap();
        }
        let n = b.recv(rx.as_raw_fd()).unwrap();
        assert_eq!(n, BATCH);
        assert_eq!(b.datagram(1), &[1u8; 5]);
        assert_eq!(b.source(0), Some(tx.local_addr().unwrap()));
        let c = b.control(0);
        assert_eq!(c.drops, None);
        let arrived = c.arrived_ns.expect("a receive timestamp");
        assert!(arrived <= realtime_ns());
        assert_eq!(b.recv(rx.as_raw_fd()).unwrap(), 3);
        assert_eq!(b.datagram(2), &[(BATCH + 2) as u8; 5]);
    }
}
