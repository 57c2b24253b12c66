//! (edge-sfu) Sending RTP at once on a send stream, bypassing the send queue, the pacer queue and
//! the resend cache: an SFU forwarding one packet to many receivers keeps the packet once itself,
//! has each receiver's session seal it straight into a datagram buffer, and answers NACKs from
//! its own copy ([`crate::Rtc::send_rtp_direct`]). A stream used this way collects the sequence
//! numbers its receiver NACKs for the caller ([`StreamTx::poll_nack`]).

use std::collections::VecDeque;
use std::time::Instant;

use crate::format::PayloadParams;
use crate::packet::Vp8Patch;
use crate::rtp_::{Extension, ExtensionMap, ExtensionValues, Frequency, Pt, RtpHeader, SeqNo};

use super::StreamTx;

/// Most NACKed sequence numbers kept for the caller; older ones are forgotten first.
const MAX_PENDING_NACKS: usize = 256;

/// One RTP packet to send at once.
#[derive(Debug, Clone, Copy)]
pub struct DirectRtp<'a> {
    /// Payload type (the main one; a resend becomes RTX by itself).
    pub pt: Pt,
    /// Extended sequence number (its upper bits are the SRTP rollover counter).
    pub seq_no: SeqNo,
    /// RTP timestamp.
    pub time: u32,
    /// The wallclock time matching `time`, for sender reports.
    pub wallclock: Instant,
    /// Marker bit.
    pub marker: bool,
    /// Header extension values to write (str0m sets the transport ones).
    pub ext_vals: &'a ExtensionValues,
    /// The payload.
    pub payload: &'a [u8],
    /// A VP8 payload descriptor rewrite applied while copying the payload.
    pub vp8_patch: Option<&'a Vp8Patch>,
}

/// What a stream sending at once keeps.
#[derive(Debug, Default)]
pub(crate) struct DirectState {
    /// Packets were sent at once on it.
    active: bool,
    /// Sequence numbers its receiver NACKed, not yet taken by the caller.
    nacked: VecDeque<SeqNo>,
    /// Index of its media in the session's list, checked by mid before each use.
    media_index: Option<usize>,
}

impl DirectState {
    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    pub(crate) fn note_nacks(&mut self, seq_nos: impl Iterator<Item = SeqNo>) {
        for seq_no in seq_nos {
            if self.nacked.len() == MAX_PENDING_NACKS {
                self.nacked.pop_front();
            }
            self.nacked.push_back(seq_no);
        }
    }
}

impl StreamTx {
    /// The next sequence number the receiver NACKed since the last call, for a stream sent
    /// at once (edge-sfu). The caller resends it with [`crate::Rtc::send_rtp_direct`].
    pub fn poll_nack(&mut self) -> Option<SeqNo> {
        self.direct.nacked.pop_front()
    }

    /// (edge-sfu) Notes that a packet of this stream was sent by someone else: the in-kernel
    /// fan-out of an SFU sends one copy of a plain RTP packet to many receivers, each with this
    /// stream's SSRC. The stream keeps the bookkeeping it does for a packet sent at once, so that
    /// the NACKs of its receiver reach [`StreamTx::poll_nack`] with the right rollover, and its
    /// sender reports and statistics count the packet. `clock_rate` is the payload's RTP clock.
    pub fn note_sent_elsewhere(
        &mut self,
        now: Instant,
        seq_no: SeqNo,
        (time, wallclock): (u32, Instant),
        clock_rate: Frequency,
        payload_len: usize,
    ) {
        self.direct.active = true;
        self.last_sent_seq_no = seq_no;
        self.rtp_and_wallclock = Some((time, wallclock));
        self.clock_rate = Some(clock_rate);
        self.stats.update_packet_counts(payload_len as u64, false);
        self.last_used = now;
    }

    /// The index of its media in the session's list, as remembered by the last direct send (the
    /// session checks it still names this stream's mid).
    pub(crate) fn direct_media_index(&self) -> Option<usize> {
        self.direct.media_index
    }

    pub(crate) fn set_direct_media_index(&mut self, index: usize) {
        self.direct.media_index = Some(index);
    }

    /// The header of one packet sent at once, with the stream's bookkeeping done as if it had
    /// gone through the send queue: statistics, the timing sender reports use, and (for a
    /// resend, `resend_of` set) the RTX sequence. Returns the header and the SRTP index.
    /// `None` when the payload type is not negotiated, or a resend has no RTX.
    pub(crate) fn direct_header(
        &mut self,
        now: Instant,
        rtp: &DirectRtp<'_>,
        resend_of: Option<SeqNo>,
        exts: &ExtensionMap,
        twcc: Option<&mut u64>,
        params: &[PayloadParams],
    ) -> Option<(RtpHeader, SeqNo)> {
        let mid = self.midrid.mid();
        let rid = self.midrid.rid();
        let param = params.iter().find(|p| p.pt() == rtp.pt)?;
        let mut header = RtpHeader {
            sequence_number: *rtp.seq_no as u16,
            marker: rtp.marker,
            payload_type: rtp.pt,
            timestamp: rtp.time,
            ssrc: self.ssrc,
            ext_vals: rtp.ext_vals.clone(),
            ..Default::default()
        };
        let len = rtp.payload.len() as u64;
        let srtp_index = match resend_of {
            None => {
                if !self.remote_acked_ssrc {
                    header.ext_vals.mid = Some(mid);
                    header.ext_vals.rid = rid;
                }
                header.ext_vals.rid_repair = None;
                self.direct.active = true;
                self.last_sent_seq_no = rtp.seq_no;
                self.rtp_and_wallclock = Some((rtp.time, rtp.wallclock));
                self.clock_rate = Some(param.spec().rtp_clock_rate());
                if param.resend().is_some() {
                    self.pt_for_padding = Some(rtp.pt);
                }
                // Not `bytes_transmitted`: that history feeds the resend ratio cap of the queued
                // path, which direct resends do not go through (the caller limits its own).
                self.stats.update_packet_counts(len, false);
                rtp.seq_no
            }
            Some(_) => {
                header.payload_type = param.resend()?;
                header.ssrc = self.rtx?;
                let seq_no = self.seq_no_rtx.inc();
                header.sequence_number = *seq_no as u16;
                header.ext_vals.rid = None;
                header.ext_vals.rid_repair = rid;
                if !self.remote_acked_rtx_ssrc {
                    header.ext_vals.mid = Some(mid);
                }
                self.stats.update_packet_counts(len, true);
                seq_no
            }
        };
        // These must match `Extension::is_supported()`, as in the queued path.
        if exts.id_of(Extension::AbsoluteSendTime).is_some() {
            header.ext_vals.abs_send_time = Some(now);
        }
        if let Some(twcc) = twcc {
            header.ext_vals.transport_cc = Some(*twcc as u16);
            *twcc += 1;
        }
        self.last_used = now;
        Some((header, srtp_index))
    }
}
