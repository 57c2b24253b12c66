//! Hands signaling to the worker that owns a room, and keeps the room → worker table.
//!
//! A room lives on one worker so its forwarding never crosses threads. A new room goes to the
//! worker with the fewest members; the entry goes when the room's last connection is gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sfu_core::admin::{AdminError, RoomListing, TrackListing};
use sfu_core::plain::{IngestInfo, IngestSpec, OutputInfo, OutputSpec, OutputTarget, PlainError};
use sfu_core::protocol::{ClientMessage, PeerId, ServerMessage};
use sfu_core::viewers::Follow;
use sfu_core::{JoinRefusal, Permissions, StatsSnapshot};

use crate::recording_api::{RecordingRefusal, RecordingReply, RecordingRequest};
use tokio::sync::{mpsc, oneshot};

/// Messages queued towards one WebSocket before the peer counts as stuck and is dropped.
pub const OUTBOX_CAPACITY: usize = 512;

/// What the signaling layer asks of a worker.
#[derive(Debug)]
pub enum WorkerCommand {
    /// A `join`, with the queue the worker answers this peer on from now on.
    Join {
        /// The joining peer.
        peer: PeerId,
        /// The join message.
        msg: ClientMessage,
        /// Where the worker sends this peer's messages.
        outbox: mpsc::Sender<ServerMessage>,
        /// What the member may do (from its room token; everything in an open room).
        permissions: Permissions,
    },
    /// Any later message of a joined peer.
    Message {
        /// The sender.
        peer: PeerId,
        /// The message.
        msg: ClientMessage,
    },
    /// The peer's WebSocket is gone.
    Disconnect {
        /// The peer.
        peer: PeerId,
    },
    /// Report counters.
    Stats {
        /// Where to answer.
        reply: oneshot::Sender<StatsSnapshot>,
    },
    /// The server is stopping: remove every member and plain RTP leg ([`sfu_core::Core::shutdown`]),
    /// then answer.
    Shutdown {
        /// Answered once the worker's rooms are empty and its recordings' files are finished.
        reply: oneshot::Sender<()>,
    },
    /// Create, change or remove a plain RTP leg.
    Plain {
        /// What to do.
        request: PlainRequest,
        /// Where to answer.
        reply: oneshot::Sender<Result<PlainReply, PlainError>>,
    },
    /// A WHIP publisher joins with its SDP offer ([`sfu_core::Core::join_whip`]); it leaves with
    /// [`WorkerCommand::Disconnect`].
    WhipJoin {
        /// The publisher's peer id.
        peer: PeerId,
        /// What it asks for.
        request: HttpJoin,
        /// What the member may do (from its room token; everything in an open room).
        permissions: Permissions,
        /// Held by the worker while the member exists and dropped when it is gone (`DELETE`, the
        /// liveness timers): the HTTP layer then forgets the session. Nothing is sent on it, the
        /// core sends a WHIP member no messages.
        closed: mpsc::Sender<ServerMessage>,
        /// The SDP answer, or why the join was refused.
        reply: oneshot::Sender<Result<String, JoinRefusal>>,
    },
    /// A WHEP viewer joins with its SDP offer ([`sfu_core::Core::join_whep`]); it leaves with
    /// [`WorkerCommand::Disconnect`].
    WhepJoin {
        /// The viewer's peer id.
        peer: PeerId,
        /// What it asks for.
        request: HttpJoin,
        /// Whose media it receives.
        follow: Follow,
        /// What the member may do (from its room token; everything in an open room).
        permissions: Permissions,
        /// As for [`WorkerCommand::WhipJoin`]: dropped by the worker when the member is gone.
        closed: mpsc::Sender<ServerMessage>,
        /// The SDP answer, or why the join was refused.
        reply: oneshot::Sender<Result<String, JoinRefusal>>,
    },
    /// Start or stop recording a room.
    Recording {
        /// What to do.
        request: RecordingRequest,
        /// Where to answer (a stop answers once the files are finished).
        reply: oneshot::Sender<Result<RecordingReply, RecordingRefusal>>,
    },
    /// List the worker's rooms, members and tracks (admin API).
    ListRooms {
        /// Where to answer.
        reply: oneshot::Sender<Vec<RoomListing>>,
    },
    /// Close a room: tell every member why and remove it, remove its ingests (admin API).
    CloseRoom {
        /// Which.
        room: String,
        /// Why, for the members.
        reason: String,
        /// Where to answer: the removed ingests' ids.
        reply: oneshot::Sender<Result<Vec<PeerId>, AdminError>>,
    },
    /// Remove one member, telling it why (admin API).
    RemoveMember {
        /// Its room.
        room: String,
        /// Which.
        peer: PeerId,
        /// Why, for the member.
        reason: String,
        /// Where to answer.
        reply: oneshot::Sender<Result<(), AdminError>>,
    },
    /// Mute or unmute a member's track (admin API).
    ForceMute {
        /// Its room.
        room: String,
        /// The publisher.
        peer: PeerId,
        /// The track's id or mid.
        track: String,
        /// New state.
        muted: bool,
        /// Where to answer: the track as it now is.
        reply: oneshot::Sender<Result<TrackListing, AdminError>>,
    },
    /// Something happened on another node of the cluster ([`sfu_core::Core::handle_cluster_event`]).
    Cluster {
        /// What.
        event: sfu_core::cluster::ClusterEvent,
    },
    /// A trunk description from another node's worker ([`sfu_core::Core::handle_trunk_signal`]).
    Trunk {
        /// What it sent.
        signal: sfu_core::trunk::TrunkSignal,
    },
    /// The node drains: tell every member to join again at `url` ([`sfu_core::Core::drain`]).
    Drain {
        /// Another node's signaling URL.
        url: String,
    },
}

/// A join over HTTP (a WHIP publisher's or a WHEP viewer's): its room, name and SDP offer.
#[derive(Debug)]
pub struct HttpJoin {
    /// The room it publishes in.
    pub room: String,
    /// Its name there.
    pub name: String,
    /// Its SDP offer.
    pub offer: String,
}

/// A change to the plain RTP legs of a worker.
#[derive(Debug)]
pub enum PlainRequest {
    /// Create ingest `id`.
    AddIngest {
        /// Its id (a peer id: it joins its room as a virtual member).
        id: PeerId,
        /// What it takes in.
        spec: IngestSpec,
    },
    /// Remove ingest `id`.
    RemoveIngest {
        /// Which.
        id: PeerId,
    },
    /// Create output `id`.
    AddOutput {
        /// Its id.
        id: u64,
        /// What it copies where.
        spec: OutputSpec,
    },
    /// Replace the receivers of output `id`.
    SetOutputTargets {
        /// Which.
        id: u64,
        /// The new receivers.
        targets: Vec<OutputTarget>,
    },
    /// Remove output `id`.
    RemoveOutput {
        /// Which.
        id: u64,
    },
}

/// A worker's answer to a [`PlainRequest`].
#[derive(Debug)]
pub enum PlainReply {
    /// The ingest as it now is.
    Ingest(IngestInfo),
    /// The output as it now is.
    Output(OutputInfo),
    /// It is gone.
    Removed,
}

/// How to reach one worker.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    /// Its command queue.
    pub commands: mpsc::UnboundedSender<WorkerCommand>,
    /// Its media port (for stats and logs).
    pub media_port: u16,
    /// Its ICE-TCP port, when it accepts ICE over TCP.
    pub ice_tcp_port: Option<u16>,
}

#[derive(Debug, Default)]
struct Placement {
    /// Room → (worker index, connections in it).
    rooms: HashMap<String, (usize, usize)>,
    /// Connections per worker.
    load: Vec<usize>,
}

/// Why a connection could not be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// No worker runs.
    #[error("no worker is running")]
    NoWorker,
    /// The worker that holds (or would hold) the room holds its most connections already.
    #[error("the server is full: try again later")]
    Full,
}

/// Most connections (members and ingests) one worker holds when nothing else is configured.
pub const DEFAULT_MAX_PEERS_PER_WORKER: usize = 1000;

/// The workers and which rooms they hold.
#[derive(Debug)]
pub struct Dispatch {
    workers: Vec<WorkerHandle>,
    placement: Mutex<Placement>,
    next_peer: AtomicU64,
    /// Most connections one worker holds (so most rooms, too: a room holds one at least).
    max_per_worker: usize,
}

impl Dispatch {
    /// Dispatch over these workers.
    pub fn new(workers: Vec<WorkerHandle>) -> Self {
        let load = vec![0; workers.len()];
        Dispatch {
            workers,
            placement: Mutex::new(Placement {
                rooms: HashMap::new(),
                load,
            }),
            next_peer: AtomicU64::new(1),
            max_per_worker: DEFAULT_MAX_PEERS_PER_WORKER,
        }
    }

    /// Lets each worker hold at most `max` connections (members and ingests).
    pub fn with_max_peers_per_worker(mut self, max: usize) -> Self {
        self.max_per_worker = max;
        self
    }

    /// Draws peer ids from `first` on: each node of a cluster draws from its own range, so ids
    /// stay unique across nodes.
    pub fn with_first_peer_id(self, first: PeerId) -> Self {
        self.next_peer.store(first, Ordering::Relaxed);
        self
    }

    /// A fresh server-wide peer id.
    pub fn next_peer_id(&self) -> PeerId {
        self.next_peer.fetch_add(1, Ordering::Relaxed)
    }

    /// The workers.
    pub fn workers(&self) -> &[WorkerHandle] {
        &self.workers
    }

    /// Places one more connection in `room`, returning the worker index that owns it; refused
    /// when that worker holds its most connections.
    pub fn enter(&self, room: &str) -> Result<usize, PlaceError> {
        let mut p = self.placement.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(worker, _)) = p.rooms.get(room) {
            if p.load[worker] >= self.max_per_worker {
                return Err(PlaceError::Full);
            }
            p.load[worker] += 1;
            if let Some((_, count)) = p.rooms.get_mut(room) {
                *count += 1;
            }
            return Ok(worker);
        }
        let (worker, load) = p
            .load
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| **n)
            .map(|(i, n)| (i, *n))
            .ok_or(PlaceError::NoWorker)?;
        if load >= self.max_per_worker {
            return Err(PlaceError::Full);
        }
        p.load[worker] += 1;
        p.rooms.insert(room.to_owned(), (worker, 1));
        Ok(worker)
    }

    /// The worker that owns `room`, if the room is placed.
    pub fn worker_of(&self, room: &str) -> Option<usize> {
        let p = self.placement.lock().unwrap_or_else(|e| e.into_inner());
        p.rooms.get(room).map(|(worker, _)| *worker)
    }

    /// Takes one connection out of `room`; the room's placement goes with its last one.
    pub fn leave(&self, room: &str) {
        let mut p = self.placement.lock().unwrap_or_else(|e| e.into_inner());
        let Some((worker, count)) = p.rooms.get_mut(room) else {
            return;
        };
        *count -= 1;
        let (worker, empty) = (*worker, *count == 0);
        if empty {
            p.rooms.remove(room);
        }
        p.load[worker] = p.load[worker].saturating_sub(1);
    }

    /// Sends a command to worker `index`; false if that worker is gone.
    pub fn send(&self, index: usize, cmd: WorkerCommand) -> bool {
        self.workers
            .get(index)
            .is_some_and(|w| w.commands.send(cmd).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatch(n: usize) -> Dispatch {
        let workers = (0..n)
            .map(|i| WorkerHandle {
                commands: mpsc::unbounded_channel().0,
                media_port: i as u16,
                ice_tcp_port: None,
            })
            .collect();
        Dispatch::new(workers)
    }

    #[test]
    fn a_room_stays_on_one_worker_and_new_rooms_spread() {
        let d = dispatch(2);
        let a = d.enter("a").unwrap();
        assert_eq!(d.enter("a"), Ok(a));
        let b = d.enter("b").unwrap();
        assert_ne!(a, b, "the less loaded worker takes a new room");
        d.leave("a");
        d.leave("a");
        d.leave("b");
        assert!(d.placement.lock().unwrap().rooms.is_empty());
    }

    #[test]
    fn a_full_worker_takes_no_more_connections() {
        let d = dispatch(2).with_max_peers_per_worker(2);
        let a = d.enter("a").unwrap();
        let b = d.enter("b").unwrap();
        assert_eq!(d.enter("a"), Ok(a));
        assert_eq!(d.enter("a"), Err(PlaceError::Full), "a's worker is full");
        assert_eq!(d.enter("b"), Ok(b));
        assert_eq!(d.enter("c"), Err(PlaceError::Full), "every worker is full");
        d.leave("a");
        assert_eq!(d.enter("c"), Ok(a), "room made on the worker a left");
        assert_eq!(dispatch(0).enter("a"), Err(PlaceError::NoWorker));
    }
}
