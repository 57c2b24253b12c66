//! The admin requests (list, mute, remove, close), the room events webhooks are made of, and the
//! join-to-media histogram, through the core with simulated time (see `common`).

mod common;

use std::time::Duration;

use common::*;
use sfu_core::admin::AdminError;
use sfu_core::protocol::{ClientMessage, ErrorCode, ServerMessage};
use sfu_core::str0m::media::MediaKind;
use sfu_core::RoomEvent;

fn event_names(w: &World) -> Vec<String> {
    // Mute, chat and speaker events are for the other nodes of a cluster, not for webhooks.
    webhook_events(w)
        .into_iter()
        .map(|e| match e {
            RoomEvent::RoomStarted { .. } => "room_started".into(),
            RoomEvent::RoomFinished { .. } => "room_finished".into(),
            RoomEvent::ParticipantJoined { peer_id, .. } => format!("joined {peer_id}"),
            RoomEvent::ParticipantLeft { peer_id, .. } => format!("left {peer_id}"),
            RoomEvent::TrackPublished { track_id, .. } => format!("published {track_id}"),
            RoomEvent::TrackUnpublished { track_id, .. } => format!("unpublished {track_id}"),
            other => unreachable!("not a webhook event: {other:?}"),
        })
        .collect()
}

fn webhook_events(w: &World) -> Vec<&RoomEvent> {
    w.events.iter().filter(|e| e.for_webhooks()).collect()
}

#[test]
fn room_events_follow_joins_publications_and_leaves_in_order() {
    let mut w = connected_room(2);
    let names = event_names(&w);
    let published: Vec<&String> = names.iter().filter(|n| n.starts_with("pub")).collect();
    assert_eq!(names[0], "room_started");
    assert_eq!(names[1], "joined 1");
    assert_eq!(published.len(), 4, "two tracks per member: {names:?}");
    let joined_2 = names.iter().position(|n| n == "joined 2").unwrap();
    assert!(names[2..joined_2]
        .iter()
        .all(|n| n.starts_with("published 1:")));
    w.events.clear();

    w.to_core.push_back((2, ClientMessage::Leave));
    w.pump();
    w.to_core.push_back((1, ClientMessage::Leave));
    w.pump();
    let names = event_names(&w);
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(names[0].starts_with("unpublished 2:") && names[1].starts_with("unpublished 2:"));
    assert_eq!(names[2], "left 2");
    assert!(names[3].starts_with("unpublished 1:") && names[4].starts_with("unpublished 1:"));
    assert_eq!(names[5], "left 1");
    assert_eq!(names[6], "room_finished");
    let json = serde_json::to_value(webhook_events(&w)[2]).unwrap();
    assert_eq!(json["event"], "participant_left");
    assert_eq!(json["peerId"], 2);
    assert_eq!(json["room"], "kitchen");
}

#[test]
fn join_to_media_is_counted_once_per_member() {
    let mut w = connected_room(2);
    assert_eq!(w.core.counters().joins, 2);
    w.send_media(0, MediaKind::Audio, 10, 0xA1);
    w.send_media(1, MediaKind::Audio, 10, 0xA2);
    let h = &w.core.counters().join_to_media;
    assert_eq!(
        h.count(),
        2,
        "one observation per member, however many packets"
    );
    let stats = w.core.stats();
    assert_eq!(stats.join_to_media.count(), 2);
    assert_eq!(stats.tracks, 4);
    assert_eq!(stats.joins, 2);
}

#[test]
fn stats_count_the_members_timers_and_legs_until_they_leave() {
    let mut w = connected_room(2);
    let stats = w.core.stats();
    assert!(
        stats.timers >= 2,
        "each connected member has a session timer"
    );
    assert_eq!(
        stats.legs, 4,
        "each member receives the other's audio and video"
    );
    let now = w.now;
    w.core.disconnect(now, w.client(0).id);
    w.advance(Duration::from_secs(1));
    let stats = w.core.stats();
    assert_eq!(
        stats.legs, 0,
        "the one left receives nothing once it renegotiated"
    );
    let now = w.now;
    w.core.disconnect(now, w.client(1).id);
    let stats = w.core.stats();
    assert_eq!(
        (stats.peers, stats.tracks, stats.legs, stats.timers),
        (0, 0, 0, 0)
    );
}

#[test]
fn the_listing_shows_members_and_tracks() {
    let w = connected_room(2);
    let rooms = w.core.room_listing();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].name, "kitchen");
    let names: Vec<&str> = rooms[0].members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["p0", "p1"]);
    assert!(rooms[0]
        .members
        .iter()
        .all(|m| m.connected && m.tracks.len() == 2));
    assert!(w.core.room_info("nowhere").is_none());
}

#[test]
fn an_admin_mute_stops_forwarding_and_holds_until_an_admin_unmutes() {
    let mut w = connected_room(2);
    let audio = w.client(0).audio.unwrap().to_string();
    let now = w.now;
    let track = w.core.force_mute(now, "kitchen", 1, &audio, true).unwrap();
    assert!(track.muted && track.admin_muted);
    w.pump();
    assert!(w
        .client(0)
        .saw(|m| matches!(m, ServerMessage::ForceMuted { muted: true, .. })));
    assert!(w
        .client(1)
        .saw(|m| matches!(m, ServerMessage::TrackMuted { muted: true, .. })));
    w.send_media(0, MediaKind::Audio, 10, 0xC1);
    assert!(
        w.client(1).received_with_tag(0xC1).is_empty(),
        "a muted track is not forwarded"
    );

    // The member's own unmute is refused.
    w.to_core.push_back((
        1,
        ClientMessage::Mute {
            mid: audio.clone(),
            muted: false,
        },
    ));
    w.pump();
    assert!(w.client(0).saw(|m| matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    )));
    w.send_media(0, MediaKind::Audio, 10, 0xC2);
    assert!(w.client(1).received_with_tag(0xC2).is_empty());

    let now = w.now;
    let track = w
        .core
        .force_mute(now, "kitchen", 1, &format!("1:{audio}"), false)
        .unwrap();
    assert!(!track.muted && !track.admin_muted);
    w.pump();
    w.send_media(0, MediaKind::Audio, 10, 0xC3);
    assert_eq!(w.client(1).received_with_tag(0xC3).len(), 10);

    let now = w.now;
    assert_eq!(
        w.core.force_mute(now, "kitchen", 1, "99", true),
        Err(AdminError::UnknownTrack(1, "99".into()))
    );
    assert_eq!(
        w.core.force_mute(now, "kitchen", 7, &audio, true),
        Err(AdminError::UnknownMember(7))
    );
}

#[test]
fn removing_a_member_tells_it_why_and_the_others_that_it_left() {
    let mut w = connected_room(3);
    let now = w.now;
    assert_eq!(
        w.core.remove_member(now, "elsewhere", 2, "bye"),
        Err(AdminError::UnknownRoom("elsewhere".into()))
    );
    w.core.remove_member(now, "kitchen", 2, "spamming").unwrap();
    w.pump();
    assert!(w
        .client(1)
        .saw(|m| matches!(m, ServerMessage::Removed { reason } if reason == "spamming")));
    for other in [0, 2] {
        assert!(w
            .client(other)
            .saw(|m| matches!(m, ServerMessage::PeerLeft { peer_id: 2 })));
    }
    assert!(!w.core.has_peer(2));
    assert_eq!(w.core.peer_count(), 2);
}

#[test]
fn closing_a_room_removes_everyone() {
    let mut w = connected_room(2);
    let now = w.now;
    assert_eq!(
        w.core.close_room(now, "kitchen", "the meeting is over"),
        Ok(vec![])
    );
    w.pump();
    for c in [0, 1] {
        assert!(w
            .client(c)
            .saw(|m| matches!(m, ServerMessage::Removed { .. })));
    }
    assert_eq!(w.core.peer_count(), 0);
    assert_eq!(w.core.room_count(), 0);
    assert_eq!(
        event_names(&w).last().map(String::as_str),
        Some("room_finished")
    );
    let now = w.now;
    assert!(matches!(
        w.core.close_room(now, "kitchen", "again"),
        Err(AdminError::UnknownRoom(_))
    ));
}
