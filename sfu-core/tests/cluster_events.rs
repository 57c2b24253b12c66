//! Members on other nodes (`--cluster`), through one core with simulated time (see `common`):
//! what the directory tells the core is kept for every room, admitted only to the rooms this
//! worker hosts, reaches their local members as the usual protocol messages once, and makes the
//! end whose name sorts lower dial the trunk; none of it becomes a room event of this node.
//! Media over the trunk is in `trunk.rs`.

mod common;

use std::time::Duration;

use common::*;
use sfu_core::cluster::{ClusterEvent, ClusterMember};
use sfu_core::protocol::{PeerId, ServerMessage};
use sfu_core::trunk::{SignalKind, TrunkEndpoint, TrunkMedia, TrunkSignal};
use sfu_core::CoreConfig;

/// This worker's trunk end.
const OWN: &str = "m/0";
/// An id of another node's member.
const FAR: PeerId = 1 << 40;

fn world() -> World {
    World::with_config(CoreConfig {
        trunk_endpoint: Some(TrunkEndpoint {
            name: OWN.into(),
            advertised: None,
            media: TrunkMedia::Srtp,
        }),
        ..CoreConfig::default()
    })
}

fn far_member(id: PeerId, trunk: &str) -> ClusterEvent {
    ClusterEvent::MemberJoined {
        room: "kitchen".into(),
        member: ClusterMember {
            id,
            name: format!("far{}", id - FAR),
            trunk: trunk.into(),
        },
    }
}

fn joined_peers(w: &World, idx: usize) -> Vec<PeerId> {
    w.clients[idx]
        .signals
        .iter()
        .find_map(|m| match m {
            ServerMessage::Joined { peers, .. } => Some(peers.iter().map(|p| p.id).collect()),
            _ => None,
        })
        .expect("joined")
}

fn count(w: &World, idx: usize, pred: impl Fn(&ServerMessage) -> bool) -> usize {
    w.clients[idx].signals.iter().filter(|m| pred(m)).count()
}

#[test]
fn remote_members_wait_for_a_local_member_and_then_reach_it_once() {
    let mut w = world();
    w.core.handle_cluster_event(w.now, far_member(FAR, "z/0"));
    w.pump();
    assert_eq!(
        w.core.room_count(),
        0,
        "no room is opened for members elsewhere"
    );
    assert!(w.trunk_signals.is_empty(), "and no trunk dialled");

    // The room's first local member finds the remote one in `joined`, and the trunk to its
    // worker is dialled: this end's name sorts lower than "z/0".
    let first = w.join("local");
    w.advance(Duration::from_secs(2));
    assert_eq!(joined_peers(&w, first), vec![FAR]);
    assert!(
        matches!(&w.trunk_signals[..], [TrunkSignal { from, to, kind: SignalKind::Offer, .. }]
            if from == OWN && to == "z/0"),
        "{:?}",
        w.trunk_signals
    );

    // Repeats are not news; a member on a worker whose name sorts lower dials itself; one in
    // another room is not this room's.
    let c_member = far_member(FAR + 1, "c/3");
    for event in [
        far_member(FAR, "z/0"),
        c_member.clone(),
        c_member,
        ClusterEvent::MemberJoined {
            room: "elsewhere".into(),
            member: ClusterMember {
                id: FAR + 2,
                name: "far2".into(),
                trunk: "z/0".into(),
            },
        },
    ] {
        w.core.handle_cluster_event(w.now, event);
    }
    w.pump();
    let joins = |id| {
        count(
            &w,
            first,
            |m| matches!(m, ServerMessage::PeerJoined { peer } if peer.id == id),
        )
    };
    assert_eq!((joins(FAR), joins(FAR + 1), joins(FAR + 2)), (0, 1, 0));
    assert_eq!(w.trunk_signals.len(), 1, "\"c/3\" dials this end itself");

    w.core.handle_cluster_event(
        w.now,
        ClusterEvent::Chat {
            room: "kitchen".into(),
            from: FAR,
            name: "far0".into(),
            text: "hello from afar".into(),
        },
    );
    w.advance(Duration::from_millis(200));
    assert!(
        w.clients[first]
            .chats
            .iter()
            .any(|c| c.from == FAR && c.text == "hello from afar"),
        "the chat line reached the member: {:?}",
        w.clients[first].chats
    );

    for _ in 0..2 {
        w.core.handle_cluster_event(
            w.now,
            ClusterEvent::MemberLeft {
                room: "kitchen".into(),
                peer_id: FAR + 1,
            },
        );
    }
    w.pump();
    let left = count(
        &w,
        first,
        |m| matches!(m, ServerMessage::PeerLeft { peer_id } if *peer_id == FAR + 1),
    );
    assert_eq!(left, 1, "told once");
    assert!(
        w.events
            .iter()
            .all(|e| !format!("{e:?}").contains(&FAR.to_string())),
        "another node's doings are not this node's room events: {:?}",
        w.events
    );
}

#[test]
fn a_room_left_by_its_local_members_closes_and_finds_its_remote_members_again() {
    let mut w = world();
    w.core.handle_cluster_event(w.now, far_member(FAR, "z/0"));
    let first = w.join("local");
    w.advance(Duration::from_secs(2));
    w.core.disconnect(w.now, w.clients[first].id);
    w.pump();
    assert_eq!(
        w.core.room_count(),
        0,
        "remote members alone do not keep a room open here"
    );
    let again = w.join("again");
    w.advance(Duration::from_secs(2));
    assert_eq!(joined_peers(&w, again), vec![FAR], "the roster kept them");
}

#[test]
fn offers_are_answered_and_other_descriptions_change_nothing() {
    let mut w = world();
    let description = sfu_core::trunk::TrunkDescription {
        ufrag: "u".into(),
        pwd: "p".repeat(22),
        fingerprint: "sha-256 00".into(),
        address: server_addr(),
        media: TrunkMedia::Srtp,
    };
    let signal = |to: &str, kind| TrunkSignal {
        from: "z/0".into(),
        to: to.into(),
        kind,
        description: description.clone(),
    };
    w.core
        .handle_trunk_signal(w.now, signal("n/0", SignalKind::Offer));
    w.core
        .handle_trunk_signal(w.now, signal(OWN, SignalKind::Answer));
    w.pump();
    assert!(w.trunk_signals.is_empty(), "{:?}", w.trunk_signals);
    assert!(
        w.core.trunk_infos().is_empty(),
        "another end's offer, and an answer to no dialled trunk, set up nothing"
    );

    // Any end of the cluster may dial this one.
    w.core
        .handle_trunk_signal(w.now, signal(OWN, SignalKind::Offer));
    w.pump();
    assert!(
        matches!(&w.trunk_signals[..], [TrunkSignal { from, to, kind: SignalKind::Answer, .. }]
            if from == OWN && to == "z/0"),
        "{:?}",
        w.trunk_signals
    );
    assert_eq!(w.core.trunk_infos().len(), 1);

    // Nothing ever comes from that end: the trunk is closed, and not dialled from here (no
    // member of this worker's rooms is on it).
    w.advance(Duration::from_secs(16));
    assert!(w.core.trunk_infos().is_empty(), "a silent trunk is closed");
    assert_eq!(w.trunk_signals.len(), 1);
}
