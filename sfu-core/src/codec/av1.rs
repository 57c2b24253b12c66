//! AV1 (the AOM RTP payload format): where a keyframe starts. The aggregation header opening
//! every payload has an N bit set on the first packet of a coded video sequence, which is how a
//! keyframe starts (a browser starts a new sequence at each keyframe it is asked for).
//!
//! ```text
//!  |Z|Y| W |N|-|-|-|   Z: continues an OBU of the last packet, N: a new coded video sequence
//! ```

use super::Keyframe;

/// The packet starts a keyframe: its aggregation header's N bit, on a packet that does not
/// continue an earlier one's OBU.
pub(super) fn keyframe(payload: &[u8]) -> Option<Keyframe> {
    let header = *payload.first()?;
    let continues = header & 0x80 != 0;
    let new_sequence = header & 0x08 != 0;
    (new_sequence && !continues).then_some(Keyframe {
        width: None,
        height: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sequences_start_keyframes() {
        assert!(keyframe(&[0x18, 0x0a]).is_some());
        assert!(keyframe(&[0x10, 0x32]).is_none(), "no N bit");
        assert!(keyframe(&[0x98]).is_none(), "a continuation");
        assert!(keyframe(&[]).is_none());
    }
}
