//! What other nodes of a cluster did (`--cluster`), told to this worker's members, and the
//! drain that sends them to another node.

use std::time::Instant;

use tracing::debug;

use super::Core;
use crate::cluster::ClusterEvent;
use crate::protocol::{ChatOut, ServerMessage};

impl Core {
    /// Applies what happened on another node to this worker's view of the room, and tells the
    /// room's local members with the usual messages. Repeated events (a resynchronisation
    /// repeats what is known) tell nobody. Queues no [`crate::RoomEvent`]: the other node
    /// published it already.
    pub fn handle_cluster_event(&mut self, now: Instant, event: ClusterEvent) {
        debug!(?event, "cluster event");
        let room = event.room().to_owned();
        let message = match event {
            ClusterEvent::MemberJoined { peer, .. } => {
                if self.members.contains(peer.id) || !self.remote.join(&room, peer.clone()) {
                    return;
                }
                ServerMessage::PeerJoined { peer }
            }
            ClusterEvent::MemberLeft { peer_id, .. } => {
                if !self.remote.leave(&room, peer_id) {
                    return;
                }
                ServerMessage::PeerLeft { peer_id }
            }
            ClusterEvent::TrackPublished { peer_id, track, .. } => {
                if !self.remote.publish(&room, peer_id, track.clone()) {
                    return;
                }
                ServerMessage::TrackPublished { peer_id, track }
            }
            ClusterEvent::TrackUnpublished {
                peer_id, track_id, ..
            } => {
                if !self.remote.unpublish(&room, peer_id, &track_id) {
                    return;
                }
                ServerMessage::TrackUnpublished { peer_id, track_id }
            }
            ClusterEvent::TrackMuted {
                peer_id,
                track_id,
                muted,
                ..
            } => {
                if !self.remote.mute(&room, peer_id, &track_id, muted) {
                    return;
                }
                ServerMessage::TrackMuted {
                    peer_id,
                    track_id,
                    muted,
                }
            }
            ClusterEvent::Chat {
                from, name, text, ..
            } => {
                self.relay_chat(&room, None, ChatOut { from, name, text });
                self.drive(now);
                return;
            }
            ClusterEvent::ActiveSpeaker {
                peer_id, track_id, ..
            } => ServerMessage::ActiveSpeaker { peer_id, track_id },
        };
        for member in self.members.members_of(&room) {
            self.outbox.signal(member, message.clone());
        }
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
