//! What a datagram is (RFC 7983 demultiplexing) and where an RTP packet's payload starts.

/// The kind of a datagram on a WebRTC media socket, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An RTP packet (the fixed header parsed, see [`RtpHeader`]).
    Rtp(RtpHeader),
    /// RTCP (RFC 5761: packet types 192 to 223 sit where RTP's marker bit and payload type are).
    Rtcp,
    /// STUN (first byte 0 to 3).
    Stun,
    /// DTLS (first byte 20 to 63).
    Dtls,
    /// Anything else, or an RTP packet whose header does not fit in the datagram.
    Other,
}

/// The parts of an RTP header the lean receiver needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Bytes before the payload: 12, the CSRCs, and the extension block with its 4-byte head.
    pub len: usize,
    /// The 16-bit sequence number.
    pub seq: u16,
    /// The synchronization source.
    pub ssrc: u32,
    /// The padding bit: the payload's last byte counts padding bytes to strip.
    pub padded: bool,
}

/// Classifies `datagram` (RFC 7983: 0-3 STUN, 20-63 DTLS, 128-191 RTP or RTCP).
pub fn classify(datagram: &[u8]) -> Kind {
    match datagram {
        [0..=3, ..] => Kind::Stun,
        [20..=63, ..] => Kind::Dtls,
        [128..=191, second, ..] if (192..=223).contains(second) => Kind::Rtcp,
        [128..=191, ..] => rtp_header(datagram).map_or(Kind::Other, Kind::Rtp),
        _ => Kind::Other,
    }
}

/// Parses the fixed header, the CSRC list and the extension block's length.
fn rtp_header(d: &[u8]) -> Option<RtpHeader> {
    let first = *d.first()?;
    let csrcs = usize::from(first & 0x0f);
    let mut len = 12 + 4 * csrcs;
    if first & 0x10 != 0 {
        // The extension: 2 bytes of profile, 2 bytes of length in 32-bit words, then the words.
        let words = u16::from_be_bytes([*d.get(len + 2)?, *d.get(len + 3)?]);
        len += 4 + 4 * usize::from(words);
    }
    if len > d.len() {
        return None;
    }
    Some(RtpHeader {
        len,
        seq: u16::from_be_bytes([d[2], d[3]]),
        ssrc: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
        padded: first & 0x20 != 0,
    })
}

/// The payload without its RTP padding; `None` when the padding count is impossible.
pub fn unpad(payload: &[u8], padded: bool) -> Option<&[u8]> {
    if !padded {
        return Some(payload);
    }
    let count = usize::from(*payload.last()?);
    if count == 0 || count > payload.len() {
        return None;
    }
    payload.get(..payload.len() - count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTP header with `csrcs` CSRCs and, if given, an extension block of that many words.
    fn rtp(csrcs: u8, ext_words: Option<u16>, seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80 | csrcs, 111];
        if ext_words.is_some() {
            p[0] |= 0x10;
        }
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&1234u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        for c in 0..csrcs {
            p.extend_from_slice(&u32::from(c).to_be_bytes());
        }
        if let Some(words) = ext_words {
            p.extend_from_slice(&[0xbe, 0xde]);
            p.extend_from_slice(&words.to_be_bytes());
            p.extend(std::iter::repeat_n(0u8, 4 * usize::from(words)));
        }
        p
    }

    #[test]
    fn header_length_counts_csrcs_and_the_extension_block() {
        let mut p = rtp(0, None, 7, 42);
        p.extend_from_slice(b"payload");
        let want = RtpHeader {
            len: 12,
            seq: 7,
            ssrc: 42,
            padded: false,
        };
        assert_eq!(classify(&p), Kind::Rtp(want));

        let mut p = rtp(2, Some(3), 65535, 0xdead_beef);
        p.extend_from_slice(b"x");
        let Kind::Rtp(h) = classify(&p) else {
            panic!("not rtp: {p:?}")
        };
        assert_eq!(
            (h.len, h.seq, h.ssrc),
            (12 + 8 + 4 + 12, 65535, 0xdead_beef)
        );
        assert_eq!(&p[h.len..], b"x");

        // An extension with no words still has its 4-byte head.
        let p = rtp(0, Some(0), 1, 1);
        assert!(matches!(classify(&p), Kind::Rtp(RtpHeader { len: 16, .. })));
    }

    #[test]
    fn truncated_headers_are_not_rtp() {
        let p = rtp(2, Some(3), 1, 1);
        assert_eq!(classify(&p[..p.len() - 1]), Kind::Other);
        assert_eq!(classify(&p[..13]), Kind::Other);
        assert_eq!(classify(&[0x80, 0x60, 0, 1]), Kind::Other);
        assert_eq!(
            classify(&[0x90, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe]),
            Kind::Other
        );
        assert_eq!(classify(&[]), Kind::Other);
    }

    #[test]
    fn rfc_7983_ranges() {
        assert_eq!(classify(&[0x00, 0x01, 0, 0]), Kind::Stun);
        assert_eq!(classify(&[0x01, 0x01]), Kind::Stun);
        assert_eq!(classify(&[22, 0xfe, 0xfd]), Kind::Dtls);
        assert_eq!(classify(&[63]), Kind::Dtls);
        // RTCP sender report (200) and a marker-bit RTP packet with PT 72 look alike: RTCP wins.
        assert_eq!(classify(&[0x80, 200, 0, 6]), Kind::Rtcp);
        assert_eq!(classify(&[0x81, 205, 0, 3]), Kind::Rtcp);
        assert_eq!(classify(&[0x80, 223, 0, 3]), Kind::Rtcp);
        // Payload type 96 with the marker bit is 224: RTP.
        let mut p = rtp(0, None, 1, 1);
        p[1] = 0x80 | 96;
        assert!(matches!(classify(&p), Kind::Rtp(_)));
        assert_eq!(classify(&[64, 0]), Kind::Other);
        assert_eq!(classify(&[200, 0]), Kind::Other);
    }

    #[test]
    fn padding_is_stripped_when_flagged() {
        assert_eq!(unpad(b"abc\x00\x02", true), Some(&b"abc"[..]));
        assert_eq!(unpad(b"abc\x02", false), Some(&b"abc\x02"[..]));
        assert_eq!(unpad(b"\x03\x03\x03", true), Some(&b""[..]));
        assert_eq!(unpad(b"ab\x05", true), None);
        assert_eq!(unpad(b"ab\x00", true), None);
        assert_eq!(unpad(b"", true), None);
    }
}
