//! How one simulated participant reaches the media server: a real WebRTC session with edge-sfu
//! ([`sfu_client::Client`]), the Janus and mediasoup baselines ([`crate::janus`],
//! [`crate::mediasoup`]), or plain UDP with the [`crate::reflector`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sfu_client::handoff::{MediaReader, MediaSocket};
use sfu_client::{Client, ClientConfig, ClientError, ClientEvent, LocalTrackId};
use tokio::net::UdpSocket;

use crate::error::{LoadgenError, Result};
use crate::payload::Stamp;
use crate::reflector::{TAG_ACK, TAG_LEAVE, TAG_REGISTER};

/// Where the participants go.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// edge-sfu's signaling WebSocket, `ws://HOST:PORT/ws`.
    Sfu {
        /// The WebSocket URL.
        ws_url: String,
    },
    /// A plain UDP reflector.
    Reflector {
        /// Its UDP address.
        addr: SocketAddr,
    },
    /// Janus's videoroom plugin.
    Janus {
        /// `ws://HOST:PORT/` of its WebSocket transport.
        ws_url: String,
        /// The IP the media sockets bind (Janus ignores loopback candidates).
        bind_ip: std::net::IpAddr,
    },
    /// The mediasoup baseline server (`sfu-loadgen/mediasoup/server.mjs`).
    Mediasoup {
        /// Its signaling WebSocket, `ws://HOST:PORT/`.
        ws_url: String,
    },
}

/// The videoroom number of room `index` on Janus.
pub fn janus_room(index: u32) -> u64 {
    1000 + u64::from(index)
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// Opus-like audio.
    Audio,
    /// VP8-like video.
    Video,
}

/// One received generator packet.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Its stamp.
    pub stamp: Stamp,
    /// Payload length in bytes.
    pub len: usize,
    /// When the datagram carrying it was read.
    pub at: Instant,
    /// The RTP marker bit: the last packet of a video frame.
    pub marker: bool,
}

/// What [`Conn::recv`] returns.
#[derive(Debug)]
pub enum Received {
    /// A generator packet.
    Packet(Arrival),
    /// Something else (signaling event, foreign packet): nothing to count.
    Other,
    /// The connection ended.
    Closed(String),
}

/// A connected participant.
pub enum Conn {
    /// A WebRTC participant of edge-sfu.
    Rtc {
        /// The sfu-client participant.
        client: Box<Client>,
        /// Its audio track, when it publishes audio.
        audio: Option<LocalTrackId>,
        /// Its video track, when it publishes video.
        video: Option<LocalTrackId>,
    },
    /// A plain UDP participant of the reflector.
    Udp(UdpConn),
    /// A participant of a baseline server: a Janus videoroom or mediasoup.
    Baseline(Box<crate::peer::BaselineConn>),
}

/// A plain UDP participant: a fake 12-byte RTP header before the payload.
pub struct UdpConn {
    socket: MediaSocket,
    server: SocketAddr,
    seq: [u16; 2],
    ssrc: u32,
    buf: Vec<u8>,
}

impl Conn {
    /// Joins `room` (named `name`) at `endpoint`, publishing the media asked for, and waits until
    /// it can send and receive. The whole join is bounded by `timeout`. `others` is the number of
    /// other publishers in the room (Janus and mediasoup wait for them to subscribe). With a `reader`, the
    /// received media goes to it (the lean receive path, [`crate::lean_rx`]) instead of
    /// [`Conn::recv`].
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        endpoint: &Endpoint,
        room: &str,
        room_index: u32,
        name: &str,
        audio: bool,
        video: bool,
        others: u32,
        timeout: Duration,
        reader: Option<Arc<dyn MediaReader>>,
    ) -> Result<Conn> {
        let baseline = |url, bind_ip| crate::peer::BaselineJoin {
            url,
            bind_ip,
            room,
            name,
            audio,
            video,
            subscribe_to: others,
            timeout,
            reader: reader.clone(),
        };
        match endpoint {
            Endpoint::Janus { ws_url, bind_ip } => {
                let join = baseline(ws_url, *bind_ip);
                let conn = crate::janus::connect(join, janus_room(room_index)).await?;
                Ok(Conn::Baseline(Box::new(conn)))
            }
            Endpoint::Mediasoup { ws_url } => {
                // The server listens on loopback only.
                let join = baseline(ws_url, std::net::Ipv4Addr::LOCALHOST.into());
                let conn = crate::mediasoup::connect(join).await?;
                Ok(Conn::Baseline(Box::new(conn)))
            }
            Endpoint::Sfu { ws_url } => {
                let mut config = ClientConfig::new(ws_url.clone(), room, name)
                    .audio(audio)
                    .video(video)
                    // A receive-only client has nothing to offer but the `chat` data channel, and
                    // the SFU only offers after answering a first offer: keep the channel there.
                    .data_channel(!audio && !video);
                config.connect_timeout = timeout;
                if let Some(reader) = reader {
                    config = config.media_reader(reader).deliver_rtp(false);
                }
                let client = Client::connect(config).await?;
                client.wait_negotiated(timeout).await?;
                let (a, v) = (client.audio_track(), client.video_track());
                Ok(Conn::Rtc {
                    client: Box::new(client),
                    audio: a,
                    video: v,
                })
            }
            Endpoint::Reflector { addr } => {
                let conn =
                    tokio::time::timeout(timeout, UdpConn::register(*addr, room_index, reader))
                        .await
                        .map_err(|_| {
                            LoadgenError::Timeout("the reflector's registration answer".into())
                        })??;
                Ok(Conn::Udp(conn))
            }
        }
    }

    /// Queues one packet for sending without waiting. `Ok(false)` when a queue was full and the
    /// packet was dropped before reaching the network.
    pub fn send(&mut self, media: Media, payload: Vec<u8>, marker: bool) -> Result<bool> {
        match self {
            Conn::Rtc {
                client,
                audio,
                video,
            } => {
                let track = match media {
                    Media::Audio => *audio,
                    Media::Video => *video,
                };
                let Some(track) = track else {
                    return Ok(false);
                };
                let payload: Arc<[u8]> = payload.into();
                match client.queue_rtp(track, payload, marker) {
                    Ok(()) => Ok(true),
                    Err(ClientError::QueueFull) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            Conn::Udp(u) => u.send(media, &payload, marker),
            Conn::Baseline(b) => b.peers_mut().send(media, payload, marker),
        }
    }

    /// Waits for the next received packet or event.
    pub async fn recv(&mut self) -> Received {
        match self {
            Conn::Rtc { client, .. } => match client.next_event().await {
                Some(ClientEvent::Rtp(rtp)) => match Stamp::parse(&rtp.payload) {
                    Some(stamp) => Received::Packet(Arrival {
                        stamp,
                        len: rtp.payload.len(),
                        at: rtp.received_at,
                        marker: rtp.marker,
                    }),
                    None => Received::Other,
                },
                Some(ClientEvent::Closed(why)) => Received::Closed(why),
                Some(_) => Received::Other,
                None => Received::Closed("the client's event queue closed".into()),
            },
            Conn::Udp(u) => u.recv().await,
            Conn::Baseline(b) => b.peers_mut().recv().await,
        }
    }

    /// Packets the WebRTC client could not hand to the caller (its event queue was full).
    pub fn events_dropped(&self) -> u64 {
        match self {
            Conn::Rtc { client, .. } => client.counters().events_dropped,
            Conn::Udp(_) => 0,
            Conn::Baseline(b) => b.peers().events_dropped(),
        }
    }

    /// Leaves gracefully.
    pub async fn leave(self) {
        match self {
            Conn::Rtc { client, .. } => client.leave().await,
            Conn::Baseline(b) => b.leave().await,
            Conn::Udp(u) => {
                // Twice: a lost leave only leaves a dead member behind, but be tidy.
                for _ in 0..2 {
                    let _ = u.socket.send_to(&TAG_LEAVE, u.server).await;
                }
            }
        }
    }
}

impl UdpConn {
    /// Registers with the reflector; a `reader` then takes the socket's reading over.
    async fn register(
        server: SocketAddr,
        room: u32,
        reader: Option<Arc<dyn MediaReader>>,
    ) -> Result<UdpConn> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let mut reg = TAG_REGISTER.to_vec();
        reg.extend_from_slice(&room.to_le_bytes());
        let mut buf = vec![0u8; 2048];
        loop {
            socket.send_to(&reg, server).await?;
            match tokio::time::timeout(Duration::from_millis(250), socket.recv_from(&mut buf)).await
            {
                Ok(Ok((n, from))) if from == server && buf.get(..n) == Some(&TAG_ACK[..]) => break,
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
        let local = socket.local_addr()?;
        let mut socket = MediaSocket::new(socket);
        if let Some(reader) = reader {
            socket.hand_over(None, reader.as_ref())?;
        }
        Ok(UdpConn {
            socket,
            server,
            seq: [0, 0],
            ssrc: u32::from(local.port()) << 8 | 0x5a,
            buf,
        })
    }

    fn send(&mut self, media: Media, payload: &[u8], marker: bool) -> Result<bool> {
        let idx = usize::from(media == Media::Video);
        let seq = self.seq[idx];
        self.seq[idx] = seq.wrapping_add(1);
        let pt: u8 = if media == Media::Video { 96 } else { 111 };
        let mut dgram = Vec::with_capacity(12 + payload.len());
        dgram.push(0x80);
        dgram.push(pt | if marker { 0x80 } else { 0 });
        dgram.extend_from_slice(&seq.to_be_bytes());
        dgram.extend_from_slice(&0u32.to_be_bytes());
        dgram.extend_from_slice(&(self.ssrc + idx as u32).to_be_bytes());
        dgram.extend_from_slice(payload);
        match self.socket.try_send_to(&dgram, self.server) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn recv(&mut self) -> Received {
        match self.socket.recv_from(&mut self.buf).await {
            Ok((n, _)) => {
                let at = Instant::now();
                match self.buf.get(12..n).and_then(Stamp::parse) {
                    Some(stamp) => Received::Packet(Arrival {
                        stamp,
                        len: n - 12,
                        at,
                        marker: self.buf[1] & 0x80 != 0,
                    }),
                    None => Received::Other,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Received::Other,
            Err(e) => Received::Closed(format!("udp receive: {e}")),
        }
    }
}
