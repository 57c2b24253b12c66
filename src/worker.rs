//! A media worker: one thread, one tokio-uring runtime, one UDP port, one [`Core`].
//!
//! Four kinds of task share the worker's state on its single thread: one receiver (a single
//! reused buffer, handed to the kernel and back for each datagram), a few senders draining the
//! send queue so several sends are in flight at once, the command reader (signaling from the
//! server thread), and the timer that feeds the core its deadlines.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use sfu_core::protocol::{PeerId, ServerMessage};
use sfu_core::{Core, CoreConfig, Output, Transmit};
use signaling::WorkerCommand;
use tokio::sync::{mpsc, Notify};
use tokio_uring::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::net::LocalAddrs;

/// Size of the receive buffer: above any datagram the core accepts, so a larger one arrives
/// truncated, is seen as too long, and is counted.
const RECV_BUFFER_BYTES: usize = 2048;
/// Sends in flight at once per worker.
const SENDER_TASKS: usize = 4;
/// Datagrams queued for sending before the oldest are dropped (the socket cannot keep up).
const MAX_SEND_QUEUE: usize = 16 * 1024;

/// What a worker needs to start.
pub struct WorkerSpec {
    /// Worker number, for thread names and logs.
    pub index: usize,
    /// Its bound media socket.
    pub socket: std::net::UdpSocket,
    /// The addresses announced for this socket.
    pub candidates: Vec<SocketAddr>,
    /// Signaling for the rooms it owns.
    pub commands: mpsc::UnboundedReceiver<WorkerCommand>,
}

/// Starts the worker thread; returns once its io_uring runtime is up (or failed to come up).
pub fn spawn(spec: WorkerSpec) -> Result<JoinHandle<()>> {
    let (ready_tx, ready_rx) = std_mpsc::channel();
    let index = spec.index;
    let handle = std::thread::Builder::new()
        .name(format!("media-{index}"))
        .spawn(move || {
            let runtime = match tokio_uring::Runtime::new(&tokio_uring::builder()) {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            runtime.block_on(run(spec));
        })
        .context("spawning worker thread")?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(anyhow!(
            "worker {index}: cannot create an io_uring runtime: {e}"
        )),
        Err(_) => Err(anyhow!("worker {index} died while starting")),
    }
}

/// The worker's state, shared by its tasks on one thread.
struct Shared {
    core: RefCell<Core>,
    outboxes: RefCell<HashMap<PeerId, mpsc::Sender<ServerMessage>>>,
    send_queue: RefCell<VecDeque<Transmit>>,
    send_wake: Notify,
    timer_wake: Notify,
    /// The deadline the timer task sleeps towards.
    armed: Cell<Option<Instant>>,
    socket: UdpSocket,
    local: LocalAddrs,
}

async fn run(spec: WorkerSpec) {
    let port = spec
        .socket
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_default();
    let config = CoreConfig {
        candidates: spec.candidates.clone(),
        ..CoreConfig::default()
    };
    let shared = Rc::new(Shared {
        core: RefCell::new(Core::new(config)),
        outboxes: RefCell::new(HashMap::new()),
        send_queue: RefCell::new(VecDeque::with_capacity(1024)),
        send_wake: Notify::new(),
        timer_wake: Notify::new(),
        armed: Cell::new(None),
        socket: UdpSocket::from_std(spec.socket),
        local: LocalAddrs::new(&spec.candidates),
    });
    info!(worker = spec.index, port, candidates = ?spec.candidates, "media worker up");
    tokio_uring::spawn(receiver(shared.clone()));
    for _ in 0..SENDER_TASKS {
        tokio_uring::spawn(sender(shared.clone()));
    }
    tokio_uring::spawn(timer(shared.clone()));
    commands(shared, spec.commands).await;
    info!(worker = spec.index, "media worker stopping");
}

impl Shared {
    /// Takes everything the core produced: datagrams to the send queue, messages to outboxes.
    fn flush(&self) {
        let mut stuck: Vec<PeerId> = Vec::new();
        let mut queued = false;
        {
            let mut core = self.core.borrow_mut();
            let mut outboxes = self.outboxes.borrow_mut();
            let mut queue = self.send_queue.borrow_mut();
            while let Some(out) = core.poll_output() {
                match out {
                    Output::Transmit(t) => {
                        if queue.len() >= MAX_SEND_QUEUE {
                            queue.pop_front();
                            debug!("send queue full, dropping the oldest datagram");
                        }
                        queue.push_back(t);
                        queued = true;
                    }
                    Output::Signal(peer, msg) => {
                        let delivered = outboxes
                            .get(&peer)
                            .is_none_or(|tx| tx.try_send(msg).is_ok());
                        if !delivered {
                            stuck.push(peer);
                        }
                    }
                    Output::Closed(peer) => {
                        outboxes.remove(&peer);
                    }
                }
            }
        }
        if queued {
            self.send_wake.notify_waiters();
        }
        if !stuck.is_empty() {
            for peer in stuck {
                warn!(peer, "signaling outbox full or closed, dropping the peer");
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

async fn receiver(shared: Rc<Shared>) {
    // The worker's one receive buffer: owned by the kernel during each receive, then by us.
    let mut buf = vec![0u8; RECV_BUFFER_BYTES];
    loop {
        let (result, returned) = shared.socket.recv_from(buf).await;
        buf = returned;
        match result {
            Ok((len, source)) => {
                let Some(destination) = shared.local.destination_for(source) else {
                    continue;
                };
                let now = Instant::now();
                shared
                    .core
                    .borrow_mut()
                    .handle_datagram(now, source, destination, &buf[..len]);
                shared.flush();
            }
            Err(e) => {
                warn!(error = %e, "receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn sender(shared: Rc<Shared>) {
    loop {
        let next = shared.send_queue.borrow_mut().pop_front();
        match next {
            Some(t) => {
                let (result, _) = shared.socket.send_to(t.contents, t.destination).await;
                if let Err(e) = result {
                    debug!(to = %t.destination, error = %e, "send failed");
                }
            }
            None => shared.send_wake.notified().await,
        }
    }
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

async fn commands(shared: Rc<Shared>, mut rx: mpsc::UnboundedReceiver<WorkerCommand>) {
    while let Some(cmd) = rx.recv().await {
        let now = Instant::now();
        match cmd {
            WorkerCommand::Join { peer, msg, outbox } => {
                shared.outboxes.borrow_mut().insert(peer, outbox);
                shared.core.borrow_mut().handle_message(now, peer, msg);
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
                let _ = reply.send(shared.core.borrow().stats());
            }
        }
    }
}
