//! Plain RTP legs through the core, in the simulated world of `common`: ingests feeding browsers,
//! outputs copying tracks to plain receivers.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use sfu_core::demux::FlowChange;
use sfu_core::plain::{IngestCodec, IngestSpec, OutputPath, OutputSpec, OutputTarget, PlainError};
use sfu_core::protocol::{ClientMessage, ServerMessage};
use sfu_core::str0m::media::MediaKind;
use sfu_core::str0m::net::Protocol;
use sfu_core::wire::RtpPacket;
use sfu_core::DropReason;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ingest(room: &str, codec: IngestCodec, pt: u8, source: Option<SocketAddr>) -> IngestSpec {
    IngestSpec {
        room: room.into(),
        name: "camera-1".into(),
        codec,
        payload_type: pt,
        source,
    }
}

fn target(address: &str, ssrc: Option<u32>, payload_type: Option<u8>) -> OutputTarget {
    OutputTarget {
        address: addr(address),
        ssrc,
        payload_type,
    }
}

#[test]
fn a_plain_rtp_ingest_reaches_every_browser_as_a_member_track() {
    let mut w = connected_room(2);
    let src = addr("127.0.0.5:5004");
    let info = w
        .core
        .add_ingest(
            w.now,
            100,
            ingest("kitchen", IngestCodec::Vp8, 96, Some(src)),
        )
        .unwrap();
    assert_eq!(info.track_id, "100:0");
    assert_eq!(info.port, 4000, "RTP goes to the worker's media port");
    w.pump();
    w.advance(Duration::from_millis(300));
    for c in [0, 1] {
        assert!(w.client(c).saw(|m| matches!(m, ServerMessage::PeerJoined { peer } if peer.id == 100 && peer.name == "camera-1")));
        assert!(w.client(c).mappings.iter().any(|m| m.track_id == "100:0"));
    }
    // The source's sequence wraps during the run: receivers must not notice.
    for i in 0..50u16 {
        let payload = [0x77, (i >> 8) as u8, i as u8, 0x10, 0x20];
        let pkt = plain_rtp(
            96,
            65_510u16.wrapping_add(i),
            3000 * u32::from(i),
            0xCAFE,
            &payload,
        );
        w.core.handle_datagram(w.now, src, server_addr(), &pkt);
        w.advance(Duration::from_millis(20));
    }
    for c in [0, 1] {
        let got = w.client(c).received_with_tag(0x77);
        assert_eq!(got.len(), 50, "client {c} got every ingest packet");
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.payload, vec![0x77, (i >> 8) as u8, i as u8, 0x10, 0x20]);
        }
        for pair in got.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq.wrapping_add(1));
        }
    }
    assert_eq!(w.core.ingest_infos()[0].packets, 50);

    // A member joining later finds the ingest in the room.
    let late = w.join("late");
    assert!(w.client(late).saw(
        |m| matches!(m, ServerMessage::Joined { peers, .. } if peers.iter().any(|p| p.id == 100))
    ));

    w.core.remove_ingest(w.now, 100).unwrap();
    w.pump();
    for c in [0, 1, late] {
        assert!(w
            .client(c)
            .saw(|m| matches!(m, ServerMessage::PeerLeft { peer_id: 100 })));
    }
    assert!(w.core.ingest_infos().is_empty());
}

#[test]
fn an_unlocked_ingest_takes_the_first_matching_source_and_no_other() {
    let mut w = World::new();
    w.core
        .add_ingest(w.now, 7, ingest("radio", IngestCodec::Opus, 111, None))
        .unwrap();
    assert_eq!(w.core.room_count(), 1, "the ingest keeps its room alive");
    let (a, b) = (addr("127.0.0.6:7000"), addr("127.0.0.7:7000"));
    w.core
        .handle_datagram(w.now, a, server_addr(), &plain_rtp(96, 1, 0, 1, b"x"));
    assert_eq!(
        w.core.ingest_infos()[0].source,
        None,
        "another payload type does not lock it"
    );
    w.core
        .handle_datagram(w.now, a, server_addr(), &plain_rtp(111, 2, 0, 1, b"x"));
    assert_eq!(w.core.ingest_infos()[0].source, Some(a));
    w.core
        .handle_datagram(w.now, b, server_addr(), &plain_rtp(111, 3, 0, 1, b"x"));
    assert_eq!(w.core.ingest_infos()[0].packets, 1);
    assert_eq!(w.core.counters().drops(DropReason::UnknownSource), 2);
    w.core.remove_ingest(w.now, 7).unwrap();
    assert_eq!(w.core.room_count(), 0);
    w.pump();
    assert_eq!(
        w.flows.last(),
        Some(&FlowChange::Revoked(Protocol::Udp, (a, server_addr())))
    );
}

#[test]
fn an_output_gives_each_receiver_its_own_ssrc_and_continuous_sequence() {
    let mut w = connected_room(2);
    let video = w.client(0).video.unwrap();
    let track_id = format!("1:{video}");
    let spec = OutputSpec {
        room: "kitchen".into(),
        track_id: track_id.clone(),
        targets: vec![
            target("127.0.0.20:6000", Some(111), None),
            target("127.0.0.21:6000", None, Some(100)),
        ],
    };
    let info = w.core.add_output(500, spec).unwrap();
    assert_eq!(info.path, "userspace");
    let b_ssrc = info.targets[1].ssrc;
    assert_ne!(b_ssrc, 111);

    w.send_media(0, MediaKind::Video, 30, 0xA5);
    let to = |w: &World, a: &str| -> Vec<Vec<u8>> {
        w.plain
            .iter()
            .filter(|(d, _)| *d == addr(a))
            .map(|(_, p)| p.clone())
            .collect()
    };
    let check = |packets: &[Vec<u8>], ssrc: u32, pt: Option<u8>| {
        let views: Vec<_> = packets
            .iter()
            .map(|p| RtpPacket::new_checked(&p[..]).unwrap())
            .collect();
        for (i, v) in views.iter().enumerate() {
            assert_eq!(v.ssrc(), ssrc);
            if let Some(pt) = pt {
                assert_eq!(v.payload_type(), pt);
            }
            assert_eq!(v.payload()[0], 0xA5);
            assert_eq!(v.payload()[2], i as u8 % 30);
        }
        for pair in views.windows(2) {
            assert_eq!(
                pair[1].sequence_number(),
                pair[0].sequence_number().wrapping_add(1)
            );
        }
        views.last().map(|v| v.sequence_number())
    };
    let a = to(&w, "127.0.0.20:6000");
    let b = to(&w, "127.0.0.21:6000");
    assert_eq!((a.len(), b.len()), (30, 30));
    check(&a, 111, None);
    let b_last = check(&b, b_ssrc, Some(100)).unwrap();

    // Receivers change while media flows: B stays (and keeps its numbering), A goes, C comes.
    w.plain.clear();
    w.core
        .set_output_targets(
            500,
            vec![
                target("127.0.0.21:6000", None, Some(100)),
                target("127.0.0.22:6000", None, None),
            ],
        )
        .unwrap();
    w.send_media(0, MediaKind::Video, 30, 0xA5);
    assert!(to(&w, "127.0.0.20:6000").is_empty());
    let b2 = to(&w, "127.0.0.21:6000");
    let b2_first = RtpPacket::new_checked(&b2[0][..])
        .unwrap()
        .sequence_number();
    assert_eq!(
        b2_first,
        b_last.wrapping_add(1),
        "a staying receiver sees no gap"
    );
    assert_eq!(b2.len(), 30);
    assert_eq!(to(&w, "127.0.0.22:6000").len(), 30);

    w.core.remove_output(500).unwrap();
    w.plain.clear();
    w.send_media(0, MediaKind::Video, 5, 0xA5);
    assert!(w.plain.is_empty());
    // The browser subscriber got all 65 meanwhile.
    assert_eq!(w.client(1).received_with_tag(0xA5).len(), 65);
}

#[test]
fn an_output_goes_with_its_track() {
    let mut w = connected_room(2);
    let audio = w.client(1).audio.unwrap();
    let spec = OutputSpec {
        room: "kitchen".into(),
        track_id: format!("2:{audio}"),
        targets: vec![target("127.0.0.30:6000", None, None)],
    };
    w.core.add_output(9, spec).unwrap();
    w.to_core.push_back((2, ClientMessage::Leave));
    w.pump();
    assert!(w.core.output_infos().is_empty());
}

#[test]
fn nonsense_plain_requests_are_refused() {
    let mut w = connected_room(1);
    let video = w.client(0).video.unwrap();
    let spec = |track: String, targets| OutputSpec {
        room: "kitchen".into(),
        track_id: track,
        targets,
    };
    let one = || vec![target("127.0.0.40:6000", None, None)];
    assert!(matches!(
        w.core.add_output(1, spec("9:0".into(), one())),
        Err(PlainError::UnknownTrack(..))
    ));
    assert!(matches!(
        w.core.add_output(1, spec("junk".into(), one())),
        Err(PlainError::UnknownTrack(..))
    ));
    assert!(matches!(
        w.core.add_output(1, spec(format!("1:{video}"), vec![])),
        Err(PlainError::Invalid(_))
    ));
    let twice = vec![
        target("127.0.0.40:6000", None, None),
        target("127.0.0.40:6000", None, None),
    ];
    assert!(matches!(
        w.core.add_output(1, spec(format!("1:{video}"), twice)),
        Err(PlainError::Invalid(_))
    ));
    assert!(matches!(
        w.core.remove_output(77),
        Err(PlainError::UnknownOutput(77))
    ));
    let src = Some(addr("127.0.0.50:1"));
    assert!(matches!(
        w.core
            .add_ingest(w.now, 50, ingest("r", IngestCodec::H264, 200, src)),
        Err(PlainError::Invalid(_))
    ));
    w.core
        .add_ingest(w.now, 51, ingest("r", IngestCodec::H264, 102, src))
        .unwrap();
    assert!(matches!(
        w.core
            .add_ingest(w.now, 52, ingest("r", IngestCodec::H264, 102, src)),
        Err(PlainError::SourceInUse(_))
    ));
    assert!(matches!(
        w.core.remove_ingest(w.now, 99),
        Err(PlainError::UnknownIngest(99))
    ));
    assert!(w.core.output_infos().is_empty());
}

#[test]
fn a_kernel_path_output_hands_one_copy_to_the_kernel_and_reports_its_end() {
    let mut w = connected_room(2);
    let video = w.client(0).video.unwrap();
    let spec = OutputSpec {
        room: "kitchen".into(),
        track_id: format!("1:{video}"),
        targets: vec![
            target("10.9.0.2:6000", None, None),
            target("10.9.0.3:6000", None, None),
        ],
    };
    w.core.add_output(70, spec).unwrap();
    let handoff = addr("127.0.0.1:47999");
    let info = w
        .core
        .set_output_path(
            70,
            OutputPath::Kernel {
                handoff,
                ssrc: 0xFEED,
            },
        )
        .unwrap();
    assert_eq!(info.path, "kernel");
    w.send_media(0, MediaKind::Video, 20, 0xB7);
    assert!(
        w.plain.iter().all(|(d, _)| *d == handoff),
        "nothing goes to the receivers from userspace"
    );
    assert_eq!(
        w.plain.len(),
        20,
        "one copy per packet, whatever the number of receivers"
    );
    let views: Vec<_> = w
        .plain
        .iter()
        .map(|(_, p)| RtpPacket::new_checked(&p[..]).unwrap())
        .collect();
    assert!(views.iter().all(|v| v.ssrc() == 0xFEED));
    for pair in views.windows(2) {
        assert_eq!(
            pair[1].sequence_number(),
            pair[0].sequence_number().wrapping_add(1)
        );
    }
    assert_eq!(w.core.output_infos()[0].targets[1].packets, 20);
    w.to_core.push_back((1, ClientMessage::Leave));
    w.pump();
    assert_eq!(
        w.closed_outputs,
        vec![70],
        "the shell learns the output ended with its track"
    );
}
