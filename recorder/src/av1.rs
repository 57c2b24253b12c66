//! AV1 temporal units to what Matroska stores (the AV1-in-Matroska mapping): blocks without
//! temporal delimiter OBUs, and an `av1C` record with the sequence header as CodecPrivate.

use std::borrow::Cow;

use crate::bits::Bits;

/// OBU type of a sequence header.
const OBU_SEQUENCE_HEADER: u8 = 1;
/// OBU type of a temporal delimiter (must not be stored in blocks).
const OBU_TEMPORAL_DELIMITER: u8 = 2;

/// One OBU of a temporal unit: its type and its whole bytes (header, size, payload).
struct Obu<'a> {
    kind: u8,
    bytes: &'a [u8],
    payload: &'a [u8],
}

/// The OBUs of a temporal unit in the low-overhead format, or `None` if it is malformed.
fn obus(mut data: &[u8]) -> Option<Vec<Obu<'_>>> {
    let mut out = Vec::new();
    while let Some(&header) = data.first() {
        let kind = (header >> 3) & 0x0F;
        let header_len = if header & 0x04 != 0 { 2 } else { 1 };
        let has_size = header & 0x02 != 0;
        let rest = data.get(header_len..)?;
        let (payload_len, size_len) = if has_size {
            leb128(rest)?
        } else {
            (rest.len(), 0)
        };
        let total = header_len.checked_add(size_len)?.checked_add(payload_len)?;
        let bytes = data.get(..total)?;
        out.push(Obu {
            kind,
            bytes,
            payload: &bytes[header_len + size_len..],
        });
        data = &data[total..];
    }
    Some(out)
}

/// A LEB128 value and its length in bytes (at most 8 bytes, as AV1 allows).
fn leb128(data: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in data.iter().take(8).enumerate() {
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((usize::try_from(value).ok()?, i + 1));
        }
    }
    None
}

/// The temporal unit without its temporal delimiters; unchanged when it cannot be parsed.
pub fn without_temporal_delimiters(data: &[u8]) -> Cow<'_, [u8]> {
    match obus(data) {
        Some(obus) if obus.iter().any(|obu| obu.kind == OBU_TEMPORAL_DELIMITER) => Cow::Owned(
            obus.iter()
                .filter(|obu| obu.kind != OBU_TEMPORAL_DELIMITER)
                .flat_map(|obu| obu.bytes.iter().copied())
                .collect(),
        ),
        _ => Cow::Borrowed(data),
    }
}

/// The `av1C` record (AV1CodecConfigurationRecord) for the temporal unit's sequence header,
/// or `None` when it has none. Profile, level and tier come from the header; bit depth and
/// chroma layout are the profile's usual ones (decoders read the header in configOBUs).
pub fn av1_config(data: &[u8]) -> Option<Vec<u8>> {
    let obus = obus(data)?;
    let sequence_header = obus.iter().find(|obu| obu.kind == OBU_SEQUENCE_HEADER)?;
    let SequenceHeader {
        profile,
        level,
        tier,
        ..
    } = parse_sequence_header(sequence_header.payload)?;
    // Profile 0 is 4:2:0, 1 is 4:4:4, 2 (professional) most often 4:2:2.
    let (subsampling_x, subsampling_y) = match profile {
        0 => (1, 1),
        1 => (0, 0),
        _ => (1, 0),
    };
    let mut record = vec![
        0x81, // marker, version 1
        (profile << 5) | level,
        (tier << 7) | (subsampling_x << 3) | (subsampling_y << 2),
        0, // no initial presentation delay
    ];
    // configOBUs: the sequence header, with its size field as the mapping requires.
    if sequence_header.bytes[0] & 0x02 != 0 {
        record.extend_from_slice(sequence_header.bytes);
    } else {
        record.push(sequence_header.bytes[0] | 0x02);
        let mut len = sequence_header.payload.len();
        loop {
            let byte = (len & 0x7F) as u8;
            len >>= 7;
            record.push(if len > 0 { byte | 0x80 } else { byte });
            if len == 0 {
                break;
            }
        }
        record.extend_from_slice(sequence_header.payload);
    }
    Some(record)
}

/// What the recorder needs of a sequence header.
struct SequenceHeader {
    profile: u8,
    /// seq_level_idx[0]
    level: u8,
    /// seq_tier[0]
    tier: u8,
    /// max_frame_width and max_frame_height: the picture size of a WebRTC stream.
    max_size: (u32, u32),
}

/// Parses a sequence header OBU's payload (AV1 spec 5.5.1) up to the maximum frame size.
fn parse_sequence_header(payload: &[u8]) -> Option<SequenceHeader> {
    let mut bits = Bits::new(payload);
    let profile = bits.read(3)? as u8;
    let _still_picture = bits.read(1)?;
    let reduced_still_picture_header = bits.read(1)? == 1;
    let (level, tier) = if reduced_still_picture_header {
        (bits.read(5)? as u8, 0)
    } else {
        operating_points(&mut bits)?
    };
    let width_bits = bits.read(4)? as usize + 1;
    let height_bits = bits.read(4)? as usize + 1;
    let width = bits.read(width_bits)? + 1;
    let height = bits.read(height_bits)? + 1;
    Some(SequenceHeader {
        profile,
        level,
        tier,
        max_size: (width, height),
    })
}

/// Reads timing info and the operating points of a full sequence header; returns the first
/// operating point's level and tier.
fn operating_points(bits: &mut Bits<'_>) -> Option<(u8, u8)> {
    let mut decoder_model_info = false;
    let mut buffer_delay_length = 0;
    if bits.read(1)? == 1 {
        // timing_info: num_units_in_display_tick, time_scale, equal_picture_interval.
        bits.read(32)?;
        bits.read(32)?;
        if bits.read(1)? == 1 {
            bits.uvlc()?;
        }
        decoder_model_info = bits.read(1)? == 1;
        if decoder_model_info {
            buffer_delay_length = bits.read(5)? as usize + 1;
            // num_units_in_decoding_tick, buffer_removal_time and frame_presentation_time
            // lengths.
            bits.read(32)?;
            bits.read(10)?;
        }
    }
    let initial_display_delay = bits.read(1)? == 1;
    let count = bits.read(5)? + 1;
    let mut first = None;
    for _ in 0..count {
        let _idc = bits.read(12)?;
        let level = bits.read(5)? as u8;
        let tier = if level > 7 { bits.read(1)? as u8 } else { 0 };
        first.get_or_insert((level, tier));
        if decoder_model_info && bits.read(1)? == 1 {
            // operating_parameters_info: decoder and encoder buffer delays, low_delay_mode.
            bits.read(buffer_delay_length)?;
            bits.read(buffer_delay_length)?;
            bits.read(1)?;
        }
        if initial_display_delay && bits.read(1)? == 1 {
            bits.read(4)?;
        }
    }
    first
}

/// The picture size of a temporal unit that carries a sequence header (a keyframe's).
pub fn picture_size(data: &[u8]) -> Option<(u32, u32)> {
    let obus = obus(data)?;
    let header = obus.iter().find(|obu| obu.kind == OBU_SEQUENCE_HEADER)?;
    Some(parse_sequence_header(header.payload)?.max_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporal delimiter, then a sequence header (profile 0, level 8, tier 1, no timing
    /// info, 160x120), then a one-byte frame OBU.
    fn temporal_unit() -> Vec<u8> {
        // seq_profile 000, still 0, reduced 0, timing 0, initial_display_delay 0,
        // operating_points_cnt 00000, idc 0000 0000 0000, level 01000, tier 1, width and
        // height bits 0111 0111 (8 each), max width - 1 = 159, max height - 1 = 119.
        let payload = [0, 0, 0, 0b0100_0101, 0b1101_1110, 0b0111_1101, 0b1101_1100];
        let mut tu = vec![0x12, 0x00]; // TD with size 0
        tu.extend_from_slice(&[0x0A, payload.len() as u8]);
        tu.extend_from_slice(&payload);
        tu.extend_from_slice(&[0x32, 0x01, 0xAB]); // frame OBU, 1 byte
        tu
    }

    #[test]
    fn drops_temporal_delimiters_only() {
        let tu = temporal_unit();
        assert_eq!(*without_temporal_delimiters(&tu), tu[2..]);
        assert_eq!(*without_temporal_delimiters(&[0xFF, 0x80]), [0xFF, 0x80]);
    }

    #[test]
    fn av1c_has_profile_level_tier_and_the_sequence_header() {
        let record = av1_config(&temporal_unit()).unwrap();
        assert_eq!(record[..4], [0x81, 8, 0x80 | 0x08 | 0x04, 0]);
        assert_eq!(record[4..], temporal_unit()[2..11]);
        assert_eq!(av1_config(&[0x32, 0x01, 0xAB]), None);
    }

    #[test]
    fn picture_size_is_the_sequence_headers_maximum() {
        assert_eq!(picture_size(&temporal_unit()), Some((160, 120)));
        assert_eq!(picture_size(&[0x32, 0x01, 0xAB]), None);
    }
}
