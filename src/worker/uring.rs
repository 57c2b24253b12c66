//! The io_uring shell: the worker's [`Ring`] driven from its tokio event loop.
//!
//! A round goes in steps: reap up to [`STEP_DATAGRAMS`] received datagrams (and every send
//! completion, whose buffers go back to the core's pool) and hand them to the core, flush its
//! output, move the send queue into the ring as one segmented send per destination and run
//! ([`GsoPlan`]), re-arm the receive if it ended, and submit it all with one `io_uring_enter`.
//! Between rounds the worker waits for the ring's descriptor (a completion was posted) or for
//! datagrams queued by a timer or a signaling command.

use std::rc::Rc;
use std::time::Instant;

use sfu_core::str0m::net::Protocol;
use sfu_core::{DropReason, Transmit};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::{debug, error, warn};

use super::{serve, Shared, WorkerSpec};
use crate::gso::GsoPlan;
use crate::ring::{Completion, Ring};

/// Received datagrams handed to the core in one step of a round, before its output is flushed
/// and submitted.
const STEP_DATAGRAMS: usize = 32;
/// Steps before a round lets the worker's other tasks (timers, signaling) run.
const STEPS_PER_ROUND: usize = 16;
/// Most queued datagrams planned into sends in one go.
const SEND_CHUNK: usize = 1024;

pub(super) async fn run(spec: WorkerSpec, ring: Ring) {
    let shared = Shared::new(&spec);
    tokio::task::spawn_local(io_loop(shared.clone(), ring, spec.index));
    serve(shared, spec.commands, spec.tcp, spec.index).await;
}

async fn io_loop(shared: Rc<Shared>, ring: Ring, index: usize) {
    // SAFETY: the ring owns its descriptor and keeps it open until it is dropped, which is after
    // the AsyncFd that owns it lets go of it.
    let mut ready = match unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => {
            error!(worker = index, error = %e, "cannot watch the io_uring descriptor");
            return;
        }
    };
    let mut sender = RingSender::new(shared.kernel.as_ref().map(|k| k.handoff()));
    loop {
        let ring = ready.get_mut();
        if let Err(e) = round(&shared, ring, &mut sender) {
            warn!(worker = index, error = %e, "io_uring round failed");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let more = ring.has_completions()
            || (!shared.send_queue.borrow().is_empty() && ring.send_room() > 0);
        if more {
            // Let the timer and signaling tasks run between busy rounds.
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            guard = ready.readable() => match guard {
                // Cleared before the round that reaps: a completion posted during it sets the
                // descriptor ready again.
                Ok(mut guard) => guard.clear_ready(),
                Err(e) => {
                    warn!(worker = index, error = %e, "io_uring readiness failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            _ = shared.send_wake.notified() => {}
        }
    }
}

/// One round, in steps of at most [`STEP_DATAGRAMS`] received datagrams: reap, hand the
/// datagrams to the core, flush its output, queue the sends and submit them with one
/// `io_uring_enter`. Stepping keeps the datagrams in flight (and the pooled buffers they hold) to
/// about one step's fan-out, and sends completed during a submission are reaped, their buffers
/// reused, in the next step.
fn round(shared: &Shared, ring: &mut Ring, sender: &mut RingSender) -> std::io::Result<()> {
    let mut receive_error = None;
    for _ in 0..STEPS_PER_ROUND {
        let now = Instant::now();
        let mut received = 0usize;
        let reaped = ring.reap(STEP_DATAGRAMS, |completion| match completion {
            Completion::Datagram { source, data } => {
                shared.handle_datagram(now, source, data);
                received += 1;
            }
            Completion::Sent {
                buffers,
                destination,
                source,
                segmented,
                result,
            } => sender.sent(shared, buffers, source, destination, segmented, result),
            Completion::ReceiveFailed(e) => receive_error = Some(e),
        });
        if received > 0 {
            shared.flush();
        }
        sender.queue(shared, ring);
        ring.arm_receive()?;
        ring.submit()?;
        if reaped == 0 {
            break;
        }
    }
    // Reported once per round, which makes the loop back off: a receive that keeps failing
    // must not spin the worker.
    receive_error.map_or(Ok(()), Err)
}

/// Moves the send queue into the ring, one send per run of the GSO plan.
struct RingSender {
    plan: GsoPlan,
    /// Queued datagrams taken for this plan (taken out one by one as their run is sent).
    staged: Vec<Option<Transmit>>,
    /// The buffers of the run being built: they move into the ring's send slot, and the vector
    /// stays, emptied, for the next run.
    run: Vec<Vec<u8>>,
}

impl RingSender {
    /// A sender whose datagrams to `handoff` (the kernel fan-out's, when there is one) are never
    /// segmented.
    fn new(handoff: Option<std::net::SocketAddr>) -> Self {
        let mut plan = GsoPlan::new(true);
        if let Some(handoff) = handoff {
            plan.keep_whole(handoff);
        }
        RingSender {
            plan,
            staged: Vec::with_capacity(SEND_CHUNK),
            run: Vec::with_capacity(crate::gso::MAX_SEGMENTS),
        }
    }

    /// Plans and queues as much of the send queue as the ring takes.
    fn queue(&mut self, shared: &Shared, ring: &mut Ring) {
        loop {
            let room = ring.send_room().min(SEND_CHUNK);
            {
                let mut queue = shared.send_queue.borrow_mut();
                let n = queue.len().min(room);
                if n == 0 {
                    return;
                }
                self.staged.clear();
                self.staged.extend(queue.drain(..n).map(Some));
            }
            self.plan.plan(
                self.staged
                    .iter()
                    .flatten()
                    .map(|t| (t.destination, t.contents.len())),
            );
            for r in 0..self.plan.runs().len() {
                let run = self.plan.runs()[r];
                let mut source = None;
                let mut destination = None;
                for &i in &self.plan.order()[run.start..run.end] {
                    if let Some(t) = self.staged[i as usize].take() {
                        source = Some(t.source);
                        destination = Some(t.destination);
                        self.run.push(t.contents);
                    }
                }
                let (Some(source), Some(destination)) = (source, destination) else {
                    continue;
                };
                if let Err(e) = ring.send(&mut self.run, source, destination, run.segment) {
                    debug!(to = %destination, error = %e, "cannot queue a send");
                    let mut core = shared.core.borrow_mut();
                    for buf in self.run.drain(..) {
                        core.count_drop(DropReason::SendFailed);
                        core.recycle(buf);
                    }
                }
            }
        }
    }

    /// A send completed: its buffers go back to the core's pool. A segmented send the route's
    /// device refuses (no checksum offload: `EIO`) turns segmentation off for good and its
    /// datagrams go back to the head of the queue to leave one by one.
    fn sent(
        &mut self,
        shared: &Shared,
        buffers: &mut Vec<Vec<u8>>,
        source: std::net::SocketAddr,
        destination: std::net::SocketAddr,
        segmented: bool,
        result: std::io::Result<usize>,
    ) {
        let mut core = shared.core.borrow_mut();
        match result {
            Ok(_) => buffers.drain(..).for_each(|buf| core.recycle(buf)),
            Err(e) if segmented && e.raw_os_error() == Some(libc::EIO) => {
                warn!(to = %destination, "UDP segmentation refused on this route: sending datagrams one by one");
                self.plan.stop_segmenting();
                let mut queue = shared.send_queue.borrow_mut();
                for contents in buffers.drain(..).rev() {
                    queue.push_front(Transmit {
                        proto: Protocol::Udp,
                        source,
                        destination,
                        contents,
                    });
                }
            }
            Err(e) => {
                debug!(to = %destination, error = %e, "send failed");
                for buf in buffers.drain(..) {
                    core.count_drop(DropReason::SendFailed);
                    core.recycle(buf);
                }
            }
        }
    }
}
