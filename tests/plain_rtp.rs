//! Plain RTP legs through the real server over loopback UDP (the userspace path): an RTP source
//! feeding a room through an ingest, and a published track copied to plain RTP receivers by an
//! output, both driven through the HTTP API.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use sfu_client::TrackKind;
use support::{http, join, try_until, until, vp8_keyframe_payload, wait_tracks_of, Seen, Server};
use tokio::net::UdpSocket;

fn plain_rtp(pt: u8, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x80 | pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

async fn api(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, text) = http(server.addr, method, path, body.as_deref())
        .await
        .expect("HTTP request");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Plain RTP packets received on `socket` until `timeout` passes with nothing new.
async fn drain(socket: &UdpSocket, timeout: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok(n)) = tokio::time::timeout(timeout, socket.recv(&mut buf)).await {
        got.push(buf[..n].to_vec());
    }
    got
}

fn seq_of(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}

fn ssrc_of(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[8], p[9], p[10], p[11]])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtp_source_reaches_a_subscriber_through_an_ingest() {
    let server = Server::start();
    let mut viewer = join(&server, "cams", "viewer", false, false).await;
    let sender = UdpSocket::bind("127.0.0.1:0").await.expect("sender socket");
    let source = sender.local_addr().expect("sender address");
    let (status, info) = api(
        &server,
        "POST",
        "/api/ingests",
        Some(json!({"room": "cams", "name": "camera-1", "codec": "vp8", "payloadType": 96, "source": source})),
    )
    .await;
    assert_eq!(status, 201, "{info}");
    let id = info["id"].as_u64().expect("ingest id");
    let track_id = info["trackId"].as_str().expect("track id").to_owned();
    let to = SocketAddr::from(([127, 0, 0, 1], info["port"].as_u64().expect("port") as u16));
    let remote = wait_tracks_of(&viewer, id, 1).await;
    assert_eq!(remote[0].track_id, track_id);
    assert_eq!(remote[0].kind, Some(TrackKind::Video));

    // The source's sequence numbers wrap during the run.
    let mut seen = Seen::default();
    let mut seq = 65_400u16;
    let packet = |tag: &str, seq: u16| {
        plain_rtp(
            96,
            seq,
            u32::from(seq) * 3000,
            0xC0FFEE,
            &vp8_keyframe_payload(tag, 300),
        )
    };
    let flowing = try_until(Duration::from_secs(20), || {
        let pkt = packet("warm-up", seq);
        seq = seq.wrapping_add(1);
        let _ = sender.try_send_to(&pkt, to);
        seen.pump(&mut viewer);
        !seen.rtp_of(&track_id).is_empty()
    })
    .await;
    assert!(flowing, "ingest media reached the viewer");
    const N: usize = 200;
    for i in 0..N {
        let pkt = packet(&format!("measured #{i:03}|"), seq);
        seq = seq.wrapping_add(1);
        sender.send_to(&pkt, to).await.expect("send");
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let measured = |s: &Seen| -> Vec<(u16, Vec<u8>)> {
        s.rtp_of(&track_id)
            .into_iter()
            .filter(|p| p.payload.windows(9).any(|w| w == b"measured "))
            .map(|p| (p.seq, p.payload.to_vec()))
            .collect()
    };
    until(
        Duration::from_secs(20),
        "every measured packet arrives",
        || {
            seen.pump(&mut viewer);
            measured(&seen).len() >= N
        },
    )
    .await;
    let got = measured(&seen);
    for (i, (_, payload)) in got.iter().enumerate() {
        assert_eq!(
            payload,
            &vp8_keyframe_payload(&format!("measured #{i:03}|"), 300)
        );
    }
    for pair in got.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0.wrapping_add(1),
            "gap-free sequence at the viewer"
        );
    }

    let (status, _) = api(&server, "DELETE", &format!("/api/ingests/{id}"), None).await;
    assert_eq!(status, 204);
    until(
        Duration::from_secs(10),
        "the viewer sees the ingest leave",
        || {
            seen.pump(&mut viewer);
            seen.left.contains(&id)
        },
    )
    .await;
    let (status, _) = api(&server, "DELETE", &format!("/api/ingests/{id}"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_track_reaches_plain_receivers_through_an_output() {
    let server = Server::start();
    let publisher = join(&server, "studio", "host", false, true).await;
    let video = publisher
        .local_tracks()
        .into_iter()
        .find(|t| t.kind == TrackKind::Video)
        .expect("a video track");
    let track_id = video
        .server_track_id(publisher.peer_id())
        .expect("track id");
    let r1 = UdpSocket::bind("127.0.0.1:0").await.expect("receiver 1");
    let r2 = UdpSocket::bind("127.0.0.1:0").await.expect("receiver 2");
    let (a1, a2) = (
        r1.local_addr().expect("addr"),
        r2.local_addr().expect("addr"),
    );
    let (status, info) = api(
        &server,
        "POST",
        "/api/outputs",
        Some(json!({"room": "studio", "trackId": track_id, "targets": [{"address": a1, "ssrc": 1111}, {"address": a2, "payloadType": 100}]})),
    )
    .await;
    assert_eq!(status, 201, "{info}");
    let id = info["id"].as_u64().expect("output id");
    assert_eq!(info["path"], "userspace");
    let ssrc2 = info["targets"][1]["ssrc"].as_u64().expect("ssrc") as u32;

    // Warm up until the publisher's session is up and the first copy arrives.
    let mut warm = 0;
    let mut buf = vec![0u8; 2048];
    loop {
        publisher
            .send_rtp(
                video.id,
                vp8_keyframe_payload(&format!("warm-up {warm}"), 100),
                true,
            )
            .await
            .expect("send");
        warm += 1;
        if tokio::time::timeout(Duration::from_millis(20), r1.recv(&mut buf))
            .await
            .is_ok()
        {
            break;
        }
        assert!(warm < 1000, "no copy reached the receiver");
    }
    drain(&r1, Duration::from_millis(200)).await;
    drain(&r2, Duration::from_millis(50)).await;

    const N: usize = 100;
    let payload = |i: usize| vp8_keyframe_payload(&format!("copy #{i:03}|"), 200 + i);
    for i in 0..N {
        publisher
            .send_rtp(video.id, payload(i), true)
            .await
            .expect("send");
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for (socket, ssrc, pt) in [(&r1, 1111, None), (&r2, ssrc2, Some(100u8))] {
        let got = drain(socket, Duration::from_millis(500)).await;
        let measured: Vec<&Vec<u8>> = got
            .iter()
            .filter(|p| p.windows(6).any(|w| w == b"copy #"))
            .collect();
        assert_eq!(measured.len(), N, "every copy arrives");
        for (i, p) in measured.iter().enumerate() {
            assert_eq!(ssrc_of(p), ssrc);
            if let Some(pt) = pt {
                assert_eq!(p[1] & 0x7f, pt);
            }
            assert_eq!(&p[12..], payload(i).as_slice(), "byte-identical payload");
        }
        for pair in measured.windows(2) {
            assert_eq!(seq_of(pair[1]), seq_of(pair[0]).wrapping_add(1));
        }
    }

    // Receiver 1 goes while media flows; receiver 2 loses nothing.
    let (status, _) = api(
        &server,
        "PUT",
        &format!("/api/outputs/{id}/targets"),
        Some(json!([{"address": a2, "payloadType": 100}])),
    )
    .await;
    assert_eq!(status, 200);
    for i in 0..20 {
        publisher
            .send_rtp(video.id, payload(i), true)
            .await
            .expect("send");
    }
    assert!(
        drain(&r1, Duration::from_millis(300)).await.is_empty(),
        "a removed receiver gets nothing"
    );
    assert_eq!(drain(&r2, Duration::from_millis(300)).await.len(), 20);

    let (status, _) = api(&server, "DELETE", &format!("/api/outputs/{id}"), None).await;
    assert_eq!(status, 204);
    let (_, list) = api(&server, "GET", "/api/outputs", None).await;
    assert_eq!(list, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_rtp_api_refuses_nonsense_with_clear_statuses() {
    let server = Server::start();
    let cases = [
        (
            "POST",
            "/api/outputs",
            json!({"room": "nowhere", "trackId": "1:0", "targets": [{"address": "127.0.0.1:9"}]}),
            404,
        ),
        (
            "POST",
            "/api/ingests",
            json!({"room": "r", "name": "n", "codec": "vp8", "payloadType": 200}),
            400,
        ),
        (
            "POST",
            "/api/ingests",
            json!({"room": "r", "name": "n", "codec": "theora", "payloadType": 96}),
            422,
        ),
        (
            "POST",
            "/api/ingests",
            json!({"room": "", "name": "n", "codec": "vp8", "payloadType": 96}),
            400,
        ),
        ("PUT", "/api/outputs/12345/targets", json!([]), 404),
        ("DELETE", "/api/outputs/12345", Value::Null, 404),
    ];
    for (method, path, body, want) in cases {
        let body = (!body.is_null()).then_some(body);
        let (status, answer) = api(&server, method, path, body).await;
        assert_eq!(status, want, "{method} {path}: {answer}");
    }
    let stats = server.stats().await;
    assert_eq!(
        (stats.rooms, stats.peers),
        (0, 0),
        "refused requests leave nothing behind"
    );
}
