//! A media worker: one thread, one UDP port, one [`Core`], driven by one of two I/O shells.
//!
//! - [`IoMode::Uring`] (default): the worker's own io_uring ([`crate::ring`]): a multishot
//!   receive into provided buffers, sends batched per round and segmented (UDP GSO) per
//!   destination, one `io_uring_enter` per round.
//! - [`IoMode::Sendmmsg`]: readiness, then `recvmmsg`/`sendmmsg` batches.
//!
//! Both run on a single-threaded tokio runtime and share everything else here: the core, the
//! per-peer signaling outboxes, the send queue, the timer task that feeds the core its deadlines,
//! the command task for signaling, and the ICE-TCP listener and connections ([`tcp`]).

mod epoll;
mod recorders;
mod tcp;
mod uring;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use sfu_core::demux::FlowChange;
use sfu_core::plain::{OutputInfo, OutputPath, PlainError};
use sfu_core::protocol::{PeerId, ServerMessage};
use sfu_core::str0m::net::Protocol;
use sfu_core::trunk::FanoutChange;
use sfu_core::{Action, Core, CoreConfig, DropReason, JoinRefusal, Transmit};
use signaling::webhooks::WebhookSender;

/// Where a worker hands its room events and trunk descriptions for the cluster directory.
pub type ClusterEvents = tokio::sync::mpsc::UnboundedSender<cluster::NodeInput>;
use signaling::{PlainReply, PlainRequest, RecordingRequest, WorkerCommand};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, info, warn};

pub use crate::config::IoMode;
use crate::kernel::Kernel;
use crate::mmsg::SendBatch;
use crate::net::LocalAddrs;
use crate::recording_totals::RecordingTotals;
use crate::ring::Ring;
pub use recorders::{absolute, RecordSettings};

/// Size of a receive buffer: above any datagram the core accepts, so a larger one arrives
/// truncated, is seen as too long, and is counted.
const RECV_BUFFER_BYTES: usize = 2048;
/// Datagrams queued for sending before the oldest are dropped (the socket cannot keep up).
const MAX_SEND_QUEUE: usize = 16 * 1024;
/// Datagrams per `sendmmsg` call.
const SEND_BATCH: usize = 64;

/// What a worker needs to start.
pub struct WorkerSpec {
    /// Worker number, for thread names and logs.
    pub index: usize,
    /// Its bound, non-blocking media socket.
    pub socket: std::net::UdpSocket,
    /// The addresses announced for this socket.
    pub candidates: Vec<SocketAddr>,
    /// Its bound, non-blocking ICE-TCP listener, unless ICE-TCP is off.
    pub tcp: Option<std::net::TcpListener>,
    /// The addresses announced for that listener.
    pub tcp_candidates: Vec<SocketAddr>,
    /// Signaling for the rooms it owns.
    pub commands: mpsc::UnboundedReceiver<WorkerCommand>,
    /// The process's kernel path, when it is active.
    pub kernel: Option<Arc<Kernel>>,
    /// Where its recordings go.
    pub record: RecordSettings,
    /// Rooms recorded whenever they exist.
    pub record_rooms: Vec<String>,
    /// The video codecs its sessions offer, most preferred first.
    pub video_codecs: Vec<str0m::format::Codec>,
    /// The server's recording counters, which its recordings add to.
    pub recording_totals: Arc<RecordingTotals>,
    /// Where room events go, when webhooks are configured.
    pub webhooks: Option<WebhookSender>,
    /// Where room events go for the other nodes, with `--cluster`.
    pub cluster: Option<ClusterEvents>,
    /// Its end of the trunks to other nodes, with `--cluster`.
    pub trunk_endpoint: Option<sfu_core::trunk::TrunkEndpoint>,
}

/// Starts the worker thread; returns the shell in use once its runtime is up.
///
/// Where io_uring is unavailable (a kernel before 6.0, a container whose seccomp profile forbids
/// it, `kernel.io_uring_disabled`), [`IoMode::Uring`] falls back to [`IoMode::Sendmmsg`] with a
/// warning.
pub fn spawn(spec: WorkerSpec, mode: IoMode) -> Result<(JoinHandle<()>, IoMode)> {
    let (ready_tx, ready_rx) = std_mpsc::channel();
    let index = spec.index;
    let handle = std::thread::Builder::new()
        .name(format!("media-{index}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let ring = match mode {
                IoMode::Uring => match Ring::new(&spec.socket, RECV_BUFFER_BYTES) {
                    Ok(ring) => Some(ring),
                    Err(e) => {
                        warn!(worker = index, error = %e, "io_uring unavailable, using the sendmmsg shell");
                        None
                    }
                },
                IoMode::Sendmmsg => None,
            };
            let local = tokio::task::LocalSet::new();
            match ring {
                Some(ring) => {
                    let _ = ready_tx.send(Ok(IoMode::Uring));
                    local.block_on(&runtime, uring::run(spec, ring));
                }
                None => {
                    let _ = ready_tx.send(Ok(IoMode::Sendmmsg));
                    local.block_on(&runtime, epoll::run(spec));
                }
            }
        })
        .context("spawning worker thread")?;
    match ready_rx.recv() {
        Ok(Ok(mode)) => Ok((handle, mode)),
        Ok(Err(e)) => Err(anyhow!("worker {index}: cannot start a runtime: {e}")),
        Err(_) => Err(anyhow!("worker {index} died while starting")),
    }
}

/// The worker's state, shared by its tasks on one thread.
struct Shared {
    core: RefCell<Core>,
    outboxes: RefCell<HashMap<PeerId, mpsc::Sender<ServerMessage>>>,
    send_queue: RefCell<VecDeque<Transmit>>,
    /// Wakes a sender when the queue gets datagrams (a stored permit, so none is missed).
    send_wake: Notify,
    timer_wake: Notify,
    /// The deadline the timer task sleeps towards.
    armed: Cell<Option<Instant>>,
    local: LocalAddrs,
    candidates: Vec<SocketAddr>,
    kernel: Option<Arc<Kernel>>,
    tcp: tcp::TcpRoutes,
    recorders: RefCell<recorders::Recorders>,
    /// Itself, for the tasks `flush` starts (a recording the core asked for).
    me: std::rc::Weak<Shared>,
    /// ICE-TCP connections accepted since start.
    tcp_accepted: Cell<u64>,
    webhooks: Option<WebhookSender>,
    cluster: Option<ClusterEvents>,
    /// Its index, which names it to the cluster directory.
    index: usize,
}

impl Shared {
    fn new(spec: &WorkerSpec) -> Rc<Self> {
        let config = CoreConfig {
            candidates: spec.candidates.clone(),
            tcp_candidates: spec.tcp_candidates.clone(),
            record_rooms: spec.record_rooms.clone(),
            video_codecs: spec.video_codecs.clone(),
            trunk_endpoint: spec.trunk_endpoint.clone(),
            trunk_fanout: spec.kernel.as_ref().map(|k| k.trunk_fanout(spec.index)),
            ..CoreConfig::default()
        };
        Rc::new_cyclic(|me| Shared {
            me: me.clone(),
            core: RefCell::new(Core::new(config)),
            outboxes: RefCell::new(HashMap::new()),
            send_queue: RefCell::new(VecDeque::with_capacity(1024)),
            send_wake: Notify::new(),
            timer_wake: Notify::new(),
            armed: Cell::new(None),
            local: LocalAddrs::new(&spec.candidates),
            candidates: spec.candidates.clone(),
            kernel: spec.kernel.clone(),
            tcp: tcp::TcpRoutes::default(),
            recorders: RefCell::new(recorders::Recorders::new(
                spec.record.clone(),
                spec.recording_totals.clone(),
                spec.webhooks.clone(),
            )),
            tcp_accepted: Cell::new(0),
            webhooks: spec.webhooks.clone(),
            cluster: spec.cluster.clone(),
            index: spec.index,
        })
    }

    /// Hands one received datagram to the core. One from an address family the worker announces
    /// no address of can belong to no peer: it is counted as from an unknown source.
    fn handle_datagram(&self, now: Instant, source: SocketAddr, data: &[u8]) {
        let mut core = self.core.borrow_mut();
        match self.local.destination_for(source) {
            Some(destination) => core.handle_datagram(now, source, destination, data),
            None => core.count_drop(DropReason::UnknownSource),
        }
    }

    /// Sends the head of the send queue with one `sendmmsg` (at most a batch); returns how many
    /// went. A datagram the kernel refuses outright (an unreachable destination, say) is dropped
    /// so that it cannot block the queue; `WouldBlock` means the socket buffer is full.
    fn send_batch(&self, fd: RawFd, batch: &mut SendBatch) -> std::io::Result<usize> {
        let result = {
            let queue = self.send_queue.borrow();
            batch.send(
                fd,
                queue.iter().map(|t| (t.contents.as_slice(), t.destination)),
            )
        };
        match result {
            Ok(n) => {
                let mut queue = self.send_queue.borrow_mut();
                let mut core = self.core.borrow_mut();
                for t in queue.drain(..n) {
                    core.recycle(t.contents);
                }
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(e),
            Err(e) => {
                if let Some(t) = self.send_queue.borrow_mut().pop_front() {
                    debug!(to = %t.destination, error = %e, "send failed");
                    let mut core = self.core.borrow_mut();
                    core.count_drop(DropReason::SendFailed);
                    core.recycle(t.contents);
                }
                Ok(0)
            }
        }
    }

    /// Puts output `id` on the kernel path when it is active and can serve the output's
    /// receivers, else on the userspace path.
    fn choose_output_path(
        &self,
        core: &mut Core,
        id: u64,
        info: OutputInfo,
    ) -> Result<OutputInfo, PlainError> {
        let Some(kernel) = &self.kernel else {
            return Ok(info);
        };
        let path = kernel
            .program(id, &info, &self.candidates)
            .unwrap_or(OutputPath::Userspace);
        core.set_output_path(id, path)
    }

    /// Answers a WHIP or WHEP join; a member that joined keeps `closed` until it is gone, which
    /// tells the HTTP layer to forget its session.
    fn answer_http_join(
        &self,
        peer: PeerId,
        result: Result<String, JoinRefusal>,
        closed: mpsc::Sender<ServerMessage>,
        reply: oneshot::Sender<Result<String, JoinRefusal>>,
    ) {
        if result.is_ok() {
            self.outboxes.borrow_mut().insert(peer, closed);
        }
        self.flush();
        let _ = reply.send(result);
    }

    /// Takes every action the core produced: datagrams to the send queue, messages to outboxes.
    fn flush(&self) {
        let mut stuck: Vec<PeerId> = Vec::new();
        let mut requested: Vec<String> = Vec::new();
        let mut queued = false;
        {
            let mut core = self.core.borrow_mut();
            let mut outboxes = self.outboxes.borrow_mut();
            let mut queue = self.send_queue.borrow_mut();
            while let Some(action) = core.poll_output() {
                match action {
                    Action::Transmit(t) if t.proto != Protocol::Udp => {
                        if let Err((buf, full)) =
                            self.tcp.send((t.destination, t.source), t.contents)
                        {
                            if full {
                                core.count_drop(DropReason::TcpOverflow);
                            }
                            core.recycle(buf);
                        }
                    }
                    Action::Transmit(t) => {
                        if queue.len() >= MAX_SEND_QUEUE {
                            if let Some(old) = queue.pop_front() {
                                core.recycle(old.contents);
                            }
                            core.count_drop(DropReason::SendQueueFull);
                        }
                        queue.push_back(t);
                        queued = true;
                    }
                    Action::Signal(peer, msg) => {
                        match outboxes.get(&peer).map(|tx| tx.try_send(msg)) {
                            None | Some(Ok(())) => {}
                            Some(Err(TrySendError::Full(_))) => {
                                warn!(peer, "signaling outbox full: the client does not read, dropping the peer");
                                stuck.push(peer);
                            }
                            // The WebSocket is already gone; its disconnect is on the way.
                            Some(Err(TrySendError::Closed(_))) => stuck.push(peer),
                        }
                    }
                    Action::PeerClosed(peer) => {
                        outboxes.remove(&peer);
                    }
                    Action::Flow(FlowChange::Admitted(Protocol::Tcp, tuple)) => {
                        self.tcp.set_admitted(tuple, true);
                    }
                    Action::Flow(FlowChange::Revoked(Protocol::Tcp, tuple)) => {
                        self.tcp.set_admitted(tuple, false);
                    }
                    Action::Flow(change) => {
                        if let Some(k) = &self.kernel {
                            k.apply(change);
                        }
                    }
                    Action::PlainOutputClosed(id) => {
                        if let Some(k) = &self.kernel {
                            k.unprogram(id);
                        }
                    }
                    Action::Record(output) => {
                        requested.extend(self.recorders.borrow_mut().handle(output));
                    }
                    Action::RoomEvent(event) => {
                        if let Some(cluster) = &self.cluster {
                            // The directory task reads until the server stops.
                            let _ = cluster.send(cluster::NodeInput::Room {
                                worker: self.index,
                                event: event.clone(),
                            });
                        }
                        if let Some(webhooks) =
                            self.webhooks.as_ref().filter(|_| event.for_webhooks())
                        {
                            webhooks.notify(event);
                        }
                    }
                    Action::TrunkFanout(change) => {
                        let programmed = match &self.kernel {
                            Some(k) => k.program_trunk_layer(&change),
                            None => Err("no kernel path".into()),
                        };
                        if let (Err(why), FanoutChange::Set { handoff_ssrc, .. }) =
                            (programmed, &change)
                        {
                            warn!(handoff_ssrc, why, "trunk layer not on the kernel fan-out");
                            core.trunk_fanout_refused(*handoff_ssrc);
                        }
                    }
                    Action::TrunkSignal(signal) => match &self.cluster {
                        Some(cluster) => {
                            let _ = cluster.send(cluster::NodeInput::Trunk(signal));
                        }
                        None => warn!(to = %signal.to, "trunk description without a cluster"),
                    },
                }
            }
        }
        if queued {
            self.send_wake.notify_one();
        }
        // A configured room was created, or a member pressed record: started off this call (the
        // writer's directory is made on the blocking pool).
        for room in requested {
            let Some(shared) = self.me.upgrade() else {
                break;
            };
            tokio::task::spawn_local(async move {
                if let Err(e) = recorders::start(shared, room.clone()).await {
                    warn!(room, error = %e, "recording not started");
                }
            });
        }
        if !stuck.is_empty() {
            for peer in stuck {
                debug!(peer, "dropping the peer whose signaling outbox is unusable");
                self.outboxes.borrow_mut().remove(&peer);
                self.core.borrow_mut().disconnect(Instant::now(), peer);
            }
            self.flush();
            return;
        }
        let next = self.core.borrow().poll_timeout();
        if next.is_some() && (self.armed.get().is_none() || next < self.armed.get()) {
            self.timer_wake.notify_one();
        }
    }
}

/// Runs the timer, the ICE-TCP listener and the command loop until the signaling side goes away.
async fn serve(
    shared: Rc<Shared>,
    commands: mpsc::UnboundedReceiver<WorkerCommand>,
    tcp: Option<std::net::TcpListener>,
    index: usize,
) {
    info!(worker = index, "media worker up");
    tokio::task::spawn_local(timer(shared.clone()));
    tokio::task::spawn_local(recorders::watch(shared.clone()));
    if let Some(listener) = tcp {
        tokio::task::spawn_local(tcp::accept_loop(shared.clone(), listener));
    }
    command_loop(shared, commands).await;
    info!(worker = index, "media worker stopping");
}

async fn timer(shared: Rc<Shared>) {
    loop {
        let deadline = shared.core.borrow().poll_timeout();
        shared.armed.set(deadline);
        match deadline {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {
                        shared.core.borrow_mut().handle_timeout(Instant::now());
                        shared.flush();
                    }
                    _ = shared.timer_wake.notified() => {}
                }
            }
            None => shared.timer_wake.notified().await,
        }
    }
}

async fn command_loop(shared: Rc<Shared>, mut rx: mpsc::UnboundedReceiver<WorkerCommand>) {
    while let Some(cmd) = rx.recv().await {
        let now = Instant::now();
        match cmd {
            WorkerCommand::Join {
                peer,
                msg,
                outbox,
                permissions,
            } => {
                shared.outboxes.borrow_mut().insert(peer, outbox);
                shared
                    .core
                    .borrow_mut()
                    .handle_join(now, peer, msg, permissions);
                shared.flush();
                // A refused join created no peer: closing its outbox tells the connection.
                if !shared.core.borrow().has_peer(peer) {
                    shared.outboxes.borrow_mut().remove(&peer);
                }
            }
            WorkerCommand::Message { peer, msg } => {
                shared.core.borrow_mut().handle_message(now, peer, msg);
                shared.flush();
            }
            WorkerCommand::Disconnect { peer } => {
                shared.outboxes.borrow_mut().remove(&peer);
                shared.core.borrow_mut().disconnect(now, peer);
                shared.flush();
            }
            WorkerCommand::Stats { reply } => {
                let mut stats = shared.core.borrow().stats();
                stats.ice_tcp_connections = shared.tcp.len();
                stats.ice_tcp_accepted = shared.tcp_accepted.get();
                if let Some(k) = &shared.kernel {
                    k.overlay_counters(&mut stats.outputs);
                }
                let _ = reply.send(stats);
            }
            WorkerCommand::Shutdown { reply } => {
                shared.core.borrow_mut().shutdown(now);
                shared.flush();
                // The rooms are gone, so their recordings ended: the answer waits until their
                // files are finished (duration, cues, manifest).
                let finishing = shared.recorders.borrow_mut().take_finishing();
                tokio::task::spawn_local(async move {
                    for task in finishing {
                        let _ = task.await;
                    }
                    let _ = reply.send(());
                });
            }
            WorkerCommand::Plain { request, reply } => {
                let result = {
                    let mut core = shared.core.borrow_mut();
                    match request {
                        PlainRequest::AddIngest { id, spec } => {
                            core.add_ingest(now, id, spec).map(PlainReply::Ingest)
                        }
                        PlainRequest::RemoveIngest { id } => {
                            core.remove_ingest(now, id).map(|()| PlainReply::Removed)
                        }
                        PlainRequest::AddOutput { id, spec } => core
                            .add_output(id, spec)
                            .and_then(|info| shared.choose_output_path(&mut core, id, info))
                            .map(PlainReply::Output),
                        PlainRequest::SetOutputTargets { id, targets } => core
                            .set_output_targets(id, targets)
                            .and_then(|info| shared.choose_output_path(&mut core, id, info))
                            .map(PlainReply::Output),
                        PlainRequest::RemoveOutput { id } => {
                            core.remove_output(id).map(|()| PlainReply::Removed)
                        }
                    }
                };
                shared.flush();
                let _ = reply.send(result);
            }
            WorkerCommand::WhipJoin {
                peer,
                request,
                permissions,
                closed,
                reply,
            } => {
                let result = shared.core.borrow_mut().join_whip(
                    now,
                    peer,
                    request.room,
                    request.name,
                    &request.offer,
                    permissions,
                );
                shared.answer_http_join(peer, result, closed, reply);
            }
            WorkerCommand::WhepJoin {
                peer,
                request,
                follow,
                permissions,
                closed,
                reply,
            } => {
                let result = shared.core.borrow_mut().join_whep(
                    now,
                    peer,
                    request.room,
                    request.name,
                    follow,
                    &request.offer,
                    permissions,
                );
                shared.answer_http_join(peer, result, closed, reply);
            }
            WorkerCommand::Recording { request, reply } => match request {
                RecordingRequest::Start { room } => {
                    let shared = shared.clone();
                    tokio::task::spawn_local(async move {
                        let _ = reply.send(recorders::start(shared, room).await);
                    });
                }
                RecordingRequest::Stop { room } => {
                    let stopped = shared.core.borrow_mut().stop_recording(now, &room, None);
                    match stopped {
                        // Answered once the writer has finished the files.
                        Ok(_) => shared
                            .recorders
                            .borrow_mut()
                            .answer_when_finished(&room, reply),
                        Err(e) => {
                            let _ = reply.send(Err(recorders::refusal(e)));
                        }
                    }
                    shared.flush();
                }
            },
            WorkerCommand::ListRooms { reply } => {
                let _ = reply.send(shared.core.borrow().room_listing());
            }
            WorkerCommand::CloseRoom {
                room,
                reason,
                reply,
            } => {
                let result = shared.core.borrow_mut().close_room(now, &room, &reason);
                shared.flush();
                let _ = reply.send(result);
            }
            WorkerCommand::RemoveMember {
                room,
                peer,
                reason,
                reply,
            } => {
                let result = shared
                    .core
                    .borrow_mut()
                    .remove_member(now, &room, peer, &reason);
                shared.flush();
                let _ = reply.send(result);
            }
            WorkerCommand::ForceMute {
                room,
                peer,
                track,
                muted,
                reply,
            } => {
                let result = shared
                    .core
                    .borrow_mut()
                    .force_mute(now, &room, peer, &track, muted);
                shared.flush();
                let _ = reply.send(result);
            }
            WorkerCommand::Cluster { event } => {
                shared.core.borrow_mut().handle_cluster_event(now, event);
                shared.flush();
            }
            WorkerCommand::Trunk { signal } => {
                shared.core.borrow_mut().handle_trunk_signal(now, signal);
                shared.flush();
            }
            WorkerCommand::Drain { url } => {
                shared.core.borrow_mut().drain(&url);
                shared.flush();
            }
        }
    }
}
