//! The Janus baseline: a participant of Janus's videoroom plugin, over Janus's WebSocket JSON API,
//! with one str0m peer connection per direction (Janus uses one for publishing and one for the
//! multistream subscription).
//!
//! `sfu-client` speaks edge-sfu's protocol only, so this module carries the small part of a
//! client that Janus needs: the JSON requests (`create`, `attach`, videoroom `join`/`configure`,
//! `listparticipants`, subscriber `join`/`start`, `keepalive`); the peer connections are
//! [`crate::peer`]'s, shared with the mediasoup client.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::error::{LoadgenError, Result};
use crate::json_ws::{self, Ws};
use crate::peer::{BaselineConn, BaselineJoin, NewPc, Peers, SendOffer, TxTracks};

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
        let v = json_ws::request(
            &mut self.ws,
            &msg,
            |v| {
                v.get("transaction").and_then(Value::as_str) == Some(tx.as_str())
                    && v.get("janus").and_then(Value::as_str) != Some("ack")
            },
            LoadgenError::Janus,
        )
        .await?;
        if v.get("janus").and_then(Value::as_str) == Some("error") {
            return Err(err(format!("janus error: {}", v["error"])));
        }
        if let Some(e) = v.pointer("/plugindata/data/error") {
            let code = v.pointer("/plugindata/data/error_code").cloned();
            let code = code.unwrap_or(Value::Null);
            return Err(err(format!("videoroom error {code}: {e}")));
        }
        Ok(v)
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

/// Publishes (when asked), waits for the other publishers, subscribes to all of them.
pub async fn connect(j: BaselineJoin<'_>, room: u64) -> Result<BaselineConn> {
    let deadline = Instant::now() + j.timeout;
    let mut s = Session::open(j.url).await?;
    let mut peers = Peers::new(j.reader.clone());
    let mut own_id = None;

    if j.audio || j.video {
        let h = s.attach().await?;
        let joined = s
            .message(
                h,
                json!({"request": "join", "ptype": "publisher", "room": room, "display": j.name}),
                None,
            )
            .await?;
        own_id = joined
            .pointer("/plugindata/data/id")
            .and_then(Value::as_u64);
        let SendOffer {
            mut pc,
            offer,
            pending,
            audio: amid,
            video: vmid,
        } = NewPc::send_offer(j.bind_ip, j.audio, j.video).await?;
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
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| err(format!("answer: {e}")))?;
        pc.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| err(format!("accepting janus's answer: {e}")))?;
        let tx = TxTracks::negotiated(&pc.rtc, amid, vmid, false)
            .ok_or_else(|| err("janus accepted no usable codec"))?;
        peers
            .start_publisher(pc, tx)
            .wait_connected("janus", deadline.saturating_duration_since(Instant::now()))
            .await?;
    }

    if j.subscribe_to > 0 {
        let h = s.attach().await?;
        // Wait until every publisher we should see is in the room.
        let feeds = loop {
            let list = s
                .message(
                    h,
                    json!({"request": "listparticipants", "room": room}),
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
        let mut body =
            json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams});
        if let Some(id) = own_id {
            body["private_id"] = json!(id);
        }
        let attached = s.message(h, body, None).await?;
        let sdp = attached
            .pointer("/jsep/sdp")
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("no offer sdp in {attached}")))?;
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| err(format!("offer: {e}")))?;
        let mut pc = NewPc::bind(j.bind_ip).await?;
        let answer = pc
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| err(format!("accepting janus's offer: {e}")))?;
        s.message(
            h,
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer.to_sdp_string()})),
        )
        .await?;
        peers
            .start_subscriber(pc)
            .wait_connected("janus", deadline.saturating_duration_since(Instant::now()))
            .await?;
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
    Ok(BaselineConn::new(peers, keepalive, stop_tx))
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
