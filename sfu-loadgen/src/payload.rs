//! The measurement stamp inside every payload the generator sends.
//!
//! Layout (little-endian), at the start of every RTP payload:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..4 | magic `ESLG` |
//! | 4..8 | global track number (participant × 2 + 0 for audio, 1 for video) |
//! | 8..16 | per-track sequence number, from 0 |
//! | 16..24 | sending time, nanoseconds since the run's epoch |
//! | 24 | flags: bit 0 = sent inside the measurement window |
//!
//! Filler follows up to the wanted size. Every participant of a run lives in one process and
//! shares one epoch, so receive time minus sending time is the one-way latency.
//!
//! The mediasoup client puts [`VP8_PREFIX_LEN`] bytes of VP8 framing before its video stamps
//! ([`vp8_framed`]); [`Stamp::parse`] finds the stamp after them.

/// Magic bytes that open every generated payload.
pub const MAGIC: [u8; 4] = *b"ESLG";
/// Bytes taken by the stamp; payloads are never shorter.
pub const STAMP_LEN: usize = 25;
/// Flag: sent inside the measurement window.
pub const FLAG_MEASURED: u8 = 1;

/// Bytes of VP8 framing [`vp8_framed`] puts before a stamp.
pub const VP8_PREFIX_LEN: usize = 2;

/// `payload` with VP8 framing in front and as much filler cut from its end, so its size stays:
/// a VP8 payload descriptor (RFC 7741: no extensions, partition 0, the start bit on the first
/// packet of a frame) and, there, a VP8 frame tag whose inverse keyframe bit is clear.
///
/// mediasoup forwards a consumer's video only from a keyframe on, and finds keyframes by parsing
/// the VP8 payload; the bare stamp reads as a delta frame to it, so no video would ever pass.
/// Every frame start is declared a keyframe, so a consumer starts at the next frame, as it would
/// after the keyframe its PLI asks for. The other servers get the bare stamp, as before.
pub fn vp8_framed(payload: &[u8], frame_start: bool) -> Vec<u8> {
    let mut p = Vec::with_capacity(payload.len().max(VP8_PREFIX_LEN + STAMP_LEN));
    p.push(if frame_start { 0x10 } else { 0x00 });
    p.push(0x00);
    let keep = payload
        .len()
        .saturating_sub(VP8_PREFIX_LEN)
        .max(STAMP_LEN)
        .min(payload.len());
    p.extend_from_slice(&payload[..keep]);
    p
}

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Global track number.
    pub track: u32,
    /// Per-track sequence number.
    pub seq: u64,
    /// Sending time, nanoseconds since the run's epoch.
    pub sent_ns: u64,
    /// Flags ([`FLAG_MEASURED`]).
    pub flags: u8,
}

impl Stamp {
    /// Whether the packet was sent inside the measurement window.
    pub fn measured(&self) -> bool {
        self.flags & FLAG_MEASURED != 0
    }

    /// Builds a payload of `len` bytes (at least [`STAMP_LEN`]) carrying this stamp.
    pub fn payload(&self, len: usize) -> Vec<u8> {
        let len = len.max(STAMP_LEN);
        let mut p = Vec::with_capacity(len);
        p.extend_from_slice(&MAGIC);
        p.extend_from_slice(&self.track.to_le_bytes());
        p.extend_from_slice(&self.seq.to_le_bytes());
        p.extend_from_slice(&self.sent_ns.to_le_bytes());
        p.push(self.flags);
        // Filler that is not all zeros (some paths treat long zero runs specially).
        let fill = (self.seq as u8).wrapping_mul(31);
        p.extend((STAMP_LEN..len).map(|i| fill.wrapping_add(i as u8)));
        p
    }

    /// Reads the stamp at the start of `payload`, or after the framing of [`vp8_framed`]; `None`
    /// for anything the generator did not make.
    pub fn parse(payload: &[u8]) -> Option<Stamp> {
        let head = match payload.get(..STAMP_LEN)? {
            h if h[..4] == MAGIC => h,
            _ => payload.get(VP8_PREFIX_LEN..VP8_PREFIX_LEN + STAMP_LEN)?,
        };
        if head[..4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| head.get(i..i + 4).and_then(|b| b.try_into().ok());
        let u64_at = |i: usize| head.get(i..i + 8).and_then(|b| b.try_into().ok());
        Some(Stamp {
            track: u32::from_le_bytes(u32_at(4)?),
            seq: u64::from_le_bytes(u64_at(8)?),
            sent_ns: u64::from_le_bytes(u64_at(16)?),
            flags: *head.get(24)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_the_round_trip_and_pads_to_size() {
        let s = Stamp {
            track: 7,
            seq: 123_456,
            sent_ns: 99_000_000_001,
            flags: FLAG_MEASURED,
        };
        let p = s.payload(1100);
        assert_eq!(p.len(), 1100);
        assert_eq!(Stamp::parse(&p), Some(s));
        assert!(Stamp::parse(&p).is_some_and(|s| s.measured()));
        assert_eq!(s.payload(3).len(), STAMP_LEN);
    }

    #[test]
    fn a_vp8_framed_stamp_keeps_its_size_and_parses() {
        let s = Stamp {
            track: 3,
            seq: 9,
            sent_ns: 1,
            flags: 0,
        };
        let framed = vp8_framed(&s.payload(1100), true);
        assert_eq!(framed.len(), 1100);
        assert_eq!(&framed[..2], &[0x10, 0x00]);
        assert_eq!(Stamp::parse(&framed), Some(s));
        let short = vp8_framed(&s.payload(STAMP_LEN), false);
        assert_eq!(short.len(), STAMP_LEN + VP8_PREFIX_LEN);
        assert_eq!(Stamp::parse(&short), Some(s));
    }

    #[test]
    fn foreign_payloads_are_not_stamps() {
        assert_eq!(Stamp::parse(b"hello"), None);
        assert_eq!(Stamp::parse(&[0u8; 64]), None);
    }
}
