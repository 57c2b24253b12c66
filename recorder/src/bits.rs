//! Reading bit fields of codec headers (AV1 sequence header, H.264 SPS).

/// A big-endian bit reader over a byte slice; reads past the end give `None`.
pub struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    /// A reader at the first bit of `data`.
    pub fn new(data: &'a [u8]) -> Bits<'a> {
        Bits { data, pos: 0 }
    }

    /// The next `count` (<= 32) bits.
    pub fn read(&mut self, count: usize) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..count {
            let byte = self.data.get(self.pos / 8)?;
            value = (value << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(value)
    }

    /// An unsigned Exp-Golomb code: AV1's `uvlc()`, H.264's `ue(v)`.
    pub fn uvlc(&mut self) -> Option<u32> {
        let mut leading_zeros = 0;
        while self.read(1)? == 0 {
            leading_zeros += 1;
            if leading_zeros >= 32 {
                return Some(u32::MAX);
            }
        }
        Some(self.read(leading_zeros)? + ((1u32 << leading_zeros) - 1))
    }

    /// A signed Exp-Golomb code: H.264's `se(v)`.
    pub fn se(&mut self) -> Option<i32> {
        let code = i64::from(self.uvlc()?);
        let magnitude = (code + 1) / 2;
        let value = if code % 2 == 1 { magnitude } else { -magnitude };
        i32::try_from(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_exp_golomb_codes() {
        // 101 | 1 (ue 0) | 010 (ue 1) | 00111 (ue 6) | 0000, then the end.
        let mut bits = Bits::new(&[0b1011_0100, 0b0111_0000]);
        assert_eq!(bits.read(3), Some(0b101));
        assert_eq!(bits.uvlc(), Some(0));
        assert_eq!(bits.uvlc(), Some(1));
        assert_eq!(bits.uvlc(), Some(6));
        assert_eq!(bits.read(5), None);
        // se: 1 -> 0, 010 -> 1, 011 -> -1, 00100 -> 2.
        let mut bits = Bits::new(&[0b1010_0110, 0b0100_0000]);
        assert_eq!(bits.se(), Some(0));
        assert_eq!(bits.se(), Some(1));
        assert_eq!(bits.se(), Some(-1));
        assert_eq!(bits.se(), Some(2));
    }
}
