//! Recording rooms: a recorder is a sink of the router ([`SinkRef::Recorder`]) that takes the
//! top layer of every track of its room and turns packets into whole frames on the room's clock,
//! one file per participant. Nothing here writes a file: [`RecordingOutput`]s tell the shell what
//! to open, write and close, and its writer does the disk I/O off the media worker.
//!
//! Per track: a [`JitterBuffer`] puts packets back in order (waiting [`VIDEO_LATENCY`] or
//! [`AUDIO_LATENCY`] for a hole to fill, NACK included), a [`FrameAssembler`] depacketizes whole
//! frames (dropping broken ones and what follows until a keyframe, which it asks for), and a
//! [`TrackClock`] puts them on the room's clock. Per participant, a [`ParticipantFile`] decides
//! when its file opens and which tracks it holds.
//!
//! The buffers are worked when a packet of their track arrives (with that packet's arrival as
//! `now`), and emptied when a track ends or the recording stops: the recorder needs no timer.
//!
//! [`SinkRef::Recorder`]: crate::router::SinkRef::Recorder

mod assembler;
mod clock;
mod jitter;
mod output;
mod participant;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::MediaKind;
use tracing::info;

pub use assembler::{Assembled, AssembledFrame, FrameAssembler};
pub use clock::TrackClock;
pub use jitter::{HeldPacket, JitterBuffer, Released};
pub use output::{FileOpen, RecordedCodec, RecordedFrame, RecordedTrack, RecordingOutput};
pub use participant::{ParticipantFile, TimedFrame, OPEN_WAIT};

use crate::protocol::PeerId;
use crate::router::{Delivery, RoutedPacket, TrackKey};

/// How long a video track's jitter buffer waits for a missing packet (a NACK round trip).
pub const VIDEO_LATENCY: Duration = Duration::from_millis(150);
/// How long an audio track's jitter buffer waits (audio is not resent).
pub const AUDIO_LATENCY: Duration = Duration::from_millis(60);
/// Most packets a track's jitter buffer holds.
const JITTER_CAPACITY: usize = 1024;

/// Why a recording cannot start or stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingError {
    /// No room of that name on this worker.
    #[error("no room named {0}")]
    UnknownRoom(String),
    /// The room is being recorded already.
    #[error("room {0} is already being recorded")]
    AlreadyRecording(String),
    /// The room is not being recorded.
    #[error("room {0} is not being recorded")]
    NotRecording(String),
}

/// Where a recording's outputs and keyframe requests go while it works.
pub struct Emit<'a> {
    /// The recorded room.
    pub room: &'a Arc<str>,
    out: &'a mut VecDeque<RecordingOutput>,
    next_file: &'a mut u64,
}

impl Emit<'_> {
    /// Queues an output for the shell.
    pub fn push(&mut self, output: RecordingOutput) {
        self.out.push_back(output);
    }

    /// A fresh file id within the recording.
    pub fn next_file(&mut self) -> u64 {
        *self.next_file += 1;
        *self.next_file
    }
}

/// The recorded state of one track.
#[derive(Debug)]
struct RecordedTrackState {
    publisher: PeerId,
    /// The layer recorded (the top one), which keyframe requests name.
    layer: u8,
    /// The SSRC its buffer holds (another one means another stream: the buffer starts over).
    ssrc: Option<u32>,
    jitter: JitterBuffer,
    /// Made at its first packet, from the packet's codec.
    unpack: Option<(FrameAssembler, TrackClock)>,
    /// What the file declares for it, from its first frame.
    spec: Option<RecordedTrack>,
}

/// The recording of one room.
#[derive(Debug)]
struct RoomRecording {
    id: String,
    tracks: HashMap<TrackKey, RecordedTrackState>,
    files: RoomFiles,
}

/// What a room's recorded frames are written into: its participants' files.
#[derive(Debug)]
struct RoomFiles {
    room: Arc<str>,
    /// When the recording started: frame times count from it.
    started: Instant,
    participants: HashMap<PeerId, ParticipantFile>,
    next_file: u64,
}

impl RoomFiles {
    /// The participants' files, and where their writing goes (the room, the shell's `out`).
    fn split<'a>(
        &'a mut self,
        out: &'a mut VecDeque<RecordingOutput>,
    ) -> (&'a mut HashMap<PeerId, ParticipantFile>, Emit<'a>) {
        let emit = Emit {
            room: &self.room,
            out,
            next_file: &mut self.next_file,
        };
        (&mut self.participants, emit)
    }
}

/// What working any recording's packets queues or reuses.
#[derive(Debug, Default)]
struct WorkQueues {
    outputs: VecDeque<RecordingOutput>,
    /// Tracks (and their layer) whose publisher should be asked for a keyframe.
    keyframes: Vec<(TrackKey, u8)>,
    /// Scratch for what one packet assembles (reused).
    assembled: Vec<Assembled>,
}

/// Every recording of one worker, by sink number.
#[derive(Debug, Default)]
pub struct Recordings {
    by_number: HashMap<u64, RoomRecording>,
    by_room: HashMap<Arc<str>, u64>,
    next_number: u64,
    queues: WorkQueues,
}

impl Recordings {
    /// Starts recording `room` as recording `id` at `now`; returns its sink number.
    pub fn start(
        &mut self,
        room: Arc<str>,
        id: String,
        now: Instant,
    ) -> Result<u64, RecordingError> {
        if self.by_room.contains_key(&room) {
            return Err(RecordingError::AlreadyRecording(room.to_string()));
        }
        self.next_number += 1;
        let number = self.next_number;
        self.by_room.insert(room.clone(), number);
        self.by_number.insert(
            number,
            RoomRecording {
                id,
                tracks: HashMap::new(),
                files: RoomFiles {
                    room,
                    started: now,
                    participants: HashMap::new(),
                    next_file: 0,
                },
            },
        );
        Ok(number)
    }

    /// The sink number and id of `room`'s recording, if it is being recorded.
    pub fn of_room(&self, room: &str) -> Option<(u64, &str)> {
        let number = *self.by_room.get(room)?;
        let recording = self.by_number.get(&number)?;
        Some((number, &recording.id))
    }

    /// Records track `key` (of `kind`, its top layer `layer`), published by a participant
    /// named `name`, in recording `number`.
    pub fn add_track(
        &mut self,
        number: u64,
        key: TrackKey,
        name: &str,
        kind: MediaKind,
        layer: u8,
    ) {
        let Some(recording) = self.by_number.get_mut(&number) else {
            return;
        };
        let latency = match kind {
            MediaKind::Audio => AUDIO_LATENCY,
            MediaKind::Video => VIDEO_LATENCY,
        };
        recording.tracks.entry(key).or_insert(RecordedTrackState {
            publisher: key.peer,
            layer,
            ssrc: None,
            jitter: JitterBuffer::new(latency, JITTER_CAPACITY),
            unpack: None,
            spec: None,
        });
        recording
            .files
            .participants
            .entry(key.peer)
            .or_insert_with(|| ParticipantFile::new(key.peer, name.to_owned()))
            .add_track(key);
    }

    /// Track `key` ended: what it holds is written, and its participant's file closed when it
    /// was the participant's last track.
    pub fn end_track(&mut self, key: TrackKey) {
        for recording in self.by_number.values_mut() {
            let Some(mut track) = recording.tracks.remove(&key) else {
                continue;
            };
            let mut frames = FrameWork {
                files: &mut recording.files,
                queues: &mut self.queues,
            };
            frames.drain(&mut track, key);
            frames.end_track(track.publisher, key);
        }
    }

    /// Stops `room`'s recording: everything held is written, every file closed, and
    /// [`RecordingOutput::Ended`] queued. Returns the id it had.
    pub fn stop(&mut self, room: &str, error: Option<String>) -> Result<String, RecordingError> {
        let number = self
            .by_room
            .remove(room)
            .ok_or_else(|| RecordingError::NotRecording(room.to_owned()))?;
        let Some(mut recording) = self.by_number.remove(&number) else {
            return Err(RecordingError::NotRecording(room.to_owned()));
        };
        let mut frames = FrameWork {
            files: &mut recording.files,
            queues: &mut self.queues,
        };
        let mut skipped = 0;
        let mut late = 0;
        for (key, mut track) in recording.tracks.drain() {
            frames.drain(&mut track, key);
            skipped += track.unpack.as_ref().map_or(0, |(a, _)| a.skipped());
            late += track.jitter.late();
        }
        frames.close_all();
        info!(room, id = %recording.id, skipped_frames = skipped, late_packets = late, error = ?error, "recording ended");
        self.queues.outputs.push_back(RecordingOutput::Ended {
            room: recording.files.room.clone(),
            id: recording.id.clone(),
            error,
        });
        Ok(recording.id)
    }

    /// Asks the shell to start recording `room` (see [`RecordingOutput::Requested`]).
    pub fn request(&mut self, room: Arc<str>) {
        self.queues
            .outputs
            .push_back(RecordingOutput::Requested { room });
    }

    /// Hands one packet to recording `number`: [`Delivery::Gone`] when it no longer exists.
    pub fn deliver(&mut self, number: u64, packet: &RoutedPacket) -> Delivery {
        let Some(recording) = self.by_number.get_mut(&number) else {
            return Delivery::Gone;
        };
        // The recorder takes the top layer only.
        if !packet.serves_top_layer() {
            return Delivery::Done;
        }
        let key = packet.track;
        let Some(track) = recording.tracks.get_mut(&key) else {
            return Delivery::Gone;
        };
        let mut frames = FrameWork {
            files: &mut recording.files,
            queues: &mut self.queues,
        };
        let arrival = &packet.arrival;
        track.layer = packet.top_layer;
        let codec_changed = track
            .unpack
            .as_ref()
            .is_some_and(|(a, _)| a.codec().codec != packet.codec.codec);
        if track.ssrc != Some(arrival.ssrc) || codec_changed {
            // Another stream behind the track: what the old one left is written first.
            frames.drain(track, key);
            let latency = match packet.codec.kind {
                MediaKind::Audio => AUDIO_LATENCY,
                MediaKind::Video => VIDEO_LATENCY,
            };
            track.jitter = JitterBuffer::new(latency, JITTER_CAPACITY);
            track.ssrc = Some(arrival.ssrc);
            if codec_changed || track.unpack.is_none() {
                track.unpack = FrameAssembler::new(packet.codec).map(|a| {
                    let rate = arrival.params.spec().clock_rate.get();
                    (a, TrackClock::new(rate))
                });
                track.spec = None;
            } else if let Some((assembler, _)) = &mut track.unpack {
                assembler.gap();
            }
        }
        if track.unpack.is_none() {
            // A codec the recorder cannot unpack: the track is left out.
            return Delivery::Gone;
        }
        track.jitter.push(HeldPacket {
            seq: arrival.seq,
            timestamp: arrival.timestamp,
            marker: arrival.marker,
            at: arrival.at,
            keyframe: packet.keyframe,
            payload: arrival.payload.to_vec(),
        });
        while let Some(r) = track.jitter.pop(arrival.at) {
            frames.release(track, key, r);
        }
        Delivery::Done
    }

    /// The next output for the shell.
    pub fn next_output(&mut self) -> Option<RecordingOutput> {
        self.queues.outputs.pop_front()
    }

    /// The tracks whose publishers should be asked for a keyframe now (each with its layer).
    pub fn take_keyframe_requests(&mut self) -> impl Iterator<Item = (TrackKey, u8)> + '_ {
        self.queues.keyframes.drain(..)
    }

    /// Whether any track waits for a keyframe request.
    pub fn wants_keyframes(&self) -> bool {
        !self.queues.keyframes.is_empty()
    }
}

/// What working a recording's released packets touches besides the track itself: its
/// participants' files, the shell's outputs, and the recorder's scratch and keyframe requests.
struct FrameWork<'a> {
    files: &'a mut RoomFiles,
    queues: &'a mut WorkQueues,
}

impl FrameWork<'_> {
    /// Track `key` of `publisher` ended: its participant's file is closed when it was the
    /// participant's last track.
    fn end_track(&mut self, publisher: PeerId, key: TrackKey) {
        let (participants, mut emit) = self.files.split(&mut self.queues.outputs);
        let Some(participant) = participants.get_mut(&publisher) else {
            return;
        };
        if participant.remove_track(key) {
            participant.close(&mut emit);
            participants.remove(&publisher);
        }
    }

    /// Closes every participant's file (the recording stops).
    fn close_all(&mut self) {
        let (participants, mut emit) = self.files.split(&mut self.queues.outputs);
        for participant in participants.values_mut() {
            participant.close(&mut emit);
        }
    }

    /// Writes everything `track`'s jitter buffer still holds (the track ends, or another stream
    /// replaces it).
    fn drain(&mut self, track: &mut RecordedTrackState, key: TrackKey) {
        for released in track.jitter.drain() {
            self.release(track, key, released);
        }
    }

    /// Works one released packet (or gap) of `track` through its assembler, and the frames it
    /// completes into its participant's file.
    fn release(&mut self, track: &mut RecordedTrackState, key: TrackKey, released: Released) {
        let Some((assembler, clock)) = &mut track.unpack else {
            return;
        };
        match released {
            Released::Gap(_) => return assembler.gap(),
            Released::Packet(packet) => assembler.push(packet, &mut self.queues.assembled),
        }
        let codec = assembler.codec();
        let ssrc = track.ssrc.unwrap_or_default();
        for a in self.queues.assembled.drain(..) {
            let frame = match a {
                Assembled::Frame(frame) => frame,
                Assembled::Skipped => {
                    want_keyframe(&mut self.queues.keyframes, key, track.layer);
                    continue;
                }
            };
            let arrival = frame.at.saturating_duration_since(self.files.started);
            let time = clock.time(ssrc, frame.timestamp, arrival);
            let video = codec.is_video();
            let spec = track
                .spec
                .get_or_insert_with(|| track_spec(key, codec.codec, frame.size));
            if let (Some((w, h)), true) = (frame.size, video) {
                spec.width = u32::from(w);
                spec.height = u32::from(h);
            }
            let timed = TimedFrame {
                key,
                spec: spec.clone(),
                time,
                keyframe: frame.keyframe,
                video,
                data: frame.data,
            };
            let (participants, mut emit) = self.files.split(&mut self.queues.outputs);
            let Some(participant) = participants.get_mut(&track.publisher) else {
                continue;
            };
            if !participant.on_frame(timed, &mut emit) {
                want_keyframe(&mut self.queues.keyframes, key, track.layer);
            }
        }
    }
}

/// Notes that `key`'s publisher should be asked for a keyframe of `layer`.
fn want_keyframe(keyframes: &mut Vec<(TrackKey, u8)>, key: TrackKey, layer: u8) {
    if !keyframes.iter().any(|(k, _)| *k == key) {
        keyframes.push((key, layer));
    }
}

/// What a file declares for track `key` of `codec`, before its frames say more.
fn track_spec(key: TrackKey, codec: Codec, size: Option<(u16, u16)>) -> RecordedTrack {
    let (w, h) = size.map_or((0, 0), |(w, h)| (u32::from(w), u32::from(h)));
    let (codec, width, height, sample_rate, channels) = match codec {
        Codec::Opus => (RecordedCodec::Opus, 0, 0, 48_000, 2),
        Codec::H264 => (RecordedCodec::H264, w, h, 0, 0),
        _ => (RecordedCodec::Vp8, w, h, 0, 0),
    };
    RecordedTrack {
        track_id: key.id(),
        codec,
        width,
        height,
        sample_rate,
        channels,
    }
}
