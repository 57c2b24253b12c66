//! The cluster's HTTP side (`--cluster`): `GET /api/cluster` lists the nodes with their load and
//! rooms, `POST /api/drain` (or SIGTERM) drains this node: it refuses new joins, tells every
//! member to join again on another live node (`reconnect`), and reports it may stop once its
//! rooms are empty or `--drain-timeout` has passed. Both answer with the API's admission
//! (loopback, or an admin room token).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use cluster::record::{NodeRecord, RevokedToken};
use cluster::{ClusterView, NodeInput};
use serde::Serialize;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{info, warn};

use crate::api::{admit, ApiError};
use crate::dispatch::WorkerCommand;
use crate::server::{collect_stats, AppState};

/// How often a draining node counts its members.
const DRAIN_POLL: Duration = Duration::from_millis(250);

/// This node's part in a cluster, as the HTTP side needs it.
#[derive(Debug)]
pub struct ClusterNode {
    /// The nodes as the directory task last read them.
    pub view: ClusterView,
    /// The node's drain.
    pub drain: DrainHandle,
    /// The directory task's input, for the revocations made here.
    directory: mpsc::UnboundedSender<NodeInput>,
}

impl ClusterNode {
    /// The node whose directory task fills `view` and reads `directory`; a drain lasts at most
    /// `drain_timeout`.
    pub fn new(
        view: ClusterView,
        drain_timeout: Duration,
        directory: mpsc::UnboundedSender<NodeInput>,
    ) -> Self {
        ClusterNode {
            directory,
            drain: DrainHandle(Arc::new(Drain {
                view: view.clone(),
                timeout: drain_timeout,
                started: AtomicBool::new(false),
                requested: Notify::new(),
                done: watch::Sender::new(false),
            })),
            view,
        }
    }
}

impl ClusterNode {
    /// Hands a revocation made here to the directory, for every other node.
    pub fn share_revocation(&self, token: RevokedToken) {
        // The directory task reads until the server stops.
        let _ = self.directory.send(NodeInput::Revoked(token));
    }
}

/// Starts and watches this node's drain, from any thread (the HTTP API, the signal handler).
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct DrainHandle(Arc<Drain>);

impl DrainHandle {
    /// Whether the node drains (and so refuses joins).
    pub fn draining(&self) -> bool {
        self.0.started.load(Ordering::Relaxed)
    }

    /// Starts the drain (once; later calls change nothing).
    pub fn begin(&self) {
        if !self.0.started.swap(true, Ordering::Relaxed) {
            self.0.view.set_draining();
            self.0.requested.notify_one();
        }
    }

    /// Changes to true once the drain is over: the server may stop.
    pub fn drained(&self) -> watch::Receiver<bool> {
        self.0.done.subscribe()
    }
}

/// The state of this node's drain.
#[derive(Debug)]
struct Drain {
    view: ClusterView,
    timeout: Duration,
    started: AtomicBool,
    requested: Notify,
    done: watch::Sender<bool>,
}

/// Waits for the drain to be asked for, then runs it: every worker tells its members where to
/// go, and the drain is over when no member is left or at the deadline. Runs in the signaling
/// runtime for as long as the server does.
pub async fn run_drain(state: Arc<AppState>) {
    let Some(node) = &state.cluster else {
        return;
    };
    let drain = &node.drain.0;
    drain.requested.notified().await;
    info!(timeout = ?drain.timeout, "draining: no new joins, members sent elsewhere");
    let deadline = tokio::time::Instant::now() + drain.timeout;
    let mut told = false;
    loop {
        // Right after Redis came back the view may not list another node yet: members are
        // told as soon as one is known.
        if !told {
            if let Some(url) = node.view.reconnect_target() {
                info!(target = %url, "members sent to another node");
                for index in 0..state.dispatch.workers().len() {
                    state
                        .dispatch
                        .send(index, WorkerCommand::Drain { url: url.clone() });
                }
                told = true;
            }
        }
        let (stats, _) = collect_stats(&state).await;
        if stats.peers == 0 {
            info!("drained: no member left");
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            if !told {
                warn!("no other live node was found to send the members to");
            }
            warn!(
                members = stats.peers,
                "drain timeout: stopping with members left"
            );
            break;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    drain.done.send_replace(true);
}

/// The cluster's routes (they answer 404 without `--cluster`).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/cluster", get(get_cluster))
        .route("/api/drain", post(post_drain))
}

/// `GET /api/cluster`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterListing {
    /// This node's id.
    node: String,
    /// Whether the directory is reachable now.
    connected: bool,
    /// The live nodes, this one included, as of the last heartbeat.
    nodes: Vec<NodeRecord>,
}

async fn get_cluster(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
) -> Result<Json<ClusterListing>, ApiError> {
    admit(&state, addr, &headers)?;
    let node = state.cluster.as_ref().ok_or(ApiError::NoCluster)?;
    Ok(Json(ClusterListing {
        node: node.view.own().to_owned(),
        connected: node.view.connected(),
        nodes: node.view.nodes(),
    }))
}

/// `POST /api/drain`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DrainStarted {
    /// Where members are sent, when another node is live.
    target: Option<String>,
}

async fn post_drain(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
) -> Result<Json<DrainStarted>, ApiError> {
    admit(&state, addr, &headers)?;
    let node = state.cluster.as_ref().ok_or(ApiError::NoCluster)?;
    node.drain.begin();
    Ok(Json(DrainStarted {
        target: node.view.reconnect_target(),
    }))
}
