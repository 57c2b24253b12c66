//! The room's video codec policy through the real core and str0m clients, in simulated time: a
//! member that decodes H.264 only makes the VP8 publisher switch to H.264 before it gets any of
//! its video, never receives a VP8 packet, and once it leaves the room goes back to VP8. H.264
//! reaches a viewer only in a format its answer accepted (profile and packetization mode), with
//! its payload type.

mod common;

use std::time::Duration;

use common::World;
use sfu_core::counters::DropReason;
use sfu_core::protocol::{ClientMessage, ServerMessage};
use sfu_core::str0m::format::Codec;
use sfu_core::str0m::media::MediaKind;
use sfu_core::str0m::RtcConfig;
use sfu_core::Permissions;

/// The codecs a client was asked to send, in order.
fn asked(w: &World, idx: usize) -> Vec<String> {
    w.client(idx)
        .signals
        .iter()
        .filter_map(|s| match s {
            ServerMessage::VideoCodec { codec } => Some(codec.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_h264_only_member_switches_the_room_to_h264_and_back() {
    let mut w = World::new();
    let chromium = w.join("chromium");
    w.advance(Duration::from_secs(1));
    // Alone, its first offer (VP8 and H.264) gets the preferred codec.
    assert_eq!(asked(&w, chromium), ["VP8"]);

    let iphone = w.join_with_video_codecs("iphone", &[Codec::H264]);
    w.advance(Duration::from_secs(2));
    // The newcomer's first offer says H.264 only: both are asked for H.264.
    assert_eq!(asked(&w, chromium), ["VP8", "H264"]);
    assert_eq!(asked(&w, iphone), ["H264"]);

    // Until the publisher switched, its VP8 is never sent to the member that cannot decode it.
    let drops_before = w.core.counters().drops(DropReason::NoMatchingCodec);
    w.send_media(chromium, MediaKind::Video, 10, 0x71);
    assert!(w.client(iphone).received_with_tag(0x71).is_empty());
    assert_eq!(
        w.core.counters().drops(DropReason::NoMatchingCodec),
        drops_before + 10
    );
    // H.264 from the H.264-only member reaches the other one.
    w.send_media(iphone, MediaKind::Video, 10, 0x72);
    assert!(!w.client(chromium).received_with_tag(0x72).is_empty());

    // It leaves: VP8 again.
    w.core
        .handle_message(w.now, w.client(iphone).id, ClientMessage::Leave);
    w.advance(Duration::from_millis(100));
    assert_eq!(asked(&w, chromium), ["VP8", "H264", "VP8"]);
}

#[test]
fn members_decoding_different_codecs_each_get_what_most_decode() {
    let mut w = World::new();
    let vp8_only = w.join_with_video_codecs("vp8-only", &[Codec::Vp8]);
    let h264_only = w.join_with_video_codecs("h264-only", &[Codec::H264]);
    let both = w.join("both");
    w.advance(Duration::from_secs(2));
    // Nothing is common: each publisher sends a codec it has; "both" the preferred of two with
    // one decoder each.
    assert_eq!(asked(&w, vp8_only).last().map(String::as_str), Some("VP8"));
    assert_eq!(
        asked(&w, h264_only).last().map(String::as_str),
        Some("H264")
    );
    assert_eq!(asked(&w, both).last().map(String::as_str), Some("VP8"));
    // The VP8-only member never gets the H.264 one's video, and the other way round.
    w.send_media(h264_only, MediaKind::Video, 5, 0x73);
    w.send_media(vp8_only, MediaKind::Video, 5, 0x74);
    assert!(w.client(vp8_only).received_with_tag(0x73).is_empty());
    assert!(w.client(h264_only).received_with_tag(0x74).is_empty());
    assert!(!w.client(both).received_with_tag(0x73).is_empty());
    assert!(!w.client(both).received_with_tag(0x74).is_empty());
}

/// A session configuration with Opus and these H.264 formats only: (payload type, RTX payload
/// type, packetization mode 1 (else 0), profile-level-id).
fn h264_formats(formats: &[(u8, u8, bool, u32)]) -> RtcConfig {
    let mut config = RtcConfig::new().clear_codecs().enable_opus(true, false);
    for &(pt, rtx, mode, profile) in formats {
        config
            .codec_config()
            .add_h264(pt.into(), Some(rtx.into()), mode, profile);
    }
    config
}

#[test]
fn h264_goes_only_to_viewers_of_the_same_profile_and_packetization_mode_with_their_payload_type() {
    let mut w = World::new();
    // A Main profile publisher, non-interleaved mode.
    let main = w.join_with_config(
        "main",
        Permissions::ALL,
        h264_formats(&[(100, 101, true, 0x4d001f)]),
    );
    // A viewer of Constrained Baseline only, one of Main in both modes at other payload types,
    // one of Main in single NAL unit mode only.
    let baseline = w.join_with_config(
        "baseline",
        Permissions::ALL,
        h264_formats(&[(102, 103, true, 0x42e01f)]),
    );
    let viewer = w.join_with_config(
        "viewer",
        Permissions::ALL,
        h264_formats(&[(111, 112, false, 0x4d001f), (110, 113, true, 0x4d001f)]),
    );
    let single_nal = w.join_with_config(
        "single-nal",
        Permissions::ALL,
        h264_formats(&[(114, 115, false, 0x4d001f)]),
    );
    w.advance(Duration::from_secs(2));
    w.send_media(main, MediaKind::Video, 10, 0x75);
    let got = w.client(viewer).received_with_tag(0x75);
    assert!(!got.is_empty());
    // Its own payload type for Main in packetization mode 1.
    assert!(got.iter().all(|r| r.pt == 110), "{got:?}");
    assert!(w.client(baseline).received_with_tag(0x75).is_empty());
    assert!(w.client(single_nal).received_with_tag(0x75).is_empty());
}
