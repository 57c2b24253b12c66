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
    let mut bits = Bits::new(&rbsp);
    let _seq_parameter_set_id = bits.uvlc()?;
    let chroma_format = bits.uvlc()?;
    if chroma_format == 3 {
        let _separate_colour_plane = bits.read(1)?;
    }
    let luma_depth = bits.uvlc()?;
    let chroma_depth = bits.uvlc()?;
    let field = |value: u32, max: u32| u8::try_from(value).ok().filter(|&v| u32::from(v) <= max);
    Some((
        field(chroma_format, 3)?,
        field(luma_depth, 7)?,
        field(chroma_depth, 7)?,
    ))
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

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(
            without_emulation_prevention(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            [0, 0, 1, 0, 0, 0, 3]
        );
    }
}
