//! The Janus baseline: a participant of Janus's videoroom plugin, over Janus's WebSocket JSON API,
//! with one str0m peer connection per direction (Janus uses one for publishing and one for the
//! multistream subscription).
//!
//! `sfu-client` speaks edge-sfu's protocol only, so this module carries the small part of a
//! client that Janus needs: the JSON requests (`create`, `attach`, videoroom `join`/`configure`,
//! `listparticipants`, subscriber `join`/`start`, `keepalive`) and a str0m loop per peer
//! connection written like `sfu-client`'s driver (RTP mode, Opus and VP8 only, the same
//! sequence number and timestamp rules), so both servers are driven the same way.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sfu_client::handoff::{MediaReader, MediaSocket};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{LoadgenError, Result};
use crate::payload::Stamp;
use crate::transport::{Arrival, Media, Received};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Janus's videoroom plugin.
const VIDEOROOM: &str = "janus.plugin.videoroom";

fn err(what: impl Into<String>) -> LoadgenError {
    LoadgenError::Janus(what.into())
}

/// A Janus session on one WebSocket: request/response by transaction.
struct Session {
    ws: Ws,
    id: u64,
    next: u64,
}

impl Session {
    async fn open(url: &str) -> Result<Session> {
        let mut req = url
            .into_client_request()
            .map_err(|e| err(format!("bad janus url {url}: {e}")))?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "janus-protocol".parse().map_err(|_| err("header value"))?,
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .map_err(|e| err(format!("websocket to {url}: {e}")))?;
        let mut s = Session { ws, id: 0, next: 1 };
        let created = s.call(json!({"janus": "create"})).await?;
        s.id = created
            .pointer("/data/id")
            .and_then(Value::as_u64)
            .ok_or_else(|| err(format!("no session id in {created}")))?;
        Ok(s)
    }

    /// Sends `msg` with a fresh transaction (and the session id) and returns the first answer to
    /// it that is not an `ack`; Janus errors and plugin errors become `Err`.
    async fn call(&mut self, mut msg: Value) -> Result<Value> {
        let tx = format!("t{}", self.next);
        self.next += 1;
        msg["transaction"] = json!(tx);
        if self.id != 0 {
            msg["session_id"] = json!(self.id);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .map_err(|e| err(format!("websocket send: {e}")))?;
        loop {
            let frame = self
                .ws
                .next()
                .await
                .ok_or_else(|| err("janus closed the websocket"))?
                .map_err(|e| err(format!("websocket: {e}")))?;
            let Message::Text(text) = frame else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str())
                .map_err(|e| err(format!("unparseable janus message: {e}")))?;
            if v.get("transaction").and_then(Value::as_str) != Some(tx.as_str()) {
                continue;
            }
            match v.get("janus").and_then(Value::as_str) {
                Some("ack") => continue,
                Some("error") => return Err(err(format!("janus error: {}", v["error"]))),
                _ => {}
            }
            if let Some(e) = v.pointer("/plugindata/data/error") {
                let code = v.pointer("/plugindata/data/error_code").cloned();
                let code = code.unwrap_or(Value::Null);
                return Err(err(format!("videoroom error {code}: {e}")));
            }
            return Ok(v);
        }
    }

    async fn attach(&mut self) -> Result<u64> {
        let v = self
            .call(json!({"janus": "attach", "plugin": VIDEOROOM}))
            .await?;
        v.pointer("/data/id")
            .and_then(Value::as_u64)
            .ok_or_else(|| err(format!("no handle id in {v}")))
    }

    async fn message(&mut self, handle: u64, body: Value, jsep: Option<Value>) -> Result<Value> {
        let mut msg = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        self.call(msg).await
    }
}

/// Creates videoroom `room` (ignoring "already exists"), big enough for `publishers`.
pub async fn create_room(url: &str, room: u64, publishers: u32) -> Result<()> {
    let mut s = Session::open(url).await?;
    let h = s.attach().await?;
    let body = json!({
        "request": "create", "room": room, "publishers": publishers.max(1),
        "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0, "fir_freq": 0,
        "notify_joining": false, "permanent": false,
    });
    match s.message(h, body, None).await {
        Ok(_) => {}
        Err(LoadgenError::Janus(e)) if e.contains("error 427") => {}
        Err(e) => return Err(e),
    }
    let _ = s.ws.close(None).await;
    Ok(())
}

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
}

/// One str0m peer connection with its UDP socket, driven by its own task.
struct Pc {
    cmd: Option<mpsc::Sender<PcCmd>>,
    connected: watch::Receiver<Option<bool>>,
    task: JoinHandle<()>,
}

impl Pc {
    fn start(
        rtc: Rtc,
        udp: UdpSocket,
        local: SocketAddr,
        tx: HashMap<bool, TxTrack>,
        rx: PcReceive,
        dropped: Arc<AtomicU64>,
    ) -> Pc {
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (conn_tx, conn_rx) = watch::channel(None);
        let (arrivals, reader) = match rx {
            PcReceive::Nothing => (None, None),
            PcReceive::Events(a) => (Some(a), None),
            PcReceive::Reader(r) => (None, Some(r)),
        };
        let task = tokio::spawn(pc_loop(PcLoop {
            rtc,
            udp: MediaSocket::new(udp),
            local,
            tx,
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

    async fn wait_connected(&mut self, timeout: Duration) -> Result<()> {
        let wait = self.connected.wait_for(|c| c.is_some());
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(v)) if *v == Some(true) => Ok(()),
            Ok(_) => Err(err("the peer connection with janus failed")),
            Err(_) => Err(LoadgenError::Timeout("ICE/DTLS with janus".into())),
        }
    }
}

/// What a peer connection does with the media it receives.
enum PcReceive {
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
                            };
                            if tx.try_send(a).is_err() {
                                p.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing::debug!("janus peer connection: {e}");
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

fn new_rtc(local: SocketAddr) -> Result<Rtc> {
    let mut rtc = sfu_client::participant_rtc();
    let c = Candidate::host(local, "udp").map_err(|e| err(format!("host candidate: {e}")))?;
    rtc.add_local_candidate(c);
    Ok(rtc)
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

/// A joined Janus videoroom participant.
pub struct JanusConn {
    publisher: Option<Pc>,
    subscriber: Option<Pc>,
    /// Packets str0m opened on the subscriber connection (`None` when a reader takes them).
    arrivals: Option<mpsc::Receiver<Arrival>>,
    dropped: Arc<AtomicU64>,
    keepalive: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

/// What a Janus participant does.
#[derive(Debug, Clone)]
pub struct JanusJoin<'a> {
    /// `ws://HOST:PORT/` of Janus's WebSocket transport.
    pub url: &'a str,
    /// The IP our media sockets bind (a non-loopback address Janus can reach).
    pub bind_ip: IpAddr,
    /// The videoroom number.
    pub room: u64,
    /// Display name.
    pub name: &'a str,
    /// Publish audio.
    pub audio: bool,
    /// Publish video.
    pub video: bool,
    /// How many other publishers to wait for and subscribe to.
    pub subscribe_to: u32,
    /// Limit for the whole join.
    pub timeout: Duration,
    /// Reads the subscriber connection's media once DTLS is up (the lean receive path); without
    /// one, str0m opens it and [`JanusConn::recv`] returns each packet.
    pub reader: Option<Arc<dyn MediaReader>>,
}

impl JanusConn {
    /// Publishes (when asked), waits for the other publishers, subscribes to all of them.
    pub async fn connect(j: JanusJoin<'_>) -> Result<JanusConn> {
        let deadline = Instant::now() + j.timeout;
        let mut s = Session::open(j.url).await?;
        let dropped = Arc::new(AtomicU64::new(0));
        let (arr_tx, arr_rx) = mpsc::channel(65_536);
        let mut own_id = None;

        let mut publisher = None;
        if j.audio || j.video {
            let h = s.attach().await?;
            let joined = s
                .message(
                    h,
                    json!({"request": "join", "ptype": "publisher", "room": j.room, "display": j.name}),
                    None,
                )
                .await?;
            own_id = joined
                .pointer("/plugindata/data/id")
                .and_then(Value::as_u64);
            let udp = UdpSocket::bind(SocketAddr::new(j.bind_ip, 0)).await?;
            let local = udp.local_addr()?;
            let mut rtc = new_rtc(local)?;
            let mut api = rtc.sdp_api();
            let amid = j
                .audio
                .then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
            let vmid = j
                .video
                .then(|| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
            let (offer, pending) = api.apply().ok_or_else(|| err("no offer to make"))?;
            let answer = s
                .message(
                    h,
                    json!({"request": "configure", "audio": j.audio, "video": j.video}),
                    Some(json!({"type": "offer", "sdp": offer.to_sdp_string()})),
                )
                .await?;
            let sdp = answer
                .pointer("/jsep/sdp")
                .and_then(Value::as_str)
                .ok_or_else(|| err(format!("no answer sdp in {answer}")))?;
            let answer =
                SdpAnswer::from_sdp_string(sdp).map_err(|e| err(format!("answer: {e}")))?;
            rtc.sdp_api()
                .accept_answer(pending, answer)
                .map_err(|e| err(format!("accepting janus's answer: {e}")))?;
            let (seq, ts) = random_start();
            let mut tx = HashMap::new();
            for (mid, video) in [(amid, false), (vmid, true)] {
                let Some(mid) = mid else { continue };
                let pt = negotiated_pt(&rtc, mid, video)
                    .ok_or_else(|| err("janus accepted no usable codec"))?;
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
                    },
                );
            }
            let mut pc = Pc::start(rtc, udp, local, tx, PcReceive::Nothing, dropped.clone());
            pc.wait_connected(deadline.saturating_duration_since(Instant::now()))
                .await?;
            publisher = Some(pc);
        }

        let mut subscriber = None;
        if j.subscribe_to > 0 {
            let h = s.attach().await?;
            // Wait until every publisher we should see is in the room.
            let feeds = loop {
                let list = s
                    .message(
                        h,
                        json!({"request": "listparticipants", "room": j.room}),
                        None,
                    )
                    .await?;
                let feeds: Vec<u64> = list
                    .pointer("/plugindata/data/participants")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter(|p| p.get("publisher").and_then(Value::as_bool) == Some(true))
                            .filter_map(|p| p.get("id").and_then(Value::as_u64))
                            .filter(|id| Some(*id) != own_id)
                            .collect()
                    })
                    .unwrap_or_default();
                if feeds.len() >= j.subscribe_to as usize {
                    break feeds;
                }
                if Instant::now() > deadline {
                    return Err(LoadgenError::Timeout(format!(
                        "{} publishers in janus room {} (saw {})",
                        j.subscribe_to,
                        j.room,
                        feeds.len()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
            let mut body = json!({"request": "join", "ptype": "subscriber", "room": j.room, "streams": streams});
            if let Some(id) = own_id {
                body["private_id"] = json!(id);
            }
            let attached = s.message(h, body, None).await?;
            let sdp = attached
                .pointer("/jsep/sdp")
                .and_then(Value::as_str)
                .ok_or_else(|| err(format!("no offer sdp in {attached}")))?;
            let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| err(format!("offer: {e}")))?;
            let udp = UdpSocket::bind(SocketAddr::new(j.bind_ip, 0)).await?;
            let local = udp.local_addr()?;
            let mut rtc = new_rtc(local)?;
            let answer = rtc
                .sdp_api()
                .accept_offer(offer)
                .map_err(|e| err(format!("accepting janus's offer: {e}")))?;
            s.message(
                h,
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": answer.to_sdp_string()})),
            )
            .await?;
            let rx = match &j.reader {
                Some(reader) => PcReceive::Reader(reader.clone()),
                None => PcReceive::Events(arr_tx),
            };
            let mut pc = Pc::start(rtc, udp, local, HashMap::new(), rx, dropped.clone());
            pc.wait_connected(deadline.saturating_duration_since(Instant::now()))
                .await?;
            subscriber = Some(pc);
        }

        // From here on the WebSocket only keeps the session alive.
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let keepalive = tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_secs(15));
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    _ = iv.tick() => {
                        let tx = format!("k{}", s.next);
                        s.next += 1;
                        let msg = json!({"janus": "keepalive", "session_id": s.id, "transaction": tx});
                        if s.ws.send(Message::text(msg.to_string())).await.is_err() {
                            return;
                        }
                    }
                    m = s.ws.next() => if m.is_none() { return },
                }
            }
            let msg = json!({"janus": "destroy", "session_id": s.id, "transaction": "bye"});
            let _ = s.ws.send(Message::text(msg.to_string())).await;
            let _ = s.ws.close(None).await;
        });
        Ok(JanusConn {
            publisher,
            subscriber,
            arrivals: j.reader.is_none().then_some(arr_rx),
            dropped,
            keepalive,
            stop: stop_tx,
        })
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
            Err(mpsc::error::TrySendError::Closed(_)) => Err(err("the publisher connection ended")),
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

    /// Leaves: destroys the session (Janus hangs up both connections) and stops the tasks.
    pub async fn leave(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.keepalive).await;
        for pc in [self.publisher.take(), self.subscriber.take()]
            .into_iter()
            .flatten()
        {
            drop(pc.cmd);
            pc.task.abort();
        }
    }
}

/// A Janus process started for a run, with its own minimal configuration; killed on drop.
pub struct JanusProcess {
    child: std::process::Child,
    dir: PathBuf,
    /// `ws://127.0.0.1:PORT/`.
    pub url: String,
}

impl JanusProcess {
    /// Writes a configuration under a fresh temporary folder (WebSockets on 127.0.0.1:`ws_port`,
    /// videoroom only, ICE on `iface` only, RTP ports 20000-40000) and starts `janus` with it.
    pub fn spawn(
        janus: &Path,
        ws_port: u16,
        iface: &str,
        cpus: Option<Vec<usize>>,
    ) -> Result<JanusProcess> {
        let dir = std::env::temp_dir().join(format!("edge-sfu-bench-janus-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let lib = [
            "/usr/lib/x86_64-linux-gnu/janus",
            "/usr/lib/janus",
            "/usr/local/lib/janus",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("plugins").exists())
        .ok_or_else(|| err("janus plugins folder not found"))?;
        let d = dir.display();
        let l = lib.display();
        std::fs::write(
            dir.join("janus.jcfg"),
            format!(
                "general: {{\n configs_folder = \"{d}\"\n plugins_folder = \"{l}/plugins\"\n transports_folder = \"{l}/transports\"\n events_folder = \"{l}/events\"\n loggers_folder = \"{l}/loggers\"\n debug_level = 2\n admin_secret = \"unused\"\n protected_folders = []\n}}\n\
                 media: {{\n rtp_port_range = \"20000-40000\"\n no_media_timer = 5\n}}\n\
                 nat: {{\n ice_enforce_list = \"{iface}\"\n ignore_mdns = true\n}}\n\
                 plugins: {{\n disable = \"libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so\"\n}}\n\
                 transports: {{\n disable = \"libjanus_http.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so\"\n}}\n\
                 events: {{\n broadcast = false\n}}\n"
            ),
        )?;
        std::fs::write(
            dir.join("janus.transport.websockets.jcfg"),
            format!("general: {{\n ws = true\n ws_port = {ws_port}\n ws_ip = \"127.0.0.1\"\n wss = false\n}}\nadmin: {{\n admin_ws = false\n admin_wss = false\n}}\n"),
        )?;
        std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
        let mut cmd = std::process::Command::new(janus);
        cmd.arg("-C")
            .arg(dir.join("janus.jcfg"))
            .arg("-F")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(cpus) = cpus {
            use std::os::unix::process::CommandExt;
            // SAFETY: only the sched_setaffinity system call runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || crate::procfs::set_affinity(0, &cpus));
            }
        }
        let child = cmd.spawn()?;
        Ok(JanusProcess {
            child,
            dir,
            url: format!("ws://127.0.0.1:{ws_port}/"),
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the WebSocket transport answers a `create`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(err(format!("janus exited at start ({status})")));
            }
            if let Ok(Ok(mut s)) =
                tokio::time::timeout(Duration::from_secs(2), Session::open(&self.url)).await
            {
                let _ = s.ws.close(None).await;
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LoadgenError::Timeout("janus to come up".into()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
