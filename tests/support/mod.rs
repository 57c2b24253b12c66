//! Shared helpers of the integration tests: a guard around the real `edge-sfu` process, a tiny HTTP
//! GET for `/api/stats`, joining sfu-client participants, collecting their events, and a raw
//! WebSocket for hostile input.
#![allow(dead_code)]

pub mod media;
pub mod ops;
pub mod redis;
pub mod tokens;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sfu_client::{
    ChatVia, Client, ClientConfig, ClientEvent, ErrorCode, PeerId, ReceivedRtp, RemoteTrack,
};
use sfu_core::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How many lines of server output are kept for the failure report.
const LOG_LINES: usize = 4000;

/// The real `edge-sfu` binary, listening on an ephemeral port; killed on drop. If the test is
/// failing (panicking) when this drops, the tail of the server's stdout/stderr is printed.
pub struct Server {
    child: Child,
    /// The HTTP/WebSocket address.
    pub addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    /// Starts `edge-sfu --listen 127.0.0.1:0 --workers 2 --public-ip 127.0.0.1` and waits for its
    /// ready line. (`--public-ip` keeps the announced candidates, and so all traffic, on loopback.)
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Like [`Server::start`], with extra command line arguments.
    pub fn start_with(extra: &[&str]) -> Server {
        Self::start_listening("127.0.0.1:0", extra)
    }

    /// Like [`Server::start_with`], listening on `listen` instead of `127.0.0.1:0`.
    pub fn start_listening(listen: &str, extra: &[&str]) -> Server {
        Self::spawn(listen, extra, &[])
    }

    /// Like [`Server::start_with`], with these environment variables set for the process.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn("127.0.0.1:0", extra, env)
    }

    fn spawn(listen: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edge-sfu"))
            .envs(env.iter().copied())
            .args([
                "--listen",
                listen,
                "--workers",
                "2",
                "--public-ip",
                "127.0.0.1",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the edge-sfu binary");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        spawn_reader("stdout", stdout, log.clone(), Some(ready_tx.clone()));
        spawn_reader("stderr", stderr, log.clone(), Some(ready_tx));

        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(addr) => break addr,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                let tail = tail(&log, 200);
                panic!("edge-sfu exited before it was ready ({status}); output:\n{tail}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let tail = tail(&log, 200);
                panic!("edge-sfu printed no ready line within 30 s; output:\n{tail}");
            }
        };
        Server { child, addr, log }
    }

    /// `ws://ADDR/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit; its exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `n` lines the server printed.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// `GET /api/stats`, parsed.
    pub async fn stats(&self) -> Stats {
        let (status, body) = http_get(self.addr, "/api/stats")
            .await
            .unwrap_or_else(|e| panic!("GET /api/stats: {e}"));
        assert_eq!(status, 200, "GET /api/stats answered {status}: {body}");
        Stats::parse(&body)
    }

    /// Waits until the server holds no room and no peer, panicking after `timeout`.
    pub async fn until_empty(&self, timeout: Duration) -> Stats {
        self.stats_until(timeout, "an empty server", |s| s.rooms == 0 && s.peers == 0)
            .await
    }

    /// Polls `/api/stats` until `pred` holds; panics with the last stats after `timeout`.
    pub async fn stats_until(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Stats) -> bool,
    ) -> Stats {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats().await;
            if pred(&stats) {
                return stats;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for stats: {what}; last: {stats:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || std::env::var_os("EDGE_SFU_TEST_LOG").is_some() {
            eprintln!(
                "---- edge-sfu output (last 300 lines) ----\n{}",
                tail(&self.log, 300)
            );
        }
    }
}

fn spawn_reader(
    stream: &'static str,
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<VecDeque<String>>>,
    ready: Option<mpsc::Sender<SocketAddr>>,
) {
    std::thread::spawn(move || {
        let reader = BufReader::new(pipe);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let (Some(tx), Some(addr)) = (&ready, parse_ready(&line)) {
                let _ = tx.send(addr);
            }
            if std::env::var_os("EDGE_SFU_TEST_ECHO").is_some() {
                eprintln!("[edge-sfu {stream}] {line}");
            }
            let Ok(mut log) = log.lock() else { break };
            if log.len() >= LOG_LINES {
                log.pop_front();
            }
            log.push_back(format!("[{stream}] {line}"));
        }
    });
}

/// `edge-sfu ready: http://127.0.0.1:PORT/` (or `https://`) → the address.
fn parse_ready(line: &str) -> Option<SocketAddr> {
    let rest = line.split("edge-sfu ready: ").nth(1)?;
    let rest = rest
        .strip_prefix("http://")
        .or_else(|| rest.strip_prefix("https://"))?;
    let host_port = rest.split('/').next()?;
    host_port.trim().parse().ok()
}

fn tail(log: &Mutex<VecDeque<String>>, n: usize) -> String {
    let Ok(log) = log.lock() else {
        return String::new();
    };
    let skip = log.len().saturating_sub(n);
    log.iter()
        .skip(skip)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

/// A minimal HTTP/1.0 GET: returns the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    http(addr, "GET", path, None).await
}

/// One HTTP/1.0 request with an optional JSON body; returns the status and the body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<(u16, String), String> {
    let fut = async {
        let mut tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let body = json.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no header end in {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        let chunked = head.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("transfer-encoding:") && l.contains("chunked")
        });
        let body = if chunked {
            dechunk(body)?
        } else {
            body.to_string()
        };
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| format!("{method} {path} timed out"))?
}

fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .ok_or("bad chunk header".to_string())?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("short chunk".to_string())?;
        out.push_str(chunk);
        body = rest.get(size + 2..).ok_or("short chunk".to_string())?;
    }
}

/// `/api/stats`.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Rooms with at least one member.
    pub rooms: u64,
    /// Members in all rooms.
    pub peers: u64,
    /// RTP packets forwarded.
    pub forwarded_packets: u64,
    /// Dropped things, by reason.
    pub drops: BTreeMap<String, u64>,
    /// The whole document.
    pub raw: serde_json::Value,
}

impl Stats {
    fn parse(body: &str) -> Stats {
        let raw: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("/api/stats is not JSON ({e}): {body}"));
        let num = |k: &str| {
            raw.get(k)
                .and_then(|v| v.as_u64())
                .unwrap_or_else(|| panic!("/api/stats lacks a numeric {k:?}: {body}"))
        };
        let drops = raw
            .get("drops")
            .and_then(|d| d.as_object())
            .unwrap_or_else(|| panic!("/api/stats lacks a `drops` object: {body}"))
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect();
        Stats {
            rooms: num("rooms"),
            peers: num("peers"),
            forwarded_packets: num("forwardedPackets"),
            drops,
            raw,
        }
    }

    /// The sum of every drop counter.
    pub fn drops_total(&self) -> u64 {
        self.drops.values().sum()
    }
}

/// Joins `room` as `name`, publishing the given media, and waits until the media session is up,
/// everything is negotiated and the chat channel is open.
pub async fn join(server: &Server, room: &str, name: &str, audio: bool, video: bool) -> Client {
    let config = ClientConfig::new(server.ws_url(), room, name)
        .audio(audio)
        .video(video);
    join_with(config).await
}

/// Joins with any configuration and waits as [`join`] does.
pub async fn join_with(config: ClientConfig) -> Client {
    let (room, name) = (config.room.clone(), config.name.clone());
    let client = Client::connect(config)
        .await
        .unwrap_or_else(|e| panic!("{name} could not join {room}: {e}"));
    if let Err(e) = client.wait_negotiated(Duration::from_secs(20)).await {
        panic!(
            "{name} did not get connected and negotiated: {e}; status: {:?}",
            client.status()
        );
    }
    client
}

/// Waits until `client` receives `count` tracks of `publisher`.
pub async fn wait_tracks_of(client: &Client, publisher: PeerId, count: usize) -> Vec<RemoteTrack> {
    match client
        .wait_remote_tracks(publisher, count, Duration::from_secs(20))
        .await
    {
        Ok(tracks) => tracks,
        Err(e) => panic!(
            "{} did not receive {count} tracks of peer {publisher}: {e}; status: {:?}",
            client.name(),
            client.status()
        ),
    }
}

/// Everything one client has reported so far.
#[derive(Debug, Default)]
pub struct Seen {
    /// RTP packets, in arrival order.
    pub rtp: Vec<ReceivedRtp>,
    /// Chat lines: from, name, text, via.
    pub chats: Vec<(PeerId, String, String, ChatVia)>,
    /// `peerJoined` ids.
    pub joined: Vec<PeerId>,
    /// `peerLeft` ids.
    pub left: Vec<PeerId>,
    /// `error` messages from the SFU.
    pub server_errors: Vec<(ErrorCode, String)>,
    /// Local errors.
    pub errors: Vec<String>,
    /// Why the client ended, if it did.
    pub closed: Option<String>,
}

impl Seen {
    /// Moves every queued event of `client` in here.
    pub fn pump(&mut self, client: &mut Client) {
        while let Some(event) = client.try_next_event() {
            match event {
                ClientEvent::Rtp(rtp) => self.rtp.push(rtp),
                ClientEvent::Chat {
                    from,
                    name,
                    text,
                    via,
                } => self.chats.push((from, name, text, via)),
                ClientEvent::PeerJoined(p) => self.joined.push(p.id),
                ClientEvent::PeerLeft(id) => self.left.push(id),
                ClientEvent::ServerError { code, message } => {
                    self.server_errors.push((code, message))
                }
                ClientEvent::Error(e) => self.errors.push(e),
                ClientEvent::Closed(why) => self.closed = Some(why),
                _ => {}
            }
        }
    }

    /// RTP packets of one remote track, in arrival order.
    pub fn rtp_of(&self, track_id: &str) -> Vec<&ReceivedRtp> {
        self.rtp
            .iter()
            .filter(|p| p.track_id.as_deref() == Some(track_id))
            .collect()
    }
}

/// Polls `f` every 20 ms until it holds; panics after `timeout`.
pub async fn until(timeout: Duration, what: &str, f: impl FnMut() -> bool) {
    if !try_until(timeout, f).await {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// Polls `f` every 20 ms until it holds (true) or `timeout` passes (false).
pub async fn try_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A VP8 payload that any SFU treats as the start of a key frame: payload descriptor with S=1 and
/// partition 0, then a key-frame tag (P=0), the start code and 640x480; `tag` and filler follow.
pub fn vp8_keyframe_payload(tag: &str, filler: usize) -> Vec<u8> {
    let mut p = vec![
        0x10, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01,
    ];
    p.extend_from_slice(tag.as_bytes());
    p.extend((0..filler).map(|i| (i * 7 % 251) as u8));
    p
}

/// What one read from a [`RawWs`] gave.
#[derive(Debug)]
pub enum Next {
    /// A protocol message.
    Msg(ServerMessage),
    /// A text frame that is not a protocol message.
    Unparseable(String),
    /// A non-text frame.
    Other(String),
    /// The connection closed (close frame, end of stream or error).
    Closed(String),
    /// Nothing within the timeout.
    Timeout,
}

/// A bare WebSocket to the SFU, for sending whatever a test likes.
pub struct RawWs {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawWs {
    /// Connects to `ws://ADDR/ws`.
    pub async fn connect(server: &Server) -> RawWs {
        let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .expect("websocket connect");
        RawWs { ws }
    }

    /// Sends a text frame.
    pub async fn text(&mut self, text: impl Into<String>) -> Result<(), String> {
        self.ws
            .send(Message::text(text.into()))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends a binary frame.
    pub async fn binary(&mut self, data: Vec<u8>) -> Result<(), String> {
        self.ws
            .send(Message::binary(data))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends a protocol message.
    pub async fn send(&mut self, msg: &ClientMessage) -> Result<(), String> {
        let text = serde_json::to_string(msg).map_err(|e| e.to_string())?;
        self.text(text).await
    }

    /// Queues `n` copies of a text frame and flushes them at once.
    pub async fn burst(&mut self, text: &str, n: usize) -> Result<(), String> {
        for _ in 0..n {
            self.ws
                .feed(Message::text(text.to_string()))
                .await
                .map_err(|e| e.to_string())?;
        }
        self.ws.flush().await.map_err(|e| e.to_string())
    }

    /// Sends a `join` of `room` as `name` without waiting for the answer.
    pub async fn join_raw(&mut self, room: &str, name: &str) {
        self.send(&ClientMessage::Join {
            version: PROTOCOL_VERSION,
            room: room.into(),
            name: name.into(),
            capacity: None,
            token: None,
        })
        .await
        .expect("sending join");
    }

    /// Joins `room` as `name` and returns the peer id.
    pub async fn join(&mut self, room: &str, name: &str) -> PeerId {
        self.join_raw(room, name).await;
        loop {
            match self.next(Duration::from_secs(10)).await {
                Next::Msg(ServerMessage::Joined { peer_id, .. }) => return peer_id,
                Next::Msg(_) => {}
                other => panic!("no `joined` for {name}: {other:?}"),
            }
        }
    }

    /// The next frame, parsed.
    pub async fn next(&mut self, timeout: Duration) -> Next {
        loop {
            let frame = match tokio::time::timeout(timeout, self.ws.next()).await {
                Err(_) => return Next::Timeout,
                Ok(None) => return Next::Closed("end of stream".into()),
                Ok(Some(Err(e))) => return Next::Closed(format!("error: {e}")),
                Ok(Some(Ok(frame))) => frame,
            };
            return match frame {
                Message::Text(t) => match serde_json::from_str::<ServerMessage>(t.as_str()) {
                    Ok(m) => Next::Msg(m),
                    Err(_) => Next::Unparseable(t.to_string()),
                },
                Message::Close(c) => Next::Closed(format!("close frame {c:?}")),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => Next::Other(format!("{other:?}")),
            };
        }
    }

    /// Reads until an `error` message arrives (skipping room traffic such as `peerJoined`) and returns
    /// its code; panics on timeout or close, naming `what`.
    pub async fn expect_error(&mut self, what: &str) -> ErrorCode {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Msg(ServerMessage::Error { code, .. }) => return code,
                Next::Msg(_) | Next::Other(_) => {}
                Next::Unparseable(t) => panic!("{what}: unparseable reply {t:?}"),
                Next::Closed(why) => panic!("{what}: connection closed instead of an error: {why}"),
                Next::Timeout => panic!("{what}: no error reply within 10 s"),
            }
        }
    }

    /// Sends `ping` and waits for `pong` (skipping room traffic); panics otherwise.
    pub async fn expect_alive(&mut self, what: &str) {
        self.send(&ClientMessage::Ping)
            .await
            .unwrap_or_else(|e| panic!("{what}: sending ping failed: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Msg(ServerMessage::Pong) => return,
                Next::Msg(_) | Next::Other(_) => {}
                other => panic!("{what}: no pong: {other:?}"),
            }
        }
    }

    /// Closes the connection gracefully.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A genuine SDP offer from a str0m peer: one sendonly Opus m-line and the `chat` data channel.
/// What a real client would send first, for tests that speak the protocol by hand.
pub fn sendonly_audio_offer() -> String {
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .build(std::time::Instant::now());
    if let Ok(c) = Candidate::host("127.0.0.1:9".parse().expect("an address"), "udp") {
        rtc.add_local_candidate(c);
    }
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    api.add_channel("chat".into());
    let (offer, _pending) = api.apply().expect("an offer");
    offer.to_sdp_string()
}
