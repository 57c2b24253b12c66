//! The driver task: owns the str0m `Rtc`, the UDP socket and the WebSocket, and runs the str0m loop
//! (input → drain `poll_output` to a timeout → wait) together with signaling and the client's commands.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelData, ChannelId};
use str0m::format::Codec;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use sfu_core::protocol::{
    ChatIn, ChatOut, ClientMessage, ErrorCode, PeerId, PublishedTrack, ServerMessage, TrackKind,
    TrackMapping, TrackSource,
};

use crate::channels::{ChannelOptions, Channels};
use crate::handoff::{MediaReader, MediaSocket};
use crate::ice_tcp::{self, TcpLinks};
use crate::sdp::sdp_candidates;
use crate::{
    ChatVia, ClientConfig, ClientError, ClientEvent, LocalTrack, LocalTrackId, ReceivedRtp,
    RemoteTrack, Result, SentRtp, SharedCounters, Status,
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest datagram the driver reads; anything longer is truncated (and then ignored by str0m).
const RECV_BUF: usize = 2048;

/// One RTP packet the caller wants sent.
pub(crate) struct OutRtp {
    pub track: LocalTrackId,
    /// The simulcast layer (required for a simulcast track, refused for any other).
    pub rid: Option<Rid>,
    pub payload: Arc<[u8]>,
    pub marker: bool,
    /// RFC 6464 audio level to attach, dBov below overload (0 to 127).
    pub level_dbov: Option<u8>,
}

impl OutRtp {
    /// A packet without layer or audio level.
    pub(crate) fn new(track: LocalTrackId, payload: Arc<[u8]>, marker: bool) -> Self {
        OutRtp {
            track,
            rid: None,
            payload,
            marker,
            level_dbov: None,
        }
    }
}

/// What the [`crate::Client`] handle asks the driver to do.
pub(crate) enum Command {
    SendRtp {
        rtp: OutRtp,
        reply: Option<oneshot::Sender<Result<SentRtp>>>,
    },
    RequestKeyframe {
        mid: String,
        reply: oneshot::Sender<Result<()>>,
    },
    SendChat {
        text: String,
        reply: oneshot::Sender<Result<()>>,
    },
    SendChannelRaw {
        data: Vec<u8>,
        binary: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    SendSignal {
        msg: ClientMessage,
        reply: oneshot::Sender<Result<()>>,
    },
    OpenChannel {
        label: String,
        options: ChannelOptions,
        reply: oneshot::Sender<Result<()>>,
    },
    SendOnChannel {
        label: String,
        data: Vec<u8>,
        binary: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    Publish {
        kind: TrackKind,
        source: TrackSource,
        /// Simulcast layers, lowest first; empty for a plain track.
        rids: Vec<Rid>,
        reply: oneshot::Sender<Result<LocalTrackId>>,
    },
    SetMuted {
        track: LocalTrackId,
        muted: bool,
        reply: oneshot::Sender<Result<()>>,
    },
    CutMedia {
        reply: oneshot::Sender<()>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    Vanish,
}

/// Everything [`Driver::new`] needs.
pub(crate) struct DriverParts<'a> {
    pub config: &'a ClientConfig,
    pub peer_id: PeerId,
    pub ws: Ws,
    pub udp: MediaSocket,
    pub local_addr: SocketAddr,
    pub cmd_rx: mpsc::Receiver<Command>,
    pub events: mpsc::Sender<ClientEvent>,
    pub status: watch::Sender<Status>,
    pub counters: Arc<SharedCounters>,
    pub early: Vec<ServerMessage>,
}

/// A published track and its RTP sending state.
struct TrackState {
    id: LocalTrackId,
    kind: TrackKind,
    source: TrackSource,
    /// Set when an offer carrying the track is made; cleared if that offer is rolled back.
    mid: Option<Mid>,
    negotiated: bool,
    pt: Option<Pt>,
    muted: bool,
    /// One per simulcast layer, lowest first; a single one without a RID for a plain track.
    layers: Vec<LayerTx>,
}

/// One RTP stream of a published track: a simulcast layer, or the whole of a plain track. Each
/// has its own SSRC and its own sequence and timestamp numbering, as a browser's encodings do.
struct LayerTx {
    rid: Option<Rid>,
    ssrc: Option<Ssrc>,
    /// Next extended sequence number (starts below 2^16: no out-of-band ROC is signalled).
    next_seq: u64,
    /// Timestamp of the current frame.
    timestamp: u32,
    /// Whether the next packet starts a new frame (the previous one had the marker bit).
    new_frame: bool,
    /// Whether any packet was sent yet (the first one keeps the initial timestamp).
    started: bool,
}

impl LayerTx {
    fn new(rid: Option<Rid>) -> Self {
        let r = random_u64();
        LayerTx {
            rid,
            ssrc: None,
            next_seq: r & 0x3fff,
            timestamp: (r >> 32) as u32,
            new_frame: true,
            started: false,
        }
    }
}

impl TrackState {
    fn new(id: LocalTrackId, kind: TrackKind, source: TrackSource, rids: &[Rid]) -> Self {
        let layers = if rids.is_empty() {
            vec![LayerTx::new(None)]
        } else {
            rids.iter().map(|r| LayerTx::new(Some(*r))).collect()
        };
        TrackState {
            id,
            kind,
            source,
            mid: None,
            negotiated: false,
            pt: None,
            muted: false,
            layers,
        }
    }

    /// The simulcast layers' RIDs, lowest first; empty for a plain track.
    fn rids(&self) -> Vec<Rid> {
        self.layers.iter().filter_map(|l| l.rid).collect()
    }

    /// RTP clock ticks per frame: 20 ms of 48 kHz Opus, or one frame of 30 fps 90 kHz video.
    fn frame_ticks(&self) -> u32 {
        match self.kind {
            TrackKind::Audio => 960,
            TrackKind::Video => 3000,
        }
    }

    fn public(&self) -> LocalTrack {
        LocalTrack {
            id: self.id,
            kind: self.kind,
            source: self.source,
            mid: self.mid.map(|m| m.to_string()),
            negotiated: self.negotiated,
            ssrc: self.layers.first().and_then(|l| l.ssrc).map(|s| *s),
            rids: self.rids().iter().map(|r| r.to_string()).collect(),
            pt: self.pt.map(|p| *p),
            muted: self.muted,
        }
    }
}

/// An own offer waiting for the SFU's answer.
struct Pending {
    offer: SdpPendingOffer,
    /// Indexes into `tracks` of the tracks this offer adds.
    tracks: Vec<usize>,
    /// Whether this offer adds the `chat` data channel.
    chat: bool,
}

#[derive(Default)]
struct ChatState {
    wanted: bool,
    id: Option<ChannelId>,
    open: bool,
}

/// Why the driver loop ended without an error.
enum End {
    Left,
    Vanished,
    Dropped,
    Remote(String),
}

enum Wake {
    Cmd(Option<Command>),
    Udp(std::io::Result<(usize, SocketAddr)>),
    Tcp(Option<ice_tcp::Incoming>),
    Ws(Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Timer,
    Ping,
}

pub(crate) struct Driver {
    peer_id: PeerId,
    rtc: Rtc,
    udp: MediaSocket,
    local_addr: SocketAddr,
    /// ICE-TCP connections, when the client uses TCP instead of UDP.
    tcp: Option<TcpLinks>,
    /// The active TCP candidate's address (what str0m knows the local end as).
    tcp_local: SocketAddr,
    ws_tx: SplitSink<Ws, Message>,
    ws_rx: SplitStream<Ws>,
    cmd_rx: mpsc::Receiver<Command>,
    events: mpsc::Sender<ClientEvent>,
    status: watch::Sender<Status>,
    counters: Arc<SharedCounters>,
    tracks: Vec<TrackState>,
    pending: Option<Pending>,
    remote: HashMap<Mid, RemoteTrack>,
    chat: ChatState,
    /// Data channels besides `chat`: its own and the SFU's relays.
    channels: Channels,
    early: Vec<ServerMessage>,
    ping_interval: Duration,
    deliver_rtp: bool,
    joined: bool,
    /// ICE and DTLS came up once (str0m `Event::Connected`).
    dtls_up: bool,
    ice_connected: bool,
    sfu_candidates: Vec<SocketAddr>,
    remote_offers: u64,
    answers_applied: u64,
    /// Simulated loss of the network path: no datagram goes out or is read.
    media_cut: bool,
    /// Simulated loss of incoming media.
    loss: LossSim,
    /// Simulated loss of outgoing media.
    out_loss: LossSim,
    /// Takes the socket's reading over once DTLS is up, when configured.
    media_reader: Option<Arc<dyn MediaReader>>,
    buf: Vec<u8>,
}

impl Driver {
    pub(crate) fn new(parts: DriverParts<'_>) -> Result<Driver> {
        let DriverParts {
            config,
            peer_id,
            ws,
            udp,
            local_addr,
            cmd_rx,
            events,
            status,
            counters,
            early,
        } = parts;

        let mut rtc = crate::participant_rtc();
        let tcp_local = SocketAddr::new(local_addr.ip(), ice_tcp::ACTIVE_PORT);
        let candidate = if config.ice_tcp {
            Candidate::builder()
                .tcp()
                .host(tcp_local)
                .tcptype(TcpType::Active)
                .build()
        } else {
            Candidate::host(local_addr, "udp")
        }
        .map_err(|e| ClientError::Protocol(format!("bad host candidate {local_addr}: {e}")))?;
        rtc.add_local_candidate(candidate);

        let mut tracks = Vec::new();
        if config.audio {
            tracks.push(TrackState::new(
                LocalTrackId(0),
                TrackKind::Audio,
                TrackSource::Mic,
                &[],
            ));
        }
        if config.video {
            let id = LocalTrackId(tracks.len() as u32);
            tracks.push(TrackState::new(
                id,
                TrackKind::Video,
                TrackSource::Camera,
                &[],
            ));
        }

        let (ws_tx, ws_rx) = ws.split();
        let driver = Driver {
            peer_id,
            rtc,
            udp,
            local_addr,
            tcp: config.ice_tcp.then(TcpLinks::new),
            tcp_local,
            ws_tx,
            ws_rx,
            cmd_rx,
            events,
            status,
            counters,
            tracks,
            pending: None,
            remote: HashMap::new(),
            chat: ChatState {
                wanted: config.data_channel,
                ..ChatState::default()
            },
            channels: Channels::default(),
            early,
            ping_interval: config.ping_interval.max(Duration::from_millis(100)),
            deliver_rtp: config.deliver_rtp,
            joined: true,
            dtls_up: false,
            ice_connected: false,
            sfu_candidates: Vec::new(),
            remote_offers: 0,
            answers_applied: 0,
            media_cut: false,
            loss: LossSim::new(config.drop_incoming_rtp_percent),
            out_loss: LossSim::new(config.drop_outgoing_rtp_percent),
            // ICE-TCP media does not arrive on the UDP socket: nothing to hand over.
            media_reader: config.media_reader.clone().filter(|_| !config.ice_tcp),
            buf: vec![0; RECV_BUF],
        };
        driver.publish_status();
        Ok(driver)
    }

    /// Runs until the client leaves, vanishes, is dropped, or the session fails.
    pub(crate) async fn run(mut self) {
        let reason = match self.run_loop().await {
            Ok(End::Vanished) => {
                self.vanish();
                return;
            }
            Ok(End::Left) => "left".to_string(),
            Ok(End::Dropped) => "client handle dropped".to_string(),
            Ok(End::Remote(why)) => why,
            Err(e) => format!("failed: {e}"),
        };
        debug!(peer = self.peer_id, %reason, "sfu-client driver ends");
        self.joined = false;
        self.ice_connected = false;
        self.status.send_modify(|s| {
            s.joined = false;
            s.ice_connected = false;
            s.chat_open = false;
            s.closed = Some(reason.clone());
        });
        self.emit(ClientEvent::Closed(reason));
    }

    async fn run_loop(&mut self) -> Result<End> {
        for msg in std::mem::take(&mut self.early) {
            if let Some(end) = self.on_server_message(msg).await? {
                return Ok(end);
            }
        }
        self.maybe_offer().await?;

        let start = tokio::time::Instant::now() + self.ping_interval;
        let mut ping = tokio::time::interval_at(start, self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            let deadline = self.drain().await?;
            if !self.rtc.is_alive() {
                return Ok(End::Remote("the webrtc session closed".into()));
            }
            // str0m reports "nothing planned" as a far future; never sleep longer than a second.
            let now = Instant::now();
            let deadline = deadline.min(now + Duration::from_secs(1)).max(now);

            let wake = tokio::select! {
                cmd = self.cmd_rx.recv() => Wake::Cmd(cmd),
                r = self.udp.recv_from(&mut self.buf) => Wake::Udp(r),
                f = recv_tcp(&mut self.tcp) => Wake::Tcp(f),
                m = self.ws_rx.next() => Wake::Ws(m),
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => Wake::Timer,
                _ = ping.tick() => Wake::Ping,
            };

            match wake {
                Wake::Cmd(None) => return Ok(End::Dropped),
                Wake::Cmd(Some(cmd)) => {
                    if let Some(end) = self.on_command(cmd).await? {
                        return Ok(end);
                    }
                }
                Wake::Udp(Ok((n, source))) => self.on_datagram(n, source),
                Wake::Udp(Err(e)) => debug!("udp recv: {e}"),
                Wake::Tcp(Some((source, frame))) => self.on_tcp_frame(source, &frame),
                Wake::Tcp(None) => {}
                Wake::Ws(None) => return Ok(End::Remote("the sfu closed the websocket".into())),
                Wake::Ws(Some(Err(e))) => return Err(e.into()),
                Wake::Ws(Some(Ok(msg))) => {
                    if let Some(end) = self.on_ws_frame(msg).await? {
                        return Ok(end);
                    }
                }
                Wake::Timer => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        warn!("str0m timeout handling: {e}");
                    }
                }
                Wake::Ping => self.send_ws(&ClientMessage::Ping).await?,
            }
        }
    }

    /// Drains str0m until it asks for a timeout: transmits datagrams, dispatches events.
    async fn drain(&mut self) -> Result<Instant> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(_) if self.media_cut => {}
                Output::Transmit(t) if t.proto == Protocol::Tcp => {
                    let Some(tcp) = self.tcp.as_mut() else {
                        continue;
                    };
                    match tcp.send(t.destination, &t.contents).await {
                        Ok(()) => {
                            self.counters.udp_out.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => debug!("tcp send to {}: {e}", t.destination),
                    }
                }
                Output::Transmit(t) if is_srtp_media(&t.contents) && self.out_loss.drop_next() => {
                    self.counters.media_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Output::Transmit(t) => match self.udp.send_to(&t.contents, t.destination).await {
                    Ok(_) => {
                        self.counters.udp_out.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => debug!("udp send to {}: {e}", t.destination),
                },
                Output::Event(e) => self.on_rtc_event(e),
            }
        }
    }

    fn on_datagram(&mut self, n: usize, source: SocketAddr) {
        // Lent out while str0m reads it, so the receive path copies nothing.
        let buf = std::mem::take(&mut self.buf);
        if let Some(contents) = buf.get(..n) {
            self.receive(Protocol::Udp, source, self.local_addr, contents);
        }
        self.buf = buf;
    }

    fn on_tcp_frame(&mut self, source: SocketAddr, frame: &[u8]) {
        self.receive(Protocol::Tcp, source, self.tcp_local, frame);
    }

    fn receive(
        &mut self,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        if self.media_cut {
            return;
        }
        self.counters.udp_in.fetch_add(1, Ordering::Relaxed);
        if is_srtp_media(contents) && self.loss.drop_next() {
            self.counters.media_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let receive = match Receive::new(proto, source, destination, contents) {
            Ok(r) => r,
            Err(e) => {
                debug!("ignoring a datagram from {source}: {e}");
                return;
            }
        };
        let input = Input::Receive(Instant::now(), receive);
        if !self.rtc.accepts(&input) {
            debug!("ignoring a datagram from {source}: not for this session");
            return;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            warn!("str0m rejected a datagram from {source}: {e}");
        }
    }

    fn on_rtc_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                info!(peer = self.peer_id, "media connected");
                self.hand_over_reading();
                self.dtls_up = true;
                self.ice_connected = true;
                self.publish_status();
                self.emit(ClientEvent::Connected);
            }
            Event::IceConnectionStateChange(state) => {
                debug!(peer = self.peer_id, "ice state {state:?}");
                match state {
                    IceConnectionState::Disconnected => {
                        self.ice_connected = false;
                        self.publish_status();
                    }
                    // Back after a disconnect (DTLS came up before).
                    IceConnectionState::Connected | IceConnectionState::Completed
                        if self.dtls_up && !self.ice_connected =>
                    {
                        self.ice_connected = true;
                        self.publish_status();
                    }
                    _ => {}
                }
                self.emit(ClientEvent::IceState(format!("{state:?}")));
            }
            Event::ChannelOpen(id, label) if self.chat.id == Some(id) || label == "chat" => {
                self.chat.id = Some(id);
                self.chat.open = true;
                self.publish_status();
                self.emit(ClientEvent::ChatOpen);
            }
            Event::ChannelClose(id) if self.chat.id == Some(id) => {
                self.chat.open = false;
                self.publish_status();
            }
            Event::ChannelOpen(id, label) => self.on_channel_open(id, label),
            Event::ChannelClose(id) => {
                if let Some((from, label)) = self.channels.remove(id) {
                    self.emit(ClientEvent::ChannelClosed { label, from });
                }
            }
            Event::ChannelData(data) => {
                if self.chat.id != Some(data.id) {
                    return self.on_channel_data(data);
                }
                match serde_json::from_slice::<ChatOut>(&data.data) {
                    Ok(ChatOut { from, name, text }) => self.emit(ClientEvent::Chat {
                        from,
                        name,
                        text,
                        via: ChatVia::DataChannel,
                    }),
                    Err(e) => self.emit(ClientEvent::Error(format!(
                        "unparseable chat line on the data channel: {e}"
                    ))),
                }
            }
            Event::RtpPacket(packet) => self.on_rtp(packet),
            Event::KeyframeRequest(req) => {
                self.counters
                    .keyframe_requests
                    .fetch_add(1, Ordering::Relaxed);
                self.emit(ClientEvent::KeyframeRequest {
                    mid: req.mid.to_string(),
                    rid: req.rid.map(|r| r.to_string()),
                });
            }
            Event::Closed => {
                self.ice_connected = false;
                self.chat.open = false;
                self.publish_status();
            }
            _ => {}
        }
    }

    /// Once DTLS is up, lets the configured [`MediaReader`] read the socket (and open the SRTP
    /// media itself); on failure the driver goes on reading it.
    fn hand_over_reading(&mut self) {
        let Some(reader) = self.media_reader.take() else {
            return;
        };
        let Some(srtp) = self.rtc.srtp_receiver() else {
            warn!(
                peer = self.peer_id,
                "connected without SRTP keys: reading media here"
            );
            return;
        };
        if let Err(e) = self.udp.hand_over(Some(srtp), reader.as_ref()) {
            warn!(peer = self.peer_id, "media reader refused the socket: {e}");
        }
    }

    fn on_rtp(&mut self, packet: RtpPacket) {
        self.counters.rtp_received.fetch_add(1, Ordering::Relaxed);
        self.counters
            .rtp_bytes_received
            .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
        if !self.deliver_rtp {
            return;
        }
        let ssrc = packet.header.ssrc;
        let mid = packet.header.ext_vals.mid.or_else(|| {
            self.rtc
                .direct_api()
                .stream_rx(&ssrc)
                .map(|stream| stream.mid())
        });
        let remote = mid.and_then(|m| self.remote.get(&m));
        let kind = mid
            .and_then(|m| self.rtc.media(m))
            .map(|m| track_kind(m.kind()));
        let event = ClientEvent::Rtp(ReceivedRtp {
            mid: mid.map(|m| m.to_string()),
            ssrc: *ssrc,
            seq: packet.header.sequence_number,
            ext_seq: *packet.seq_no,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            pt: *packet.header.payload_type,
            peer_id: remote.map(|r| r.peer_id),
            track_id: remote.map(|r| r.track_id.clone()),
            kind,
            payload: packet.payload,
            received_at: packet.timestamp,
        });
        self.emit(event);
    }

    async fn on_ws_frame(&mut self, msg: Message) -> Result<Option<End>> {
        match msg {
            Message::Text(text) => match serde_json::from_str::<ServerMessage>(text.as_str()) {
                Ok(m) => self.on_server_message(m).await,
                Err(e) => {
                    self.emit(ClientEvent::Error(format!(
                        "unparseable message from the sfu: {e}"
                    )));
                    Ok(None)
                }
            },
            Message::Binary(_) => {
                self.emit(ClientEvent::Error(
                    "unexpected binary frame from the sfu".into(),
                ));
                Ok(None)
            }
            Message::Close(frame) => Ok(Some(End::Remote(format!(
                "the sfu closed the websocket: {frame:?}"
            )))),
            _ => Ok(None),
        }
    }

    async fn on_server_message(&mut self, msg: ServerMessage) -> Result<Option<End>> {
        match msg {
            ServerMessage::Joined { .. } => {
                self.emit(ClientEvent::Error("a second `joined` arrived".into()));
            }
            ServerMessage::PeerJoined { peer } => self.emit(ClientEvent::PeerJoined(peer)),
            ServerMessage::PeerLeft { peer_id } => self.emit(ClientEvent::PeerLeft(peer_id)),
            ServerMessage::TrackPublished { peer_id, track } => {
                self.emit(ClientEvent::TrackPublished { peer_id, track })
            }
            ServerMessage::TrackUnpublished { peer_id, track_id } => {
                self.emit(ClientEvent::TrackUnpublished { peer_id, track_id })
            }
            ServerMessage::TrackMuted {
                peer_id,
                track_id,
                muted,
            } => self.emit(ClientEvent::TrackMuted {
                peer_id,
                track_id,
                muted,
            }),
            ServerMessage::Offer { sdp, tracks } => self.on_remote_offer(sdp, tracks).await?,
            ServerMessage::Answer { sdp } => self.on_remote_answer(sdp).await?,
            ServerMessage::Chat { from, name, text } => self.emit(ClientEvent::Chat {
                from,
                name,
                text,
                via: ChatVia::WebSocket,
            }),
            ServerMessage::Error { code, message } => {
                if matches!(
                    code,
                    ErrorCode::MediaTimeout
                        | ErrorCode::Unavailable
                        | ErrorCode::TokenExpired
                        | ErrorCode::TokenRevoked
                ) {
                    // The SFU removed this peer.
                    self.joined = false;
                    self.publish_status();
                }
                self.emit(ClientEvent::ServerError { code, message });
            }
            ServerMessage::ActiveSpeaker { peer_id, track_id } => {
                self.emit(ClientEvent::ActiveSpeaker { peer_id, track_id })
            }
            ServerMessage::LayerHint { mid, active } => {
                self.emit(ClientEvent::LayerHint { mid, active })
            }
            ServerMessage::MediaStats(stats) => self.emit(ClientEvent::MediaStats(stats)),
            ServerMessage::Recording { active, id, error } => {
                self.emit(ClientEvent::Recording { active, id, error })
            }
            ServerMessage::Removed { reason } => {
                // An admin removed this peer: it is out of the room.
                self.joined = false;
                self.publish_status();
                self.emit(ClientEvent::Removed { reason });
            }
            ServerMessage::ForceMuted {
                mid,
                track_id,
                muted,
            } => self.emit(ClientEvent::ForceMuted {
                mid,
                track_id,
                muted,
            }),
            ServerMessage::Pong => {}
            ServerMessage::TokenExpiring { seconds_left } => {
                self.emit(ClientEvent::TokenExpiring { seconds_left })
            }
            ServerMessage::TokenRefreshed { seconds_left } => {
                self.emit(ClientEvent::TokenRefreshed { seconds_left })
            }
            ServerMessage::ServerStopping => {
                self.joined = false;
                self.publish_status();
                self.emit(ClientEvent::ServerStopping);
            }
            ServerMessage::VideoCodec { codec } => self.emit(ClientEvent::VideoCodec { codec }),
            ServerMessage::Reconnect { url } => self.emit(ClientEvent::Reconnect { url }),
        }
        Ok(None)
    }

    /// An SFU offer: roll back an own pending offer (we are the polite side), accept, answer, then
    /// offer again whatever the rollback dropped.
    async fn on_remote_offer(&mut self, sdp: String, tracks: Vec<TrackMapping>) -> Result<()> {
        let offer = match SdpOffer::from_sdp_string(&sdp) {
            Ok(o) => o,
            Err(e) => {
                self.emit(ClientEvent::Error(format!(
                    "unparseable offer from the sfu: {e}"
                )));
                return Ok(());
            }
        };
        if let Some(pending) = self.pending.take() {
            // Glare. Dropping the pending offer is str0m's rollback: its changes were never applied.
            // accept_offer below also moves str0m's change id on, so the pending offer could not
            // be completed anyway.
            debug!(peer = self.peer_id, "glare: rolling back the own offer");
            self.rollback(pending);
            self.counters.glare.fetch_add(1, Ordering::Relaxed);
            self.emit(ClientEvent::Glare);
        }
        self.note_candidates(&sdp);

        let answer = match self.rtc.sdp_api().accept_offer(offer) {
            Ok(a) => a,
            Err(e) => {
                self.drain().await?;
                self.emit(ClientEvent::Error(format!(
                    "could not accept the sfu's offer: {e}"
                )));
                return Ok(());
            }
        };
        self.drain().await?;
        self.remote_offers += 1;

        self.remote.clear();
        for t in tracks {
            let mid = Mid::from(t.mid.as_str());
            let kind = self.rtc.media(mid).map(|m| track_kind(m.kind()));
            self.remote.insert(
                mid,
                RemoteTrack {
                    mid: t.mid,
                    peer_id: t.peer_id,
                    track_id: t.track_id,
                    kind,
                },
            );
        }
        self.send_ws(&ClientMessage::Answer {
            sdp: answer.to_sdp_string(),
        })
        .await?;
        self.publish_status();
        let list = self.remote_list();
        self.emit(ClientEvent::RemoteTracks(list));

        self.maybe_offer().await
    }

    fn rollback(&mut self, pending: Pending) {
        for i in pending.tracks {
            if let Some(t) = self.tracks.get_mut(i) {
                t.mid = None;
            }
        }
        if pending.chat {
            self.chat.id = None;
        }
        drop(pending.offer);
    }

    async fn on_remote_answer(&mut self, sdp: String) -> Result<()> {
        let Some(pending) = self.pending.take() else {
            self.emit(ClientEvent::Error(
                "an answer arrived but no own offer is pending".into(),
            ));
            return Ok(());
        };
        let answer = match SdpAnswer::from_sdp_string(&sdp) {
            Ok(a) => a,
            Err(e) => {
                self.rollback(pending);
                self.publish_status();
                self.emit(ClientEvent::Error(format!(
                    "unparseable answer from the sfu: {e}"
                )));
                return Ok(());
            }
        };
        self.note_candidates(&sdp);

        let Pending {
            offer,
            tracks,
            chat,
        } = pending;
        let accepted = self.rtc.sdp_api().accept_answer(offer, answer);
        self.drain().await?;
        match accepted {
            Ok(()) => {
                self.answers_applied += 1;
                for i in tracks {
                    self.resolve_track(i);
                }
                self.drain().await?;
                self.publish_status();
                let list = self.tracks.iter().map(TrackState::public).collect();
                self.emit(ClientEvent::LocalTracks(list));
                // Tracks published while this offer was out go in the next one.
                self.maybe_offer().await
            }
            Err(e) => {
                // No immediate retry (the same offer would most likely fail the same way); the
                // tracks are offered again with the next negotiation the SFU starts.
                for i in tracks {
                    if let Some(t) = self.tracks.get_mut(i) {
                        t.mid = None;
                    }
                }
                if chat {
                    self.chat.id = None;
                }
                self.publish_status();
                self.emit(ClientEvent::Error(format!(
                    "could not apply the sfu's answer: {e}"
                )));
                Ok(())
            }
        }
    }

    /// After an answer: find the track's SSRCs (one per layer) and negotiated payload type.
    fn resolve_track(&mut self, i: usize) {
        let Some(t) = self.tracks.get_mut(i) else {
            return;
        };
        let Some(mid) = t.mid else {
            return;
        };
        let pt = negotiated_pt(&self.rtc, mid, t.kind);
        let mut api = self.rtc.direct_api();
        for layer in &mut t.layers {
            layer.ssrc = api.stream_tx_by_mid(mid, layer.rid).map(|s| s.ssrc());
        }
        t.pt = pt;
        t.negotiated = pt.is_some() && t.layers.iter().all(|l| l.ssrc.is_some());
        if !t.negotiated {
            let ssrcs: Vec<Option<Ssrc>> = t.layers.iter().map(|l| l.ssrc).collect();
            warn!(
                "track {mid} negotiated without a usable codec or stream (pt {pt:?}, ssrcs {ssrcs:?})"
            );
        }
    }

    /// Makes an offer if something is not negotiated yet and no offer is outstanding.
    async fn maybe_offer(&mut self) -> Result<()> {
        if self.pending.is_some() || !self.joined {
            return Ok(());
        }
        let new_tracks: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| self.tracks[i].mid.is_none())
            .collect();
        let want_chat = self.chat.wanted && self.chat.id.is_none();
        if new_tracks.is_empty() && !want_chat {
            return Ok(());
        }

        let stream_id = format!("sfu-client-{}", self.peer_id);
        let mut api = self.rtc.sdp_api();
        for &i in &new_tracks {
            let t = &mut self.tracks[i];
            let media_kind = match t.kind {
                TrackKind::Audio => MediaKind::Audio,
                TrackKind::Video => MediaKind::Video,
            };
            let track_label = format!("track-{}", t.id.0);
            let rids = t.rids();
            let simulcast = (!rids.is_empty()).then(|| {
                let mut simulcast = Simulcast::new();
                for rid in &rids {
                    simulcast.add_send_layer(SimulcastLayer::new(rid));
                }
                simulcast
            });
            let mid = api.add_media(
                media_kind,
                Direction::SendOnly,
                Some(stream_id.clone()),
                Some(track_label),
                simulcast,
            );
            t.mid = Some(mid);
        }
        if want_chat {
            self.chat.id = Some(api.add_channel("chat".to_string()));
        }
        let applied = api.apply();
        self.drain().await?;

        let Some((offer, pending)) = applied else {
            // Nothing needed an SDP round (a channel on an existing association is opened directly).
            self.publish_status();
            return Ok(());
        };
        self.pending = Some(Pending {
            offer: pending,
            tracks: new_tracks,
            chat: want_chat,
        });
        let tracks = self
            .tracks
            .iter()
            .filter_map(|t| {
                t.mid.map(|mid| PublishedTrack {
                    mid: mid.to_string(),
                    source: t.source,
                    muted: t.muted,
                })
            })
            .collect();
        self.send_ws(&ClientMessage::Offer {
            sdp: offer.to_sdp_string(),
            tracks,
        })
        .await?;
        self.publish_status();
        Ok(())
    }

    async fn on_command(&mut self, cmd: Command) -> Result<Option<End>> {
        match cmd {
            Command::SendRtp { rtp, reply } => {
                let result = self.write_rtp(rtp);
                // str0m sends a written packet only when fed time; without this it waits for the
                // next timer and every measured latency carries that wait.
                if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                    debug!("session refused time: {e}");
                }
                self.drain().await?;
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                } else if let Err(e) = result {
                    debug!("queued rtp not sent: {e}");
                }
            }
            Command::RequestKeyframe { mid, reply } => {
                let result = self.request_keyframe(&mid);
                // As for RTP: the PLI goes out when str0m is fed time.
                if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                    debug!("session refused time: {e}");
                }
                self.drain().await?;
                let _ = reply.send(result);
            }
            Command::SendChat { text, reply } => {
                let result = match serde_json::to_vec(&ChatIn { text }) {
                    Ok(bytes) => self.write_channel(&bytes, false),
                    Err(e) => Err(e.into()),
                };
                self.drain().await?;
                let _ = reply.send(result);
            }
            Command::SendChannelRaw {
                data,
                binary,
                reply,
            } => {
                let result = self.write_channel(&data, binary);
                self.drain().await?;
                let _ = reply.send(result);
            }
            Command::OpenChannel {
                label,
                options,
                reply,
            } => {
                let config = options.config(label.clone());
                let id = self.rtc.direct_api().create_data_channel(config);
                self.channels.add_own(label, id);
                self.drain().await?;
                let _ = reply.send(Ok(()));
            }
            Command::SendOnChannel {
                label,
                data,
                binary,
                reply,
            } => {
                let result = match self.channels.own(&label) {
                    Some(id) => self.write_on(id, &data, binary),
                    None => Err(ClientError::ChannelNotOpen),
                };
                self.drain().await?;
                let _ = reply.send(result);
            }
            Command::SendSignal { msg, reply } => {
                let result = self.send_ws(&msg).await;
                let failed = result.is_err();
                let _ = reply.send(result);
                if failed {
                    return Ok(Some(End::Remote("the websocket failed".into())));
                }
            }
            Command::Publish {
                kind,
                source,
                rids,
                reply,
            } => {
                let id = LocalTrackId(self.tracks.len() as u32);
                self.tracks.push(TrackState::new(id, kind, source, &rids));
                self.publish_status();
                self.maybe_offer().await?;
                let _ = reply.send(Ok(id));
            }
            Command::SetMuted {
                track,
                muted,
                reply,
            } => {
                let result = self.set_muted(track, muted).await;
                let _ = reply.send(result);
            }
            Command::CutMedia { reply } => {
                self.media_cut = true;
                let _ = reply.send(());
            }
            Command::Leave { reply } => {
                self.leave().await;
                let _ = reply.send(());
                return Ok(Some(End::Left));
            }
            Command::Vanish => return Ok(Some(End::Vanished)),
        }
        Ok(None)
    }

    fn write_rtp(&mut self, rtp: OutRtp) -> Result<SentRtp> {
        let OutRtp {
            track,
            rid,
            payload,
            marker,
            level_dbov,
        } = rtp;
        let t = self
            .tracks
            .iter_mut()
            .find(|t| t.id == track)
            .ok_or(ClientError::UnknownTrack(track.0))?;
        let (Some(mid), Some(pt), true) = (t.mid, t.pt, t.negotiated) else {
            return Err(ClientError::NotNegotiated(track.0));
        };
        let frame_ticks = t.frame_ticks();
        let nackable = t.kind == TrackKind::Video;
        let layer = t.layers.iter_mut().find(|l| l.rid == rid).ok_or_else(|| {
            ClientError::UnknownLayer {
                track: track.0,
                rid: rid.map(|r| r.to_string()),
            }
        })?;
        if layer.started && layer.new_frame {
            layer.timestamp = layer.timestamp.wrapping_add(frame_ticks);
        }
        let seq = layer.next_seq;
        let timestamp = layer.timestamp;
        let mut api = self.rtc.direct_api();
        let stream = api
            .stream_tx_by_mid(mid, rid)
            .ok_or(ClientError::NotNegotiated(track.0))?;
        let ssrc = stream.ssrc();
        let mut write = RtpWrite::new(pt, seq.into(), timestamp, Instant::now(), payload)
            .marker(marker)
            .nackable(nackable);
        if let Some(level) = level_dbov {
            // RFC 6464 carries the level as -dBov; 127 is silence.
            let level = level.min(127);
            write = write.ext_vals(ExtensionValues {
                audio_level: Some(-(level as i8)),
                voice_activity: Some(level < 50),
                ..ExtensionValues::default()
            });
        }
        stream.write_rtp(write);
        layer.next_seq += 1;
        layer.started = true;
        layer.new_frame = marker;
        self.counters.rtp_sent.fetch_add(1, Ordering::Relaxed);
        Ok(SentRtp {
            mid: mid.to_string(),
            rid: rid.map(|r| r.to_string()),
            ssrc: *ssrc,
            seq: seq as u16,
            timestamp,
            pt: *pt,
        })
    }

    /// Queues a PLI for the track received on `mid`.
    fn request_keyframe(&mut self, mid: &str) -> Result<()> {
        let m = Mid::from(mid);
        if !self.remote.contains_key(&m) {
            return Err(ClientError::UnknownRemoteTrack(mid.to_string()));
        }
        let mut api = self.rtc.direct_api();
        let stream = api
            .stream_rx_by_mid(m, None)
            .ok_or_else(|| ClientError::UnknownRemoteTrack(mid.to_string()))?;
        stream.request_keyframe(KeyframeRequestKind::Pli);
        Ok(())
    }

    /// A channel besides `chat` opened: one of this client's (the SFU acknowledged it), or a
    /// relay of another member's, named by its protocol.
    fn on_channel_open(&mut self, id: ChannelId, label: String) {
        let Some(config) = self.rtc.channel(id).and_then(|c| c.config().cloned()) else {
            return;
        };
        let options = ChannelOptions::of(&config);
        let from = if self.channels.own_label(id).is_some() {
            None
        } else {
            match config.protocol.parse::<PeerId>().ok() {
                Some(from) => {
                    self.channels.add_relay(id, from, label.clone());
                    Some(from)
                }
                None => {
                    return self.emit(ClientEvent::Error(format!(
                        "channel `{label}` opened without a sender in its protocol"
                    )))
                }
            }
        };
        self.emit(ClientEvent::ChannelOpened {
            label,
            from,
            options,
        });
    }

    /// A message on a relay.
    fn on_channel_data(&mut self, data: ChannelData) {
        if let Some((from, label)) = self.channels.relay(data.id) {
            let event = ClientEvent::ChannelMessage {
                label: label.clone(),
                from: *from,
                binary: data.binary,
                data: data.data,
            };
            self.emit(event);
        }
    }

    fn write_channel(&mut self, data: &[u8], binary: bool) -> Result<()> {
        let Some(id) = self.chat.id.filter(|_| self.chat.open) else {
            return Err(ClientError::ChannelNotOpen);
        };
        self.write_on(id, data, binary)
    }

    fn write_on(&mut self, id: ChannelId, data: &[u8], binary: bool) -> Result<()> {
        let mut channel = self.rtc.channel(id).ok_or(ClientError::ChannelNotOpen)?;
        if channel.write(binary, data)? {
            Ok(())
        } else {
            Err(ClientError::ChannelFull)
        }
    }

    async fn set_muted(&mut self, track: LocalTrackId, muted: bool) -> Result<()> {
        let t = self
            .tracks
            .iter_mut()
            .find(|t| t.id == track)
            .ok_or(ClientError::UnknownTrack(track.0))?;
        let mid = t
            .mid
            .filter(|_| t.negotiated)
            .ok_or(ClientError::NotNegotiated(track.0))?;
        t.muted = muted;
        self.publish_status();
        self.send_ws(&ClientMessage::Mute {
            mid: mid.to_string(),
            muted,
        })
        .await
    }

    /// Graceful goodbye: `leave`, WebRTC close (BYE, SCTP shutdown, DTLS close_notify), WS close.
    async fn leave(&mut self) {
        if let Err(e) = self.send_ws(&ClientMessage::Leave).await {
            debug!("sending leave: {e}");
        }
        if let Err(e) = self.rtc.close() {
            debug!("closing the webrtc session: {e}");
        }
        // Let the close output (BYE, close_notify) go out.
        if let Err(e) = self.drain().await {
            debug!("draining the close: {e}");
        }
        if let Err(e) = self.ws_tx.close().await {
            debug!("closing the websocket: {e}");
        }
    }

    /// Drop everything without a word; the TCP connection is reset rather than shut down.
    fn vanish(self) {
        if let Ok(ws) = self.ws_tx.reunite(self.ws_rx) {
            if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
                if let Err(e) = tcp.set_zero_linger() {
                    debug!("SO_LINGER: {e}");
                }
            }
        }
        // The UDP socket, the WebSocket and the Rtc drop here.
    }

    async fn send_ws(&mut self, msg: &ClientMessage) -> Result<()> {
        let text = serde_json::to_string(msg)?;
        self.ws_tx.send(Message::text(text)).await?;
        Ok(())
    }

    fn note_candidates(&mut self, sdp: &str) {
        for addr in sdp_candidates(sdp) {
            if !self.sfu_candidates.contains(&addr) {
                self.sfu_candidates.push(addr);
            }
        }
    }

    fn remote_list(&self) -> Vec<RemoteTrack> {
        let mut list: Vec<RemoteTrack> = self.remote.values().cloned().collect();
        list.sort_by(|a, b| a.track_id.cmp(&b.track_id));
        list
    }

    fn emit(&self, event: ClientEvent) {
        if self.events.try_send(event).is_err() {
            self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn publish_status(&self) {
        let status = Status {
            joined: self.joined,
            ice_connected: self.ice_connected,
            chat_open: self.chat.open,
            negotiating: self.pending.is_some(),
            local_tracks: self.tracks.iter().map(TrackState::public).collect(),
            remote_tracks: self.remote_list(),
            sfu_candidates: self.sfu_candidates.clone(),
            remote_offers: self.remote_offers,
            answers_applied: self.answers_applied,
            closed: None,
        };
        self.status.send_replace(status);
    }
}

/// The next ICE-TCP frame, or never when the client uses UDP.
async fn recv_tcp(tcp: &mut Option<TcpLinks>) -> Option<ice_tcp::Incoming> {
    match tcp {
        Some(links) => links.recv().await,
        None => std::future::pending().await,
    }
}

fn track_kind(kind: MediaKind) -> TrackKind {
    match kind {
        MediaKind::Audio => TrackKind::Audio,
        MediaKind::Video => TrackKind::Video,
    }
}

/// The payload type to send `kind` with on `mid`: the first remote PT of Opus (audio) or VP8 (video).
fn negotiated_pt(rtc: &Rtc, mid: Mid, kind: TrackKind) -> Option<Pt> {
    let media = rtc.media(mid)?;
    let want = match kind {
        TrackKind::Audio => Codec::Opus,
        TrackKind::Video => Codec::Vp8,
    };
    let params = rtc.codec_config().params();
    media.remote_pts().iter().copied().find(|pt| {
        params
            .iter()
            .any(|p| p.pt() == *pt && p.spec().codec == want)
    })
}

/// Whether a datagram is SRTP media rather than STUN, DTLS or SRTCP (RFC 7983 demultiplexing:
/// RTP and RTCP start with 128 to 191; RFC 5761: RTCP packet types 192 to 223 sit where RTP's
/// marker bit and payload type are).
fn is_srtp_media(datagram: &[u8]) -> bool {
    match datagram {
        [first, second, ..] => (128..=191).contains(first) && !(192..=223).contains(second),
        _ => false,
    }
}

/// Simulated loss of incoming media: a fixed-seed xorshift generator, so every run of a test
/// loses the same share of packets in the same pattern (given the same arrival order).
struct LossSim {
    percent: u8,
    state: u64,
}

impl LossSim {
    fn new(percent: u8) -> Self {
        LossSim {
            percent: percent.min(100),
            state: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Whether to drop the next media datagram.
    fn drop_next(&mut self) -> bool {
        if self.percent == 0 {
            return false;
        }
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x % 100 < u64::from(self.percent)
    }
}

/// A random number without a dependency: std's per-process random hash keys.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
