//! Whole frames out of a recorded track's packets, in sequence order: str0m's depacketizers for
//! video (VP8 frames, H.264 access units in Annex-B), Opus packets as they are.
//!
//! A video frame is the packets of one RTP timestamp, from a packet that starts a partition to
//! the one with the marker bit. A frame that lost a packet is not written, and neither is any
//! frame after it until the next keyframe: a decoder would show corruption until then anyway,
//! and a file must not carry it.

use std::time::Instant;

use str0m::format::{Codec, CodecExtra};
use str0m::unversioned::{Depacketizer, H264Depacketizer, Vp8Depacketizer};

use super::jitter::HeldPacket;
use crate::codec::CodecDescriptor;

/// One whole frame of a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledFrame {
    /// Its RTP timestamp.
    pub timestamp: u32,
    /// When its first packet arrived.
    pub at: Instant,
    /// A keyframe (always for audio).
    pub keyframe: bool,
    /// The picture size its keyframe carries, when the codec says it (VP8).
    pub size: Option<(u16, u16)>,
    /// The encoded frame.
    pub data: Vec<u8>,
}

/// What assembling a packet gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// A whole frame, to be written.
    Frame(AssembledFrame),
    /// A frame was dropped (incomplete, or waiting for a keyframe): the publisher should be
    /// asked for a keyframe.
    Skipped,
}

/// How one codec's payloads become frames.
#[derive(Debug)]
enum Unpacker {
    /// Every packet is a frame (Opus).
    Whole,
    Vp8(Vp8Depacketizer),
    H264(H264Depacketizer),
}

/// The largest frame assembled; a larger one (hostile, or a stream gone wrong) is dropped.
pub const MAX_FRAME_BYTES: usize = 4 << 20;

/// A video frame being put together.
#[derive(Debug)]
struct Partial {
    frame: AssembledFrame,
    extra: CodecExtra,
    /// A packet of it is missing or did not unpack.
    broken: bool,
}

/// Turns one track's in-order packets into frames.
#[derive(Debug)]
pub struct FrameAssembler {
    codec: &'static CodecDescriptor,
    unpacker: Unpacker,
    current: Option<Partial>,
    /// Frames are dropped until a keyframe: at the start and after a gap.
    need_keyframe: bool,
    /// Frames dropped.
    skipped: u64,
}

impl FrameAssembler {
    /// An assembler for `codec`; `None` for a codec the recorder cannot unpack.
    pub fn new(codec: &'static CodecDescriptor) -> Option<Self> {
        let unpacker = match codec.codec {
            Codec::Opus => Unpacker::Whole,
            Codec::Vp8 => Unpacker::Vp8(Vp8Depacketizer::default()),
            Codec::H264 => Unpacker::H264(H264Depacketizer::default()),
            _ => return None,
        };
        Some(FrameAssembler {
            codec,
            need_keyframe: !matches!(unpacker, Unpacker::Whole),
            unpacker,
            current: None,
            skipped: 0,
        })
    }

    /// The codec it unpacks.
    pub fn codec(&self) -> &'static CodecDescriptor {
        self.codec
    }

    /// Frames dropped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Packets were lost before the next one: the frame under way is broken, and video waits
    /// for a keyframe.
    pub fn gap(&mut self) {
        if let Some(partial) = &mut self.current {
            partial.broken = true;
        }
        if !matches!(self.unpacker, Unpacker::Whole) {
            self.need_keyframe = true;
        }
    }

    /// Takes the next packet in sequence order; what it completes goes to `out`.
    pub fn push(&mut self, packet: HeldPacket, out: &mut Vec<Assembled>) {
        let (head, tail) = match &self.unpacker {
            Unpacker::Whole => {
                if !packet.payload.is_empty() {
                    out.push(Assembled::Frame(AssembledFrame {
                        timestamp: packet.timestamp,
                        at: packet.at,
                        keyframe: true,
                        size: None,
                        data: packet.payload,
                    }));
                }
                return;
            }
            Unpacker::Vp8(d) => (
                d.is_partition_head(&packet.payload),
                d.is_partition_tail(packet.marker, &packet.payload),
            ),
            Unpacker::H264(d) => (
                d.is_partition_head(&packet.payload),
                d.is_partition_tail(packet.marker, &packet.payload),
            ),
        };
        // A new timestamp ends the frame under way even if its marker never came.
        if self
            .current
            .as_ref()
            .is_some_and(|p| p.frame.timestamp != packet.timestamp)
        {
            self.finish(out);
        }
        if self.current.is_none() {
            self.reset_unpacker();
            self.current = Some(Partial {
                frame: AssembledFrame {
                    timestamp: packet.timestamp,
                    at: packet.at,
                    keyframe: false,
                    size: None,
                    data: Vec::with_capacity(packet.payload.len() * 4),
                },
                extra: CodecExtra::None,
                broken: !head,
            });
        }
        let codec = self.codec;
        if let Some(partial) = &mut self.current {
            if packet.keyframe {
                partial.frame.keyframe = true;
                partial.frame.size = codec
                    .keyframe(&packet.payload)
                    .and_then(|k| k.width.zip(k.height));
            }
            if partial.frame.data.len() + packet.payload.len() > MAX_FRAME_BYTES {
                // Not kept: the frame is broken anyway.
                partial.broken = true;
                partial.frame.data.clear();
            }
            let unpacked = match &mut self.unpacker {
                _ if partial.broken => Ok(()),
                Unpacker::Vp8(d) => {
                    d.depacketize(&packet.payload, &mut partial.frame.data, &mut partial.extra)
                }
                Unpacker::H264(d) => {
                    d.depacketize(&packet.payload, &mut partial.frame.data, &mut partial.extra)
                }
                Unpacker::Whole => Ok(()),
            };
            partial.broken |= unpacked.is_err();
        }
        if tail {
            self.finish(out);
        }
    }

    /// Ends the frame under way: written if whole (and a keyframe when one is awaited).
    fn finish(&mut self, out: &mut Vec<Assembled>) {
        let Some(mut partial) = self.current.take() else {
            return;
        };
        partial.frame.keyframe |= match partial.extra {
            CodecExtra::Vp8(e) => e.is_keyframe,
            CodecExtra::H264(e) => e.is_keyframe,
            _ => false,
        };
        if partial.broken || partial.frame.data.is_empty() {
            self.need_keyframe = true;
        } else if !self.need_keyframe || partial.frame.keyframe {
            self.need_keyframe = false;
            out.push(Assembled::Frame(partial.frame));
            return;
        }
        self.skipped += 1;
        out.push(Assembled::Skipped);
    }

    /// A fresh depacketizer for each frame: no fragment of a broken frame carries over.
    fn reset_unpacker(&mut self) {
        match &mut self.unpacker {
            Unpacker::Vp8(d) => *d = Vp8Depacketizer::default(),
            Unpacker::H264(d) => *d = H264Depacketizer::default(),
            Unpacker::Whole => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use str0m::format::CodecConfig;

    use super::*;

    fn vp8() -> &'static CodecDescriptor {
        let params = CodecConfig::new_with_defaults()
            .find(|p| p.spec().codec == Codec::Vp8)
            .copied()
            .unwrap();
        CodecDescriptor::of(&params).unwrap()
    }

    /// A VP8 packet of the frame at `timestamp`: `start` sets S (partition start), `keyframe`
    /// clears the frame tag's P bit.
    fn packet(seq: u64, timestamp: u32, start: bool, marker: bool, keyframe: bool) -> HeldPacket {
        let descriptor = if start { 0x10 } else { 0x00 };
        let tag = if keyframe { 0x00 } else { 0x01 };
        HeldPacket {
            seq,
            timestamp,
            marker,
            at: Instant::now(),
            keyframe: start && keyframe,
            payload: vec![descriptor, tag, seq as u8],
        }
    }

    fn run(assembler: &mut FrameAssembler, packets: Vec<HeldPacket>) -> Vec<String> {
        let mut out = Vec::new();
        for p in packets {
            assembler.push(p, &mut out);
        }
        out.iter()
            .map(|a| match a {
                Assembled::Frame(f) => {
                    format!("{}{}", if f.keyframe { "K" } else { "D" }, f.timestamp)
                }
                Assembled::Skipped => "skip".into(),
            })
            .collect()
    }

    #[test]
    fn frames_span_packets_and_video_starts_at_a_keyframe() {
        let mut a = FrameAssembler::new(vp8()).unwrap();
        let got = run(
            &mut a,
            vec![
                packet(1, 0, true, true, false),
                packet(2, 3000, true, false, true),
                packet(3, 3000, false, true, true),
                packet(4, 6000, true, true, false),
            ],
        );
        assert_eq!(got, ["skip", "K3000", "D6000"]);
    }

    #[test]
    fn a_gap_drops_the_broken_frame_and_what_follows_until_a_keyframe() {
        let mut a = FrameAssembler::new(vp8()).unwrap();
        assert_eq!(run(&mut a, vec![packet(1, 0, true, true, true)]), ["K0"]);
        // The second packet of the frame at 3000 was lost.
        let mut got = run(&mut a, vec![packet(2, 3000, true, false, false)]);
        a.gap();
        got.extend(run(
            &mut a,
            vec![
                packet(4, 6000, true, true, false),
                packet(5, 9000, true, true, true),
                packet(6, 12000, true, true, false),
            ],
        ));
        assert_eq!(got, ["skip", "skip", "K9000", "D12000"]);
        assert_eq!(a.skipped(), 2);
    }

    #[test]
    fn a_frame_without_its_start_or_marker_is_handled() {
        let mut a = FrameAssembler::new(vp8()).unwrap();
        let got = run(
            &mut a,
            vec![
                // No marker: ended by the next timestamp, and written (nothing was lost).
                packet(1, 0, true, false, true),
                packet(2, 3000, true, true, false),
                // Does not start a partition: broken.
                packet(3, 6000, false, true, false),
            ],
        );
        assert_eq!(got, ["K0", "D3000", "skip"]);
    }

    #[test]
    fn an_endless_frame_is_dropped_not_kept() {
        let mut a = FrameAssembler::new(vp8()).unwrap();
        let mut out = Vec::new();
        let mut first = packet(1, 0, true, false, true);
        first.payload.resize(1200, 0);
        a.push(first, &mut out);
        for seq in 2..5000 {
            let mut p = packet(seq, 0, false, false, true);
            p.payload.resize(1200, 0);
            a.push(p, &mut out);
        }
        let held = a.current.as_ref().map_or(0, |p| p.frame.data.capacity());
        assert!(held <= 2 * MAX_FRAME_BYTES, "{held} bytes held");
        a.push(packet(5000, 0, false, true, true), &mut out);
        assert_eq!(out, [Assembled::Skipped]);
    }
}
