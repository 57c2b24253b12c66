//! Hostile input while a call runs: junk datagrams at the SFU's media ports, junk on other
//! WebSockets. The call must keep flowing, the server must stay up, WebSocket junk must be answered
//! with the protocol's error codes, and `/api/stats` must count the drops.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use sfu_client::{ClientError, ErrorCode};
use sfu_core::protocol::{ClientMessage, PublishedTrack, ServerMessage, TrackSource};
use support::{join, until, vp8_keyframe_payload, wait_tracks_of, Next, RawWs, Seen, Server};
use tokio::net::UdpSocket;

/// The largest UDP payload over IPv4.
const MAX_UDP: usize = 65_507;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_does_not_disturb_a_running_call() {
    // Dozens of joins from one address, on purpose: the join limit is tested in tests/tokens.rs.
    let mut server = Server::start_with(&["--join-burst", "0"]);
    let room = "hostile";
    let publisher = Arc::new(join(&server, room, "publisher", true, true).await);
    let mut sub = join(&server, room, "subscriber", false, false).await;
    let pub_id = publisher.peer_id();
    wait_tracks_of(&sub, pub_id, 2).await;

    let status = publisher.status();
    let media_ports = status.sfu_candidates.clone();
    assert!(
        !media_ports.is_empty(),
        "no candidates in the SFU's SDP: {status:?}"
    );
    let audio_ssrc = status
        .local_tracks
        .iter()
        .find_map(|t| t.ssrc)
        .expect("a publisher ssrc");

    // Live media, 50 packets per second per track, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let streamer = tokio::spawn({
        let publisher = publisher.clone();
        let stop = stop.clone();
        async move {
            let audio = publisher.audio_track().ok_or(ClientError::Closed)?;
            let video = publisher.video_track().ok_or(ClientError::Closed)?;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                publisher
                    .send_rtp(audio, format!("live audio {i}").into_bytes(), true)
                    .await?;
                publisher
                    .send_rtp(
                        video,
                        vp8_keyframe_payload(&format!("live video {i}"), 300),
                        true,
                    )
                    .await?;
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<u64, ClientError>(i)
        }
    });

    let mut seen = Seen::default();
    until(
        Duration::from_secs(20),
        "live media at the subscriber",
        || {
            seen.pump(&mut sub);
            seen.rtp.len() >= 20
        },
    )
    .await;
    let before = server.stats().await;

    // --- UDP: junk at every media port of the SFU. ---
    let attacker = UdpSocket::bind("127.0.0.1:0").await.expect("udp bind");
    let datagrams = hostile_datagrams(audio_ssrc);
    let mut sent = 0usize;
    for (i, d) in datagrams.iter().enumerate() {
        for port in &media_ports {
            match attacker.send_to(d, port).await {
                Ok(_) => sent += 1,
                Err(e) => println!("sending a {}-byte datagram to {port}: {e}", d.len()),
            }
        }
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            seen.pump(&mut sub);
        }
    }
    println!(
        "sent {sent} hostile datagrams to {media_ports:?} ({} kinds x ports)",
        datagrams.len()
    );
    assert!(
        sent >= datagrams.len(),
        "most hostile datagrams could not be sent"
    );

    // --- WebSocket: junk on other connections, in the same room. ---
    websocket_attacks(&server, room).await;

    // --- Aftermath. ---
    seen.pump(&mut sub);
    let after_attack = seen.rtp.len();
    until(
        Duration::from_secs(15),
        "the subscriber to keep receiving after the attack",
        || {
            seen.pump(&mut sub);
            seen.rtp.len() >= after_attack + 50
        },
    )
    .await;
    assert!(server.is_alive(), "edge-sfu died");
    assert!(
        publisher.is_connected(),
        "publisher: {:?}",
        publisher.status()
    );
    assert!(sub.is_connected(), "subscriber: {:?}", sub.status());

    // Only what the publisher sent came through (nothing injected).
    for p in &seen.rtp {
        let ok = p.payload.starts_with(b"live audio ")
            || p.payload
                .windows(b"live video ".len())
                .any(|w| w == b"live video ");
        assert!(
            ok,
            "the subscriber received a packet the publisher never sent: {:?}",
            String::from_utf8_lossy(&p.payload)
        );
    }

    let after = server
        .stats_until(Duration::from_secs(10), "drop counters to grow", |s| {
            s.drops_total() > before.drops_total()
        })
        .await;
    println!("drops before: {:?}", before.drops);
    println!("drops after:  {:?}", after.drops);

    stop.store(true, Ordering::Relaxed);
    let packets = streamer
        .await
        .expect("the streamer task")
        .expect("the publisher kept sending");
    println!(
        "publisher sent {packets} packets per track; subscriber received {}",
        seen.rtp.len()
    );
    assert!(seen.server_errors.is_empty(), "{:?}", seen.server_errors);

    sub.leave().await;
    if let Ok(publisher) = Arc::try_unwrap(publisher) {
        publisher.leave().await;
    }
    // The hostile connections are closed too; everyone is gone.
    server.until_empty(Duration::from_secs(40)).await;
    assert!(server.is_alive(), "edge-sfu died");
}

/// Junk of every shape an SFU's media port might choke on.
fn hostile_datagrams(victim_ssrc: u32) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(0x5eed_f00d);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let random = |rng: &mut StdRng, first: Option<u8>| {
        let len = rng.random_range(1..1400);
        let mut d = vec![0u8; len];
        rng.fill_bytes(&mut d);
        if let Some(f) = first {
            d[0] = f;
        }
        d
    };
    // Plain random bytes, and random bytes that the first byte routes to each demultiplexer branch
    // (RFC 7983: 0-3 STUN, 20-63 DTLS, 128-191 RTP/RTCP).
    for _ in 0..200 {
        out.push(random(&mut rng, None));
    }
    for _ in 0..50 {
        let first = [0x00, 0x01, 0x16, 0x17, 0x80, 0x90, 0xbf][rng.random_range(0..7)];
        out.push(random(&mut rng, Some(first)));
    }
    out.push(Vec::new());

    let cookie = [0x21, 0x12, 0xa4, 0x42];
    let txid = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    // STUN: truncated header, a length that lies, an attribute that runs past the end, and a
    // well-formed binding request for a user nobody has, with a made-up integrity.
    out.push(vec![0x00, 0x01, 0x00]);
    out.push([&[0x00, 0x01, 0x00, 0x00][..], &cookie, &txid[..4]].concat());
    out.push([&[0x00, 0x01, 0x00, 0xc8][..], &cookie, &txid].concat());
    out.push(
        [
            &[0x00, 0x01, 0x00, 0x08][..],
            &cookie,
            &txid,
            &[0x00, 0x06, 0xff, 0xff, b'a', b'b', b'c', b'd'],
        ]
        .concat(),
    );
    let mut stun = [&[0x00, 0x01, 0x00, 0x00][..], &cookie, &txid].concat();
    let user = b"nobody00:nothing";
    stun.extend_from_slice(&[0x00, 0x06, 0x00, user.len() as u8]);
    stun.extend_from_slice(user);
    stun.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    stun.extend_from_slice(&[0xab; 20]);
    let body_len = (stun.len() - 20) as u16;
    stun[2..4].copy_from_slice(&body_len.to_be_bytes());
    out.push(stun);
    // A STUN binding response nobody asked for.
    out.push([&[0x01, 0x01, 0x00, 0x00][..], &cookie, &txid].concat());

    let rtp_header = |b0: u8, b1: u8, ssrc: u32| {
        let mut h = vec![b0, b1, 0x12, 0x34, 0, 0, 0x10, 0];
        h.extend_from_slice(&ssrc.to_be_bytes());
        h
    };
    // RTP with versions 0, 1 and 3.
    for b0 in [0x00u8, 0x40, 0xc0] {
        let mut p = rtp_header(b0, 0x6f, 0x1234_5678);
        p.extend_from_slice(b"bad version payload");
        out.push(p);
    }
    // RTP with lengths that lie: shorter than a header; 15 CSRCs announced, none there; an extension
    // header claiming 0xffff words; padding longer than the packet; a padding bit and no payload.
    out.push(vec![0x80, 0x6f, 0x00, 0x01, 0x00]);
    let mut p = rtp_header(0x8f, 0x6f, 0x1234_5678);
    p.extend_from_slice(&[0u8; 8]);
    out.push(p);
    let mut p = rtp_header(0x90, 0x6f, 0x1234_5678);
    p.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff, 1, 2, 3, 4]);
    out.push(p);
    let mut p = rtp_header(0xa0, 0x6f, 0x1234_5678);
    p.extend_from_slice(&[7u8; 9]);
    p.push(0xff);
    out.push(p);
    out.push(rtp_header(0xa0, 0x6f, 0x1234_5678));
    // Plain (unencrypted, unauthenticated) RTP under the publisher's real SSRC: must not reach anyone.
    for seq in 0..20u16 {
        let mut p = rtp_header(0x80, 0x6f, victim_ssrc);
        p[2..4].copy_from_slice(&seq.wrapping_add(40_000).to_be_bytes());
        p.extend_from_slice(b"INJECTED PAYLOAD, MUST NOT BE FORWARDED");
        p.extend_from_slice(&[0u8; 10]);
        out.push(p);
    }
    // RTCP: a sender report claiming 0xffff words, a truncated receiver report, a PLI for the
    // publisher's SSRC, and a BYE for it.
    out.push(vec![0x80, 0xc8, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]);
    out.push(vec![0x81, 0xc9, 0x00]);
    let mut pli = vec![0x81, 0xce, 0x00, 0x02, 0, 0, 0, 1];
    pli.extend_from_slice(&victim_ssrc.to_be_bytes());
    out.push(pli);
    let mut bye = vec![0x81, 0xcb, 0x00, 0x01];
    bye.extend_from_slice(&victim_ssrc.to_be_bytes());
    out.push(bye);
    // DTLS: a record whose length lies, a ClientHello of garbage, application data out of nowhere.
    out.push(vec![
        0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3,
    ]);
    let mut hello = vec![
        0x16, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x01, 0xff, 0xff, 0xff,
    ];
    hello.extend_from_slice(&[0x5a; 60]);
    out.push(hello);
    let mut appdata = vec![0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 32];
    appdata.extend_from_slice(&[0x33; 32]);
    out.push(appdata);

    // The largest datagram IPv4 allows.
    let mut huge = vec![0u8; MAX_UDP];
    rng.fill_bytes(&mut huge);
    huge[0] = 0x80;
    out.push(huge);
    out
}

fn without_lines(sdp: &str, prefixes: &[&str]) -> String {
    sdp.lines()
        .filter(|l| !prefixes.iter().any(|p| l.starts_with(p)))
        .map(|l| format!("{l}\r\n"))
        .collect()
}

/// The mid of the first m-line of `kind` ("audio", "application") in an SDP text.
fn mid_of(sdp: &str, kind: &str) -> Option<String> {
    let mut in_kind = false;
    for l in sdp.lines() {
        if let Some(m) = l.strip_prefix("m=") {
            in_kind = m.starts_with(kind);
        } else if let (true, Some(mid)) = (in_kind, l.strip_prefix("a=mid:")) {
            return Some(mid.trim().to_string());
        }
    }
    None
}

fn offer(sdp: String, mid: &str) -> ClientMessage {
    ClientMessage::Offer {
        sdp,
        tracks: vec![PublishedTrack {
            mid: mid.into(),
            source: TrackSource::Mic,
            muted: false,
        }],
    }
}

async fn expect_code(ws: &mut RawWs, what: &str, want: &[ErrorCode]) {
    let code = ws.expect_error(what).await;
    assert!(
        want.contains(&code),
        "{what}: got error {code:?}, expected one of {want:?}"
    );
    println!("{what}: {code:?}");
}

async fn websocket_attacks(server: &Server, room: &str) {
    // Before `join`.
    let mut ws = RawWs::connect(server).await;
    ws.send(&ClientMessage::Chat { text: "hi".into() })
        .await
        .expect("send");
    expect_code(&mut ws, "chat before join", &[ErrorCode::NotJoined]).await;
    ws.text("garbage {{{ not json").await.expect("send");
    expect_code(&mut ws, "garbage before join", &[ErrorCode::BadMessage]).await;
    // Refused joins, each on a connection of its own: a join right after a refused one on the same
    // connection is a separate matter (`a_refused_join_can_be_retried_at_once`).
    for (what, version, room_name, name, code) in [
        (
            "join version 2",
            2,
            room.to_string(),
            "from the future".to_string(),
            ErrorCode::UnsupportedVersion,
        ),
        (
            "65-character name",
            1,
            room.to_string(),
            "n".repeat(65),
            ErrorCode::InvalidJoin,
        ),
        (
            "empty room",
            1,
            String::new(),
            "mallory".to_string(),
            ErrorCode::InvalidJoin,
        ),
        (
            "65-character room",
            1,
            "r".repeat(65),
            "mallory".to_string(),
            ErrorCode::InvalidJoin,
        ),
    ] {
        let mut refused = RawWs::connect(server).await;
        refused
            .send(&ClientMessage::Join {
                version,
                room: room_name,
                name,
                capacity: None,
                token: None,
            })
            .await
            .expect("send");
        expect_code(&mut refused, what, &[code]).await;
        refused.close().await;
    }
    ws.close().await;

    // Joined, in the call's room.
    let mut ws = RawWs::connect(server).await;
    ws.join(room, "mallory").await;
    ws.send(&ClientMessage::Join {
        version: 1,
        room: room.into(),
        name: "mallory".into(),
        capacity: None,
        token: None,
    })
    .await
    .expect("send");
    expect_code(&mut ws, "second join", &[ErrorCode::AlreadyJoined]).await;
    for (what, text) in [
        ("garbage text", "this is not json at all"),
        ("invalid JSON", r#"{"type":"join","#),
        ("JSON array", "[1,2,3]"),
        ("unknown type", r#"{"type":"explode"}"#),
        (
            "wrong field type",
            r#"{"type":"offer","sdp":42,"tracks":[]}"#,
        ),
        ("missing field", r#"{"type":"mute","mid":"0"}"#),
        ("unknown field", r#"{"type":"chat","text":"hi","from":1}"#),
        (
            "bad source",
            r#"{"type":"offer","sdp":"v=0","tracks":[{"mid":"0","source":"nuclear"}]}"#,
        ),
        ("no type", r#"{"text":"hi"}"#),
    ] {
        ws.text(text).await.expect("send");
        expect_code(&mut ws, what, &[ErrorCode::BadMessage]).await;
    }
    let big = format!(r#"{{"type":"chat","text":"{}"}}"#, "a".repeat(70 * 1024));
    ws.text(big).await.expect("send");
    expect_code(&mut ws, "70 KiB message", &[ErrorCode::TooLarge]).await;
    ws.expect_alive("after the oversized message").await;

    // Offers whose SDP lies.
    let genuine = support::sendonly_audio_offer();
    let audio_mid = mid_of(&genuine, "audio").expect("an audio mid");
    let app_mid = mid_of(&genuine, "application").expect("an application mid");
    ws.send(&offer("v=0\r\nthis is not sdp\r\n".into(), &audio_mid))
        .await
        .expect("send");
    expect_code(&mut ws, "offer of non-SDP", &[ErrorCode::BadSdp]).await;
    ws.send(&offer(
        without_lines(&genuine, &["a=fingerprint"]),
        &audio_mid,
    ))
    .await
    .expect("send");
    expect_code(&mut ws, "offer without fingerprint", &[ErrorCode::BadSdp]).await;
    ws.send(&offer(
        without_lines(&genuine, &["a=ice-ufrag", "a=ice-pwd"]),
        &audio_mid,
    ))
    .await
    .expect("send");
    expect_code(
        &mut ws,
        "offer without ICE credentials",
        &[ErrorCode::BadSdp],
    )
    .await;
    ws.send(&offer(without_lines(&genuine, &["m="]), &audio_mid))
        .await
        .expect("send");
    expect_code(&mut ws, "offer without m-lines", &[ErrorCode::BadSdp]).await;
    // Offers that are valid SDP but lie about the tracks. The SFU answers such an offer (and then
    // offers the room's tracks, ignoring further client offers until answered: it is the impolite
    // side), so each goes on a connection of its own.
    for (what, mid) in [
        ("offer publishing an absent mid", "zz-not-there".to_string()),
        (
            "offer publishing the data channel as a microphone",
            app_mid.clone(),
        ),
    ] {
        let mut liar = RawWs::connect(server).await;
        liar.join(room, "liar").await;
        liar.send(&offer(genuine.clone(), &mid))
            .await
            .expect("send");
        expect_code(
            &mut liar,
            what,
            &[ErrorCode::UnknownTrack, ErrorCode::BadSdp],
        )
        .await;
        liar.expect_alive(what).await;
        liar.close().await;
    }
    ws.send(&ClientMessage::Mute {
        mid: "zz-not-there".into(),
        muted: true,
    })
    .await
    .expect("send");
    expect_code(
        &mut ws,
        "mute of an absent track",
        &[ErrorCode::UnknownTrack],
    )
    .await;
    ws.expect_alive("after the lies").await;

    // A binary frame: the protocol only has text frames; an error or a close are both fine,
    // silence is not.
    let mut bin = RawWs::connect(server).await;
    bin.join(room, "binary").await;
    bin.binary(vec![0x00, 0xff, 0x7b, 0x7d])
        .await
        .expect("send");
    loop {
        match bin.next(Duration::from_secs(10)).await {
            Next::Msg(ServerMessage::Error { code, .. }) => {
                assert_eq!(code, ErrorCode::BadMessage, "binary frame");
                println!("binary frame: {code:?}");
                bin.expect_alive("after the binary frame").await;
                break;
            }
            Next::Closed(why) => {
                println!("binary frame: connection closed ({why})");
                break;
            }
            Next::Timeout => panic!("binary frame: no reaction within 10 s"),
            _ => {}
        }
    }

    // A 2 MiB frame, past what the WebSocket layer reads at all: refused or the connection closed,
    // either way the server stays up (checked at the end).
    let mut huge = RawWs::connect(server).await;
    huge.join(room, "huge").await;
    match huge.text("x".repeat(2 * 1024 * 1024)).await {
        Err(e) => println!("2 MiB frame: send failed ({e})"),
        Ok(()) => loop {
            match huge.next(Duration::from_secs(10)).await {
                Next::Msg(ServerMessage::Error { code, .. }) => {
                    assert_eq!(code, ErrorCode::TooLarge, "2 MiB frame");
                    println!("2 MiB frame: {code:?}");
                    break;
                }
                Next::Closed(why) => {
                    println!("2 MiB frame: connection closed ({why})");
                    break;
                }
                Next::Timeout => panic!("2 MiB frame: no reaction within 10 s"),
                _ => {}
            }
        },
    }

    // A flood under the closing threshold: some messages are dropped with rate_limited, the
    // connection survives.
    let mut flood = RawWs::connect(server).await;
    flood.join(room, "flooder").await;
    flood.burst(r#"{"type":"ping"}"#, 150).await.expect("flood");
    let (mut pongs, mut limited) = (0, 0);
    loop {
        match flood.next(Duration::from_millis(1500)).await {
            Next::Msg(ServerMessage::Pong) => pongs += 1,
            Next::Msg(ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            }) => limited += 1,
            Next::Msg(_) | Next::Other(_) => {}
            Next::Timeout => break,
            other => panic!("flood of 150: {other:?}"),
        }
    }
    println!("flood of 150 pings: {pongs} pongs, {limited} rate_limited errors");
    assert!(limited >= 1, "no rate_limited error for 150 pings at once");
    assert!(pongs >= 50, "only {pongs} pongs for 150 pings at once");
    // The bucket refills: after a pause the connection works again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    flood.expect_alive("the flooder after a pause").await;

    // A flood past the closing threshold (200 dropped messages): the connection is closed.
    let mut flood = RawWs::connect(server).await;
    flood.join(room, "big flooder").await;
    if let Err(e) = flood.burst(r#"{"type":"ping"}"#, 450).await {
        println!("flood of 450 cut short: {e}");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut pongs, mut limited) = (0, 0);
    let closed = loop {
        match flood
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            Next::Msg(ServerMessage::Pong) => pongs += 1,
            Next::Msg(ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            }) => limited += 1,
            Next::Closed(why) => break Some(why),
            Next::Timeout => break None,
            _ => {}
        }
    };
    println!(
        "flood of 450 pings: {pongs} pongs, {limited} rate_limited errors, closed: {closed:?}"
    );
    assert!(
        closed.is_some(),
        "450 pings at once did not get the connection closed"
    );

    ws.close().await;
    bin.close().await;
}

/// A client whose join was refused (a typo in the name) tries again on the same connection right
/// after the error: the new join must be judged on its own, not refused with `already_joined`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_join_can_be_retried_at_once() {
    // 40 joins from one address in a row: no join limit here (tests/tokens.rs tests it).
    let server = Server::start_with(&["--join-burst", "0"]);
    let mut outcomes = Vec::new();
    for i in 0..20 {
        let mut ws = RawWs::connect(&server).await;
        ws.send(&ClientMessage::Join {
            version: 1,
            room: "retry".into(),
            name: "n".repeat(65),
            capacity: None,
            token: None,
        })
        .await
        .expect("send");
        expect_code(&mut ws, "65-character name", &[ErrorCode::InvalidJoin]).await;
        ws.send(&ClientMessage::Join {
            version: 1,
            room: "retry".into(),
            name: format!("retry-{i}"),
            capacity: None,
            token: None,
        })
        .await
        .expect("send");
        let outcome = loop {
            match ws.next(Duration::from_secs(10)).await {
                Next::Msg(ServerMessage::Joined { .. }) => break "joined".to_string(),
                Next::Msg(ServerMessage::Error { code, .. }) => break format!("{code:?}"),
                Next::Msg(_) => {}
                other => break format!("{other:?}"),
            }
        };
        outcomes.push(outcome);
        ws.close().await;
    }
    let refused = outcomes.iter().filter(|o| *o != "joined").count();
    assert_eq!(
        refused, 0,
        "{refused} of 20 retried joins were refused: {outcomes:?}"
    );
}
