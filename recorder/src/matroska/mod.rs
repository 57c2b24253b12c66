//! One Matroska/WebM file written live: the header at creation, then Clusters as they fill,
//! and at a clean finish the Cues, the SeekHead, the Duration and the Segment's size.
//!
//! Layout on disk:
//!
//! ```text
//! EBML header (DocType webm or matroska)
//! Segment, size unknown until finish (8-byte field)
//!   Void        reserved for the SeekHead, written at finish
//!   Info        TimestampScale 1 ms, DateUTC, Title; a Void where Duration goes at finish
//!   Tracks      one TrackEntry per track; H.264 and AV1 entries hold a Void that becomes the
//!               CodecPrivate (avcC / av1C) once the first keyframe shows the parameter sets
//!   Cluster*    each built in memory and written whole, with its size, when it closes
//!   Cues        at finish: one CuePoint per Cluster that starts with a video keyframe
//!               (every ~1 s for audio-only files)
//! ```
//!
//! Every byte before the last written Cluster is final (slot patches overwrite Voids of the
//! same size in place), so a process killed at any point leaves a file that players read up
//! to its last Cluster.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

mod header;

use crate::ebml::{self, id};
use crate::spec::{Codec, FileSpec, TrackKind, TrackSpec};
use crate::{av1, h264};
use header::{Header, Layout};

pub use header::container;

/// A Cluster closes once it spans this much (ms), even without a new keyframe.
const CLUSTER_SPAN_MS: i64 = 1_000;
/// A Cluster closes once it holds this many bytes, to bound the memory it takes.
const CLUSTER_MAX_BYTES: usize = 8 << 20;
/// Frame times past this (ms, about 34 years) are invalid: it keeps time arithmetic exact in
/// i64 and in the f64 Duration.
const MAX_TIME_MS: u64 = 1 << 40;
/// The most tracks a file holds: block headers carry the track number in one byte.
pub const MAX_TRACKS: usize = 126;
/// Bytes reserved at the start of a Cluster buffer for its ID and 8-byte size.
const CLUSTER_HEADER: usize = 12;

/// Why a write did not happen.
#[derive(Debug)]
pub enum MuxError {
    /// The recording's byte budget would be exceeded.
    Cap,
    /// The file system refused it.
    Io(io::Error),
}

/// What happened to one frame given to [`MatroskaFile::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Written into the current Cluster.
    Written,
    /// Dropped: a video frame before its track's first usable keyframe.
    WaitingForKeyframe,
    /// Dropped: older than the last frame written on its track.
    OutOfOrder,
    /// Dropped: empty, unparseable, or for a track the file does not have.
    Invalid,
}

/// The bytes the whole recording may still write; shared by its files.
pub trait Budget {
    /// Whether `bytes` more stay within the cap.
    fn allows(&self, bytes: u64) -> bool;
    /// Counts `bytes` written.
    fn add(&mut self, bytes: u64);
}

/// One track's state in the file.
struct Track {
    spec: TrackSpec,
    /// Where the reserved CodecPrivate slot is, until it is filled (H.264, AV1).
    codec_private_slot: Option<u64>,
    /// Where the reserved Video slot is, until the first keyframe gives the picture size (the
    /// caller did not know it; browsers do not show video without it).
    video_slot: Option<u64>,
    /// Whether a usable keyframe was written (always true for audio).
    started: bool,
    /// Time of the last written frame (ms since the file's start).
    last_ms: Option<u64>,
    /// Interval between the last two frames, the estimate of the last frame's duration.
    last_interval_ms: u64,
}

impl Track {
    fn number(index: usize) -> u64 {
        index as u64 + 1
    }

    fn end_ms(&self) -> u64 {
        self.last_ms.map_or(0, |last| last + self.last_interval_ms)
    }
}

/// The Cluster being filled.
struct Cluster {
    /// Its timestamp (ms), which blocks are relative to.
    time_ms: u64,
    /// The element: header room, then Timestamp and SimpleBlocks.
    buf: Vec<u8>,
    /// Whether it holds a block yet.
    has_blocks: bool,
}

/// A CuePoint: a Cluster that starts with a keyframe of `track`.
struct Cue {
    time_ms: u64,
    track: u64,
    cluster_position: u64,
}

/// One recorded file being written.
pub struct MatroskaFile {
    path: PathBuf,
    file: File,
    tracks: Vec<Track>,
    has_video: bool,
    /// Bytes in the file: where the next Cluster goes.
    end: u64,
    /// Where the header's parts and slots are.
    layout: Layout,
    cluster: Option<Cluster>,
    cues: Vec<Cue>,
}

impl MatroskaFile {
    /// Creates the file at `path` (which must not exist) and writes its header.
    /// `started_unix_ms` is when the recording started: the file's DateUTC adds its start.
    pub fn create(
        path: &Path,
        spec: &FileSpec,
        started_unix_ms: u64,
        budget: &mut dyn Budget,
    ) -> Result<MatroskaFile, MuxError> {
        let Header {
            bytes: head,
            layout,
            track_slots,
        } = Header::new(spec, started_unix_ms);
        let tracks = spec
            .tracks
            .iter()
            .zip(track_slots)
            .map(|(track, slots)| Track {
                spec: track.clone(),
                codec_private_slot: slots.codec_private,
                video_slot: slots.video,
                started: track.codec.kind() == TrackKind::Audio,
                last_ms: None,
                last_interval_ms: 0,
            })
            .collect();
        if !budget.allows(head.len() as u64) {
            return Err(MuxError::Cap);
        }
        let file = File::create_new(path).map_err(MuxError::Io)?;
        file.write_all_at(&head, 0).map_err(MuxError::Io)?;
        budget.add(head.len() as u64);
        Ok(MatroskaFile {
            path: path.to_path_buf(),
            file,
            has_video: spec
                .tracks
                .iter()
                .any(|t| t.codec.kind() == TrackKind::Video),
            tracks,
            end: head.len() as u64,
            layout,
            cluster: None,
            cues: Vec::new(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a frame was written (a file without any has no Cluster: unplayable).
    pub fn has_frames(&self) -> bool {
        self.tracks.iter().any(|track| track.last_ms.is_some())
    }

    /// The time covered so far (ms): the end of the last frame of the longest track.
    pub fn duration_ms(&self) -> u64 {
        self.tracks.iter().map(Track::end_ms).max().unwrap_or(0)
    }

    /// Adds one frame of track `index` at `time_ms` (since the file's start). A frame that
    /// starts a new Cluster writes the previous one to the file first.
    pub fn push(
        &mut self,
        index: usize,
        time_ms: u64,
        keyframe: bool,
        data: &[u8],
        budget: &mut dyn Budget,
    ) -> Result<Pushed, MuxError> {
        let Some(track) = self.tracks.get(index) else {
            return Ok(Pushed::Invalid);
        };
        if data.is_empty() || time_ms > MAX_TIME_MS {
            return Ok(Pushed::Invalid);
        }
        let video = track.spec.codec.kind() == TrackKind::Video;
        let keyframe = keyframe || !video;
        if !track.started && !keyframe {
            return Ok(Pushed::WaitingForKeyframe);
        }
        if track.last_ms.is_some_and(|last| time_ms < last) {
            return Ok(Pushed::OutOfOrder);
        }
        if keyframe {
            self.fill_slots(index, data)?;
        }
        let track = &self.tracks[index];
        if !track.started && track.codec_private_slot.is_some() {
            // A keyframe without the parameter sets its decoder configuration needs.
            return Ok(Pushed::WaitingForKeyframe);
        }
        let payload: Cow<'_, [u8]> = match track.spec.codec {
            Codec::H264 => match h264::to_length_prefixed(data) {
                Some(payload) => Cow::Owned(payload),
                None => return Ok(Pushed::Invalid),
            },
            Codec::Av1 => av1::without_temporal_delimiters(data),
            Codec::Vp8 | Codec::Vp9 | Codec::Opus => Cow::Borrowed(data),
        };

        let video_keyframe = video && keyframe;
        if self.needs_new_cluster(time_ms, video_keyframe) {
            self.write_cluster(budget)?;
            self.start_cluster(time_ms, index, video_keyframe);
        }
        let cluster = self.cluster.as_mut().expect("a cluster was just started");
        let relative = i16::try_from(time_ms as i64 - cluster.time_ms as i64)
            .expect("needs_new_cluster keeps relative times in range");
        ebml::put_header(&mut cluster.buf, id::SIMPLE_BLOCK, 4 + payload.len() as u64);
        cluster.buf.push(0x80 | Track::number(index) as u8);
        cluster.buf.extend_from_slice(&relative.to_be_bytes());
        cluster.buf.push(if keyframe { 0x80 } else { 0 });
        cluster.buf.extend_from_slice(&payload);
        cluster.has_blocks = true;

        let track = &mut self.tracks[index];
        if let Some(last) = track.last_ms {
            if time_ms > last {
                track.last_interval_ms = time_ms - last;
            }
        }
        track.last_ms = Some(time_ms);
        track.started = true;
        Ok(Pushed::Written)
    }

    /// Writes the pending Cluster now (the file's media stalled); the next frame starts a new
    /// one.
    pub fn flush(&mut self, budget: &mut dyn Budget) -> Result<(), MuxError> {
        self.write_cluster(budget)
    }

    /// Whether a frame at `time_ms` must go into a new Cluster.
    fn needs_new_cluster(&self, time_ms: u64, video_keyframe: bool) -> bool {
        let Some(cluster) = &self.cluster else {
            return true;
        };
        let relative = time_ms as i64 - cluster.time_ms as i64;
        (video_keyframe && cluster.has_blocks)
            || relative >= CLUSTER_SPAN_MS
            || i16::try_from(relative).is_err()
            || cluster.buf.len() >= CLUSTER_MAX_BYTES
    }

    /// Opens a Cluster at `time_ms`; a Cue points at it when it starts with a video keyframe
    /// (or, in audio-only files, about every second).
    fn start_cluster(&mut self, time_ms: u64, track: usize, video_keyframe: bool) {
        let cue_due = if self.has_video {
            video_keyframe
        } else {
            self.cues
                .last()
                .is_none_or(|cue| time_ms >= cue.time_ms + CLUSTER_SPAN_MS as u64)
        };
        if cue_due {
            self.cues.push(Cue {
                time_ms,
                track: Track::number(track),
                cluster_position: self.end - self.layout.segment_data,
            });
        }
        let mut buf = Vec::with_capacity(64 << 10);
        buf.resize(CLUSTER_HEADER, 0);
        ebml::put_uint(&mut buf, id::TIMESTAMP, time_ms);
        self.cluster = Some(Cluster {
            time_ms,
            buf,
            has_blocks: false,
        });
    }

    /// Writes the current Cluster, if any, with its size, at the end of the file. On failure
    /// the file is cut back to its previous end so that it ends with a whole Cluster.
    fn write_cluster(&mut self, budget: &mut dyn Budget) -> Result<(), MuxError> {
        let Some(mut cluster) = self.cluster.take() else {
            return Ok(());
        };
        if !cluster.has_blocks {
            return Ok(());
        }
        let mut header = Vec::with_capacity(CLUSTER_HEADER);
        ebml::put_id(&mut header, id::CLUSTER);
        let size = (cluster.buf.len() - CLUSTER_HEADER) as u64;
        ebml::put_size_with_len(&mut header, size, 8);
        cluster.buf[..CLUSTER_HEADER].copy_from_slice(&header);
        self.append(&cluster.buf, budget)
    }

    /// Appends `bytes` at the end of the file, within the budget; cuts a partial write back.
    fn append(&mut self, bytes: &[u8], budget: &mut dyn Budget) -> Result<(), MuxError> {
        if !budget.allows(bytes.len() as u64) {
            return Err(MuxError::Cap);
        }
        if let Err(error) = self.file.write_all_at(bytes, self.end) {
            // Best effort: a failed cut leaves a partial Cluster that readers skip.
            let _ = self.file.set_len(self.end);
            return Err(MuxError::Io(error));
        }
        budget.add(bytes.len() as u64);
        self.end += bytes.len() as u64;
        Ok(())
    }

    /// Fills the slots of track `index` that `keyframe` tells the content of: the
    /// CodecPrivate (H.264, AV1 parameter sets) and the picture size.
    fn fill_slots(&mut self, index: usize, keyframe: &[u8]) -> Result<(), MuxError> {
        let track = &mut self.tracks[index];
        let codec = track.spec.codec;
        if let Some(slot) = track.codec_private_slot {
            if let Some(bytes) = header::codec_private_slot(codec, keyframe) {
                self.file.write_all_at(&bytes, slot).map_err(MuxError::Io)?;
                track.codec_private_slot = None;
            }
        }
        if let Some(slot) = track.video_slot {
            if let Some(bytes) = header::video_slot(codec, keyframe) {
                self.file.write_all_at(&bytes, slot).map_err(MuxError::Io)?;
                track.video_slot = None;
            }
        }
        Ok(())
    }

    /// Finishes the file: the last Cluster, Cues, SeekHead, Duration and the Segment's size,
    /// then an fsync. Goes as far as it can: after a write error (disk full) the file still
    /// gets its Duration and sizes, which overwrite bytes in place. Returns the duration (ms)
    /// and the first error met.
    pub fn finish(mut self, budget: &mut dyn Budget) -> (u64, Option<MuxError>) {
        let mut first_error = self.write_cluster(budget).err();
        let cues_position = match self.write_cues(budget) {
            Ok(position) => position,
            Err(error) => {
                first_error.get_or_insert(error);
                None
            }
        };
        let duration_ms = self.duration_ms();
        if let Err(error) = self.patch_index(duration_ms, cues_position) {
            first_error.get_or_insert(MuxError::Io(error));
        }
        (duration_ms, first_error)
    }

    /// Appends the Cues (not counted against the cap: a few bytes a second of media);
    /// returns their position in the Segment.
    fn write_cues(&mut self, budget: &mut dyn Budget) -> Result<Option<u64>, MuxError> {
        if self.cues.is_empty() {
            return Ok(None);
        }
        let mut buf = Vec::with_capacity(self.cues.len() * 24 + 12);
        let cues = ebml::begin_master(&mut buf, id::CUES);
        for cue in &self.cues {
            let point = ebml::begin_master(&mut buf, id::CUE_POINT);
            ebml::put_uint(&mut buf, id::CUE_TIME, cue.time_ms);
            let positions = ebml::begin_master(&mut buf, id::CUE_TRACK_POSITIONS);
            ebml::put_uint(&mut buf, id::CUE_TRACK, cue.track);
            ebml::put_uint(&mut buf, id::CUE_CLUSTER_POSITION, cue.cluster_position);
            ebml::end_master(&mut buf, positions);
            ebml::end_master(&mut buf, point);
        }
        ebml::end_master(&mut buf, cues);
        let position = self.end - self.layout.segment_data;
        if let Err(error) = self.file.write_all_at(&buf, self.end) {
            let _ = self.file.set_len(self.end);
            return Err(MuxError::Io(error));
        }
        budget.add(buf.len() as u64);
        self.end += buf.len() as u64;
        Ok(Some(position))
    }

    /// Overwrites the reserved slots (SeekHead, Duration) and the Segment's size, then syncs.
    fn patch_index(&mut self, duration_ms: u64, cues_position: Option<u64>) -> io::Result<()> {
        let layout = self.layout;
        let seek_head = header::seek_head_slot(&layout, cues_position);
        self.file.write_all_at(&seek_head, layout.seek_head_slot)?;
        let duration = header::duration_slot(duration_ms);
        self.file.write_all_at(&duration, layout.duration_slot)?;
        let mut size = Vec::with_capacity(8);
        ebml::put_size_with_len(&mut size, self.end - layout.segment_data, 8);
        self.file.write_all_at(&size, layout.segment_size_field)?;
        self.file.sync_all()
    }
}
