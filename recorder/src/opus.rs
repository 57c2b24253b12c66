//! Opus in Matroska: the `OpusHead` CodecPrivate and the timing elements the WebM spec asks for.

/// SeekPreRoll for Opus: 80 ms, in nanoseconds (the decoder needs that much to converge).
pub const SEEK_PRE_ROLL_NS: u64 = 80_000_000;

/// Pre-skip of the recorded streams, in 48 kHz samples: a WebRTC stream joined mid-call has no
/// encoder priming at its start to skip, so 0 (and CodecDelay, the same in nanoseconds, 0).
pub const PRE_SKIP: u16 = 0;

/// The 19-byte `OpusHead` (RFC 7845, channel mapping family 0) for `channels` channels at
/// `sample_rate` Hz (the input rate, informational: Opus always decodes at 48 kHz).
pub fn opus_head(channels: u8, sample_rate: u32) -> Vec<u8> {
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1); // version
    head.push(channels.clamp(1, 2));
    head.extend_from_slice(&PRE_SKIP.to_le_bytes());
    head.extend_from_slice(&sample_rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family: mono or stereo
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_head_is_19_bytes_with_its_magic() {
        let head = opus_head(2, 48_000);
        assert_eq!(head.len(), 19);
        assert_eq!(&head[..10], b"OpusHead\x01\x02");
        assert_eq!(&head[12..16], 48_000u32.to_le_bytes());
    }
}
