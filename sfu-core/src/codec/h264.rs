//! H.264 (RFC 6184): where a keyframe starts, and its picture size from the sequence parameter
//! set (`sps.rs`) that browsers send in front of each IDR picture.

use super::{sps, Keyframe};

/// H.264 NAL unit types that matter here.
const NAL_IDR: u8 = 5;
pub(super) const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// The keyframe `payload` starts: an SPS (a decoder needs it, and the PPS after it, before the
/// IDR picture, so a viewer switched there gets all three) or an IDR slice, as a single NAL unit,
/// inside a STAP-A aggregate, or as the first fragment of an FU-A. The size is the SPS's, when
/// the packet carries one.
pub(super) fn keyframe(payload: &[u8]) -> Option<Keyframe> {
    let &first = payload.first()?;
    let mut starts = false;
    let mut size = None;
    let mut look_at = |unit: &[u8]| match unit.first().map(|b| b & 0x1f) {
        Some(NAL_SPS) => {
            starts = true;
            size = size.or_else(|| sps::picture_size(unit));
        }
        Some(NAL_IDR) => starts = true,
        _ => {}
    };
    match first & 0x1f {
        NAL_STAP_A => {
            let mut rest = &payload[1..];
            while let [hi, lo, tail @ ..] = rest {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                let Some(unit) = tail.get(..len) else {
                    // A unit running past the end: what came before it stands.
                    break;
                };
                look_at(unit);
                rest = &tail[len..];
            }
        }
        NAL_FU_A => {
            starts = payload
                .get(1)
                .is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == NAL_IDR);
        }
        _ => look_at(payload),
    }
    starts.then_some(Keyframe {
        width: size.map(|(w, _)| w),
        height: size.map(|(_, h)| h),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(payload: &[u8]) -> bool {
        keyframe(payload).is_some()
    }

    #[test]
    fn h264_idr_in_single_stap_a_and_fu_a() {
        assert!(starts(&[0x65, 0x88]));
        assert!(!starts(&[0x41, 0x9a]));
        // STAP-A: an SPS cut short (len 2), then IDR (len 2).
        let stap = [0x78, 0, 2, 0x67, 0x42, 0, 2, 0x65, 0x88];
        assert_eq!(
            keyframe(&stap),
            Some(Keyframe {
                width: None,
                height: None
            })
        );
        // A STAP-A whose only unit runs past the end is not.
        assert!(!starts(&[0x78, 0, 9, 0x65]));
        assert!(starts(&[0x7c, 0x85, 0]));
        assert!(!starts(&[0x7c, 0x05, 0]));
        assert!(!starts(&[]));
        assert!(!starts(&[0x78]));
    }

    #[test]
    fn sps_gives_the_keyframe_its_size() {
        // x264's SPS for 320x180, then a PPS, in a STAP-A as Chromium sends them before an IDR.
        let sps = [
            0x67, 0x42, 0xc0, 0x0b, 0xd9, 0x01, 0x41, 0x9f, 0x9f, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x00, 0x20, 0xf1, 0x42, 0xa4, 0x80,
        ];
        let pps = [0x68, 0xce, 0x38, 0x80];
        let mut stap = vec![0x78, 0, sps.len() as u8];
        stap.extend_from_slice(&sps);
        stap.extend_from_slice(&[0, pps.len() as u8]);
        stap.extend_from_slice(&pps);
        let size = Keyframe {
            width: Some(320),
            height: Some(180),
        };
        assert_eq!(keyframe(&stap), Some(size));
        // The SPS alone, as a single NAL unit packet.
        assert_eq!(keyframe(&sps), Some(size));
        // A PPS alone starts nothing.
        assert!(!starts(&pps));
        // A truncated SPS still marks the start, without a size.
        assert_eq!(
            keyframe(&sps[..5]),
            Some(Keyframe {
                width: None,
                height: None
            })
        );
    }
}
