//! The picture size of VP8 and VP9 keyframes, read from their uncompressed headers.

use crate::bits::Bits;

/// Width and height of a VP8 keyframe (RFC 6386 9.1), or `None` for anything else.
pub fn vp8_picture_size(frame: &[u8]) -> Option<(u32, u32)> {
    let header = frame.get(..10)?;
    // Bit 0 of the frame tag is 0 for keyframes, whose start code follows the 3-byte tag.
    if header[0] & 0x01 != 0 || header[3..6] != [0x9D, 0x01, 0x2A] {
        return None;
    }
    // 14 bits of size, 2 of scaling.
    let width = u16::from_le_bytes([header[6], header[7]]) & 0x3FFF;
    let height = u16::from_le_bytes([header[8], header[9]]) & 0x3FFF;
    (width > 0 && height > 0).then_some((u32::from(width), u32::from(height)))
}

/// Width and height of a VP9 keyframe (VP9 bitstream spec 6.2, uncompressed header), or
/// `None` for anything else. A superframe's first frame is the one read.
pub fn vp9_picture_size(frame: &[u8]) -> Option<(u32, u32)> {
    let mut bits = Bits::new(frame);
    if bits.read(2)? != 2 {
        return None; // frame_marker
    }
    let profile_low = bits.read(1)?;
    let profile = (bits.read(1)? << 1) | profile_low;
    if profile == 3 {
        bits.read(1)?; // reserved_zero
    }
    let show_existing_frame = bits.read(1)? == 1;
    let keyframe = bits.read(1)? == 0;
    if show_existing_frame || !keyframe {
        return None;
    }
    bits.read(2)?; // show_frame, error_resilient_mode
    if bits.read(24)? != 0x49_83_42 {
        return None; // frame_sync_code
    }
    // color_config
    if profile >= 2 {
        bits.read(1)?; // ten_or_twelve_bit
    }
    const CS_RGB: u32 = 7;
    let color_space = bits.read(3)?;
    let has_subsampling = profile == 1 || profile == 3;
    if color_space != CS_RGB {
        bits.read(1)?; // color_range
        if has_subsampling {
            bits.read(3)?; // subsampling_x, subsampling_y, reserved_zero
        }
    } else if has_subsampling {
        bits.read(1)?; // reserved_zero
    }
    let width = bits.read(16)? + 1;
    let height = bits.read(16)? + 1;
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_size_of_a_vp8_keyframe_only() {
        let keyframe = [
            0x50, 0x42, 0x00, 0x9D, 0x01, 0x2A, 0xA0, 0x40, 0x78, 0x80, 0xFF,
        ];
        assert_eq!(vp8_picture_size(&keyframe), Some((160, 120)));
        let mut delta = keyframe;
        delta[0] |= 1;
        assert_eq!(vp8_picture_size(&delta), None);
        assert_eq!(vp8_picture_size(&keyframe[..9]), None);
    }

    #[test]
    fn reads_the_size_of_a_vp9_keyframe_only() {
        // marker 10, profile 0 (0 0), show_existing 0, key 0, show 1, error_res 0,
        // sync code, color_space 010 (BT.601), color_range 0, width - 1 = 159, height - 1 = 119.
        let mut bits = String::from("10000010");
        bits += "010010011000001101000010";
        bits += "0100";
        bits += &format!("{:016b}{:016b}", 159, 119);
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let frame: Vec<u8> = (0..bits.len() / 8)
            .map(|i| u8::from_str_radix(&bits[i * 8..i * 8 + 8], 2).unwrap())
            .collect();
        assert_eq!(vp9_picture_size(&frame), Some((160, 120)));
        let mut inter = frame.clone();
        inter[0] |= 0x04; // frame_type 1
        assert_eq!(vp9_picture_size(&inter), None);
        assert_eq!(vp9_picture_size(&frame[..6]), None);
    }
}
