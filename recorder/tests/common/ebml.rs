//! A minimal EBML reader, to check what the files' structure says independently of ffmpeg
//! (which takes a picture size from the decoder and finds keyframes without Cues).

/// Element IDs the tests look for.
pub const SEGMENT: u32 = 0x1853_8067;
pub const SEEK_HEAD: u32 = 0x114D_9B74;
pub const INFO: u32 = 0x1549_A966;
pub const DURATION: u32 = 0x4489;
pub const TRACKS: u32 = 0x1654_AE6B;
pub const TRACK_ENTRY: u32 = 0xAE;
pub const CODEC_PRIVATE: u32 = 0x63A2;
pub const VIDEO: u32 = 0xE0;
pub const PIXEL_WIDTH: u32 = 0xB0;
pub const PIXEL_HEIGHT: u32 = 0xBA;
pub const CLUSTER: u32 = 0x1F43_B675;
pub const CUES: u32 = 0x1C53_BB6B;
pub const CUE_POINT: u32 = 0xBB;

/// One element: its ID, its payload, whether its size was "unknown".
pub struct Element<'a> {
    pub id: u32,
    pub payload: &'a [u8],
    pub unknown_size: bool,
}

/// A variable-length integer at the start of `data`: (value without marker, length).
fn vint(data: &[u8]) -> (u64, usize) {
    let len = data[0].leading_zeros() as usize + 1;
    assert!(len <= 8, "bad EBML length byte {:#x}", data[0]);
    let mut value = u64::from(data[0]) & (0xFF >> len);
    for &byte in &data[1..len] {
        value = (value << 8) | u64::from(byte);
    }
    (value, len)
}

/// The elements one after another in `data` (a master's payload or a whole file). An
/// unknown size runs to the end of `data`.
pub fn elements(mut data: &[u8]) -> Vec<Element<'_>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let id_len = data[0].leading_zeros() as usize + 1;
        let id = data[..id_len]
            .iter()
            .fold(0u32, |id, &b| (id << 8) | u32::from(b));
        let (size, size_len) = vint(&data[id_len..]);
        let start = id_len + size_len;
        let unknown_size = size == (1u64 << (7 * size_len)) - 1;
        let end = if unknown_size {
            data.len()
        } else {
            start + size as usize
        };
        assert!(end <= data.len(), "element {id:#x} overruns its parent");
        out.push(Element {
            id,
            payload: &data[start..end],
            unknown_size,
        });
        data = &data[end..];
    }
    out
}

/// The first element with `id` in `data`.
pub fn child(data: &[u8], id: u32) -> Option<Element<'_>> {
    elements(data).into_iter().find(|e| e.id == id)
}

/// An unsigned integer payload.
pub fn uint(payload: &[u8]) -> u64 {
    payload.iter().fold(0, |v, &b| (v << 8) | u64::from(b))
}

/// The file's Segment.
pub fn segment(file: &[u8]) -> Element<'_> {
    child(file, SEGMENT).expect("a Segment")
}

/// The picture size a video track's TrackEntry states, if any.
pub fn picture_size(segment: &[u8], track: usize) -> Option<(u64, u64)> {
    let tracks = child(segment, TRACKS).expect("Tracks");
    let entry = elements(tracks.payload)
        .into_iter()
        .filter(|e| e.id == TRACK_ENTRY)
        .nth(track)?;
    let video = child(entry.payload, VIDEO)?;
    let width = uint(child(video.payload, PIXEL_WIDTH)?.payload);
    let height = uint(child(video.payload, PIXEL_HEIGHT)?.payload);
    Some((width, height))
}
