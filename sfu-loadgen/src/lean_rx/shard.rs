//! One lean receive thread: waits for readiness on every socket it was handed (epoll), drains each
//! ready one with `recvmmsg`, opens and counts the media, and passes the rest to the sessions.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use sfu_client::handoff::{MediaHandoff, SessionDatagram};
use str0m::rtp::SrtpReceiver;
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use super::batch::{self, Batch, BATCH};
use super::packet::{classify, unpad, Kind, RtpHeader};
use super::sequence::{Seen, SeqTracker};
use crate::payload::Stamp;
use crate::tally::Tally;
use crate::transport::Arrival;

/// Batches read from one ready socket before the others get a turn (epoll reports it again).
const BATCHES_PER_TURN: usize = 8;
/// Pause after a round that read less than a batch per ready socket, so that datagrams pile up
/// and the next `recvmmsg` calls read more each. Latency is taken from the kernel's receive
/// timestamp, so the pause does not show in it; sockets have large buffers, so nothing is lost.
const COALESCE: Duration = Duration::from_millis(2);
/// epoll data of the wake-up eventfd; sockets use their slot number.
const WAKE_TOKEN: u64 = u64::MAX;

/// What the other threads ask a shard.
pub(super) enum Cmd {
    /// A receiver's tally, before any of its sockets.
    Register { receiver: u64, tally: Box<Tally> },
    /// A socket of a registered receiver.
    Attach {
        receiver: u64,
        handoff: Box<MediaHandoff>,
    },
    /// Stop reading the receiver's sockets and send back its tally.
    Finish {
        receiver: u64,
        reply: oneshot::Sender<Box<Tally>>,
    },
}

/// The other threads' way to a shard: its command queue and the eventfd that wakes it.
#[derive(Debug, Clone)]
pub(super) struct Link {
    tx: mpsc::Sender<Cmd>,
    wake: Arc<OwnedFd>,
}

impl Link {
    /// Queues `cmd` and wakes the thread.
    pub(super) fn send(&self, cmd: Cmd) -> io::Result<()> {
        self.tx
            .send(cmd)
            .map_err(|_| io::Error::other("the lean receive thread has stopped"))?;
        wake(&self.wake)
    }
}

fn wake(eventfd: &OwnedFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writing 8 bytes from a u64 to an eventfd we own.
    let n = unsafe { libc::write(eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    if n != 8 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A running shard thread; dropping it stops the thread.
#[derive(Debug)]
pub(super) struct Shard {
    link: Link,
    stop: Arc<AtomicBool>,
    tid: Arc<AtomicI32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Shard {
    /// Starts the thread (named `name`).
    pub(super) fn start(name: String) -> io::Result<Shard> {
        // SAFETY: plain system calls; the returned descriptors are checked and owned below.
        let wake = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if wake < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd returned a new descriptor that nothing else owns.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(wake) });
        // SAFETY: as above.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: epoll_create1 returned a new descriptor that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        watch(epoll.as_raw_fd(), wake.as_raw_fd(), WAKE_TOKEN)?;
        let (tx, rx) = mpsc::channel();
        let tid = Arc::new(AtomicI32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            epoll,
            wake: wake.clone(),
            stop: stop.clone(),
            rx,
            receivers: HashMap::new(),
            sockets: Vec::new(),
            free: Vec::new(),
            batch: Batch::new(),
        };
        let thread_tid = tid.clone();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            // SAFETY: gettid has no preconditions.
            thread_tid.store(unsafe { libc::gettid() }, Ordering::Relaxed);
            worker.run();
        })?;
        Ok(Shard {
            link: Link { tx, wake },
            stop,
            tid,
            thread: Some(thread),
        })
    }

    /// Its command link.
    pub(super) fn link(&self) -> Link {
        self.link.clone()
    }

    /// The thread's id (0 until it started), for its CPU time in `/proc/self/task/<tid>`.
    pub(super) fn tid(&self) -> i32 {
        self.tid.load(Ordering::Relaxed)
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = wake(&self.link.wake) {
            tracing::warn!("lean receiver: waking the thread to stop: {e}");
            return;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(epoll: RawFd, fd: RawFd, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: both descriptors are open; ev is a valid epoll_event.
    if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One socket the thread reads.
struct Socket {
    receiver: u64,
    socket: std::net::UdpSocket,
    /// `None`: plain RTP (the reflector's participants).
    srtp: Option<SrtpReceiver>,
    session: tokio_mpsc::Sender<SessionDatagram>,
    streams: HashMap<u32, SeqTracker>,
    /// The kernel's drop count for this socket, as last reported.
    drops: u32,
}

struct Worker {
    epoll: OwnedFd,
    wake: Arc<OwnedFd>,
    /// Set by [`Shard`]'s drop: the thread ends (receivers may still hold links).
    stop: Arc<AtomicBool>,
    rx: mpsc::Receiver<Cmd>,
    receivers: HashMap<u64, Box<Tally>>,
    sockets: Vec<Option<Socket>>,
    free: Vec<usize>,
    batch: Batch,
}

impl Worker {
    fn run(mut self) {
        // SAFETY: all-zero is a valid epoll_event.
        let mut events = vec![unsafe { std::mem::zeroed::<libc::epoll_event>() }; 64];
        loop {
            // SAFETY: events has room for the number of entries passed.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    -1,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("lean receiver: epoll_wait: {e}");
                return;
            }
            let (mut sockets, mut read) = (0, 0);
            for ev in &events[..n as usize] {
                let token = ev.u64;
                if token == WAKE_TOKEN {
                    if !self.commands() {
                        return;
                    }
                } else {
                    sockets += 1;
                    read += self.drain(token as usize);
                }
            }
            if sockets > 0 && read < sockets * BATCH {
                std::thread::sleep(COALESCE);
            }
        }
    }

    /// Handles queued commands; `false` when it is time to stop.
    fn commands(&mut self) -> bool {
        let mut count: u64 = 0;
        // SAFETY: reading 8 bytes into a u64 from our non-blocking eventfd.
        unsafe { libc::read(self.wake.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        if self.stop.load(Ordering::SeqCst) {
            return false;
        }
        loop {
            match self.rx.try_recv() {
                Ok(Cmd::Register { receiver, tally }) => {
                    self.receivers.insert(receiver, tally);
                }
                Ok(Cmd::Attach { receiver, handoff }) => self.attach(receiver, *handoff),
                Ok(Cmd::Finish { receiver, reply }) => {
                    if let Some(tally) = self.finish(receiver) {
                        let _ = reply.send(tally);
                    }
                }
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn attach(&mut self, receiver: u64, h: MediaHandoff) {
        if !self.receivers.contains_key(&receiver) {
            // Finished already (a join that gave up): nothing to count for.
            return;
        }
        let fd = h.socket.as_raw_fd();
        batch::tune(fd);
        let slot = self.free.pop().unwrap_or(self.sockets.len());
        if let Err(e) = watch(self.epoll.as_raw_fd(), fd, slot as u64) {
            tracing::warn!("lean receiver: watching a socket: {e}");
            return;
        }
        let socket = Socket {
            receiver,
            socket: h.socket,
            srtp: h.srtp,
            session: h.session,
            streams: HashMap::new(),
            drops: 0,
        };
        if slot == self.sockets.len() {
            self.sockets.push(Some(socket));
        } else {
            self.sockets[slot] = Some(socket);
        }
        // Whatever queued up before the socket was watched is read now.
        let _ = self.drain(slot);
    }

    fn finish(&mut self, receiver: u64) -> Option<Box<Tally>> {
        let mut tally = self.receivers.remove(&receiver)?;
        for slot in 0..self.sockets.len() {
            if self.sockets[slot].as_ref().map(|s| s.receiver) != Some(receiver) {
                continue;
            }
            let Some(s) = self.sockets[slot].take() else {
                continue;
            };
            // SAFETY: the descriptor is open and watched by this epoll.
            unsafe {
                libc::epoll_ctl(
                    self.epoll.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    s.socket.as_raw_fd(),
                    std::ptr::null_mut(),
                );
            }
            tally.lean.socket_drops += u64::from(s.drops);
            tally.lean.seq_missing += s.streams.values().map(SeqTracker::missing).sum::<u64>();
            self.free.push(slot);
        }
        Some(tally)
    }

    /// Reads socket `slot` until it is empty (or had its turn); returns the datagrams read.
    fn drain(&mut self, slot: usize) -> usize {
        let Some(Some(s)) = self.sockets.get_mut(slot) else {
            return 0;
        };
        let Some(tally) = self.receivers.get_mut(&s.receiver) else {
            return 0;
        };
        let fd = s.socket.as_raw_fd();
        let mut read = 0;
        for _ in 0..BATCHES_PER_TURN {
            let n = match self.batch.recv(fd) {
                Ok(n) => n,
                Err(e) => {
                    // An ICMP error queued on the socket (a port that went away) surfaces here;
                    // the next read goes on.
                    tracing::debug!("lean receiver: recvmmsg: {e}");
                    continue;
                }
            };
            read += n;
            // The kernel stamps arrivals on CLOCK_REALTIME: each datagram's age, taken from one
            // reading of both clocks, dates it on the monotonic clock the payload stamps use.
            let (now, now_rt) = (Instant::now(), batch::realtime_ns());
            for i in 0..n {
                let control = self.batch.control(i);
                if let Some(d) = control.drops {
                    s.drops = d;
                }
                let at = control.arrived_ns.map_or(now, |t| {
                    now.checked_sub(Duration::from_nanos(now_rt.saturating_sub(t)))
                        .unwrap_or(now)
                });
                on_datagram(s, tally, &self.batch, i, at);
            }
            if n < BATCH {
                break;
            }
        }
        read
    }
}

/// One datagram: media is opened and counted here, the rest goes to the session.
fn on_datagram(s: &mut Socket, tally: &mut Tally, batch: &Batch, i: usize, at: Instant) {
    let d = batch.datagram(i);
    tally.lean.datagrams += 1;
    match classify(d) {
        Kind::Rtp(h) => on_rtp(s, tally, d, h, at),
        Kind::Stun | Kind::Dtls | Kind::Rtcp if s.srtp.is_some() => {
            tally.lean.to_session += 1;
            let Some(source) = batch.source(i) else {
                tally.lean.session_dropped += 1;
                return;
            };
            let dg = SessionDatagram {
                source,
                at,
                contents: d.to_vec(),
            };
            match s.session.try_send(dg) {
                Ok(()) => {}
                Err(tokio_mpsc::error::TrySendError::Full(_)) => tally.lean.session_dropped += 1,
                Err(tokio_mpsc::error::TrySendError::Closed(_)) => tally.lean.session_gone += 1,
            }
        }
        // Plain RTP has no session: the reflector's control answers end here.
        Kind::Stun | Kind::Dtls | Kind::Rtcp => {}
        Kind::Other => tally.lean.malformed += 1,
    }
}

fn on_rtp(s: &mut Socket, tally: &mut Tally, d: &[u8], h: RtpHeader, at: Instant) {
    let tracker = s.streams.entry(h.ssrc).or_default();
    let Some(index) = tracker.index_of(h.seq) else {
        tally.lean.too_old += 1;
        return;
    };
    // Like SRTP's replay check: a packet seen before is not opened again.
    match tracker.check(index) {
        Seen::New => {}
        Seen::Duplicate => {
            tally.lean.duplicates += 1;
            return;
        }
        Seen::TooOld => {
            tally.lean.too_old += 1;
            return;
        }
    }
    let payload = match &mut s.srtp {
        Some(srtp) => match srtp.unprotect_rtp(d, h.len, h.ssrc, index) {
            Some(p) => p,
            None => {
                tally.lean.auth_failed += 1;
                return;
            }
        },
        None => &d[h.len..],
    };
    tracker.accept(index);
    tally.lean.media += 1;
    let Some(payload) = unpad(payload, h.padded) else {
        tally.lean.malformed += 1;
        return;
    };
    match Stamp::parse(payload) {
        Some(stamp) => tally.record(&Arrival {
            stamp,
            len: payload.len(),
            at,
            marker: d[1] & 0x80 != 0,
        }),
        None if payload.is_empty() => tally.lean.padding_only += 1,
        None => tally.lean.unstamped += 1,
    }
}
