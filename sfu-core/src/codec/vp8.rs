//! VP8 (RFC 7741): where a keyframe starts and the picture size it carries, and the picture ids
//! across simulcast switches. Each layer numbers its pictures (PictureID) and its base-layer
//! frames (TL0PICIDX) on its own; a receiver's VP8 reference finder uses them to find each
//! frame's references, so a switch must not make them jump. Like the sequence numbers, they get
//! a per-leg offset chosen at each switch so the new layer continues at last + 1.

use str0m::rtp::{Vp8Descriptor, Vp8Patch};

use super::Keyframe;

/// The VP8 payload descriptor, then (at the start of partition 0) the frame tag whose P bit is 0
/// for a keyframe, the start code 9d 01 2a and 14-bit width and height.
pub(super) fn keyframe(payload: &[u8]) -> Option<Keyframe> {
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

/// PictureID is 15 bits (7 in the short form, which browsers do not send).
const PICTURE_ID_MASK: u16 = 0x7fff;
const SHORT_PICTURE_ID_MASK: u16 = 0x7f;

/// The picture id offsets of one leg.
#[derive(Debug, Clone, Default)]
pub(super) struct Vp8Ids {
    picture_id_offset: u16,
    tl0_offset: u8,
    last_picture_id: Option<u16>,
    last_tl0: Option<u8>,
    /// The next packet starts a new layer: choose new offsets.
    resync: bool,
}

impl Vp8Ids {
    /// The next packet is the first of another layer (or the first after a pause).
    pub(super) fn resync(&mut self) {
        self.resync = true;
    }

    /// The patch that rewrites the ids of a packet with `descriptor`, or `None` when they pass
    /// unchanged (no switch yet) or the descriptor carries none.
    pub(super) fn patch(&mut self, descriptor: &Vp8Descriptor) -> Option<Vp8Patch> {
        let picture_id = descriptor.picture_id();
        let tl0 = descriptor.tl0_pic_idx();
        if std::mem::take(&mut self.resync) {
            if let (Some(incoming), Some(last)) = (picture_id, self.last_picture_id) {
                self.picture_id_offset =
                    last.wrapping_add(1).wrapping_sub(incoming) & PICTURE_ID_MASK;
            }
            if let (Some(incoming), Some(last)) = (tl0, self.last_tl0) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(incoming);
            }
        }
        let picture_id =
            picture_id.map(|p| p.wrapping_add(self.picture_id_offset) & PICTURE_ID_MASK);
        let tl0 = tl0.map(|t| t.wrapping_add(self.tl0_offset));
        if picture_id.is_some() {
            self.last_picture_id = picture_id;
        }
        if tl0.is_some() {
            self.last_tl0 = tl0;
        }
        if self.picture_id_offset == 0 && self.tl0_offset == 0 {
            return None;
        }
        let build = |mask: u16| {
            let mut patch = descriptor.patch();
            if let Some(p) = picture_id {
                patch = patch.picture_id(p & mask);
            }
            if let Some(t) = tl0 {
                patch = patch.tl0_pic_idx(t);
            }
            patch.build()
        };
        build(PICTURE_ID_MASK)
            .or_else(|_| build(SHORT_PICTURE_ID_MASK))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 payload: descriptor with a 15-bit picture id, then a keyframe header of `w`×`h`.
    fn key_payload(w: u16, h: u16) -> Vec<u8> {
        let mut p = vec![0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        p.extend_from_slice(&w.to_le_bytes());
        p.extend_from_slice(&h.to_le_bytes());
        p.extend_from_slice(&[0; 8]);
        p
    }

    #[test]
    fn keyframe_and_its_size() {
        let kf = keyframe(&key_payload(1280, 720)).unwrap();
        assert_eq!((kf.width, kf.height), (Some(1280), Some(720)));
    }

    #[test]
    fn delta_frames_and_continuations_are_not_keyframes() {
        let mut delta = key_payload(640, 360);
        delta[4] |= 0x01;
        assert_eq!(keyframe(&delta), None);
        let mut middle = key_payload(640, 360);
        middle[0] &= !0x10;
        assert_eq!(keyframe(&middle), None);
    }

    #[test]
    fn short_or_garbage_payloads_are_not_keyframes() {
        let key = key_payload(320, 180);
        for len in 0..5 {
            assert_eq!(keyframe(&key[..len]), None, "{len}");
        }
        // A keyframe tag without room for the size still counts, without a size.
        let kf = keyframe(&key[..6]).unwrap();
        assert_eq!(kf.width, None);
    }

    /// A VP8 payload with a 15-bit picture id and a TL0PICIDX.
    fn payload(picture_id: u16, tl0: u8) -> Vec<u8> {
        vec![
            0x90,
            0xe0,
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
            tl0,
            0x00,
            0x00,
            0x00,
        ]
    }

    /// Checks that `ids` turns a packet with (`picture_id`, `tl0`) into one with `want`.
    fn check(ids: &mut Vp8Ids, picture_id: u16, tl0: u8, want: (u16, u8)) {
        let bytes = payload(picture_id, tl0);
        let descriptor = Vp8Descriptor::parse(&bytes).unwrap();
        let expected = (want != (picture_id, tl0)).then(|| {
            descriptor
                .patch()
                .picture_id(want.0)
                .tl0_pic_idx(want.1)
                .build()
                .unwrap()
        });
        assert_eq!(ids.patch(&descriptor), expected, "{picture_id}/{tl0}");
    }

    #[test]
    fn ids_pass_until_a_switch_then_continue_from_the_last() {
        let mut ids = Vp8Ids::default();
        check(&mut ids, 1000, 7, (1000, 7));
        check(&mut ids, 1001, 8, (1001, 8));
        // Switch to a layer numbering far away (and wrapping).
        ids.resync();
        check(&mut ids, 32_760, 250, (1002, 9));
        check(&mut ids, 32_767, 255, (1009, 14));
        check(&mut ids, 0, 0, (1010, 15));
        // And back.
        ids.resync();
        check(&mut ids, 1100, 90, (1011, 16));
    }
}
