//! Recording rooms through the real binary: str0m publishers (sfu-client) send real VP8 and
//! Opus (encoded by ffmpeg at test time, packetized with str0m's packetizer), a recording is
//! started and stopped over the HTTP API, and `ffprobe`/`ffmpeg` check the files: the expected
//! streams, a duration within 10 %, and no decoding error. Also: 5 % loss on the way to the SFU,
//! a server killed with SIGKILL mid-recording, and a size cap that ends the recording (members
//! are told) while the call goes on.

#[path = "../recorder/tests/common/ffprobe.rs"]
mod ffprobe;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sfu_client::{Client, ClientConfig, ClientEvent, TrackSource};
use str0m::unversioned::{H264Packetizer, Packetizer, Vp8Packetizer};
use support::{http, join_with, Server};

/// Real media, in the order it is sent.
struct Clip {
    /// VP8 frames, 30 fps.
    video: Vec<Vec<u8>>,
    /// Opus packets, 20 ms each.
    audio: Vec<Vec<u8>>,
}

/// A fresh directory for one test.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-sfu-recording-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `seconds` of a test picture (VP8, 320x240, 30 fps, a keyframe every second) and a tone
/// (Opus, 48 kHz stereo, 20 ms packets).
fn clip(dir: &Path, seconds: u32) -> Clip {
    let ivf = dir.join("clip.ivf");
    let ogg = dir.join("clip.ogg");
    let t = seconds.to_string();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-t",
        &t,
        "-c:v",
        "libvpx",
        "-b:v",
        "300k",
        "-g",
        "30",
        "-deadline",
        "realtime",
        "-f",
        "ivf",
        ivf.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        &t,
        "-ac",
        "2",
        "-c:a",
        "libopus",
        "-b:a",
        "48k",
        "-frame_duration",
        "20",
        "-f",
        "ogg",
        ogg.to_str().unwrap(),
    ]);
    Clip {
        video: ivf_frames(&std::fs::read(ivf).unwrap()),
        // The first two packets are the OpusHead and OpusTags headers.
        audio: ogg_packets(&std::fs::read(ogg).unwrap()).split_off(2),
    }
}

/// The frames of an IVF file (a 32-byte header, then a 12-byte header per frame).
fn ivf_frames(data: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut at = 32;
    while at + 12 <= data.len() {
        let size = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        at += 12;
        frames.push(data[at..at + size].to_vec());
        at += size;
    }
    frames
}

/// The packets of an Ogg stream (pages of lacing values; 255 continues a packet).
fn ogg_packets(data: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut packet = Vec::new();
    let mut at = 0;
    while at + 27 <= data.len() && &data[at..at + 4] == b"OggS" {
        let segments = data[at + 26] as usize;
        let lacing = &data[at + 27..at + 27 + segments];
        let mut body = at + 27 + segments;
        for &len in lacing {
            packet.extend_from_slice(&data[body..body + len as usize]);
            body += len as usize;
            if len < 255 {
                packets.push(std::mem::take(&mut packet));
            }
        }
        at = body;
    }
    packets
}

/// Sends `clip` on `client`'s tracks in real time for `duration`: a VP8 frame every 1/30 s
/// (packetized, the marker on its last packet) and an Opus packet every 20 ms.
async fn publish(client: &Client, clip: &Clip, duration: Duration) {
    let video = client.video_track().unwrap();
    let audio = client.audio_track().unwrap();
    let mut packetizer = Vp8Packetizer::default();
    let start = Instant::now();
    let (mut v, mut a) = (0usize, 0usize);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while start.elapsed() < duration {
        tick.tick().await;
        let elapsed = start.elapsed();
        while Duration::from_millis(20) * a as u32 <= elapsed {
            let packet = &clip.audio[a % clip.audio.len()];
            let _ = client.queue_rtp(audio, Arc::<[u8]>::from(packet.as_slice()), true);
            a += 1;
        }
        while Duration::from_micros(33_333) * v as u32 <= elapsed {
            let frame = &clip.video[v % clip.video.len()];
            let packets = packetizer.packetize(1100, frame).unwrap();
            let last = packets.len() - 1;
            for (i, p) in packets.into_iter().enumerate() {
                let _ = client.queue_rtp(video, Arc::<[u8]>::from(p), i == last);
            }
            v += 1;
        }
    }
}

/// `POST` (start) or `DELETE` (stop) the recording of `room`: the status and the JSON answer.
async fn recording(server: &Server, method: &str, room: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(
        server.addr,
        method,
        &format!("/api/rooms/{room}/recording"),
        None,
    )
    .await
    .unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// ffprobe's view of `file`: the codec names of its streams (sorted) and its duration in
/// seconds.
fn codecs_and_duration(file: &Path) -> (Vec<String>, f64) {
    let probe = ffprobe::probe(file);
    (sorted_codecs(&probe), ffprobe::duration_secs(&probe))
}

/// The codec names of a probed file's streams, sorted.
fn sorted_codecs(probe: &serde_json::Value) -> Vec<String> {
    let mut codecs = ffprobe::codec_names(probe);
    codecs.sort();
    codecs
}

/// Waits (5 s at most between events) for `client` to be told a recording ended: the error it
/// was given, if any; `None` when no such message came.
async fn recording_ended(client: &mut Client) -> Option<Option<String>> {
    while let Some(event) = client.next_event_timeout(Duration::from_secs(5)).await {
        if let ClientEvent::Recording {
            active: false,
            error,
            ..
        } = event
        {
            return Some(error);
        }
    }
    None
}

fn start_server(dir: &Path, extra: &[&str]) -> Server {
    let record_dir = dir.join("recordings");
    let mut args = vec!["--record-dir", record_dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    Server::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

async fn publisher(server: &Server, room: &str, name: &str, loss: u8) -> Client {
    join_with(
        ClientConfig::new(server.ws_url(), room, name)
            .audio(true)
            .video(true)
            .drop_outgoing_rtp_percent(loss),
    )
    .await
}

/// Records two publishers for `seconds` (with `loss` percent of their media lost on the way)
/// and checks every file.
async fn record_and_check(tag: &str, seconds: u32, loss: u8) {
    let dir = temp_dir(tag);
    let clip = clip(&dir, seconds);
    let server = start_server(&dir, &[]);
    let room = format!("rec-{tag}");
    let alice = publisher(&server, &room, "alice", loss).await;
    let bob = publisher(&server, &room, "bob", loss).await;
    let (status, started) = recording(&server, "POST", &room).await;
    assert_eq!(status, 201, "{started}");
    assert!(
        started["id"].is_string() && started["dir"].is_string(),
        "{started}"
    );
    let (status, _) = recording(&server, "POST", &room).await;
    assert_eq!(status, 409, "already recording");
    let length = Duration::from_secs(u64::from(seconds));
    tokio::join!(publish(&alice, &clip, length), publish(&bob, &clip, length));
    if loss > 0 {
        assert!(
            alice.counters().media_dropped > 0,
            "media was lost on the way"
        );
    }
    let (status, stopped) = recording(&server, "DELETE", &room).await;
    assert_eq!(status, 200, "{stopped}");
    let files: Vec<PathBuf> = stopped["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PathBuf::from(f.as_str().unwrap()))
        .collect();
    assert_eq!(files.len(), 2, "one file per participant: {files:?}");
    for file in &files {
        assert!(
            file.is_absolute() && file.extension().unwrap() == "webm",
            "{}",
            file.display()
        );
        let (codecs, duration) = codecs_and_duration(file);
        assert_eq!(codecs, ["opus", "vp8"], "{}", file.display());
        assert!(
            (duration - f64::from(seconds)).abs() <= f64::from(seconds) * 0.1,
            "{}: {duration} s for {seconds} s of media",
            file.display()
        );
        let errors = ffprobe::decode_errors(file);
        assert!(
            errors.is_empty(),
            "{} decodes with errors:\n{errors}",
            file.display()
        );
    }
    let manifest = Path::new(started["dir"].as_str().unwrap()).join("manifest.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(
        manifest["files"].as_array().map(Vec::len),
        Some(2),
        "{manifest}"
    );
    let (status, _) = recording(&server, "DELETE", &room).await;
    assert_eq!(status, 409, "not recording any more");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_publishers_are_recorded_into_playable_files() {
    record_and_check("clean", 10, 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_with_five_percent_loss_still_decodes() {
    record_and_check("lossy", 6, 5).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_room_cannot_be_recorded() {
    let dir = temp_dir("unknown");
    let server = start_server(&dir, &[]);
    assert_eq!(recording(&server, "POST", "nobody-here").await.0, 404);
    assert_eq!(recording(&server, "DELETE", "nobody-here").await.0, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts a server, records room `room` while one publisher sends 4 s of media, then sends the
/// server `signal`. Returns the test's directory, the server and the start's answer.
async fn record_four_seconds_then(room: &str, signal: i32) -> (PathBuf, Server, serde_json::Value) {
    let dir = temp_dir(room);
    let clip = clip(&dir, 4);
    let server = start_server(&dir, &[]);
    let alice = publisher(&server, room, "alice", 0).await;
    let (status, started) = recording(&server, "POST", room).await;
    assert_eq!(status, 201, "{started}");
    publish(&alice, &clip, Duration::from_secs(4)).await;
    // SAFETY: kill(2) on the child process this test started.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, signal) }, 0);
    (dir, server, started)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_cut_by_sigkill_leaves_decodable_files() {
    let (dir, mut server, started) = record_four_seconds_then("killed", libc::SIGKILL).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.is_alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rec_dir = PathBuf::from(started["dir"].as_str().unwrap());
    let files: Vec<PathBuf> = std::fs::read_dir(&rec_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "webm"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    // No Duration was written (the process never finished the file): count what decodes.
    let codecs = sorted_codecs(&ffprobe::probe(&files[0]));
    assert_eq!(codecs, ["opus", "vp8"]);
    let frames = ffprobe::decoded_frames(&files[0], "v:0");
    assert!(
        frames > 60,
        "most of the 4 s (120 frames) survive: {frames} frames"
    );
    let errors = ffprobe::decode_errors(&files[0]);
    assert!(errors.is_empty(), "decodes with errors:\n{errors}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_server_finishes_its_recordings() {
    let (dir, mut server, started) = record_four_seconds_then("stopped", libc::SIGTERM).await;
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("the server exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let rec_dir = PathBuf::from(started["dir"].as_str().unwrap());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rec_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["state"], "finished", "{manifest}");
    let file = rec_dir.join(manifest["files"][0]["path"].as_str().expect("a file"));
    // Finished, not cut: the Duration is in the file's header.
    let (codecs, duration) = codecs_and_duration(&file);
    assert_eq!(codecs, ["opus", "vp8"]);
    assert!(
        (duration - 4.0).abs() <= 0.4,
        "{duration} s for 4 s of media"
    );
    let errors = ffprobe::decode_errors(&file);
    assert!(errors.is_empty(), "decodes with errors:\n{errors}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_size_cap_ends_the_recording_and_not_the_call() {
    let dir = temp_dir("cap");
    let clip = clip(&dir, 6);
    let server = start_server(&dir, &["--record-max-bytes", "60000"]);
    let mut alice = publisher(&server, "capped", "alice", 0).await;
    let bob = join_with(ClientConfig::new(server.ws_url(), "capped", "bob")).await;
    let (status, _) = recording(&server, "POST", "capped").await;
    assert_eq!(status, 201);
    publish(&alice, &clip, Duration::from_secs(6)).await;
    // The members are told the recording ended, with the reason.
    let error = recording_ended(&mut alice)
        .await
        .expect("a recording message with active: false")
        .unwrap_or_default();
    assert!(error.contains("cap"), "{error}");
    // The call goes on: bob still receives alice's media.
    let before = bob.counters().rtp_received;
    publish(&alice, &clip, Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        bob.counters().rtp_received > before,
        "media still flows after the recording ended"
    );
    assert_eq!(recording(&server, "DELETE", "capped").await.0, 409);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The access units of an Annex-B H.264 stream: a new one starts at a parameter set, SEI or
/// access unit delimiter after a slice, or at a slice after a slice (one slice per picture).
fn access_units(annex_b: &[u8]) -> Vec<Vec<u8>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= annex_b.len() {
        if annex_b[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units: Vec<Vec<u8>> = Vec::new();
    let mut current = Vec::new();
    let mut has_slice = false;
    for (n, &start) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(annex_b.len(), |next| next - 3);
        // A four-byte start code leaves a zero before the next unit's three.
        while end > start && annex_b[end - 1] == 0 && starts.get(n + 1).is_some() {
            end -= 1;
        }
        let nal = &annex_b[start..end];
        let kind = nal.first().map_or(0, |b| b & 0x1f);
        let slice = kind == 1 || kind == 5;
        if has_slice && (slice || matches!(kind, 6..=9)) {
            units.push(std::mem::take(&mut current));
            has_slice = false;
        }
        current.extend_from_slice(&[0, 0, 0, 1]);
        current.extend_from_slice(nal);
        has_slice |= slice;
    }
    if has_slice {
        units.push(current);
    }
    units
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h264_ingest_is_recorded_into_a_matroska_file() {
    let dir = temp_dir("h264");
    let raw = dir.join("clip.h264");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-pix_fmt",
        "yuv420p",
        "-bf",
        "0",
        "-g",
        "30",
        "-x264-params",
        "repeat-headers=1",
        "-f",
        "h264",
        raw.to_str().unwrap(),
    ]);
    let units = access_units(&std::fs::read(&raw).unwrap());
    assert!(units.len() >= 100, "{} access units", units.len());
    let server = start_server(&dir, &[]);
    let spec = r#"{"room":"h264-room","name":"door-camera","codec":"h264","payloadType":102}"#;
    let (status, body) = http(server.addr, "POST", "/api/ingests", Some(spec))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let ingest: serde_json::Value = serde_json::from_str(&body).unwrap();
    let port = ingest["port"].as_u64().unwrap() as u16;
    let (status, started) = recording(&server, "POST", "h264-room").await;
    assert_eq!(status, 201, "{started}");

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut packetizer = H264Packetizer::default();
    let start = Instant::now();
    let mut seq: u16 = 1000;
    for (n, unit) in units.iter().enumerate() {
        let due = start + Duration::from_micros(33_333) * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let payloads = packetizer.packetize(1100, unit).unwrap();
        let last = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.into_iter().enumerate() {
            let mut packet = vec![0x80, 102 | if i == last { 0x80 } else { 0 }];
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&(n as u32 * 3000).to_be_bytes());
            packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            packet.extend_from_slice(&payload);
            socket.send_to(&packet, ("127.0.0.1", port)).await.unwrap();
            seq = seq.wrapping_add(1);
        }
    }
    let (status, stopped) = recording(&server, "DELETE", "h264-room").await;
    assert_eq!(status, 200, "{stopped}");
    let files = stopped["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{stopped}");
    let file = PathBuf::from(files[0].as_str().unwrap());
    assert_eq!(file.extension().unwrap(), "mkv", "H.264 goes into Matroska");
    let (codecs, duration) = codecs_and_duration(&file);
    assert_eq!(codecs, ["h264"]);
    assert!((duration - 4.0).abs() <= 0.4, "{duration} s of 4 s");
    let errors = ffprobe::decode_errors(&file);
    assert!(errors.is_empty(), "decodes with errors:\n{errors}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_directory_fails_the_start_and_the_members_are_told() {
    let dir = temp_dir("unwritable");
    // A file where the recordings' directory should be: nothing can be created under it.
    let blocker = dir.join("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    let server = Server::start_with(&["--record-dir", blocker.to_str().unwrap()]);
    let mut alice = publisher(&server, "unwritable", "alice", 0).await;
    let (status, body) = recording(&server, "POST", "unwritable").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        recording_ended(&mut alice).await.flatten().is_some(),
        "the members were told why it stopped"
    );
    assert!(alice.is_connected(), "the call goes on");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `seconds` of VP8 at `size` (30 fps, a keyframe every second), as frames.
fn vp8_clip(dir: &Path, size: &str, seconds: u32) -> Vec<Vec<u8>> {
    let ivf = dir.join(format!("{size}.ivf"));
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc=size={size}:rate=30"),
        "-t",
        &seconds.to_string(),
        "-c:v",
        "libvpx",
        "-b:v",
        "200k",
        "-g",
        "30",
        "-deadline",
        "realtime",
        "-f",
        "ivf",
        ivf.to_str().unwrap(),
    ]);
    ivf_frames(&std::fs::read(ivf).unwrap())
}

/// The width of `file`'s first video stream, as ffprobe reads it.
fn video_width(file: &Path) -> u32 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width",
        ])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_simulcast_track_is_recorded_from_its_top_layer() {
    let dir = temp_dir("simulcast");
    let low = vp8_clip(&dir, "160x120", 3);
    let high = vp8_clip(&dir, "320x240", 3);
    let server = start_server(&dir, &[]);
    let client = join_with(ClientConfig::new(server.ws_url(), "layers", "cam")).await;
    let track = client
        .publish_simulcast(TrackSource::Camera, &["l", "h"])
        .await
        .unwrap();
    client
        .wait_negotiated(Duration::from_secs(20))
        .await
        .unwrap();
    let (status, started) = recording(&server, "POST", "layers").await;
    assert_eq!(status, 201, "{started}");
    let (mut pl, mut ph) = (Vp8Packetizer::default(), Vp8Packetizer::default());
    let start = Instant::now();
    for (n, (l, h)) in low.iter().zip(&high).enumerate() {
        tokio::time::sleep_until((start + Duration::from_micros(33_333) * n as u32).into()).await;
        for (rid, packetizer, frame) in [("l", &mut pl, l), ("h", &mut ph, h)] {
            let packets = packetizer.packetize(1100, frame).unwrap();
            let last = packets.len() - 1;
            for (i, p) in packets.into_iter().enumerate() {
                let _ = client.queue_rtp_layer(track, rid, Arc::<[u8]>::from(p), i == last);
            }
        }
    }
    let (status, stopped) = recording(&server, "DELETE", "layers").await;
    assert_eq!(status, 200, "{stopped}");
    let files = stopped["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{stopped}");
    let file = PathBuf::from(files[0].as_str().unwrap());
    let (codecs, duration) = codecs_and_duration(&file);
    assert_eq!(codecs, ["vp8"]);
    assert!((duration - 3.0).abs() <= 0.3, "{duration} s of 3 s");
    assert_eq!(video_width(&file), 320, "the top layer, not the 160 px one");
    let errors = ffprobe::decode_errors(&file);
    assert!(errors.is_empty(), "decodes with errors:\n{errors}");
    let _ = std::fs::remove_dir_all(&dir);
}
