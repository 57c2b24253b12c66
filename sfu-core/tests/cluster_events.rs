//! Members on other nodes (`--cluster`), through the core with simulated time (see `common`):
//! what the directory hands the core reaches the room's local members as the usual protocol
//! messages, once, and a new local member finds the remote ones in `joined`; none of it becomes
//! a room event of this node.

mod common;

use std::time::Duration;

use common::*;
use sfu_core::cluster::ClusterEvent;
use sfu_core::protocol::{PeerInfo, ServerMessage, TrackInfo, TrackKind, TrackSource};

const FAR: u64 = 1 << 40;

fn far_member() -> PeerInfo {
    PeerInfo {
        id: FAR,
        name: "far".into(),
        tracks: Vec::new(),
    }
}

fn far_mic(muted: bool) -> TrackInfo {
    TrackInfo {
        id: format!("{FAR}:0"),
        kind: TrackKind::Audio,
        source: TrackSource::Mic,
        muted,
    }
}

#[test]
fn remote_members_reach_local_members_through_the_usual_messages() {
    let mut w = connected_room(1);
    w.clients[0].signals.clear();
    w.events.clear();
    let room = || "kitchen".to_string();
    let joined = ClusterEvent::MemberJoined {
        room: room(),
        peer: far_member(),
    };
    let events = [
        joined.clone(),
        joined,
        ClusterEvent::MemberJoined {
            room: "elsewhere".into(),
            peer: PeerInfo {
                id: FAR + 1,
                ..far_member()
            },
        },
        ClusterEvent::TrackPublished {
            room: room(),
            peer_id: FAR,
            track: far_mic(false),
        },
        ClusterEvent::TrackMuted {
            room: room(),
            peer_id: FAR,
            track_id: far_mic(false).id,
            muted: true,
        },
        ClusterEvent::ActiveSpeaker {
            room: room(),
            peer_id: Some(FAR),
            track_id: Some(far_mic(false).id),
        },
        ClusterEvent::Chat {
            room: room(),
            from: FAR,
            name: "far".into(),
            text: "hello from afar".into(),
        },
    ];
    for event in events {
        w.core.handle_cluster_event(w.now, event);
    }
    w.pump();
    w.advance(Duration::from_millis(200));
    let told: Vec<&ServerMessage> = w.clients[0]
        .signals
        .iter()
        .filter(|m| {
            !matches!(
                m,
                ServerMessage::Offer { .. } | ServerMessage::Answer { .. }
            )
        })
        .collect();
    assert_eq!(
        told,
        [
            &ServerMessage::PeerJoined { peer: far_member() },
            &ServerMessage::TrackPublished {
                peer_id: FAR,
                track: far_mic(false)
            },
            &ServerMessage::TrackMuted {
                peer_id: FAR,
                track_id: far_mic(false).id,
                muted: true
            },
            &ServerMessage::ActiveSpeaker {
                peer_id: Some(FAR),
                track_id: Some(far_mic(false).id)
            },
        ],
        "once each, and nothing of the other room"
    );
    assert!(
        w.clients[0]
            .chats
            .iter()
            .any(|c| c.from == FAR && c.text == "hello from afar"),
        "the chat line reached the member: {:?}",
        w.clients[0].chats
    );

    // A member who joins now finds the remote one, with its tracks as they are.
    let late = w.join("late");
    w.advance(Duration::from_secs(1));
    let peers = w.clients[late]
        .signals
        .iter()
        .find_map(|m| match m {
            ServerMessage::Joined { peers, .. } => Some(peers.clone()),
            _ => None,
        })
        .expect("joined");
    assert!(
        peers.contains(&PeerInfo {
            id: FAR,
            name: "far".into(),
            tracks: vec![far_mic(true)],
        }),
        "{peers:?}"
    );

    w.core.handle_cluster_event(
        w.now,
        ClusterEvent::MemberLeft {
            room: room(),
            peer_id: FAR,
        },
    );
    w.pump();
    for c in &w.clients {
        assert!(
            c.signals
                .contains(&ServerMessage::PeerLeft { peer_id: FAR }),
            "{} was told the remote member left",
            c.id
        );
    }
    assert!(
        w.events
            .iter()
            .all(|e| !format!("{e:?}").contains(&FAR.to_string())),
        "another node's doings are not this node's room events: {:?}",
        w.events
    );
}
