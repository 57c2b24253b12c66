//! A real WebRTC participant for edge-sfu, built on [str0m] and tokio.
//!
//! A [`Client`] joins a room over the signaling WebSocket (protocol v1, the types of
//! [`sfu_core::protocol`]), runs one full-ICE (not ICE-lite) str0m `Rtc` in RTP mode over a UDP socket,
//! publishes sendonly Opus and/or VP8 m-lines plus a `chat` data channel, answers the SFU's offers as
//! other members publish and leave, and hands everything it receives to the caller as
//! [`ClientEvent`]s.
//!
//! The `Rtc`, the UDP socket and the WebSocket are owned by one driver task; the [`Client`] handle
//! talks to it over channels (methods that need the driver are `async`; state and counters are read
//! without a round trip). Media is written at the RTP level
//! ([`Client::send_rtp`]): the caller chooses the payload and the marker bit, the client assigns
//! consecutive sequence numbers, timestamps and the negotiated payload type. A simulcast track
//! ([`Client::publish_simulcast`]) sends each layer as its own RTP stream
//! ([`Client::send_rtp_layer`]), and audio can carry an RFC 6464 level
//! ([`Client::send_rtp_with_level`]) for the SFU's active-speaker detection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sfu_client::ClientError> {
//! use std::time::Duration;
//! use sfu_client::{Client, ClientConfig, ClientEvent};
//!
//! let config = ClientConfig::new("ws://127.0.0.1:8080/ws", "kitchen", "ana").audio(true);
//! let mut client = Client::connect(config).await?;
//! client.wait_negotiated(Duration::from_secs(10)).await?;
//! let mic = client.audio_track().expect("audio was requested");
//! client.send_rtp(mic, b"not really opus".to_vec(), true).await?;
//! while let Some(event) = client.next_event_timeout(Duration::from_secs(1)).await {
//!     if let ClientEvent::Rtp(rtp) = event {
//!         println!("{} bytes from peer {:?}", rtp.payload.len(), rtp.peer_id);
//!     }
//! }
//! client.leave().await;
//! # Ok(())
//! # }
//! ```

mod channels;
mod driver;
mod error;
pub mod handoff;
mod ice_tcp;
mod sdp;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub use channels::ChannelOptions;
pub use error::{ClientError, Result};

/// The session every simulated participant runs: full ICE (SFUs are ICE-lite), RTP mode, and only
/// the codecs the clients write (Opus, VP8). The load generator's Janus client uses it too, so
/// both servers are driven by identical peers.
pub fn participant_rtc() -> str0m::Rtc {
    str0m::Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now())
}
pub use sdp::sdp_candidates;
pub use sfu_core::protocol::{
    ClientMessage, ErrorCode, IceServer, LegStats, MediaStats, PeerId, PeerInfo, ServerMessage,
    TrackInfo, TrackKind, TrackMapping, TrackSource, PROTOCOL_VERSION,
};

use driver::{Command, Driver, OutRtp};

/// How to reach the SFU and what to publish.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The signaling WebSocket, `ws://HOST:PORT/ws`.
    pub url: String,
    /// The room to join (1 to 64 characters).
    pub room: String,
    /// The display name (1 to 64 characters).
    pub name: String,
    /// Room capacity, honoured only when this join creates the room.
    pub capacity: Option<u32>,
    /// Room token sent with the join (servers with auth configured require one).
    pub token: Option<String>,
    /// Publish a sendonly Opus m-line (source `mic`) in the first offer.
    pub audio: bool,
    /// Publish a sendonly VP8 m-line (source `camera`) in the first offer.
    pub video: bool,
    /// Open the `chat` data channel in the first offer.
    pub data_channel: bool,
    /// Local address of the media UDP socket; its port is usually 0. It becomes the one host candidate.
    pub bind_addr: SocketAddr,
    /// Limit for the WebSocket connect plus the `join`/`joined` exchange.
    pub connect_timeout: Duration,
    /// How often a `ping` keeps the WebSocket alive (the SFU closes it after 30 s of silence).
    pub ping_interval: Duration,
    /// Capacity of the event queue. Events that do not fit are dropped and counted in
    /// [`Counters::events_dropped`]; read events promptly.
    pub event_capacity: usize,
    /// Whether every received RTP packet becomes a [`ClientEvent::Rtp`]. A load generator that only
    /// needs [`Counters`] turns this off.
    pub deliver_rtp: bool,
    /// Reach the SFU over ICE-TCP only: the one local candidate is an active TCP candidate (on
    /// `bind_addr`'s IP), as a browser whose UDP is blocked ends up using.
    pub ice_tcp: bool,
    /// Percent (0 to 100) of incoming SRTP media datagrams thrown away before str0m sees them,
    /// chosen by a fixed-seed generator so a run is repeatable. For tests of loss recovery: str0m
    /// NACKs what is missing and the SFU resends it. STUN, DTLS and RTCP always get through, so
    /// the session itself stays healthy. Counted in [`Counters::media_dropped`].
    pub drop_incoming_rtp_percent: u8,
    /// Percent (0 to 100) of outgoing SRTP media datagrams thrown away instead of sent (fixed
    /// seed, as [`ClientConfig::drop_incoming_rtp_percent`]): loss on the way to the SFU, which
    /// sees the sequence gaps. Counted in [`Counters::media_dropped`].
    pub drop_outgoing_rtp_percent: u8,
    /// Once DTLS is up, hand the reading of the media socket to this reader (see [`handoff`]):
    /// it opens the SRTP media itself and passes STUN, DTLS and RTCP back. Media read that way
    /// never becomes a [`ClientEvent::Rtp`], is not counted in [`Counters`], and gives the
    /// session nothing to build receiver reports, NACKs or TWCC feedback from. Ignored with
    /// [`ClientConfig::ice_tcp`].
    pub media_reader: Option<Arc<dyn handoff::MediaReader>>,
}

impl ClientConfig {
    /// A configuration that publishes nothing but the `chat` data channel; enable media with
    /// [`ClientConfig::audio`] and [`ClientConfig::video`].
    pub fn new(url: impl Into<String>, room: impl Into<String>, name: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            room: room.into(),
            name: name.into(),
            capacity: None,
            token: None,
            audio: false,
            video: false,
            data_channel: true,
            bind_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            connect_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            event_capacity: 65_536,
            deliver_rtp: true,
            ice_tcp: false,
            drop_incoming_rtp_percent: 0,
            drop_outgoing_rtp_percent: 0,
            media_reader: None,
        }
    }

    /// Publish (or not) an Opus microphone track.
    pub fn audio(mut self, on: bool) -> Self {
        self.audio = on;
        self
    }

    /// Publish (or not) a VP8 camera track.
    pub fn video(mut self, on: bool) -> Self {
        self.video = on;
        self
    }

    /// Open (or not) the `chat` data channel.
    pub fn data_channel(mut self, on: bool) -> Self {
        self.data_channel = on;
        self
    }

    /// Ask for a room capacity (only honoured when this join creates the room).
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Use ICE over TCP instead of UDP.
    pub fn ice_tcp(mut self, on: bool) -> Self {
        self.ice_tcp = on;
        self
    }

    /// Join with this room token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Turn [`ClientEvent::Rtp`] delivery on or off.
    pub fn deliver_rtp(mut self, on: bool) -> Self {
        self.deliver_rtp = on;
        self
    }

    /// Hand the media socket's reading to `reader` once DTLS is up; see
    /// [`ClientConfig::media_reader`].
    pub fn media_reader(mut self, reader: Arc<dyn handoff::MediaReader>) -> Self {
        self.media_reader = Some(reader);
        self
    }

    /// Simulate loss on the way in: drop this percent (capped at 100) of the incoming SRTP media
    /// datagrams; see [`ClientConfig::drop_incoming_rtp_percent`].
    pub fn drop_incoming_rtp_percent(mut self, percent: u8) -> Self {
        self.drop_incoming_rtp_percent = percent.min(100);
        self
    }

    /// Throw away `percent` of outgoing media datagrams; see
    /// [`ClientConfig::drop_outgoing_rtp_percent`].
    pub fn drop_outgoing_rtp_percent(mut self, percent: u8) -> Self {
        self.drop_outgoing_rtp_percent = percent.min(100);
        self
    }
}

/// Identifies a track this client publishes (stable across renegotiations, unlike the mid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalTrackId(pub u32);

/// A track this client publishes, as currently negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTrack {
    /// The handle to pass to [`Client::send_rtp`].
    pub id: LocalTrackId,
    /// Audio (Opus) or video (VP8).
    pub kind: TrackKind,
    /// What the SFU is told it is.
    pub source: TrackSource,
    /// The m-line, once an offer carrying it was made.
    pub mid: Option<String>,
    /// Whether the SFU answered the offer carrying it; only then can RTP be sent.
    pub negotiated: bool,
    /// The SSRC the client sends with, once negotiated (of the first layer, for simulcast).
    pub ssrc: Option<u32>,
    /// The simulcast layers' RIDs, lowest first as offered; empty without simulcast.
    pub rids: Vec<String>,
    /// The negotiated payload type, once negotiated.
    pub pt: Option<u8>,
    /// Whether the SFU was told the track is muted.
    pub muted: bool,
}

impl LocalTrack {
    /// The server-wide id the SFU gives this track: `"<peerId>:<mid>"`.
    pub fn server_track_id(&self, own_peer_id: PeerId) -> Option<String> {
        self.mid.as_ref().map(|mid| format!("{own_peer_id}:{mid}"))
    }
}

/// A receiving m-line and the remote track it carries (from the SFU offer's `tracks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTrack {
    /// The m-line in this client's session.
    pub mid: String,
    /// The member publishing it.
    pub peer_id: PeerId,
    /// The server-wide track id, `"<peerId>:<mid>"` with the publisher's mid.
    pub track_id: String,
    /// Audio or video, from the m-line.
    pub kind: Option<TrackKind>,
}

/// A snapshot of the client's state; see [`Client::status`] and [`Client::wait_for`].
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// In the room: `joined` arrived and neither `leave`, a fatal error nor a close happened since.
    pub joined: bool,
    /// ICE and DTLS are up with the SFU (str0m `Event::Connected`), and ICE has not disconnected.
    pub ice_connected: bool,
    /// The `chat` data channel is open.
    pub chat_open: bool,
    /// An own offer waits for the SFU's answer.
    pub negotiating: bool,
    /// The tracks this client publishes.
    pub local_tracks: Vec<LocalTrack>,
    /// The tracks this client receives, from the last SFU offer it accepted.
    pub remote_tracks: Vec<RemoteTrack>,
    /// The SFU's UDP host candidates, from the SDP it sent.
    pub sfu_candidates: Vec<SocketAddr>,
    /// Number of SFU offers accepted.
    pub remote_offers: u64,
    /// Number of own offers the SFU answered.
    pub answers_applied: u64,
    /// Why the driver ended, once it has.
    pub closed: Option<String>,
}

/// An RTP packet received from the SFU.
#[derive(Debug, Clone)]
pub struct ReceivedRtp {
    /// The m-line it arrived on.
    pub mid: Option<String>,
    /// Its SSRC (the SFU's, rewritten per leg).
    pub ssrc: u32,
    /// The 16-bit RTP sequence number.
    pub seq: u16,
    /// The sequence number extended with its rollover count by str0m.
    pub ext_seq: u64,
    /// The RTP timestamp.
    pub timestamp: u32,
    /// The marker bit.
    pub marker: bool,
    /// The payload type.
    pub pt: u8,
    /// The payload, without RTP header or padding.
    pub payload: Arc<[u8]>,
    /// Audio or video, from the m-line.
    pub kind: Option<TrackKind>,
    /// The member who published it, from the SFU offer's `tracks` mapping.
    pub peer_id: Option<PeerId>,
    /// The server-wide id of the remote track, from the same mapping.
    pub track_id: Option<String>,
    /// When the datagram carrying it was read.
    pub received_at: Instant,
}

/// What [`Client::send_rtp`] put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRtp {
    /// The m-line.
    pub mid: String,
    /// The simulcast layer it went on, if the track has layers.
    pub rid: Option<String>,
    /// The SSRC.
    pub ssrc: u32,
    /// The 16-bit sequence number.
    pub seq: u16,
    /// The RTP timestamp.
    pub timestamp: u32,
    /// The payload type.
    pub pt: u8,
}

/// How a chat line arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatVia {
    /// On the `chat` data channel.
    DataChannel,
    /// As a `chat` message on the WebSocket.
    WebSocket,
}

/// Something that happened to the client.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// ICE and DTLS came up with the SFU.
    Connected,
    /// The ICE connection state changed (str0m's state, as text).
    IceState(String),
    /// The `chat` data channel opened.
    ChatOpen,
    /// An RTP packet arrived.
    Rtp(ReceivedRtp),
    /// A member joined the room.
    PeerJoined(PeerInfo),
    /// A member left or was dropped.
    PeerLeft(PeerId),
    /// A member published a track.
    TrackPublished {
        /// The publisher.
        peer_id: PeerId,
        /// The track.
        track: TrackInfo,
    },
    /// A member stopped a track.
    TrackUnpublished {
        /// The publisher.
        peer_id: PeerId,
        /// The track id.
        track_id: String,
    },
    /// An admin removed this client from the room (`removed`).
    Removed {
        /// Why, as the SFU put it.
        reason: String,
    },
    /// An admin muted or unmuted one of this client's published tracks (`forceMuted`).
    ForceMuted {
        /// The mid of the sending m-line.
        mid: String,
        /// The track's server-wide id.
        track_id: String,
        /// New state.
        muted: bool,
    },
    /// A member muted or unmuted a track.
    TrackMuted {
        /// The publisher.
        peer_id: PeerId,
        /// The track id.
        track_id: String,
        /// New state.
        muted: bool,
    },
    /// The client accepted an SFU offer; these are now the tracks it receives.
    RemoteTracks(Vec<RemoteTrack>),
    /// The SFU answered an own offer; these are now the published tracks.
    LocalTracks(Vec<LocalTrack>),
    /// An SFU offer arrived while an own offer was pending: the own offer was dropped (rolled back)
    /// and will be made again once the SFU's offer is answered.
    Glare,
    /// A data channel besides `chat` opened: one this client opened (`from` is `None`; it may
    /// be written now), or the SFU's relay of member `from`'s channel.
    ChannelOpened {
        /// The channel's label.
        label: String,
        /// The member whose messages it carries (`None`: this client's own channel).
        from: Option<PeerId>,
        /// How it delivers.
        options: ChannelOptions,
    },
    /// A message on the relay of member `from`'s channel `label`.
    ChannelMessage {
        /// The channel's label.
        label: String,
        /// The sending member.
        from: PeerId,
        /// Binary (or text).
        binary: bool,
        /// The message as sent.
        data: Vec<u8>,
    },
    /// A data channel besides `chat` closed.
    ChannelClosed {
        /// The channel's label.
        label: String,
        /// The member whose messages it carried (`None`: this client's own channel).
        from: Option<PeerId>,
    },
    /// A chat line from another member.
    Chat {
        /// Sender id, filled in by the SFU.
        from: PeerId,
        /// Sender display name, filled in by the SFU.
        name: String,
        /// The text.
        text: String,
        /// Data channel or WebSocket.
        via: ChatVia,
    },
    /// The room's dominant speaker changed.
    ActiveSpeaker {
        /// The member now speaking (`None`: nobody).
        peer_id: Option<PeerId>,
        /// Its audio track.
        track_id: Option<String>,
    },
    /// The SFU says which simulcast layers of a published track anybody takes.
    LayerHint {
        /// The mid of the sending m-line.
        mid: String,
        /// Per layer, lowest first.
        active: Vec<bool>,
    },
    /// The answer to a `getStats`.
    /// The room's recording started or stopped (`error` says why it stopped early).
    Recording {
        /// Whether the room is being recorded now.
        active: bool,
        /// The recording's id.
        id: String,
        /// Why it stopped, when it stopped on an error.
        error: Option<String>,
    },
    MediaStats(MediaStats),
    /// The SFU asked for a keyframe (PLI or FIR) of a published video track; also counted in
    /// [`Counters::keyframe_requests`]. A sender answers with a keyframe on that layer.
    KeyframeRequest {
        /// The mid of the sending m-line.
        mid: String,
        /// The simulcast layer asked for (`None` without simulcast).
        rid: Option<String>,
    },
    /// The member's room token runs out in `seconds_left` seconds (`tokenExpiring`); answer with
    /// a fresh token through a `refresh` message to stay.
    TokenExpiring {
        /// Seconds until the SFU removes the member.
        seconds_left: u64,
    },
    /// The SFU accepted a `refresh`.
    TokenRefreshed {
        /// Seconds until the new token runs out.
        seconds_left: u64,
    },
    /// The SFU is shutting down (`serverStopping`); the connection closes right after.
    ServerStopping,
    /// The room's codec policy asks this client to send video in `codec` (`videoCodec`, an RTP
    /// encoding name such as `H264`); the SFU lists it first in its answers and offers.
    VideoCodec {
        /// The encoding name.
        codec: String,
    },
    /// The node drains (`reconnect`): join the same room again at `url`, another node.
    Reconnect {
        /// The other node's signaling URL.
        url: String,
    },
    /// The SFU sent an `error` message.
    ServerError {
        /// The protocol error code.
        code: ErrorCode,
        /// The SFU's explanation.
        message: String,
    },
    /// Something went wrong locally or the SFU sent something unusable; the client keeps going.
    Error(String),
    /// The driver ended; no more events follow.
    Closed(String),
}

/// Cumulative counters of one client, readable at any time without a round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// RTP packets handed to str0m for sending.
    pub rtp_sent: u64,
    /// RTP packets received (whether or not delivered as events).
    pub rtp_received: u64,
    /// RTP payload bytes received.
    pub rtp_bytes_received: u64,
    /// UDP datagrams received.
    pub udp_in: u64,
    /// UDP datagrams sent.
    pub udp_out: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Keyframe requests (PLI/FIR) received for published video.
    pub keyframe_requests: u64,
    /// Times an own offer was rolled back because of glare.
    pub glare: u64,
    /// Media datagrams dropped on purpose ([`ClientConfig::drop_incoming_rtp_percent`],
    /// [`ClientConfig::drop_outgoing_rtp_percent`]).
    pub media_dropped: u64,
}

#[derive(Debug, Default)]
pub(crate) struct SharedCounters {
    pub rtp_sent: AtomicU64,
    pub rtp_received: AtomicU64,
    pub rtp_bytes_received: AtomicU64,
    pub udp_in: AtomicU64,
    pub udp_out: AtomicU64,
    pub events_dropped: AtomicU64,
    pub keyframe_requests: AtomicU64,
    pub glare: AtomicU64,
    pub media_dropped: AtomicU64,
}

impl SharedCounters {
    fn snapshot(&self) -> Counters {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            rtp_sent: l(&self.rtp_sent),
            rtp_received: l(&self.rtp_received),
            rtp_bytes_received: l(&self.rtp_bytes_received),
            udp_in: l(&self.udp_in),
            udp_out: l(&self.udp_out),
            events_dropped: l(&self.events_dropped),
            keyframe_requests: l(&self.keyframe_requests),
            glare: l(&self.glare),
            media_dropped: l(&self.media_dropped),
        }
    }
}

/// One participant in an edge-sfu room. Dropping it without [`Client::leave`] ends it like
/// [`Client::vanish`].
#[derive(Debug)]
pub struct Client {
    peer_id: PeerId,
    room: String,
    name: String,
    initial_peers: Vec<PeerInfo>,
    ice_servers: Vec<IceServer>,
    local_addr: SocketAddr,
    wants_chat: bool,
    cmd: mpsc::Sender<Command>,
    events: mpsc::Receiver<ClientEvent>,
    status: watch::Receiver<Status>,
    counters: Arc<SharedCounters>,
    task: Option<JoinHandle<()>>,
}

impl Client {
    /// Connects the WebSocket, joins the room, binds the media socket and starts the driver, which
    /// immediately makes the first offer. Returns once `joined` arrived; media comes up in the
    /// background (see [`Client::wait_connected`]).
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let limit = config.connect_timeout;
        tokio::time::timeout(limit, Self::connect_inner(config))
            .await
            .map_err(|_| ClientError::Timeout("the websocket connect and join".into()))?
    }

    async fn connect_inner(config: ClientConfig) -> Result<Client> {
        let (mut ws, _response) = tokio_tungstenite::connect_async(config.url.as_str()).await?;
        let join = ClientMessage::Join {
            version: PROTOCOL_VERSION,
            room: config.room.clone(),
            name: config.name.clone(),
            capacity: config.capacity,
            token: config.token.clone(),
        };
        ws.send(Message::text(serde_json::to_string(&join)?))
            .await?;

        // Wait for `joined`; keep anything else that arrives first for the driver.
        let mut early = Vec::new();
        let (peer_id, room, peers, ice_servers) = loop {
            let Some(msg) = ws.next().await else {
                return Err(ClientError::Protocol(
                    "the websocket closed before `joined`".into(),
                ));
            };
            match msg? {
                Message::Text(text) => match serde_json::from_str::<ServerMessage>(text.as_str()) {
                    Ok(ServerMessage::Joined {
                        peer_id,
                        room,
                        peers,
                        ice_servers,
                        ..
                    }) => break (peer_id, room, peers, ice_servers),
                    Ok(ServerMessage::Error { code, message }) => {
                        return Err(ClientError::Refused { code, message });
                    }
                    Ok(other) => early.push(other),
                    Err(e) => {
                        return Err(ClientError::Protocol(format!(
                            "unparseable message before `joined`: {e}"
                        )));
                    }
                },
                Message::Close(frame) => {
                    return Err(ClientError::Protocol(format!(
                        "the websocket closed before `joined`: {frame:?}"
                    )));
                }
                _ => {}
            }
        };

        let udp = UdpSocket::bind(config.bind_addr).await?;
        let local_addr = udp.local_addr()?;
        let udp = handoff::MediaSocket::new(udp);
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (event_tx, event_rx) = mpsc::channel(config.event_capacity.max(16));
        let (status_tx, status_rx) = watch::channel(Status {
            joined: true,
            ..Status::default()
        });
        let counters = Arc::new(SharedCounters::default());
        let driver = Driver::new(driver::DriverParts {
            config: &config,
            peer_id,
            ws,
            udp,
            local_addr,
            cmd_rx,
            events: event_tx,
            status: status_tx,
            counters: counters.clone(),
            early,
        })?;
        let task = tokio::spawn(driver.run());
        Ok(Client {
            peer_id,
            room,
            name: config.name,
            initial_peers: peers,
            ice_servers,
            local_addr,
            wants_chat: config.data_channel,
            cmd: cmd_tx,
            events: event_rx,
            status: status_rx,
            counters,
            task: Some(task),
        })
    }

    /// This client's peer id, from `joined`.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The room joined.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// The display name joined with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The members who were already in the room when this client joined.
    pub fn initial_peers(&self) -> &[PeerInfo] {
        &self.initial_peers
    }

    /// The ICE servers from `joined`.
    pub fn ice_servers(&self) -> &[IceServer] {
        &self.ice_servers
    }

    /// The local address of the media UDP socket (the host candidate).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the current state.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// In the room with ICE and DTLS up.
    pub fn is_connected(&self) -> bool {
        let s = self.status.borrow();
        s.joined && s.ice_connected && s.closed.is_none()
    }

    /// Whether the driver is still running.
    pub fn is_running(&self) -> bool {
        self.status.borrow().closed.is_none()
    }

    /// The cumulative counters.
    pub fn counters(&self) -> Counters {
        self.counters.snapshot()
    }

    /// The published tracks.
    pub fn local_tracks(&self) -> Vec<LocalTrack> {
        self.status.borrow().local_tracks.clone()
    }

    /// The first published audio track.
    pub fn audio_track(&self) -> Option<LocalTrackId> {
        self.first_track(TrackKind::Audio)
    }

    /// The first published video track.
    pub fn video_track(&self) -> Option<LocalTrackId> {
        self.first_track(TrackKind::Video)
    }

    fn first_track(&self, kind: TrackKind) -> Option<LocalTrackId> {
        self.status
            .borrow()
            .local_tracks
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| t.id)
    }

    /// Waits until `pred` holds for the status, and returns that status. Fails with
    /// [`ClientError::Timeout`] after `timeout`, or [`ClientError::Closed`] if the driver ends first
    /// (unless `pred` holds for the final status).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Status) -> bool,
    ) -> Result<Status> {
        let mut rx = self.status.clone();
        let wait = async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if pred(&s) {
                        return Ok(s.clone());
                    }
                    if s.closed.is_some() {
                        return Err(ClientError::Closed);
                    }
                }
                if rx.changed().await.is_err() {
                    let s = rx.borrow();
                    return if pred(&s) {
                        Ok(s.clone())
                    } else {
                        Err(ClientError::Closed)
                    };
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ClientError::Timeout("a client status condition".into()))?
    }

    /// Waits until ICE and DTLS are up with the SFU.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<Status> {
        self.wait_for(timeout, |s| s.joined && s.ice_connected)
            .await
    }

    /// Waits until the media session is up, every published track is negotiated and (if requested)
    /// the `chat` data channel is open.
    pub async fn wait_negotiated(&self, timeout: Duration) -> Result<Status> {
        let want_chat = self.wants_chat;
        self.wait_for(timeout, |s| {
            s.joined
                && s.ice_connected
                && !s.negotiating
                && s.local_tracks.iter().all(|t| t.negotiated)
                && (!want_chat || s.chat_open)
        })
        .await
    }

    /// Waits until this client receives every track `peer_id` publishes (at least `count` of them).
    pub async fn wait_remote_tracks(
        &self,
        peer_id: PeerId,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<RemoteTrack>> {
        let s = self
            .wait_for(timeout, |s| {
                s.remote_tracks
                    .iter()
                    .filter(|t| t.peer_id == peer_id)
                    .count()
                    >= count
            })
            .await?;
        Ok(s.remote_tracks
            .into_iter()
            .filter(|t| t.peer_id == peer_id)
            .collect())
    }

    /// Sends one RTP packet on a published, negotiated track and returns what went out. The client
    /// picks the next sequence number, advances the timestamp by one frame (20 ms of Opus, or one
    /// 30 fps VP8 frame) whenever the previous packet of the track had the marker bit, and uses the
    /// negotiated payload type. A simulcast track needs [`Client::send_rtp_layer`] instead.
    pub async fn send_rtp(
        &self,
        track: LocalTrackId,
        payload: impl Into<Arc<[u8]>>,
        marker: bool,
    ) -> Result<SentRtp> {
        self.send_out(OutRtp::new(track, payload.into(), marker))
            .await
    }

    /// Like [`Client::send_rtp`] without waiting for the result (for load generation): fails only
    /// when the command queue is full ([`ClientError::QueueFull`]) or the client is closed. Errors of
    /// the write itself (track not negotiated yet) are only logged.
    pub fn queue_rtp(
        &self,
        track: LocalTrackId,
        payload: impl Into<Arc<[u8]>>,
        marker: bool,
    ) -> Result<()> {
        self.queue_out(OutRtp::new(track, payload.into(), marker))
    }

    /// Sends one RTP packet on simulcast layer `rid` of a track published with
    /// [`Client::publish_simulcast`]. Each layer is its own RTP stream, as a browser sends them: its
    /// own SSRC, sequence numbers and timestamps, numbered as [`Client::send_rtp`] numbers a track.
    pub async fn send_rtp_layer(
        &self,
        track: LocalTrackId,
        rid: &str,
        payload: impl Into<Arc<[u8]>>,
        marker: bool,
    ) -> Result<SentRtp> {
        let mut rtp = OutRtp::new(track, payload.into(), marker);
        rtp.rid = Some(str0m::media::Rid::from(rid));
        self.send_out(rtp).await
    }

    /// Like [`Client::send_rtp_layer`] without waiting for the result, as [`Client::queue_rtp`].
    pub fn queue_rtp_layer(
        &self,
        track: LocalTrackId,
        rid: &str,
        payload: impl Into<Arc<[u8]>>,
        marker: bool,
    ) -> Result<()> {
        let mut rtp = OutRtp::new(track, payload.into(), marker);
        rtp.rid = Some(str0m::media::Rid::from(rid));
        self.queue_out(rtp)
    }

    /// Like [`Client::send_rtp`], with an RFC 6464 audio level header extension: `level_dbov` is
    /// the level below overload (0 loudest, 127 silence; larger values are taken as 127), and the
    /// voice activity flag is set below 50 dBov. The SFU's active-speaker detection reads it.
    pub async fn send_rtp_with_level(
        &self,
        track: LocalTrackId,
        payload: impl Into<Arc<[u8]>>,
        marker: bool,
        level_dbov: u8,
    ) -> Result<SentRtp> {
        let mut rtp = OutRtp::new(track, payload.into(), marker);
        rtp.level_dbov = Some(level_dbov.min(127));
        self.send_out(rtp).await
    }

    async fn send_out(&self, rtp: OutRtp) -> Result<SentRtp> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::SendRtp {
            rtp,
            reply: Some(reply),
        })
        .await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    fn queue_out(&self, rtp: OutRtp) -> Result<()> {
        self.cmd
            .try_send(Command::SendRtp { rtp, reply: None })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ClientError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => ClientError::Closed,
            })
    }

    /// Asks the SFU for a keyframe of the track received on m-line `mid` (sends a PLI), as a
    /// decoder that lost its reference does.
    pub async fn request_keyframe(&self, mid: &str) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::RequestKeyframe {
            mid: mid.to_string(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends a chat line on the `chat` data channel (`{"text": ...}`).
    pub async fn send_chat(&self, text: impl Into<String>) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::SendChat {
            text: text.into(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Writes raw bytes on the `chat` data channel (a text message unless `binary`); for tests that
    /// check what the SFU does with odd channel input.
    pub async fn send_channel_raw(&self, data: impl Into<Vec<u8>>, binary: bool) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::SendChannelRaw {
            data: data.into(),
            binary,
            reply,
        })
        .await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Opens a data channel `label` (any label but `chat`) that the SFU relays to the other
    /// members; [`ClientEvent::ChannelOpened`] with no sender says when it may be written.
    pub async fn open_channel(
        &self,
        label: impl Into<String>,
        options: ChannelOptions,
    ) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let label = label.into();
        self.command(Command::OpenChannel {
            label,
            options,
            reply,
        })
        .await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Writes a message (binary, or text) on this client's open channel `label`.
    pub async fn send_on_channel(
        &self,
        label: impl Into<String>,
        data: impl Into<Vec<u8>>,
        binary: bool,
    ) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::SendOnChannel {
            label: label.into(),
            data: data.into(),
            binary,
            reply,
        })
        .await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends a chat line as a `chat` message on the WebSocket.
    pub async fn send_chat_ws(&self, text: impl Into<String>) -> Result<()> {
        self.send_signal(ClientMessage::Chat { text: text.into() })
            .await
    }

    /// Sends any signaling message as is. Sending `offer`, `answer` or `leave` this way bypasses the
    /// client's own negotiation state; meant for tests.
    pub async fn send_signal(&self, msg: ClientMessage) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::SendSignal { msg, reply }).await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Publishes one more track: it is offered to the SFU as soon as no other offer is outstanding.
    pub async fn publish(&self, kind: TrackKind, source: TrackSource) -> Result<LocalTrackId> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Publish {
            kind,
            source,
            rids: Vec::new(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Publishes a simulcast VP8 track whose layers are `rids`, lowest first (the order of the
    /// offer's `a=simulcast:send` line, which the SFU takes as the quality order). Each RID is 1
    /// to 8 ASCII letters or digits, all distinct. Send on a layer with
    /// [`Client::send_rtp_layer`].
    pub async fn publish_simulcast(
        &self,
        source: TrackSource,
        rids: &[&str],
    ) -> Result<LocalTrackId> {
        if rids.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a simulcast track needs at least one rid".into(),
            ));
        }
        for (i, rid) in rids.iter().enumerate() {
            let usable =
                (1..=8).contains(&rid.len()) && rid.chars().all(|c| c.is_ascii_alphanumeric());
            if !usable || rids[..i].contains(rid) {
                return Err(ClientError::InvalidArgument(format!(
                    "rid {rid:?}: rids are 1 to 8 ascii letters or digits, all distinct"
                )));
            }
        }
        let (reply, rx) = oneshot::channel();
        self.command(Command::Publish {
            kind: TrackKind::Video,
            source,
            rids: rids.iter().map(|r| str0m::media::Rid::from(*r)).collect(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Tells the SFU a published track is muted (not forwarded) or unmuted.
    pub async fn set_muted(&self, track: LocalTrackId, muted: bool) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::SetMuted {
            track,
            muted,
            reply,
        })
        .await?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Simulates losing the network path while the WebSocket stays up: from now on the client
    /// neither sends nor reads any datagram (no STUN consent, no media). The SFU should notice the
    /// lost ICE consent, report `media_timeout` and remove the peer.
    pub async fn cut_media(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::CutMedia { reply }).await?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// The next event; `None` once the driver ended and every event was read.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// The next event, or `None` if none arrives within `timeout` (or the client is closed and
    /// drained).
    pub async fn next_event_timeout(&mut self, timeout: Duration) -> Option<ClientEvent> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// An event if one is queued.
    pub fn try_next_event(&mut self) -> Option<ClientEvent> {
        self.events.try_recv().ok()
    }

    /// Leaves gracefully: sends `leave`, closes the WebRTC session (RTCP BYE, SCTP shutdown, DTLS
    /// close_notify), closes the WebSocket with a close frame, and waits for the driver to end.
    pub async fn leave(mut self) {
        let (reply, rx) = oneshot::channel();
        if self.cmd.send(Command::Leave { reply }).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        self.join_task().await;
    }

    /// Vanishes without a goodbye, like a crashed process: the UDP socket and the WebSocket's TCP
    /// connection are dropped at once (the TCP connection with a reset), nothing is sent.
    pub async fn vanish(mut self) {
        if self.cmd.try_send(Command::Vanish).is_err() {
            if let Some(task) = &self.task {
                task.abort();
            }
        }
        self.join_task().await;
    }

    async fn join_task(&mut self) {
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(_) => {}
                Err(_) => tracing::warn!("sfu-client driver did not end in time"),
            }
        }
    }

    async fn command(&self, cmd: Command) -> Result<()> {
        self.cmd.send(cmd).await.map_err(|_| ClientError::Closed)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
