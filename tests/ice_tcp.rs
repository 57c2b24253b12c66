//! Hostile ICE-TCP connections while a call runs over ICE-TCP: an oversized or empty RFC 4571
//! frame, garbage before STUN, a stalled half frame, and a STUN check for nobody. Each breaks one
//! rule, so that connection (and only it) is closed and counted; the call keeps flowing.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sfu_client::{ClientConfig, ClientError};
use support::{join_with, until, wait_tracks_of, Seen, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tcp_connections_are_closed_alone() {
    let server = Server::start();
    let room = "tcp";
    let config = |name: &str, media: bool| {
        ClientConfig::new(server.ws_url(), room, name)
            .audio(media)
            .ice_tcp(true)
    };
    let publisher = Arc::new(join_with(config("publisher", true)).await);
    let mut sub = join_with(config("subscriber", false)).await;
    wait_tracks_of(&sub, publisher.peer_id(), 1).await;

    // The attacks go to the worker holding the call.
    let stats = server.stats().await;
    let port = stats.raw["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["peers"].as_u64() == Some(2)))
        .and_then(|w| w["iceTcpPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no iceTcpPort in /api/stats: {}", stats.raw));
    let target = format!("127.0.0.1:{port}");

    let stop = Arc::new(AtomicBool::new(false));
    let streamer = tokio::spawn({
        let (publisher, stop) = (publisher.clone(), stop.clone());
        async move {
            let audio = publisher.audio_track().ok_or(ClientError::Closed)?;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                publisher
                    .send_rtp(audio, format!("live audio {i}").into_bytes(), true)
                    .await?;
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<u64, ClientError>(i)
        }
    });
    let mut seen = Seen::default();
    until(Duration::from_secs(20), "live media over TCP", || {
        seen.pump(&mut sub);
        seen.rtp.len() >= 20
    })
    .await;

    // Each attack with the drop reason it must be counted under.
    let attacks: Vec<(&str, Vec<u8>)> = vec![
        ("tcp_bad_frame", vec![0xff, 0xff, 1, 2, 3]),
        ("tcp_bad_frame", vec![0, 0]),
        ("tcp_not_stun", frame(b"GET / HTTP/1.1\r\n\r\n")),
        // A 100-byte frame of which 10 bytes ever arrive.
        ("tcp_stalled", [&[0u8, 100][..], &[0; 10]].concat()),
        (
            "tcp_not_admitted",
            frame(&stun_binding_request(b"nobody:x")),
        ),
    ];
    let mut conns = Vec::new();
    for (_, bytes) in &attacks {
        let mut c = TcpStream::connect(&target).await.expect("connecting");
        c.write_all(bytes).await.expect("writing the attack");
        conns.push(c);
    }
    // An idle connection that sends nothing at all is also closed (it is never admitted).
    conns.push(TcpStream::connect(&target).await.expect("connecting"));

    for (i, mut c) in conns.into_iter().enumerate() {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    // Nothing is owed to a stranger, but reading on keeps the test honest.
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "hostile connection {i} was not closed");
    }

    let after = server
        .stats_until(Duration::from_secs(5), "every attack counted", |s| {
            let n = |k: &str| s.drops.get(k).copied().unwrap_or(0);
            n("tcp_bad_frame") >= 2
                && n("tcp_not_stun") >= 1
                && n("tcp_stalled") >= 1
                && n("tcp_not_admitted") >= 2
        })
        .await;
    println!("drops after the attacks: {:?}", after.drops);
    assert_eq!(
        after.raw["iceTcpConnections"].as_u64(),
        Some(2),
        "only the two participants' connections remain"
    );

    let before = seen.rtp.len();
    until(
        Duration::from_secs(15),
        "the call to keep flowing after the attacks",
        || {
            seen.pump(&mut sub);
            seen.rtp.len() >= before + 50
        },
    )
    .await;
    assert!(sub.is_connected(), "subscriber: {:?}", sub.status());
    stop.store(true, Ordering::Relaxed);
    streamer
        .await
        .expect("the streamer task")
        .expect("the publisher kept sending");

    sub.leave().await;
    if let Ok(publisher) = Arc::try_unwrap(publisher) {
        publisher.leave().await;
    }
    let empty = server.until_empty(Duration::from_secs(15)).await;
    // The participants' connections close with their peers.
    let gone = server
        .stats_until(Duration::from_secs(15), "no TCP connection left", |s| {
            s.raw["iceTcpConnections"].as_u64() == Some(0)
        })
        .await;
    println!("after leaving: {:?} / {}", empty.drops, gone.raw);
}

/// One RFC 4571 frame.
fn frame(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).expect("a short frame");
    [&len.to_be_bytes()[..], data].concat()
}

/// A STUN binding request with a USERNAME and no integrity: well-formed, for no known peer.
fn stun_binding_request(username: &[u8]) -> Vec<u8> {
    let padded = username.len().div_ceil(4) * 4;
    let mut m = Vec::new();
    m.extend_from_slice(&0x0001u16.to_be_bytes());
    m.extend_from_slice(&u16::try_from(4 + padded).expect("short").to_be_bytes());
    m.extend_from_slice(&0x2112_a442u32.to_be_bytes());
    m.extend_from_slice(b"edge-sfu-tcp");
    m.extend_from_slice(&0x0006u16.to_be_bytes());
    m.extend_from_slice(&u16::try_from(username.len()).expect("short").to_be_bytes());
    m.extend_from_slice(username);
    m.resize(20 + 4 + padded, 0);
    m
}
