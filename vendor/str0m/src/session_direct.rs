//! (edge-sfu) RTP in and out of a session at once, with caller-owned buffers: a received packet's
//! payload is decrypted and copied into the caller's buffer instead of becoming an event, and a
//! packet to send is serialised and sealed in place in the caller's datagram buffer instead of
//! going through the send queue. Both skip the per-input timeout pass over every subsystem; the
//! caller still feeds the session time for its timers (RTCP, TWCC feedback, BWE, ICE).

use std::time::Instant;

use crate::rtp::Extension;
use crate::rtp_::{Mid, Rid, RtpHeader, SRTP_OVERHEAD, SeqNo, Ssrc, TwccPacketId, extend_u16};
use crate::streams::DirectRtp;

use super::Session;

/// Room a datagram buffer for [`Session::send_rtp_direct`] needs beyond the payload: any RTP
/// header str0m writes (fixed part, CSRCs, extensions), an RTX original sequence number and the
/// SRTP tag.
pub const DIRECT_SEND_HEADROOM: usize = 256 + SRTP_OVERHEAD;

/// What a packet received at once was.
#[derive(Debug)]
pub struct DirectReceived {
    /// The m-line it arrived on.
    pub mid: Mid,
    /// Its simulcast encoding, if any.
    pub rid: Option<Rid>,
    /// Its header (after RTX repair: the original stream's SSRC and sequence number).
    pub header: RtpHeader,
    /// Its extended sequence number.
    pub seq_no: SeqNo,
    /// How many payload bytes were copied to the caller's buffer.
    pub payload_len: usize,
}

impl Session {
    /// Handles one received SRTP packet, copying its payload into `out` (at least the datagram's
    /// length). `None` when it is not a new media packet of a known stream (bad authentication,
    /// duplicate, padding, unknown SSRC).
    pub fn receive_rtp_direct(
        &mut self,
        now: Instant,
        message: &[u8],
        out: &mut [u8],
    ) -> Option<DirectReceived> {
        let header = RtpHeader::parse(message, &self.exts)?;
        self.handle_rtp_into(now, header, message, Some(out))
    }

    /// Registers the arrival of a packet read outside the session by its transport-wide sequence
    /// number, for the TWCC feedback the session sends.
    pub fn note_transport_cc(&mut self, seq: u16, arrival: Instant) {
        let prev = self.twcc_rx_register.max_seq();
        let extended = extend_u16(prev.map(|s| *s), seq);
        self.twcc_rx_register.update_seq(extended.into(), arrival);
    }

    /// Serialises one RTP packet of send stream `ssrc` and seals it in place in `buf` (the
    /// payload's length and [`DIRECT_SEND_HEADROOM`] more); with `resend_of`, as an RTX resend of
    /// that sequence number. Returns the datagram's length, or `None` when it cannot be sent (no keys yet, no
    /// such stream, payload type or RTX, or too large).
    pub fn send_rtp_direct(
        &mut self,
        now: Instant,
        ssrc: Ssrc,
        rtp: &DirectRtp<'_>,
        resend_of: Option<SeqNo>,
        buf: &mut [u8],
    ) -> Option<usize> {
        // Checked before any bookkeeping: a refused packet changes nothing.
        if self.rtp_closing || rtp.payload.len() + DIRECT_SEND_HEADROOM > buf.len() {
            return None;
        }
        let srtp_tx = self.srtp_tx.as_mut()?;
        let stream = self.streams.stream_tx(&ssrc)?;
        let mid = stream.mid();
        let index = match stream.direct_media_index() {
            Some(i) if self.medias.get(i).is_some_and(|m| m.mid() == mid) => i,
            _ => {
                let i = self.medias.iter().position(|m| m.mid() == mid)?;
                stream.set_direct_media_index(i);
                i
            }
        };
        let exts = self.medias[index].remote_extmap();
        let twcc_enabled = exts.id_of(Extension::TransportSequenceNumber).is_some();
        let twcc_seq = self.twcc;
        let twcc = twcc_enabled.then_some(&mut self.twcc);
        let (mut header, srtp_index) =
            stream.direct_header(now, rtp, resend_of, exts, twcc, self.codec_config.params())?;

        let header_len = header.write_to(buf, exts);
        header.header_len = header_len;
        let mut body = header_len;
        if let Some(original) = resend_of {
            body += RtpHeader::write_original_sequence_number(&mut buf[body..], original);
        }
        let end = body + rtp.payload.len();
        match rtp.vp8_patch {
            Some(patch) => patch.copy_to(rtp.payload, &mut buf[body..end]),
            None => buf[body..end].copy_from_slice(rtp.payload),
        }
        let len = if self.plain_rtp {
            end
        } else {
            srtp_tx.protect_rtp_in_place(buf, &header, end, *srtp_index)
        };

        // The bookkeeping the queued path does after sealing (`Session::poll_packet`).
        let payload_size = end - header_len;
        // Media sent at once is not part of a probe cluster: probes are what the pacer paced.
        if twcc_enabled {
            self.twcc_tx_register
                .register_seq(TwccPacketId::new(twcc_seq), now, payload_size);
        }
        self.pacer.register_direct_send(payload_size.into());
        if let Some(bwe) = self.bwe.as_mut() {
            bwe.on_media_sent(payload_size.into(), false, now);
        }
        if !header.ssrc.is_probe() {
            self.media_bytes_tx += payload_size as u64;
        }
        Some(len)
    }
}
