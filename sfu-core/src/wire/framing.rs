//! RFC 4571 framing of ICE-TCP (RFC 6544): each datagram travels as a 16-bit big-endian length
//! and then its bytes. The I/O shell reads and writes the stream; the rules a hostile stream must
//! obey live here, where they can be tested and fuzzed without a socket.

use crate::counters::DropReason;

/// The rules the frames arriving on one ICE-TCP connection must obey: each fits the receive
/// buffer and is not empty, and the first is STUN (a connection starts with an ICE check).
#[derive(Debug, Clone)]
pub struct FrameRules {
    max_len: usize,
    first: bool,
}

impl FrameRules {
    /// The rules of a new connection whose frames must fit in `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        FrameRules {
            max_len,
            first: true,
        }
    }

    /// The length of the frame that the 2-byte `prefix` announces, or why the connection must
    /// close (an empty frame, or one larger than the receive buffer).
    pub fn frame_len(&self, prefix: [u8; 2]) -> Result<usize, DropReason> {
        let len = usize::from(u16::from_be_bytes(prefix));
        if len == 0 || len > self.max_len {
            return Err(DropReason::TcpBadFrame);
        }
        Ok(len)
    }

    /// Checks one whole frame before the core sees it: the connection's first must be STUN.
    pub fn accept(&mut self, frame: &[u8]) -> Result<(), DropReason> {
        if std::mem::take(&mut self.first) && super::classify(frame) != super::DatagramKind::Stun {
            return Err(DropReason::TcpNotStun);
        }
        Ok(())
    }
}

/// Appends `datagram` to `out` as one RFC 4571 frame; returns `false` (and appends nothing)
/// when it is too long for the 16-bit length.
pub fn append_frame(out: &mut Vec<u8>, datagram: &[u8]) -> bool {
    let Ok(len) = u16::try_from(datagram.len()) else {
        return false;
    };
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(datagram);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_hostile_lengths_close() {
        let stun = [0u8, 1, 0, 0];
        let mut out = Vec::new();
        assert!(append_frame(&mut out, &stun));
        assert_eq!(out, [0, 4, 0, 1, 0, 0]);
        assert!(!append_frame(&mut out, &vec![0; 65_536]));
        assert_eq!(out.len(), 6, "an unframeable datagram appends nothing");

        let mut rules = FrameRules::new(2048);
        assert_eq!(rules.frame_len([0, 4]), Ok(4));
        assert_eq!(rules.frame_len([0, 0]), Err(DropReason::TcpBadFrame));
        assert_eq!(rules.frame_len([0x08, 0x01]), Err(DropReason::TcpBadFrame));
        assert_eq!(rules.accept(&stun), Ok(()));
        assert_eq!(
            rules.accept(&[0x80, 96]),
            Ok(()),
            "only the first must be STUN"
        );
        let mut rules = FrameRules::new(2048);
        assert_eq!(rules.accept(&[0x80, 96]), Err(DropReason::TcpNotStun));
    }
}
