//! This node's own members and their tracks, kept from the workers' room events: what the node
//! writes to Redis when it registers (again, after Redis came back), and its load.

use std::collections::{BTreeMap, HashMap};

use sfu_core::protocol::{PeerId, TrackInfo};
use sfu_core::RoomEvent;

use crate::record::{MemberRecord, RoomLoad};

/// What one local room event changes in the directory.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The member's record is new or changed: write it.
    Member(MemberRecord),
    /// The member is gone: delete its record.
    Gone(PeerId),
    /// Nothing stored changes (chat, speaker, room start and finish, an ingest's track).
    Nothing,
}

/// The node's members, by id.
#[derive(Debug)]
pub struct LocalMembers {
    node: String,
    members: HashMap<PeerId, MemberRecord>,
}

impl LocalMembers {
    /// No members yet, on node `node`.
    pub fn new(node: &str) -> Self {
        LocalMembers {
            node: node.to_owned(),
            members: HashMap::new(),
        }
    }

    /// Applies a room event of the worker whose trunk end is `trunk`.
    pub fn apply(&mut self, trunk: &str, event: &RoomEvent) -> Change {
        match event {
            RoomEvent::ParticipantJoined {
                room,
                peer_id,
                name,
            } => {
                let record = MemberRecord {
                    room: room.clone(),
                    id: *peer_id,
                    name: name.clone(),
                    node: self.node.clone(),
                    trunk: trunk.to_owned(),
                    tracks: Vec::new(),
                };
                self.members.insert(*peer_id, record.clone());
                Change::Member(record)
            }
            RoomEvent::ParticipantLeft { peer_id, .. } => match self.members.remove(peer_id) {
                Some(_) => Change::Gone(*peer_id),
                None => Change::Nothing,
            },
            RoomEvent::TrackPublished {
                peer_id,
                track_id,
                kind,
                source,
                ..
            } => self.update(*peer_id, |tracks| {
                tracks.retain(|t| t.id != *track_id);
                tracks.push(TrackInfo {
                    id: track_id.clone(),
                    kind: *kind,
                    source: *source,
                    muted: false,
                });
            }),
            RoomEvent::TrackUnpublished {
                peer_id, track_id, ..
            } => self.update(*peer_id, |tracks| tracks.retain(|t| t.id != *track_id)),
            RoomEvent::TrackMuted {
                peer_id,
                track_id,
                muted,
                ..
            } => self.update(*peer_id, |tracks| {
                if let Some(t) = tracks.iter_mut().find(|t| t.id == *track_id) {
                    t.muted = *muted;
                }
            }),
            RoomEvent::RoomStarted { .. }
            | RoomEvent::RoomFinished { .. }
            | RoomEvent::Chat { .. }
            | RoomEvent::ActiveSpeaker { .. } => Change::Nothing,
        }
    }

    /// Every member's record.
    pub fn records(&self) -> impl Iterator<Item = &MemberRecord> {
        self.members.values()
    }

    /// How many members the node holds.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the node holds no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The node's rooms with their member counts, by name.
    pub fn rooms(&self) -> Vec<RoomLoad> {
        let mut rooms: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            *rooms.entry(&m.room).or_default() += 1;
        }
        rooms
            .into_iter()
            .map(|(room, members)| RoomLoad {
                room: room.to_owned(),
                members,
            })
            .collect()
    }

    fn update(&mut self, peer: PeerId, change: impl FnOnce(&mut Vec<TrackInfo>)) -> Change {
        match self.members.get_mut(&peer) {
            Some(m) => {
                change(&mut m.tracks);
                Change::Member(m.clone())
            }
            // A plain RTP ingest's track: ingests are not members of the directory.
            None => Change::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu_core::protocol::{TrackKind, TrackSource};

    #[test]
    fn members_follow_their_events() {
        let mut l = LocalMembers::new("a");
        let joined = l.apply(
            "a/0",
            &RoomEvent::ParticipantJoined {
                room: "k".into(),
                peer_id: 5,
                name: "ana".into(),
            },
        );
        assert!(
            matches!(joined, Change::Member(ref m) if m.node == "a" && m.trunk == "a/0" && m.id == 5)
        );
        l.apply(
            "a/0",
            &RoomEvent::TrackPublished {
                room: "k".into(),
                peer_id: 5,
                track_id: "5:0".into(),
                kind: TrackKind::Audio,
                source: TrackSource::Mic,
            },
        );
        let muted = l.apply(
            "a/0",
            &RoomEvent::TrackMuted {
                room: "k".into(),
                peer_id: 5,
                track_id: "5:0".into(),
                muted: true,
            },
        );
        assert!(matches!(muted, Change::Member(ref m) if m.tracks[0].muted));
        assert_eq!(
            l.rooms(),
            vec![RoomLoad {
                room: "k".into(),
                members: 1
            }]
        );
        let left = l.apply(
            "a/0",
            &RoomEvent::ParticipantLeft {
                room: "k".into(),
                peer_id: 5,
                name: "ana".into(),
            },
        );
        assert_eq!(left, Change::Gone(5));
        assert!(l.is_empty());
    }
}
