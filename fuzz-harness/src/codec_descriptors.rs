//! `codec_descriptors`: RTP payloads through each codec's keyframe and payload descriptor
//! parsing (VP9's layer indices and scalability structure included; each payload is also read
//! as an AV1 dependency descriptor), and a leg's picture id renumbering across them.
//!
//! Input: one byte choosing the codec (an index into [`sfu_core::codec::ALL`]), then packets,
//! each a length byte and that many payload bytes; a length byte of 0 is a layer switch.

use sfu_core::codec::dependency_descriptor::DependencyDescriptor;
use sfu_core::codec::{PictureIdRewriter, ALL};

/// Parses every payload of `data` as the chosen codec's.
pub fn run(data: &[u8]) {
    let Some((&choice, mut rest)) = data.split_first() else {
        return;
    };
    let codec = ALL[usize::from(choice) % ALL.len()];
    let mut rewriter = PictureIdRewriter::default();
    let mut templates = None;
    while let Some((&len, tail)) = rest.split_first() {
        if len == 0 {
            rewriter.resync();
            rest = tail;
            continue;
        }
        let (payload, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        if let Some(keyframe) = codec.keyframe(payload) {
            assert!(codec.is_video(), "{} has no keyframes", codec.name);
            // VP8 sizes are 14-bit fields (VP9's scalability structure has 16-bit ones).
            if codec.name == "vp8" {
                assert!(keyframe.width.unwrap_or(0) < 1 << 14);
                assert!(keyframe.height.unwrap_or(0) < 1 << 14);
            }
        }
        if let Some(svc) = codec.svc(payload) {
            // Three-bit fields.
            assert!(svc.spatial < 8 && svc.temporal < 8);
            assert!(svc.spatial_layers.unwrap_or(1) <= 8);
        }
        if let Some(sizes) = codec.svc_sizes(payload) {
            assert!(!sizes.is_empty());
        }
        // The same bytes as an AV1 dependency descriptor extension, against the last structure.
        if let Ok(d) = DependencyDescriptor::new_checked(payload) {
            if let Some(structure) = d.structure.clone() {
                templates = Some(structure);
            }
            if let Some(p) = templates.as_ref().and_then(|t| d.svc_packet(t)) {
                assert!(p.spatial < 64 && p.temporal < 64);
            }
        }
        if let Some(ids) = codec.picture_ids(payload) {
            let _ = rewriter.patch(&ids);
        }
    }
}
