//! What the SFU knows of each codec it forwards, in one place: how str0m names and negotiates
//! it, whether it is audio or video, where its keyframes start, and which per-picture ids a layer
//! switch must keep continuous. The router and the legs ask a [`CodecDescriptor`]; nothing else
//! matches on codecs. A new codec is one new file here and one entry in [`ALL`].

mod av1;
pub mod dependency_descriptor;
mod h264;
mod vp8;
mod vp9;

use str0m::format::{Codec, CodecConfig, PayloadParams};
use str0m::media::MediaKind;
use str0m::rtp::{Vp8Descriptor, Vp8Patch};
use str0m::RtcConfig;

use crate::quality::layers::MAX_LAYERS;
use vp8::Vp8Ids;
pub use vp9::{Vp9Descriptor, Vp9Error};

/// What the first packet of a keyframe says about the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyframe {
    /// Picture width in pixels, when the payload carries it (VP8 keyframes do).
    pub width: Option<u16>,
    /// Picture height in pixels, as `width`.
    pub height: Option<u16>,
}

/// Finds where a keyframe starts in a payload (see [`CodecDescriptor::keyframe`]).
type KeyframeParser = fn(&[u8]) -> Option<Keyframe>;

/// The layers one packet of a scalable (SVC) stream belongs to, from its payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvcPacket {
    /// Its spatial layer (0: the smallest).
    pub spatial: u8,
    /// Its temporal layer (0: the base frame rate).
    pub temporal: u8,
    /// A receiver taking temporal layers below this one may switch up to it here.
    pub switch_up: bool,
    /// It starts a picture (the first packet of its lowest spatial layer).
    pub begins_picture: bool,
    /// It ends the frame of its spatial layer (the marker bit goes on it when that layer is the
    /// highest a receiver takes).
    pub ends_frame: bool,
    /// How many spatial layers the stream has, when the packet says (keyframes do).
    pub spatial_layers: Option<u8>,
    /// The packet carries layer indices at all (a stream sent without layers has none).
    pub layered: bool,
}

/// The picture sizes of a scalable stream's spatial layers, lowest first.
pub type LayerSizes = heapless::Vec<(u16, u16), MAX_LAYERS>;

/// How a codec's scalable streams say which layers a packet belongs to.
#[derive(Debug, Clone, Copy)]
struct SvcScheme {
    /// The packet's layers.
    packet: fn(&[u8]) -> Option<SvcPacket>,
    /// The sizes of the spatial layers, lowest first, where the packet says (keyframes).
    sizes: fn(&[u8]) -> Option<LayerSizes>,
}

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
    /// Where its scalable (SVC) streams say a packet's layers, if it has them.
    svc: Option<SvcScheme>,
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
    svc: None,
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
    svc: None,
};

/// VP9 (RFC 9628), with spatial and temporal layers (SVC) from its payload descriptor.
static VP9: CodecDescriptor = CodecDescriptor {
    name: "vp9",
    codec: Codec::Vp9,
    kind: MediaKind::Video,
    enable: |c| c.enable_vp9(true),
    // Profile 0 (8-bit 4:2:0): what every browser decodes.
    ingest_format: |p| p.spec().format.profile_id == Some(0),
    keyframe: Some(vp9::keyframe),
    picture_ids: None,
    svc: Some(SvcScheme {
        packet: vp9::svc,
        sizes: vp9::layer_sizes,
    }),
};

/// AV1 (AOM's RTP payload format).
static AV1: CodecDescriptor = CodecDescriptor {
    name: "av1",
    codec: Codec::Av1,
    kind: MediaKind::Video,
    enable: |c| c.enable_av1(true),
    ingest_format: |_| true,
    keyframe: Some(av1::keyframe),
    picture_ids: None,
    svc: None,
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
    keyframe: Some(|payload| {
        h264::starts_idr(payload).then_some(Keyframe {
            width: None,
            height: None,
        })
    }),
    picture_ids: None,
    svc: None,
};

/// Every codec the SFU forwards. Opus, VP8 and H.264 are what every browser can both send and
/// receive, so any publisher's codec can be forwarded to any subscriber; VP9 and AV1 are offered
/// only where the server's video codec list names them.
pub static ALL: [&CodecDescriptor; 5] = [&OPUS, &VP8, &H264, &VP9, &AV1];

/// The video codecs a server offers unless told otherwise, in order of preference.
pub const DEFAULT_VIDEO_CODECS: [Codec; 2] = [Codec::Vp8, Codec::H264];

impl CodecDescriptor {
    /// The descriptor of the codec behind a negotiated payload format, if the SFU forwards it.
    pub fn of(params: &PayloadParams) -> Option<&'static CodecDescriptor> {
        let codec = params.spec().codec;
        ALL.iter().copied().find(|d| d.codec == codec)
    }

    /// The video codec the SFU forwards named `name` (`vp8`, `vp9`, `av1`, `h264`; any case).
    pub fn video_by_name(name: &str) -> Option<&'static CodecDescriptor> {
        ALL.iter()
            .copied()
            .find(|d| d.is_video() && d.name.eq_ignore_ascii_case(name.trim()))
    }

    /// A session configuration offering Opus and the video codecs of `video`, in that order of
    /// preference, and nothing else.
    pub fn configure(config: RtcConfig, video: &[Codec]) -> RtcConfig {
        let audio = ALL.iter().filter(|d| !d.is_video());
        let video = video
            .iter()
            .filter_map(|codec| ALL.iter().find(|d| d.is_video() && d.codec == *codec));
        audio
            .chain(video)
            .fold(config.clear_codecs(), |c, d| (d.enable)(c))
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

    /// The spatial and temporal layer of a packet of a scalable stream; `None` for codecs without
    /// layers in their payload, or a malformed descriptor.
    pub fn svc(&self, payload: &[u8]) -> Option<SvcPacket> {
        self.svc.and_then(|s| (s.packet)(payload))
    }

    /// The spatial layers' sizes a keyframe of a scalable stream announces, lowest first.
    pub fn svc_sizes(&self, payload: &[u8]) -> Option<LayerSizes> {
        self.svc.and_then(|s| (s.sizes)(payload))
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
        let every_video: Vec<Codec> = ALL
            .iter()
            .filter(|d| d.is_video())
            .map(|d| d.codec)
            .collect();
        let mut config = CodecDescriptor::configure(RtcConfig::new(), &every_video);
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

    #[test]
    fn the_video_codec_list_chooses_what_is_offered() {
        let mut config = CodecDescriptor::configure(RtcConfig::new(), &[Codec::Vp9]);
        let offered: Vec<Codec> = config
            .codec_config()
            .params()
            .iter()
            .map(|p| p.spec().codec)
            .collect();
        assert!(offered.contains(&Codec::Opus) && offered.contains(&Codec::Vp9));
        assert!(!offered.contains(&Codec::Vp8) && !offered.contains(&Codec::H264));
        assert_eq!(
            CodecDescriptor::video_by_name("AV1").unwrap().codec,
            Codec::Av1
        );
        assert!(CodecDescriptor::video_by_name("opus").is_none());
        assert!(CodecDescriptor::video_by_name("theora").is_none());
    }
}
