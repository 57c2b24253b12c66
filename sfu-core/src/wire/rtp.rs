//! RTP fixed header view (RFC 3550 §5.1) with CSRCs, header extension and padding accounted for.

use super::WireError;

const FIXED_HEADER_LEN: usize = 12;

/// A read/write view of an RTP packet in a buffer.
#[derive(Debug, Clone)]
pub struct RtpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RtpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    /// Use [`RtpPacket::new_checked`] on anything that came off the wire.
    pub const fn new_unchecked(buffer: T) -> Self {
        RtpPacket { buffer }
    }

    /// Wraps a buffer after checking that the version is 2 and that the CSRC list, the header
    /// extension and the padding all fit inside it.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<(), WireError> {
        let buf = self.buffer.as_ref();
        if buf.len() < FIXED_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 2 {
            return Err(WireError::BadVersion);
        }
        let mut header_len = FIXED_HEADER_LEN + 4 * usize::from(self.csrc_count());
        if buf.len() < header_len {
            return Err(WireError::Truncated);
        }
        if self.has_extension() {
            let ext = buf
                .get(header_len..header_len + 4)
                .ok_or(WireError::Truncated)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            header_len += 4 + 4 * words;
            if buf.len() < header_len {
                return Err(WireError::BadLength);
            }
        }
        if self.has_padding() {
            let pad = usize::from(buf[buf.len() - 1]);
            if pad == 0 || header_len + pad > buf.len() {
                return Err(WireError::BadLength);
            }
        }
        Ok(())
    }

    /// The RTP version (2 for every packet we accept).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 6
    }

    /// Whether padding octets end the packet.
    pub fn has_padding(&self) -> bool {
        self.buffer.as_ref()[0] & 0x20 != 0
    }

    /// Whether a header extension follows the CSRC list.
    pub fn has_extension(&self) -> bool {
        self.buffer.as_ref()[0] & 0x10 != 0
    }

    /// Number of CSRC identifiers.
    pub fn csrc_count(&self) -> u8 {
        self.buffer.as_ref()[0] & 0x0f
    }

    /// The marker bit (end of a video frame).
    pub fn marker(&self) -> bool {
        self.buffer.as_ref()[1] & 0x80 != 0
    }

    /// The payload type.
    pub fn payload_type(&self) -> u8 {
        self.buffer.as_ref()[1] & 0x7f
    }

    /// The sequence number.
    pub fn sequence_number(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }

    /// The media timestamp.
    pub fn timestamp(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[4], b[5], b[6], b[7]])
    }

    /// The synchronisation source.
    pub fn ssrc(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[8], b[9], b[10], b[11]])
    }

    /// Length of the header: fixed part, CSRCs and extension.
    pub fn header_len(&self) -> usize {
        let b = self.buffer.as_ref();
        let mut len = FIXED_HEADER_LEN + 4 * usize::from(self.csrc_count());
        if self.has_extension() {
            len += 4 + 4 * usize::from(u16::from_be_bytes([b[len + 2], b[len + 3]]));
        }
        len
    }

    /// The payload, without header and padding.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[self.payload_range()]
    }

    /// Where the payload lies in the buffer.
    fn payload_range(&self) -> std::ops::Range<usize> {
        let b = self.buffer.as_ref();
        let pad = if self.has_padding() {
            usize::from(b[b.len() - 1])
        } else {
            0
        };
        self.header_len()..b.len() - pad
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<'a> RtpPacket<&'a [u8]> {
    /// The payload, borrowed for as long as the buffer (not just the view).
    pub fn payload_in_buffer(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer;
        &b[self.payload_range()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RtpPacket<T> {
    /// Rewrites the payload type, keeping the marker bit.
    pub fn set_payload_type(&mut self, pt: u8) {
        let b = self.buffer.as_mut();
        b[1] = (b[1] & 0x80) | (pt & 0x7f);
    }

    /// Rewrites the sequence number.
    pub fn set_sequence_number(&mut self, seq: u16) {
        self.buffer.as_mut()[2..4].copy_from_slice(&seq.to_be_bytes());
    }

    /// Rewrites the timestamp.
    pub fn set_timestamp(&mut self, ts: u32) {
        self.buffer.as_mut()[4..8].copy_from_slice(&ts.to_be_bytes());
    }

    /// Rewrites the SSRC.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buffer.as_mut()[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
}

/// The header fields of an RTP packet as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpRepr {
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Marker bit.
    pub marker: bool,
}

impl RtpRepr {
    /// Reads the header fields of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &RtpPacket<T>) -> Self {
        RtpRepr {
            payload_type: packet.payload_type(),
            sequence_number: packet.sequence_number(),
            timestamp: packet.timestamp(),
            ssrc: packet.ssrc(),
            marker: packet.marker(),
        }
    }

    /// Length of the fixed header this repr emits (no CSRCs, no extension).
    pub const fn header_len(&self) -> usize {
        FIXED_HEADER_LEN
    }

    /// Writes a 12-byte header into `buf[..12]`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let header = buf
            .get_mut(..FIXED_HEADER_LEN)
            .ok_or(WireError::Truncated)?;
        header[0] = 0x80;
        header[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        header[2..4].copy_from_slice(&self.sequence_number.to_be_bytes());
        header[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let repr = RtpRepr {
            payload_type: 96,
            sequence_number: 65535,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
            marker: true,
        };
        let mut buf = vec![0u8; 12 + 3];
        repr.emit(&mut buf).unwrap();
        buf[12..].copy_from_slice(b"abc");
        buf
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let buf = sample();
        let p = RtpPacket::new_checked(&buf[..]).unwrap();
        let r = RtpRepr::parse(&p);
        assert_eq!(r.payload_type, 96);
        assert_eq!(r.sequence_number, 65535);
        assert_eq!(r.timestamp, 0xdead_beef);
        assert_eq!(r.ssrc, 0x0102_0304);
        assert!(r.marker);
        assert_eq!(p.payload(), b"abc");
    }

    #[test]
    fn setters_rewrite_in_place() {
        let mut buf = sample();
        let mut p = RtpPacket::new_checked(&mut buf[..]).unwrap();
        p.set_ssrc(7);
        p.set_sequence_number(1);
        p.set_timestamp(2);
        p.set_payload_type(111);
        assert_eq!(p.ssrc(), 7);
        assert_eq!(p.sequence_number(), 1);
        assert_eq!(p.timestamp(), 2);
        assert_eq!(p.payload_type(), 111);
        assert!(p.marker(), "marker survives a PT rewrite");
        assert_eq!(p.payload(), b"abc");
    }

    #[test]
    fn hostile_headers_are_refused() {
        assert_eq!(
            RtpPacket::new_checked(&[0x80u8; 11][..]).unwrap_err(),
            WireError::Truncated
        );
        let mut bad_version = sample();
        bad_version[0] = 0x40;
        assert_eq!(
            RtpPacket::new_checked(&bad_version[..]).unwrap_err(),
            WireError::BadVersion
        );
        let mut csrcs = sample();
        csrcs[0] |= 0x0f;
        assert_eq!(
            RtpPacket::new_checked(&csrcs[..]).unwrap_err(),
            WireError::Truncated
        );
        let mut ext = sample();
        ext[0] |= 0x10;
        ext.truncate(14);
        assert_eq!(
            RtpPacket::new_checked(&ext[..]).unwrap_err(),
            WireError::Truncated
        );
        let mut ext_len = sample();
        ext_len[0] |= 0x10;
        ext_len.extend_from_slice(&[0, 0]);
        ext_len[14] = 0xff;
        assert_eq!(
            RtpPacket::new_checked(&ext_len[..]).unwrap_err(),
            WireError::BadLength
        );
        let mut pad = sample();
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 200;
        assert_eq!(
            RtpPacket::new_checked(&pad[..]).unwrap_err(),
            WireError::BadLength
        );
    }

    #[test]
    fn extension_and_padding_are_skipped() {
        let mut buf = sample();
        buf[0] |= 0x10 | 0x20;
        buf.truncate(12);
        buf.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]);
        buf.extend_from_slice(b"xy");
        buf.extend_from_slice(&[0, 2]);
        let p = RtpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.payload(), b"xy");
    }
}
