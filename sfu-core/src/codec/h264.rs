//! H.264 (RFC 6184): where a keyframe (an IDR picture) starts. Its picture size is in the SPS,
//! which is not parsed here: layer sizes of H.264 simulcast are assumed from the top layer.

/// H.264 NAL unit types that matter here.
const NAL_IDR: u8 = 5;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// H.264: an IDR slice as a single NAL unit, inside a STAP-A aggregate, or as the first fragment
/// of an FU-A.
pub(super) fn starts_idr(payload: &[u8]) -> bool {
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

    #[test]
    fn h264_idr_in_single_stap_a_and_fu_a() {
        assert!(starts_idr(&[0x65, 0x88]));
        assert!(!starts_idr(&[0x41, 0x9a]));
        // STAP-A: SPS (len 2), then IDR (len 2).
        let stap = [0x78, 0, 2, 0x67, 0x42, 0, 2, 0x65, 0x88];
        assert!(starts_idr(&stap));
        // A STAP-A whose length runs past the end is not.
        assert!(!starts_idr(&[0x78, 0, 9, 0x65]));
        assert!(starts_idr(&[0x7c, 0x85, 0]));
        assert!(!starts_idr(&[0x7c, 0x05, 0]));
        assert!(!starts_idr(&[]));
    }
}
