//! What the caller describes: the files of a recording, their tracks, and the frames.

use std::time::Duration;

/// Codec of a recorded track (what the file's CodecID becomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// VP8 video (`V_VP8`): each frame as the RTP depacketizer reassembled it.
    Vp8,
    /// VP9 video (`V_VP9`): each frame, or a superframe.
    Vp9,
    /// AV1 video (`V_AV1`): a temporal unit in the low-overhead bitstream format (every OBU
    /// with its size field); temporal delimiters are dropped by the writer.
    Av1,
    /// H.264 video (`V_MPEG4/ISO/AVC`): an access unit in **Annex-B** (start codes), with SPS
    /// and PPS in keyframes' access units. Forces the `.mkv` container.
    H264,
    /// Opus audio (`A_OPUS`): one packet.
    Opus,
}

/// Whether a track is video or audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    /// A video track.
    Video,
    /// An audio track.
    Audio,
}

impl Codec {
    /// Whether the codec is audio or video.
    pub fn kind(self) -> TrackKind {
        match self {
            Codec::Opus => TrackKind::Audio,
            Codec::Vp8 | Codec::Vp9 | Codec::Av1 | Codec::H264 => TrackKind::Video,
        }
    }

    /// The Matroska CodecID.
    pub fn codec_id(self) -> &'static str {
        match self {
            Codec::Vp8 => "V_VP8",
            Codec::Vp9 => "V_VP9",
            Codec::Av1 => "V_AV1",
            Codec::H264 => "V_MPEG4/ISO/AVC",
            Codec::Opus => "A_OPUS",
        }
    }

    /// The short lowercase name the manifest uses (`vp8`, `h264`, `opus`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Vp8 => "vp8",
            Codec::Vp9 => "vp9",
            Codec::Av1 => "av1",
            Codec::H264 => "h264",
            Codec::Opus => "opus",
        }
    }

    /// Whether WebM allows the codec; otherwise the file is plain Matroska (`.mkv`).
    pub fn in_webm(self) -> bool {
        !matches!(self, Codec::H264)
    }
}

/// One track of a participant's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackSpec {
    /// The codec of every frame of the track.
    pub codec: Codec,
    /// Video width in pixels, 0 when unknown: then the file gets the picture size of the
    /// track's first keyframe (browsers show no video without one). Ignored for audio.
    pub width: u32,
    /// Video height in pixels, 0 when unknown. Ignored for audio.
    pub height: u32,
    /// Audio sample rate in Hz (48000 for Opus). Ignored for video.
    pub sample_rate: u32,
    /// Audio channel count (Opus in WebRTC: 2 in the SDP, 1 or 2 in practice). Ignored for video.
    pub channels: u8,
}

impl TrackSpec {
    /// A video track of `codec`, `width` x `height` (0 when unknown).
    pub fn video(codec: Codec, width: u32, height: u32) -> TrackSpec {
        TrackSpec {
            codec,
            width,
            height,
            sample_rate: 0,
            channels: 0,
        }
    }

    /// An Opus track at 48 kHz with `channels` channels.
    pub fn opus(channels: u8) -> TrackSpec {
        TrackSpec {
            codec: Codec::Opus,
            width: 0,
            height: 0,
            sample_rate: 48_000,
            channels,
        }
    }
}

/// One participant's file within a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Id of the file, unique in the recording (the caller's choice); frames name it.
    pub file: u64,
    /// Display name of the participant (sanitized into the file name).
    pub participant: String,
    /// The participant's peer id in the room.
    pub peer: u64,
    /// The file's tracks; frames refer to them by index. At most 126 tracks.
    pub tracks: Vec<TrackSpec>,
    /// When the file starts on the room's clock: time since the recording started.
    pub start: Duration,
}

/// One encoded frame of one track of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The file ([`FileSpec::file`]).
    pub file: u64,
    /// Index of the track in [`FileSpec::tracks`].
    pub track: usize,
    /// Presentation time since the file's start ([`FileSpec::start`]); millisecond
    /// resolution on disk.
    pub time: Duration,
    /// Whether the frame is a keyframe (video). Audio frames are all keyframes on disk.
    pub keyframe: bool,
    /// The encoded frame, in the format [`Codec`] documents per codec.
    pub data: Vec<u8>,
}
