//! A simulated world for the core's tests: str0m client peers (full ICE, DTLS-SRTP, SCTP) and the
//! [`Core`] exchange datagrams over an in-memory network with simulated time, without sockets or
//! clocks, so every run is the same run.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sfu_core::demux::FlowChange;
use sfu_core::protocol::{
    ChatOut, ClientMessage, PeerId, PublishedTrack, ServerMessage, TrackMapping, TrackSource,
    PROTOCOL_VERSION,
};
use sfu_core::recording::RecordingOutput;
use sfu_core::str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use sfu_core::str0m::channel::{ChannelConfig, ChannelId};
use sfu_core::str0m::format::Codec;
use sfu_core::str0m::media::{Direction, MediaKind, Mid, Simulcast};
use sfu_core::str0m::net::{Protocol, Receive};
use sfu_core::str0m::rtp::{RtpWrite, SeqNo};
use sfu_core::str0m::{Event, Input, Output as RtcOutput, Rtc, RtcConfig};
use sfu_core::{Action, Core, CoreConfig, Permissions, RoomEvent};

pub const SERVER: &str = "127.0.0.1:4000";

/// A data channel the SFU opened to a client (a relay of another member's channel).
#[derive(Debug, Clone)]
pub struct OpenedToMe {
    pub id: ChannelId,
    pub config: ChannelConfig,
}

/// A message that arrived on a data channel other than the client's chat channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMessage {
    pub channel: ChannelId,
    pub binary: bool,
    pub data: Vec<u8>,
}

/// What a client received over RTP.
#[derive(Debug, Clone)]
pub struct Received {
    pub ssrc: u32,
    pub seq: u16,
    pub marker: bool,
    pub payload: Vec<u8>,
    /// Its payload type.
    pub pt: u8,
}

/// A plain RTP datagram (marker set) as a camera or ffmpeg sends one to an ingest.
pub fn plain_rtp(pt: u8, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let repr = sfu_core::wire::RtpRepr {
        payload_type: pt,
        sequence_number: seq,
        timestamp,
        ssrc,
        marker: true,
    };
    let mut buf = vec![0; repr.header_len()];
    repr.emit(&mut buf).unwrap();
    buf.extend_from_slice(payload);
    buf
}

/// The `join` of room `kitchen` as `name`, the room every test here uses.
pub fn join_kitchen(name: &str) -> ClientMessage {
    ClientMessage::Join {
        version: PROTOCOL_VERSION,
        room: "kitchen".into(),
        name: name.into(),
        capacity: None,
        token: None,
    }
}

pub struct Client {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pub pending: Option<SdpPendingOffer>,
    pub audio: Option<Mid>,
    pub video: Option<Mid>,
    /// Next sequence number to send on audio, video.
    pub next_seq: [u64; 2],
    pub chat: Option<ChannelId>,
    pub signals: Vec<ServerMessage>,
    pub received: Vec<Received>,
    pub chats: Vec<ChatOut>,
    /// Data channels that opened, other than its chat channel (with their configuration).
    pub channels: Vec<OpenedToMe>,
    /// Data channels that closed.
    pub closed_channels: Vec<ChannelId>,
    /// Messages on data channels other than its chat channel.
    pub channel_messages: Vec<ChannelMessage>,
    pub mappings: Vec<TrackMapping>,
    /// Keyframe requests (PLI/FIR) the SFU sent this client.
    pub keyframe_requests: usize,
    /// A crashed client neither sends nor receives.
    pub crashed: bool,
}

pub struct World {
    pub now: Instant,
    pub core: Core,
    pub clients: Vec<Client>,
    /// Messages from clients to the core, delivered in order on the next pump.
    pub to_core: VecDeque<(PeerId, ClientMessage)>,
    /// Datagrams the core sent to addresses that are not clients (plain RTP outputs).
    pub plain: Vec<(SocketAddr, Vec<u8>)>,
    /// Flow changes the core reported, in order.
    pub flows: Vec<FlowChange>,
    /// Outputs the core reported gone.
    pub closed_outputs: Vec<u64>,
    /// Messages the core sent to members that are not clients here (WHIP and WHEP members,
    /// which must get none).
    pub unrouted_signals: Vec<(PeerId, ServerMessage)>,
    /// Members the core reported gone, in order.
    pub closed_peers: Vec<PeerId>,
    /// What recordings asked of the shell, in order.
    pub recorded: Vec<RecordingOutput>,
    /// Room events the core reported, in order.
    pub events: Vec<RoomEvent>,
    /// Trunk descriptions the core queued for the control plane.
    pub trunk_signals: Vec<sfu_core::trunk::TrunkSignal>,
}

pub fn server_addr() -> SocketAddr {
    SERVER.parse().unwrap()
}

impl World {
    pub fn new() -> Self {
        Self::with_config(CoreConfig::default())
    }

    /// A world whose core has `config`, announcing the simulated server address.
    pub fn with_config(config: CoreConfig) -> Self {
        let config = CoreConfig {
            candidates: vec![server_addr()],
            ..config
        };
        World {
            now: Instant::now(),
            core: Core::new(config),
            clients: Vec::new(),
            to_core: VecDeque::new(),
            plain: Vec::new(),
            flows: Vec::new(),
            closed_outputs: Vec::new(),
            unrouted_signals: Vec::new(),
            closed_peers: Vec::new(),
            recorded: Vec::new(),
            events: Vec::new(),
            trunk_signals: Vec::new(),
        }
    }

    /// Joins a client that publishes audio and video and opens a chat channel.
    pub fn join(&mut self, name: &str) -> usize {
        self.join_with(name, Permissions::ALL)
    }

    /// [`World::join`] for a member who may do only what `permissions` allow.
    pub fn join_with(&mut self, name: &str, permissions: Permissions) -> usize {
        self.join_with_config(name, permissions, RtcConfig::new())
    }

    /// [`World::join`] for a member whose session has only the video codecs in `video` (and
    /// Opus), like a browser that decodes H.264 only.
    pub fn join_with_video_codecs(&mut self, name: &str, video: &[Codec]) -> usize {
        let config = video.iter().fold(
            RtcConfig::new().clear_codecs().enable_opus(true, false),
            |c, v| match v {
                Codec::Vp8 => c.enable_vp8(true),
                Codec::H264 => c.enable_h264(true),
                Codec::Vp9 => c.enable_vp9(true),
                Codec::Av1 => c.enable_av1(true),
                other => panic!("no test client for {other}"),
            },
        );
        self.join_with_config(name, Permissions::ALL, config)
    }

    /// [`World::join`] for a member whose session is made from `config`.
    pub fn join_with_config(
        &mut self,
        name: &str,
        permissions: Permissions,
        config: RtcConfig,
    ) -> usize {
        let idx = self.clients.len();
        let id = idx as PeerId + 1;
        let addr = SocketAddr::from(([127, 0, 0, 2], 5000 + idx as u16));
        let rtc = config.set_rtp_mode(true).build(self.now);
        self.clients.push(Client::new(id, addr, rtc));
        self.core
            .handle_join(self.now, id, join_kitchen(name), permissions);
        self.pump();
        let c = &mut self.clients[idx];
        assert!(
            c.signals
                .iter()
                .any(|s| matches!(s, ServerMessage::Joined { .. })),
            "joined: {:?}",
            c.signals
        );
        let (offer, tracks) = c.offer_audio_video(None, true);
        self.to_core
            .push_back((id, ClientMessage::Offer { sdp: offer, tracks }));
        self.pump();
        idx
    }

    /// Moves datagrams, messages and events until nothing moves.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some((peer, msg)) = self.to_core.pop_front() {
                self.core.handle_message(self.now, peer, msg);
                moved = true;
            }
            while let Some(out) = self.core.poll_output() {
                moved = true;
                match out {
                    Action::Transmit(t) => {
                        let Some(c) = self.clients.iter_mut().find(|c| c.addr == t.destination)
                        else {
                            self.plain.push((t.destination, t.contents));
                            continue;
                        };
                        if !c.crashed {
                            let input = Input::Receive(
                                self.now,
                                Receive::new(Protocol::Udp, t.source, t.destination, &t.contents)
                                    .unwrap(),
                            );
                            c.rtc.handle_input(input).unwrap();
                        }
                        self.core.recycle(t.contents);
                    }
                    Action::Signal(peer, msg) => {
                        let Some(c) = self.clients.iter_mut().find(|c| c.id == peer) else {
                            self.unrouted_signals.push((peer, msg));
                            continue;
                        };
                        if let Some(reply) = c.on_signal(msg) {
                            self.to_core.push_back((peer, reply));
                        }
                    }
                    Action::PeerClosed(peer) => self.closed_peers.push(peer),
                    Action::Flow(change) => self.flows.push(change),
                    Action::PlainOutputClosed(id) => self.closed_outputs.push(id),
                    Action::Record(output) => self.recorded.push(output),
                    Action::RoomEvent(event) => self.events.push(event),
                    Action::TrunkSignal(signal) => self.trunk_signals.push(signal),
                    Action::TrunkFanout(change) => {
                        panic!("a kernel fan-out change without one: {change:?}")
                    }
                }
            }
            for i in 0..self.clients.len() {
                if self.clients[i].crashed {
                    continue;
                }
                loop {
                    let c = &mut self.clients[i];
                    match c.rtc.poll_output().unwrap() {
                        RtcOutput::Timeout(_) => break,
                        RtcOutput::Transmit(t) => {
                            moved = true;
                            let (src, data) = (t.source, t.contents.to_vec());
                            self.core
                                .handle_datagram(self.now, src, server_addr(), &data);
                        }
                        RtcOutput::Event(e) => {
                            moved = true;
                            c.on_event(e);
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the simulated network never settled");
    }

    /// Advances simulated time in small steps, feeding timeouts to everyone.
    pub fn advance(&mut self, total: Duration) {
        let step = Duration::from_millis(10);
        let end = self.now + total;
        while self.now < end {
            self.now += step;
            self.core.handle_timeout(self.now);
            for c in self.clients.iter_mut().filter(|c| !c.crashed) {
                c.rtc.handle_input(Input::Timeout(self.now)).unwrap();
            }
            self.pump();
        }
    }

    /// Sends `n` RTP packets on a client's track, one per 20 ms, with payload `[tag, i]`: video in
    /// VP8, or the client's first video codec when it has no VP8.
    pub fn send_media(&mut self, idx: usize, kind: MediaKind, n: u16, tag: u8) {
        for i in 0..n {
            let c = &mut self.clients[idx];
            let (mid, codec, step, slot) = match kind {
                MediaKind::Audio => (c.audio.unwrap(), Codec::Opus, 960, 0),
                MediaKind::Video => (c.video.unwrap(), Codec::Vp8, 3000, 1),
            };
            let seq = c.next_seq[slot];
            c.next_seq[slot] += 1;
            let config = c.rtc.codec_config();
            let pt = config
                .find(|p| p.spec().codec == codec)
                .or_else(|| config.find(|p| kind == MediaKind::Video && p.spec().codec.is_video()))
                .unwrap()
                .pt();
            let now = self.now;
            let mut api = c.rtc.direct_api();
            let tx = api.stream_tx_by_mid(mid, None).unwrap();
            let payload = vec![tag, (i >> 8) as u8, i as u8, 0x90, 0x90];
            tx.write_rtp(
                RtpWrite::new(pt, SeqNo::from(seq), seq as u32 * step, now, payload)
                    .marker(true)
                    .nackable(kind == MediaKind::Video),
            );
            self.advance(Duration::from_millis(20));
        }
    }

    pub fn client(&self, idx: usize) -> &Client {
        &self.clients[idx]
    }
}

impl Client {
    /// Peer `id` at `addr` with session `rtc`, which gets `addr` as its host candidate; nothing
    /// negotiated or received yet.
    pub fn new(id: PeerId, addr: SocketAddr, mut rtc: Rtc) -> Client {
        rtc.add_local_candidate(sfu_core::str0m::Candidate::host(addr, "udp").unwrap())
            .unwrap();
        Client {
            id,
            addr,
            rtc,
            pending: None,
            audio: None,
            video: None,
            next_seq: [100, 100],
            chat: None,
            signals: Vec::new(),
            received: Vec::new(),
            chats: Vec::new(),
            channels: Vec::new(),
            closed_channels: Vec::new(),
            channel_messages: Vec::new(),
            mappings: Vec::new(),
            keyframe_requests: 0,
            crashed: false,
        }
    }

    /// Offers a microphone and a camera (sent as the layers of `simulcast`, when given) and, with
    /// `chat`, the chat channel: returns the offer and the tracks to announce with it.
    pub fn offer_audio_video(
        &mut self,
        simulcast: Option<Simulcast>,
        chat: bool,
    ) -> (String, Vec<PublishedTrack>) {
        let mut api = self.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast);
        let channel = chat.then(|| api.add_channel("chat".into()));
        let (offer, pending) = api.apply().unwrap();
        self.pending = Some(pending);
        self.audio = Some(audio);
        self.video = Some(video);
        self.chat = channel;
        let tracks = vec![
            PublishedTrack {
                mid: audio.to_string(),
                source: TrackSource::Mic,
                muted: false,
            },
            PublishedTrack {
                mid: video.to_string(),
                source: TrackSource::Camera,
                muted: false,
            },
        ];
        (offer.to_sdp_string(), tracks)
    }

    /// Reacts to a message from the SFU like a polite browser; returns a reply if one is due.
    pub fn on_signal(&mut self, msg: ServerMessage) -> Option<ClientMessage> {
        let reply = match &msg {
            ServerMessage::Answer { sdp } => {
                let pending = self.pending.take().expect("an answer to an offer we made");
                let answer = SdpAnswer::from_sdp_string(sdp).unwrap();
                self.rtc.sdp_api().accept_answer(pending, answer).unwrap();
                None
            }
            ServerMessage::Offer { sdp, tracks } => {
                // Polite: a colliding offer of ours is dropped (accept_offer invalidates it).
                self.pending = None;
                self.mappings = tracks.clone();
                let offer = SdpOffer::from_sdp_string(sdp).unwrap();
                let answer = self.rtc.sdp_api().accept_offer(offer).unwrap();
                Some(ClientMessage::Answer {
                    sdp: answer.to_sdp_string(),
                })
            }
            ServerMessage::Chat { from, name, text } => {
                self.chats.push(ChatOut {
                    from: *from,
                    name: name.clone(),
                    text: text.clone(),
                });
                None
            }
            _ => None,
        };
        self.signals.push(msg);
        reply
    }

    pub fn on_event(&mut self, e: Event) {
        match e {
            Event::RtpPacket(p) => self.received.push(Received {
                ssrc: *p.header.ssrc,
                seq: p.header.sequence_number,
                marker: p.header.marker,
                payload: p.payload.to_vec(),
                pt: *p.header.payload_type,
            }),
            Event::ChannelData(d) if Some(d.id) == self.chat => {
                self.chats.push(serde_json::from_slice(&d.data).unwrap())
            }
            Event::ChannelData(d) => self.channel_messages.push(ChannelMessage {
                channel: d.id,
                binary: d.binary,
                data: d.data,
            }),
            Event::ChannelOpen(id, _) if Some(id) != self.chat => {
                let config = self.rtc.channel(id).and_then(|c| c.config().cloned());
                self.channels.push(OpenedToMe {
                    id,
                    config: config.expect("an open channel has its configuration"),
                });
            }
            Event::ChannelClose(id) => self.closed_channels.push(id),
            Event::KeyframeRequest(_) => self.keyframe_requests += 1,
            _ => {}
        }
    }

    pub fn received_with_tag(&self, tag: u8) -> Vec<&Received> {
        self.received
            .iter()
            .filter(|r| r.payload.first() == Some(&tag))
            .collect()
    }

    pub fn saw(&self, pred: impl Fn(&ServerMessage) -> bool) -> bool {
        self.signals.iter().any(pred)
    }
}

pub fn connected_room(n: usize) -> World {
    let mut w = World::new();
    for i in 0..n {
        w.join(&format!("p{i}"));
    }
    w.advance(Duration::from_secs(2));
    w
}
