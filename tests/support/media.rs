//! Media runs the multi-node tests measure: warm-up until every viewer gets every track of a
//! publisher, then a run of numbered packets each viewer must get once, byte-identical and
//! gap-free.

use std::time::Duration;

use sfu_client::{Client, TrackKind};

use super::{try_until, vp8_keyframe_payload, Seen};

/// Packets per track in a measured run.
pub const MEASURED_PACKETS: usize = 200;
const N: usize = MEASURED_PACKETS;

/// A packet of the measured run `run`: its number and filler that differs per packet.
pub fn measured_payload(run: &str, kind: TrackKind, i: usize) -> Vec<u8> {
    let text = format!("measured {run} {kind:?} #{i:04}|");
    match kind {
        TrackKind::Audio => {
            let mut p = text.into_bytes();
            p.extend((0..(40 + i % 90)).map(|j| ((i * 31 + j * 7) % 256) as u8));
            p
        }
        TrackKind::Video => vp8_keyframe_payload(&text, 200 + (i * 13) % 700),
    }
}

/// Sends warm-up packets on each of `publisher`'s tracks until every one of `viewers` got each
/// track (a leg starts at a keyframe); returns how many went out per track.
pub async fn warm_up(publisher: &Client, viewers: &mut [(Client, Seen)]) -> usize {
    let id = publisher.peer_id();
    let tracks = publisher.local_tracks();
    let mut warm = 0;
    let flowing = try_until(Duration::from_secs(20), || {
        for t in &tracks {
            let payload = match t.kind {
                TrackKind::Audio => format!("warm-up {warm}").into_bytes(),
                TrackKind::Video => vp8_keyframe_payload(&format!("warm-up {warm}"), 100),
            };
            let _ = publisher.queue_rtp(t.id, payload, true);
        }
        warm += 1;
        let mut all = true;
        for (client, seen) in viewers.iter_mut() {
            seen.pump(client);
            for t in &tracks {
                all &= !seen.rtp_of(&t.server_track_id(id).unwrap()).is_empty();
            }
        }
        all
    })
    .await;
    assert!(
        flowing,
        "{}'s media flowing after {warm} warm-up packets",
        publisher.name()
    );
    warm
}

/// Sends run `run` of `n` packets on each of `publisher`'s tracks and waits until each of
/// `viewers` got every one of them, byte-identical, with gap-free sequence numbers.
pub async fn measured_run(run: &str, publisher: &Client, viewers: &mut [(Client, Seen)]) {
    let pub_id = publisher.peer_id();
    let tracks = publisher.local_tracks();
    let mut sent = Vec::new();
    for i in 0..N {
        for t in &tracks {
            let payload = measured_payload(run, t.kind, i);
            publisher
                .send_rtp(t.id, payload.clone(), true)
                .await
                .expect("sending");
            sent.push((t.server_track_id(pub_id).expect("mid"), payload));
        }
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let tag = format!("measured {run} ");
    let measured = |p: &[u8]| p.windows(tag.len()).any(|w| w == tag.as_bytes());
    let complete = try_until(Duration::from_secs(20), || {
        viewers.iter_mut().all(|(client, seen)| {
            seen.pump(client);
            tracks.iter().all(|t| {
                let tid = t.server_track_id(pub_id).expect("mid");
                seen.rtp_of(&tid)
                    .iter()
                    .filter(|p| measured(&p.payload))
                    .count()
                    >= N
            })
        })
    })
    .await;
    for (client, seen) in viewers.iter() {
        for t in &tracks {
            let tid = t.server_track_id(pub_id).expect("mid");
            let mut got: Vec<_> = seen
                .rtp_of(&tid)
                .into_iter()
                .filter(|p| measured(&p.payload))
                .collect();
            assert!(
                complete,
                "{} got {} of {N} packets of {tid} in run {run}",
                client.name(),
                got.len()
            );
            got.sort_by_key(|p| p.ext_seq);
            let expected: Vec<&Vec<u8>> = sent
                .iter()
                .filter(|(id, _)| *id == tid)
                .map(|(_, p)| p)
                .collect();
            let payloads: Vec<&[u8]> = got.iter().map(|p| &*p.payload).collect();
            assert!(
                payloads.len() == expected.len()
                    && payloads
                        .iter()
                        .zip(&expected)
                        .all(|(a, b)| *a == b.as_slice()),
                "{}: every packet of {tid} once, byte-identical, in order",
                client.name()
            );
            for w in got.windows(2) {
                assert_eq!(
                    w[1].ext_seq,
                    w[0].ext_seq + 1,
                    "{}: gap-free",
                    client.name()
                );
            }
        }
    }
}
