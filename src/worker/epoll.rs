//! The sendmmsg shell: epoll readiness on a tokio runtime, then `recvmmsg` and `sendmmsg` in
//! batches. The baseline the io_uring shell is measured against, and the fallback where io_uring
//! is not available.

use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{error, warn};

use super::{serve, Shared, WorkerSpec, RECV_BUFFER_BYTES, SEND_BATCH};
use crate::mmsg::{RecvBatch, SendBatch};

/// Datagrams per `recvmmsg` call.
const RECV_BATCH: usize = 32;

pub(super) async fn run(spec: WorkerSpec) {
    let shared = Shared::new(&spec);
    let socket = match UdpSocket::from_std(spec.socket) {
        Ok(s) => s,
        Err(e) => {
            error!(worker = spec.index, error = %e, "cannot register the media socket");
            return;
        }
    };
    tokio::task::spawn_local(io_loop(shared.clone(), socket));
    serve(shared, spec.commands, spec.tcp, spec.index).await;
}

async fn io_loop(shared: Rc<Shared>, socket: UdpSocket) {
    let mut recv = RecvBatch::new(RECV_BATCH, RECV_BUFFER_BYTES);
    let mut send = SendBatch::new(SEND_BATCH);
    let fd = socket.as_raw_fd();
    loop {
        tokio::select! {
            ready = socket.readable() => {
                if let Err(e) = ready {
                    warn!(error = %e, "socket readiness failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
                match socket.try_io(Interest::READABLE, || recv.recv(fd)) {
                    Ok(n) => {
                        let now = Instant::now();
                        for i in 0..n {
                            if let Some((data, source)) = recv.get(i) {
                                shared.handle_datagram(now, source, data);
                            }
                        }
                        shared.flush();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => warn!(error = %e, "recvmmsg failed"),
                }
            }
            _ = shared.send_wake.notified() => {}
        }
        send_queued(&shared, &socket, &mut send).await;
    }
}

/// Sends everything queued, in batches, waiting for the socket when its buffer is full.
async fn send_queued(shared: &Shared, socket: &UdpSocket, batch: &mut SendBatch) {
    let fd = socket.as_raw_fd();
    while !shared.send_queue.borrow().is_empty() {
        match socket.try_io(Interest::WRITABLE, || shared.send_batch(fd, batch)) {
            Ok(_) => {}
            Err(_) => {
                if socket.writable().await.is_err() {
                    return;
                }
            }
        }
    }
}
