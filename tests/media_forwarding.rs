//! One publisher, three subscribers: every RTP packet the publisher sends on its audio and video
//! tracks reaches every subscriber byte-identical, under an SSRC the SFU chose for that leg, with
//! consecutive sequence numbers.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sfu_client::{ClientConfig, TrackKind, TrackSource};
use support::{join_with, try_until, vp8_keyframe_payload, wait_tracks_of, Seen, Server};

/// Packets per track in the measured run.
const N: usize = 300;

fn audio_payload(i: usize) -> Vec<u8> {
    let mut p = format!("edge-sfu test audio #{i:04}|").into_bytes();
    p.extend((0..(40 + i % 120)).map(|j| ((i * 31 + j * 7) % 256) as u8));
    p
}

fn video_payload(i: usize) -> Vec<u8> {
    vp8_keyframe_payload(
        &format!("edge-sfu test video #{i:04}|"),
        200 + (i * 13) % 900,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_media_reaches_every_subscriber_intact() {
    forwarding_through(Server::start(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sendmmsg_shell_forwards_the_same() {
    forwarding_through(Server::start_with(&["--io", "sendmmsg"]), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_over_tcp_forwards_the_same() {
    let server = Server::start();
    forwarding_through(server, true).await;
}

/// Every participant reaches the SFU over UDP, or (`ice_tcp`) only over ICE-TCP.
async fn forwarding_through(server: Server, ice_tcp: bool) {
    let room = "forwarding";
    let participant = |name: &str, media: bool| {
        let config = ClientConfig::new(server.ws_url(), room, name)
            .audio(media)
            .video(media)
            .ice_tcp(ice_tcp);
        join_with(config)
    };

    // Two subscribers are there before the publisher arrives, one joins while it already publishes.
    let mut subs = vec![
        participant("sub-a", false).await,
        participant("sub-b", false).await,
    ];
    let publisher = participant("publisher", true).await;
    subs.push(participant("sub-c", false).await);

    let pub_id = publisher.peer_id();
    let tracks = publisher.local_tracks();
    let audio = tracks
        .iter()
        .find(|t| t.kind == TrackKind::Audio)
        .expect("an audio track")
        .clone();
    let video = tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .expect("a video track")
        .clone();
    assert_eq!(audio.source, TrackSource::Mic);
    assert_eq!(video.source, TrackSource::Camera);
    let audio_tid = audio.server_track_id(pub_id).expect("audio mid");
    let video_tid = video.server_track_id(pub_id).expect("video mid");
    let pub_audio_ssrc = audio.ssrc.expect("audio ssrc");
    let pub_video_ssrc = video.ssrc.expect("video ssrc");

    for s in &subs {
        let remote = wait_tracks_of(s, pub_id, 2).await;
        let ids: HashSet<&str> = remote.iter().map(|t| t.track_id.as_str()).collect();
        assert!(
            ids.contains(audio_tid.as_str()) && ids.contains(video_tid.as_str()),
            "{} receives {remote:?}, expected {audio_tid} and {video_tid}",
            s.name()
        );
        for t in &remote {
            let want = if t.track_id == audio_tid {
                TrackKind::Audio
            } else {
                TrackKind::Video
            };
            assert_eq!(t.kind, Some(want), "{}: m-line kind of {t:?}", s.name());
        }
    }

    let mut seen: Vec<Seen> = subs.iter().map(|_| Seen::default()).collect();

    // Startup window: a subscriber leg only starts forwarding once the SFU has set it up (and an SFU
    // may wait for a key frame on video), which the client cannot observe. So warm-up packets go out
    // until every subscriber has received at least one packet of each track; from there on nothing
    // may be lost. The continuity check below covers the warm-up packets after the first received one.
    let mut warm = 0usize;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        publisher
            .send_rtp(audio.id, format!("warm-up audio {warm}").into_bytes(), true)
            .await
            .expect("sending warm-up audio");
        publisher
            .send_rtp(
                video.id,
                vp8_keyframe_payload(&format!("warm-up video {warm}"), 100),
                true,
            )
            .await
            .expect("sending warm-up video");
        warm += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (s, seen) in subs.iter_mut().zip(seen.iter_mut()) {
            seen.pump(s);
        }
        let flowing = seen
            .iter()
            .all(|s| !s.rtp_of(&audio_tid).is_empty() && !s.rtp_of(&video_tid).is_empty());
        if flowing {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let got: Vec<(usize, usize)> = seen
                .iter()
                .map(|s| (s.rtp_of(&audio_tid).len(), s.rtp_of(&video_tid).len()))
                .collect();
            panic!("media did not start flowing to every subscriber in 20 s ({warm} warm-up packets per track sent; received audio/video per subscriber: {got:?})");
        }
    }
    println!("media flowing to every subscriber after {warm} warm-up packets per track");
    let stats_before = server.stats().await;
    let tcp_connections = stats_before.raw["iceTcpConnections"].as_u64();
    if ice_tcp {
        assert_eq!(
            tcp_connections,
            Some(4),
            "one ICE-TCP connection per participant"
        );
    } else {
        assert_eq!(tcp_connections, Some(0), "UDP participants use no TCP");
    }

    // The measured run: N distinct packets per track, paced lightly.
    let mut sent_audio: Vec<Arc<[u8]>> = Vec::with_capacity(N);
    let mut sent_video: Vec<Arc<[u8]>> = Vec::with_capacity(N);
    for i in 0..N {
        let a: Arc<[u8]> = audio_payload(i).into();
        let v: Arc<[u8]> = video_payload(i).into();
        let sa = publisher
            .send_rtp(audio.id, a.clone(), true)
            .await
            .expect("sending audio");
        let sv = publisher
            .send_rtp(video.id, v.clone(), true)
            .await
            .expect("sending video");
        assert_eq!(sa.ssrc, pub_audio_ssrc);
        assert_eq!(sv.ssrc, pub_video_ssrc);
        sent_audio.push(a);
        sent_video.push(v);
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            for (s, seen) in subs.iter_mut().zip(seen.iter_mut()) {
                seen.pump(s);
            }
        }
    }

    let is_measured = |p: &[u8]| {
        p.windows(b"edge-sfu test ".len())
            .any(|w| w == b"edge-sfu test ")
    };
    let complete = try_until(Duration::from_secs(20), || {
        let mut all = true;
        for (s, seen) in subs.iter_mut().zip(seen.iter_mut()) {
            seen.pump(s);
            for tid in [&audio_tid, &video_tid] {
                let n = seen
                    .rtp_of(tid)
                    .iter()
                    .filter(|p| is_measured(&p.payload))
                    .count();
                all &= n >= N;
            }
        }
        all
    })
    .await;
    if !complete {
        let got: Vec<String> = seen
            .iter()
            .map(|s| {
                let count = |tid: &str| {
                    s.rtp_of(tid)
                        .iter()
                        .filter(|p| is_measured(&p.payload))
                        .count()
                };
                format!("audio {} video {}", count(&audio_tid), count(&video_tid))
            })
            .collect();
        panic!("not every measured packet arrived within 20 s: of {N} per track, subscribers got {got:?}");
    }

    for (s, seen) in subs.iter().zip(seen.iter()) {
        let who = s.name();
        let remote = s.status().remote_tracks;
        let mut leg_ssrcs = Vec::new();
        for (tid, kind, sent, pub_ssrc) in [
            (&audio_tid, "audio", &sent_audio, pub_audio_ssrc),
            (&video_tid, "video", &sent_video, pub_video_ssrc),
        ] {
            let mut packets = seen.rtp_of(tid);
            let mid = &remote
                .iter()
                .find(|t| &t.track_id == tid)
                .expect("the mapping")
                .mid;
            assert!(packets.iter().all(|p| p.mid.as_ref() == Some(mid)));
            assert!(packets.iter().all(|p| p.peer_id == Some(pub_id)));

            // One SSRC per leg, not the publisher's.
            let ssrcs: HashSet<u32> = packets.iter().map(|p| p.ssrc).collect();
            assert_eq!(ssrcs.len(), 1, "{who} {kind}: several SSRCs {ssrcs:?}");
            let ssrc = packets[0].ssrc;
            assert_ne!(
                ssrc, pub_ssrc,
                "{who} {kind}: the SFU kept the publisher's SSRC"
            );
            leg_ssrcs.push(ssrc);

            // Gap-free from the first packet received: consecutive (extended) sequence numbers.
            packets.sort_by_key(|p| p.ext_seq);
            for w in packets.windows(2) {
                assert_eq!(
                    w[1].ext_seq,
                    w[0].ext_seq + 1,
                    "{who} {kind}: sequence gap or duplicate between {} and {}",
                    w[0].seq,
                    w[1].seq
                );
                assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
            }

            // The measured packets, in sequence order, are exactly what was sent.
            let measured: Vec<&[u8]> = packets
                .iter()
                .map(|p| &*p.payload)
                .filter(|p| is_measured(p))
                .collect();
            assert_eq!(measured.len(), N, "{who} {kind}: measured packet count");
            for (i, (got, want)) in measured.iter().zip(sent.iter()).enumerate() {
                assert_eq!(
                    *got,
                    &**want,
                    "{who} {kind}: payload {i} differs ({} vs {} bytes)",
                    got.len(),
                    want.len()
                );
            }
            // Nothing else came after them.
            assert!(is_measured(&packets[packets.len() - 1].payload));
            println!(
                "{who} {kind}: {} packets (seq {}..={}), ssrc {ssrc:#010x} (publisher's {pub_ssrc:#010x}), pt {}",
                packets.len(),
                packets[0].seq,
                packets[packets.len() - 1].seq,
                packets[0].pt
            );
        }
        assert_ne!(
            leg_ssrcs[0], leg_ssrcs[1],
            "{who}: audio and video share an SSRC"
        );
        assert_eq!(s.counters().events_dropped, 0);
    }

    let stats = server.stats().await;
    assert!(
        stats.forwarded_packets >= stats_before.forwarded_packets + (2 * N * subs.len()) as u64,
        "forwardedPackets went from {} to {}, expected at least {} more",
        stats_before.forwarded_packets,
        stats.forwarded_packets,
        2 * N * subs.len()
    );
    assert_eq!(stats.rooms, 1);
    assert_eq!(stats.peers, 4);

    publisher.leave().await;
    for s in subs {
        s.leave().await;
    }
    server.until_empty(Duration::from_secs(10)).await;
}
