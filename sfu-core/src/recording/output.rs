//! What the recorder hands the shell: files to open, frames to write, files to close, and the end
//! of a recording. The shell's writer (off the media worker) turns these into files on disk.

use std::sync::Arc;
use std::time::Duration;

use crate::protocol::PeerId;

/// Codec of a recorded track, as the file declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordedCodec {
    /// VP8 frames.
    Vp8,
    /// H.264 access units, Annex-B (start codes), parameter sets in band.
    H264,
    /// Opus packets, 48 kHz.
    Opus,
}

/// One track of a participant's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTrack {
    /// The track's server-wide id (`"<peerId>:<mid>"`).
    pub track_id: String,
    /// Its codec.
    pub codec: RecordedCodec,
    /// Video: picture width from its first keyframe, 0 when the codec does not say.
    pub width: u32,
    /// Video: picture height, as `width`.
    pub height: u32,
    /// Audio: sample rate (Opus: always 48 kHz), 0 for video.
    pub sample_rate: u32,
    /// Audio: channels (Opus over WebRTC: 2), 0 for video.
    pub channels: u8,
}

/// A participant's file to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOpen {
    /// Its id, unique within the recording.
    pub file: u64,
    /// The participant's display name.
    pub participant: String,
    /// The participant's id.
    pub peer: PeerId,
    /// Its tracks; frames name them by index.
    pub tracks: Vec<RecordedTrack>,
    /// Where the file starts on the room's clock (since the recording started).
    pub start: Duration,
}

/// One frame to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedFrame {
    /// The file.
    pub file: u64,
    /// The track's index in the file's [`FileOpen::tracks`].
    pub track: usize,
    /// Its time since the file's start.
    pub time: Duration,
    /// A keyframe (always for audio).
    pub keyframe: bool,
    /// The encoded frame: a VP8 frame, an H.264 access unit (Annex-B), an Opus packet.
    pub data: Vec<u8>,
}

/// What a recording asks of the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingOutput {
    /// The room should be recorded (it was created and the configuration records it, or a
    /// member with the record permission pressed the button): the shell picks an id and a
    /// directory and calls [`Core::start_recording`](crate::Core::start_recording).
    Requested {
        /// The room.
        room: Arc<str>,
    },
    /// Open a participant's file.
    OpenFile {
        /// The recorded room.
        room: Arc<str>,
        /// The file.
        file: FileOpen,
    },
    /// Write a frame.
    Frame {
        /// The recorded room.
        room: Arc<str>,
        /// The frame.
        frame: RecordedFrame,
    },
    /// A file is complete (its participant left or it is replaced by one with more tracks).
    CloseFile {
        /// The recorded room.
        room: Arc<str>,
        /// The file.
        file: u64,
    },
    /// The recording ended: the shell finishes its files. Members were told.
    Ended {
        /// The room.
        room: Arc<str>,
        /// The recording's id.
        id: String,
        /// Why, when it ended on an error rather than a stop.
        error: Option<String>,
    },
}
