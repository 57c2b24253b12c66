//! What a member's token allows, enforced by the core with simulated time: without publish its
//! offer is refused and nothing is announced; without subscribe it gets no legs and no media;
//! without chat its lines (data channel and WebSocket) are refused and reach nobody.

mod common;

use std::time::Duration;

use common::World;
use sfu_core::protocol::{ClientMessage, ErrorCode, ServerMessage};
use sfu_core::str0m::media::MediaKind;
use sfu_core::{DropReason, Permissions};

fn errors(w: &World, idx: usize) -> Vec<ErrorCode> {
    w.client(idx)
        .signals
        .iter()
        .filter_map(|s| match s {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

fn published_by(w: &World, idx: usize, publisher: u64) -> usize {
    w.client(idx)
        .signals
        .iter()
        .filter(
            |s| matches!(s, ServerMessage::TrackPublished { peer_id, .. } if *peer_id == publisher),
        )
        .count()
}

#[test]
fn without_publish_the_offer_is_refused_and_nothing_is_announced() {
    let mut w = World::new();
    let host = w.join("host");
    let quiet = w.join_with(
        "quiet",
        Permissions {
            publish: false,
            ..Permissions::ALL
        },
    );
    w.advance(Duration::from_secs(1));
    assert_eq!(errors(&w, quiet), vec![ErrorCode::Forbidden]);
    let quiet_id = w.client(quiet).id;
    assert_eq!(published_by(&w, host, quiet_id), 0);
    assert!(
        w.client(host)
            .mappings
            .iter()
            .all(|m| m.peer_id != quiet_id),
        "{:?}",
        w.client(host).mappings
    );
    assert_eq!(w.core.counters().drops(DropReason::Forbidden), 1);
    // The member is still in the room: the host saw it join.
    assert!(w.client(host).signals.iter().any(
        |s| matches!(s, ServerMessage::PeerJoined { peer } if peer.id == quiet_id && peer.tracks.is_empty())
    ));
    assert_eq!(w.core.peer_count(), 2);
}

#[test]
fn without_subscribe_no_leg_is_opened_and_no_media_arrives() {
    let mut w = World::new();
    let early = w.join("early");
    let deaf = w.join_with(
        "deaf",
        Permissions {
            subscribe: false,
            ..Permissions::ALL
        },
    );
    let late = w.join("late");
    w.advance(Duration::from_secs(2));
    w.send_media(early, MediaKind::Audio, 20, 0xA1);
    w.send_media(late, MediaKind::Audio, 20, 0xA2);
    // The deaf member publishes, and the others receive it.
    w.send_media(deaf, MediaKind::Audio, 20, 0xA3);
    assert!(
        w.client(deaf).received.is_empty(),
        "{} packets",
        w.client(deaf).received.len()
    );
    assert!(
        w.client(deaf).mappings.is_empty(),
        "{:?}",
        w.client(deaf).mappings
    );
    assert!(
        !w.client(deaf)
            .signals
            .iter()
            .any(|s| matches!(s, ServerMessage::Offer { .. })),
        "the SFU offered the member without subscribe something"
    );
    assert_eq!(w.client(early).received_with_tag(0xA2).len(), 20);
    assert_eq!(w.client(early).received_with_tag(0xA3).len(), 20);
    assert_eq!(w.client(late).received_with_tag(0xA1).len(), 20);
    // It still knows who publishes what.
    assert!(published_by(&w, deaf, w.client(late).id) >= 1);
    assert!(errors(&w, deaf).is_empty(), "{:?}", errors(&w, deaf));
}

#[test]
fn without_chat_lines_are_refused_on_both_paths_and_reach_nobody() {
    let mut w = World::new();
    let listener = w.join("listener");
    let gagged = w.join_with(
        "gagged",
        Permissions {
            chat: false,
            ..Permissions::ALL
        },
    );
    w.advance(Duration::from_secs(2));
    let c = &mut w.clients[gagged];
    let cid = c.chat.expect("a chat channel");
    c.rtc
        .channel(cid)
        .expect("the chat channel is open")
        .write(false, br#"{"text":"over the data channel"}"#)
        .unwrap();
    let gagged_id = w.clients[gagged].id;
    w.to_core.push_back((
        gagged_id,
        ClientMessage::Chat {
            text: "over the websocket".into(),
        },
    ));
    w.advance(Duration::from_millis(500));
    assert_eq!(
        errors(&w, gagged),
        vec![ErrorCode::Forbidden, ErrorCode::Forbidden]
    );
    assert!(
        w.client(listener).chats.is_empty(),
        "{:?}",
        w.client(listener).chats
    );
    assert_eq!(w.core.counters().drops(DropReason::Forbidden), 2);
    // Chat in the other direction still works.
    let c = &mut w.clients[listener];
    let cid = c.chat.expect("a chat channel");
    c.rtc
        .channel(cid)
        .unwrap()
        .write(false, br#"{"text":"you may read"}"#)
        .unwrap();
    w.advance(Duration::from_millis(500));
    assert_eq!(w.client(gagged).chats.len(), 1);
}
