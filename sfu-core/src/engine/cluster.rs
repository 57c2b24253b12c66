//! What other nodes of a cluster did (`--cluster`), told to this worker's rooms, and the drain
//! that sends this node's members to another node.

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, warn};

use super::Core;
use crate::cluster::{ClusterEvent, ClusterMember};
use crate::protocol::{ChatOut, ServerMessage};
use crate::trunk::RemoteMember;

impl Core {
    /// Applies what happened on another node: a member that joined a room this worker hosts
    /// is admitted to it (over the trunk to its worker, dialled if there is none), one that
    /// left is removed, a chat line is relayed. Repeated events (a resynchronisation repeats
    /// what is known) change nothing. Queues no [`crate::RoomEvent`]: the other node published
    /// it already.
    pub fn handle_cluster_event(&mut self, now: Instant, event: ClusterEvent) {
        debug!(?event, "cluster event");
        match event {
            ClusterEvent::MemberJoined { room, member } => {
                if self.members.contains(member.id) || !self.roster.join(&room, member.clone()) {
                    return;
                }
                if self.hosts(&room) {
                    self.admit_remote(now, &room, member);
                }
            }
            ClusterEvent::MemberLeft { room, peer_id } => {
                if self.roster.leave(&room, peer_id) {
                    self.remove_remote_member(now, peer_id);
                }
            }
            ClusterEvent::Chat {
                room,
                from,
                name,
                text,
            } => self.relay_chat(&room, None, ChatOut { from, name, text }),
        }
        self.drive(now);
    }

    /// Admits every member of the roster in `room` that is not admitted yet: the room now has
    /// a member of this worker.
    pub(super) fn admit_roster(&mut self, now: Instant, room: &Arc<str>) {
        for member in self.roster.members_of(room) {
            if self.trunks.member(member.id).is_none() {
                self.admit_remote(now, room, member);
            }
        }
    }

    /// The room has no member of this worker left: its remote members leave it here (they stay
    /// in the roster), so the room closes and its tracks stop crossing.
    pub(super) fn release_roster(&mut self, now: Instant, room: &str) {
        if self.hosts(room) {
            return;
        }
        let admitted = self
            .members
            .room(room)
            .map(|r| r.remote_members.clone())
            .unwrap_or_default();
        for id in admitted {
            self.remove_remote_member(now, id);
        }
    }

    /// Whether `room` has a member or ingest of this worker.
    fn hosts(&self, room: &str) -> bool {
        self.members.room(room).is_some_and(|r| r.has_local())
    }

    /// Makes roster member `member` a remote member of `room` here, and makes sure the trunk
    /// to its worker exists.
    fn admit_remote(&mut self, now: Instant, room: &str, member: ClusterMember) {
        let remote = RemoteMember {
            node: member.trunk.clone(),
            remote_id: member.id,
            room: room.into(),
            name: member.name,
        };
        if let Err(e) = self.insert_remote_member(now, member.id, remote) {
            warn!(peer = member.id, error = %e, "remote member not admitted");
            return;
        }
        self.dial_trunk(now, &member.trunk);
    }

    /// The node is draining: tells every member to join its room again at `url` (another node).
    /// They stay until they leave; the shell stops the core once they have, or at its deadline.
    pub fn drain(&mut self, url: &str) {
        for id in self.members.ids() {
            self.outbox.signal(
                id,
                ServerMessage::Reconnect {
                    url: url.to_owned(),
                },
            );
        }
    }
}
