//! The cluster as this node last read it, shared with the HTTP API: the nodes for
//! `GET /api/cluster`, the node a draining node sends its clients to, and whether this node
//! drains (its heartbeat tells the others).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::record::NodeRecord;

#[derive(Debug, Default)]
struct Shared {
    nodes: Mutex<Vec<NodeRecord>>,
    connected: AtomicBool,
    draining: AtomicBool,
}

/// A handle on what the directory task last read. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClusterView {
    own: Arc<str>,
    shared: Arc<Shared>,
}

impl ClusterView {
    /// Nothing read yet, for node `own`.
    pub fn new(own: &str) -> Self {
        ClusterView {
            own: own.into(),
            shared: Arc::default(),
        }
    }

    /// This node's id.
    pub fn own(&self) -> &str {
        &self.own
    }

    /// The live nodes (this one included), by id, as of the last heartbeat.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.lock().clone()
    }

    /// Whether the directory task is connected to Redis now.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Whether this node drains.
    pub fn draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }

    /// Marks this node draining: its next heartbeat says so and no node sends clients here.
    pub fn set_draining(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
    }

    /// Where a draining node sends its clients: the live node, not this one and not draining,
    /// with the fewest members.
    pub fn reconnect_target(&self) -> Option<String> {
        self.lock()
            .iter()
            .filter(|n| *n.id != *self.own && !n.draining)
            .min_by_key(|n| n.peers)
            .map(|n| n.url.clone())
    }

    pub(crate) fn set_nodes(&self, mut nodes: Vec<NodeRecord>) {
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        *self.lock() = nodes;
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.shared.connected.store(connected, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<NodeRecord>> {
        self.shared.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}
