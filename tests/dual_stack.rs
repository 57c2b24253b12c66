//! Dual-stack: one participant reaches the SFU over IPv6 (`::1`: its WebSocket, its one host
//! candidate), the other over IPv4 (`127.0.0.1`), both through the same dual-stack sockets
//! (signaling on `[::]`, each worker's media socket and ICE-TCP listener); each receives what the
//! other publishes, over UDP and over ICE-TCP.

mod support;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use sfu_client::{ClientConfig, RemoteTrack, TrackKind};
use support::{join_with, vp8_keyframe_payload, wait_tracks_of, Seen, Server};

/// Packets of each track each side must receive.
const WANTED: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_and_ipv4_participants_exchange_media_over_udp() {
    exchange(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_and_ipv4_participants_exchange_media_over_ice_tcp() {
    exchange(true).await;
}

async fn exchange(ice_tcp: bool) {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("!!! no IPv6 loopback on this host: dual-stack test SKIPPED !!!");
        return;
    }
    // Plain HTTP on [::] (not loopback): --insecure-http. The support adds --public-ip 127.0.0.1.
    let server = Server::start_listening("[::]:0", &["--insecure-http", "--public-ip", "::1"]);
    let port = server.addr.port();
    let room = if ice_tcp {
        "dual-stack-tcp"
    } else {
        "dual-stack"
    };
    let participant = |name: &str, ip: std::net::IpAddr| {
        let url = format!("ws://{}/ws", SocketAddr::new(ip, port));
        let mut config = ClientConfig::new(url, room, name)
            .audio(true)
            .video(true)
            .ice_tcp(ice_tcp);
        config.bind_addr = SocketAddr::new(ip, 0);
        join_with(config)
    };
    let mut v4 = participant("v4", Ipv4Addr::LOCALHOST.into()).await;
    let mut v6 = participant("v6", Ipv6Addr::LOCALHOST.into()).await;
    assert!(v6.local_addr().is_ipv6() && v4.local_addr().is_ipv4());

    // The SFU announced both families; the IPv6 client can only pair its ::1 candidate with the
    // SFU's ::1 one.
    let offered = v6.status().sfu_candidates;
    assert!(
        offered.iter().any(|a| a.ip() == Ipv6Addr::LOCALHOST)
            && offered.iter().any(|a| a.ip() == Ipv4Addr::LOCALHOST),
        "the SFU's UDP candidates: {offered:?}"
    );

    let v4_tracks = wait_tracks_of(&v6, v4.peer_id(), 2).await;
    let v6_tracks = wait_tracks_of(&v4, v6.peer_id(), 2).await;
    let (mut seen_v4, mut seen_v6) = (Seen::default(), Seen::default());
    let got = |seen: &Seen, tracks: &[RemoteTrack], tag: &str| -> usize {
        tracks
            .iter()
            .map(|t| {
                seen.rtp_of(&t.track_id)
                    .iter()
                    .filter(|p| contains(&p.payload, tag.as_bytes()))
                    .count()
            })
            .min()
            .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut sent = 0usize;
    loop {
        for (client, tag) in [(&v4, "from-v4"), (&v6, "from-v6")] {
            for t in client.local_tracks() {
                let payload = match t.kind {
                    TrackKind::Audio => format!("{tag} audio {sent}").into_bytes(),
                    TrackKind::Video => vp8_keyframe_payload(&format!("{tag} video {sent}"), 300),
                };
                client
                    .send_rtp(t.id, payload, true)
                    .await
                    .expect("sending RTP");
            }
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen_v4.pump(&mut v4);
        seen_v6.pump(&mut v6);
        let (at_v6, at_v4) = (
            got(&seen_v6, &v4_tracks, "from-v4"),
            got(&seen_v4, &v6_tracks, "from-v6"),
        );
        if at_v6 >= WANTED && at_v4 >= WANTED {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "within 30 s ({sent} packets per track sent): the v6 client got {at_v6} of each v4 track, the v4 client {at_v4} of each v6 track\n{}",
            server.log_tail(40)
        );
    }

    let stats = server.stats().await;
    let tcp = stats.raw["iceTcpConnections"].as_u64();
    assert_eq!(
        tcp,
        Some(if ice_tcp { 2 } else { 0 }),
        "ICE-TCP connections"
    );
    assert_eq!(
        stats.drops.get("unknown_source").copied().unwrap_or(0),
        0,
        "no datagram was taken for a stranger: {:?}",
        stats.drops
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
