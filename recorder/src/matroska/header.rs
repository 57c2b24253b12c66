//! What a recorded file starts with, written when it opens: the EBML header, the start of a
//! Segment of unknown size, Info and Tracks, with Voids reserved for what is only known later
//! and the bytes that later fill them (SeekHead, Duration, CodecPrivate, picture size).

use crate::ebml::{self, id};
use crate::spec::{Codec, FileSpec, TrackKind, TrackSpec};
use crate::{av1, h264, opus, vpx};

/// Nanoseconds per timestamp tick: 1 ms, the usual Matroska choice.
const TIMESTAMP_SCALE_NS: u64 = 1_000_000;
/// Milliseconds from the Unix epoch to Matroska's DateUTC epoch (2001-01-01T00:00:00 UTC).
const MATROSKA_EPOCH_UNIX_MS: i64 = 978_307_200_000;
/// Bytes reserved for the SeekHead (three entries take 65).
const SEEK_HEAD_SLOT: usize = 96;
/// Bytes of a Duration element (2-byte ID, 1-byte size, 8-byte float): its reserved slot.
const DURATION_SLOT: usize = 11;
/// Bytes reserved for an H.264 or AV1 CodecPrivate (an avcC with usual SPS/PPS takes < 100).
const CODEC_PRIVATE_SLOT: usize = 512;
/// Bytes reserved for a Video element whose picture size comes from the first keyframe
/// (two 4-byte sizes take 14).
const VIDEO_SLOT: usize = 16;

/// Which container a file's tracks need (DocType), and its file name extension.
pub fn container(tracks: &[TrackSpec]) -> (&'static str, &'static str) {
    if tracks.iter().all(|track| track.codec.in_webm()) {
        ("webm", "webm")
    } else {
        ("matroska", "mkv")
    }
}

/// Where the header's parts and reserved slots are, as file offsets.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// The Segment's 8-byte size field.
    pub segment_size_field: u64,
    /// The Segment's data: positions in SeekHead and Cues are relative to it.
    pub segment_data: u64,
    /// The Void that becomes the SeekHead.
    pub seek_head_slot: u64,
    /// The Void that becomes the Duration.
    pub duration_slot: u64,
    /// Info, relative to the Segment's data.
    pub info_position: u64,
    /// Tracks, relative to the Segment's data.
    pub tracks_position: u64,
}

/// Where a TrackEntry reserved room for what its first keyframe tells (file offsets).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackSlots {
    /// The CodecPrivate of H.264 (avcC) and AV1 (av1C).
    pub codec_private: Option<u64>,
    /// The Video element, when the caller did not know the picture size.
    pub video: Option<u64>,
}

/// A file's header: its bytes and where things are in them.
pub struct Header {
    /// The bytes, from offset 0 of the file.
    pub bytes: Vec<u8>,
    /// Where the parts and the file-wide slots are.
    pub layout: Layout,
    /// Each track's slots, in track order.
    pub track_slots: Vec<TrackSlots>,
}

impl Header {
    /// The header of the file `spec` describes; `started_unix_ms` is when the recording
    /// started (the file's DateUTC adds its start).
    pub fn new(spec: &FileSpec, started_unix_ms: u64) -> Header {
        let (doc_type, _) = container(&spec.tracks);
        let mut bytes = Vec::with_capacity(1024);
        let ebml_header = ebml::begin_master(&mut bytes, id::EBML);
        ebml::put_uint(&mut bytes, id::EBML_VERSION, 1);
        ebml::put_uint(&mut bytes, id::EBML_READ_VERSION, 1);
        ebml::put_uint(&mut bytes, id::EBML_MAX_ID_LENGTH, 4);
        ebml::put_uint(&mut bytes, id::EBML_MAX_SIZE_LENGTH, 8);
        ebml::put_bytes(&mut bytes, id::DOC_TYPE, doc_type.as_bytes());
        ebml::put_uint(&mut bytes, id::DOC_TYPE_VERSION, 4);
        ebml::put_uint(&mut bytes, id::DOC_TYPE_READ_VERSION, 2);
        ebml::end_master(&mut bytes, ebml_header);

        ebml::put_id(&mut bytes, id::SEGMENT);
        let segment_size_field = bytes.len() as u64;
        bytes.extend_from_slice(&ebml::UNKNOWN_SIZE);
        let segment_data = bytes.len() as u64;

        let seek_head_slot = bytes.len() as u64;
        ebml::put_void(&mut bytes, SEEK_HEAD_SLOT);

        let info_position = bytes.len() as u64 - segment_data;
        let info = ebml::begin_master(&mut bytes, id::INFO);
        ebml::put_uint(&mut bytes, id::TIMESTAMP_SCALE, TIMESTAMP_SCALE_NS);
        let duration_slot = bytes.len() as u64;
        ebml::put_void(&mut bytes, DURATION_SLOT);
        let start_ms = i64::try_from(spec.start.as_millis()).unwrap_or(i64::MAX);
        let date_ms = i64::try_from(started_unix_ms)
            .unwrap_or(i64::MAX)
            .saturating_add(start_ms)
            .saturating_sub(MATROSKA_EPOCH_UNIX_MS);
        ebml::put_int8(&mut bytes, id::DATE_UTC, date_ms.saturating_mul(1_000_000));
        ebml::put_bytes(&mut bytes, id::TITLE, spec.participant.as_bytes());
        ebml::put_bytes(&mut bytes, id::MUXING_APP, b"edge-sfu recorder");
        ebml::put_bytes(&mut bytes, id::WRITING_APP, b"edge-sfu");
        ebml::end_master(&mut bytes, info);

        let tracks_position = bytes.len() as u64 - segment_data;
        let tracks = ebml::begin_master(&mut bytes, id::TRACKS);
        let track_slots = spec
            .tracks
            .iter()
            .enumerate()
            .map(|(index, track)| put_track_entry(&mut bytes, index as u64 + 1, track))
            .collect();
        ebml::end_master(&mut bytes, tracks);

        let layout = Layout {
            segment_size_field,
            segment_data,
            seek_head_slot,
            duration_slot,
            info_position,
            tracks_position,
        };
        Header {
            bytes,
            layout,
            track_slots,
        }
    }
}

/// Appends the TrackEntry of track `number`, with slots for what only its first keyframe
/// tells.
fn put_track_entry(buf: &mut Vec<u8>, number: u64, track: &TrackSpec) -> TrackSlots {
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
    let mut slots = TrackSlots::default();
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
            let codec_delay_ns = u64::from(opus::PRE_SKIP) * 1_000_000_000 / 48_000;
            ebml::put_uint(buf, id::CODEC_DELAY, codec_delay_ns);
            ebml::put_uint(buf, id::SEEK_PRE_ROLL, opus::SEEK_PRE_ROLL_NS);
            let audio = ebml::begin_master(buf, id::AUDIO);
            // Opus always decodes at 48 kHz, whatever the input rate was.
            ebml::put_float(buf, id::SAMPLING_FREQUENCY, 48_000.0);
            ebml::put_uint(buf, id::CHANNELS, u64::from(track.channels.clamp(1, 2)));
            ebml::end_master(buf, audio);
        }
        Codec::H264 | Codec::Av1 => {
            slots.codec_private = Some(buf.len() as u64);
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
            slots.video = Some(buf.len() as u64);
            ebml::put_void(buf, VIDEO_SLOT);
        }
    }
    ebml::end_master(buf, entry);
    slots
}

/// What fills a CodecPrivate slot, from the parameter sets of a keyframe of `codec`; `None`
/// when the keyframe lacks them (or their record does not fit, which is logged).
pub fn codec_private_slot(codec: Codec, keyframe: &[u8]) -> Option<Vec<u8>> {
    let record = match codec {
        Codec::H264 => h264::avc_decoder_config(keyframe),
        Codec::Av1 => av1::av1_config(keyframe),
        Codec::Vp8 | Codec::Vp9 | Codec::Opus => None,
    }?;
    let slot = ebml::fill_slot(CODEC_PRIVATE_SLOT, id::CODEC_PRIVATE, &record);
    if slot.is_none() {
        tracing::warn!(
            len = record.len(),
            "recorder: decoder configuration too large for its slot"
        );
    }
    slot
}

/// What fills a Video slot, from the picture size in a keyframe of `codec`; `None` when it
/// cannot be read there.
pub fn video_slot(codec: Codec, keyframe: &[u8]) -> Option<Vec<u8>> {
    let (width, height) = match codec {
        Codec::Vp8 => vpx::vp8_picture_size(keyframe),
        Codec::Vp9 => vpx::vp9_picture_size(keyframe),
        Codec::Av1 => av1::picture_size(keyframe),
        Codec::H264 => h264::picture_size(keyframe),
        Codec::Opus => None,
    }?;
    let mut video = Vec::with_capacity(VIDEO_SLOT);
    ebml::put_uint(&mut video, id::PIXEL_WIDTH, u64::from(width));
    ebml::put_uint(&mut video, id::PIXEL_HEIGHT, u64::from(height));
    ebml::fill_slot(VIDEO_SLOT, id::VIDEO, &video)
}

/// What fills the SeekHead slot: where Info, Tracks and (when written) Cues are.
pub fn seek_head_slot(layout: &Layout, cues_position: Option<u64>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(SEEK_HEAD_SLOT);
    let head = ebml::begin_master(&mut buf, id::SEEK_HEAD);
    let entries = [
        (id::INFO, Some(layout.info_position)),
        (id::TRACKS, Some(layout.tracks_position)),
        (id::CUES, cues_position),
    ];
    for (target, position) in entries {
        let Some(position) = position else { continue };
        let seek = ebml::begin_master(&mut buf, id::SEEK);
        ebml::put_bytes(&mut buf, id::SEEK_ID, &target.to_be_bytes());
        ebml::put_uint(&mut buf, id::SEEK_POSITION, position);
        ebml::end_master(&mut buf, seek);
    }
    ebml::end_master(&mut buf, head);
    let rest = SEEK_HEAD_SLOT - buf.len();
    ebml::put_void(&mut buf, rest);
    buf
}

/// What fills the Duration slot.
pub fn duration_slot(duration_ms: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(DURATION_SLOT);
    ebml::put_float(&mut buf, id::DURATION, duration_ms as f64);
    buf
}
