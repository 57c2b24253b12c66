//! Self-check of sfu-client without edge-sfu: a minimal in-process stand-in SFU (one str0m ICE-lite
//! `Rtc`, one WebSocket) that speaks protocol v1 to a single client, answers its offers, offers
//! back one sendonly m-line per published track, forwards the client's RTP back to it on those
//! m-lines (with its own SSRC and sequence numbers), echoes chat lines, and provokes glare once.
//!
//! It checks the client's side of ICE, DTLS, SCTP, both offer directions, polite glare handling,
//! RTP writing and receiving, and chat; it says nothing about edge-sfu itself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sfu_client::{ChatVia, Client, ClientConfig, ClientEvent, TrackKind, TrackSource};
use sfu_core::protocol::{
    ChatIn, ChatOut, ClientMessage, PeerInfo, ServerMessage, TrackMapping, PROTOCOL_VERSION,
};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::{TcpListener, UdpSocket};
use tokio_tungstenite::tungstenite::Message;

const FAKE_PEER: u64 = 42;
const CLIENT_PEER: u64 = 7;
/// Most media packets the fake holds while a leg back is being negotiated.
const MAX_HELD: usize = 256;

/// One forwarding leg in the fake: client's sending mid → the fake's sending mid back to it.
struct Leg {
    out_mid: Mid,
    kind: MediaKind,
    seq: u64,
}

async fn fake_sfu(listener: TcpListener) {
    let Ok((tcp, _)) = listener.accept().await else {
        return;
    };
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let Ok(udp) = UdpSocket::bind("127.0.0.1:0").await else {
        return;
    };
    let Ok(udp_addr) = udp.local_addr() else {
        return;
    };
    let mut rtc = Rtc::builder()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(udp_addr, "udp").unwrap());

    let mut name = String::new();
    let mut pending: Option<SdpPendingOffer> = None;
    let mut legs: HashMap<Mid, Leg> = HashMap::new();
    // Client mids that need an outgoing leg, waiting for the next fake offer.
    let mut wanted: Vec<(Mid, MediaKind)> = Vec::new();
    let mut offers_from_client = 0;
    let mut chat_id = None;
    let mut buf = vec![0u8; 2048];
    let mut held: Vec<RtpPacket> = Vec::new();

    loop {
        // Drain.
        let deadline = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = udp.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => match e {
                    Event::ChannelOpen(id, _) => chat_id = Some(id),
                    Event::ChannelData(d) => {
                        if let Ok(ChatIn { text }) = serde_json::from_slice::<ChatIn>(&d.data) {
                            let out = ChatOut {
                                from: CLIENT_PEER,
                                name: name.clone(),
                                text,
                            };
                            if let Some(mut ch) = chat_id.and_then(|id| rtc.channel(id)) {
                                let _ = ch.write(false, &serde_json::to_vec(&out).unwrap());
                            }
                        }
                    }
                    Event::RtpPacket(p) => {
                        // Media can arrive before the client's answer to the fake's offer (UDP
                        // overtakes the WebSocket): held until the leg back is negotiated.
                        let echoed = echo(&mut rtc, &mut legs, &p);
                        if !echoed && held.len() < MAX_HELD {
                            held.push(p);
                        }
                    }
                    _ => {}
                },
                Err(_) => return,
            }
        };
        let deadline = deadline.min(Instant::now() + Duration::from_millis(200));

        tokio::select! {
            m = ws.next() => {
                let Some(Ok(Message::Text(text))) = m else { return };
                let Ok(msg) = serde_json::from_str::<ClientMessage>(text.as_str()) else { return };
                match msg {
                    ClientMessage::Join { name: n, room, version, .. } => {
                        assert_eq!(version, PROTOCOL_VERSION);
                        name = n;
                        let joined = ServerMessage::Joined {
                            version: PROTOCOL_VERSION,
                            peer_id: CLIENT_PEER,
                            room,
                            peers: vec![PeerInfo { id: FAKE_PEER, name: "fake".into(), tracks: vec![] }],
                            ice_servers: vec![],
                            recording: None,
                            may_record: false,
                        };
                        let _ = ws.send(Message::text(serde_json::to_string(&joined).unwrap())).await;
                    }
                    ClientMessage::Offer { sdp, tracks } => {
                        offers_from_client += 1;
                        if offers_from_client == 2 && pending.is_none() {
                            // Pretend our own offer crossed this one (glare): as the impolite side we
                            // ignore theirs and send ours. Ours adds nothing new, it just re-offers.
                            let mut api = rtc.sdp_api();
                            api.add_media(MediaKind::Audio, Direction::Inactive, None, None, None);
                            if let Some((offer, p)) = api.apply() {
                                pending = Some(p);
                                send_offer(&mut ws, offer, &legs).await;
                            }
                            continue;
                        }
                        let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                        let answer = rtc.sdp_api().accept_offer(offer).unwrap();
                        let _ = ws.send(Message::text(serde_json::to_string(
                            &ServerMessage::Answer { sdp: answer.to_sdp_string() }).unwrap())).await;
                        for t in tracks {
                            let mid = Mid::from(t.mid.as_str());
                            if legs.contains_key(&mid) || wanted.iter().any(|(m, _)| *m == mid) {
                                continue;
                            }
                            let kind = rtc.media(mid).map(|m| m.kind()).unwrap_or(MediaKind::Audio);
                            wanted.push((mid, kind));
                        }
                        // Offer the client its own tracks back.
                        if pending.is_none() && !wanted.is_empty() {
                            let mut api = rtc.sdp_api();
                            for (in_mid, kind) in wanted.drain(..) {
                                let out_mid = api.add_media(kind, Direction::SendOnly, None, None, None);
                                legs.insert(in_mid, Leg { out_mid, kind, seq: 100 });
                            }
                            if let Some((offer, p)) = api.apply() {
                                pending = Some(p);
                                send_offer(&mut ws, offer, &legs).await;
                            }
                        }
                    }
                    ClientMessage::Answer { sdp } => {
                        if let Some(p) = pending.take() {
                            let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
                            rtc.sdp_api().accept_answer(p, answer).unwrap();
                            held.retain(|p| !echo(&mut rtc, &mut legs, p));
                        }
                    }
                    ClientMessage::Chat { text } => {
                        let out = ServerMessage::Chat { from: CLIENT_PEER, name: name.clone(), text };
                        let _ = ws.send(Message::text(serde_json::to_string(&out).unwrap())).await;
                    }
                    ClientMessage::Ping => {
                        let _ = ws.send(Message::text(serde_json::to_string(&ServerMessage::Pong).unwrap())).await;
                    }
                    ClientMessage::Leave => return,
                    _ => {}
                }
            }
            r = udp.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
                if let Ok(contents) = Receive::new(Protocol::Udp, source, udp_addr, &buf[..n]) {
                    let _ = rtc.handle_input(Input::Receive(Instant::now(), contents));
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
}

/// Writes `p` back to the client on the leg for its m-line; false when that leg is not
/// negotiated yet.
fn echo(rtc: &mut Rtc, legs: &mut HashMap<Mid, Leg>, p: &RtpPacket) -> bool {
    let Some(mid) = rtc.direct_api().stream_rx(&p.header.ssrc).map(|s| s.mid()) else {
        return false;
    };
    let Some(leg) = legs.get_mut(&mid) else {
        return false;
    };
    let Some(pt) = out_pt(rtc, leg.out_mid, leg.kind) else {
        return false;
    };
    let mut api = rtc.direct_api();
    let Some(tx) = api.stream_tx_by_mid(leg.out_mid, None) else {
        return false;
    };
    tx.write_rtp(
        RtpWrite::new(
            pt,
            leg.seq.into(),
            p.header.timestamp,
            Instant::now(),
            p.payload.clone(),
        )
        .marker(p.header.marker),
    );
    leg.seq += 1;
    true
}

fn out_pt(rtc: &Rtc, mid: Mid, kind: MediaKind) -> Option<Pt> {
    let media = rtc.media(mid)?;
    let params = rtc.codec_config().params();
    media.remote_pts().iter().copied().find(|pt| {
        params
            .iter()
            .any(|p| p.pt() == *pt && p.spec().codec.kind() == kind)
    })
}

async fn send_offer(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    offer: SdpOffer,
    legs: &HashMap<Mid, Leg>,
) {
    let tracks = legs
        .iter()
        .map(|(in_mid, leg)| TrackMapping {
            mid: leg.out_mid.to_string(),
            peer_id: FAKE_PEER,
            track_id: format!("{FAKE_PEER}:{in_mid}"),
        })
        .collect();
    let msg = ServerMessage::Offer {
        sdp: offer.to_sdp_string(),
        tracks,
    };
    let _ = ws
        .send(Message::text(serde_json::to_string(&msg).unwrap()))
        .await;
}

async fn start_fake() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(fake_sfu(listener));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_negotiates_sends_receives_and_chats_with_a_stand_in_sfu() {
    let addr = start_fake().await;
    let config = ClientConfig::new(format!("ws://{addr}/ws"), "room", "ana")
        .audio(true)
        .video(true);
    let mut client = Client::connect(config).await.unwrap();
    assert_eq!(client.peer_id(), CLIENT_PEER);
    assert_eq!(client.initial_peers().len(), 1);

    let status = client
        .wait_negotiated(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(status.sfu_candidates.iter().all(|a| a.ip().is_loopback()));
    assert_eq!(status.local_tracks.len(), 2);
    let remote = client
        .wait_remote_tracks(FAKE_PEER, 2, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(remote.len(), 2);

    let audio = client.audio_track().unwrap();
    let video = client.video_track().unwrap();
    let mut sent = Vec::new();
    for i in 0..50u32 {
        let payload: Arc<[u8]> = format!("audio-{i}").into_bytes().into();
        sent.push(client.send_rtp(audio, payload, true).await.unwrap());
        let payload: Arc<[u8]> = format!("video-{i}").into_bytes().into();
        sent.push(client.send_rtp(video, payload, true).await.unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Sequence numbers and timestamps advance per track.
    assert_eq!(sent[2].seq, sent[0].seq.wrapping_add(1));
    assert_eq!(sent[2].timestamp, sent[0].timestamp.wrapping_add(960));
    assert_eq!(sent[3].timestamp, sent[1].timestamp.wrapping_add(3000));

    client.send_chat("hello").await.unwrap();
    client.send_chat_ws("over ws").await.unwrap();

    let mut got_audio = Vec::new();
    let mut got_video = Vec::new();
    let mut chats = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (got_audio.len() < 50 || got_video.len() < 50 || chats.len() < 2)
        && Instant::now() < deadline
    {
        match client.next_event_timeout(Duration::from_millis(200)).await {
            Some(ClientEvent::Rtp(rtp)) => {
                assert_eq!(rtp.peer_id, Some(FAKE_PEER));
                match rtp.kind {
                    Some(TrackKind::Audio) => got_audio.push(rtp),
                    Some(TrackKind::Video) => got_video.push(rtp),
                    None => panic!("rtp without a kind"),
                }
            }
            Some(ClientEvent::Chat {
                from,
                name,
                text,
                via,
            }) => chats.push((from, name, text, via)),
            _ => {}
        }
    }
    assert_eq!(got_audio.len(), 50);
    assert_eq!(got_video.len(), 50);
    for (i, p) in got_audio.iter().enumerate() {
        assert_eq!(&*p.payload, format!("audio-{i}").as_bytes());
        assert_eq!(p.seq, 100 + i as u16);
    }
    for (i, p) in got_video.iter().enumerate() {
        assert_eq!(&*p.payload, format!("video-{i}").as_bytes());
    }
    assert!(chats.contains(&(
        CLIENT_PEER,
        "ana".into(),
        "hello".into(),
        ChatVia::DataChannel
    )));
    assert!(chats.contains(&(
        CLIENT_PEER,
        "ana".into(),
        "over ws".into(),
        ChatVia::WebSocket
    )));

    // Publishing a third track: the stand-in provokes glare on this offer; the client rolls back,
    // answers, and offers again.
    let screen = client
        .publish(TrackKind::Video, TrackSource::Screen)
        .await
        .unwrap();
    let status = client
        .wait_for(Duration::from_secs(10), |s| {
            s.local_tracks.iter().all(|t| t.negotiated) && !s.negotiating
        })
        .await
        .unwrap();
    assert_eq!(client.counters().glare, 1);
    assert!(status.remote_offers >= 2);
    let sent = client
        .send_rtp(screen, b"screen".to_vec(), true)
        .await
        .unwrap();
    assert!(sent.pt > 0);

    assert_eq!(client.counters().events_dropped, 0);
    client.leave().await;
}
