//! One io_uring for one UDP socket, used the way io_uring is meant for datagrams:
//!
//! - **receive**: one multishot `recvmsg` into a ring of provided buffers ([`provided`]); it
//!   keeps posting a completion per datagram until the buffers run out, then is re-armed;
//! - **send**: a plain `send` with a destination per datagram, or one `sendmsg` with
//!   `UDP_SEGMENT` for a run of one destination's datagrams (see [`crate::gso`]); the buffers stay
//!   in their slot ([`sends`]) until the completion;
//! - **one `io_uring_enter` per round**: everything queued in a round is submitted at once
//!   ([`Ring::submit`]), which also runs the completions the kernel deferred;
//! - the socket is a registered (fixed) file, and the ring runs completions cooperatively
//!   (`COOP_TASKRUN`: no interrupt of the worker per completion) where the kernel offers it.
//!
//! The worker waits for the ring's file descriptor to become readable (a completion is posted),
//! so the ring sits in the same event loop as the worker's timers and signaling.

mod provided;
mod sends;

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use self::provided::ProvidedBuffers;
use self::sends::SendSlots;
use crate::sockaddr::from_storage;

/// Submission queue entries.
const SUBMISSION_ENTRIES: u32 = 1024;
/// Completion queue entries: room for a full round of receives and sends.
const COMPLETION_ENTRIES: u32 = 8192;
/// Receive buffers in the provided ring.
const RECEIVE_BUFFERS: u16 = 256;
/// Most datagrams submitted and not yet completed.
pub const MAX_DATAGRAMS_IN_FLIGHT: usize = 8192;
/// User data of the multishot receive; sends use their slot index.
const RECEIVE: u64 = u64::MAX;
/// The header a multishot `recvmsg` writes at the start of each buffer (`struct
/// io_uring_recvmsg_out`: name, control and payload lengths and flags, four `u32`s).
const RECVMSG_OUT_BYTES: usize = 16;
/// The fixed-file index of the socket.
const SOCKET: types::Fixed = types::Fixed(0);

/// What a completion brought.
pub enum Completion<'a> {
    /// A datagram from `source`, truncated to the receive buffer if it was longer.
    Datagram {
        /// Who sent it.
        source: SocketAddr,
        /// Its bytes, valid for the call.
        data: &'a [u8],
    },
    /// A send finished: its buffers (emptied by the receiver, or left for the ring to drop), and
    /// how it went.
    Sent {
        /// The datagrams of the send, in order.
        buffers: &'a mut Vec<Vec<u8>>,
        /// Where they went.
        destination: SocketAddr,
        /// The address they were meant to leave from.
        source: SocketAddr,
        /// Whether they went as one segmented send.
        segmented: bool,
        /// Bytes sent, or why not.
        result: io::Result<usize>,
    },
    /// The receive failed with something other than running out of buffers.
    ReceiveFailed(io::Error),
}

/// The io_uring of one worker's UDP socket.
pub struct Ring {
    // Dropped first: closing the ring ends the kernel's use of the buffers and slots below.
    ring: IoUring,
    buffers: ProvidedBuffers,
    sends: SendSlots,
    /// Only the name and control lengths matter to a multishot receive; boxed so that it stays
    /// put while the receive is armed.
    receive_header: Box<libc::msghdr>,
    receiving: bool,
}

impl Ring {
    /// A ring for `socket` (which it then uses alone, in blocking mode, so that the kernel parks
    /// a send on a full socket buffer instead of failing it), with every receive buffer offered;
    /// a datagram longer than `max_datagram` bytes arrives truncated to that length.
    ///
    /// Fails where io_uring, multishot receive or provided-buffer rings are unavailable (a
    /// kernel before 6.0, a seccomp profile or `kernel.io_uring_disabled`): the caller falls back
    /// to the sendmmsg shell.
    pub fn new(socket: &std::net::UdpSocket, max_datagram: usize) -> io::Result<Ring> {
        if !kernel_at_least(6, 0) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "multishot recvmsg needs Linux 6.0 or later",
            ));
        }
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_single_issuer()
            .setup_cqsize(COMPLETION_ENTRIES)
            .build(SUBMISSION_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(COMPLETION_ENTRIES)
                    .build(SUBMISSION_ENTRIES)
            })?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for code in [
            opcode::RecvMsg::CODE,
            opcode::SendMsg::CODE,
            opcode::Send::CODE,
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring opcode {code} is not supported"),
                ));
            }
        }
        ring.submitter().register_files(&[socket.as_raw_fd()])?;
        // SAFETY: all-zero bytes are a valid msghdr.
        let mut receive_header: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        receive_header.msg_namelen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        let buffer_len = RECVMSG_OUT_BYTES + size_of::<libc::sockaddr_in6>() + max_datagram;
        let buffers = ProvidedBuffers::new(RECEIVE_BUFFERS, buffer_len, 0)?;
        buffers.register(&ring.submitter())?;
        // Last, once nothing can fail any more: a worker that falls back to the sendmmsg shell
        // needs its socket non-blocking as it was.
        socket.set_nonblocking(false)?;
        Ok(Ring {
            ring,
            buffers,
            sends: SendSlots::default(),
            receive_header,
            receiving: false,
        })
    }

    /// Arms the multishot receive unless it is armed (it ends when the buffers run out).
    pub fn arm_receive(&mut self) -> io::Result<()> {
        if self.receiving {
            return Ok(());
        }
        let entry = opcode::RecvMsgMulti::new(
            SOCKET,
            &*self.receive_header as *const libc::msghdr,
            self.buffers.group(),
        )
        .build()
        .user_data(RECEIVE);
        self.push(&entry)?;
        self.receiving = true;
        Ok(())
    }

    /// Queues `buffers` (emptied) to `destination`: as one plain send when there is one, as one
    /// segmented send cut at `segment` bytes when there are more.
    pub fn send(
        &mut self,
        buffers: &mut Vec<Vec<u8>>,
        source: SocketAddr,
        destination: SocketAddr,
        segment: usize,
    ) -> io::Result<()> {
        if buffers.is_empty() {
            return Ok(());
        }
        let index = self.sends.start(buffers, source, destination);
        let Some(slot) = self.sends.get_mut(index) else {
            return Err(io::Error::other("send slot vanished"));
        };
        let segmented = slot.buffers.len() > 1;
        let entry = if segmented {
            let segment = u16::try_from(segment)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
            opcode::SendMsg::new(SOCKET, slot.segmented_msghdr(segment)).build()
        } else {
            let data = &slot.buffers[0];
            let (addr, addr_len) = slot.destination_raw();
            opcode::Send::new(SOCKET, data.as_ptr(), data.len() as u32)
                .dest_addr(addr)
                .dest_addr_len(addr_len)
                .build()
        };
        if let Err(e) = self.push(&entry.user_data(u64::from(index))) {
            // Never submitted: hand the buffers back through the slot and free it.
            self.sends
                .finish(index, |slot| buffers.append(&mut slot.buffers));
            return Err(e);
        }
        Ok(())
    }

    /// How many more datagrams may be submitted before the in-flight bound.
    pub fn send_room(&self) -> usize {
        MAX_DATAGRAMS_IN_FLIGHT.saturating_sub(self.sends.datagrams_in_flight())
    }

    /// Submits everything queued with one `io_uring_enter` (none when nothing is queued and the
    /// kernel has no deferred completions to run).
    pub fn submit(&mut self) -> io::Result<()> {
        let pending = {
            let mut sq = self.ring.submission();
            sq.sync();
            !sq.is_empty() || sq.taskrun() || sq.cq_overflow()
        };
        if pending {
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether completions are waiting to be reaped.
    pub fn has_completions(&mut self) -> bool {
        let mut cq = self.ring.completion();
        cq.sync();
        !cq.is_empty()
    }

    /// Hands posted completions to `on`, in order, until `max_datagrams` datagrams were handed
    /// over or none is left; returns how many completions it took. Receive buffers go back to the
    /// kernel once `on` returns; send buffers that `on` leaves in `Sent::buffers` are dropped.
    pub fn reap(&mut self, max_datagrams: usize, mut on: impl FnMut(Completion<'_>)) -> usize {
        let mut taken = 0;
        let mut datagrams = 0;
        let mut gave_back = false;
        while datagrams < max_datagrams {
            let entry = {
                let mut cq = self.ring.completion();
                cq.sync();
                cq.next()
            };
            let Some(entry) = entry else { break };
            taken += 1;
            let result = entry.result();
            if entry.user_data() == RECEIVE {
                if !cqueue::more(entry.flags()) {
                    self.receiving = false;
                }
                if result < 0 {
                    // Out of buffers is not an error: the datagrams wait in the socket until the
                    // receive is re-armed with the buffers given back below.
                    if -result != libc::ENOBUFS {
                        on(Completion::ReceiveFailed(io::Error::from_raw_os_error(
                            -result,
                        )));
                    }
                    continue;
                }
                let Some(id) = cqueue::buffer_select(entry.flags()) else {
                    continue;
                };
                if let Some(buffer) = self.buffers.get(id, result as usize) {
                    if let Ok(message) = types::RecvMsgOut::parse(buffer, &self.receive_header) {
                        if let Some(source) = source_of(message.name_data()) {
                            datagrams += 1;
                            on(Completion::Datagram {
                                source,
                                data: message.payload_data(),
                            });
                        }
                    }
                }
                self.buffers.give_back(id);
                gave_back = true;
            } else {
                self.sends.finish(entry.user_data() as u32, |slot| {
                    let result = if result < 0 {
                        Err(io::Error::from_raw_os_error(-result))
                    } else {
                        Ok(result as usize)
                    };
                    on(Completion::Sent {
                        destination: slot.destination,
                        source: slot.source,
                        segmented: slot.buffers.len() > 1,
                        buffers: &mut slot.buffers,
                        result,
                    });
                });
            }
        }
        if gave_back {
            self.buffers.publish();
        }
        taken
    }

    /// Queues one submission, submitting what is queued first if the queue is full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        // SAFETY: every pointer in the entries built here (the receive header, a slot's buffers,
        // address, iovecs and header) lives in `self` and stays put until its completion.
        if unsafe { self.ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        self.ring.submit()?;
        // SAFETY: as above.
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))
    }
}

impl AsRawFd for Ring {
    /// The ring's file descriptor: readable when completions are posted.
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// The source address a multishot receive wrote into the name field of its buffer.
fn source_of(name: &[u8]) -> Option<SocketAddr> {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = name.len().min(size_of::<libc::sockaddr_storage>());
    // SAFETY: `len` bytes fit in both.
    unsafe {
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        );
    }
    from_storage(&storage)
}

/// Whether the running kernel's release is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    // SAFETY: all-zero bytes are a valid utsname, which uname fills.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is a valid, writable utsname.
    if unsafe { libc::uname(&mut name) } != 0 {
        return false;
    }
    let release: String = name
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const MAX_DATAGRAM: usize = 2048;

    fn pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        (a, b)
    }

    /// Reaps until `want` datagrams arrived or two seconds passed.
    fn receive(ring: &mut Ring, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < want && Instant::now() < deadline {
            ring.arm_receive().unwrap();
            ring.submit().unwrap();
            ring.reap(usize::MAX, |c| {
                if let Completion::Datagram { source, data } = c {
                    got.push((source, data.to_vec()));
                }
            });
            std::thread::sleep(Duration::from_millis(1));
        }
        got
    }

    #[test]
    fn datagrams_arrive_through_the_multishot_receive_past_the_buffer_count() {
        let (server, client) = pair();
        let mut ring = Ring::new(&server, MAX_DATAGRAM).unwrap();
        let to = server.local_addr().unwrap();
        // More than the ring has buffers: the receive ends (out of buffers) and is re-armed.
        let count = usize::from(RECEIVE_BUFFERS) * 2 + 10;
        let mut got = Vec::new();
        for i in 0..count {
            client.send_to(&(i as u32).to_be_bytes(), to).unwrap();
            if i % 64 == 63 {
                got.extend(receive(&mut ring, 64));
            }
        }
        got.extend(receive(&mut ring, count - got.len()));
        assert_eq!(got.len(), count);
        for (i, (source, data)) in got.iter().enumerate() {
            assert_eq!(*source, client.local_addr().unwrap());
            assert_eq!(data[..], (i as u32).to_be_bytes());
        }
    }

    #[test]
    fn an_oversized_datagram_arrives_truncated_to_the_buffer() {
        let (server, client) = pair();
        let mut ring = Ring::new(&server, MAX_DATAGRAM).unwrap();
        client
            .send_to(&vec![7u8; MAX_DATAGRAM + 500], server.local_addr().unwrap())
            .unwrap();
        let got = receive(&mut ring, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), MAX_DATAGRAM);
    }

    #[test]
    fn plain_and_segmented_sends_arrive_as_their_datagrams_and_return_their_buffers() {
        let (server, client) = pair();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut ring = Ring::new(&server, MAX_DATAGRAM).unwrap();
        let from = server.local_addr().unwrap();
        let to = client.local_addr().unwrap();
        let mut one = vec![b"single".to_vec()];
        ring.send(&mut one, from, to, 6).unwrap();
        let mut three = vec![vec![1u8; 300], vec![2u8; 300], vec![3u8; 120]];
        ring.send(&mut three, from, to, 300).unwrap();
        assert_eq!(ring.send_room(), MAX_DATAGRAMS_IN_FLIGHT - 4);
        ring.submit().unwrap();
        let mut buf = [0u8; 2048];
        let mut lens = Vec::new();
        for _ in 0..4 {
            let (n, _) = client.recv_from(&mut buf).unwrap();
            lens.push((n, buf[0]));
        }
        assert_eq!(lens, vec![(6, b's'), (300, 1), (300, 2), (120, 3)]);
        let mut returned = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while returned < 4 && Instant::now() < deadline {
            ring.submit().unwrap();
            ring.reap(usize::MAX, |c| {
                if let Completion::Sent {
                    buffers, result, ..
                } = c
                {
                    assert!(result.is_ok());
                    returned += buffers.drain(..).count();
                }
            });
        }
        assert_eq!(returned, 4);
        assert_eq!(ring.send_room(), MAX_DATAGRAMS_IN_FLIGHT);
    }

    #[test]
    fn the_ring_fd_wakes_a_poller_when_a_datagram_arrives() {
        // The worker sleeps in epoll on the ring's fd: a datagram must wake it even with
        // cooperative task running (completions deferred to the next kernel entry).
        let (server, client) = pair();
        let mut ring = Ring::new(&server, MAX_DATAGRAM).unwrap();
        ring.arm_receive().unwrap();
        ring.submit().unwrap();
        let to = server.local_addr().unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            client.send_to(b"wake", to).unwrap();
        });
        let mut fds = libc::pollfd {
            fd: ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut fds, 1, 2000) };
        sender.join().unwrap();
        assert_eq!(n, 1, "poll on the ring's fd did not wake");
        assert_eq!(receive(&mut ring, 1).len(), 1);
    }

    #[test]
    fn kernel_versions_compare() {
        assert!(kernel_at_least(2, 6));
        assert!(!kernel_at_least(999, 0));
    }
}
