//! Members of a room that live on other edge-sfu nodes (`--cluster`), as this worker knows them.
//!
//! The shell's directory client (the `cluster` crate) learns what happens on other nodes and
//! hands it to the core as [`ClusterEvent`]s ([`crate::Core::handle_cluster_event`]); the core
//! keeps the remote members per room in [`RemoteMembers`] and tells its own members with the
//! protocol's usual messages (`peerJoined`, `peerLeft`, `trackPublished`, `trackMuted`, `chat`,
//! `activeSpeaker`), so a page lists everyone in the room whichever node they are on.
//!
//! Remote tracks are announced but carry no media yet: that is the trunk's job (a source kind of
//! the router, built separately). When it lands, [`ClusterEvent::TrackPublished`] is where a
//! remote track becomes a `Track` whose source is the trunk, and local members get
//! subscriptions to it like to any other.

use std::collections::HashMap;

use crate::protocol::{PeerId, PeerInfo, TrackInfo};

/// Something that happened on another node, for the rooms of this worker. Never produces a
/// [`crate::RoomEvent`]: what another node did is published by that node.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterEvent {
    /// A member joined `room` on another node (or was found there on a resynchronisation).
    MemberJoined {
        /// The room.
        room: String,
        /// The member, with the tracks it publishes.
        peer: PeerInfo,
    },
    /// A remote member left (or its node is gone).
    MemberLeft {
        /// The room.
        room: String,
        /// The member.
        peer_id: PeerId,
    },
    /// A remote member published a track.
    TrackPublished {
        /// The room.
        room: String,
        /// The publisher.
        peer_id: PeerId,
        /// The track (no media crosses nodes until the trunk does).
        track: TrackInfo,
    },
    /// A remote member stopped a track.
    TrackUnpublished {
        /// The room.
        room: String,
        /// The publisher.
        peer_id: PeerId,
        /// The track's id.
        track_id: String,
    },
    /// A remote member muted or unmuted a track.
    TrackMuted {
        /// The room.
        room: String,
        /// The publisher.
        peer_id: PeerId,
        /// The track's id.
        track_id: String,
        /// New state.
        muted: bool,
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
    /// The dominant speaker another node detected in the room changed.
    ActiveSpeaker {
        /// The room.
        room: String,
        /// The member speaking, or `None`.
        peer_id: Option<PeerId>,
        /// Its audio track.
        track_id: Option<String>,
    },
}

impl ClusterEvent {
    /// The room the event is about.
    pub fn room(&self) -> &str {
        match self {
            ClusterEvent::MemberJoined { room, .. }
            | ClusterEvent::MemberLeft { room, .. }
            | ClusterEvent::TrackPublished { room, .. }
            | ClusterEvent::TrackUnpublished { room, .. }
            | ClusterEvent::TrackMuted { room, .. }
            | ClusterEvent::Chat { room, .. }
            | ClusterEvent::ActiveSpeaker { room, .. } => room,
        }
    }
}

/// The remote members of every room, by room and id. Kept for rooms this worker does not hold
/// yet too: the first local member of a room must be told who is already in it elsewhere.
#[derive(Debug, Default)]
pub struct RemoteMembers {
    rooms: HashMap<String, HashMap<PeerId, PeerInfo>>,
}

impl RemoteMembers {
    /// Records a member; false when it was known already (a resynchronisation repeats members).
    pub fn join(&mut self, room: &str, peer: PeerInfo) -> bool {
        let members = self.rooms.entry(room.to_owned()).or_default();
        if members.contains_key(&peer.id) {
            return false;
        }
        members.insert(peer.id, peer);
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

    /// Whether `peer` is a known remote member of `room`.
    pub fn contains(&self, room: &str, peer: PeerId) -> bool {
        self.rooms.get(room).is_some_and(|m| m.contains_key(&peer))
    }

    /// Adds (or replaces) a track of a known member; false when the member is unknown or the
    /// track was known as it is.
    pub fn publish(&mut self, room: &str, peer: PeerId, track: TrackInfo) -> bool {
        let Some(member) = self.member_mut(room, peer) else {
            return false;
        };
        let tracks = &mut member.tracks;
        match tracks.iter_mut().find(|t| t.id == track.id) {
            Some(known) if *known == track => false,
            Some(known) => {
                *known = track;
                true
            }
            None => {
                tracks.push(track);
                true
            }
        }
    }

    /// Removes a track of a known member; false when it was not known.
    pub fn unpublish(&mut self, room: &str, peer: PeerId, track_id: &str) -> bool {
        let Some(member) = self.member_mut(room, peer) else {
            return false;
        };
        let before = member.tracks.len();
        member.tracks.retain(|t| t.id != track_id);
        member.tracks.len() != before
    }

    /// Sets a known track's mute state; false when unknown or unchanged.
    pub fn mute(&mut self, room: &str, peer: PeerId, track_id: &str, muted: bool) -> bool {
        let Some(member) = self.member_mut(room, peer) else {
            return false;
        };
        match member.tracks.iter_mut().find(|t| t.id == track_id) {
            Some(t) if t.muted != muted => {
                t.muted = muted;
                true
            }
            _ => false,
        }
    }

    /// The remote members of `room`, as the protocol shows members, by id.
    pub fn infos(&self, room: &str) -> Vec<PeerInfo> {
        let mut infos: Vec<PeerInfo> = self
            .rooms
            .get(room)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        infos.sort_by_key(|p| p.id);
        infos
    }

    fn member_mut(&mut self, room: &str, peer: PeerId) -> Option<&mut PeerInfo> {
        self.rooms.get_mut(room)?.get_mut(&peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{TrackKind, TrackSource};

    fn peer(id: PeerId) -> PeerInfo {
        PeerInfo {
            id,
            name: format!("p{id}"),
            tracks: Vec::new(),
        }
    }

    fn track(id: &str, muted: bool) -> TrackInfo {
        TrackInfo {
            id: id.into(),
            kind: TrackKind::Audio,
            source: TrackSource::Mic,
            muted,
        }
    }

    #[test]
    fn members_and_tracks_are_idempotent() {
        let mut r = RemoteMembers::default();
        assert!(r.join("k", peer(7)));
        assert!(!r.join("k", peer(7)), "a repeated member is not news");
        assert!(r.publish("k", 7, track("7:0", false)));
        assert!(!r.publish("k", 7, track("7:0", false)));
        assert!(r.mute("k", 7, "7:0", true));
        assert!(!r.mute("k", 7, "7:0", true));
        assert!(!r.publish("k", 8, track("8:0", false)), "unknown member");
        assert_eq!(r.infos("k")[0].tracks, vec![track("7:0", true)]);
        assert!(r.unpublish("k", 7, "7:0"));
        assert!(r.leave("k", 7));
        assert!(!r.leave("k", 7));
        assert!(r.infos("k").is_empty());
        assert!(r.rooms.is_empty(), "an empty room is forgotten");
    }
}
