//! VP8 picture ids across simulcast switches. Each layer numbers its pictures (PictureID) and its
//! base-layer frames (TL0PICIDX) on its own; a receiver's VP8 reference finder uses them to find
//! each frame's references, so a switch must not make them jump. Like the sequence numbers, they
//! get a per-leg offset chosen at each switch so the new layer continues at last + 1.

use str0m::rtp::{Vp8Descriptor, Vp8Patch};

/// PictureID is 15 bits (7 in the short form, which browsers do not send).
const PICTURE_ID_MASK: u16 = 0x7fff;
const SHORT_PICTURE_ID_MASK: u16 = 0x7f;

/// The picture id offsets of one leg.
#[derive(Debug, Clone, Default)]
pub struct Vp8Ids {
    picture_id_offset: u16,
    tl0_offset: u8,
    last_picture_id: Option<u16>,
    last_tl0: Option<u8>,
    /// The next packet starts a new layer: choose new offsets.
    resync: bool,
}

impl Vp8Ids {
    /// Ids that pass through unchanged until the first switch.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next packet is the first of another layer (or the first after a pause).
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// The patch that rewrites the ids of a packet with `descriptor`, or `None` when they pass
    /// unchanged (no switch yet) or the descriptor carries none.
    pub fn patch(&mut self, descriptor: &Vp8Descriptor) -> Option<Vp8Patch> {
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
        let mut ids = Vp8Ids::new();
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
