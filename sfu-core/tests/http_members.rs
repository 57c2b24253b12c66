//! Members whose signaling is HTTP (WHIP publishers, WHEP viewers) in the sans-IO core: the room
//! sees them as members, the core never queues a message for them (nothing could deliver it), a
//! refused join leaves nothing behind, and one that never connects is removed by the connect
//! timeout like any member.

mod common;

use std::time::Duration;

use common::{connected_room, World};
use sfu_core::protocol::{ErrorCode, PeerId, ServerMessage, TrackSource};
use sfu_core::str0m::media::{Direction, MediaKind};
use sfu_core::str0m::{Candidate, RtcConfig};
use sfu_core::viewers::Follow;
use sfu_core::Permissions;

/// An offer of one audio and one video m-line in `direction`, from a peer that never answers
/// any check.
fn offer(w: &World, direction: Direction) -> String {
    let mut rtc = RtcConfig::new().set_rtp_mode(true).build(w.now);
    rtc.add_local_candidate(Candidate::host("127.0.0.9:7000".parse().unwrap(), "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, direction, None, None, None);
    api.add_media(MediaKind::Video, direction, None, None, None);
    api.apply().unwrap().0.to_sdp_string()
}

const PUBLISHER: PeerId = 100;
const VIEWER: PeerId = 101;

#[test]
fn http_members_are_seen_get_no_messages_and_time_out_unconnected() {
    let mut w = connected_room(1);
    let whip = offer(&w, Direction::SendOnly);
    let answer = w
        .core
        .join_whip(
            w.now,
            PUBLISHER,
            "kitchen".into(),
            "obs".into(),
            &whip,
            Permissions::ALL,
        )
        .expect("a WHIP publisher joins");
    assert!(answer.contains("a=ice-lite") && answer.contains("a=recvonly"));
    let whep = offer(&w, Direction::RecvOnly);
    let answer = w
        .core
        .join_whep(
            w.now,
            VIEWER,
            "kitchen".into(),
            "screen".into(),
            Follow::Speaker,
            &whep,
            Permissions::ALL,
        )
        .expect("a WHEP viewer joins");
    assert!(answer.contains("a=sendonly"));
    w.pump();

    let member = w.client(0);
    let joined: Vec<(PeerId, String)> = member
        .signals
        .iter()
        .filter_map(|s| match s {
            ServerMessage::PeerJoined { peer } => Some((peer.id, peer.name.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        joined,
        [(PUBLISHER, "obs".into()), (VIEWER, "screen".into())]
    );
    let mut published: Vec<TrackSource> = member
        .signals
        .iter()
        .filter_map(|s| match s {
            ServerMessage::TrackPublished { peer_id, track } if *peer_id == PUBLISHER => {
                Some(track.source)
            }
            _ => None,
        })
        .collect();
    published.sort_by_key(|s| *s == TrackSource::Camera);
    assert_eq!(published, [TrackSource::Mic, TrackSource::Camera]);

    // Neither ever connects: both are removed (their ICE agents give up, or the connect timeout
    // does), and the room sees them leave.
    w.advance(Duration::from_secs(31));
    assert!(w.closed_peers.contains(&PUBLISHER) && w.closed_peers.contains(&VIEWER));
    let mut left: Vec<PeerId> = w
        .client(0)
        .signals
        .iter()
        .filter_map(|s| match s {
            ServerMessage::PeerLeft { peer_id } => Some(*peer_id),
            _ => None,
        })
        .collect();
    // Both sessions give up in the same tick, and the core handles them in no set order.
    left.sort();
    assert_eq!(left, [PUBLISHER, VIEWER], "each seen leaving once");
    assert!(
        w.unrouted_signals.is_empty(),
        "messages queued for HTTP members: {:?}",
        w.unrouted_signals
    );
    assert_eq!(w.core.peer_count(), 1);
}

#[test]
fn refused_http_joins_leave_nothing_behind() {
    let mut w = connected_room(1);
    let sending = offer(&w, Direction::SendOnly);
    let receiving = offer(&w, Direction::RecvOnly);
    let watch_only = Permissions {
        publish: false,
        ..Permissions::ALL
    };
    let code = |r: Result<String, sfu_core::JoinRefusal>| r.expect_err("refused").code;
    let now = w.now;
    let room = || "kitchen".to_string();
    let name = || "x".to_string();
    let core = &mut w.core;
    assert_eq!(
        code(core.join_whip(now, 200, room(), name(), &sending, watch_only)),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(core.join_whip(now, 201, room(), name(), "v=0 nonsense", Permissions::ALL)),
        ErrorCode::BadSdp
    );
    assert_eq!(
        code(core.join_whip(now, 202, room(), name(), &receiving, Permissions::ALL)),
        ErrorCode::BadSdp
    );
    let publish_only = Permissions {
        subscribe: false,
        ..Permissions::ALL
    };
    let follow = || Follow::Speaker;
    assert_eq!(
        code(core.join_whep(now, 203, room(), name(), follow(), &receiving, publish_only)),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(core.join_whep(
            now,
            204,
            room(),
            name(),
            follow(),
            &sending,
            Permissions::ALL
        )),
        ErrorCode::BadSdp
    );
    w.pump();
    assert_eq!(w.core.peer_count(), 1);
    assert!(!w
        .client(0)
        .saw(|s| matches!(s, ServerMessage::PeerJoined { .. })));
    assert!(w.unrouted_signals.is_empty(), "{:?}", w.unrouted_signals);
}
