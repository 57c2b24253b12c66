//! WHIP (RFC 9725) and WHEP against the real server, with str0m peers as the publisher and the
//! viewer: the HTTP contract (status codes, `Location`, `ETag`, CORS, refusals), room tokens, a
//! WHIP publisher's media reaching a WebSocket member byte-identical while the member sees it
//! join, publish and leave, and a WHEP viewer receiving the active speaker's media (following a
//! switch on one continuous stream per m-line) or one named member's.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sfu_client::{
    Client, ClientConfig, ClientEvent, ClientMessage, PeerId, TrackKind, TrackSource,
};
use sfu_core::Permissions;
use signaling::auth::{mint_hs256, Claims, Secret};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use support::tokens::{revoke, secret_file, SECRET};
use support::{join_with, vp8_keyframe_payload, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(20);

/// One HTTP answer: status, headers (names lowercased), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 request with these headers and body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.expect("connecting");
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tcp.write_all(req.as_bytes()).await.expect("writing");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .expect("reading");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header end");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// POSTs `offer` as `application/sdp` to `path`, with `token` as a Bearer token.
async fn post_offer(addr: SocketAddr, path: &str, offer: &str, token: Option<&str>) -> Answer {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/sdp")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b));
    }
    request(addr, "POST", path, &headers, offer).await
}

/// One RTP packet a WHEP viewer received.
#[derive(Debug, Clone)]
struct Got {
    mid: Option<Mid>,
    ssrc: u32,
    seq: u64,
    payload: Vec<u8>,
}

/// A WHIP publisher or WHEP viewer: a full-ICE str0m peer with one audio and one video m-line,
/// sending (WHIP) or receiving (WHEP).
struct WhipPeer {
    rtc: Rtc,
    udp: UdpSocket,
    local: SocketAddr,
    audio: Mid,
    video: Mid,
    pending: Option<SdpPendingOffer>,
    connected: bool,
    keyframe_requests: usize,
    /// The last sequence number sent per stream (m-line and simulcast layer).
    seqs: HashMap<(Mid, Option<Rid>), u64>,
    received: Vec<Got>,
    buf: Vec<u8>,
}

impl WhipPeer {
    /// A WHIP peer and its offer.
    async fn new() -> (WhipPeer, String) {
        WhipPeer::with(Direction::SendOnly, &[]).await
    }

    /// A WHEP peer and its offer.
    async fn viewer() -> (WhipPeer, String) {
        WhipPeer::with(Direction::RecvOnly, &[]).await
    }

    /// A peer whose m-lines go in `direction`, its video in simulcast `layers` (RIDs, lowest
    /// first) if any, and its offer.
    async fn with(direction: Direction, layers: &[&str]) -> (WhipPeer, String) {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("a UDP socket");
        let local = udp.local_addr().expect("its address");
        let mut rtc = sfu_client::participant_rtc();
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("a host candidate"));
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, direction, None, None, None);
        let simulcast = (!layers.is_empty()).then(|| {
            let mut simulcast = Simulcast::new();
            for rid in layers {
                simulcast.add_send_layer(SimulcastLayer::new(rid));
            }
            simulcast
        });
        let video = api.add_media(MediaKind::Video, direction, None, None, simulcast);
        let (offer, pending) = api.apply().expect("an offer");
        let peer = WhipPeer {
            rtc,
            udp,
            local,
            audio,
            video,
            pending: Some(pending),
            connected: false,
            keyframe_requests: 0,
            seqs: HashMap::new(),
            received: Vec::new(),
            buf: vec![0; 2048],
        };
        (peer, offer.to_sdp_string())
    }

    fn accept(&mut self, answer: &str) {
        let answer = SdpAnswer::from_sdp_string(answer).expect("a parsable answer");
        let pending = self.pending.take().expect("an outstanding offer");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("an applicable answer");
    }

    /// Runs the session for `time`: sends what it has, reads what comes.
    async fn run(&mut self, time: Duration) {
        let end = Instant::now() + time;
        loop {
            let timeout = loop {
                match self.rtc.poll_output().expect("the session runs") {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let _ = self.udp.send_to(&t.contents, t.destination).await;
                    }
                    Output::Event(Event::Connected) => self.connected = true,
                    Output::Event(Event::KeyframeRequest(_)) => self.keyframe_requests += 1,
                    Output::Event(Event::RtpPacket(p)) => {
                        let ssrc = p.header.ssrc;
                        let mid = p.header.ext_vals.mid.or_else(|| {
                            let mut api = self.rtc.direct_api();
                            api.stream_rx(&ssrc).map(|s| s.mid())
                        });
                        self.received.push(Got {
                            mid,
                            ssrc: *ssrc,
                            seq: *p.seq_no,
                            payload: p.payload.to_vec(),
                        });
                    }
                    Output::Event(_) => {}
                }
            };
            let now = Instant::now();
            if now >= end {
                return;
            }
            let wake = timeout.clamp(now, end);
            let read = tokio::time::timeout_at(wake.into(), self.udp.recv_from(&mut self.buf));
            let input = match read.await {
                Ok(Ok((n, source))) => {
                    match Receive::new(Protocol::Udp, source, self.local, &self.buf[..n]) {
                        Ok(r) => Input::Receive(Instant::now(), r),
                        Err(_) => continue,
                    }
                }
                _ => Input::Timeout(Instant::now()),
            };
            let _ = self.rtc.handle_input(input);
        }
    }

    async fn connect(&mut self) {
        let deadline = Instant::now() + WAIT;
        while !self.connected {
            assert!(Instant::now() < deadline, "the WHIP peer did not connect");
            self.run(Duration::from_millis(20)).await;
        }
    }

    /// The negotiated payload type of `codec` on `mid`.
    fn pt(&self, mid: Mid, codec: Codec) -> Pt {
        let params = self.rtc.codec_config().params();
        let media = self.rtc.media(mid).expect("the m-line");
        media
            .remote_pts()
            .iter()
            .copied()
            .find(|pt| {
                params
                    .iter()
                    .any(|p| p.pt() == *pt && p.spec().codec == codec)
            })
            .expect("a negotiated payload type")
    }

    /// Sends `payload` as one packet (a whole frame) on the audio or video m-line.
    fn send(&mut self, video: bool, payload: Vec<u8>) {
        self.send_layer(video, None, payload);
    }

    /// Sends `payload` as one packet on the audio or video m-line, on simulcast layer `rid`.
    fn send_layer(&mut self, video: bool, rid: Option<&str>, payload: Vec<u8>) {
        let (mid, codec, rate) = if video {
            (self.video, Codec::Vp8, 3000)
        } else {
            (self.audio, Codec::Opus, 960)
        };
        let pt = self.pt(mid, codec);
        let rid = rid.map(Rid::from);
        let seq = self.seqs.entry((mid, rid)).or_insert(0);
        *seq += 1;
        let seq = *seq;
        let ts = (seq as u32).wrapping_mul(rate);
        let mut api = self.rtc.direct_api();
        let stream = api.stream_tx_by_mid(mid, rid).expect("a send stream");
        let write = RtpWrite::new(pt, seq.into(), ts, Instant::now(), payload)
            .marker(true)
            .nackable(video);
        stream.write_rtp(write);
    }
}

/// The session path of a 201's `Location`.
fn location(answer: &Answer) -> String {
    answer
        .header("location")
        .unwrap_or_else(|| panic!("no Location in {answer:?}"))
        .to_owned()
}

/// A VP8 inter frame (P=1 in the frame tag) carrying `tag`: no SFU starts a leg on it.
fn vp8_inter_payload(tag: &str) -> Vec<u8> {
    let mut p = vec![0x10, 0x01, 0x02, 0x00];
    p.extend_from_slice(tag.as_bytes());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whip_endpoint_speaks_rfc_9725() {
    let server = Server::start();
    let addr = server.addr;

    let options = request(addr, "OPTIONS", "/whip/contract", &[], "").await;
    assert_eq!(options.status, 204, "{options:?}");
    assert!(options.header("allow").is_some_and(|a| a.contains("POST")));
    assert_eq!(options.header("accept-post"), Some("application/sdp"));
    assert_eq!(options.header("access-control-allow-origin"), Some("*"));

    let (_, offer) = WhipPeer::new().await;
    let wrong_type = request(
        addr,
        "POST",
        "/whip/contract",
        &[("Content-Type", "application/json")],
        &offer,
    )
    .await;
    assert_eq!(wrong_type.status, 415, "{wrong_type:?}");
    assert!(wrong_type.body.contains("application/sdp"));

    let garbage = post_offer(addr, "/whip/contract", "this is no SDP", None).await;
    assert_eq!(garbage.status, 400, "{garbage:?}");
    assert!(garbage.body.contains("error"));

    let created = post_offer(addr, "/whip/contract", &offer, None).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.header("content-type"), Some("application/sdp"));
    assert!(created.body.starts_with("v=0"), "{created:?}");
    let session = location(&created);
    assert!(session.starts_with("/whip/contract/"), "{session}");
    let etag = created.header("etag").expect("an ETag");
    assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
    assert_eq!(created.header("access-control-allow-origin"), Some("*"));
    let exposed = created
        .header("access-control-expose-headers")
        .expect("exposed headers");
    assert!(exposed.contains("Location") && exposed.contains("ETag"));
    until_rooms(&server, 1).await;

    let patch = request(addr, "PATCH", &session, &[], "").await;
    assert_eq!(patch.status, 405, "{patch:?}");
    assert!(patch.header("allow").is_some_and(|a| a.contains("DELETE")));

    let ended = request(addr, "DELETE", &session, &[], "").await;
    assert_eq!(ended.status, 200, "{ended:?}");
    until_rooms(&server, 0).await;
    let again = request(addr, "DELETE", &session, &[], "").await;
    assert_eq!(again.status, 404, "{again:?}");
    let unknown = request(addr, "DELETE", "/whip/contract/nope", &[], "").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");

    // A room name that is not a plain path segment comes back encoded, and the session works.
    let spaced = post_offer(addr, "/whip/two%20words", &offer, None).await;
    assert_eq!(spaced.status, 201, "{spaced:?}");
    let session = location(&spaced);
    assert!(session.starts_with("/whip/two%20words/"), "{session}");
    let ended = request(addr, "DELETE", &session, &[], "").await;
    assert_eq!(ended.status, 200, "{ended:?}");
}

/// Waits until the server has `n` rooms.
async fn until_rooms(server: &Server, n: u64) {
    server
        .stats_until(WAIT, &format!("{n} rooms"), |s| s.rooms == n)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_publishers_media_reaches_a_member_intact() {
    let server = Server::start();
    let room = "whip-media";
    let mut member = join_with(ClientConfig::new(server.ws_url(), room, "viewer")).await;

    let (mut whip, offer) = WhipPeer::new().await;
    let created = post_offer(server.addr, &format!("/whip/{room}?name=obs"), &offer, None).await;
    assert_eq!(created.status, 201, "{created:?}");
    whip.accept(&created.body);

    // The member sees a peer named as asked, publishing a microphone and a camera.
    let mut publisher: Option<PeerId> = None;
    let mut published = Vec::new();
    let deadline = Instant::now() + WAIT;
    while published.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "saw {publisher:?}, {published:?}"
        );
        whip.run(Duration::from_millis(10)).await;
        while let Some(event) = member.try_next_event() {
            match event {
                ClientEvent::PeerJoined(p) => {
                    assert_eq!(p.name, "obs");
                    publisher = Some(p.id);
                }
                ClientEvent::TrackPublished { peer_id, track } => {
                    assert_eq!(Some(peer_id), publisher);
                    published.push((track.kind, track.source));
                }
                _ => {}
            }
        }
    }
    published.sort_by_key(|(kind, _)| *kind == TrackKind::Video);
    assert_eq!(
        published,
        [
            (TrackKind::Audio, TrackSource::Mic),
            (TrackKind::Video, TrackSource::Camera)
        ]
    );
    let publisher = publisher.expect("a peerJoined");
    whip.connect().await;
    let tracks = support::wait_tracks_of(&member, publisher, 2).await;
    assert_eq!(tracks.len(), 2);

    // Every packet reaches the member with its payload unchanged.
    let mut sent = Vec::new();
    let mut received: Vec<(bool, Vec<u8>)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut i = 0;
    // Until every packet arrived and the SFU asked for a keyframe for the member's new leg.
    while !sent.iter().all(|p| received.contains(p))
        || sent.len() < 40
        || whip.keyframe_requests == 0
    {
        assert!(
            Instant::now() < deadline,
            "received {} of {} packets, {} keyframe requests",
            received.len(),
            sent.len(),
            whip.keyframe_requests
        );
        if sent.len() < 40 {
            let audio = (false, format!("whip audio {i}").into_bytes());
            // Inter frames until the SFU asks for a keyframe: the member's new leg starts at once
            // (no simulcast to switch between) and asks for one, which must reach the publisher
            // even when the leg was set up while the publisher was still connecting.
            let tag = format!("whip video {i}");
            let frame = if whip.keyframe_requests == 0 {
                vp8_inter_payload(&tag)
            } else {
                vp8_keyframe_payload(&tag, 300 + i)
            };
            let video = (true, frame);
            for (is_video, payload) in [audio, video] {
                whip.send(is_video, payload.clone());
                sent.push((is_video, payload));
            }
            i += 1;
        }
        whip.run(Duration::from_millis(20)).await;
        while let Some(event) = member.try_next_event() {
            if let ClientEvent::Rtp(rtp) = event {
                assert_eq!(rtp.peer_id, Some(publisher));
                let video = rtp.kind == Some(TrackKind::Video);
                received.push((video, rtp.payload.to_vec()));
            }
        }
        // Warm-up: each leg starts once it is set up (video at a keyframe); what was sent before
        // both carried a packet does not count.
        if !(received.iter().any(|r| r.0) && received.iter().any(|r| !r.0)) {
            sent.clear();
        }
    }

    // DELETE ends the session: the member sees the publisher leave.
    let ended = request(server.addr, "DELETE", &location(&created), &[], "").await;
    assert_eq!(ended.status, 200);
    wait_left(&mut member, publisher).await;
    member.leave().await;
    until_rooms(&server, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_publishers_simulcast_layers_are_chosen_per_member() {
    let server = Server::start();
    let room = "whip-simulcast";
    let mut member = join_with(ClientConfig::new(server.ws_url(), room, "viewer")).await;
    let (mut whip, offer) = WhipPeer::with(Direction::SendOnly, &["q", "h", "f"]).await;
    assert!(offer.contains("a=simulcast:send q;h;f"), "{offer}");
    let created = post_offer(server.addr, &format!("/whip/{room}"), &offer, None).await;
    assert_eq!(created.status, 201, "{created:?}");
    whip.accept(&created.body);
    whip.connect().await;
    let publisher = member.initial_peers().first().map(|p| p.id);
    let publisher = match publisher {
        Some(id) => id,
        None => loop {
            whip.run(Duration::from_millis(10)).await;
            if let Some(ClientEvent::PeerJoined(p)) = member.try_next_event() {
                break p.id;
            }
        },
    };
    let tracks = support::wait_tracks_of(&member, publisher, 2).await;
    let video = tracks
        .iter()
        .find(|t| t.kind == Some(TrackKind::Video))
        .expect("the video track")
        .track_id
        .clone();

    // A small tile takes the lowest layer: only "q" frames arrive once it switched.
    let tile = ClientMessage::TileSize {
        track_id: video,
        width: 80,
        height: 60,
    };
    member
        .send_signal(tile)
        .await
        .expect("sending the tile size");
    let mut layers_seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut i = 0;
    while layers_seen.len() < 20
        || layers_seen[layers_seen.len() - 20..]
            .iter()
            .any(|l| l != "q")
    {
        assert!(
            Instant::now() < deadline,
            "layers received: {layers_seen:?}"
        );
        for rid in ["q", "h", "f"] {
            let frame = vp8_keyframe_payload(&format!("layer {rid} {i}|"), 100);
            whip.send_layer(true, Some(rid), frame);
        }
        i += 1;
        whip.run(Duration::from_millis(20)).await;
        while let Some(event) = member.try_next_event() {
            if let ClientEvent::Rtp(rtp) = event {
                let text = String::from_utf8_lossy(&rtp.payload).into_owned();
                if let Some(rest) = text.split("layer ").nth(1) {
                    layers_seen.push(rest[..1].to_owned());
                }
            }
        }
    }
    member.leave().await;
}

async fn wait_left(member: &mut Client, publisher: PeerId) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match member.next_event_timeout(left).await {
            Some(ClientEvent::PeerLeft(id)) if id == publisher => return,
            Some(_) => {}
            None => panic!("no peerLeft for the WHIP publisher"),
        }
    }
}

fn token(room: &str, name: &str, permissions: Permissions) -> String {
    token_with_id(room, name, permissions, None)
}

/// [`token`] with the id `jti` (by which it can be revoked).
fn token_with_id(room: &str, name: &str, permissions: Permissions, jti: Option<&str>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    let claims = Claims {
        publish: Some(permissions.publish),
        subscribe: Some(permissions.subscribe),
        chat: Some(permissions.chat),
        jti: jti.map(str::to_owned),
        ..Claims::for_member(room, name, Some(name), permissions, false, now, 3600)
            .expect("a lifetime that fits")
    };
    mint_hs256(&Secret::new(SECRET).expect("a secret"), &claims).expect("minting")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_room_tokens_whip_needs_publish_and_whep_subscribe() {
    let secret = secret_file("whip");
    let server = Server::start_with(&["--auth-secret-file", secret.to_str().expect("UTF-8")]);
    let room = "whip-tokens";
    let path = format!("/whip/{room}?name=impostor");
    let (_, offer) = WhipPeer::new().await;

    let none = post_offer(server.addr, &path, &offer, None).await;
    assert_eq!(none.status, 401, "{none:?}");
    assert!(none.header("www-authenticate").is_some());
    let bad = post_offer(server.addr, &path, &offer, Some("not.a.token")).await;
    assert_eq!(bad.status, 401, "{bad:?}");
    let elsewhere = token("another-room", "enc", Permissions::ALL);
    let wrong_room = post_offer(server.addr, &path, &offer, Some(&elsewhere)).await;
    assert_eq!(wrong_room.status, 403, "{wrong_room:?}");
    let watcher = Permissions {
        publish: false,
        ..Permissions::ALL
    };
    let no_publish = post_offer(server.addr, &path, &offer, Some(&token(room, "w", watcher))).await;
    assert_eq!(no_publish.status, 403, "{no_publish:?}");
    assert!(no_publish.body.contains("publish"), "{no_publish:?}");

    // A member is there to see who arrives: the token's name, not `?name=`.
    let member_token = token(room, "viewer", Permissions::ALL);
    let config = ClientConfig::new(server.ws_url(), room, "viewer").token(member_token);
    let mut member = join_with(config).await;
    let encoder = token_with_id(room, "encoder", Permissions::ALL, Some("encoder-token"));
    let created = post_offer(server.addr, &path, &offer, Some(&encoder)).await;
    assert_eq!(created.status, 201, "{created:?}");
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match member.next_event_timeout(left).await {
            Some(ClientEvent::PeerJoined(p)) => {
                assert_eq!(p.name, "encoder");
                break;
            }
            Some(_) => {}
            None => panic!("the WHIP publisher did not join"),
        }
    }

    // WHEP: the token must allow watching.
    let (_, watching) = WhipPeer::viewer().await;
    let whep = format!("/whep/{room}");
    let camera = Permissions {
        subscribe: false,
        ..Permissions::ALL
    };
    let blind = post_offer(
        server.addr,
        &whep,
        &watching,
        Some(&token(room, "c", camera)),
    )
    .await;
    assert_eq!(blind.status, 403, "{blind:?}");
    let none = post_offer(server.addr, &whep, &watching, None).await;
    assert_eq!(none.status, 401, "{none:?}");
    let screen = token(room, "screen", Permissions::ALL);
    let watched = post_offer(server.addr, &whep, &watching, Some(&screen)).await;
    assert_eq!(watched.status, 201, "{watched:?}");

    // Revoking the encoder's token ends its session: the member sees it leave, and the session's
    // `DELETE` finds nothing.
    revoke(&server, "encoder-token").await;
    // Well within the 30 s an unconnected session is given, so only the revocation removes it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match member.next_event_timeout(left).await {
            Some(ClientEvent::PeerLeft(_)) => break,
            Some(_) => {}
            None => panic!("the revoked WHIP publisher did not leave"),
        }
    }
    let ended = request(server.addr, "DELETE", &location(&created), &[], "").await;
    assert_eq!(ended.status, 404, "{ended:?}");
    let again = post_offer(server.addr, &path, &offer, Some(&encoder)).await;
    assert_eq!(
        again.status, 401,
        "a revoked token joins no more: {again:?}"
    );
    let _ = std::fs::remove_dir_all(secret.parent().expect("the secret's folder"));
}

/// Sends one audio packet (at `level` dBov) and one video frame tagged `name` from each of
/// `publishers`, `rounds` times, 20 ms apart, while `viewer` runs. Every tenth frame, the first
/// included, is a keyframe; the others are delta frames.
async fn talk(viewer: &mut WhipPeer, publishers: &[(&Client, &str, u8)], rounds: usize) {
    for i in 0..rounds {
        for (client, name, level) in publishers {
            let audio = client.audio_track().expect("an audio track");
            let video = client.video_track().expect("a video track");
            let tag = format!("{name} audio {i}").into_bytes();
            client
                .send_rtp_with_level(audio, tag, true, *level)
                .await
                .expect("sending audio");
            let mut frame = vp8_keyframe_payload(&format!("{name} video {i}|"), 200);
            if i % 10 != 0 {
                // The VP8 frame tag's P bit: an interframe.
                frame[1] |= 0x01;
            }
            client
                .send_rtp(video, frame, true)
                .await
                .expect("sending video");
        }
        viewer.run(Duration::from_millis(20)).await;
    }
}

/// Whose packets (by the name in their payload) `viewer` received on its `video` or audio
/// m-line, from `from` on.
fn senders(viewer: &WhipPeer, from: usize, video: bool) -> Vec<String> {
    let mid = if video { viewer.video } else { viewer.audio };
    viewer.received[from..]
        .iter()
        .filter(|g| g.mid == Some(mid))
        .filter_map(|g| {
            let text = String::from_utf8_lossy(&g.payload);
            ["ana", "bob"]
                .into_iter()
                .find(|n| text.contains(&format!("{n} ")))
                .map(str::to_owned)
        })
        .collect()
}

/// Joins a publisher with audio and video.
async fn publisher(server: &Server, room: &str, name: &str) -> Client {
    join_with(
        ClientConfig::new(server.ws_url(), room, name)
            .audio(true)
            .video(true),
    )
    .await
}

/// Sends until `viewer` got media of `name` on both m-lines since packet `from`.
async fn until_viewing(
    viewer: &mut WhipPeer,
    publishers: &[(&Client, &str, u8)],
    name: &str,
    from: usize,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        talk(viewer, publishers, 5).await;
        let video = senders(viewer, from, true);
        let audio = senders(viewer, from, false);
        if video.last().map(String::as_str) == Some(name)
            && audio.last().map(String::as_str) == Some(name)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the viewer did not get to {name}: video from {video:?}, audio from {audio:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_viewer_follows_the_active_speaker_on_one_stream_per_m_line() {
    let server = Server::start();
    let room = "whep-speaker";
    let ana = publisher(&server, room, "ana").await;
    let bob = publisher(&server, room, "bob").await;

    let (mut viewer, offer) = WhipPeer::viewer().await;
    let created = post_offer(server.addr, &format!("/whep/{room}"), &offer, None).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert!(location(&created).starts_with(&format!("/whep/{room}/")));
    viewer.accept(&created.body);
    viewer.connect().await;

    // Ana speaks: the viewer gets her audio and video.
    let (loud, silent) = (10, 127);
    until_viewing(
        &mut viewer,
        &[(&ana, "ana", loud), (&bob, "bob", silent)],
        "ana",
        0,
    )
    .await;
    // Bob takes over: the viewer's legs move to him.
    let switch = viewer.received.len();
    until_viewing(
        &mut viewer,
        &[(&ana, "ana", silent), (&bob, "bob", loud)],
        "bob",
        switch,
    )
    .await;

    // Video started at a keyframe of each source: the viewer's decoder never got a delta frame
    // of a picture it did not have.
    for name in ["ana", "bob"] {
        let first = viewer
            .received
            .iter()
            .filter(|g| g.mid == Some(viewer.video))
            .find(|g| String::from_utf8_lossy(&g.payload).contains(&format!("{name} video")))
            .expect("video of each");
        assert_eq!(
            first.payload[1] & 0x01,
            0,
            "{name}'s first frame is a delta"
        );
    }
    // Each m-line stayed one stream, numbered on without a gap across the switch.
    for mid in [viewer.audio, viewer.video] {
        let packets: Vec<&Got> = viewer
            .received
            .iter()
            .filter(|g| g.mid == Some(mid))
            .collect();
        let ssrcs: std::collections::HashSet<u32> = packets.iter().map(|g| g.ssrc).collect();
        assert_eq!(ssrcs.len(), 1, "m-line {mid}: SSRCs {ssrcs:?}");
        let mut seqs: Vec<u64> = packets.iter().map(|g| g.seq).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let span = seqs.last().expect("packets") - seqs[0] + 1;
        assert_eq!(span, seqs.len() as u64, "m-line {mid}: a gap in {seqs:?}");
    }

    let ended = request(server.addr, "DELETE", &location(&created), &[], "").await;
    assert_eq!(ended.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_viewer_with_peer_watches_that_member() {
    let server = Server::start();
    let room = "whep-peer";
    let ana = publisher(&server, room, "ana").await;
    let bob = publisher(&server, room, "bob").await;

    let (mut viewer, offer) = WhipPeer::viewer().await;
    let path = format!("/whep/{room}?peer=bob&name=monitor");
    let created = post_offer(server.addr, &path, &offer, None).await;
    assert_eq!(created.status, 201, "{created:?}");
    viewer.accept(&created.body);
    viewer.connect().await;

    // Ana is the one speaking, yet the viewer stays with bob.
    let talking = [(&ana, "ana", 10), (&bob, "bob", 127)];
    until_viewing(&mut viewer, &talking, "bob", 0).await;
    talk(&mut viewer, &talking, 50).await;
    let video = senders(&viewer, 0, true);
    let audio = senders(&viewer, 0, false);
    assert!(
        video.iter().chain(&audio).all(|n| n == "bob"),
        "video from {video:?}, audio from {audio:?}"
    );

    // A WHEP offer that sends is refused.
    let (_, sending) = WhipPeer::new().await;
    let refused = post_offer(server.addr, &format!("/whep/{room}"), &sending, None).await;
    assert_eq!(refused.status, 400, "{refused:?}");
}
