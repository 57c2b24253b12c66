//! Rooms: capacity, and isolation between rooms.

mod support;

use std::time::Duration;

use sfu_client::{Client, ClientConfig, ClientError, ErrorCode};
use support::{join, join_with, until, wait_tracks_of, Seen, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_and_then_admits_again() {
    let server = Server::start();
    let room = "pair";
    let first = join_with(
        ClientConfig::new(server.ws_url(), room, "first")
            .audio(true)
            .capacity(2),
    )
    .await;
    let second = join(&server, room, "second", true, false).await;
    match Client::connect(ClientConfig::new(server.ws_url(), room, "third")).await {
        Err(ClientError::Refused {
            code: ErrorCode::RoomFull,
            ..
        }) => {}
        other => panic!("a third member of a room of capacity 2: {other:?}"),
    }
    // A later join's capacity does not change the room.
    match Client::connect(ClientConfig::new(server.ws_url(), room, "fourth").capacity(10)).await {
        Err(ClientError::Refused {
            code: ErrorCode::RoomFull,
            ..
        }) => {}
        other => panic!("a join asking for more capacity: {other:?}"),
    }
    second.leave().await;
    server
        .stats_until(Duration::from_secs(10), "one member", |s| s.peers == 1)
        .await;
    let third = join(&server, room, "third", false, false).await;
    wait_tracks_of(&third, first.peer_id(), 1).await;
    third.leave().await;
    first.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_isolated() {
    let server = Server::start();
    let x_pub = join(&server, "x", "x-pub", true, false).await;
    let mut x_sub = join(&server, "x", "x-sub", false, false).await;
    let mut y_sub = join(&server, "y", "y-sub", false, false).await;
    assert!(
        y_sub.initial_peers().is_empty(),
        "{:?}",
        y_sub.initial_peers()
    );
    wait_tracks_of(&x_sub, x_pub.peer_id(), 1).await;

    let audio = x_pub.audio_track().expect("audio");
    let (mut sx, mut sy) = (Seen::default(), Seen::default());
    let mut n = 0;
    until(Duration::from_secs(10), "media in room x", || {
        n += 1;
        let _ = x_pub.queue_rtp(audio, format!("x {n}").into_bytes(), true);
        sx.pump(&mut x_sub);
        sx.rtp.len() >= 20
    })
    .await;
    x_pub.send_chat("only for x").await.expect("chat");
    until(Duration::from_secs(10), "chat in room x", || {
        sx.pump(&mut x_sub);
        sx.chats.iter().any(|c| c.2 == "only for x")
    })
    .await;
    sy.pump(&mut y_sub);
    assert!(sy.rtp.is_empty(), "room y got room x's media");
    assert!(
        sy.chats.is_empty(),
        "room y got room x's chat: {:?}",
        sy.chats
    );
    assert!(
        sy.joined.is_empty(),
        "room y saw room x's members join: {:?}",
        sy.joined
    );
    assert!(y_sub.status().remote_tracks.is_empty());
    let stats = server.stats().await;
    assert_eq!((stats.rooms, stats.peers), (2, 3));

    x_pub.leave().await;
    x_sub.leave().await;
    y_sub.leave().await;
    server.until_empty(Duration::from_secs(10)).await;
}
