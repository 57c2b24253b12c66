//! What this node knows of the other nodes' members, and what each change of it means for the
//! workers ([`ClusterEvent`]s). Fed from two places: the other nodes' published room events (as
//! they happen) and full reads of their members (on every heartbeat, and when Redis comes back),
//! so a lost event is repaired at the next read and a repeated one changes nothing.

use std::collections::{BTreeSet, HashMap};

use sfu_core::cluster::ClusterEvent;
use sfu_core::protocol::{valid_name, PeerId, TrackInfo};
use sfu_core::RoomEvent;

use crate::record::{MemberRecord, NodeEvent};

/// Longest chat line another node may relay, in characters (what a member may write).
const MAX_CHAT_CHARS: usize = 2000;

/// The other nodes' members, by node and id.
#[derive(Debug)]
pub struct Mirror {
    own: String,
    nodes: HashMap<String, HashMap<PeerId, MemberRecord>>,
}

impl Mirror {
    /// Knows nobody yet; `own` is this node's id (its own events are not news).
    pub fn new(own: &str) -> Self {
        Mirror {
            own: own.to_owned(),
            nodes: HashMap::new(),
        }
    }

    /// A room event another node published.
    pub fn apply(&mut self, published: NodeEvent) -> Vec<ClusterEvent> {
        if published.node == self.own || !acceptable(&published.event) {
            return Vec::new();
        }
        let members = self.nodes.entry(published.node.clone()).or_default();
        let mut out = Vec::new();
        match published.event {
            RoomEvent::ParticipantJoined {
                room,
                peer_id,
                name,
            } => {
                let record = MemberRecord {
                    room,
                    id: peer_id,
                    name,
                    node: published.node,
                    tracks: Vec::new(),
                };
                diff_member(None, Some(&record), &mut out);
                members.entry(peer_id).or_insert(record);
            }
            RoomEvent::ParticipantLeft { peer_id, .. } => {
                if let Some(old) = members.remove(&peer_id) {
                    diff_member(Some(&old), None, &mut out);
                }
            }
            RoomEvent::TrackPublished {
                peer_id,
                track_id,
                kind,
                source,
                ..
            } => {
                let track = TrackInfo {
                    id: track_id,
                    kind,
                    source,
                    muted: false,
                };
                change_tracks(members, peer_id, &mut out, |tracks| {
                    tracks.retain(|t| t.id != track.id);
                    tracks.push(track);
                });
            }
            RoomEvent::TrackUnpublished {
                peer_id, track_id, ..
            } => change_tracks(members, peer_id, &mut out, |tracks| {
                tracks.retain(|t| t.id != track_id)
            }),
            RoomEvent::TrackMuted {
                peer_id,
                track_id,
                muted,
                ..
            } => change_tracks(members, peer_id, &mut out, |tracks| {
                if let Some(t) = tracks.iter_mut().find(|t| t.id == track_id) {
                    t.muted = muted;
                }
            }),
            RoomEvent::Chat {
                room,
                peer_id,
                name,
                text,
            } => out.push(ClusterEvent::Chat {
                room,
                from: peer_id,
                name,
                text,
            }),
            RoomEvent::ActiveSpeaker {
                room,
                peer_id,
                track_id,
            } => out.push(ClusterEvent::ActiveSpeaker {
                room,
                peer_id,
                track_id,
            }),
            RoomEvent::RoomStarted { .. } | RoomEvent::RoomFinished { .. } => {}
        }
        out
    }

    /// What a full read of the directory found: every live node's members (this node's own
    /// included or not). Nodes missing from it are gone only with `forget_missing`: right after
    /// Redis came back, the other nodes may not have registered again yet.
    pub fn resync(
        &mut self,
        snapshot: HashMap<String, Vec<MemberRecord>>,
        forget_missing: bool,
    ) -> Vec<ClusterEvent> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for (node, records) in snapshot {
            if node == self.own {
                continue;
            }
            let old = self.nodes.remove(&node).unwrap_or_default();
            let new: HashMap<PeerId, MemberRecord> = records
                .into_iter()
                .filter(|r| valid_name(&r.room) && valid_name(&r.name))
                .map(|r| (r.id, r))
                .collect();
            for (id, o) in &old {
                diff_member(Some(o), new.get(id), &mut out);
            }
            for (id, n) in &new {
                if !old.contains_key(id) {
                    diff_member(None, Some(n), &mut out);
                }
            }
            self.nodes.insert(node.clone(), new);
            seen.insert(node);
        }
        if forget_missing {
            let gone: Vec<String> = self
                .nodes
                .keys()
                .filter(|n| !seen.contains(*n))
                .cloned()
                .collect();
            for node in gone {
                tracing::info!(node, "node gone: its members leave their rooms");
                for old in self.nodes.remove(&node).unwrap_or_default().values() {
                    diff_member(Some(old), None, &mut out);
                }
            }
        }
        out
    }

    /// How many members of other nodes are known.
    pub fn len(&self) -> usize {
        self.nodes.values().map(HashMap::len).sum()
    }

    /// Whether no member of another node is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether another node's event is within what this node's own members may send: names as a
/// join allows, chat lines as long as a member's. Whatever is in Redis is input like any other.
fn acceptable(event: &RoomEvent) -> bool {
    match event {
        RoomEvent::ParticipantJoined { room, name, .. } => valid_name(room) && valid_name(name),
        RoomEvent::Chat {
            room, name, text, ..
        } => valid_name(room) && valid_name(name) && text.chars().count() <= MAX_CHAT_CHARS,
        _ => true,
    }
}

/// Applies `change` to a known member's tracks and reports the difference.
fn change_tracks(
    members: &mut HashMap<PeerId, MemberRecord>,
    peer: PeerId,
    out: &mut Vec<ClusterEvent>,
    change: impl FnOnce(&mut Vec<TrackInfo>),
) {
    let Some(member) = members.get_mut(&peer) else {
        return;
    };
    let before = member.clone();
    change(&mut member.tracks);
    diff_member(Some(&before), Some(member), out);
}

/// The events that turn member `old` into `new` (either may be absent).
fn diff_member(
    old: Option<&MemberRecord>,
    new: Option<&MemberRecord>,
    out: &mut Vec<ClusterEvent>,
) {
    match (old, new) {
        (None, None) => {}
        (None, Some(n)) => out.push(ClusterEvent::MemberJoined {
            room: n.room.clone(),
            peer: n.info(),
        }),
        (Some(o), None) => out.push(ClusterEvent::MemberLeft {
            room: o.room.clone(),
            peer_id: o.id,
        }),
        (Some(o), Some(n)) => {
            let room = &n.room;
            for t in &o.tracks {
                if !n.tracks.iter().any(|nt| nt.id == t.id) {
                    out.push(ClusterEvent::TrackUnpublished {
                        room: room.clone(),
                        peer_id: n.id,
                        track_id: t.id.clone(),
                    });
                }
            }
            for t in &n.tracks {
                match o.tracks.iter().find(|ot| ot.id == t.id) {
                    None => out.push(ClusterEvent::TrackPublished {
                        room: room.clone(),
                        peer_id: n.id,
                        track: t.clone(),
                    }),
                    Some(ot) if ot.muted != t.muted => out.push(ClusterEvent::TrackMuted {
                        room: room.clone(),
                        peer_id: n.id,
                        track_id: t.id.clone(),
                        muted: t.muted,
                    }),
                    Some(_) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu_core::protocol::{TrackKind, TrackSource};

    fn member(node: &str, id: PeerId, tracks: Vec<TrackInfo>) -> MemberRecord {
        MemberRecord {
            room: "k".into(),
            id,
            name: format!("p{id}"),
            node: node.into(),
            tracks,
        }
    }

    fn mic(id: &str, muted: bool) -> TrackInfo {
        TrackInfo {
            id: id.into(),
            kind: TrackKind::Audio,
            source: TrackSource::Mic,
            muted,
        }
    }

    #[test]
    fn own_events_are_not_news_and_repeats_change_nothing() {
        let mut m = Mirror::new("a");
        let joined = |node: &str| NodeEvent {
            node: node.into(),
            event: RoomEvent::ParticipantJoined {
                room: "k".into(),
                peer_id: 9,
                name: "bo".into(),
            },
        };
        assert!(m.apply(joined("a")).is_empty());
        assert_eq!(m.apply(joined("b")).len(), 1);
        let snapshot = HashMap::from([("b".to_string(), vec![member("b", 9, vec![])])]);
        assert!(m.resync(snapshot, true).is_empty(), "the read agrees");
        let long = NodeEvent {
            node: "b".into(),
            event: RoomEvent::ParticipantJoined {
                room: "k".into(),
                peer_id: 10,
                name: "x".repeat(65),
            },
        };
        assert!(m.apply(long).is_empty(), "a name no join allows is refused");
    }

    #[test]
    fn a_read_repairs_what_events_missed_and_forgets_gone_nodes() {
        let mut m = Mirror::new("a");
        let snapshot = HashMap::from([
            (
                "b".to_string(),
                vec![member("b", 9, vec![mic("9:0", false)])],
            ),
            ("c".to_string(), vec![member("c", 4, vec![])]),
        ]);
        assert_eq!(m.resync(snapshot, true).len(), 2);
        let snapshot = HashMap::from([(
            "b".to_string(),
            vec![member("b", 9, vec![mic("9:0", true)])],
        )]);
        let during_outage = m.resync(snapshot.clone(), false);
        assert_eq!(
            during_outage,
            vec![ClusterEvent::TrackMuted {
                room: "k".into(),
                peer_id: 9,
                track_id: "9:0".into(),
                muted: true
            }],
            "c is kept while nodes may still be registering again"
        );
        assert_eq!(
            m.resync(snapshot, true),
            vec![ClusterEvent::MemberLeft {
                room: "k".into(),
                peer_id: 4
            }]
        );
        assert_eq!(m.len(), 1);
    }
}
