//! Keyframe detection in video RTP payloads (VP8, RFC 7741; H.264, RFC 6184), and the picture
//! size a VP8 keyframe carries. A simulcast switch may only happen at a keyframe of the layer
//! switched to, so every forwarded video packet goes through here once (not once per leg).

/// Video codecs whose payloads this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 (RFC 7741).
    Vp8,
    /// H.264 (RFC 6184).
    H264,
}

/// What the first packet of a keyframe says about the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyframe {
    /// Picture width in pixels, when the payload carries it (VP8 keyframes do).
    pub width: Option<u16>,
    /// Picture height in pixels, as `width`.
    pub height: Option<u16>,
}

/// The keyframe that starts in `payload`, or `None` when the packet does not start one (or is
/// too short to tell: hostile input is never a keyframe).
pub fn keyframe_start(codec: VideoCodec, payload: &[u8]) -> Option<Keyframe> {
    match codec {
        VideoCodec::Vp8 => vp8_keyframe(payload),
        VideoCodec::H264 => h264_has_idr(payload).then_some(Keyframe {
            width: None,
            height: None,
        }),
    }
}

/// VP8: the payload descriptor, then (at the start of partition 0) the frame tag whose P bit is 0
/// for a keyframe, the start code 9d 01 2a and 14-bit width and height.
fn vp8_keyframe(payload: &[u8]) -> Option<Keyframe> {
    let first = *payload.first()?;
    let start_of_partition = first & 0x10 != 0;
    let partition_index = first & 0x07;
    if !start_of_partition || partition_index != 0 {
        return None;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(at)?;
        at += 1;
        if ext & 0x80 != 0 {
            let picture_id = *payload.get(at)?;
            at += if picture_id & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1;
        }
        if ext & 0x30 != 0 {
            at += 1;
        }
    }
    let frame = payload.get(at..)?;
    let tag = *frame.first()?;
    if tag & 0x01 != 0 {
        return None;
    }
    let size = match frame.get(3..10) {
        Some([0x9d, 0x01, 0x2a, w0, w1, h0, h1]) => Some((
            u16::from_le_bytes([*w0, *w1]) & 0x3fff,
            u16::from_le_bytes([*h0, *h1]) & 0x3fff,
        )),
        _ => None,
    };
    Some(Keyframe {
        width: size.map(|s| s.0),
        height: size.map(|s| s.1),
    })
}

/// H.264 NAL unit types that matter here.
const NAL_IDR: u8 = 5;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// H.264: an IDR slice as a single NAL unit, inside a STAP-A aggregate, or as the first fragment
/// of an FU-A.
fn h264_has_idr(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        NAL_IDR => true,
        NAL_STAP_A => {
            let mut rest = &payload[1..];
            while let [hi, lo, tail @ ..] = rest {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                let Some(unit) = tail.get(..len) else {
                    return false;
                };
                if unit.first().is_some_and(|b| b & 0x1f == NAL_IDR) {
                    return true;
                }
                rest = &tail[len..];
            }
            false
        }
        NAL_FU_A => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == NAL_IDR),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 payload: descriptor with a 15-bit picture id, then a keyframe header of `w`×`h`.
    pub(crate) fn vp8_key(w: u16, h: u16) -> Vec<u8> {
        let mut p = vec![0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        p.extend_from_slice(&w.to_le_bytes());
        p.extend_from_slice(&h.to_le_bytes());
        p.extend_from_slice(&[0; 8]);
        p
    }

    #[test]
    fn vp8_keyframe_and_its_size() {
        let kf = keyframe_start(VideoCodec::Vp8, &vp8_key(1280, 720)).unwrap();
        assert_eq!((kf.width, kf.height), (Some(1280), Some(720)));
    }

    #[test]
    fn vp8_delta_frames_and_continuations_are_not_keyframes() {
        let mut delta = vp8_key(640, 360);
        delta[4] |= 0x01;
        assert_eq!(keyframe_start(VideoCodec::Vp8, &delta), None);
        let mut middle = vp8_key(640, 360);
        middle[0] &= !0x10;
        assert_eq!(keyframe_start(VideoCodec::Vp8, &middle), None);
    }

    #[test]
    fn vp8_short_or_garbage_payloads_are_not_keyframes() {
        let key = vp8_key(320, 180);
        for len in 0..5 {
            assert_eq!(keyframe_start(VideoCodec::Vp8, &key[..len]), None, "{len}");
        }
        // A keyframe tag without room for the size still counts, without a size.
        let kf = keyframe_start(VideoCodec::Vp8, &key[..6]).unwrap();
        assert_eq!(kf.width, None);
    }

    #[test]
    fn h264_idr_in_single_stap_a_and_fu_a() {
        assert!(keyframe_start(VideoCodec::H264, &[0x65, 0x88]).is_some());
        assert!(keyframe_start(VideoCodec::H264, &[0x41, 0x9a]).is_none());
        // STAP-A: SPS (len 2), then IDR (len 2).
        let stap = [0x78, 0, 2, 0x67, 0x42, 0, 2, 0x65, 0x88];
        assert!(keyframe_start(VideoCodec::H264, &stap).is_some());
        // A STAP-A whose length runs past the end is not.
        assert!(keyframe_start(VideoCodec::H264, &[0x78, 0, 9, 0x65]).is_none());
        assert!(keyframe_start(VideoCodec::H264, &[0x7c, 0x85, 0]).is_some());
        assert!(keyframe_start(VideoCodec::H264, &[0x7c, 0x05, 0]).is_none());
        assert!(keyframe_start(VideoCodec::H264, &[]).is_none());
    }
}
