//! H.264 access units from Annex-B (what the caller gives) to what Matroska stores: NAL units
//! with 4-byte length prefixes in blocks, and an `avcC` record (SPS/PPS) as CodecPrivate.

use crate::bits::Bits;

/// NAL unit type of a sequence parameter set.
const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter (meaningless in a container: dropped).
const NAL_AUD: u8 = 9;

/// The NAL units of an Annex-B access unit (start codes of 3 or 4 bytes), without empty ones.
pub fn nal_units(annex_b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = annex_b;
    std::iter::from_fn(move || loop {
        let start = find_start_code(rest)?;
        let body = &rest[start..];
        let end = find_start_code(body).map_or(body.len(), |next| next - 3);
        rest = &body[end..];
        // A 4-byte start code leaves its leading zero at the end of the previous unit.
        let mut nal = &body[..end];
        while let [head @ .., 0] = nal {
            nal = head;
        }
        if !nal.is_empty() {
            return Some(nal);
        }
    })
}

/// Index just after the first `00 00 01` in `data`.
fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1]).map(|i| i + 3)
}

/// The access unit with 4-byte big-endian length prefixes instead of start codes (AUDs
/// dropped), or `None` when it holds no NAL unit.
pub fn to_length_prefixed(annex_b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(annex_b.len() + 8);
    for nal in nal_units(annex_b).filter(|nal| nal[0] & 0x1F != NAL_AUD) {
        let len = u32::try_from(nal.len()).ok()?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(nal);
    }
    (!out.is_empty()).then_some(out)
}

/// The `avcC` record (ISO 14496-15 AVCDecoderConfigurationRecord) built from the first SPS
/// and PPS of an access unit, or `None` when it lacks either.
pub fn avc_decoder_config(annex_b: &[u8]) -> Option<Vec<u8>> {
    let mut sps = None;
    let mut pps = None;
    for nal in nal_units(annex_b) {
        match nal[0] & 0x1F {
            NAL_SPS if sps.is_none() && nal.len() >= 4 => sps = Some(nal),
            NAL_PPS if pps.is_none() => pps = Some(nal),
            _ => {}
        }
    }
    let (sps, pps) = (sps?, pps?);
    let sps_len = u16::try_from(sps.len()).ok()?;
    let pps_len = u16::try_from(pps.len()).ok()?;
    let mut record = vec![
        1,      // configurationVersion
        sps[1], // AVCProfileIndication
        sps[2], // profile_compatibility
        sps[3], // AVCLevelIndication
        0xFF,   // reserved bits, lengthSizeMinusOne = 3
        0xE1,   // reserved bits, one SPS
    ];
    record.extend_from_slice(&sps_len.to_be_bytes());
    record.extend_from_slice(sps);
    record.push(1); // one PPS
    record.extend_from_slice(&pps_len.to_be_bytes());
    record.extend_from_slice(pps);
    if matches!(sps[1], 100 | 110 | 122 | 144) {
        // High profiles: chroma format and bit depths follow (ISO 14496-15 5.3.3.1.2).
        let (chroma_format, luma_depth, chroma_depth) = high_profile_format(sps)?;
        record.push(0xFC | chroma_format);
        record.push(0xF8 | luma_depth);
        record.push(0xF8 | chroma_depth);
        record.push(0); // no SPS extensions
    }
    Some(record)
}

/// chroma_format_idc, bit_depth_luma_minus8 and bit_depth_chroma_minus8 of a High profile
/// SPS NAL unit (its header and profile/constraint/level bytes first).
fn high_profile_format(sps: &[u8]) -> Option<(u8, u8, u8)> {
    let rbsp = without_emulation_prevention(sps.get(4..)?);
    let format = SpsFormat::read(&mut Bits::new(&rbsp), sps[1])?;
    let field = |value: u32, max: u32| u8::try_from(value).ok().filter(|&v| u32::from(v) <= max);
    Some((
        field(format.chroma_format, 3)?,
        field(format.luma_depth, 7)?,
        field(format.chroma_depth, 7)?,
    ))
}

/// The picture size (cropped) in the first SPS of an access unit (a keyframe's).
pub fn picture_size(annex_b: &[u8]) -> Option<(u32, u32)> {
    let sps = nal_units(annex_b).find(|nal| nal[0] & 0x1F == NAL_SPS && nal.len() >= 4)?;
    let rbsp = without_emulation_prevention(&sps[4..]);
    let mut bits = Bits::new(&rbsp);
    let format = SpsFormat::read(&mut bits, sps[1])?;
    bits.uvlc()?; // log2_max_frame_num_minus4
    match bits.uvlc()? {
        // pic_order_cnt_type
        0 => {
            bits.uvlc()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            bits.read(1)?; // delta_pic_order_always_zero_flag
            bits.se()?; // offset_for_non_ref_pic
            bits.se()?; // offset_for_top_to_bottom_field
            let cycle = bits.uvlc()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                bits.se()?; // offset_for_ref_frame
            }
        }
        _ => {}
    }
    bits.uvlc()?; // max_num_ref_frames
    bits.read(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = bits.uvlc()?.checked_add(1)?;
    let height_map_units = bits.uvlc()?.checked_add(1)?;
    let frame_mbs_only = bits.read(1)?;
    if frame_mbs_only == 0 {
        bits.read(1)?; // mb_adaptive_frame_field_flag
    }
    bits.read(1)?; // direct_8x8_inference_flag
    let mut crop = [0u32; 4]; // left, right, top, bottom
    if bits.read(1)? == 1 {
        for offset in &mut crop {
            *offset = bits.uvlc()?;
        }
    }
    // Crop units (H.264 7.4.2.1.1): chroma samples, or luma ones without chroma.
    let chroma_array_type = if format.separate_colour_plane {
        0
    } else {
        format.chroma_format
    };
    let (unit_x, unit_y) = match chroma_array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let unit_y = unit_y * (2 - frame_mbs_only);
    let width = width_mbs
        .checked_mul(16)?
        .checked_sub(unit_x * crop[0].checked_add(crop[1])?)?;
    let height = height_map_units
        .checked_mul(16 * (2 - frame_mbs_only))?
        .checked_sub(unit_y * crop[2].checked_add(crop[3])?)?;
    (width > 0 && height > 0).then_some((width, height))
}

/// The chroma format and bit depths an SPS declares (High profiles) or implies (4:2:0, 8 bits).
struct SpsFormat {
    chroma_format: u32,
    separate_colour_plane: bool,
    luma_depth: u32,
    chroma_depth: u32,
}

impl SpsFormat {
    /// Reads from just after level_idc to just before log2_max_frame_num_minus4.
    fn read(bits: &mut Bits<'_>, profile: u8) -> Option<SpsFormat> {
        let mut format = SpsFormat {
            chroma_format: 1,
            separate_colour_plane: false,
            luma_depth: 0,
            chroma_depth: 0,
        };
        bits.uvlc()?; // seq_parameter_set_id
        if matches!(
            profile,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            format.chroma_format = bits.uvlc()?;
            if format.chroma_format == 3 {
                format.separate_colour_plane = bits.read(1)? == 1;
            }
            format.luma_depth = bits.uvlc()?;
            format.chroma_depth = bits.uvlc()?;
            bits.read(1)?; // qpprime_y_zero_transform_bypass_flag
            if bits.read(1)? == 1 {
                let lists = if format.chroma_format == 3 { 12 } else { 8 };
                skip_scaling_lists(bits, lists)?;
            }
        }
        Some(format)
    }
}

/// Skips `count` seq_scaling_list_present_flag entries and their scaling lists.
fn skip_scaling_lists(bits: &mut Bits<'_>, count: usize) -> Option<()> {
    for list in 0..count {
        if bits.read(1)? == 0 {
            continue;
        }
        let size = if list < 6 { 16 } else { 64 };
        let (mut last, mut next) = (8i64, 8i64);
        for _ in 0..size {
            if next != 0 {
                next = (last + i64::from(bits.se()?)).rem_euclid(256);
            }
            if next != 0 {
                last = next;
            }
        }
    }
    Some(())
}

/// The RBSP of a NAL unit's payload: every `00 00 03` loses its `03`.
fn without_emulation_prevention(payload: &[u8]) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(payload.len());
    let mut zeros = 0;
    for &byte in payload {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        rbsp.push(byte);
    }
    rbsp
}

#[cfg(test)]
mod tests {
    use super::*;

    const AU: &[u8] = &[
        0, 0, 0, 1, 0x09, 0xF0, // AUD
        0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1F, 0xAA, // SPS
        0, 0, 1, 0x68, 0xCE, 0x3C, 0x80, // PPS
        0, 0, 1, 0x65, 0x88, 0x84, 0x00, // IDR slice ending in a zero byte
    ];

    #[test]
    fn splits_annex_b_with_both_start_code_lengths() {
        let nals: Vec<&[u8]> = nal_units(AU).collect();
        assert_eq!(nals.len(), 4);
        assert_eq!(nals[1], [0x67, 0x42, 0xC0, 0x1F, 0xAA]);
        assert_eq!(nals[3], [0x65, 0x88, 0x84]);
    }

    #[test]
    fn converts_to_length_prefixed_without_delimiters() {
        let avcc = to_length_prefixed(AU).unwrap();
        assert_eq!(&avcc[..9], [0, 0, 0, 5, 0x67, 0x42, 0xC0, 0x1F, 0xAA]);
        assert_eq!(avcc.len(), 4 + 5 + 4 + 4 + 4 + 3);
        assert_eq!(to_length_prefixed(&[0, 0, 1]), None);
        assert_eq!(to_length_prefixed(&[]), None);
    }

    #[test]
    fn builds_avcc_from_sps_and_pps() {
        let record = avc_decoder_config(AU).unwrap();
        assert_eq!(&record[..8], [1, 0x42, 0xC0, 0x1F, 0xFF, 0xE1, 0, 5]);
        assert_eq!(&record[13..], [1, 0, 4, 0x68, 0xCE, 0x3C, 0x80]);
        assert_eq!(avc_decoder_config(&AU[18..]), None);
    }

    #[test]
    fn high_profile_avcc_carries_chroma_format_and_bit_depths() {
        // SPS of profile 100: id ue(0) = 1, chroma_format_idc ue(1) = 010, luma depth ue(0) = 1,
        // chroma depth ue(2) = 011, then the rest.
        let au = [
            0,
            0,
            0,
            1,
            0x67,
            100,
            0,
            0x1F,
            0b1010_1011,
            0x80,
            0,
            0,
            1,
            0x68,
            0xCE,
        ];
        let record = avc_decoder_config(&au).unwrap();
        assert_eq!(record[1], 100);
        assert_eq!(record[record.len() - 4..], [0xFC | 1, 0xF8, 0xF8 | 2, 0]);
    }

    /// SPS of libx264 for 160x120 (coded as 10x8 macroblocks, cropped by 8 lines), as
    /// Annex-B access units: Constrained Baseline and High profile.
    const SPS_BASELINE: &str = "6742c00ada0a11f970110000030001000003001e8f1226a0";
    const SPS_HIGH: &str = "6764000aacb41423f2e0220000030002000003003d1e244d40";

    fn access_unit(sps_hex: &str) -> Vec<u8> {
        let mut au = vec![0, 0, 0, 1];
        au.extend(
            (0..sps_hex.len() / 2)
                .map(|i| u8::from_str_radix(&sps_hex[2 * i..2 * i + 2], 16).unwrap()),
        );
        au.extend_from_slice(&[0, 0, 1, 0x68, 0xCE, 0x0F, 0xC8]);
        au
    }

    #[test]
    fn picture_size_is_the_cropped_size() {
        assert_eq!(picture_size(&access_unit(SPS_BASELINE)), Some((160, 120)));
        assert_eq!(picture_size(&access_unit(SPS_HIGH)), Some((160, 120)));
        assert_eq!(picture_size(&AU[18..]), None);
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(
            without_emulation_prevention(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            [0, 0, 1, 0, 0, 0, 3]
        );
    }
}
