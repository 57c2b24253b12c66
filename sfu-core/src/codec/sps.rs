//! The picture size in an H.264 sequence parameter set (ITU-T H.264 7.3.2.1.1): the fields up to
//! the frame cropping, read with exp-Golomb codes from the NAL unit's payload with its emulation
//! prevention bytes skipped. Only the size is kept; everything before it is read to get there.
//! Network input: any truncated or nonsensical SPS gives `None`, never a panic.

/// The profiles whose SPS carries the chroma format, bit depths and scaling matrices (7.3.2.1.1).
const HIGH_PROFILES: [u8; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// Longest exp-Golomb code read: 31 leading zeros give values up to 2^32 - 2, beyond any field.
const MAX_LEADING_ZEROS: u32 = 31;

/// Most entries of `offset_for_ref_frame` (the standard's bound).
const MAX_REF_FRAMES_IN_POC_CYCLE: u32 = 255;

/// The decoded size of the pictures an SPS describes, in pixels, after cropping.
///
/// `nal` is one NAL unit: its header byte (type 7) and its payload, as carried in RTP (no start
/// code). `None` when it is not an SPS, is cut short, or gives a size outside `1..=u16::MAX`.
pub(super) fn picture_size(nal: &[u8]) -> Option<(u16, u16)> {
    let (&header, payload) = nal.split_first()?;
    if header & 0x1f != super::h264::NAL_SPS {
        return None;
    }
    let mut r = BitReader::new(payload);
    let profile_idc = r.bits(8)? as u8;
    r.bits(16)?; // constraint flags, reserved bits, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if HIGH_PROFILES.contains(&profile_idc) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.flag()?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.flag()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > MAX_REF_FRAMES_IN_POC_CYCLE {
                return None;
            }
            for _ in 0..cycle {
                r.se()?; // offset_for_ref_frame
            }
        }
        2 => {}
        _ => return None,
    }
    r.ue()?; // max_num_ref_frames
    r.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_in_mbs = u64::from(r.ue()?) + 1;
    let height_in_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.flag()?; // mb_adaptive_frame_field_flag
    }
    r.flag()?; // direct_8x8_inference_flag
    let (mut crop_left, mut crop_right, mut crop_top, mut crop_bottom) = (0, 0, 0, 0);
    if r.flag()? {
        crop_left = u64::from(r.ue()?);
        crop_right = u64::from(r.ue()?);
        crop_top = u64::from(r.ue()?);
        crop_bottom = u64::from(r.ue()?);
    }
    // Table 6-1: the chroma subsampling sets the cropping units (ChromaArrayType 0 crops in luma
    // samples); a field-coded stream counts its height in field macroblock pairs.
    let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
    let (sub_width, sub_height) = match (separate_colour_plane, chroma_format_idc) {
        (true, _) | (false, 0) => (1, 1),
        (false, 1) => (2, 2),
        (false, 2) => (2, 1),
        _ => (1, 1),
    };
    let width = (width_in_mbs * 16).checked_sub(sub_width * (crop_left + crop_right))?;
    let height = (field_factor * height_in_map_units * 16)
        .checked_sub(sub_height * field_factor * (crop_top + crop_bottom))?;
    Some((
        u16::try_from(width).ok().filter(|w| *w > 0)?,
        u16::try_from(height).ok().filter(|h| *h > 0)?,
    ))
}

/// Reads past one `scaling_list()` of `size` entries (7.3.2.1.1.1): only its length matters.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let mut last_scale: i64 = 8;
    let mut next_scale: i64 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            let delta = i64::from(r.se()?);
            next_scale = (last_scale + delta).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Some(())
}

/// Bits of a NAL unit's payload, most significant first, with the emulation prevention bytes
/// (a 0x03 after two zero bytes) left out as the decoder does (7.4.1).
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next byte of `bytes` to load.
    next: usize,
    /// Zero bytes just read, for spotting emulation prevention.
    zeros: u8,
    /// The loaded byte and how many of its bits are still unread.
    current: u8,
    left: u8,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            next: 0,
            zeros: 0,
            current: 0,
            left: 0,
        }
    }

    /// One bit; `None` past the end.
    fn bit(&mut self) -> Option<u32> {
        if self.left == 0 {
            let mut byte = *self.bytes.get(self.next)?;
            self.next += 1;
            if self.zeros >= 2 && byte == 0x03 {
                byte = *self.bytes.get(self.next)?;
                self.next += 1;
                self.zeros = 0;
            }
            self.zeros = if byte == 0 { self.zeros + 1 } else { 0 };
            self.current = byte;
            self.left = 8;
        }
        self.left -= 1;
        Some(u32::from(self.current >> self.left) & 1)
    }

    fn flag(&mut self) -> Option<bool> {
        self.bit().map(|b| b == 1)
    }

    /// `n` bits (at most 32) as an unsigned number.
    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some((acc << 1) | self.bit()?))
    }

    /// An unsigned exp-Golomb code, `ue(v)` (9.1).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > MAX_LEADING_ZEROS {
                return None;
            }
        }
        let suffix = self.bits(zeros)?;
        // 2^zeros - 1 + suffix: at most 2^32 - 2 with 31 zeros.
        Some(((1u64 << zeros) - 1 + u64::from(suffix)) as u32)
    }

    /// A signed exp-Golomb code, `se(v)` (9.1.1): 1, -1, 2, -2, ... for codes 1, 2, 3, 4, ...
    fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let magnitude = (k + 1) / 2;
        Some(if k % 2 == 1 { magnitude } else { -magnitude } as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// SPSs written by x264 (`ffmpeg -c:v libx264`) for these sizes: baseline ones, whose 180 and
    /// 720 lines are cropped from whole macroblocks, and a high-profile one with odd cropping.
    const ENCODED: [(&str, (u16, u16)); 4] = [
        (
            "6742c00bd901419f9f011000000300100000030020f142a480",
            (320, 180),
        ),
        (
            "6742c01fd9005005bb011000000300100000030020f1832480",
            (1280, 720),
        ),
        (
            "67640016acd940a42fe224c044000003000400000300083c58b658",
            (642, 362),
        ),
        (
            "67640016acd940a07b6022000003000200000300043e28532c",
            (640, 480),
        ),
    ];

    #[test]
    fn sizes_of_encoder_written_sps() {
        for (sps, size) in ENCODED {
            assert_eq!(picture_size(&hex(sps)), Some(size), "{sps}");
        }
    }

    #[test]
    fn exp_golomb_codes_and_emulation_prevention() {
        // 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3, then se: 010 -> 1, 011 -> -1.
        let mut r = BitReader::new(&[0b1010_0110, 0b0100_0100, 0b1100_0000]);
        assert_eq!(r.ue(), Some(0));
        assert_eq!(r.ue(), Some(1));
        assert_eq!(r.ue(), Some(2));
        assert_eq!(r.ue(), Some(3));
        assert_eq!(r.se(), Some(1));
        assert_eq!(r.se(), Some(-1));
        // 00 00 03 01: the 03 is not data.
        let mut r = BitReader::new(&[0, 0, 3, 1]);
        assert_eq!(r.bits(24), Some(1));
        assert_eq!(r.bit(), None);
        // 32 leading zeros are more than any field has.
        let mut r = BitReader::new(&[0, 0, 0, 0, 0xff]);
        assert_eq!(r.ue(), None);
        let mut r = BitReader::new(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.ue(), Some(u32::MAX - 1));
    }

    #[test]
    fn hostile_sps_gives_none_never_a_panic() {
        for (sps, _) in ENCODED {
            let sps = hex(sps);
            // Cut anywhere before the cropping fields end: no size.
            for len in 0..6 {
                assert_eq!(picture_size(&sps[..len]), None, "{len}");
            }
            // Every cut and every single-byte corruption: an answer or None, no panic.
            for len in 0..sps.len() {
                let _ = picture_size(&sps[..len]);
            }
            for i in 1..sps.len() {
                for value in [0x00, 0x03, 0xff, 0x80] {
                    let mut bad = sps.clone();
                    bad[i] = value;
                    let _ = picture_size(&bad);
                }
            }
        }
        // Not an SPS, empty, all zeros, all ones.
        assert_eq!(picture_size(&hex("68ce3880")), None);
        assert_eq!(picture_size(&[]), None);
        assert_eq!(picture_size(&[0x67; 1]), None);
        assert_eq!(picture_size(&[0x67, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        // All ones reads as a well-formed SPS: every ue(v) is 0, one macroblock.
        assert_eq!(
            picture_size(&[0x67, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Some((16, 16))
        );
        // A pseudo-random stream of SPS-typed garbage.
        let mut state = 0x2545_f491_u32;
        for _ in 0..2000 {
            let mut garbage = vec![0x67];
            for _ in 0..(state % 40) {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                garbage.push(state as u8);
            }
            let _ = picture_size(&garbage);
        }
    }

    #[test]
    fn cropping_past_the_picture_or_beyond_u16_is_no_size() {
        // Baseline, width 1 MB, height 1 MB, cropping 16 columns left (units of 2): 2*8 = 16
        // leaves nothing.
        // 42 00 1f | ue(0) sps id | ue(0) log2_max_frame_num | ue(2)? poc type 2 = 011
        // ue(0) refs | 0 gaps | ue(0) w | ue(0) h | 1 frame_mbs_only | 1 direct8x8 | 1 crop
        // ue(8)=0001001 left | ue(0) right top bottom
        let bits = "1 1 011 1 0 1 1 1 1 1 0001001 1 1 1";
        let sps = pack(&[0x67, 0x42, 0x00, 0x1f], bits);
        assert_eq!(picture_size(&sps), None);
        // The same with no cropping: one macroblock.
        let sps = pack(&[0x67, 0x42, 0x00, 0x1f], "1 1 011 1 0 1 1 1 1 0");
        assert_eq!(picture_size(&sps), Some((16, 16)));
        // 2^20 macroblocks wide does not fit.
        let wide = "1 1 011 1 0 000000000000000000001 00000000000000000000 1 1 1 1 0";
        assert_eq!(picture_size(&pack(&[0x67, 0x42, 0x00, 0x1f], wide)), None);
    }

    /// `prefix` followed by the bits written as '0'/'1' (spaces ignored), padded with ones.
    fn pack(prefix: &[u8], bits: &str) -> Vec<u8> {
        let mut out = prefix.to_vec();
        let bits: Vec<u8> = bits
            .bytes()
            .filter(|b| *b != b' ')
            .map(|b| b - b'0')
            .collect();
        for chunk in bits.chunks(8) {
            let byte = (0..8).fold(0u8, |acc, i| {
                (acc << 1) | chunk.get(i).copied().unwrap_or(1)
            });
            out.push(byte);
        }
        out
    }
}
