//! What the SFU knows of each codec it forwards, in one place: how str0m names and negotiates
//! it, whether it is audio or video, where its keyframes start, and which per-picture ids a layer
//! switch must keep continuous. The router and the legs ask a [`CodecDescriptor`]; nothing else
//! matches on codecs. A new codec (VP9, AV1) is one new file here and one entry in [`ALL`].

mod h264;
pub mod policy;
mod sps;
mod vp8;

use str0m::format::{Codec, CodecConfig, PayloadParams};
use str0m::media::MediaKind;
use str0m::rtp::{Vp8Descriptor, Vp8Patch};
use str0m::RtcConfig;

use vp8::Vp8Ids;

/// What the first packet of a keyframe says about the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyframe {
    /// Picture width in pixels, when the payload carries it (VP8 keyframes do, and H.264 ones
    /// whose first packet has the SPS).
    pub width: Option<u16>,
    /// Picture height in pixels, as `width`.
    pub height: Option<u16>,
}

/// Finds where a keyframe starts in a payload (see [`CodecDescriptor::keyframe`]).
type KeyframeParser = fn(&[u8]) -> Option<Keyframe>;

/// One codec the SFU forwards.
#[derive(Debug)]
pub struct CodecDescriptor {
    /// Its name in logs.
    pub name: &'static str,
    /// str0m's name for it.
    pub codec: Codec,
    /// Audio or video.
    pub kind: MediaKind,
    /// Offers it in a session's configuration.
    enable: fn(RtcConfig) -> RtcConfig,
    /// Picks the one payload format of str0m's defaults that a plain RTP ingest of this codec
    /// takes (H.264 has several profiles).
    ingest_format: fn(&PayloadParams) -> bool,
    /// Where a keyframe starts (video), with the picture size when the payload says it.
    keyframe: Option<KeyframeParser>,
    /// The per-picture ids a layer switch renumbers, if the codec has any.
    picture_ids: Option<PictureIdScheme>,
}

/// Which per-picture ids a codec's payloads carry.
#[derive(Debug, Clone, Copy)]
enum PictureIdScheme {
    /// VP8's PictureID and TL0PICIDX in its payload descriptor.
    Vp8,
}

/// Opus (RFC 7587).
static OPUS: CodecDescriptor = CodecDescriptor {
    name: "opus",
    codec: Codec::Opus,
    kind: MediaKind::Audio,
    enable: |c| c.enable_opus(true, false),
    ingest_format: |_| true,
    keyframe: None,
    picture_ids: None,
};

/// VP8 (RFC 7741).
static VP8: CodecDescriptor = CodecDescriptor {
    name: "vp8",
    codec: Codec::Vp8,
    kind: MediaKind::Video,
    enable: |c| c.enable_vp8(true),
    ingest_format: |_| true,
    keyframe: Some(vp8::keyframe),
    picture_ids: Some(PictureIdScheme::Vp8),
};

/// H.264 (RFC 6184).
static H264: CodecDescriptor = CodecDescriptor {
    name: "h264",
    codec: Codec::H264,
    kind: MediaKind::Video,
    enable: |c| c.enable_h264(true),
    // Constrained baseline 3.1, non-interleaved: what every browser decodes.
    ingest_format: |p| {
        let f = p.spec().format;
        f.packetization_mode == Some(1) && f.profile_level_id == Some(0x42e01f)
    },
    keyframe: Some(h264::keyframe),
    picture_ids: None,
};

/// Every codec the SFU negotiates. Opus, VP8 and H.264 are what every browser can both send and
/// receive, so any publisher's codec can be forwarded to any subscriber.
pub static ALL: [&CodecDescriptor; 3] = [&OPUS, &VP8, &H264];

impl CodecDescriptor {
    /// The descriptor of the codec behind a negotiated payload format, if the SFU forwards it.
    pub fn of(params: &PayloadParams) -> Option<&'static CodecDescriptor> {
        let codec = params.spec().codec;
        ALL.iter().copied().find(|d| d.codec == codec)
    }

    /// A session configuration offering every codec of [`ALL`] and nothing else.
    pub fn configure(config: RtcConfig) -> RtcConfig {
        ALL.iter().fold(config.clear_codecs(), |c, d| (d.enable)(c))
    }

    /// The payload format a plain RTP ingest of this codec takes, from str0m's defaults.
    pub fn ingest_params(&self) -> Option<PayloadParams> {
        CodecConfig::new_with_defaults()
            .find(|p| p.spec().codec == self.codec && (self.ingest_format)(p))
            .copied()
    }

    /// Whether it is a video codec.
    pub fn is_video(&self) -> bool {
        self.kind == MediaKind::Video
    }

    /// The keyframe that starts in `payload`, or `None` when the packet does not start one (or
    /// is too short to tell: hostile input is never a keyframe). Audio has none.
    pub fn keyframe(&self, payload: &[u8]) -> Option<Keyframe> {
        self.keyframe.and_then(|parse| parse(payload))
    }

    /// The per-picture ids `payload` carries, for codecs whose legs renumber them across layer
    /// switches; `None` for other codecs or a payload too short to carry them.
    pub fn picture_ids(&self, payload: &[u8]) -> Option<PictureIds> {
        match self.picture_ids? {
            PictureIdScheme::Vp8 => Vp8Descriptor::parse(payload).ok().map(PictureIds::Vp8),
        }
    }
}

/// The per-picture ids one packet carries, parsed once per packet for every leg.
#[derive(Debug, Clone, Copy)]
pub enum PictureIds {
    /// A VP8 payload descriptor.
    Vp8(Vp8Descriptor),
}

/// A rewrite of a payload's first bytes, applied while the packet is serialised for one leg.
#[derive(Debug, Clone, Copy)]
pub enum PayloadPatch {
    /// New VP8 picture ids in the payload descriptor.
    Vp8(Vp8Patch),
}

/// One leg's renumbering of picture ids across the layer switches it makes.
#[derive(Debug, Clone, Default)]
pub struct PictureIdRewriter {
    vp8: Vp8Ids,
}

impl PictureIdRewriter {
    /// The next packet starts another layer (or follows a pause): its ids continue from the last
    /// ones sent.
    pub fn resync(&mut self) {
        self.vp8.resync();
    }

    /// The patch that gives a packet with `ids` this leg's numbering, or `None` when they pass
    /// unchanged.
    pub fn patch(&mut self, ids: &PictureIds) -> Option<PayloadPatch> {
        match ids {
            PictureIds::Vp8(descriptor) => self.vp8.patch(descriptor).map(PayloadPatch::Vp8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_negotiated_codec_has_a_descriptor_and_an_ingest_format() {
        let mut config = CodecDescriptor::configure(RtcConfig::new());
        for params in config.codec_config().params() {
            let d = CodecDescriptor::of(params);
            assert!(d.is_some(), "{:?} has no descriptor", params.spec().codec);
        }
        for d in ALL {
            assert!(
                d.ingest_params().is_some(),
                "{} has no ingest format",
                d.name
            );
            assert_eq!(d.is_video(), d.keyframe.is_some(), "{}", d.name);
        }
    }

    #[test]
    fn audio_has_no_keyframes_or_picture_ids() {
        assert_eq!(OPUS.keyframe(&[0x90, 0, 0, 0, 0x10]), None);
        assert!(OPUS.picture_ids(&[0x90, 0x80, 0x81, 0x23]).is_none());
        assert!(H264.picture_ids(&[0x65, 0x88]).is_none());
        assert!(H264.keyframe(&[0x65, 0x88]).is_some());
    }
}
