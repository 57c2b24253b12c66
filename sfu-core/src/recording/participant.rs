//! One participant's file within a recording: which of its tracks it holds, and when it opens.
//!
//! Matroska declares its tracks up front, so a file opens once every recorded track of the
//! participant has a first frame (video: a keyframe), or [`OPEN_WAIT`] after the first of them
//! had one: a muted camera does not hold the microphone's file back. A track that shows up
//! later (unmuted, published, another codec) closes the file and opens a new one with every
//! track then sending; the manifest lists both with their start times.

use std::time::Duration;

use super::output::{FileOpen, RecordedFrame, RecordedTrack, RecordingOutput};
use super::Emit;
use crate::protocol::PeerId;
use crate::router::TrackKey;

/// How long a file waits for the participant's other tracks once one of them sends.
pub const OPEN_WAIT: Duration = Duration::from_secs(1);

/// Most frames held while a file waits to open (about 1 s of audio and video at 30 fps, with
/// room to spare).
const MAX_WAITING_FRAMES: usize = 512;
/// Most bytes held while a file waits to open.
const MAX_WAITING_BYTES: usize = 8 << 20;

/// One frame on the room's clock, before it has a place in a file.
#[derive(Debug)]
pub struct TimedFrame {
    /// The track.
    pub key: TrackKey,
    /// What the file declares for that track.
    pub spec: RecordedTrack,
    /// Room time.
    pub time: Duration,
    /// A keyframe.
    pub keyframe: bool,
    /// Video or audio.
    pub video: bool,
    /// The encoded frame.
    pub data: Vec<u8>,
}

#[derive(Debug)]
enum FileState {
    /// No file, nothing waiting.
    Idle,
    /// Frames waiting for the file to open.
    Waiting {
        /// The first waiting frame's time.
        since: Duration,
        frames: Vec<TimedFrame>,
    },
    /// A file is open with these tracks.
    Open {
        file: u64,
        start: Duration,
        tracks: Vec<(TrackKey, RecordedTrack)>,
    },
}

/// One participant of a recorded room.
#[derive(Debug)]
pub struct ParticipantFile {
    peer: PeerId,
    name: String,
    /// Its tracks being recorded.
    tracks: Vec<TrackKey>,
    state: FileState,
}

impl ParticipantFile {
    /// A participant named `name` with no recorded track yet.
    pub fn new(peer: PeerId, name: String) -> Self {
        ParticipantFile {
            peer,
            name,
            tracks: Vec::new(),
            state: FileState::Idle,
        }
    }

    /// Records track `key` of the participant too.
    pub fn add_track(&mut self, key: TrackKey) {
        if !self.tracks.contains(&key) {
            self.tracks.push(key);
        }
    }

    /// Track `key` ended; returns whether the participant has no recorded track left.
    pub fn remove_track(&mut self, key: TrackKey) -> bool {
        self.tracks.retain(|k| *k != key);
        self.tracks.is_empty()
    }

    /// Takes one frame. Returns `false` when the frame was dropped because a new file must
    /// start its video at a keyframe (the track's publisher should be asked for one).
    pub fn on_frame(&mut self, frame: TimedFrame, emit: &mut Emit<'_>) -> bool {
        if let FileState::Open {
            file,
            start,
            tracks,
        } = &self.state
        {
            if let Some(track) = tracks
                .iter()
                .position(|(k, spec)| *k == frame.key && spec.codec == frame.spec.codec)
            {
                emit.push(RecordingOutput::Frame {
                    room: emit.room.clone(),
                    frame: RecordedFrame {
                        file: *file,
                        track,
                        time: frame.time.saturating_sub(*start),
                        keyframe: frame.keyframe,
                        data: frame.data,
                    },
                });
                return true;
            }
            // A track this file does not declare: the next file has it.
            let file = *file;
            emit.push(RecordingOutput::CloseFile {
                room: emit.room.clone(),
                file,
            });
            self.state = FileState::Idle;
        }
        if let FileState::Idle = self.state {
            self.state = FileState::Waiting {
                since: frame.time,
                frames: Vec::new(),
            };
        }
        let FileState::Waiting { since, frames } = &mut self.state else {
            return true;
        };
        let first_of_track = !frames.iter().any(|f| f.key == frame.key);
        if first_of_track && frame.video && !frame.keyframe {
            return false;
        }
        let since = *since;
        let time = frame.time;
        frames.push(frame);
        let all_sent = self
            .tracks
            .iter()
            .all(|k| frames.iter().any(|f| f.key == *k));
        let bytes: usize = frames.iter().map(|f| f.data.len()).sum();
        if all_sent
            || time.saturating_sub(since) >= OPEN_WAIT
            || frames.len() >= MAX_WAITING_FRAMES
            || bytes >= MAX_WAITING_BYTES
        {
            self.open(emit);
        }
        true
    }

    /// Opens the file with the tracks that have waiting frames, and writes them.
    fn open(&mut self, emit: &mut Emit<'_>) {
        let FileState::Waiting { mut frames, .. } =
            std::mem::replace(&mut self.state, FileState::Idle)
        else {
            return;
        };
        let mut tracks: Vec<(TrackKey, RecordedTrack)> = Vec::new();
        for f in &frames {
            if !tracks.iter().any(|(k, _)| *k == f.key) {
                tracks.push((f.key, f.spec.clone()));
            }
        }
        let start = frames.iter().map(|f| f.time).min().unwrap_or_default();
        let file = emit.next_file();
        emit.push(RecordingOutput::OpenFile {
            room: emit.room.clone(),
            file: FileOpen {
                file,
                participant: self.name.clone(),
                peer: self.peer,
                tracks: tracks.iter().map(|(_, spec)| spec.clone()).collect(),
                start,
            },
        });
        // Each track's frames are in time order already; across tracks, by time.
        frames.sort_by_key(|f| f.time);
        self.state = FileState::Open {
            file,
            start,
            tracks,
        };
        for frame in frames {
            self.on_frame(frame, emit);
        }
    }

    /// The participant is done (left, or the recording stops): waiting frames are written and
    /// the file closed.
    pub fn close(&mut self, emit: &mut Emit<'_>) {
        if let FileState::Waiting { .. } = self.state {
            self.open(emit);
        }
        if let FileState::Open { file, .. } = self.state {
            emit.push(RecordingOutput::CloseFile {
                room: emit.room.clone(),
                file,
            });
        }
        self.state = FileState::Idle;
    }
}
