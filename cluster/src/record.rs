//! What the directory stores and publishes, as JSON.

use serde::{Deserialize, Serialize};
use sfu_core::cluster::ClusterMember;
use sfu_core::protocol::{PeerId, TrackInfo};
use sfu_core::RoomEvent;

/// One node, as its heartbeat writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    /// Its `--node-id`.
    pub id: String,
    /// Where clients reach its signaling server (`https://host:port`).
    pub url: String,
    /// Where other nodes reach it for trunks (`--trunk-address`).
    pub trunk_address: String,
    /// Members connected to it.
    pub peers: usize,
    /// Its rooms and how many of their members are on it.
    pub rooms: Vec<RoomLoad>,
    /// Whether it is draining (it takes no new members).
    pub draining: bool,
}

/// A room on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomLoad {
    /// The room's name.
    pub room: String,
    /// Its members on that node.
    pub members: usize,
}

/// One member of a room, in its node's members hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRecord {
    /// The room.
    pub room: String,
    /// The member's id (unique in the cluster: each node draws its own range).
    pub id: PeerId,
    /// Its display name.
    pub name: String,
    /// The node it is connected to.
    pub node: String,
    /// The trunk end of the worker its room lives on there (`node/index`); its media comes
    /// over the trunk to that end. Empty in a record of a node without trunks.
    #[serde(default)]
    pub trunk: String,
    /// The tracks it publishes (for people reading the directory: their media and state cross
    /// on trunks).
    pub tracks: Vec<TrackInfo>,
}

impl MemberRecord {
    /// The member as a worker's roster keeps it.
    pub fn member(&self) -> ClusterMember {
        ClusterMember {
            id: self.id,
            name: self.name.clone(),
            trunk: self.trunk.clone(),
        }
    }
}

/// A room event one node publishes for the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeEvent {
    /// The node it happened on.
    pub node: String,
    /// The trunk end of the worker it happened on (`node/index`).
    #[serde(default)]
    pub trunk: String,
    /// What happened (the core's own room event).
    pub event: RoomEvent,
}

/// A room token revoked on one node (`POST /api/tokens/revoke`), for every node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokedToken {
    /// The token's `jti`.
    pub jti: String,
    /// When the revocation may be forgotten, in seconds since the epoch: the token's `exp`, or
    /// the revoking node's default end when the request gave none.
    pub until: u64,
}

/// A revocation one node publishes for the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRevocation {
    /// The node it was made on.
    pub node: String,
    /// The token.
    pub token: RevokedToken,
}
