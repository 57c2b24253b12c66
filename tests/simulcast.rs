//! Simulcast, layer selection, keyframe handling, active speaker, mute and loss recovery through
//! the real server over real sockets.
//!
//! Publishers are sfu-client participants that send synthetic VP8: every frame carries a real VP8
//! payload descriptor (with a 15-bit picture id) and, on the first packet of a keyframe, the
//! keyframe header with the layer's picture size, which is what the SFU reads to switch layers and
//! to learn their sizes. After the VP8 headers each packet carries a tag with its layer and a
//! frame number, which the SFU forwards untouched, so a subscriber can tell which layer it gets
//! and, because frame numbers are claimed in order, whether a packet was sent after some event.
//!
//! One test runs the publisher and the viewers on two nodes of a cluster (real Redis), so the
//! layers cross a trunk and the viewers' node chooses them.
//!
//! The tests run one at a time (they measure switch times on a small machine).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sfu_client::{
    Client, ClientConfig, ClientEvent, ClientMessage, LegStats, LocalTrackId, MediaStats, PeerId,
    TrackKind, TrackSource,
};
use support::redis::Redis;
use support::{join_with, try_until, wait_tracks_of, Server};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// One test at a time: each runs a server and up to eight participants on two cores, and some
/// print how long a switch took.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One encoding a publisher sends.
#[derive(Debug, Clone, Copy)]
struct LayerSpec {
    /// Its RID; `None` for a track without simulcast.
    rid: Option<&'static str>,
    /// The picture size its keyframes announce.
    width: u16,
    height: u16,
    /// Bytes per frame (at 20 fps, 250 bytes are 40 kbit/s).
    bytes: usize,
}

/// The three layers of the simulcast tests, lowest first: about 40, 80 and 160 kbit/s at 20 fps,
/// so the SFU's initial 1 Mbit/s estimate holds all of them.
const SIMULCAST: [LayerSpec; 3] = [
    LayerSpec {
        rid: Some("q"),
        width: 320,
        height: 180,
        bytes: 250,
    },
    LayerSpec {
        rid: Some("h"),
        width: 640,
        height: 360,
        bytes: 500,
    },
    LayerSpec {
        rid: Some("f"),
        width: 1280,
        height: 720,
        bytes: 1000,
    },
];

/// The layers of [`SIMULCAST`] listed largest first, as Firefox did before release 153.
const SIMULCAST_LARGEST_FIRST: [LayerSpec; 3] = [SIMULCAST[2], SIMULCAST[1], SIMULCAST[0]];

/// The one layer of a plain (non-simulcast) VP8 track.
const PLAIN: [LayerSpec; 1] = [LayerSpec {
    rid: None,
    width: 640,
    height: 360,
    bytes: 400,
}];

/// Video frame interval of the simulcast publishers (20 fps).
const VIDEO_TICK: Duration = Duration::from_millis(50);
/// Audio packet interval (20 ms Opus).
const AUDIO_TICK: Duration = Duration::from_millis(20);
/// A layer sends a keyframe every this many frames on its own (2.5 s at 20 fps), besides the ones
/// the SFU asks for; the layers' periodic keyframes are staggered.
const KEYFRAME_EVERY: u32 = 50;

/// Marks the tag after the VP8 headers of a test video packet.
const VIDEO_TAG: u8 = 0xab;
/// Marks a test audio payload.
const AUDIO_TAG: u8 = 0xac;

/// Silence, in dBov below overload.
const SILENT: u8 = 127;
/// Speech.
const LOUD: u8 = 20;

/// Which part of a VP8 frame a packet carries.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// The first packet of a keyframe: frame tag with P=0, start code and picture size.
    KeyStart(u16, u16),
    /// The first (and only) packet of a delta frame: frame tag with P=1.
    DeltaStart,
    /// A later packet of a frame (S=0).
    Continuation,
}

/// A VP8 RTP payload: descriptor with X=1, I=1 and a 15-bit picture id (S=1 and partition 0 on a
/// frame's first packet), then for a frame's first packet the frame tag (and for a keyframe the
/// start code and picture size), then the test tag (layer, frame number), then filler up to `len`.
fn vp8_payload(layer: u8, frame: u32, part: Part, len: usize) -> Vec<u8> {
    let picture_id = (frame & 0x7fff) as u16;
    let start = if matches!(part, Part::Continuation) {
        0
    } else {
        0x10
    };
    let [pid_hi, pid_lo] = picture_id.to_be_bytes();
    let mut p = vec![0x80 | start, 0x80, 0x80 | pid_hi, pid_lo];
    match part {
        Part::KeyStart(w, h) => {
            // show_frame=1, version 0, P=0; a first-partition size; the start code.
            p.extend([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
            p.extend(w.to_le_bytes());
            p.extend(h.to_le_bytes());
        }
        Part::DeltaStart => p.extend([0x11, 0x02, 0x00]),
        Part::Continuation => {}
    }
    p.push(VIDEO_TAG);
    p.push(layer);
    p.extend(frame.to_be_bytes());
    while p.len() < len {
        p.push((p.len() * 7 % 251) as u8);
    }
    p
}

/// What a test video packet says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Vp8Info {
    layer: u8,
    frame: u32,
    /// The first packet of a keyframe.
    keyframe_start: bool,
}

/// Reads back what [`vp8_payload`] wrote; `None` for anything else.
fn parse_vp8(p: &[u8]) -> Option<Vp8Info> {
    let first = *p.first()?;
    if first & 0x80 == 0 || p.get(1)? & 0x80 == 0 || p.get(2)? & 0x80 == 0 {
        return None;
    }
    let mut at = 4;
    let mut keyframe_start = false;
    if first & 0x10 != 0 {
        let tag = *p.get(at)?;
        keyframe_start = tag & 0x01 == 0;
        at += if keyframe_start { 10 } else { 3 };
    }
    match p.get(at..at + 6)? {
        [VIDEO_TAG, layer, f0, f1, f2, f3] => Some(Vp8Info {
            layer: *layer,
            frame: u32::from_be_bytes([*f0, *f1, *f2, *f3]),
            keyframe_start,
        }),
        _ => None,
    }
}

/// A test audio payload: the tag, the frame number, filler.
fn audio_payload(frame: u32) -> Vec<u8> {
    let mut p = vec![AUDIO_TAG];
    p.extend(frame.to_be_bytes());
    p.extend((0..60u8).map(|i| i.wrapping_mul(13)));
    p
}

fn parse_audio(p: &[u8]) -> Option<u32> {
    match p.get(..5)? {
        [AUDIO_TAG, f0, f1, f2, f3] => Some(u32::from_be_bytes([*f0, *f1, *f2, *f3])),
        _ => None,
    }
}

// ---- Publisher -------------------------------------------------------------------------------

/// What a running publisher does and what it has seen; shared between its task and the test.
#[derive(Debug, Default)]
struct Control {
    /// Layers the test wants sent.
    enabled: Vec<bool>,
    /// Whether the publisher follows the SFU's layer hints, as a browser does.
    obey_hints: bool,
    /// The active list of the last layer hint (every layer until one arrives).
    hinted: Vec<bool>,
    /// Layers whose next frame must be a keyframe (the SFU asked).
    keyframe_due: Vec<bool>,
    /// The next frame number. Numbers are claimed before a frame is sent, so every frame numbered
    /// at or above a value read at some moment was sent after that moment.
    next_frame: u32,
    /// Level of the audio packets, dBov.
    audio_level: u8,
    /// Keyframe requests from the SFU: when, and for which RID.
    keyframe_requests: Vec<(Instant, Option<String>)>,
    /// Layer hints from the SFU: when, and the active list.
    hints: Vec<(Instant, Vec<bool>)>,
    /// Failed sends and error events.
    errors: Vec<String>,
}

/// Asks the publisher task to use its client for something besides sending.
enum PubCmd {
    Mute {
        track: LocalTrackId,
        muted: bool,
        done: oneshot::Sender<()>,
    },
}

/// A participant that publishes synthetic media from a task of its own, answers keyframe
/// requests with keyframes, and records what the SFU tells it.
struct Publisher {
    name: String,
    peer_id: PeerId,
    video: Option<LocalTrackId>,
    audio: Option<LocalTrackId>,
    /// Server-wide track ids.
    video_id: Option<String>,
    audio_id: Option<String>,
    layers: &'static [LayerSpec],
    ctl: Arc<Mutex<Control>>,
    stop: Arc<AtomicBool>,
    cmds: mpsc::UnboundedSender<PubCmd>,
    /// The client, until the task starts; the task hands it back when it ends.
    client: Option<Client>,
    cmd_rx: Option<mpsc::UnboundedReceiver<PubCmd>>,
    task: Option<JoinHandle<Client>>,
}

impl Publisher {
    /// Joins with `audio` and, per `layers`, a simulcast video track (several layers), a plain one
    /// (one layer) or none, and waits until everything is negotiated. Sends nothing yet.
    async fn join(
        server: &Server,
        room: &str,
        name: &str,
        audio: bool,
        layers: &'static [LayerSpec],
    ) -> Publisher {
        let plain_video = layers.len() == 1;
        let config = ClientConfig::new(server.ws_url(), room, name)
            .audio(audio)
            .video(plain_video);
        let client = join_with(config).await;
        let mut video = client.video_track();
        if layers.len() > 1 {
            let rids: Vec<&str> = layers.iter().filter_map(|l| l.rid).collect();
            let id = client
                .publish_simulcast(TrackSource::Camera, &rids)
                .await
                .expect("publishing the simulcast track");
            client
                .wait_negotiated(Duration::from_secs(20))
                .await
                .unwrap_or_else(|e| panic!("{name}: the simulcast track was not negotiated: {e}"));
            let track = client
                .local_tracks()
                .into_iter()
                .find(|t| t.id == id)
                .expect("the simulcast track");
            assert_eq!(track.rids, rids, "{name}: the layers as offered");
            video = Some(id);
        }
        let peer_id = client.peer_id();
        let server_id = |id: Option<LocalTrackId>| {
            let id = id?;
            client
                .local_tracks()
                .into_iter()
                .find(|t| t.id == id)?
                .server_track_id(peer_id)
        };
        let video_id = server_id(video);
        let audio_id = server_id(client.audio_track());
        let ctl = Control {
            enabled: vec![true; layers.len()],
            hinted: vec![true; layers.len()],
            keyframe_due: vec![false; layers.len()],
            audio_level: SILENT,
            ..Control::default()
        };
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        Publisher {
            name: name.to_string(),
            peer_id,
            video,
            audio: client.audio_track(),
            video_id,
            audio_id,
            layers,
            ctl: Arc::new(Mutex::new(ctl)),
            stop: Arc::new(AtomicBool::new(false)),
            cmds,
            client: Some(client),
            cmd_rx: Some(cmd_rx),
            task: None,
        }
    }

    /// The server-wide id of the video track.
    fn video_id(&self) -> String {
        self.video_id.clone().expect("a video track")
    }

    /// The server-wide id of the audio track.
    fn audio_id(&self) -> String {
        self.audio_id.clone().expect("an audio track")
    }

    /// Starts sending: a video frame on every enabled layer each `tick` (when there is video) and
    /// one audio packet each `tick` (when there is audio).
    fn start(&mut self, tick: Duration) {
        let (Some(client), Some(cmds)) = (self.client.take(), self.cmd_rx.take()) else {
            panic!("{} started twice", self.name);
        };
        let task = PublisherTask {
            client,
            video: self.video,
            audio: self.audio,
            layers: self.layers,
            ctl: self.ctl.clone(),
            stop: self.stop.clone(),
            cmds,
            sending: vec![false; self.layers.len()],
        };
        self.task = Some(tokio::spawn(task.run(tick)));
    }

    fn ctl(&self) -> std::sync::MutexGuard<'_, Control> {
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next frame number: frames at or above it are sent after this call.
    fn frame_barrier(&self) -> u32 {
        self.ctl().next_frame
    }

    fn set_layer(&self, layer: usize, on: bool) {
        self.ctl().enabled[layer] = on;
    }

    fn set_level(&self, dbov: u8) {
        self.ctl().audio_level = dbov;
    }

    /// Mutes or unmutes a track through the publisher's task.
    async fn mute(&self, track: LocalTrackId, muted: bool) {
        let (done, rx) = oneshot::channel();
        self.cmds
            .send(PubCmd::Mute { track, muted, done })
            .expect("the publisher task runs");
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("the publisher task muted in time")
            .expect("the publisher task answered");
    }

    /// Panics if a send failed or the client reported an error.
    fn assert_no_errors(&self) {
        let errors = self.ctl().errors.clone();
        assert!(errors.is_empty(), "{}: errors: {errors:?}", self.name);
    }

    /// Stops the task and leaves.
    async fn leave(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let client = match self.task.take() {
            Some(task) => task.await.expect("the publisher task ended cleanly"),
            None => self.client.take().expect("the client"),
        };
        client.leave().await;
    }
}

/// Ends a test: no publisher saw an error, and everybody leaves.
async fn finish(publishers: Vec<Publisher>, viewers: Vec<Viewer>) {
    for p in &publishers {
        p.assert_no_errors();
    }
    for p in publishers {
        p.leave().await;
    }
    for v in viewers {
        v.client.leave().await;
    }
}

/// The sending side of a [`Publisher`].
struct PublisherTask {
    client: Client,
    video: Option<LocalTrackId>,
    audio: Option<LocalTrackId>,
    layers: &'static [LayerSpec],
    ctl: Arc<Mutex<Control>>,
    stop: Arc<AtomicBool>,
    cmds: mpsc::UnboundedReceiver<PubCmd>,
    /// Which layers sent their previous frame: a layer (re)starting begins with a keyframe, as an
    /// encoder does.
    sending: Vec<bool>,
}

impl PublisherTask {
    async fn run(mut self, tick: Duration) -> Client {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.stop.load(Ordering::Relaxed) {
            interval.tick().await;
            while let Ok(cmd) = self.cmds.try_recv() {
                match cmd {
                    PubCmd::Mute { track, muted, done } => {
                        if let Err(e) = self.client.set_muted(track, muted).await {
                            self.error(format!("mute: {e}"));
                        }
                        let _ = done.send(());
                    }
                }
            }
            self.read_events();
            self.send_tick().await;
        }
        self.client
    }

    fn error(&self, e: String) {
        self.ctl
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .errors
            .push(e);
    }

    fn read_events(&mut self) {
        let mut ctl = self.ctl.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(event) = self.client.try_next_event() {
            match event {
                ClientEvent::KeyframeRequest { rid, .. } => {
                    let layer = self.layers.iter().position(|l| l.rid == rid.as_deref());
                    if let Some(due) = layer.and_then(|l| ctl.keyframe_due.get_mut(l)) {
                        *due = true;
                    }
                    ctl.keyframe_requests.push((Instant::now(), rid));
                }
                ClientEvent::LayerHint { active, .. } => {
                    if active.len() == self.layers.len() {
                        ctl.hinted = active.clone();
                    }
                    ctl.hints.push((Instant::now(), active));
                }
                ClientEvent::Error(e) => ctl.errors.push(e),
                ClientEvent::ServerError { code, message } => {
                    ctl.errors.push(format!("server error {code:?}: {message}"))
                }
                _ => {}
            }
        }
    }

    async fn send_tick(&mut self) {
        // The plan is made under the lock, the sending outside it.
        let (frame, plan, level) = {
            let mut ctl = self.ctl.lock().unwrap_or_else(|e| e.into_inner());
            let frame = ctl.next_frame;
            ctl.next_frame += 1;
            let mut plan = Vec::new();
            if self.video.is_some() {
                for (l, sending) in self.sending.iter_mut().enumerate() {
                    let on = ctl.enabled[l] && (!ctl.obey_hints || ctl.hinted[l]);
                    if !on {
                        *sending = false;
                        continue;
                    }
                    let periodic = (frame + 16 * l as u32).is_multiple_of(KEYFRAME_EVERY);
                    let key = std::mem::take(&mut ctl.keyframe_due[l]) || !*sending || periodic;
                    *sending = true;
                    plan.push((l, key));
                }
            }
            (frame, plan, ctl.audio_level)
        };
        for (l, key) in plan {
            self.send_frame(l, frame, key).await;
        }
        if let Some(audio) = self.audio {
            if let Err(e) = self
                .client
                .send_rtp_with_level(audio, audio_payload(frame), true, level)
                .await
            {
                self.error(format!("audio frame {frame}: {e}"));
            }
        }
    }

    /// One frame on layer `l`: a keyframe in two packets, a delta frame in one.
    async fn send_frame(&self, l: usize, frame: u32, key: bool) {
        let Some(track) = self.video else {
            return;
        };
        let spec = self.layers[l];
        let layer = l as u8;
        let packets = if key {
            vec![
                (
                    vp8_payload(
                        layer,
                        frame,
                        Part::KeyStart(spec.width, spec.height),
                        spec.bytes,
                    ),
                    false,
                ),
                (
                    vp8_payload(layer, frame, Part::Continuation, spec.bytes),
                    true,
                ),
            ]
        } else {
            vec![(
                vp8_payload(layer, frame, Part::DeltaStart, spec.bytes),
                true,
            )]
        };
        for (payload, marker) in packets {
            let sent = match spec.rid {
                Some(rid) => {
                    self.client
                        .send_rtp_layer(track, rid, payload, marker)
                        .await
                }
                None => self.client.send_rtp(track, payload, marker).await,
            };
            if let Err(e) = sent {
                self.error(format!("video frame {frame} layer {l}: {e}"));
            }
        }
    }
}

// ---- Viewer ----------------------------------------------------------------------------------

/// One received test packet.
#[derive(Debug, Clone)]
struct Got {
    at: Instant,
    track_id: String,
    seq: u16,
    ext_seq: u64,
    timestamp: u32,
    /// The sender's frame number.
    frame: u32,
    /// For video: layer and keyframe start.
    vp8: Option<Vp8Info>,
}

impl Got {
    fn layer(&self) -> Option<u8> {
        self.vp8.map(|v| v.layer)
    }

    fn keyframe_start(&self) -> bool {
        self.vp8.is_some_and(|v| v.keyframe_start)
    }
}

/// A participant that publishes nothing and records what it receives.
struct Viewer {
    client: Client,
    name: String,
    video: Vec<Got>,
    audio: Vec<Got>,
    /// RTP packets whose payload was not a test payload.
    foreign: usize,
    stats: Vec<MediaStats>,
    speakers: Vec<(Instant, Option<PeerId>, Option<String>)>,
    mutes: Vec<(Instant, String, bool)>,
    errors: Vec<String>,
}

impl Viewer {
    async fn join(server: &Server, room: &str, name: &str) -> Viewer {
        Self::join_with(ClientConfig::new(server.ws_url(), room, name)).await
    }

    async fn join_with(config: ClientConfig) -> Viewer {
        let name = config.name.clone();
        Viewer {
            client: join_with(config).await,
            name,
            video: Vec::new(),
            audio: Vec::new(),
            foreign: 0,
            stats: Vec::new(),
            speakers: Vec::new(),
            mutes: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Moves every queued event in here.
    fn pump(&mut self) {
        while let Some(event) = self.client.try_next_event() {
            match event {
                ClientEvent::Rtp(rtp) => {
                    let track_id = rtp.track_id.clone().unwrap_or_default();
                    let (frame, vp8) = match rtp.kind {
                        Some(TrackKind::Video) => match parse_vp8(&rtp.payload) {
                            Some(v) => (v.frame, Some(v)),
                            None => {
                                self.foreign += 1;
                                continue;
                            }
                        },
                        _ => match parse_audio(&rtp.payload) {
                            Some(f) => (f, None),
                            None => {
                                self.foreign += 1;
                                continue;
                            }
                        },
                    };
                    let got = Got {
                        at: rtp.received_at,
                        track_id,
                        seq: rtp.seq,
                        ext_seq: rtp.ext_seq,
                        timestamp: rtp.timestamp,
                        frame,
                        vp8,
                    };
                    if vp8.is_some() {
                        self.video.push(got);
                    } else {
                        self.audio.push(got);
                    }
                }
                ClientEvent::MediaStats(s) => self.stats.push(s),
                ClientEvent::ActiveSpeaker { peer_id, track_id } => {
                    self.speakers.push((Instant::now(), peer_id, track_id))
                }
                ClientEvent::TrackMuted {
                    track_id, muted, ..
                } => self.mutes.push((Instant::now(), track_id, muted)),
                ClientEvent::Error(e) => self.errors.push(e),
                ClientEvent::ServerError { code, message } => self
                    .errors
                    .push(format!("server error {code:?}: {message}")),
                _ => {}
            }
        }
    }

    fn video_of<'a>(&'a self, track_id: &'a str) -> impl Iterator<Item = &'a Got> + 'a {
        self.video.iter().filter(move |g| g.track_id == track_id)
    }

    /// The video packets of `layer` from frame `since` on (what the publisher sent before is not
    /// evidence of what happened after).
    fn layer_since<'a>(
        &'a self,
        track_id: &'a str,
        layer: u8,
        since: u32,
    ) -> impl Iterator<Item = &'a Got> + 'a {
        self.video_of(track_id)
            .filter(move |g| g.layer() == Some(layer) && g.frame >= since)
    }

    fn audio_of<'a>(&'a self, track_id: &'a str) -> impl Iterator<Item = &'a Got> + 'a {
        self.audio.iter().filter(move |g| g.track_id == track_id)
    }

    /// Reports the tile size of a received track.
    async fn tile(&self, track_id: &str, width: u32, height: u32) {
        self.client
            .send_signal(ClientMessage::TileSize {
                track_id: track_id.to_string(),
                width,
                height,
            })
            .await
            .unwrap_or_else(|e| panic!("{}: tileSize: {e}", self.name));
    }

    /// Asks for `mediaStats` and returns the answer. The SFU handles one member's messages in
    /// order, so the answer also shows that everything sent before it took effect.
    async fn media_stats(&mut self) -> MediaStats {
        let before = self.stats.len();
        self.client
            .send_signal(ClientMessage::GetStats)
            .await
            .unwrap_or_else(|e| panic!("{}: getStats: {e}", self.name));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.pump();
            if let Some(stats) = self.stats.get(before) {
                return stats.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no mediaStats within 5 s",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Per layer, how many video packets of `track_id` arrived.
    fn layer_counts(&self, track_id: &str) -> [usize; 4] {
        let mut counts = [0; 4];
        for g in self.video_of(track_id) {
            if let Some(c) = g.layer().and_then(|l| counts.get_mut(usize::from(l))) {
                *c += 1;
            }
        }
        counts
    }

    fn summary(&self, track_id: &str) -> String {
        format!(
            "{}: video packets per layer {:?}, audio {}, foreign {}, errors {:?}",
            self.name,
            self.layer_counts(track_id),
            self.audio.len(),
            self.foreign,
            self.errors
        )
    }
}

/// The stats of the leg carrying `track_id`.
fn leg<'a>(stats: &'a MediaStats, track_id: &str) -> &'a LegStats {
    stats
        .receiving
        .iter()
        .find(|l| l.track_id == track_id)
        .unwrap_or_else(|| panic!("no leg for {track_id} in {stats:?}"))
}

/// Pumps every viewer until `pred` holds; panics after `timeout` with each viewer's summary.
async fn wait_viewers(
    viewers: &mut [Viewer],
    track_id: &str,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&[Viewer]) -> bool,
) {
    let ok = try_until(timeout, || {
        for v in viewers.iter_mut() {
            v.pump();
        }
        pred(viewers)
    })
    .await;
    if !ok {
        let summaries: Vec<String> = viewers.iter().map(|v| v.summary(track_id)).collect();
        panic!("timed out after {timeout:?} waiting for {what}; {summaries:#?}");
    }
}

/// Waits until viewer `index` receives a packet of `layer` from frame `since` on (frames the
/// publisher sent before are not evidence), and returns the first such packet.
async fn first_of_layer_since(
    viewers: &mut [Viewer],
    index: usize,
    track_id: &str,
    layer: u8,
    since: u32,
    what: &str,
) -> Got {
    let found = |v: &Viewer| v.layer_since(track_id, layer, since).next().cloned();
    wait_viewers(viewers, track_id, Duration::from_secs(10), what, |vs| {
        found(&vs[index]).is_some()
    })
    .await;
    found(&viewers[index]).expect("the packet waited for")
}

/// Waits (5 s at most, pumping the viewers) for the first layer hint the publisher got at or
/// after `since` that `want` accepts; returns when it came and what it said.
async fn wait_hint(
    viewers: &mut [Viewer],
    publisher: &Publisher,
    since: Instant,
    want: impl Fn(&[bool]) -> bool,
    what: &str,
) -> (Instant, Vec<bool>) {
    let found = || {
        publisher
            .ctl()
            .hints
            .iter()
            .find(|(at, active)| *at >= since && want(active))
            .cloned()
    };
    let ok = try_until(Duration::from_secs(5), || {
        for v in viewers.iter_mut() {
            v.pump();
        }
        found().is_some()
    })
    .await;
    let hints = publisher.ctl().hints.clone();
    assert!(ok, "no {what}; hints: {hints:?}");
    found().expect("the hint")
}

/// Pumps every viewer for `span` (a window in which something must not happen).
async fn watch(viewers: &mut [Viewer], span: Duration) {
    let _ = try_until(span, || {
        for v in viewers.iter_mut() {
            v.pump();
        }
        false
    })
    .await;
}

/// The received packets in sequence order carry consecutive sequence numbers (no gap a receiver
/// would NACK, no duplicate) and timestamps that never go backwards.
fn assert_continuous(who: &str, packets: &[&Got]) {
    let mut sorted: Vec<&Got> = packets.to_vec();
    sorted.sort_by_key(|g| g.ext_seq);
    for w in sorted.windows(2) {
        assert_eq!(
            w[1].ext_seq,
            w[0].ext_seq + 1,
            "{who}: sequence gap or duplicate between seq {} (frame {}, layer {:?}) and seq {} (frame {}, layer {:?})",
            w[0].seq,
            w[0].frame,
            w[0].layer(),
            w[1].seq,
            w[1].frame,
            w[1].layer()
        );
        let step = w[1].timestamp.wrapping_sub(w[0].timestamp) as i32;
        assert!(
            step >= 0,
            "{who}: timestamp went back by {} between seq {} (layer {:?}) and seq {} (layer {:?})",
            -step,
            w[0].seq,
            w[0].layer(),
            w[1].seq,
            w[1].layer()
        );
    }
}

/// Every point in arrival order where the layer changes is a keyframe start; returns the
/// switches as (index, from, to).
fn switches(who: &str, packets: &[&Got]) -> Vec<(usize, Option<u8>, u8)> {
    let mut out = Vec::new();
    let mut current = None;
    for (i, g) in packets.iter().enumerate() {
        let layer = g.layer().expect("video packets carry a layer");
        if current != Some(layer) {
            assert!(
                g.keyframe_start(),
                "{who}: packet {i} (seq {}, frame {}) moves from layer {current:?} to {layer} but does not start a keyframe",
                g.seq,
                g.frame
            );
            out.push((i, current, layer));
            current = Some(layer);
        }
    }
    out
}

// ---- Scenarios -------------------------------------------------------------------------------

/// Tiles of the three viewers: each fits one layer.
const TILES: [(u32, u32); 3] = [(240, 135), (600, 340), (1280, 720)];

/// A simulcast publisher and three viewers whose tiles want layer 0, 1 and 2, reported before any
/// media flows; returns once every viewer receives its layer.
async fn three_tiles(server: &Server, room: &str) -> (Publisher, Vec<Viewer>) {
    three_tiles_across(server, server, room).await
}

/// [`three_tiles`] with the publisher on `publishers` and the viewers on `viewers` (two nodes of
/// a cluster, or the same server).
async fn three_tiles_across(
    publishers: &Server,
    viewers: &Server,
    room: &str,
) -> (Publisher, Vec<Viewer>) {
    let server = viewers;
    let mut viewers = vec![
        Viewer::join(server, room, "small").await,
        Viewer::join(server, room, "medium").await,
        Viewer::join(server, room, "large").await,
    ];
    let mut publisher = Publisher::join(publishers, room, "camera", false, &SIMULCAST).await;
    let video = publisher.video_id();
    for (v, (w, h)) in viewers.iter().zip(TILES) {
        wait_tracks_of(&v.client, publisher.peer_id, 1).await;
        v.tile(&video, w, h).await;
    }
    let started = Instant::now();
    publisher.start(VIDEO_TICK);
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(15),
        "every viewer to receive 20 packets of its layer",
        |vs| {
            vs.iter()
                .enumerate()
                .all(|(i, v)| v.layer_counts(&video)[i] >= 20)
        },
    )
    .await;
    println!(
        "every viewer receives its layer {:?} after the media started",
        started.elapsed()
    );
    (publisher, viewers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_viewer_receives_the_layer_that_fits_its_tile() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let (publisher, mut viewers) = three_tiles(&server, "tiles").await;
    assert_each_viewer_on_the_layer_of_its_tile(&publisher, &mut viewers).await;
    finish(vec![publisher], viewers).await;
}

/// The same across a trunk (issue 16): the publisher on node a, the three viewers on node b.
/// Node b chooses each viewer's layer, and the three layers its viewers take cross.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_viewers_receive_the_layer_that_fits_their_tile() {
    let _serial = SERIAL.lock().await;
    let Some(redis) = Redis::start_or_skip() else {
        return;
    };
    let url = redis.url();
    let node = |id: &str| Server::start_with(&["--cluster", &url, "--node-id", id]);
    let (a, b) = (node("a"), node("b"));
    let (publisher, mut viewers) = three_tiles_across(&a, &b, "far-tiles").await;
    assert_each_viewer_on_the_layer_of_its_tile(&publisher, &mut viewers).await;
    let stats = a.stats().await;
    let trunk = &stats.raw["trunks"][0];
    assert_eq!(
        trunk["layersOut"], 3,
        "node b takes the three layers: {trunk}"
    );
    finish(vec![publisher], viewers).await;
}

/// Watches a while longer (a wrong switch after the first would show), then asserts that viewer
/// `n` of `viewers` (tiles [`TILES`]) got layer `n` of `publisher`'s video from a keyframe on,
/// continuous, and that its leg's stats say so.
async fn assert_each_viewer_on_the_layer_of_its_tile(
    publisher: &Publisher,
    viewers: &mut [Viewer],
) {
    let video = publisher.video_id();
    watch(viewers, Duration::from_secs(2)).await;
    for (want, v) in viewers.iter_mut().enumerate() {
        let who = v.name.clone();
        let packets: Vec<&Got> = v.video_of(&video).collect();
        assert!(
            packets[0].keyframe_start(),
            "{who}: the first video packet (frame {}, layer {:?}) is not a keyframe start",
            packets[0].frame,
            packets[0].layer()
        );
        let sw = switches(&who, &packets);
        let first_wanted = packets
            .iter()
            .position(|g| g.layer() == Some(want as u8))
            .expect("the wanted layer arrived");
        let after: Vec<Option<u8>> = packets[first_wanted..]
            .iter()
            .map(|g| g.layer())
            .filter(|l| *l != Some(want as u8))
            .collect();
        assert!(
            after.is_empty(),
            "{who}: after the first packet of layer {want}, packets of other layers arrived: {after:?}; switches {sw:?}"
        );
        assert_continuous(&who, &packets);
        println!(
            "{who}: {} video packets, {first_wanted} of another layer before layer {want}; switches {sw:?}",
            packets.len()
        );
        let stats = v.media_stats().await;
        let l = leg(&stats, &video);
        assert_eq!(l.layer, Some(want as u8), "{who}: stats {l:?}");
        assert_eq!(l.tile, Some(TILES[want]), "{who}: stats {l:?}");
        let (w, h) = (SIMULCAST[want].width, SIMULCAST[want].height);
        assert_eq!(
            (l.width, l.height),
            (Some(u32::from(w)), Some(u32::from(h))),
            "{who}: the layer's size from its keyframes"
        );
        assert!(v.errors.is_empty(), "{who}: {:?}", v.errors);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrinking_a_tile_switches_down_at_a_keyframe_without_a_gap() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let (publisher, mut viewers) = three_tiles(&server, "shrink").await;
    let video = publisher.video_id();
    let before = viewers[2].media_stats().await;
    let before = leg(&before, &video).clone();
    assert_eq!(before.layer, Some(2), "large before the shrink: {before:?}");

    let shrink = Instant::now();
    viewers[2].tile(&video, 240, 135).await;
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(10),
        "the large viewer to receive 20 packets of layer 0",
        |vs| vs[2].layer_counts(&video)[0] >= 20,
    )
    .await;
    let v = &viewers[2];
    let packets: Vec<&Got> = v.video_of(&video).collect();
    let first_low = packets
        .iter()
        .position(|g| g.layer() == Some(0))
        .expect("layer 0 arrived");
    let switch = packets[first_low];
    println!(
        "large: switched to layer 0 {:?} after the shrink (seq {}, frame {})",
        switch.at.saturating_duration_since(shrink),
        switch.seq,
        switch.frame
    );
    assert!(
        switch.keyframe_start(),
        "large: the first layer-0 packet is not a keyframe start"
    );
    let late: Vec<u32> = packets[first_low..]
        .iter()
        .filter(|g| g.layer() != Some(0))
        .map(|g| g.frame)
        .collect();
    assert!(
        late.is_empty(),
        "large: frames of other layers after the switch: {late:?}"
    );
    let prev = packets[first_low - 1];
    assert_eq!(
        switch.ext_seq,
        prev.ext_seq + 1,
        "large: the sequence does not continue across the switch"
    );
    assert_continuous("large", &packets);
    println!(
        "large: across the switch seq {} -> {}, timestamp {} -> {} (+{} ticks, {:?} apart)",
        prev.seq,
        switch.seq,
        prev.timestamp,
        switch.timestamp,
        switch.timestamp.wrapping_sub(prev.timestamp),
        switch.at.saturating_duration_since(prev.at)
    );

    let after = viewers[2].media_stats().await;
    let after = leg(&after, &video);
    assert_eq!(after.layer, Some(0), "large after the shrink: {after:?}");
    assert_eq!(
        after.target_layer,
        Some(0),
        "large after the shrink: {after:?}"
    );
    assert_eq!(after.tile, Some((240, 135)));
    assert!(
        after.switches > before.switches,
        "switches went from {} to {}",
        before.switches,
        after.switches
    );
    finish(vec![publisher], viewers).await;
}

/// A tile that shrinks leaves its viewer's link quiet: the layer it now takes needs a small
/// fraction of the estimate. The estimator's periodic probes in that quiet spell are sized from
/// what the viewer wants, and a probe's result replaces the estimate, so a probe at or below the
/// estimate would take it down to what the small layer needs, and the link would then look
/// loss-limited, which blocks the probes that would find it again: a tile growing back would wait
/// for the estimate's slow additive climb before it got the top layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shrunken_tile_keeps_the_estimate_toward_its_viewer() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let room = "estimate";
    let mut viewers = vec![Viewer::join(&server, room, "large").await];
    let mut publisher = Publisher::join(&server, room, "camera", false, &SIMULCAST).await;
    let video = publisher.video_id();
    wait_tracks_of(&viewers[0].client, publisher.peer_id, 1).await;
    viewers[0].tile(&video, 1280, 720).await;
    publisher.start(VIDEO_TICK);
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(15),
        "the large viewer to receive 20 packets of layer 2",
        |vs| vs[0].layer_counts(&video)[2] >= 20,
    )
    .await;
    // The initial probes are over by now.
    watch(&mut viewers, Duration::from_secs(3)).await;
    let before = viewers[0].media_stats().await;
    let start = before
        .estimate_bps
        .unwrap_or_else(|| panic!("no estimate toward the viewer: {before:?}"));

    let shrink = Instant::now();
    viewers[0].tile(&video, 240, 135).await;
    // A periodic probe goes out at most 5 s apart while the link is quiet.
    let mut lowest = (start, Duration::ZERO);
    let mut layer = None;
    while shrink.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = viewers[0].media_stats().await;
        layer = leg(&stats, &video).layer;
        let estimate = stats.estimate_bps.unwrap_or(0);
        if estimate < lowest.0 {
            lowest = (estimate, shrink.elapsed());
        }
    }
    println!(
        "estimate toward the viewer {start} bit/s before the shrink, lowest {} bit/s {:?} after it",
        lowest.0, lowest.1
    );
    assert_eq!(layer, Some(0), "the shrunken tile takes layer 0");
    assert!(
        lowest.0 >= start / 2,
        "the estimate fell from {start} to {} bit/s {:?} after the shrink",
        lowest.0,
        lowest.1
    );
    assert!(viewers[0].errors.is_empty(), "{:?}", viewers[0].errors);
    finish(vec![publisher], viewers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_top_layer_falls_back_to_the_middle_and_comes_back() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let (publisher, mut viewers) = three_tiles(&server, "fallback").await;
    let video = publisher.video_id();

    let stop = Instant::now();
    publisher.set_layer(2, false);
    let barrier = publisher.frame_barrier();
    // It may have started on layer 1 before the top layer's rate was known: only packets sent
    // after the stop count.
    let fallback = first_of_layer_since(
        &mut viewers,
        2,
        &video,
        1,
        barrier,
        "the large viewer to fall back to layer 1",
    )
    .await;
    println!(
        "large: first layer-1 packet {:?} after the top layer stopped (frame {}, {} frames after the stop)",
        fallback.at.saturating_duration_since(stop),
        fallback.frame,
        fallback.frame.saturating_sub(barrier)
    );
    assert!(
        fallback.keyframe_start(),
        "large: the fallback does not start at a keyframe"
    );

    // Some time on the middle layer, then the top layer comes back.
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(5),
        "the large viewer to receive 10 packets of layer 1",
        |vs| vs[2].layer_since(&video, 1, barrier).count() >= 10,
    )
    .await;
    let resume = Instant::now();
    let resume_frame = publisher.frame_barrier();
    publisher.set_layer(2, true);
    let back = first_of_layer_since(
        &mut viewers,
        2,
        &video,
        2,
        resume_frame,
        "the large viewer to return to layer 2",
    )
    .await;
    println!(
        "large: back on layer 2 {:?} after the top layer resumed",
        back.at.saturating_duration_since(resume)
    );
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(5),
        "10 more packets of layer 2",
        |vs| vs[2].layer_since(&video, 2, resume_frame).count() >= 10,
    )
    .await;

    let packets: Vec<&Got> = viewers[2].video_of(&video).collect();
    let sw = switches("large", &packets);
    let tail: Vec<(Option<u8>, u8)> = sw
        .iter()
        .filter(|(i, _, _)| packets[*i].at >= stop)
        .map(|(_, from, to)| (*from, *to))
        .collect();
    assert_eq!(
        tail,
        vec![(Some(2), 1), (Some(1), 2)],
        "large: the switches after the stop"
    );
    assert_continuous("large", &packets);
    // The other viewers did not notice.
    for (want, v) in viewers.iter().enumerate().take(2) {
        let packets: Vec<&Got> = v.video_of(&video).collect();
        let last_switch = switches(&v.name, &packets).last().map(|s| s.2);
        assert_eq!(last_switch, Some(want as u8), "{}", v.name);
        assert_continuous(&v.name, &packets);
    }
    finish(vec![publisher], viewers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_tile_pauses_video_and_resumes_at_a_keyframe_without_a_gap() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let room = "hidden";
    let mut viewers = vec![Viewer::join(&server, room, "viewer").await];
    let mut publisher = Publisher::join(&server, room, "camera", true, &SIMULCAST).await;
    let video = publisher.video_id();
    let audio = publisher.audio_id();
    wait_tracks_of(&viewers[0].client, publisher.peer_id, 2).await;
    viewers[0].tile(&video, 640, 360).await;
    publisher.start(VIDEO_TICK);
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(15),
        "20 packets of layer 1 and some audio",
        |vs| vs[0].layer_counts(&video)[1] >= 20 && vs[0].audio_of(&audio).count() >= 10,
    )
    .await;

    let hide = Instant::now();
    viewers[0].tile(&video, 0, 0).await;
    // The stats answer comes after the tile took effect: frames claimed from here on are sent
    // after it.
    let stats = viewers[0].media_stats().await;
    let barrier = publisher.frame_barrier();
    let l = leg(&stats, &video);
    assert_eq!(l.target_layer, None, "hidden: {l:?}");
    assert_eq!(l.layer, None, "hidden: {l:?}");
    assert_eq!(l.tile, Some((0, 0)));
    watch(&mut viewers, Duration::from_millis(1500)).await;
    let v = &viewers[0];
    let leaked: Vec<u32> = v
        .video_of(&video)
        .filter(|g| g.frame >= barrier)
        .map(|g| g.frame)
        .collect();
    assert!(
        leaked.is_empty(),
        "video frames sent after the tile was hidden still arrived: {leaked:?}"
    );
    let audio_while_hidden = v.audio_of(&audio).filter(|g| g.frame >= barrier).count();
    assert!(
        audio_while_hidden >= 10,
        "audio stopped too while the tile was hidden ({audio_while_hidden} packets)"
    );
    let last_before = v
        .video_of(&video)
        .last()
        .cloned()
        .expect("video before the pause");
    println!(
        "hidden for {:?}: {audio_while_hidden} audio packets and no video arrived; last video seq {} frame {}",
        hide.elapsed(),
        last_before.seq,
        last_before.frame
    );

    let show = Instant::now();
    let show_frame = publisher.frame_barrier();
    viewers[0].tile(&video, 640, 360).await;
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(10),
        "video to resume",
        |vs| vs[0].video_of(&video).any(|g| g.frame >= show_frame),
    )
    .await;
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(5),
        "10 packets after the resume",
        |vs| {
            vs[0]
                .video_of(&video)
                .filter(|g| g.frame >= show_frame)
                .count()
                >= 10
        },
    )
    .await;
    let v = &viewers[0];
    let packets: Vec<&Got> = v.video_of(&video).collect();
    let i = packets
        .iter()
        .position(|g| g.ext_seq > last_before.ext_seq)
        .expect("packets after the pause");
    let resumed = packets[i];
    println!(
        "visible again: video resumed {:?} later, seq {} -> {}, timestamp +{} ticks",
        resumed.at.saturating_duration_since(show),
        last_before.seq,
        resumed.seq,
        resumed.timestamp.wrapping_sub(last_before.timestamp)
    );
    assert!(
        resumed.keyframe_start(),
        "the first packet after the pause (frame {}, layer {:?}) is not a keyframe start",
        resumed.frame,
        resumed.layer()
    );
    assert_eq!(resumed.layer(), Some(1));
    assert_eq!(
        resumed.ext_seq,
        last_before.ext_seq + 1,
        "the sequence does not continue across the pause"
    );
    assert_continuous("viewer", &packets);
    finish(vec![publisher], viewers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_reach_the_publisher_rate_limited() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let room = "pli";
    let mut viewers = Vec::new();
    for i in 0..6 {
        viewers.push(Viewer::join(&server, room, &format!("viewer-{i}")).await);
    }
    let mut publisher = Publisher::join(&server, room, "camera", false, &SIMULCAST).await;
    let video = publisher.video_id();
    let mut mids = Vec::new();
    for v in &viewers {
        let remote = wait_tracks_of(&v.client, publisher.peer_id, 1).await;
        mids.push(remote[0].mid.clone());
    }
    // No tile reported: every viewer takes the top layer.
    publisher.start(VIDEO_TICK);
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(15),
        "every viewer to receive 10 packets of layer 2",
        |vs| vs.iter().all(|v| v.layer_counts(&video)[2] >= 10),
    )
    .await;

    let mut plis_before = Vec::new();
    for v in viewers.iter_mut() {
        plis_before.push(leg(&v.media_stats().await, &video).plis);
    }
    let start = Instant::now();
    let mut asked = 0u32;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while start.elapsed() < Duration::from_secs(3) {
        tick.tick().await;
        for (v, mid) in viewers.iter_mut().zip(&mids) {
            v.client
                .request_keyframe(mid)
                .await
                .unwrap_or_else(|e| panic!("{}: request_keyframe: {e}", v.name));
            v.pump();
        }
        asked += 1;
    }
    let end = Instant::now();
    // Requests still on their way.
    watch(&mut viewers, Duration::from_millis(300)).await;

    for (v, before) in viewers.iter_mut().zip(plis_before) {
        let plis = leg(&v.media_stats().await, &video).plis;
        assert!(
            plis >= before + u64::from(asked) / 2,
            "{}: the SFU saw {} of the {asked} keyframe requests",
            v.name,
            plis - before
        );
    }
    let requests = publisher.ctl().keyframe_requests.clone();
    let window_end = end + Duration::from_millis(300);
    let in_window = |rid: &str| {
        requests
            .iter()
            .filter(|(at, r)| *at >= start && *at <= window_end && r.as_deref() == Some(rid))
            .count()
    };
    let top = in_window("f");
    println!(
        "6 viewers asked {asked} times each in {:?}; the publisher got {top} requests for the top layer (and {} / {} for the others)",
        end.saturating_duration_since(start),
        in_window("q"),
        in_window("h")
    );
    let limit = (end.saturating_duration_since(start).as_millis() / 300) as usize + 2;
    assert!(top >= 1, "no keyframe request reached the publisher");
    assert!(
        top <= limit,
        "{top} keyframe requests for the top layer in the window, expected at most {limit}"
    );
    finish(vec![publisher], viewers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_hints_pause_layers_nobody_takes_and_resume_them() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let room = "hints";
    let mut viewers = vec![
        Viewer::join(&server, room, "small-a").await,
        Viewer::join(&server, room, "small-b").await,
    ];
    let mut publisher = Publisher::join(&server, room, "camera", false, &SIMULCAST).await;
    publisher.ctl().obey_hints = true;
    let video = publisher.video_id();
    for v in &viewers {
        wait_tracks_of(&v.client, publisher.peer_id, 1).await;
        v.tile(&video, 240, 135).await;
    }
    let small = Instant::now();
    publisher.start(VIDEO_TICK);

    let (at, _) = wait_hint(
        &mut viewers,
        &publisher,
        small,
        |a| a == [true, false, false],
        "layerHint [true, false, false] within 5 s of small tiles only",
    )
    .await;
    println!(
        "layerHint [true, false, false] {:?} after the small tiles were reported",
        at.saturating_duration_since(small)
    );
    // The publisher stopped the upper layers; the viewers go on with the low one.
    let paused = publisher.frame_barrier();
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(5),
        "layer 0 to keep flowing",
        |vs| {
            vs.iter()
                .all(|v| v.video_of(&video).filter(|g| g.frame >= paused).count() >= 10)
        },
    )
    .await;

    let grow = Instant::now();
    let grow_frame = publisher.frame_barrier();
    viewers[1].tile(&video, 1280, 720).await;
    let (at, active) = wait_hint(
        &mut viewers,
        &publisher,
        grow,
        |a| a.len() == 3 && a[2],
        "layerHint with the top layer active within 5 s of a large tile",
    )
    .await;
    println!(
        "layerHint {active:?} {:?} after a large tile was reported",
        at.saturating_duration_since(grow)
    );
    let back = first_of_layer_since(
        &mut viewers,
        1,
        &video,
        2,
        grow_frame,
        "the large viewer to receive the resumed top layer",
    )
    .await;
    println!(
        "the large viewer receives layer 2 {:?} after its tile grew",
        back.at.saturating_duration_since(grow)
    );
    for v in &viewers {
        let packets: Vec<&Got> = v.video_of(&video).collect();
        switches(&v.name, &packets);
        assert_continuous(&v.name, &packets);
    }
    finish(vec![publisher], viewers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_speaker_follows_the_loudest_voice_after_the_hold() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let room = "speaker";
    let mut viewers = vec![Viewer::join(&server, room, "listener").await];
    let mut a = Publisher::join(&server, room, "alice", true, &[]).await;
    let mut b = Publisher::join(&server, room, "bob", true, &[]).await;
    wait_tracks_of(&viewers[0].client, a.peer_id, 1).await;
    wait_tracks_of(&viewers[0].client, b.peer_id, 1).await;
    let (a_audio, b_audio) = (a.audio_id(), b.audio_id());
    a.set_level(LOUD);
    b.set_level(SILENT);
    let talk = Instant::now();
    a.start(AUDIO_TICK);
    b.start(AUDIO_TICK);

    let speaker_since = |v: &Viewer, since: Instant| -> Vec<(Instant, Option<PeerId>)> {
        v.speakers
            .iter()
            .filter(|(at, _, _)| *at >= since)
            .map(|(at, p, _)| (*at, *p))
            .collect()
    };
    wait_viewers(
        &mut viewers,
        &a_audio,
        Duration::from_secs(5),
        "activeSpeaker alice",
        |vs| vs[0].speakers.iter().any(|s| s.1 == Some(a.peer_id)),
    )
    .await;
    let first = viewers[0].speakers[0].clone();
    assert_eq!(
        (first.1, first.2.as_deref()),
        (Some(a.peer_id), Some(a_audio.as_str())),
        "the first activeSpeaker"
    );
    println!(
        "activeSpeaker alice {:?} after she started talking",
        first.0.saturating_duration_since(talk)
    );
    // Enough for both audio averages to settle.
    watch(&mut viewers, Duration::from_secs(1)).await;

    let turn = Instant::now();
    a.set_level(SILENT);
    b.set_level(LOUD);
    wait_viewers(
        &mut viewers,
        &b_audio,
        Duration::from_millis(2500),
        "activeSpeaker bob",
        |vs| {
            speaker_since(&vs[0], turn)
                .iter()
                .any(|s| s.1 == Some(b.peer_id))
        },
    )
    .await;
    let changes = speaker_since(&viewers[0], turn);
    let took = changes[0].0.saturating_duration_since(turn);
    println!("activeSpeaker bob {took:?} after alice went quiet and bob started talking");
    assert_eq!(
        changes[0].1,
        Some(b.peer_id),
        "the first change after the turn: {changes:?}"
    );
    assert!(
        took >= Duration::from_millis(500),
        "the speaker changed after {took:?}, before the 500 ms hold"
    );
    assert_eq!(
        viewers[0].speakers.last().and_then(|s| s.2.clone()),
        Some(b_audio.clone())
    );

    // Bob keeps talking; alice shouts for 200 ms.
    watch(&mut viewers, Duration::from_millis(500)).await;
    let burst = Instant::now();
    a.set_level(5);
    watch(&mut viewers, Duration::from_millis(200)).await;
    a.set_level(SILENT);
    watch(&mut viewers, Duration::from_millis(1500)).await;
    let after_burst = speaker_since(&viewers[0], burst);
    assert!(
        after_burst.is_empty(),
        "a 200 ms burst moved the speaker: {after_burst:?}"
    );
    println!("a 200 ms burst of alice did not move the speaker (watched 1.7 s)");
    assert!(viewers[0].errors.is_empty(), "{:?}", viewers[0].errors);
    finish(vec![a, b], viewers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_track_is_not_forwarded_until_unmuted() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let room = "mute";
    let mut viewers = vec![Viewer::join(&server, room, "listener").await];
    let mut a = Publisher::join(&server, room, "alice", true, &[]).await;
    wait_tracks_of(&viewers[0].client, a.peer_id, 1).await;
    let audio = a.audio_id();
    let track = a.audio.expect("an audio track");
    a.set_level(LOUD);
    a.start(AUDIO_TICK);
    wait_viewers(
        &mut viewers,
        &audio,
        Duration::from_secs(10),
        "10 audio packets",
        |vs| vs[0].audio_of(&audio).count() >= 10,
    )
    .await;

    a.mute(track, true).await;
    let muted_event =
        |v: &Viewer, muted: bool| v.mutes.iter().any(|(_, id, m)| *id == audio && *m == muted);
    wait_viewers(
        &mut viewers,
        &audio,
        Duration::from_secs(5),
        "trackMuted",
        |vs| muted_event(&vs[0], true),
    )
    .await;
    // The SFU muted the track before it announced it: frames claimed from here on are sent
    // after that.
    let barrier = a.frame_barrier();
    watch(&mut viewers, Duration::from_secs(1)).await;
    let leaked: Vec<u32> = viewers[0]
        .audio_of(&audio)
        .filter(|g| g.frame >= barrier)
        .map(|g| g.frame)
        .collect();
    assert!(
        leaked.is_empty(),
        "audio sent after the mute was forwarded: frames {leaked:?}"
    );
    let sent_while_muted = a.frame_barrier() - barrier;
    println!("muted: none of the {sent_while_muted} audio packets sent in 1 s arrived");

    a.mute(track, false).await;
    wait_viewers(
        &mut viewers,
        &audio,
        Duration::from_secs(5),
        "trackMuted false",
        |vs| muted_event(&vs[0], false),
    )
    .await;
    let unmuted = a.frame_barrier();
    wait_viewers(
        &mut viewers,
        &audio,
        Duration::from_secs(5),
        "audio after the unmute",
        |vs| {
            vs[0]
                .audio_of(&audio)
                .filter(|g| g.frame >= unmuted)
                .count()
                >= 10
        },
    )
    .await;
    // A pause is not loss: like a video leg after a hidden tile, the audio leg should go on at
    // the next sequence number, or the listener counts every packet not forwarded as lost.
    let mut packets: Vec<&Got> = viewers[0].audio_of(&audio).collect();
    packets.sort_by_key(|g| g.ext_seq);
    let gaps: Vec<String> = packets
        .windows(2)
        .filter(|w| w[1].ext_seq != w[0].ext_seq + 1)
        .map(|w| {
            format!(
                "seq {} (frame {}) -> seq {} (frame {}): {} numbers skipped",
                w[0].seq,
                w[0].frame,
                w[1].seq,
                w[1].frame,
                w[1].ext_seq.saturating_sub(w[0].ext_seq + 1)
            )
        })
        .collect();
    assert!(
        gaps.is_empty(),
        "the audio leg's sequence jumps across the mute, so the listener sees the packets not forwarded while muted as lost: {gaps:?}"
    );
    finish(vec![a], viewers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_video_packets_are_recovered_by_nack() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let room = "nack";
    let config = ClientConfig::new(server.ws_url(), room, "lossy").drop_incoming_rtp_percent(5);
    let mut viewers = vec![Viewer::join_with(config).await];
    let mut publisher = Publisher::join(&server, room, "camera", false, &PLAIN).await;
    let video = publisher.video_id();
    wait_tracks_of(&viewers[0].client, publisher.peer_id, 1).await;
    // 50 frames a second: about 300 packets in the measured run, so some 15 are lost.
    publisher.start(Duration::from_millis(20));
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(15),
        "video to flow",
        |vs| vs[0].video_of(&video).count() >= 10,
    )
    .await;
    let first = viewers[0]
        .video_of(&video)
        .map(|g| g.frame)
        .min()
        .expect("video");

    // The measured run; the publisher goes on afterwards so a loss at its end is noticed too.
    watch(&mut viewers, Duration::from_secs(6)).await;
    let end = publisher.frame_barrier();
    let complete = try_until(Duration::from_secs(10), || {
        viewers[0].pump();
        let mut frames: Vec<u32> = viewers[0]
            .video_of(&video)
            .map(|g| g.frame)
            .filter(|f| *f < end)
            .collect();
        frames.sort_unstable();
        frames.dedup();
        frames.len() == (end - first) as usize
    })
    .await;
    let v = &viewers[0];
    let mut frames: Vec<u32> = v.video_of(&video).map(|g| g.frame).collect();
    frames.sort_unstable();
    frames.dedup();
    let missing: Vec<u32> = (first..end)
        .filter(|f| frames.binary_search(f).is_err())
        .collect();
    let dropped = v.client.counters().media_dropped;
    assert!(
        complete,
        "frames {first}..{end}: {} never arrived ({missing:?}); {dropped} datagrams dropped",
        missing.len()
    );
    assert!(dropped > 0, "the client dropped nothing");
    let packets: Vec<&Got> = v.video_of(&video).collect();
    assert_continuous("lossy", &packets);
    let received = packets.len();

    // The SFU's egress counters come from its session's periodic stats: ask until they show.
    let deadline = Instant::now() + Duration::from_secs(10);
    let nacks = loop {
        let stats = viewers[0].media_stats().await;
        let nacks = leg(&stats, &video).nacks;
        if nacks > 0 || Instant::now() > deadline {
            break nacks;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "frames {first}..{end} ({received} video packets) all arrived; the client dropped {dropped} media datagrams; the SFU counted {nacks} NACKs"
    );
    assert!(nacks > 0, "getStats shows no NACKs on the lossy leg");
    finish(vec![publisher], viewers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_listed_largest_first_are_ordered_by_picture_size() {
    let _serial = SERIAL.lock().await;
    let server = Server::start();
    let room = "largest-first";
    let mut viewers = vec![
        Viewer::join(&server, room, "small").await,
        Viewer::join(&server, room, "large").await,
    ];
    let mut publisher =
        Publisher::join(&server, room, "camera", false, &SIMULCAST_LARGEST_FIRST).await;
    publisher.ctl().obey_hints = true;
    let video = publisher.video_id();
    for (v, (w, h)) in viewers.iter().zip([TILES[0], TILES[2]]) {
        wait_tracks_of(&v.client, publisher.peer_id, 1).await;
        v.tile(&video, w, h).await;
    }
    publisher.start(VIDEO_TICK);
    // The packets' tags carry the publisher's own layer index: f is 0, q is 2.
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(15),
        "small to receive q (tag 2) and large f (tag 0)",
        |vs| vs[0].layer_counts(&video)[2] >= 20 && vs[1].layer_counts(&video)[0] >= 20,
    )
    .await;
    // The SFU numbers the layers lowest first: small's leg is on layer 0, 320x180.
    let stats = viewers[0].media_stats().await;
    let l = leg(&stats, &video);
    assert_eq!(l.layer, Some(0), "small: stats {l:?}");
    assert_eq!((l.width, l.height), (Some(320), Some(180)), "small: {l:?}");

    // Only the small tile left visible: the hint, in the publisher's order (f, h, q), keeps q.
    let hidden = Instant::now();
    viewers[1].tile(&video, 0, 0).await;
    wait_hint(
        &mut viewers,
        &publisher,
        hidden,
        |a| a == [false, false, true],
        "layerHint [false, false, true] (only q) once the large tile is hidden",
    )
    .await;
    let paused = publisher.frame_barrier();
    wait_viewers(
        &mut viewers,
        &video,
        Duration::from_secs(5),
        "q to keep flowing to small",
        |vs| vs[0].layer_since(&video, 2, paused).count() >= 10,
    )
    .await;
    assert!(viewers.iter().all(|v| v.errors.is_empty()));
    finish(vec![publisher], viewers).await;
}
