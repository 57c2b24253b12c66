//! Members of a room that live on other edge-sfu nodes (`--cluster`), as the directory tells
//! this worker of them.
//!
//! The shell's directory client (the `cluster` crate) learns who joins and leaves on other nodes
//! and hands it to the core as [`ClusterEvent`]s ([`crate::Core::handle_cluster_event`]). The
//! core keeps everyone it was told of in a [`ClusterRoster`], by room, for every room of the
//! cluster; a room this worker hosts (one with a member or ingest of its own) admits the roster's
//! members of that room as remote members of the trunk to their worker
//! ([`crate::trunk::RemoteMember`]), which brings their tracks and media. Their tracks,
//! mutes and the active speaker come through the trunk, not the directory: what a page is told
//! of is what it can receive.

use std::collections::BTreeMap;

use crate::protocol::PeerId;

/// Something that happened on another node, for the rooms of this worker. Never produces a
/// [`crate::RoomEvent`]: what another node did is published by that node.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterEvent {
    /// A member joined `room` on another node (or was found there on a resynchronisation).
    MemberJoined {
        /// The room.
        room: String,
        /// The member.
        member: ClusterMember,
    },
    /// A remote member left (or its node is gone).
    MemberLeft {
        /// The room.
        room: String,
        /// The member.
        peer_id: PeerId,
    },
    /// A remote member wrote a chat line.
    Chat {
        /// The room.
        room: String,
        /// The sender.
        from: PeerId,
        /// Its display name.
        name: String,
        /// The text.
        text: String,
    },
}

/// A member of another node, as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMember {
    /// Its id (unique in the cluster: each node draws ids from its own range).
    pub id: PeerId,
    /// Its display name.
    pub name: String,
    /// The trunk end of the worker it is connected to ([`crate::trunk::TrunkEndpoint::name`]):
    /// its tracks come over the trunk to that end.
    pub trunk: String,
}

/// Every member of another node this worker was told of, by room and id. Kept for rooms this
/// worker does not host too: the room's first local member must find who is already in it
/// elsewhere.
#[derive(Debug, Default)]
pub struct ClusterRoster {
    rooms: BTreeMap<String, BTreeMap<PeerId, ClusterMember>>,
}

impl ClusterRoster {
    /// Records a member; false when it was known already (a resynchronisation repeats members).
    pub fn join(&mut self, room: &str, member: ClusterMember) -> bool {
        let members = self.rooms.entry(room.to_owned()).or_default();
        if members.contains_key(&member.id) {
            return false;
        }
        members.insert(member.id, member);
        true
    }

    /// Forgets a member; false when it was not known.
    pub fn leave(&mut self, room: &str, peer: PeerId) -> bool {
        let Some(members) = self.rooms.get_mut(room) else {
            return false;
        };
        let known = members.remove(&peer).is_some();
        if members.is_empty() {
            self.rooms.remove(room);
        }
        known
    }

    /// The members of `room`, by id.
    pub fn members_of(&self, room: &str) -> Vec<ClusterMember> {
        self.rooms
            .get(room)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: PeerId, trunk: &str) -> ClusterMember {
        ClusterMember {
            id,
            name: format!("p{id}"),
            trunk: trunk.into(),
        }
    }

    #[test]
    fn members_are_idempotent_and_empty_rooms_forgotten() {
        let mut r = ClusterRoster::default();
        assert!(r.join("k", member(7, "b/0")));
        assert!(
            !r.join("k", member(7, "b/0")),
            "a repeated member is not news"
        );
        assert!(r.join("k", member(3, "c/1")));
        assert_eq!(r.members_of("k"), vec![member(3, "c/1"), member(7, "b/0")]);
        assert!(r.leave("k", 7));
        assert!(!r.leave("k", 7));
        assert!(r.leave("k", 3));
        assert!(r.members_of("k").is_empty());
        assert!(r.rooms.is_empty(), "an empty room is forgotten");
    }
}
