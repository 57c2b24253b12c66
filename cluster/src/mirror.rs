//! What this node knows of the other nodes' members, and what each change of it means for the
//! workers ([`ClusterEvent`]s). Fed from two places: the other nodes' published room events (as
//! they happen) and full reads of their members (on every heartbeat, and when Redis comes back),
//! so a lost event is repaired at the next read and a repeated one changes nothing. Tracks,
//! mutes and the active speaker are not handed on: they cross on the trunks, with the media.

use std::collections::{BTreeSet, HashMap};

use sfu_core::cluster::ClusterEvent;
use sfu_core::protocol::{valid_name, PeerId};
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
                    trunk: published.trunk,
                    tracks: Vec::new(),
                };
                if let std::collections::hash_map::Entry::Vacant(slot) = members.entry(peer_id) {
                    diff_member(None, Some(&record), &mut out);
                    slot.insert(record);
                }
            }
            RoomEvent::ParticipantLeft { peer_id, .. } => {
                if let Some(old) = members.remove(&peer_id) {
                    diff_member(Some(&old), None, &mut out);
                }
            }
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
            RoomEvent::TrackPublished { .. }
            | RoomEvent::TrackUnpublished { .. }
            | RoomEvent::TrackMuted { .. }
            | RoomEvent::ActiveSpeaker { .. }
            | RoomEvent::RoomStarted { .. }
            | RoomEvent::RoomFinished { .. } => {}
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

/// The events that turn member `old` into `new` (either may be absent). A member whose room or
/// trunk end changed left and joined again.
fn diff_member(
    old: Option<&MemberRecord>,
    new: Option<&MemberRecord>,
    out: &mut Vec<ClusterEvent>,
) {
    match (old, new) {
        (Some(o), Some(n)) if o.room == n.room && o.trunk == n.trunk && o.name == n.name => {}
        _ => {
            if let Some(o) = old {
                out.push(ClusterEvent::MemberLeft {
                    room: o.room.clone(),
                    peer_id: o.id,
                });
            }
            if let Some(n) = new {
                out.push(ClusterEvent::MemberJoined {
                    room: n.room.clone(),
                    member: n.member(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu_core::cluster::ClusterMember;

    fn member(node: &str, id: PeerId, trunk: &str) -> MemberRecord {
        MemberRecord {
            room: "k".into(),
            id,
            name: format!("p{id}"),
            node: node.into(),
            trunk: trunk.into(),
            tracks: Vec::new(),
        }
    }

    #[test]
    fn own_events_are_not_news_and_repeats_change_nothing() {
        let mut m = Mirror::new("a");
        let joined = |node: &str| NodeEvent {
            node: node.into(),
            trunk: format!("{node}/1"),
            event: RoomEvent::ParticipantJoined {
                room: "k".into(),
                peer_id: 9,
                name: "p9".into(),
            },
        };
        assert!(m.apply(joined("a")).is_empty());
        assert_eq!(
            m.apply(joined("b")),
            vec![ClusterEvent::MemberJoined {
                room: "k".into(),
                member: ClusterMember {
                    id: 9,
                    name: "p9".into(),
                    trunk: "b/1".into()
                }
            }]
        );
        assert!(m.apply(joined("b")).is_empty(), "heard twice");
        let snapshot = HashMap::from([("b".to_string(), vec![member("b", 9, "b/1")])]);
        assert!(m.resync(snapshot, true).is_empty(), "the read agrees");
        let long = NodeEvent {
            node: "b".into(),
            trunk: "b/0".into(),
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
            ("b".to_string(), vec![member("b", 9, "b/0")]),
            ("c".to_string(), vec![member("c", 4, "c/0")]),
        ]);
        assert_eq!(m.resync(snapshot, true).len(), 2);
        let snapshot = HashMap::from([("b".to_string(), vec![member("b", 9, "b/1")])]);
        let during_outage = m.resync(snapshot.clone(), false);
        assert_eq!(
            during_outage,
            vec![
                ClusterEvent::MemberLeft {
                    room: "k".into(),
                    peer_id: 9
                },
                ClusterEvent::MemberJoined {
                    room: "k".into(),
                    member: member("b", 9, "b/1").member()
                }
            ],
            "a member on another worker moved; c is kept while nodes may still be registering"
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
