//! ICE over TCP: the worker's passive TCP listener (RFC 6544) and one task per connection, which
//! unframes RFC 4571 (a 16-bit length, then the datagram) into the core and frames the core's
//! TCP transmits back.
//!
//! The same on both I/O shells: TCP is the fallback for clients whose UDP is blocked, so it runs
//! on tokio's readiness-based sockets (both shells run on a tokio loop) rather than
//! on a second set of io_uring operations.
//!
//! Every connection is hostile until the core admits it: its first frame must be STUN, every
//! frame must fit the datagram limit, a frame once begun must arrive within [`STALL_TIMEOUT`], and
//! it must carry a valid ICE check within [`ADMISSION_TIMEOUT`]. Breaking a rule closes that
//! connection (counted under a drop reason) and nothing else.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sfu_core::demux::FiveTuple;
use sfu_core::wire::{append_frame, FrameRules};
use sfu_core::DropReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

use super::{Shared, RECV_BUFFER_BYTES};

/// Connections one worker holds at once; more are refused at accept.
const MAX_CONNECTIONS: usize = 1024;
/// How long a connection may go without a STUN check the core accepts.
const ADMISSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the rest of a frame may take once its length arrived, and how long one write to a
/// client may block. Shorter than [`ADMISSION_TIMEOUT`], so a stall is told apart from silence.
const STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames queued for one client before new ones are dropped (it does not read fast enough).
const OUTBOX_FRAMES: usize = 512;
/// Bytes gathered into one write: several frames per system call when the core sends a burst.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Why a connection ended.
enum Close {
    /// The client closed it or the socket failed: nothing to count.
    Gone,
    /// It broke a rule, counted under this reason.
    Refused(DropReason),
}

/// A live connection, as the rest of the worker sees it.
struct Route {
    /// Frames to write to it.
    outbox: mpsc::Sender<Vec<u8>>,
    /// The core learned its 5-tuple from a valid STUN check.
    admitted: Rc<Cell<bool>>,
    /// Tells its task to close it (its peer is gone).
    close: Rc<Notify>,
}

/// The worker's ICE-TCP connections by (remote, local) address pair.
#[derive(Default)]
pub(super) struct TcpRoutes {
    routes: RefCell<HashMap<FiveTuple, Route>>,
}

impl TcpRoutes {
    /// Queues a frame for the connection `tuple`; hands the buffer back when it cannot be queued.
    pub(super) fn send(&self, tuple: FiveTuple, frame: Vec<u8>) -> Result<(), (Vec<u8>, bool)> {
        let routes = self.routes.borrow();
        let Some(route) = routes.get(&tuple) else {
            return Err((frame, false));
        };
        route.outbox.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(f) => (f, true),
            mpsc::error::TrySendError::Closed(f) => (f, false),
        })
    }

    /// The core admitted (`true`) or revoked (`false`) the connection `tuple`.
    pub(super) fn set_admitted(&self, tuple: FiveTuple, admitted: bool) {
        if let Some(route) = self.routes.borrow().get(&tuple) {
            route.admitted.set(admitted);
            if !admitted {
                route.close.notify_one();
            }
        }
    }

    /// Open connections.
    pub(super) fn len(&self) -> usize {
        self.routes.borrow().len()
    }
}

/// Accepts ICE-TCP connections until the worker stops.
pub(super) async fn accept_loop(shared: Rc<Shared>, listener: std::net::TcpListener) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "cannot register the ICE-TCP listener: no ICE over TCP on this worker");
            return;
        }
    };
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                debug!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.tcp.len() >= MAX_CONNECTIONS {
            shared.core.borrow_mut().count_drop(DropReason::TcpTooMany);
            continue;
        }
        // The listener is dual-stack: an IPv4 client's addresses come v4-mapped.
        let local = match stream.local_addr() {
            Ok(a) => crate::net::canonical(a),
            Err(_) => continue,
        };
        let remote = crate::net::canonical(remote);
        let _ = stream.set_nodelay(true);
        shared.tcp_accepted.set(shared.tcp_accepted.get() + 1);
        tokio::task::spawn_local(connection(shared.clone(), stream, remote, local));
    }
}

/// Runs one connection from accept to close.
async fn connection(shared: Rc<Shared>, stream: TcpStream, remote: SocketAddr, local: SocketAddr) {
    let tuple = (remote, local);
    let (reader, writer) = stream.into_split();
    let (outbox, frames) = mpsc::channel(OUTBOX_FRAMES);
    let admitted = Rc::new(Cell::new(false));
    let close = Rc::new(Notify::new());
    shared.tcp.routes.borrow_mut().insert(
        tuple,
        Route {
            outbox,
            admitted: admitted.clone(),
            close: close.clone(),
        },
    );
    debug!(%remote, %local, "ICE-TCP connection");
    let end = tokio::select! {
        end = read_frames(&shared, reader, tuple) => end,
        end = write_frames(&shared, writer, frames) => end,
        () = close.notified() => Close::Gone,
        () = admission(&admitted) => Close::Refused(DropReason::TcpNotAdmitted),
    };
    shared.tcp.routes.borrow_mut().remove(&tuple);
    {
        let mut core = shared.core.borrow_mut();
        core.tcp_closed(remote, local);
        if let Close::Refused(reason) = end {
            core.count_drop(reason);
            info!(%remote, reason = reason.as_str(), "ICE-TCP connection closed");
        }
    }
    shared.flush();
}

/// Resolves when the connection is still not admitted after [`ADMISSION_TIMEOUT`].
async fn admission(admitted: &Cell<bool>) {
    tokio::time::sleep(ADMISSION_TIMEOUT).await;
    if !admitted.get() {
        return;
    }
    std::future::pending().await
}

/// Reads frames and hands each to the core.
async fn read_frames(shared: &Shared, reader: OwnedReadHalf, tuple: FiveTuple) -> Close {
    let mut reader = BufReader::with_capacity(16 * 1024, reader);
    let mut buf = vec![0u8; RECV_BUFFER_BYTES];
    let mut rules = FrameRules::new(buf.len());
    loop {
        // Between frames a client may be quiet as long as it likes: the core's idle timeout ends
        // a silent peer, and that closes the connection.
        let mut prefix = [0u8; 2];
        if reader.read_exact(&mut prefix).await.is_err() {
            return Close::Gone;
        }
        let len = match rules.frame_len(prefix) {
            Ok(len) => len,
            Err(reason) => return Close::Refused(reason),
        };
        match tokio::time::timeout(STALL_TIMEOUT, reader.read_exact(&mut buf[..len])).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Close::Gone,
            Err(_) => return Close::Refused(DropReason::TcpStalled),
        }
        let frame = &buf[..len];
        if let Err(reason) = rules.accept(frame) {
            return Close::Refused(reason);
        }
        shared
            .core
            .borrow_mut()
            .handle_tcp_frame(Instant::now(), tuple.0, tuple.1, frame);
        shared.flush();
    }
}

/// Writes queued frames, several per system call when they pile up.
async fn write_frames(
    shared: &Shared,
    mut writer: OwnedWriteHalf,
    mut frames: mpsc::Receiver<Vec<u8>>,
) -> Close {
    let mut out = Vec::with_capacity(WRITE_BATCH_BYTES);
    while let Some(frame) = frames.recv().await {
        out.clear();
        append(shared, &mut out, frame);
        while out.len() < WRITE_BATCH_BYTES {
            match frames.try_recv() {
                Ok(frame) => append(shared, &mut out, frame),
                Err(_) => break,
            }
        }
        match tokio::time::timeout(STALL_TIMEOUT, writer.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Close::Gone,
            Err(_) => return Close::Refused(DropReason::TcpStalled),
        }
    }
    Close::Gone
}

/// Appends one RFC 4571 frame to `out` and gives the datagram's buffer back to the core.
fn append(shared: &Shared, out: &mut Vec<u8>, frame: Vec<u8>) {
    // The core never produces a datagram above 64 KiB; one that were would be unframeable.
    append_frame(out, &frame);
    shared.core.borrow_mut().recycle(frame);
}
