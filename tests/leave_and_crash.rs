//! Members who leave, crash, or lose their network path are removed: the others get `peerLeft` and
//! stop receiving their tracks, and `/api/stats` goes back to zero once everyone is gone.

mod support;

use std::time::Duration;

use sfu_client::ErrorCode;
use support::{join, until, wait_tracks_of, Seen, Server};

/// The SFU's worst case for noticing a dead member (30 s without ICE/DTLS or WebSocket traffic), plus
/// slack.
const CRASH_LIMIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_leaves_is_removed() {
    let server = Server::start();
    let room = "leave";
    let mut a = join(&server, room, "a", true, true).await;
    let b = join(&server, room, "b", true, false).await;
    let mut c = join(&server, room, "c", false, false).await;
    let b_id = b.peer_id();
    wait_tracks_of(&c, a.peer_id(), 2).await;
    wait_tracks_of(&c, b_id, 1).await;
    wait_tracks_of(&a, b_id, 1).await;
    server
        .stats_until(Duration::from_secs(5), "one room of three", |s| {
            s.rooms == 1 && s.peers == 3
        })
        .await;

    b.leave().await;

    let (mut sa, mut sc) = (Seen::default(), Seen::default());
    until(Duration::from_secs(10), "peerLeft(b) at a and c", || {
        sa.pump(&mut a);
        sc.pump(&mut c);
        sa.left.contains(&b_id) && sc.left.contains(&b_id)
    })
    .await;
    // The SFU re-offers without b's tracks.
    for member in [&a, &c] {
        member
            .wait_for(Duration::from_secs(10), |s| {
                s.remote_tracks.iter().all(|t| t.peer_id != b_id)
            })
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{} still receives b's tracks: {e}; {:?}",
                    member.name(),
                    member.status().remote_tracks
                )
            });
    }
    server
        .stats_until(Duration::from_secs(10), "two members left", |s| {
            s.rooms == 1 && s.peers == 2
        })
        .await;
    assert!(a.is_connected() && c.is_connected());

    a.leave().await;
    c.leave().await;
    server.until_empty(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_vanishes_is_removed() {
    let server = Server::start();
    let room = "crash";
    let mut a = join(&server, room, "a", true, false).await;
    let b = join(&server, room, "b", true, true).await;
    let b_id = b.peer_id();
    wait_tracks_of(&a, b_id, 2).await;
    wait_tracks_of(&b, a.peer_id(), 1).await;

    // No `leave`, no close frame, no DTLS close_notify: the TCP connection is reset and the UDP
    // socket is gone.
    b.vanish().await;

    let mut sa = Seen::default();
    until(CRASH_LIMIT, "peerLeft(b) at a", || {
        sa.pump(&mut a);
        sa.left.contains(&b_id)
    })
    .await;
    a.wait_for(Duration::from_secs(10), |s| {
        s.remote_tracks.iter().all(|t| t.peer_id != b_id)
    })
    .await
    .unwrap_or_else(|e| panic!("a still receives b's tracks: {e}"));
    server
        .stats_until(CRASH_LIMIT, "one member left", |s| {
            s.rooms == 1 && s.peers == 1
        })
        .await;

    // The last member crashes too.
    a.vanish().await;
    server.until_empty(CRASH_LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_media_path_dies_is_removed() {
    let server = Server::start();
    let room = "lost-path";
    let mut a = join(&server, room, "a", true, false).await;
    let mut b = join(&server, room, "b", true, false).await;
    let b_id = b.peer_id();
    wait_tracks_of(&a, b_id, 1).await;

    // b's WebSocket stays up (and keeps pinging), but no STUN, DTLS or RTP gets through any more:
    // the SFU loses ICE consent, tells b `media_timeout` and removes it.
    b.cut_media().await.expect("cutting b's media path");

    let (mut sa, mut sb) = (Seen::default(), Seen::default());
    until(CRASH_LIMIT, "peerLeft(b) at a", || {
        sa.pump(&mut a);
        sa.left.contains(&b_id)
    })
    .await;
    until(Duration::from_secs(10), "media_timeout at b", || {
        sb.pump(&mut b);
        sb.server_errors
            .iter()
            .any(|(code, _)| *code == ErrorCode::MediaTimeout)
    })
    .await;
    server
        .stats_until(Duration::from_secs(10), "one member left", |s| s.peers == 1)
        .await;
    // a, whose path is fine, stayed through all of it (its keepalives count as traffic).
    sa.pump(&mut a);
    assert!(a.is_connected(), "a: {:?}", a.status());
    assert!(sa.server_errors.is_empty(), "a: {:?}", sa.server_errors);

    a.leave().await;
    b.leave().await;
    server.until_empty(Duration::from_secs(10)).await;
}
