//! Recording a room in the real core with simulated time: str0m publishers send VP8 and Opus,
//! the recorder's outputs (files to open, frames, files to close) are checked as the shell's
//! writer would get them.

mod common;

use std::time::Duration;

use common::{connected_room, World};
use sfu_core::protocol::{ClientMessage, ErrorCode, ServerMessage};
use sfu_core::recording::{RecordedCodec, RecordedFrame, RecordingOutput};
use sfu_core::str0m::format::Codec;
use sfu_core::str0m::media::MediaKind;
use sfu_core::str0m::rtp::{RtpWrite, SeqNo};
use sfu_core::{CoreConfig, Permissions};

/// A VP8 keyframe of 320x240 in one packet (payload descriptor, then the frame).
const KEYFRAME: [u8; 11] = [
    0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
];
/// A VP8 delta frame in one packet.
const DELTA: [u8; 5] = [0x10, 0x01, 0x00, 0x00, 0xaa];
/// An Opus packet.
const OPUS: [u8; 3] = [0xfc, 0xff, 0xfe];

/// Video and audio timestamps advance 20 ms per tick.
const TICK: Duration = Duration::from_millis(20);

/// Sends one packet on client `idx`'s track of `kind` at tick `tick`; `lost` only uses up its
/// sequence number (the network lost it).
fn send(w: &mut World, idx: usize, kind: MediaKind, tick: u32, payload: &[u8], lost: bool) {
    let now = w.now;
    let c = &mut w.clients[idx];
    let (mid, codec, step, slot) = match kind {
        MediaKind::Audio => (c.audio.unwrap(), Codec::Opus, 960, 0),
        MediaKind::Video => (c.video.unwrap(), Codec::Vp8, 1800, 1),
    };
    let seq = c.next_seq[slot];
    c.next_seq[slot] += 1;
    if lost {
        return;
    }
    let pt = c
        .rtc
        .codec_config()
        .find(|p| p.spec().codec == codec)
        .unwrap()
        .pt();
    let mut api = c.rtc.direct_api();
    let tx = api.stream_tx_by_mid(mid, None).unwrap();
    tx.write_rtp(
        RtpWrite::new(pt, SeqNo::from(seq), tick * step, now, payload.to_vec())
            .marker(true)
            .nackable(kind == MediaKind::Video),
    );
}

/// The frames written to `file`'s track `track`.
fn frames(w: &World, file: u64, track: usize) -> Vec<&RecordedFrame> {
    w.recorded
        .iter()
        .filter_map(|o| match o {
            RecordingOutput::Frame { frame, .. } if frame.file == file && frame.track == track => {
                Some(frame)
            }
            _ => None,
        })
        .collect()
}

fn saw_recording(w: &World, idx: usize, want_active: bool) -> bool {
    w.client(idx)
        .saw(|m| matches!(m, ServerMessage::Recording { active, id, .. } if *active == want_active && id == "rec-1"))
}

#[test]
fn every_participant_gets_a_file_with_its_audio_and_video_and_every_member_is_told() {
    let mut w = connected_room(2);
    w.core
        .start_recording(w.now, "kitchen", "rec-1".into())
        .unwrap();
    assert_eq!(
        w.core
            .start_recording(w.now, "kitchen", "rec-2".into())
            .map_err(|e| e.to_string()),
        Err("room kitchen is already being recorded".into())
    );
    w.pump();
    assert!(saw_recording(&w, 0, true) && saw_recording(&w, 1, true));
    for tick in 0..50 {
        for idx in 0..2 {
            let video: &[u8] = if tick % 25 == 0 { &KEYFRAME } else { &DELTA };
            send(&mut w, idx, MediaKind::Video, tick, video, false);
            send(&mut w, idx, MediaKind::Audio, tick, &OPUS, false);
        }
        w.advance(TICK);
    }
    assert!(
        w.clients.iter().all(|c| c.keyframe_requests >= 1),
        "video publishers are asked for a keyframe when the recording starts"
    );
    assert_eq!(
        w.core.stop_recording(w.now, "kitchen", None),
        Ok("rec-1".into())
    );
    w.pump();
    assert!(saw_recording(&w, 0, false) && saw_recording(&w, 1, false));

    let opened: Vec<_> = w
        .recorded
        .iter()
        .filter_map(|o| match o {
            RecordingOutput::OpenFile { file, .. } => Some(file.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(opened.len(), 2, "one file per participant: {opened:?}");
    for file in &opened {
        let codecs: Vec<_> = file.tracks.iter().map(|t| t.codec).collect();
        assert!(codecs.contains(&RecordedCodec::Opus) && codecs.contains(&RecordedCodec::Vp8));
        let video = file
            .tracks
            .iter()
            .position(|t| t.codec == RecordedCodec::Vp8)
            .unwrap();
        assert_eq!(
            (file.tracks[video].width, file.tracks[video].height),
            (320, 240)
        );
        let audio = 1 - video;
        let v = frames(&w, file.file, video);
        let a = frames(&w, file.file, audio);
        assert_eq!((v.len(), a.len()), (50, 50), "file {}", file.file);
        assert!(v[0].keyframe, "video starts at a keyframe");
        assert!(v.windows(2).all(|p| p[0].time <= p[1].time));
        let span = v[49].time - v[0].time;
        assert!(
            span.abs_diff(49 * TICK) < Duration::from_millis(2),
            "RTP time spaces the frames: {span:?}"
        );
        assert_eq!(v[1].data, DELTA[1..], "the payload descriptor is gone");
        assert!(
            v[0].time.abs_diff(a[0].time) <= 2 * TICK,
            "audio and video aligned: {:?} {:?}",
            v[0].time,
            a[0].time
        );
    }
    let closed = w
        .recorded
        .iter()
        .filter(|o| matches!(o, RecordingOutput::CloseFile { .. }))
        .count();
    assert_eq!(closed, 2);
    assert!(matches!(
        w.recorded.last(),
        Some(RecordingOutput::Ended { id, error: None, .. }) if id == "rec-1"
    ));
}

#[test]
fn a_gap_skips_frames_until_a_keyframe_and_asks_for_one() {
    let mut w = connected_room(1);
    w.core
        .start_recording(w.now, "kitchen", "rec-1".into())
        .unwrap();
    w.pump();
    let mut tick = 0;
    let mut burst = |w: &mut World, payloads: &[(&[u8], bool)]| {
        for (payload, lost) in payloads {
            send(w, 0, MediaKind::Video, tick, payload, *lost);
            tick += 1;
            w.advance(TICK);
        }
    };
    burst(
        &mut w,
        &[(&KEYFRAME, false), (&DELTA, false), (&DELTA, false)],
    );
    let asked_before = w.client(0).keyframe_requests;
    // One delta lost, and never resent: the frames after it cannot be decoded.
    burst(&mut w, &[(&DELTA, true)]);
    burst(&mut w, &[(&DELTA[..], false); 12]);
    assert!(
        w.client(0).keyframe_requests > asked_before,
        "the loss asked the publisher for a keyframe"
    );
    burst(&mut w, &[(&KEYFRAME, false), (&DELTA, false)]);
    w.core.stop_recording(w.now, "kitchen", None).unwrap();
    w.pump();
    let v = frames(&w, 1, 0);
    let kinds: Vec<bool> = v.iter().map(|f| f.keyframe).collect();
    assert_eq!(
        kinds,
        [true, false, false, true, false],
        "the 12 deltas after the loss are not written"
    );
    assert!(
        v[3].time - v[2].time >= 13 * TICK,
        "the skipped time stays a gap"
    );
}

#[test]
fn a_member_joining_a_recorded_room_is_told_in_joined() {
    let mut w = connected_room(1);
    w.core
        .start_recording(w.now, "kitchen", "rec-1".into())
        .unwrap();
    let late = w.join("late");
    assert!(w.client(late).saw(|m| matches!(
        m,
        ServerMessage::Joined { recording: Some(id), may_record: true, .. } if id == "rec-1"
    )));
    w.core.stop_recording(w.now, "kitchen", None).unwrap();
    w.pump();
    assert!(saw_recording(&w, late, false));
    assert_eq!(
        w.core
            .stop_recording(w.now, "kitchen", None)
            .map_err(|e| e.to_string()),
        Err("room kitchen is not being recorded".into())
    );
}

#[test]
fn the_page_records_only_with_the_record_permission() {
    let mut w = World::new();
    let guest = w.join_with("guest", Permissions::OPEN_ROOM);
    assert!(w.client(guest).saw(|m| matches!(
        m,
        ServerMessage::Joined {
            recording: None,
            may_record: false,
            ..
        }
    )));
    let id = w.client(guest).id;
    w.to_core
        .push_back((id, ClientMessage::Record { active: true }));
    w.pump();
    assert!(w.client(guest).saw(|m| matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    )));
    assert!(w.recorded.is_empty(), "nothing asked of the shell");

    let host = w.join_with("host", Permissions::ALL);
    let id = w.client(host).id;
    w.to_core
        .push_back((id, ClientMessage::Record { active: true }));
    w.pump();
    assert!(
        matches!(&w.recorded[..], [RecordingOutput::Requested { room }] if &**room == "kitchen"),
        "{:?}",
        w.recorded
    );
}

#[test]
fn a_configured_room_asks_to_be_recorded_when_it_is_created() {
    let mut w = World::new();
    w.core = sfu_core::Core::new(CoreConfig {
        candidates: vec![common::server_addr()],
        record_rooms: vec!["kitchen".into()],
        ..CoreConfig::default()
    });
    w.join("first");
    w.join("second");
    let requested = w
        .recorded
        .iter()
        .filter(|o| matches!(o, RecordingOutput::Requested { .. }))
        .count();
    assert_eq!(requested, 1, "once, when the room was created");
}

#[test]
fn a_mute_leaves_a_gap_of_its_length_and_video_resumes_at_a_keyframe() {
    let mut w = connected_room(1);
    w.core
        .start_recording(w.now, "kitchen", "rec-1".into())
        .unwrap();
    w.pump();
    let id = w.client(0).id;
    let mid = w.client(0).video.unwrap().to_string();
    for tick in 0..5 {
        let video: &[u8] = if tick == 0 { &KEYFRAME } else { &DELTA };
        send(&mut w, 0, MediaKind::Video, tick, video, false);
        w.advance(TICK);
    }
    w.to_core.push_back((
        id,
        ClientMessage::Mute {
            mid: mid.clone(),
            muted: true,
        },
    ));
    w.pump();
    // Sent while muted: the SFU forwards none of it, so the recorder sees a hole.
    for tick in 5..30 {
        send(&mut w, 0, MediaKind::Video, tick, &DELTA, false);
        w.advance(TICK);
    }
    w.to_core
        .push_back((id, ClientMessage::Mute { mid, muted: false }));
    w.pump();
    let asked = w.client(0).keyframe_requests;
    for tick in 30..40 {
        send(&mut w, 0, MediaKind::Video, tick, &DELTA, false);
        w.advance(TICK);
    }
    assert!(
        w.client(0).keyframe_requests > asked,
        "a keyframe asked for after the mute"
    );
    send(&mut w, 0, MediaKind::Video, 40, &KEYFRAME, false);
    w.advance(TICK);
    send(&mut w, 0, MediaKind::Video, 41, &DELTA, false);
    w.advance(TICK);
    w.core.stop_recording(w.now, "kitchen", None).unwrap();
    w.pump();
    let v = frames(&w, 1, 0);
    let kinds: Vec<bool> = v.iter().map(|f| f.keyframe).collect();
    assert_eq!(kinds, [true, false, false, false, false, true, false]);
    let gap = v[5].time - v[4].time;
    assert!(
        gap.abs_diff(36 * TICK) < Duration::from_millis(2),
        "RTP time keeps the muted time: {gap:?}"
    );
}

#[test]
fn a_member_publishing_during_the_recording_gets_a_file_too() {
    let mut w = connected_room(1);
    w.core
        .start_recording(w.now, "kitchen", "rec-1".into())
        .unwrap();
    w.pump();
    let late = w.join("late");
    w.advance(Duration::from_secs(2));
    for tick in 0..10 {
        send(
            &mut w,
            late,
            MediaKind::Video,
            tick,
            if tick == 0 { &KEYFRAME } else { &DELTA },
            false,
        );
        send(&mut w, late, MediaKind::Audio, tick, &OPUS, false);
        w.advance(TICK);
    }
    w.core.stop_recording(w.now, "kitchen", None).unwrap();
    w.pump();
    let late_id = w.client(late).id;
    let file = w
        .recorded
        .iter()
        .find_map(|o| match o {
            RecordingOutput::OpenFile { file, .. } if file.peer == late_id => Some(file.clone()),
            _ => None,
        })
        .expect("a file for the member who joined after the start");
    assert_eq!(file.participant, "late");
    assert_eq!(file.tracks.len(), 2);
    let total: usize = (0..2).map(|t| frames(&w, file.file, t).len()).sum();
    assert_eq!(total, 20);
}
