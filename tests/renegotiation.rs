//! Renegotiation with the real SFU: tracks published after the first offer (by two members at once,
//! which invites glare), track metadata as others see it, and muting.

mod support;

use std::time::Duration;

use sfu_client::{ClientEvent, TrackKind, TrackSource};
use support::{join, until, vp8_keyframe_payload, wait_tracks_of, Seen, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracks_published_later_by_two_members_at_once_reach_the_others() {
    let server = Server::start();
    let room = "renegotiate";
    let mut a = join(&server, room, "a", true, false).await;
    let mut b = join(&server, room, "b", true, false).await;
    let (a_id, b_id) = (a.peer_id(), b.peer_id());
    wait_tracks_of(&a, b_id, 1).await;
    wait_tracks_of(&b, a_id, 1).await;

    // Both publish a screen at the same moment: each one's offer crosses the SFU's offer of the
    // other's new track (glare) more often than not; the client rolls back and offers again.
    let (sa, sb) = tokio::join!(
        a.publish(TrackKind::Video, TrackSource::Screen),
        b.publish(TrackKind::Video, TrackSource::Screen)
    );
    let (a_screen, b_screen) = (sa.expect("a publishes"), sb.expect("b publishes"));
    for m in [&a, &b] {
        m.wait_for(Duration::from_secs(20), |s| {
            s.local_tracks.iter().all(|t| t.negotiated) && !s.negotiating
        })
        .await
        .unwrap_or_else(|e| panic!("{}: {e}; {:?}", m.name(), m.status()));
    }
    wait_tracks_of(&a, b_id, 2).await;
    wait_tracks_of(&b, a_id, 2).await;
    println!(
        "glare rollbacks: a {}, b {}",
        a.counters().glare,
        b.counters().glare
    );

    // Media on the new tracks flows both ways.
    let a_screen_tid = a
        .local_tracks()
        .iter()
        .find(|t| t.id == a_screen)
        .and_then(|t| t.server_track_id(a_id))
        .expect("a's screen track id");
    let b_screen_tid = b
        .local_tracks()
        .iter()
        .find(|t| t.id == b_screen)
        .and_then(|t| t.server_track_id(b_id))
        .expect("b's screen track id");
    let (mut seen_a, mut seen_b) = (Seen::default(), Seen::default());
    let mut i = 0;
    let flowing = support::try_until(Duration::from_secs(20), || {
        i += 1;
        let _ = a.queue_rtp(
            a_screen,
            vp8_keyframe_payload(&format!("a screen {i}"), 50),
            true,
        );
        let _ = b.queue_rtp(
            b_screen,
            vp8_keyframe_payload(&format!("b screen {i}"), 50),
            true,
        );
        seen_a.pump(&mut a);
        seen_b.pump(&mut b);
        seen_a.rtp_of(&b_screen_tid).len() >= 10 && seen_b.rtp_of(&a_screen_tid).len() >= 10
    })
    .await;
    assert!(
        flowing,
        "screen media did not flow: a got {} of b's, b got {} of a's",
        seen_a.rtp_of(&b_screen_tid).len(),
        seen_b.rtp_of(&a_screen_tid).len()
    );
    for p in seen_a.rtp_of(&b_screen_tid) {
        assert_eq!(p.kind, Some(TrackKind::Video));
        assert_eq!(p.peer_id, Some(b_id));
    }
    assert!(seen_a.errors.is_empty(), "a: {:?}", seen_a.errors);
    assert!(seen_b.errors.is_empty(), "b: {:?}", seen_b.errors);

    a.leave().await;
    b.leave().await;
    server.until_empty(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_metadata_and_muting() {
    let server = Server::start();
    let room = "mute";
    let publisher = join(&server, room, "publisher", true, true).await;
    let pub_id = publisher.peer_id();
    let mut sub = join(&server, room, "subscriber", false, false).await;

    // The member list in `joined` describes the publisher's tracks truthfully.
    let info = sub
        .initial_peers()
        .iter()
        .find(|p| p.id == pub_id)
        .expect("the publisher in `joined`")
        .clone();
    assert_eq!(info.name, "publisher");
    let audio = publisher
        .local_tracks()
        .into_iter()
        .find(|t| t.kind == TrackKind::Audio)
        .expect("audio");
    let audio_tid = audio.server_track_id(pub_id).expect("audio track id");
    assert_eq!(info.tracks.len(), 2, "{info:?}");
    for t in &info.tracks {
        assert!(!t.muted, "an unmuted track is announced muted: {t:?}");
        let (kind, source) = if t.id == audio_tid {
            (TrackKind::Audio, TrackSource::Mic)
        } else {
            (TrackKind::Video, TrackSource::Camera)
        };
        assert_eq!((t.kind, t.source), (kind, source), "{t:?}");
    }
    wait_tracks_of(&sub, pub_id, 2).await;

    let mut seen = Seen::default();
    let mut n = 0u32;
    // Audio flows while unmuted.
    let flowing = support::try_until(Duration::from_secs(10), || {
        n += 1;
        let _ = publisher.queue_rtp(audio.id, format!("unmuted {n}").into_bytes(), true);
        seen.pump(&mut sub);
        seen.rtp_of(&audio_tid).len() >= 5
    })
    .await;
    assert!(flowing, "audio did not flow before muting");

    // Muted: the others are told, and nothing is forwarded.
    publisher.set_muted(audio.id, true).await.expect("mute");
    let mut muted_event = false;
    until(
        Duration::from_secs(10),
        "trackMuted at the subscriber",
        || {
            while let Some(e) = sub.try_next_event() {
                if let ClientEvent::TrackMuted {
                    peer_id,
                    track_id,
                    muted: true,
                } = &e
                {
                    muted_event |= *peer_id == pub_id && *track_id == audio_tid;
                }
            }
            muted_event
        },
    )
    .await;
    seen.pump(&mut sub);
    let before = seen.rtp_of(&audio_tid).len();
    for i in 0..50 {
        publisher
            .send_rtp(audio.id, format!("muted {i}").into_bytes(), true)
            .await
            .expect("send while muted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Unmuted again: forwarding resumes; by the time unmuted packets arrive, any muted one that was
    // forwarded would have arrived too.
    publisher.set_muted(audio.id, false).await.expect("unmute");
    let resumed = support::try_until(Duration::from_secs(10), || {
        n += 1;
        let _ = publisher.queue_rtp(audio.id, format!("unmuted {n}").into_bytes(), true);
        seen.pump(&mut sub);
        seen.rtp_of(&audio_tid).len() >= before + 5
    })
    .await;
    assert!(resumed, "audio did not flow again after unmuting");
    let leaked: Vec<String> = seen
        .rtp_of(&audio_tid)
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .filter(|p| p.starts_with("muted "))
        .collect();
    assert!(
        leaked.is_empty(),
        "{} packets sent while muted were forwarded: {leaked:?}",
        leaked.len()
    );

    publisher.leave().await;
    sub.leave().await;
}
