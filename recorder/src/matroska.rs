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

use crate::ebml::{self, id};
use crate::spec::{Codec, FileSpec, TrackKind, TrackSpec};
use crate::{av1, h264, opus, vpx};

/// Nanoseconds per timestamp tick: 1 ms, the usual Matroska choice.
const TIMESTAMP_SCALE_NS: u64 = 1_000_000;
/// A Cluster closes once it spans this much (ms), even without a new keyframe.
const CLUSTER_SPAN_MS: i64 = 1_000;
/// A Cluster closes once it holds this many bytes, to bound the memory it takes.
const CLUSTER_MAX_BYTES: usize = 8 << 20;
/// Bytes reserved for the SeekHead (three entries take 65).
const SEEK_HEAD_SLOT: usize = 96;
/// Bytes of a Duration element (2-byte ID, 1-byte size, 8-byte float): its reserved slot.
const DURATION_SLOT: usize = 11;
/// Bytes reserved for an H.264 or AV1 CodecPrivate (an avcC with usual SPS/PPS takes < 100).
const CODEC_PRIVATE_SLOT: usize = 512;
/// Bytes reserved for a Video element whose picture size comes from the first keyframe
/// (two 4-byte sizes take 14).
const VIDEO_SLOT: usize = 16;
/// Seconds from the Unix epoch to Matroska's DateUTC epoch (2001-01-01T00:00:00 UTC).
const MATROSKA_EPOCH_UNIX_MS: i64 = 978_307_200_000;
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
    /// Offset of the Segment's 8-byte size field.
    segment_size_field: u64,
    /// Offset of the Segment's data: positions in SeekHead and Cues are relative to it.
    segment_data: u64,
    seek_head_slot: u64,
    duration_slot: u64,
    info_position: u64,
    tracks_position: u64,
    cluster: Option<Cluster>,
    cues: Vec<Cue>,
}

/// Which container a file's tracks need, and its file name extension.
pub fn container(tracks: &[TrackSpec]) -> (&'static str, &'static str) {
    if tracks.iter().all(|track| track.codec.in_webm()) {
        ("webm", "webm")
    } else {
        ("matroska", "mkv")
    }
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
        let (doc_type, _) = container(&spec.tracks);
        let mut head = Vec::with_capacity(1024);
        let ebml_header = ebml::begin_master(&mut head, id::EBML);
        ebml::put_uint(&mut head, id::EBML_VERSION, 1);
        ebml::put_uint(&mut head, id::EBML_READ_VERSION, 1);
        ebml::put_uint(&mut head, id::EBML_MAX_ID_LENGTH, 4);
        ebml::put_uint(&mut head, id::EBML_MAX_SIZE_LENGTH, 8);
        ebml::put_bytes(&mut head, id::DOC_TYPE, doc_type.as_bytes());
        ebml::put_uint(&mut head, id::DOC_TYPE_VERSION, 4);
        ebml::put_uint(&mut head, id::DOC_TYPE_READ_VERSION, 2);
        ebml::end_master(&mut head, ebml_header);

        ebml::put_id(&mut head, id::SEGMENT);
        let segment_size_field = head.len() as u64;
        head.extend_from_slice(&ebml::UNKNOWN_SIZE);
        let segment_data = head.len() as u64;

        let seek_head_slot = head.len() as u64;
        ebml::put_void(&mut head, SEEK_HEAD_SLOT);

        let info_position = head.len() as u64 - segment_data;
        let info = ebml::begin_master(&mut head, id::INFO);
        ebml::put_uint(&mut head, id::TIMESTAMP_SCALE, TIMESTAMP_SCALE_NS);
        let duration_slot = head.len() as u64;
        ebml::put_void(&mut head, DURATION_SLOT);
        let start_ms = i64::try_from(spec.start.as_millis()).unwrap_or(i64::MAX);
        let date_ms = i64::try_from(started_unix_ms)
            .unwrap_or(i64::MAX)
            .saturating_add(start_ms)
            .saturating_sub(MATROSKA_EPOCH_UNIX_MS);
        ebml::put_int8(&mut head, id::DATE_UTC, date_ms.saturating_mul(1_000_000));
        ebml::put_bytes(&mut head, id::TITLE, spec.participant.as_bytes());
        ebml::put_bytes(&mut head, id::MUXING_APP, b"edge-sfu recorder");
        ebml::put_bytes(&mut head, id::WRITING_APP, b"edge-sfu");
        ebml::end_master(&mut head, info);

        let tracks_position = head.len() as u64 - segment_data;
        let tracks_start = ebml::begin_master(&mut head, id::TRACKS);
        let mut tracks = Vec::with_capacity(spec.tracks.len());
        for (index, track) in spec.tracks.iter().enumerate() {
            let slots = put_track_entry(&mut head, Track::number(index), track);
            tracks.push(Track {
                spec: track.clone(),
                codec_private_slot: slots.codec_private.map(|slot| slot as u64),
                video_slot: slots.video.map(|slot| slot as u64),
                started: track.codec.kind() == TrackKind::Audio,
                last_ms: None,
                last_interval_ms: 0,
            });
        }
        ebml::end_master(&mut head, tracks_start);

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
            segment_size_field,
            segment_data,
            seek_head_slot,
            duration_slot,
            info_position,
            tracks_position,
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
            self.fill_codec_private(index, data)?;
            self.fill_video(index, data)?;
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
                cluster_position: self.end - self.segment_data,
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

    /// Writes the CodecPrivate of an H.264 or AV1 track into its reserved slot from the
    /// parameter sets in `keyframe`, if it has them.
    fn fill_codec_private(&mut self, index: usize, keyframe: &[u8]) -> Result<(), MuxError> {
        let track = &mut self.tracks[index];
        let Some(slot) = track.codec_private_slot else {
            return Ok(());
        };
        let record = match track.spec.codec {
            Codec::H264 => h264::avc_decoder_config(keyframe),
            Codec::Av1 => av1::av1_config(keyframe),
            Codec::Vp8 | Codec::Vp9 | Codec::Opus => None,
        };
        let Some(record) = record else {
            return Ok(());
        };
        match ebml::fill_slot(CODEC_PRIVATE_SLOT, id::CODEC_PRIVATE, &record) {
            Some(bytes) => {
                self.file.write_all_at(&bytes, slot).map_err(MuxError::Io)?;
                track.codec_private_slot = None;
            }
            None => tracing::warn!(
                path = %self.path.display(),
                len = record.len(),
                "decoder configuration larger than its reserved slot; waiting for a smaller one"
            ),
        }
        Ok(())
    }

    /// Writes the Video element (picture size) of a video track into its reserved slot from
    /// `keyframe`, if its size can be read there.
    fn fill_video(&mut self, index: usize, keyframe: &[u8]) -> Result<(), MuxError> {
        let track = &mut self.tracks[index];
        let Some(slot) = track.video_slot else {
            return Ok(());
        };
        let size = match track.spec.codec {
            Codec::Vp8 => vpx::vp8_picture_size(keyframe),
            Codec::Vp9 => vpx::vp9_picture_size(keyframe),
            Codec::Av1 => av1::picture_size(keyframe),
            Codec::H264 => h264::picture_size(keyframe),
            Codec::Opus => None,
        };
        let Some((width, height)) = size else {
            return Ok(());
        };
        let mut video = Vec::with_capacity(VIDEO_SLOT);
        ebml::put_uint(&mut video, id::PIXEL_WIDTH, u64::from(width));
        ebml::put_uint(&mut video, id::PIXEL_HEIGHT, u64::from(height));
        if let Some(bytes) = ebml::fill_slot(VIDEO_SLOT, id::VIDEO, &video) {
            self.file.write_all_at(&bytes, slot).map_err(MuxError::Io)?;
            track.video_slot = None;
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
        let position = self.end - self.segment_data;
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
        let mut seek_head = Vec::with_capacity(SEEK_HEAD_SLOT);
        let head = ebml::begin_master(&mut seek_head, id::SEEK_HEAD);
        let entries = [
            (id::INFO, Some(self.info_position)),
            (id::TRACKS, Some(self.tracks_position)),
        ];
        for (target, position) in entries.into_iter().chain([(id::CUES, cues_position)]) {
            let Some(position) = position else { continue };
            let seek = ebml::begin_master(&mut seek_head, id::SEEK);
            ebml::put_bytes(&mut seek_head, id::SEEK_ID, &target.to_be_bytes());
            ebml::put_uint(&mut seek_head, id::SEEK_POSITION, position);
            ebml::end_master(&mut seek_head, seek);
        }
        ebml::end_master(&mut seek_head, head);
        let rest = SEEK_HEAD_SLOT - seek_head.len();
        ebml::put_void(&mut seek_head, rest);
        self.file.write_all_at(&seek_head, self.seek_head_slot)?;

        let mut duration = Vec::with_capacity(DURATION_SLOT);
        ebml::put_float(&mut duration, id::DURATION, duration_ms as f64);
        self.file.write_all_at(&duration, self.duration_slot)?;

        let mut size = Vec::with_capacity(8);
        ebml::put_size_with_len(&mut size, self.end - self.segment_data, 8);
        self.file.write_all_at(&size, self.segment_size_field)?;
        self.file.sync_all()
    }
}

/// Where a TrackEntry reserved room for what the first keyframe tells (offsets in the header).
struct Slots {
    /// The CodecPrivate of H.264 (avcC) and AV1 (av1C).
    codec_private: Option<usize>,
    /// The Video element, when the caller did not know the picture size.
    video: Option<usize>,
}

/// Appends the TrackEntry of `track`, with slots for what only the first keyframe tells.
fn put_track_entry(buf: &mut Vec<u8>, number: u64, track: &TrackSpec) -> Slots {
    let entry = ebml::begin_master(buf, id::TRACK_ENTRY);
    ebml::put_uint(buf, id::TRACK_NUMBER, number);
    ebml::put_uint(buf, id::TRACK_UID, number);
    let kind = track.codec.kind();
    ebml::put_uint(
        buf,
        id::TRACK_TYPE,
        if kind == TrackKind::Video { 1 } else { 2 },
    );
    ebml::put_uint(buf, id::FLAG_LACING, 0);
    ebml::put_bytes(buf, id::CODEC_ID, track.codec.codec_id().as_bytes());
    let mut slots = Slots {
        codec_private: None,
        video: None,
    };
    match track.codec {
        Codec::Opus => {
            let sample_rate = if track.sample_rate == 0 {
                48_000
            } else {
                track.sample_rate
            };
            ebml::put_bytes(
                buf,
                id::CODEC_PRIVATE,
                &opus::opus_head(track.channels, sample_rate),
            );
            ebml::put_uint(
                buf,
                id::CODEC_DELAY,
                u64::from(opus::PRE_SKIP) * 1_000_000_000 / 48_000,
            );
            ebml::put_uint(buf, id::SEEK_PRE_ROLL, opus::SEEK_PRE_ROLL_NS);
            let audio = ebml::begin_master(buf, id::AUDIO);
            // Opus always decodes at 48 kHz, whatever the input rate was.
            ebml::put_float(buf, id::SAMPLING_FREQUENCY, 48_000.0);
            ebml::put_uint(buf, id::CHANNELS, u64::from(track.channels.clamp(1, 2)));
            ebml::end_master(buf, audio);
        }
        Codec::H264 | Codec::Av1 => {
            slots.codec_private = Some(buf.len());
            ebml::put_void(buf, CODEC_PRIVATE_SLOT);
        }
        Codec::Vp8 | Codec::Vp9 => {}
    }
    if kind == TrackKind::Video {
        if track.width > 0 && track.height > 0 {
            let video = ebml::begin_master(buf, id::VIDEO);
            ebml::put_uint(buf, id::PIXEL_WIDTH, u64::from(track.width));
            ebml::put_uint(buf, id::PIXEL_HEIGHT, u64::from(track.height));
            ebml::end_master(buf, video);
        } else {
            slots.video = Some(buf.len());
            ebml::put_void(buf, VIDEO_SLOT);
        }
    }
    ebml::end_master(buf, entry);
    slots
}
