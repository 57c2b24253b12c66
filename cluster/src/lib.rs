//! Regional nodes (`--cluster`): several edge-sfu processes serve one room, with Redis as the
//! directory of nodes, rooms, members and tracks, and as the bus of room events between them.
//!
//! - [`keys`]: every Redis key and channel, in one place (`docs/cluster.md` describes them);
//! - [`record`]: what is stored under them (JSON);
//! - [`local`]: this node's own rooms, members and tracks, kept from the workers' room events, so
//!   the node can write them again whenever Redis comes back empty;
//! - [`mirror`]: what this node knows of the other nodes' members, and the [`ClusterEvent`]s a
//!   change of it means for the workers;
//! - [`directory`]: the one task that talks to Redis (register, heartbeat, publish, subscribe,
//!   resynchronise), reconnecting for as long as it runs;
//! - [`view`]: the nodes as last read, for `GET /api/cluster` and the drain's choice of node;
//! - [`endpoint`]: how a worker is named as a trunk end (`node/index`).
//!
//! Media does not cross nodes here: the trunks between workers carry it (`sfu_core::trunk`);
//! the directory only carries their descriptions from one end to the other.

pub mod directory;
pub mod endpoint;
pub mod keys;
pub mod local;
pub mod mirror;
pub mod record;
pub mod view;

pub use directory::{ApplyRevocation, ClusterSettings, Directory, NodeInput, ToWorkers};
pub use sfu_core::cluster::ClusterEvent;
pub use view::ClusterView;
