//! First-byte demultiplexing of one UDP port shared by STUN, DTLS, RTP and RTCP (RFC 7983, RFC 5761).

/// What a datagram on the media port claims to be, judged by its first bytes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// First byte 0..=3: STUN.
    Stun,
    /// First byte 20..=63: DTLS.
    Dtls,
    /// First byte 128..=191, second byte's payload type not in the RTCP range.
    Rtp,
    /// First byte 128..=191, payload type 64..=95 (RTCP packet types 192..=223).
    Rtcp,
    /// Anything else: nothing on this port speaks it.
    Unknown,
}

/// Classifies a datagram by RFC 7983's first-byte ranges.
pub fn classify(buf: &[u8]) -> DatagramKind {
    match buf {
        [0..=3, ..] => DatagramKind::Stun,
        [20..=63, ..] => DatagramKind::Dtls,
        [128..=191, second, ..] => {
            if (64..96).contains(&(second & 0x7f)) {
                DatagramKind::Rtcp
            } else {
                DatagramKind::Rtp
            }
        }
        _ => DatagramKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc7983() {
        assert_eq!(classify(&[0, 1]), DatagramKind::Stun);
        assert_eq!(classify(&[22, 254]), DatagramKind::Dtls);
        assert_eq!(classify(&[0x80, 111]), DatagramKind::Rtp);
        assert_eq!(classify(&[0x80, 0x80 | 96]), DatagramKind::Rtp);
        assert_eq!(classify(&[0x80, 200]), DatagramKind::Rtcp);
        assert_eq!(classify(&[0x80]), DatagramKind::Unknown);
        assert_eq!(classify(&[]), DatagramKind::Unknown);
        assert_eq!(classify(&[64, 0]), DatagramKind::Unknown);
        assert_eq!(classify(&[255, 0]), DatagramKind::Unknown);
    }
}
