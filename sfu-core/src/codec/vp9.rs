//! VP9 (RFC 9628): the payload descriptor that says which spatial and temporal layer a packet
//! belongs to, where frames and pictures start and end, and (on keyframes) the scalability
//! structure with each spatial layer's size. An SFU forwards a scalable (SVC) VP9 stream by
//! dropping the packets of the layers a viewer does not take; nothing in the payload changes.
//!
//! ```text
//!  |I|P|L|F|B|E|V|Z|            flags
//!  |M| PICTURE ID  |            if I (M: 15 bits, one more byte)
//!  |TID|U| SID |D|              if L
//!  |   TL0PICIDX   |            if L and not F
//!  | P_DIFF      |N|            if F and P, up to 3 times
//!  |N_S|Y|G|-|-|-|              scalability structure, if V
//!  |  WIDTH, HEIGHT  | ×(N_S+1) if Y (16 bits each)
//!  |      N_G      |            if G, then N_G × (|TID|U|R|-|-| and R P_DIFF bytes)
//! ```

use super::{Keyframe, LayerSizes, SvcPacket};

/// Why a payload is not a valid VP9 payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Vp9Error {
    /// The payload ends inside the descriptor.
    #[error("VP9 payload descriptor truncated")]
    Truncated,
    /// More reference differences than the format allows (3).
    #[error("VP9 payload descriptor has too many reference differences")]
    TooManyReferences,
}

/// The fields of a VP9 payload descriptor the SFU uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vp9Descriptor {
    /// P: the frame is predicted from earlier pictures.
    pub inter_picture: bool,
    /// B: the packet starts a frame (one spatial layer of a picture).
    pub begins_frame: bool,
    /// E: the packet ends a frame.
    pub ends_frame: bool,
    /// F: flexible mode (references listed per frame).
    pub flexible: bool,
    /// PictureID, if present.
    pub picture_id: Option<u16>,
    /// Temporal layer (0 without layer indices).
    pub temporal: u8,
    /// Spatial layer (0 without layer indices).
    pub spatial: u8,
    /// U: a switching point up to this temporal layer.
    pub switch_up: bool,
    /// D: the frame depends on the spatial layer below in the same picture.
    pub inter_layer: bool,
    /// L: the descriptor carries layer indices.
    pub layered: bool,
    /// The scalability structure's spatial layer sizes, lowest first, when the packet carries
    /// one with sizes (keyframes do).
    pub sizes: Option<LayerSizes>,
    /// The number of spatial layers the scalability structure announces, when present.
    pub spatial_layers: Option<u8>,
}

/// A bounds-checked cursor over the descriptor's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, Vp9Error> {
        let b = *self.bytes.get(self.at).ok_or(Vp9Error::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, Vp9Error> {
        Ok(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }
}

impl Vp9Descriptor {
    /// Parses the descriptor at the start of `payload`; never reads past its end.
    pub fn new_checked(payload: &[u8]) -> Result<Self, Vp9Error> {
        let mut r = Reader {
            bytes: payload,
            at: 0,
        };
        let flags = r.byte()?;
        let has_picture_id = flags & 0x80 != 0;
        let mut d = Vp9Descriptor {
            inter_picture: flags & 0x40 != 0,
            flexible: flags & 0x10 != 0,
            begins_frame: flags & 0x08 != 0,
            ends_frame: flags & 0x04 != 0,
            ..Default::default()
        };
        let has_layers = flags & 0x20 != 0;
        let has_structure = flags & 0x02 != 0;
        if has_picture_id {
            let first = r.byte()?;
            d.picture_id = Some(if first & 0x80 != 0 {
                (u16::from(first & 0x7f) << 8) | u16::from(r.byte()?)
            } else {
                u16::from(first)
            });
        }
        if has_layers {
            d.layered = true;
            let layer = r.byte()?;
            d.temporal = layer >> 5;
            d.switch_up = layer & 0x10 != 0;
            d.spatial = (layer >> 1) & 0x07;
            d.inter_layer = layer & 0x01 != 0;
            if !d.flexible {
                r.byte()?; // TL0PICIDX
            }
        }
        if d.flexible && d.inter_picture {
            let mut diffs = 0;
            while r.byte()? & 0x01 != 0 {
                diffs += 1;
                if diffs >= 3 {
                    return Err(Vp9Error::TooManyReferences);
                }
            }
        }
        if has_structure {
            let ss = r.byte()?;
            let count = (ss >> 5) + 1;
            d.spatial_layers = Some(count);
            if ss & 0x10 != 0 {
                let mut sizes = heapless::Vec::new();
                for _ in 0..count {
                    let size = (r.u16()?, r.u16()?);
                    // Layers past MAX_LAYERS are not forwarded separately: their sizes go.
                    let _ = sizes.push(size);
                }
                d.sizes = Some(sizes);
            }
            if ss & 0x08 != 0 {
                let pictures = r.byte()?;
                for _ in 0..pictures {
                    let refs = (r.byte()? >> 2) & 0x03;
                    for _ in 0..refs {
                        r.byte()?;
                    }
                }
            }
        }
        Ok(d)
    }

    /// Whether the packet starts a keyframe: the first packet of a picture's base spatial
    /// layer, predicted from no earlier picture.
    pub fn starts_keyframe(&self) -> bool {
        self.begins_frame && !self.inter_picture && self.spatial == 0
    }

    /// What a leg needs of it to choose its layers.
    pub fn svc_packet(&self) -> SvcPacket {
        SvcPacket {
            spatial: self.spatial,
            temporal: self.temporal,
            switch_up: self.switch_up,
            begins_picture: self.begins_frame && self.spatial == 0,
            ends_frame: self.ends_frame,
            spatial_layers: self.spatial_layers,
            layered: self.layered,
        }
    }
}

/// Where a VP9 keyframe starts, with the size of its base spatial layer when the scalability
/// structure carries it.
pub(super) fn keyframe(payload: &[u8]) -> Option<Keyframe> {
    let d = Vp9Descriptor::new_checked(payload).ok()?;
    if !d.starts_keyframe() {
        return None;
    }
    let base = d.sizes.as_ref().and_then(|s| s.first().copied());
    Some(Keyframe {
        width: base.map(|s| s.0),
        height: base.map(|s| s.1),
    })
}

/// The layer indices of a VP9 packet, `None` when its descriptor is malformed.
pub(super) fn svc(payload: &[u8]) -> Option<SvcPacket> {
    Vp9Descriptor::new_checked(payload)
        .ok()
        .map(|d| d.svc_packet())
}

/// The spatial layer sizes a VP9 keyframe's scalability structure announces.
pub(super) fn layer_sizes(payload: &[u8]) -> Option<LayerSizes> {
    Vp9Descriptor::new_checked(payload).ok()?.sizes
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The first packet of an L3T3_KEY keyframe as Chromium sends it: picture id 0x1234, layer
    /// S0 T0 with TL0PICIDX, and a scalability structure with three sizes and a picture group.
    pub fn l3_keyframe() -> Vec<u8> {
        vec![
            0xaa, // I L B V
            0x92, 0x34, // picture id
            0x00, // TID 0, SID 0
            0x07, // TL0PICIDX
            0x58, // N_S = 2 (3 layers), Y, G
            0x01, 0x40, 0x00, 0xb4, // 320x180
            0x02, 0x80, 0x01, 0x68, // 640x360
            0x05, 0x00, 0x02, 0xd0, // 1280x720
            0x01, // one picture in the group
            0x04, 0x02, // TID 0, one reference, P_DIFF 2
            0x82, 0x49, 0x83, // payload
        ]
    }

    /// A packet of layer `sid`/`tid` of a predicted picture, flags `begins`/`ends`.
    pub fn delta(sid: u8, tid: u8, begins: bool, ends: bool) -> Vec<u8> {
        let mut flags = 0xe0; // I P L
        if begins {
            flags |= 0x08;
        }
        if ends {
            flags |= 0x04;
        }
        vec![flags, 0x92, 0x35, (tid << 5) | (sid << 1), 0x07, 0x11]
    }

    #[test]
    fn keyframe_with_scalability_structure() {
        let p = l3_keyframe();
        let d = Vp9Descriptor::new_checked(&p).unwrap();
        assert_eq!(d.picture_id, Some(0x1234));
        assert!(d.starts_keyframe());
        assert_eq!(d.spatial_layers, Some(3));
        assert_eq!(
            d.sizes.as_deref(),
            Some(&[(320, 180), (640, 360), (1280, 720)][..])
        );
        let kf = keyframe(&p).unwrap();
        assert_eq!((kf.width, kf.height), (Some(320), Some(180)));
    }

    #[test]
    fn layer_indices_and_frame_bounds() {
        let d = Vp9Descriptor::new_checked(&delta(2, 1, false, true)).unwrap();
        assert_eq!((d.spatial, d.temporal), (2, 1));
        assert!(d.ends_frame && !d.begins_frame && d.inter_picture);
        assert!(!d.starts_keyframe());
        assert!(!svc(&delta(0, 0, true, false)).unwrap().ends_frame);
        assert!(svc(&delta(0, 0, true, false)).unwrap().begins_picture);
        assert!(!svc(&delta(1, 0, true, false)).unwrap().begins_picture);
        // A plain (non-scalable) keyframe: no layer indices.
        let plain = [0x88, 0x00];
        assert!(Vp9Descriptor::new_checked(&plain)
            .unwrap()
            .starts_keyframe());
        assert_eq!(keyframe(&plain).unwrap().width, None);
    }

    #[test]
    fn flexible_mode_reference_lists() {
        // I P L F B, picture id, layer byte, two P_DIFFs.
        let p = [0xf8, 0x05, 0x20, 0x03, 0x02, 0xaa];
        let d = Vp9Descriptor::new_checked(&p).unwrap();
        assert_eq!(d.temporal, 1);
        let too_many = [0xd8, 0x05, 0x03, 0x03, 0x03, 0x02];
        assert_eq!(
            Vp9Descriptor::new_checked(&too_many),
            Err(Vp9Error::TooManyReferences)
        );
    }

    #[test]
    fn truncated_descriptors_are_errors_not_panics() {
        let key = l3_keyframe();
        // Every cut inside the descriptor (it is 21 bytes long) is refused.
        for len in 0..21 {
            assert_eq!(
                Vp9Descriptor::new_checked(&key[..len]),
                Err(Vp9Error::Truncated),
                "{len}"
            );
            assert_eq!(keyframe(&key[..len]), None);
        }
        // Arbitrary bytes never panic.
        for b in 0..=255u8 {
            let _ = Vp9Descriptor::new_checked(&[b, b, b, b]);
            let _ = Vp9Descriptor::new_checked(&[b; 40]);
        }
    }
}
