//! Test support: real encoded clips from ffmpeg, minimal parsers for their containers (IVF,
//! Annex-B, Ogg), feeding them to a writer, and ffprobe/ffmpeg checks of the result.
#![allow(dead_code)] // each test binary uses part of it

pub mod ebml;
pub mod ffprobe;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use recorder::{Codec, Frame};

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("recorder-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("RECORDER_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Runs ffmpeg quietly with `args`; panics with its stderr on failure (ffmpeg is installed by
/// scripts/test, so a missing one is a failure, not a skip).
pub fn ffmpeg(args: &[&str]) {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed (scripts/test installs it)");
    assert!(
        output.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One encoded frame of a clip, with its time since the clip's start.
#[derive(Clone)]
pub struct ClipFrame {
    pub time: Duration,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// Frames per second of the generated video clips.
pub const FPS: u32 = 15;

/// A video clip of `seconds` seconds in `codec`, 160x120, a keyframe every second.
pub fn video_clip(dir: &Path, codec: Codec, seconds: u32) -> Vec<ClipFrame> {
    let source = format!("testsrc=size=160x120:rate={FPS}:duration={seconds}");
    let gop = FPS.to_string();
    let base = [
        "-f",
        "lavfi",
        "-i",
        source.as_str(),
        "-g",
        gop.as_str(),
        "-pix_fmt",
        "yuv420p",
    ];
    let out = dir.join(format!("clip.{}", codec_name(codec)));
    let out_str = out.to_str().unwrap();
    let encoder: &[&str] = match codec {
        Codec::Vp8 => &[
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "200k",
        ],
        Codec::Vp9 => &[
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "200k",
        ],
        Codec::Av1 => &[
            "-c:v",
            "libaom-av1",
            "-usage",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "200k",
        ],
        Codec::H264 => &[
            "-c:v",
            "libx264",
            // High profile: its avcC has the chroma format and bit depth fields.
            "-profile:v",
            "high",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-bf",
            "0",
            "-bsf:v",
            "h264_metadata=aud=insert",
            "-f",
            "h264",
        ],
        Codec::Opus => unreachable!("not a video codec"),
    };
    let mut args: Vec<&str> = base.to_vec();
    args.extend_from_slice(encoder);
    if codec != Codec::H264 {
        args.extend_from_slice(&["-f", "ivf"]);
    }
    args.push(out_str);
    ffmpeg(&args);
    let bytes = std::fs::read(&out).unwrap();
    let frame_time = |i: usize| Duration::from_secs(i as u64) / FPS;
    match codec {
        Codec::H264 => access_units(&bytes)
            .into_iter()
            .enumerate()
            .map(|(i, data)| ClipFrame {
                time: frame_time(i),
                keyframe: is_idr(&data),
                data,
            })
            .collect(),
        _ => ivf_frames(&bytes)
            .into_iter()
            .map(|(pts, data)| ClipFrame {
                time: frame_time(pts as usize),
                keyframe: is_keyframe(codec, &data),
                data,
            })
            .collect(),
    }
}

fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::Vp8 => "vp8",
        Codec::Vp9 => "vp9",
        Codec::Av1 => "av1",
        Codec::H264 => "h264",
        Codec::Opus => "opus",
    }
}

/// The frames of an IVF file with their pts (in frame units: the clip's time base is 1/FPS).
fn ivf_frames(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    assert_eq!(&bytes[..4], b"DKIF");
    let header_len = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
    let mut pos = header_len;
    let mut frames = Vec::new();
    while pos + 12 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let pts = u64::from_le_bytes(bytes[pos + 4..pos + 12].try_into().unwrap());
        frames.push((pts, bytes[pos + 12..pos + 12 + size].to_vec()));
        pos += 12 + size;
    }
    frames
}

/// Whether a VP8/VP9/AV1 frame is a keyframe, from its first bytes.
fn is_keyframe(codec: Codec, data: &[u8]) -> bool {
    match codec {
        // VP8: frame tag bit 0 is 0 for keyframes.
        Codec::Vp8 => data[0] & 0x01 == 0,
        // VP9 profile 0: frame_marker(2) profile(2) show_existing(1) frame_type(1).
        Codec::Vp9 => data[0] & 0x08 == 0 && data[0] & 0x04 == 0,
        // AV1 (libaom): a temporal unit with a sequence header OBU starts a keyframe.
        Codec::Av1 => av1_has_sequence_header(data),
        Codec::H264 | Codec::Opus => unreachable!(),
    }
}

fn av1_has_sequence_header(mut data: &[u8]) -> bool {
    while let Some(&header) = data.first() {
        let kind = (header >> 3) & 0x0F;
        if kind == 1 {
            return true;
        }
        let mut pos = 1 + usize::from(header & 0x04 != 0);
        let mut size = 0usize;
        for i in 0..8 {
            let byte = data[pos];
            pos += 1;
            size |= usize::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                break;
            }
        }
        data = &data[pos + size..];
    }
    false
}

/// Splits an Annex-B H.264 stream into access units at its access unit delimiters.
fn access_units(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 4 <= stream.len() {
        if stream[i..i + 3] == [0, 0, 1] && stream[i + 3] & 0x1F == 9 {
            // Include a leading zero of a 4-byte start code.
            starts.push(if i > 0 && stream[i - 1] == 0 {
                i - 1
            } else {
                i
            });
        }
        i += 1;
    }
    starts.push(stream.len());
    starts
        .windows(2)
        .map(|w| stream[w[0]..w[1]].to_vec())
        .collect()
}

/// Whether an Annex-B access unit holds an IDR slice.
fn is_idr(access_unit: &[u8]) -> bool {
    access_unit
        .windows(4)
        .any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1F == 5)
}

/// An Opus clip of `seconds` seconds (a 440 Hz sine, mono, 20 ms packets).
pub fn opus_clip(dir: &Path, seconds: u32) -> Vec<ClipFrame> {
    let out = dir.join("clip.opus");
    let source = format!("sine=frequency=440:sample_rate=48000:duration={seconds}");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &source,
        "-c:a",
        "libopus",
        "-b:a",
        "32k",
        "-frame_duration",
        "20",
        "-f",
        "ogg",
        out.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&out).unwrap();
    ogg_packets(&bytes)
        .into_iter()
        .skip(2) // OpusHead, OpusTags
        .enumerate()
        .map(|(i, data)| ClipFrame {
            time: Duration::from_millis(20 * i as u64),
            keyframe: true,
            data,
        })
        .collect()
}

/// The packets of an Ogg stream (one logical stream).
fn ogg_packets(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut packet = Vec::new();
    let mut pos = 0;
    while pos + 27 <= bytes.len() {
        assert_eq!(&bytes[pos..pos + 4], b"OggS");
        let segments = bytes[pos + 26] as usize;
        let lacing = &bytes[pos + 27..pos + 27 + segments];
        let mut data = pos + 27 + segments;
        for &lace in lacing {
            packet.extend_from_slice(&bytes[data..data + lace as usize]);
            data += lace as usize;
            if lace < 255 {
                packets.push(std::mem::take(&mut packet));
            }
        }
        pos = data;
    }
    packets
}

/// Interleaves the tracks' frames by time into Frames of `file` (track i = clip i).
pub fn interleave(file: u64, clips: &[&[ClipFrame]]) -> Vec<Frame> {
    let mut frames: Vec<Frame> = clips
        .iter()
        .enumerate()
        .flat_map(|(track, clip)| {
            clip.iter().map(move |f| Frame {
                file,
                track,
                time: f.time,
                keyframe: f.keyframe,
                data: f.data.clone(),
            })
        })
        .collect();
    frames.sort_by_key(|f| f.time);
    frames
}
