//! The dependency descriptor RTP header extension (AV1 RTP specification, appendix A): how an
//! AV1 stream says which spatial and temporal layer each frame belongs to. Each packet names a
//! frame dependency template; the templates (their layers and decode target indications) come
//! in a template structure on keyframes, which the track keeps ([`FrameTemplates`]).
//!
//! ```text
//!  start_of_frame(1) end_of_frame(1) template_id(6) frame_number(16)
//!  [structure_present(1) active_decode_targets_present(1) custom_dtis(1) custom_fdiffs(1)
//!   custom_chains(1) [template_id_offset(6) dt_cnt_minus_one(5) template_layers
//!   template_dtis ...]]
//! ```
//!
//! Only what layer selection needs is read: the mandatory fields and, in a structure, each
//! template's layers and decode target indications. The extension is read from publishers and
//! not forwarded (viewers decode AV1 without it).

use str0m::rtp::{ExtensionSerializer, ExtensionValues};

use super::SvcPacket;

/// The extension's URI in SDP.
pub const DEPENDENCY_DESCRIPTOR_URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// Most templates a structure has (template ids are 6 bits).
const MAX_TEMPLATES: usize = 64;

/// Longest extension element kept (the two-byte header form's limit).
const MAX_LEN: usize = 255;

/// The raw extension of one received packet, kept in its [`ExtensionValues`] for the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyDescriptorBytes(pub heapless::Vec<u8, MAX_LEN>);

/// Reads the extension into [`DependencyDescriptorBytes`]; writes nothing.
#[derive(Debug)]
pub struct DependencyDescriptorExtension;

impl DependencyDescriptorExtension {
    /// The extension for a session's extension map.
    pub fn extension() -> str0m::rtp::Extension {
        str0m::rtp::Extension::with_serializer(DEPENDENCY_DESCRIPTOR_URI, Self)
    }
}

impl ExtensionSerializer for DependencyDescriptorExtension {
    fn write_to(&self, _buf: &mut [u8], _ev: &ExtensionValues) -> usize {
        0
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        match heapless::Vec::from_slice(buf) {
            Ok(bytes) => {
                ev.user_values.set(DependencyDescriptorBytes(bytes));
                true
            }
            Err(_) => false,
        }
    }

    fn is_video(&self) -> bool {
        true
    }

    fn is_audio(&self) -> bool {
        false
    }
}

/// Why an extension is not a valid dependency descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DependencyDescriptorError {
    /// It ends inside a field.
    #[error("dependency descriptor truncated")]
    Truncated,
    /// A template structure with more than 64 templates.
    #[error("dependency descriptor has too many templates")]
    TooManyTemplates,
}

/// One frame dependency template: its layers, and whether a receiver may switch up to its
/// temporal layer at a frame of it (its decode target indication for that layer is "switch").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTemplate {
    /// Spatial layer.
    pub spatial: u8,
    /// Temporal layer.
    pub temporal: u8,
    /// A switching point up to `temporal`.
    pub switch_up: bool,
}

/// The template structure of a stream, from its last keyframe.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrameTemplates {
    /// The template id of the first template.
    offset: u8,
    /// The templates, in id order from `offset`.
    templates: heapless::Vec<FrameTemplate, MAX_TEMPLATES>,
}

impl FrameTemplates {
    /// The template with id `id`.
    pub fn get(&self, id: u8) -> Option<&FrameTemplate> {
        let index = (usize::from(id) + MAX_TEMPLATES - usize::from(self.offset)) % MAX_TEMPLATES;
        self.templates.get(index)
    }

    /// Number of spatial layers the templates use.
    pub fn spatial_layers(&self) -> u8 {
        self.templates
            .iter()
            .map(|t| t.spatial + 1)
            .max()
            .unwrap_or(1)
    }
}

/// What one packet's descriptor says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyDescriptor {
    /// The packet starts a frame.
    pub start_of_frame: bool,
    /// The packet ends a frame.
    pub end_of_frame: bool,
    /// The frame's template id.
    pub template_id: u8,
    /// The template structure, when the packet carries one (keyframes).
    pub structure: Option<FrameTemplates>,
}

/// A bounds-checked big-endian bit reader.
struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Result<u32, DependencyDescriptorError> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self
                .bytes
                .get(self.at / 8)
                .ok_or(DependencyDescriptorError::Truncated)?;
            let bit = (byte >> (7 - self.at % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.at += 1;
        }
        Ok(v)
    }

    fn flag(&mut self) -> Result<bool, DependencyDescriptorError> {
        Ok(self.read(1)? == 1)
    }
}

impl DependencyDescriptor {
    /// Parses one packet's extension; never reads past its end.
    pub fn new_checked(bytes: &[u8]) -> Result<Self, DependencyDescriptorError> {
        let mut b = Bits { bytes, at: 0 };
        let start_of_frame = b.flag()?;
        let end_of_frame = b.flag()?;
        let template_id = b.read(6)? as u8;
        b.read(16)?; // frame_number
        let mut structure = None;
        if bytes.len() > 3 && b.flag()? {
            b.read(4)?; // active decode targets, custom dtis, fdiffs and chains flags
            structure = Some(Self::structure(&mut b)?);
        }
        Ok(DependencyDescriptor {
            start_of_frame,
            end_of_frame,
            template_id,
            structure,
        })
    }

    /// `template_dependency_structure()`, as far as the layers and decode target indications.
    fn structure(b: &mut Bits) -> Result<FrameTemplates, DependencyDescriptorError> {
        let offset = b.read(6)? as u8;
        let decode_targets = b.read(5)? as usize + 1;
        let mut templates = heapless::Vec::<FrameTemplate, MAX_TEMPLATES>::new();
        let (mut spatial, mut temporal) = (0u8, 0u8);
        loop {
            templates
                .push(FrameTemplate {
                    spatial,
                    temporal,
                    switch_up: false,
                })
                .map_err(|_| DependencyDescriptorError::TooManyTemplates)?;
            match b.read(2)? {
                1 => temporal = temporal.saturating_add(1),
                2 => {
                    temporal = 0;
                    spatial = spatial.saturating_add(1);
                }
                3 => break,
                _ => {}
            }
        }
        // Decode target i of a stream with temporal layers only is "layers 0..=i"; a template is
        // a switching point up to its own layer when its indication for that target is 2.
        for template in templates.iter_mut() {
            for target in 0..decode_targets {
                let indication = b.read(2)?;
                if target == usize::from(template.temporal) && indication == 2 {
                    template.switch_up = true;
                }
            }
        }
        Ok(FrameTemplates { offset, templates })
    }

    /// The layers of the packet under `templates`, `None` when its template is unknown.
    pub fn svc_packet(&self, templates: &FrameTemplates) -> Option<SvcPacket> {
        let t = templates.get(self.template_id)?;
        Some(SvcPacket {
            spatial: t.spatial,
            temporal: t.temporal,
            switch_up: t.switch_up,
            begins_picture: self.start_of_frame && t.spatial == 0,
            ends_frame: self.end_of_frame,
            spatial_layers: self.structure.as_ref().map(FrameTemplates::spatial_layers),
            layered: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keyframe's descriptor with an L1T3 structure like Chromium's: template ids from 1,
    /// three decode targets (T0, T0-1, T0-2), five templates (T0 key, T0, T1, T2, T2) and their
    /// decode target indications, written out bit by bit.
    fn l1t3_key() -> Vec<u8> {
        let mut bits = String::new();
        bits += "11"; // SOF EOF
        bits += "000001"; // template id 1
        bits += "0000000100000010"; // frame number
        bits += "1"; // structure present
        bits += "0000"; // other flags
        bits += "000001"; // template id offset 1
        bits += "00010"; // 3 decode targets
        bits += "00010100"; // next_layer_idc after each template: same, T+1, T+1, same,
        bits += "11"; // and the end
                      // dtis per template (DT0 DT1 DT2): 3=required, 2=switch, 1=discardable, 0=not present
        bits += "101010"; // T0 key: S S S
        bits += "111111"; // T0: R R R
        bits += "001011"; // T1: - S R
        bits += "000010"; // T2: - - S
        bits += "000001"; // T2: - - D
        while !bits.len().is_multiple_of(8) {
            bits.push('0');
        }
        bits.as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap())
            .collect()
    }

    #[test]
    fn a_keyframe_structure_gives_each_template_its_layer_and_switch_points() {
        let key = DependencyDescriptor::new_checked(&l1t3_key()).unwrap();
        assert!(key.start_of_frame && key.end_of_frame);
        let templates = key.structure.clone().unwrap();
        assert_eq!(templates.spatial_layers(), 1);
        let layers: Vec<_> = (1..6)
            .map(|id| {
                let t = templates.get(id).unwrap();
                (t.temporal, t.switch_up)
            })
            .collect();
        assert_eq!(
            layers,
            [(0, true), (0, false), (1, true), (2, true), (2, false)]
        );
        assert!(templates.get(6).is_none());
        let p = key.svc_packet(&templates).unwrap();
        assert_eq!((p.spatial, p.temporal, p.spatial_layers), (0, 0, Some(1)));
        assert!(p.begins_picture);
        // A delta frame's three mandatory bytes: template 4 (the switching T2).
        let delta = DependencyDescriptor::new_checked(&[0x84, 0x01, 0x03]).unwrap();
        assert!(delta.start_of_frame && !delta.end_of_frame && delta.structure.is_none());
        let p = delta.svc_packet(&templates).unwrap();
        assert_eq!((p.temporal, p.switch_up), (2, true));
    }

    #[test]
    fn truncated_or_garbage_descriptors_are_errors_not_panics() {
        let key = l1t3_key();
        for len in 0..3 {
            assert_eq!(
                DependencyDescriptor::new_checked(&key[..len]),
                Err(DependencyDescriptorError::Truncated)
            );
        }
        for len in 4..key.len() - 1 {
            assert!(
                DependencyDescriptor::new_checked(&key[..len]).is_err(),
                "{len}"
            );
        }
        // A layer list that never ends runs out of templates, not of memory.
        let mut endless = vec![0x80, 0x00, 0x00, 0x80, 0x00];
        endless.extend_from_slice(&[0x55; 40]);
        assert_eq!(
            DependencyDescriptor::new_checked(&endless),
            Err(DependencyDescriptorError::TooManyTemplates)
        );
        for b in 0..=255u8 {
            let _ = DependencyDescriptor::new_checked(&[b; 12]);
        }
    }
}
