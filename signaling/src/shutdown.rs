//! Stopping the server cleanly: every client is told (`serverStopping`) and its connection
//! closes, then every worker empties its rooms.
//!
//! [`stop`] is the one entry point (the binary runs it on SIGTERM and SIGINT, before the HTTP
//! server stops); whatever else must finish before the process exits (recordings, say) belongs
//! in it, after the workers emptied their rooms.

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::dispatch::WorkerCommand;
use crate::server::AppState;

/// How long the connections get to tell their clients and close.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long each worker gets to empty its rooms and finish the files of its recordings.
pub const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the server is stopping, as every WebSocket connection watches it.
#[derive(Debug)]
pub struct Stopping {
    flag: watch::Sender<bool>,
}

impl Default for Stopping {
    fn default() -> Self {
        Stopping {
            flag: watch::Sender::new(false),
        }
    }
}

impl Stopping {
    /// A receiver for one connection: it sees the change when the server starts stopping, and
    /// `Stopping::drained` waits for it to be dropped.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.flag.subscribe()
    }

    /// Whether the server is stopping.
    pub fn is_stopping(&self) -> bool {
        *self.flag.borrow()
    }

    fn begin(&self) {
        self.flag.send_replace(true);
    }

    /// Resolves once no connection holds a receiver any more.
    async fn drained(&self) {
        self.flag.closed().await
    }
}

/// Tells every client the server is stopping and waits (at most [`DRAIN_TIMEOUT`]) for their
/// connections to close, then has every worker remove its members and plain RTP legs (at most
/// [`WORKER_STOP_TIMEOUT`] each).
pub async fn stop(state: &AppState) {
    state.stopping.begin();
    if tokio::time::timeout(DRAIN_TIMEOUT, state.stopping.drained())
        .await
        .is_err()
    {
        warn!("some WebSocket connections did not close in time");
    }
    for index in 0..state.dispatch.workers().len() {
        let (reply, done) = oneshot::channel();
        if !state
            .dispatch
            .send(index, WorkerCommand::Shutdown { reply })
        {
            continue;
        }
        if tokio::time::timeout(WORKER_STOP_TIMEOUT, done)
            .await
            .is_err()
        {
            warn!(worker = index, "the worker did not empty its rooms in time");
        }
    }
    info!("every client told, every room emptied");
}
