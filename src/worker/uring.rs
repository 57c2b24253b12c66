//! The io_uring shell, on a tokio-uring runtime: receives are io_uring operations (one in flight
//! on the worker's single reused buffer); sends leave in `sendmmsg` batches straight from the
//! send queue, and only when the socket buffer is full does an io_uring send wait for room.
//!
//! Sending one io_uring operation per datagram (up to 32 in flight) cost 5-11 % more CPU per
//! forwarded packet than the sendmmsg shell (`docs/benchmarks.md`): each datagram paid for an SQE,
//! a CQE and a task wake-up, where one `sendmmsg` carries 64. tokio-uring 0.5 has no batched or
//! multishot send, so the batch is a plain system call on the same non-blocking socket.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

use tokio_uring::net::UdpSocket;
use tracing::{debug, warn};

use super::{serve, Shared, WorkerSpec, RECV_BUFFER_BYTES, SEND_BATCH};
use crate::mmsg::SendBatch;

pub(super) async fn run(spec: WorkerSpec) {
    let shared = Shared::new(&spec);
    let socket = Rc::new(UdpSocket::from_std(spec.socket));
    tokio_uring::spawn(receiver(shared.clone(), socket.clone()));
    tokio_uring::spawn(sender(shared.clone(), socket.clone()));
    serve(shared, spec.commands, spec.tcp, spec.index).await;
}

async fn receiver(shared: Rc<Shared>, socket: Rc<UdpSocket>) {
    // The worker's one receive buffer: owned by the kernel during each receive, then by us.
    let mut buf = vec![0u8; RECV_BUFFER_BYTES];
    loop {
        let (result, returned) = socket.recv_from(buf).await;
        buf = returned;
        match result {
            Ok((len, source)) => {
                shared.handle_datagram(Instant::now(), source, &buf[..len]);
                shared.flush();
            }
            Err(e) => {
                warn!(error = %e, "receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn sender(shared: Rc<Shared>, socket: Rc<UdpSocket>) {
    let fd = socket.as_raw_fd();
    let mut batch = SendBatch::new(SEND_BATCH);
    loop {
        if shared.send_queue.borrow().is_empty() {
            shared.send_wake.notified().await;
            continue;
        }
        if shared.send_batch(fd, &mut batch).is_ok() {
            continue;
        }
        // The socket buffer is full: an io_uring send of the oldest datagram completes once there
        // is room, and the batches go on from there.
        let Some(t) = shared.send_queue.borrow_mut().pop_front() else {
            continue;
        };
        let (result, buf) = socket.send_to(t.contents, t.destination).await;
        shared.core.borrow_mut().recycle(buf);
        if let Err(e) = result {
            debug!(to = %t.destination, error = %e, "send failed");
        }
    }
}
