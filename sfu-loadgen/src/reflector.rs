//! The kernel ceiling: a plain UDP reflector with the SFU's fan-out and no crypto.
//!
//! Participants register with a small control datagram naming their room; every RTP-looking
//! datagram (first byte `0b10xx_xxxx`) from a registered address is sent, unchanged, to every other
//! member of its room. Datagrams are read with `recvmmsg` (up to [`BATCH`] per call) and the copies
//! written with `sendmmsg` pointing at the same receive buffer, so the reflector's cost is almost
//! only the kernel's: what edge-sfu's figures are compared against.
//!
//! Control datagrams (all start with a 4-byte tag): `ESLR` + room (u32 LE) registers the sender
//! and is answered `ESLA`; `ESLL` unregisters it; `ESLS` asks for counters, answered `ESLT` +
//! received, forwarded, members (three u64 LE).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Datagrams read per `recvmmsg`.
pub const BATCH: usize = 64;
/// Copies written per `sendmmsg` at most.
const OUT_BATCH: usize = 1024;
/// Largest datagram handled.
const MAX_DATAGRAM: usize = 2048;

/// Control tag: register (followed by the room number).
pub const TAG_REGISTER: [u8; 4] = *b"ESLR";
/// Control tag: the answer to a registration.
pub const TAG_ACK: [u8; 4] = *b"ESLA";
/// Control tag: unregister.
pub const TAG_LEAVE: [u8; 4] = *b"ESLL";
/// Control tag: ask for counters.
pub const TAG_STATS: [u8; 4] = *b"ESLS";
/// Control tag: the counters.
pub const TAG_STATS_REPLY: [u8; 4] = *b"ESLT";

/// The reflector's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReflectorStats {
    /// Media datagrams received from registered members.
    pub received: u64,
    /// Copies sent.
    pub forwarded: u64,
    /// Registered members.
    pub members: u64,
}

impl ReflectorStats {
    /// Parses an `ESLT` answer.
    pub fn parse(buf: &[u8]) -> Option<ReflectorStats> {
        if buf.get(..4)? != TAG_STATS_REPLY {
            return None;
        }
        let at = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(buf.get(i..i + 8)?.try_into().ok()?))
        };
        Some(ReflectorStats {
            received: at(4)?,
            forwarded: at(12)?,
            members: at(20)?,
        })
    }

    fn encode(&self) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[..4].copy_from_slice(&TAG_STATS_REPLY);
        b[4..12].copy_from_slice(&self.received.to_le_bytes());
        b[12..20].copy_from_slice(&self.forwarded.to_le_bytes());
        b[20..28].copy_from_slice(&self.members.to_le_bytes());
        b
    }
}

/// Rooms and members.
#[derive(Default)]
struct Rooms {
    room_of: HashMap<SocketAddrV4, u32>,
    members: HashMap<u32, Vec<SocketAddrV4>>,
}

impl Rooms {
    fn register(&mut self, who: SocketAddrV4, room: u32) {
        self.leave(who);
        self.room_of.insert(who, room);
        self.members.entry(room).or_default().push(who);
    }

    fn leave(&mut self, who: SocketAddrV4) {
        if let Some(room) = self.room_of.remove(&who) {
            if let Some(list) = self.members.get_mut(&room) {
                list.retain(|m| *m != who);
            }
        }
    }
}

/// Binds `listen` (IPv4) with 4 MiB socket buffers.
pub fn bind(listen: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(listen)?;
    let fd = socket.as_raw_fd();
    let size: libc::c_int = 4 * 1024 * 1024;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: fd is a valid socket; the option value is a c_int of the given size.
        // Best effort, like edge-sfu's media sockets (the kernel caps at rmem_max/wmem_max).
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    Ok(socket)
}

/// Runs the reflector on `socket` until nothing arrived for `idle_exit` (then returns its counters).
pub fn serve(socket: &UdpSocket, idle_exit: Duration) -> io::Result<ReflectorStats> {
    let fd = socket.as_raw_fd();
    let mut rooms = Rooms::default();
    let mut stats = ReflectorStats::default();
    let mut bufs = vec![[0u8; MAX_DATAGRAM]; BATCH];
    // SAFETY (for the zeroed structs below): all-zero is a valid value of these plain C structs.
    let mut names: Vec<libc::sockaddr_in> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(BATCH);
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut out = OutQueue::new();
    let mut last_traffic = Instant::now();

    loop {
        iovs.clear();
        for (i, buf) in bufs.iter_mut().enumerate() {
            iovs.push(libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            });
            let m = &mut msgs[i];
            m.msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = std::ptr::null_mut();
            m.msg_hdr.msg_controllen = 0;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        // SAFETY: msgs points at BATCH initialised headers whose buffers outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => {
                    if last_traffic.elapsed() > idle_exit {
                        return Ok(stats);
                    }
                    continue;
                }
                // An ICMP port unreachable from a departed member surfaces here; ignore it.
                io::ErrorKind::ConnectionRefused => continue,
                _ => return Err(e),
            }
        }
        last_traffic = Instant::now();
        for i in 0..n as usize {
            let len = (msgs[i].msg_len as usize).min(MAX_DATAGRAM);
            let from = from_sockaddr(&names[i]);
            let data = &bufs[i][..len];
            if data.first().is_some_and(|b| b >> 6 == 2) {
                let Some(room) = rooms.room_of.get(&from) else {
                    continue;
                };
                stats.received += 1;
                if let Some(list) = rooms.members.get(room) {
                    for dest in list.iter().filter(|d| **d != from) {
                        if out.is_full() {
                            out.flush(fd);
                        }
                        out.push(data, *dest);
                        stats.forwarded += 1;
                    }
                }
                continue;
            }
            // Control: flush queued copies first (they point at buffers and addresses).
            out.flush(fd);
            match data.get(..4) {
                Some(t) if t == TAG_REGISTER => {
                    let room = data
                        .get(4..8)
                        .and_then(|b| b.try_into().ok())
                        .map(u32::from_le_bytes)
                        .unwrap_or(0);
                    rooms.register(from, room);
                    reply(socket, &TAG_ACK, from);
                }
                Some(t) if t == TAG_LEAVE => rooms.leave(from),
                Some(t) if t == TAG_STATS => {
                    stats.members = rooms.room_of.len() as u64;
                    reply(socket, &stats.encode(), from);
                }
                _ => {}
            }
        }
        out.flush(fd);
    }
}

fn reply(socket: &UdpSocket, bytes: &[u8], to: SocketAddrV4) {
    if let Err(e) = socket.send_to(bytes, to) {
        tracing::debug!("reflector reply to {to}: {e}");
    }
}

fn from_sockaddr(a: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        u32::from_be(a.sin_addr.s_addr).into(),
        u16::from_be(a.sin_port),
    )
}

fn to_sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

/// Copies waiting for one `sendmmsg`: each points at a receive buffer (valid until the next
/// `recvmmsg`, and every queue is flushed before that).
struct OutQueue {
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_in>,
    msgs: Vec<libc::mmsghdr>,
}

impl OutQueue {
    fn new() -> Self {
        OutQueue {
            iovs: Vec::with_capacity(OUT_BATCH),
            names: Vec::with_capacity(OUT_BATCH),
            msgs: Vec::with_capacity(OUT_BATCH),
        }
    }

    fn is_full(&self) -> bool {
        self.iovs.len() >= OUT_BATCH
    }

    fn push(&mut self, data: &[u8], dest: SocketAddrV4) {
        self.iovs.push(libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        });
        self.names.push(to_sockaddr(dest));
    }

    fn flush(&mut self, fd: i32) {
        if self.iovs.is_empty() {
            return;
        }
        self.msgs.clear();
        for i in 0..self.iovs.len() {
            // SAFETY: all-zero is a valid mmsghdr; the pointers set below stay valid (the vectors
            // are not touched) until the sendmmsg calls below return.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut self.iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            self.msgs.push(m);
        }
        let mut done = 0;
        while done < self.msgs.len() {
            let left = &mut self.msgs[done..];
            // SAFETY: `left` holds initialised headers pointing at live buffers and addresses.
            let n = unsafe { libc::sendmmsg(fd, left.as_mut_ptr(), left.len() as libc::c_uint, 0) };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first message failed (e.g. a departed member's port): skip it.
                done += 1;
            } else {
                done += n as usize;
            }
        }
        self.iovs.clear();
        self.names.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_round_trip() {
        let s = ReflectorStats {
            received: 1,
            forwarded: 2,
            members: 3,
        };
        assert_eq!(ReflectorStats::parse(&s.encode()), Some(s));
        assert_eq!(ReflectorStats::parse(b"nope"), None);
    }

    #[test]
    fn reflects_to_every_other_member_of_the_room_only() {
        let server = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        std::thread::spawn(move || serve(&server, Duration::from_secs(3)));
        let sock = |room: u32| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut reg = TAG_REGISTER.to_vec();
            reg.extend_from_slice(&room.to_le_bytes());
            s.send_to(&reg, addr).unwrap();
            let mut b = [0u8; 64];
            let (n, _) = s.recv_from(&mut b).unwrap();
            assert_eq!(&b[..n], &TAG_ACK);
            s
        };
        let (a, b, c, other) = (sock(1), sock(1), sock(1), sock(2));
        a.send_to(&[0x80, 1, 2, 3], addr).unwrap();
        let mut buf = [0u8; 64];
        for s in [&b, &c] {
            let (n, _) = s.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[0x80, 1, 2, 3]);
        }
        other
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(other.recv_from(&mut buf).is_err());
        a.send_to(&TAG_STATS, addr).unwrap();
        let (n, _) = a.recv_from(&mut buf).unwrap();
        let stats = ReflectorStats::parse(&buf[..n]).unwrap();
        assert_eq!((stats.received, stats.forwarded, stats.members), (1, 2, 4));
    }
}
