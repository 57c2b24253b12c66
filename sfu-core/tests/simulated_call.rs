//! Whole calls through the core with simulated time and an in-memory network (see `common`).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use sfu_core::protocol::{
    ChatOut, ClientMessage, PublishedTrack, ServerMessage, TrackSource, PROTOCOL_VERSION,
};
use sfu_core::str0m::media::{Direction, MediaKind};
use sfu_core::{Action, DropReason};

#[test]
fn media_reaches_every_subscriber_with_rewritten_ssrc_and_gap_free_sequence() {
    let mut w = connected_room(3);
    w.send_media(0, MediaKind::Video, 200, 0xA0);
    w.send_media(0, MediaKind::Audio, 100, 0xB0);
    let video = w.client(0).video.unwrap();
    let publisher_ssrc = *w.clients[0]
        .rtc
        .direct_api()
        .stream_tx_by_mid(video, None)
        .unwrap()
        .ssrc();
    for sub in [1, 2] {
        for (tag, n) in [(0xA0u8, 200u16), (0xB0, 100)] {
            let got = w.client(sub).received_with_tag(tag);
            assert_eq!(
                got.len(),
                n as usize,
                "subscriber {sub} got every packet of track {tag:#x}"
            );
            for (i, r) in got.iter().enumerate() {
                assert_eq!(
                    r.payload,
                    vec![tag, (i >> 8) as u8, i as u8, 0x90, 0x90],
                    "payload is byte-identical"
                );
            }
            for pair in got.windows(2) {
                assert_eq!(
                    pair[1].seq,
                    pair[0].seq.wrapping_add(1),
                    "sequence numbers are gap-free"
                );
                assert_eq!(pair[0].ssrc, pair[1].ssrc);
            }
        }
    }
    let ssrc_at = |sub: usize| w.client(sub).received_with_tag(0xA0)[0].ssrc;
    assert_ne!(ssrc_at(1), ssrc_at(2), "each leg has its own SSRC");
    assert_ne!(ssrc_at(1), publisher_ssrc, "the SSRC is rewritten");
    assert!(
        w.client(0).received_with_tag(0xA0).is_empty(),
        "nothing echoes to the publisher"
    );
    assert_eq!(w.core.counters().forwarded_packets, 2 * 300);
}

#[test]
fn chat_reaches_everyone_else_with_the_sender_filled_in_by_the_sfu() {
    let mut w = connected_room(3);
    let c = &mut w.clients[1];
    let cid = c.chat.unwrap();
    let mut ch = c.rtc.channel(cid).expect("the chat channel is open");
    ch.write(false, br#"{"text":"hello kitchen"}"#).unwrap();
    w.advance(Duration::from_millis(500));
    for other in [0, 2] {
        assert_eq!(
            w.client(other).chats,
            vec![ChatOut {
                from: 2,
                name: "p1".into(),
                text: "hello kitchen".into()
            }]
        );
    }
    assert!(w.client(1).chats.is_empty(), "not echoed to the sender");
    // A line that is not protocol JSON is dropped and counted, not relayed.
    let c = &mut w.clients[1];
    c.rtc
        .channel(cid)
        .unwrap()
        .write(false, b"\xff not json")
        .unwrap();
    w.advance(Duration::from_millis(500));
    assert_eq!(w.core.counters().drops(DropReason::BadChannelMessage), 1);
    assert_eq!(w.client(0).chats.len(), 1);
}

#[test]
fn chat_to_a_member_that_does_not_read_is_bounded() {
    let mut w = connected_room(2);
    // Client 0 stops reading (and acknowledging): its chat channel fills up.
    w.clients[0].crashed = true;
    let line = "x".repeat(1900);
    let sender = w.client(1).id;
    for _ in 0..400 {
        w.to_core
            .push_back((sender, ClientMessage::Chat { text: line.clone() }));
    }
    w.pump();
    let dropped = w.core.counters().drops(DropReason::ChannelBufferFull);
    // 400 lines of about 1.9 KiB are about 760 KiB: most of them are over the 64 KiB bound, and
    // none spilled over to the WebSocket.
    assert!(dropped > 200, "only {dropped} lines dropped");
    assert!(dropped < 400, "nothing was written at all");
    let spilled = w
        .client(0)
        .signals
        .iter()
        .filter(|m| matches!(m, ServerMessage::Chat { .. }));
    assert_eq!(spilled.count(), 0);
}

#[test]
fn leaving_removes_the_peer_and_its_legs_everywhere() {
    let mut w = connected_room(3);
    assert_eq!((w.core.room_count(), w.core.peer_count()), (1, 3));
    let mids_before = w.client(0).mappings.len();
    assert_eq!(mids_before, 4, "two tracks from each of two others");
    w.to_core.push_back((3, ClientMessage::Leave));
    w.clients[2].crashed = true;
    w.pump();
    w.advance(Duration::from_millis(200));
    for other in [0, 1] {
        assert!(w
            .client(other)
            .saw(|m| matches!(m, ServerMessage::PeerLeft { peer_id: 3 })));
        assert!(
            w.client(other).mappings.iter().all(|m| m.peer_id != 3),
            "its tracks left the next offer"
        );
    }
    assert_eq!(w.core.peer_count(), 2);
    // Media still flows between those who stayed.
    w.send_media(0, MediaKind::Video, 20, 0xC0);
    assert_eq!(w.client(1).received_with_tag(0xC0).len(), 20);
    for id in [1, 2] {
        w.to_core.push_back((id, ClientMessage::Leave));
    }
    w.pump();
    assert_eq!((w.core.room_count(), w.core.peer_count()), (0, 0));
}

#[test]
fn a_crashed_peer_times_out_and_the_others_are_told() {
    let mut w = connected_room(2);
    w.clients[1].crashed = true;
    let mut waited = Duration::ZERO;
    while w.core.peer_count() == 2 && waited < Duration::from_secs(60) {
        w.advance(Duration::from_secs(1));
        waited += Duration::from_secs(1);
    }
    assert_eq!(w.core.peer_count(), 1, "removed after {waited:?}");
    assert!(
        waited <= Duration::from_secs(30),
        "ICE consent loss is noticed within seconds, took {waited:?}"
    );
    assert!(w
        .client(0)
        .saw(|m| matches!(m, ServerMessage::PeerLeft { peer_id: 2 })));
}

#[test]
fn a_peer_that_never_connects_is_dropped_at_the_connect_timeout() {
    let mut w = World::new();
    w.join("a");
    w.advance(Duration::from_secs(1));
    w.core.handle_message(
        w.now,
        9,
        ClientMessage::Join {
            version: PROTOCOL_VERSION,
            room: "kitchen".into(),
            name: "ghost".into(),
            capacity: None,
            token: None,
        },
    );
    w.pump();
    assert_eq!(w.core.peer_count(), 2);
    w.advance(Duration::from_secs(29));
    assert_eq!(w.core.peer_count(), 2, "not before the timeout");
    w.advance(Duration::from_secs(2));
    assert_eq!(w.core.peer_count(), 1);
    assert!(w
        .client(0)
        .saw(|m| matches!(m, ServerMessage::PeerLeft { peer_id: 9 })));
}

#[test]
fn room_capacity_and_join_validation() {
    let mut w = World::new();
    let join = |room: &str, name: &str, capacity| ClientMessage::Join {
        version: PROTOCOL_VERSION,
        room: room.into(),
        name: name.into(),
        capacity,
        token: None,
    };
    w.core
        .handle_message(w.now, 1, join("share-ABC", "viewer", Some(2)));
    w.core
        .handle_message(w.now, 2, join("share-ABC", "sender", Some(5)));
    w.core
        .handle_message(w.now, 3, join("share-ABC", "third", None));
    w.core.handle_message(w.now, 4, join("", "x", None));
    w.core.handle_message(
        w.now,
        5,
        ClientMessage::Join {
            version: 2,
            room: "r".into(),
            name: "n".into(),
            capacity: None,
            token: None,
        },
    );
    w.core.handle_message(
        w.now,
        6,
        ClientMessage::Mute {
            mid: "0".into(),
            muted: true,
        },
    );
    w.core
        .handle_message(w.now, 1, join("other", "again", None));
    let mut errors = Vec::new();
    while let Some(out) = w.core.poll_output() {
        if let Action::Signal(peer, ServerMessage::Error { code, .. }) = out {
            errors.push((peer, code));
        }
    }
    use sfu_core::protocol::ErrorCode::*;
    assert_eq!(
        errors,
        vec![
            (3, RoomFull),
            (4, InvalidJoin),
            (5, UnsupportedVersion),
            (6, NotJoined),
            (1, AlreadyJoined)
        ]
    );
    assert_eq!((w.core.room_count(), w.core.peer_count()), (1, 2));
}

#[test]
fn lying_sdp_is_refused_and_counted_while_the_call_goes_on() {
    let mut w = connected_room(2);
    for sdp in [
        "",
        "v=0\r\nthis is not sdp",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
    ] {
        w.to_core.push_back((
            1,
            ClientMessage::Offer {
                sdp: sdp.into(),
                tracks: vec![],
            },
        ));
        w.to_core
            .push_back((1, ClientMessage::Answer { sdp: sdp.into() }));
    }
    w.pump();
    assert!(w.core.counters().drops(DropReason::BadSdp) >= 3);
    w.send_media(0, MediaKind::Video, 20, 0xD0);
    assert_eq!(
        w.client(1).received_with_tag(0xD0).len(),
        20,
        "media still flows"
    );
}

#[test]
fn hostile_datagrams_are_counted_and_never_reach_a_session() {
    let mut w = connected_room(2);
    let from: SocketAddr = "127.0.0.9:999".parse().unwrap();
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 40],
        vec![0x00, 0x01, 0x00],
        vec![
            0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ],
        vec![0x40, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1],
        vec![0x8f, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1],
        vec![0x80, 200, 0],
        vec![22; 100],
        vec![0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3],
        vec![0xab; 64 * 1024],
    ];
    for case in &cases {
        w.core.handle_datagram(w.now, from, server_addr(), case);
    }
    let c = w.core.counters();
    assert_eq!(
        c.total_drops(),
        cases.len() as u64,
        "every hostile datagram is counted once"
    );
    for reason in [
        DropReason::UnknownProtocol,
        DropReason::MalformedStun,
        DropReason::MalformedRtp,
        DropReason::MalformedRtcp,
        DropReason::UnknownSource,
        DropReason::Oversized,
    ] {
        assert!(c.drops(reason) > 0, "{reason:?} counted");
    }
    w.send_media(0, MediaKind::Audio, 20, 0xE0);
    assert_eq!(
        w.client(1).received_with_tag(0xE0).len(),
        20,
        "the call goes on"
    );
}

#[test]
fn muted_tracks_are_not_forwarded_until_unmuted() {
    let mut w = connected_room(2);
    let audio_mid = w.client(0).audio.unwrap().to_string();
    w.to_core.push_back((
        1,
        ClientMessage::Mute {
            mid: audio_mid.clone(),
            muted: true,
        },
    ));
    w.pump();
    assert!(w.client(1).saw(|m| matches!(
        m,
        ServerMessage::TrackMuted {
            peer_id: 1,
            muted: true,
            ..
        }
    )));
    w.send_media(0, MediaKind::Audio, 10, 0xF0);
    assert!(w.client(1).received_with_tag(0xF0).is_empty());
    w.to_core.push_back((
        1,
        ClientMessage::Mute {
            mid: audio_mid,
            muted: false,
        },
    ));
    w.pump();
    w.send_media(0, MediaKind::Audio, 10, 0xF1);
    assert_eq!(w.client(1).received_with_tag(0xF1).len(), 10);
}

#[test]
fn glare_is_resolved_with_the_client_polite_and_its_change_lands_after() {
    let mut w = connected_room(2);
    // Client 2 stops its camera: the SFU will offer client 1 a stopped m-line...
    let c2 = &mut w.clients[1];
    let mut api = c2.rtc.sdp_api();
    api.set_direction(c2.video.unwrap(), Direction::Inactive);
    let (offer, pending) = api.apply().unwrap();
    c2.pending = Some(pending);
    let audio_only = vec![PublishedTrack {
        mid: c2.audio.unwrap().to_string(),
        source: TrackSource::Mic,
        muted: false,
    }];
    w.to_core.push_back((
        2,
        ClientMessage::Offer {
            sdp: offer.to_sdp_string(),
            tracks: audio_only,
        },
    ));
    // ...while client 1 offers a screen share at the same moment.
    let c1 = &mut w.clients[0];
    let mut api = c1.rtc.sdp_api();
    let screen_again = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    c1.pending = Some(pending);
    let mut tracks = vec![
        PublishedTrack {
            mid: c1.audio.unwrap().to_string(),
            source: TrackSource::Mic,
            muted: false,
        },
        PublishedTrack {
            mid: c1.video.unwrap().to_string(),
            source: TrackSource::Camera,
            muted: false,
        },
    ];
    tracks.push(PublishedTrack {
        mid: screen_again.to_string(),
        source: TrackSource::Screen,
        muted: false,
    });
    w.to_core.push_back((
        1,
        ClientMessage::Offer {
            sdp: offer.to_sdp_string(),
            tracks: tracks.clone(),
        },
    ));
    w.pump();
    // The SFU ignored client 1's colliding offer; client 1 rolled back and answered the SFU's.
    assert!(w.client(0).pending.is_none());
    assert!(!w
        .client(1)
        .saw(|m| matches!(m, ServerMessage::TrackPublished { .. })));
    // Client 1 offers its change again once stable, as negotiationneeded makes a browser do.
    let c1 = &mut w.clients[0];
    let mut api = c1.rtc.sdp_api();
    let screen = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    c1.pending = Some(pending);
    tracks[2].mid = screen.to_string();
    w.to_core.push_back((
        1,
        ClientMessage::Offer {
            sdp: offer.to_sdp_string(),
            tracks,
        },
    ));
    w.pump();
    w.advance(Duration::from_millis(500));
    assert!(w.client(0).pending.is_none(), "the re-offer was answered");
    let screen_id = format!("1:{screen}");
    assert!(w.client(1).saw(
        |m| matches!(m, ServerMessage::TrackPublished { track, .. } if track.id == screen_id)
    ));
    assert!(w.client(1).mappings.iter().any(|m| m.track_id == screen_id));
    assert!(
        w.client(0).mappings.iter().all(|m| m.track_id != "2:1"),
        "the stopped camera left client 1's legs"
    );
}

#[test]
fn a_peers_media_flow_is_admitted_while_it_is_there_and_revoked_when_it_leaves() {
    use sfu_core::demux::FlowChange;
    use sfu_core::str0m::net::Protocol;
    let mut w = connected_room(2);
    let tuple = (w.client(1).addr, server_addr());
    assert!(w
        .flows
        .contains(&FlowChange::Admitted(Protocol::Udp, tuple)));
    assert!(!w.flows.contains(&FlowChange::Revoked(Protocol::Udp, tuple)));
    w.to_core.push_back((2, ClientMessage::Leave));
    w.pump();
    assert_eq!(
        w.flows.last(),
        Some(&FlowChange::Revoked(Protocol::Udp, tuple))
    );
}

/// A viewer's leg set up while its publisher is still connecting asks for a keyframe: the
/// request made then would be lost (no SRTCP keys yet), and a leg without simulcast starts at
/// the first packet without waiting, so nothing would ask again.
#[test]
fn a_leg_set_up_before_its_publisher_connects_gets_a_keyframe_asked_for() {
    let mut w = World::new();
    let viewer = w.join("viewer");
    w.advance(Duration::from_secs(1));
    let publisher = w.join("publisher");
    assert!(!w.clients[publisher].rtc.is_connected(), "still connecting");
    for _ in 0..20 {
        if w.clients[publisher].rtc.is_connected() {
            break;
        }
        w.advance(Duration::from_millis(10));
    }
    assert!(
        w.clients[publisher].rtc.is_connected(),
        "connected within 200 ms"
    );
    assert_eq!(w.client(publisher).keyframe_requests, 0);
    // Two inter frames: well within the subscription's keyframe retry.
    w.send_media(publisher, MediaKind::Video, 2, 0xC0);
    assert_eq!(w.client(viewer).received_with_tag(0xC0).len(), 2);
    assert!(
        w.client(publisher).keyframe_requests >= 1,
        "the viewer's new leg asked the publisher for a keyframe"
    );
}
