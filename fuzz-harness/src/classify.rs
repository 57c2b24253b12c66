//! `classify`: a datagram on the media port through the first-byte classifier and the RTP and
//! STUN views with every accessor, checking that a view never reads outside its buffer.

use sfu_core::wire::{classify, DatagramKind, RtpPacket, RtpRepr, StunPacket};

/// Classifies `data` and reads it through every view that accepts it.
pub fn run(data: &[u8]) {
    let kind = classify(data);
    if let Ok(rtp) = RtpPacket::new_checked(data) {
        assert!(matches!(kind, DatagramKind::Rtp | DatagramKind::Rtcp));
        let header_len = rtp.header_len();
        assert!(header_len <= data.len(), "header past the buffer");
        assert!(header_len + rtp.payload().len() <= data.len());
        let _ = (rtp.version(), rtp.has_padding(), rtp.has_extension());
        let _ = (rtp.csrc_count(), rtp.marker(), rtp.payload_type());
        let _ = (rtp.sequence_number(), rtp.timestamp(), rtp.ssrc());
        let _ = rtp.payload_in_buffer();
        // The header round-trips through its parsed form into a copy.
        let repr = RtpRepr::parse(&rtp);
        let mut copy = data.to_vec();
        repr.emit(&mut copy)
            .expect("a parsed header fits its own buffer");
        let again = RtpPacket::new_checked(&copy[..]).expect("an emitted header parses");
        assert_eq!(RtpRepr::parse(&again), repr);
        // The setters stay inside the buffer and leave the header's layout alone.
        let mut packet = RtpPacket::new_checked(data.to_vec()).expect("the same bytes");
        packet.set_payload_type(rtp.payload_type());
        packet.set_sequence_number(rtp.sequence_number().wrapping_add(1));
        packet.set_timestamp(rtp.timestamp().wrapping_add(1));
        packet.set_ssrc(!rtp.ssrc());
        assert_eq!(packet.header_len(), header_len);
    }
    // The STUN view takes what RFC 8489 allows (first byte 0..=63), wider than the demux's RFC
    // 7983 range (0..=3): the core asks it only about datagrams the classifier calls STUN.
    if let Ok(stun) = StunPacket::new_checked(data) {
        let _ = (stun.message_type(), stun.is_binding_request());
        if let Some(username) = stun.username() {
            assert!(username.len() <= data.len());
        }
        let _ = stun.local_ufrag();
    }
}
