//! The str0m side of the baseline clients ([`crate::janus`], [`crate::mediasoup`]): one peer
//! connection per direction, each driven by its own task, written like `sfu-client`'s driver
//! (RTP mode, Opus and VP8 only, the same sequence number and timestamp rules), so every server
//! is driven the same way. Only the signaling differs between the baselines.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sfu_client::handoff::{MediaReader, MediaSocket};
use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::{LoadgenError, Result};
use crate::payload::{vp8_framed, Stamp};
use crate::transport::{Arrival, Media, Received};

/// What the application asks a peer connection task.
enum PcCmd {
    Send {
        media: Media,
        payload: Arc<[u8]>,
        marker: bool,
    },
}

/// Per published track: what `write_rtp` needs, kept like `sfu-client` does.
struct TxTrack {
    mid: Mid,
    pt: Pt,
    next_seq: u64,
    timestamp: u32,
    new_frame: bool,
    started: bool,
    ticks: u32,
    nackable: bool,
    /// Put a VP8 payload descriptor before the stamp ([`vp8_framed`]).
    vp8_framed: bool,
}

/// The published tracks of a sending peer connection, by "is video".
pub struct TxTracks(HashMap<bool, TxTrack>);

impl TxTracks {
    /// None: a receiving connection.
    pub fn none() -> TxTracks {
        TxTracks(HashMap::new())
    }

    /// The tracks of `rtc` once its negotiation is done: audio on `audio`, video on `video`,
    /// each with the payload type the server accepted. `vp8_framed` puts a VP8 payload
    /// descriptor before every video payload ([`vp8_framed`]). `None` when the server accepted
    /// no usable codec for one of them.
    pub fn negotiated(
        rtc: &Rtc,
        audio: Option<Mid>,
        video: Option<Mid>,
        vp8_framed: bool,
    ) -> Option<TxTracks> {
        let (seq, ts) = random_start();
        let mut tx = HashMap::new();
        for (mid, video) in [(audio, false), (video, true)] {
            let Some(mid) = mid else { continue };
            let pt = negotiated_pt(rtc, mid, video)?;
            tx.insert(
                video,
                TxTrack {
                    mid,
                    pt,
                    next_seq: seq,
                    timestamp: ts,
                    new_frame: true,
                    started: false,
                    ticks: if video { 3000 } else { 960 },
                    nackable: video,
                    vp8_framed: video && vp8_framed,
                },
            );
        }
        Some(TxTracks(tx))
    }
}

/// One str0m peer connection with its UDP socket, driven by its own task.
pub struct Pc {
    cmd: Option<mpsc::Sender<PcCmd>>,
    connected: watch::Receiver<Option<bool>>,
    task: JoinHandle<()>,
}

/// A str0m session for a baseline and the UDP socket it will use.
pub struct NewPc {
    /// The session: Opus and VP8 in RTP mode (as `sfu-client`), one host candidate.
    pub rtc: Rtc,
    /// Its socket.
    pub udp: UdpSocket,
    /// The socket's address.
    pub local: SocketAddr,
}

/// What a participant of a baseline server (Janus, mediasoup) does.
#[derive(Debug, Clone)]
pub struct BaselineJoin<'a> {
    /// The server's WebSocket, `ws://HOST:PORT/`.
    pub url: &'a str,
    /// The IP our media sockets bind (an address the server can reach).
    pub bind_ip: IpAddr,
    /// The room's name.
    pub room: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Publish audio.
    pub audio: bool,
    /// Publish video.
    pub video: bool,
    /// How many other publishers to wait for and receive.
    pub subscribe_to: u32,
    /// Limit for the whole join.
    pub timeout: Duration,
    /// Reads the receiving connection's media once DTLS is up (the lean receive path); without
    /// one, str0m opens it and [`BaselineConn::peers_mut`]'s `recv` returns each packet.
    pub reader: Option<Arc<dyn MediaReader>>,
}

/// A sending connection's offer, before the server answers it.
pub struct SendOffer {
    /// The connection, not started yet.
    pub pc: NewPc,
    /// The offer for the server.
    pub offer: SdpOffer,
    /// What takes the server's answer.
    pub pending: SdpPendingOffer,
    /// The audio m-line, when it sends audio.
    pub audio: Option<Mid>,
    /// The video m-line, when it sends video.
    pub video: Option<Mid>,
}

impl NewPc {
    /// Binds a socket on `ip` and makes a session with it as the host candidate.
    pub async fn bind(ip: IpAddr) -> Result<NewPc> {
        let udp = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = udp.local_addr()?;
        let mut rtc = sfu_client::participant_rtc();
        let c = Candidate::host(local, "udp")
            .map_err(|e| LoadgenError::Peer(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(c);
        Ok(NewPc { rtc, udp, local })
    }

    /// Binds a connection on `ip` and makes its offer to send `audio` and/or `video` (send-only
    /// m-lines, Opus and VP8).
    pub async fn send_offer(ip: IpAddr, audio: bool, video: bool) -> Result<SendOffer> {
        let mut pc = NewPc::bind(ip).await?;
        let mut api = pc.rtc.sdp_api();
        let audio =
            audio.then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let video =
            video.then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| LoadgenError::Peer("no offer to make: nothing to send".into()))?;
        Ok(SendOffer {
            pc,
            offer,
            pending,
            audio,
            video,
        })
    }

    /// Starts the task driving the negotiated session; it sends `tx` and treats what it receives
    /// as `rx` says.
    pub fn start(self, tx: TxTracks, rx: PcReceive, dropped: Arc<AtomicU64>) -> Pc {
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (conn_tx, conn_rx) = watch::channel(None);
        let (arrivals, reader) = match rx {
            PcReceive::Nothing => (None, None),
            PcReceive::Events(a) => (Some(a), None),
            PcReceive::Reader(r) => (None, Some(r)),
        };
        let task = tokio::spawn(pc_loop(PcLoop {
            rtc: self.rtc,
            udp: MediaSocket::new(self.udp),
            local: self.local,
            tx: tx.0,
            arrivals,
            reader,
            dropped,
            cmd: cmd_rx,
            connected: conn_tx,
        }));
        Pc {
            cmd: Some(cmd_tx),
            connected: conn_rx,
            task,
        }
    }
}

impl Pc {
    /// Waits until ICE and DTLS are up with `server`.
    pub async fn wait_connected(&mut self, server: &str, timeout: Duration) -> Result<()> {
        let wait = self.connected.wait_for(|c| c.is_some());
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(v)) if *v == Some(true) => Ok(()),
            Ok(_) => Err(LoadgenError::Peer(format!(
                "the peer connection with {server} failed"
            ))),
            Err(_) => Err(LoadgenError::Timeout(format!("ICE/DTLS with {server}"))),
        }
    }

    fn stop(mut self) {
        self.cmd.take();
        self.task.abort();
    }
}

/// What a peer connection does with the media it receives.
pub enum PcReceive {
    /// It receives none (the publisher connection).
    Nothing,
    /// str0m opens it and each packet becomes an [`Arrival`] on this queue.
    Events(mpsc::Sender<Arrival>),
    /// Once DTLS is up this reader takes the socket over (the lean receive path).
    Reader(Arc<dyn MediaReader>),
}

struct PcLoop {
    rtc: Rtc,
    udp: MediaSocket,
    local: SocketAddr,
    /// Published tracks by "is video".
    tx: HashMap<bool, TxTrack>,
    arrivals: Option<mpsc::Sender<Arrival>>,
    /// Takes the socket's reading over once DTLS is up.
    reader: Option<Arc<dyn MediaReader>>,
    dropped: Arc<AtomicU64>,
    cmd: mpsc::Receiver<PcCmd>,
    connected: watch::Sender<Option<bool>>,
}

async fn pc_loop(mut p: PcLoop) {
    let mut buf = vec![0u8; 2048];
    loop {
        // Drain str0m to its next timeout, like sfu-client's driver.
        let deadline = loop {
            match p.rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => {
                    let _ = p.udp.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        if let (Some(reader), Some(srtp)) = (p.reader.take(), p.rtc.srtp_receiver())
                        {
                            if let Err(e) = p.udp.hand_over(Some(srtp), reader.as_ref()) {
                                tracing::warn!("lean receiver refused the socket: {e}");
                            }
                        }
                        p.connected.send_replace(Some(true));
                    }
                    Event::RtpPacket(pkt) => {
                        if let (Some(tx), Some(stamp)) = (&p.arrivals, Stamp::parse(&pkt.payload)) {
                            let a = Arrival {
                                stamp,
                                len: pkt.payload.len(),
                                at: pkt.timestamp,
                                marker: pkt.header.marker,
                            };
                            if tx.try_send(a).is_err() {
                                p.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing::debug!("baseline peer connection: {e}");
                    p.connected.send_replace(Some(false));
                    return;
                }
            }
        };
        if !p.rtc.is_alive() {
            p.connected.send_replace(Some(false));
            return;
        }
        let now = Instant::now();
        let deadline = deadline.min(now + Duration::from_secs(1)).max(now);
        tokio::select! {
            c = p.cmd.recv() => match c {
                None => return,
                Some(PcCmd::Send { media, payload, marker }) => write(&mut p, media, payload, marker),
            },
            r = p.udp.recv_from(&mut buf) => {
                if let Ok((n, source)) = r {
                    if let Some(contents) = buf.get(..n) {
                        if let Ok(rcv) = Receive::new(Protocol::Udp, source, p.local, contents) {
                            let _ = p.rtc.handle_input(Input::Receive(Instant::now(), rcv));
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = p.rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
}

fn write(p: &mut PcLoop, media: Media, payload: Arc<[u8]>, marker: bool) {
    let Some(t) = p.tx.get_mut(&(media == Media::Video)) else {
        return;
    };
    if t.started && t.new_frame {
        t.timestamp = t.timestamp.wrapping_add(t.ticks);
    }
    let payload = if t.vp8_framed {
        vp8_framed(&payload, t.new_frame).into()
    } else {
        payload
    };
    let mut api = p.rtc.direct_api();
    let Some(stream) = api.stream_tx_by_mid(t.mid, None) else {
        return;
    };
    stream.write_rtp(
        RtpWrite::new(
            t.pt,
            t.next_seq.into(),
            t.timestamp,
            Instant::now(),
            payload,
        )
        .marker(marker)
        .nackable(t.nackable),
    );
    t.next_seq += 1;
    t.started = true;
    t.new_frame = marker;
    // As sfu-client does: str0m sends a written packet only when fed time.
    let _ = p.rtc.handle_input(Input::Timeout(Instant::now()));
}

fn negotiated_pt(rtc: &Rtc, mid: Mid, video: bool) -> Option<Pt> {
    let media = rtc.media(mid)?;
    let want = if video { Codec::Vp8 } else { Codec::Opus };
    let params = rtc.codec_config().params();
    media.remote_pts().iter().copied().find(|pt| {
        params
            .iter()
            .any(|p| p.pt() == *pt && p.spec().codec == want)
    })
}

fn random_start() -> (u64, u32) {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    (u64::from(n & 0x3fff), n.wrapping_mul(2_654_435_761))
}

/// A baseline participant's two peer connections (either may be absent) and what they received.
pub struct Peers {
    publisher: Option<Pc>,
    subscriber: Option<Pc>,
    /// Packets str0m opened on the subscriber connection (`None` when a reader takes them).
    arrivals: Option<mpsc::Receiver<Arrival>>,
    dropped: Arc<AtomicU64>,
    /// Where the subscriber connection should put what str0m opens.
    arrivals_tx: Option<mpsc::Sender<Arrival>>,
    reader: Option<Arc<dyn MediaReader>>,
}

impl Peers {
    /// No connections yet; the subscriber connection will hand its media to `reader` when there
    /// is one (the lean receive path), else queue it for [`Peers::recv`].
    pub fn new(reader: Option<Arc<dyn MediaReader>>) -> Peers {
        let (tx, rx) = mpsc::channel(65_536);
        let lean = reader.is_some();
        Peers {
            publisher: None,
            subscriber: None,
            arrivals: (!lean).then_some(rx),
            dropped: Arc::new(AtomicU64::new(0)),
            arrivals_tx: (!lean).then_some(tx),
            reader,
        }
    }

    /// Starts the publisher connection.
    pub fn start_publisher(&mut self, pc: NewPc, tx: TxTracks) -> &mut Pc {
        let pc = pc.start(tx, PcReceive::Nothing, self.dropped.clone());
        self.publisher.insert(pc)
    }

    /// Starts the subscriber connection.
    pub fn start_subscriber(&mut self, pc: NewPc) -> &mut Pc {
        let rx = match (&self.reader, self.arrivals_tx.take()) {
            (Some(reader), _) => PcReceive::Reader(reader.clone()),
            (None, Some(tx)) => PcReceive::Events(tx),
            (None, None) => PcReceive::Nothing,
        };
        let pc = pc.start(TxTracks::none(), rx, self.dropped.clone());
        self.subscriber.insert(pc)
    }

    /// Queues one packet on the publisher connection; `Ok(false)` when its queue is full.
    pub fn send(&mut self, media: Media, payload: Vec<u8>, marker: bool) -> Result<bool> {
        let Some(cmd) = self.publisher.as_ref().and_then(|p| p.cmd.as_ref()) else {
            return Ok(false);
        };
        match cmd.try_send(PcCmd::Send {
            media,
            payload: payload.into(),
            marker,
        }) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(LoadgenError::Peer("the publisher connection ended".into()))
            }
        }
    }

    /// The next packet received on the subscriber connection (never, when a reader takes the
    /// media).
    pub async fn recv(&mut self) -> Received {
        let (Some(_), Some(arrivals)) = (&self.subscriber, &mut self.arrivals) else {
            return std::future::pending().await;
        };
        match arrivals.recv().await {
            Some(a) => Received::Packet(a),
            None => Received::Closed("the subscriber connection ended".into()),
        }
    }

    /// Packets lost between the peer connection task and the caller.
    pub fn events_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops both connections' tasks.
    pub fn stop(&mut self) {
        for pc in [self.publisher.take(), self.subscriber.take()]
            .into_iter()
            .flatten()
        {
            pc.stop();
        }
    }
}

/// A joined participant of a baseline server (Janus, mediasoup): its two peer connections and
/// the task that keeps its signaling open and says goodbye in the server's protocol when told to.
pub struct BaselineConn {
    peers: Peers,
    signaling: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl BaselineConn {
    /// A participant whose `signaling` task ends the server side once `stop` turns true.
    pub fn new(peers: Peers, signaling: JoinHandle<()>, stop: watch::Sender<bool>) -> Self {
        BaselineConn {
            peers,
            signaling,
            stop,
        }
    }

    /// The two peer connections: packets go out on one and come in on the other.
    pub fn peers_mut(&mut self) -> &mut Peers {
        &mut self.peers
    }

    /// The two peer connections, for their counters.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Leaves: the signaling task says goodbye (within 2 s), then the peer connections stop.
    pub async fn leave(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.signaling).await;
        self.peers.stop();
    }
}
