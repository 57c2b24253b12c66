//! The small EBML element writer the Matroska muxer needs: element IDs as named constants, and
//! functions that append one element (header + payload) to a byte buffer.
//!
//! Sizes are written with the shortest length that holds them, except where the muxer must
//! patch a value later (the Segment size, reserved slots), which use a fixed width.

/// Matroska/WebM element IDs (RFC 9559), with their marker bits, as they appear on disk.
pub mod id {
    /// EBML header (master).
    pub const EBML: u32 = 0x1A45_DFA3;
    /// EBMLVersion (uint).
    pub const EBML_VERSION: u32 = 0x4286;
    /// EBMLReadVersion (uint).
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    /// EBMLMaxIDLength (uint).
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    /// EBMLMaxSizeLength (uint).
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    /// DocType (string).
    pub const DOC_TYPE: u32 = 0x4282;
    /// DocTypeVersion (uint).
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    /// DocTypeReadVersion (uint).
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    /// Void (binary): padding, ignored by readers; reserves room for later patches.
    pub const VOID: u32 = 0xEC;

    /// Segment (master): everything after the EBML header.
    pub const SEGMENT: u32 = 0x1853_8067;
    /// SeekHead (master): where the top-level elements are.
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    /// Seek (master).
    pub const SEEK: u32 = 0x4DBB;
    /// SeekID (binary): the ID of the element pointed to.
    pub const SEEK_ID: u32 = 0x53AB;
    /// SeekPosition (uint): offset from the start of the Segment's data.
    pub const SEEK_POSITION: u32 = 0x53AC;

    /// Info (master).
    pub const INFO: u32 = 0x1549_A966;
    /// TimestampScale (uint), nanoseconds per timestamp tick.
    pub const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
    /// Duration (float), in TimestampScale ticks.
    pub const DURATION: u32 = 0x4489;
    /// DateUTC (date): nanoseconds since 2001-01-01T00:00:00 UTC.
    pub const DATE_UTC: u32 = 0x4461;
    /// Title (UTF-8).
    pub const TITLE: u32 = 0x7BA9;
    /// MuxingApp (UTF-8).
    pub const MUXING_APP: u32 = 0x4D80;
    /// WritingApp (UTF-8).
    pub const WRITING_APP: u32 = 0x5741;

    /// Tracks (master).
    pub const TRACKS: u32 = 0x1654_AE6B;
    /// TrackEntry (master).
    pub const TRACK_ENTRY: u32 = 0xAE;
    /// TrackNumber (uint), the number blocks refer to.
    pub const TRACK_NUMBER: u32 = 0xD7;
    /// TrackUID (uint).
    pub const TRACK_UID: u32 = 0x73C5;
    /// TrackType (uint): 1 video, 2 audio.
    pub const TRACK_TYPE: u32 = 0x83;
    /// FlagLacing (uint).
    pub const FLAG_LACING: u32 = 0x9C;
    /// CodecID (string).
    pub const CODEC_ID: u32 = 0x86;
    /// CodecPrivate (binary).
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    /// CodecDelay (uint), nanoseconds.
    pub const CODEC_DELAY: u32 = 0x56AA;
    /// SeekPreRoll (uint), nanoseconds.
    pub const SEEK_PRE_ROLL: u32 = 0x56BB;
    /// Video (master).
    pub const VIDEO: u32 = 0xE0;
    /// PixelWidth (uint).
    pub const PIXEL_WIDTH: u32 = 0xB0;
    /// PixelHeight (uint).
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    /// Audio (master).
    pub const AUDIO: u32 = 0xE1;
    /// SamplingFrequency (float).
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    /// Channels (uint).
    pub const CHANNELS: u32 = 0x9F;

    /// Cluster (master).
    pub const CLUSTER: u32 = 0x1F43_B675;
    /// Timestamp (uint): the Cluster's base time.
    pub const TIMESTAMP: u32 = 0xE7;
    /// SimpleBlock (binary).
    pub const SIMPLE_BLOCK: u32 = 0xA3;

    /// Cues (master).
    pub const CUES: u32 = 0x1C53_BB6B;
    /// CuePoint (master).
    pub const CUE_POINT: u32 = 0xBB;
    /// CueTime (uint).
    pub const CUE_TIME: u32 = 0xB3;
    /// CueTrackPositions (master).
    pub const CUE_TRACK_POSITIONS: u32 = 0xB7;
    /// CueTrack (uint).
    pub const CUE_TRACK: u32 = 0xF7;
    /// CueClusterPosition (uint): the Cluster's offset from the start of the Segment's data.
    pub const CUE_CLUSTER_POSITION: u32 = 0xF1;
}

/// The 8-byte "unknown size" of a master element written live (all value bits set).
pub const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// The largest size an 8-byte EBML size field holds (all-ones is "unknown").
const MAX_SIZE: u64 = (1 << 56) - 2;

/// Appends an element ID (IDs carry their own length marker).
pub fn put_id(buf: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    buf.extend_from_slice(&bytes[skip..]);
}

/// How many bytes the shortest size field for `size` takes.
pub fn size_len(size: u64) -> usize {
    // A length of n bytes holds 7n value bits, all-ones reserved for "unknown".
    (1..=8).find(|&n| size < (1u64 << (7 * n)) - 1).unwrap_or(8)
}

/// Appends `size` as an EBML variable-length integer of exactly `len` bytes (1..=8).
pub fn put_size_with_len(buf: &mut Vec<u8>, size: u64, len: usize) {
    debug_assert!((1..=8).contains(&len) && size <= MAX_SIZE);
    let marked = size | (1u64 << (7 * len));
    buf.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

/// Appends `size` with the shortest length.
pub fn put_size(buf: &mut Vec<u8>, size: u64) {
    put_size_with_len(buf, size, size_len(size));
}

/// Appends an element header: ID and the shortest size field.
pub fn put_header(buf: &mut Vec<u8>, id: u32, size: u64) {
    put_id(buf, id);
    put_size(buf, size);
}

/// Appends an unsigned integer element in as few bytes as it needs (at least one).
pub fn put_uint(buf: &mut Vec<u8>, id: u32, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    put_header(buf, id, (8 - skip) as u64);
    buf.extend_from_slice(&bytes[skip..]);
}

/// Appends a signed integer element (DateUTC) as 8 bytes.
pub fn put_int8(buf: &mut Vec<u8>, id: u32, value: i64) {
    put_header(buf, id, 8);
    buf.extend_from_slice(&value.to_be_bytes());
}

/// Appends a float element as 8 bytes (f64).
pub fn put_float(buf: &mut Vec<u8>, id: u32, value: f64) {
    put_header(buf, id, 8);
    buf.extend_from_slice(&value.to_be_bytes());
}

/// Appends a string or binary element.
pub fn put_bytes(buf: &mut Vec<u8>, id: u32, value: &[u8]) {
    put_header(buf, id, value.len() as u64);
    buf.extend_from_slice(value);
}

/// Starts a master element with an 8-byte size placeholder; returns where it starts, for
/// [`end_master`]. A fixed-width size keeps every offset known while the children are appended.
pub fn begin_master(buf: &mut Vec<u8>, id: u32) -> usize {
    let start = buf.len();
    put_id(buf, id);
    buf.extend_from_slice(&UNKNOWN_SIZE);
    start
}

/// Ends the master element begun at `start`: writes its size over the placeholder.
pub fn end_master(buf: &mut [u8], start: usize) {
    let id_len = match buf[start] {
        0x80.. => 1,
        0x40.. => 2,
        0x20.. => 3,
        _ => 4,
    };
    let size_field = start + id_len;
    let size = (buf.len() - size_field - 8) as u64;
    let mut field = Vec::with_capacity(8);
    put_size_with_len(&mut field, size, 8);
    buf[size_field..size_field + 8].copy_from_slice(&field);
}

/// Appends a Void element taking exactly `total` bytes (header included); `total` >= 2.
pub fn put_void(buf: &mut Vec<u8>, total: usize) {
    debug_assert!(total >= 2);
    // 1-byte ID; a 1-byte size holds payloads up to 126, an 8-byte one everything above.
    let size_len = if total - 2 <= 126 { 1 } else { 8 };
    put_id(buf, id::VOID);
    let payload = total - 1 - size_len;
    put_size_with_len(buf, payload as u64, size_len);
    buf.resize(buf.len() + payload, 0);
}

/// An element `id` with `payload` followed by a Void so that both take exactly `total` bytes,
/// or `None` when it does not fit. Used to fill a slot reserved earlier with a Void.
pub fn fill_slot(total: usize, id: u32, payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(total);
    put_id(&mut out, id);
    let id_len = out.len();
    let len = payload.len() as u64;
    // A 1-byte remainder cannot hold a Void: widen the size field by one byte instead.
    for extra in 0..2 {
        let field = size_len(len) + extra;
        let used = id_len + field + payload.len();
        let rest = total.checked_sub(used)?;
        if rest == 1 {
            continue;
        }
        out.truncate(id_len);
        put_size_with_len(&mut out, len, field);
        out.extend_from_slice(payload);
        if rest > 0 {
            put_void(&mut out, rest);
        }
        return Some(out);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_the_shortest_length_and_avoid_the_unknown_pattern() {
        let mut buf = Vec::new();
        put_size(&mut buf, 126);
        assert_eq!(buf, [0xFE]);
        buf.clear();
        put_size(&mut buf, 127);
        assert_eq!(buf, [0x40, 0x7F]);
        buf.clear();
        put_size_with_len(&mut buf, 5, 8);
        assert_eq!(buf, [0x01, 0, 0, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn masters_get_their_size_patched() {
        let mut buf = vec![0xAA];
        let start = begin_master(&mut buf, id::TRACKS);
        put_uint(&mut buf, id::TRACK_NUMBER, 1);
        end_master(&mut buf, start);
        assert_eq!(
            buf,
            [0xAA, 0x16, 0x54, 0xAE, 0x6B, 1, 0, 0, 0, 0, 0, 0, 3, 0xD7, 0x81, 1]
        );
    }

    #[test]
    fn ids_keep_their_own_length() {
        let mut buf = Vec::new();
        put_id(&mut buf, id::EBML);
        put_id(&mut buf, id::CODEC_ID);
        put_id(&mut buf, id::TIMESTAMP_SCALE);
        assert_eq!(buf, [0x1A, 0x45, 0xDF, 0xA3, 0x86, 0x2A, 0xD7, 0xB1]);
    }

    #[test]
    fn voids_and_filled_slots_take_exactly_their_size() {
        for total in 2..300 {
            let mut buf = Vec::new();
            put_void(&mut buf, total);
            assert_eq!(buf.len(), total);
        }
        for total in 0..300 {
            for payload in 0..200 {
                if let Some(slot) = fill_slot(total, id::CODEC_PRIVATE, &vec![7; payload]) {
                    assert_eq!(slot.len(), total, "slot {total}, payload {payload}");
                } else {
                    let needed = 2 + size_len(payload as u64) + payload;
                    assert!(needed > total, "slot {total}, payload {payload}");
                }
            }
        }
    }
}
