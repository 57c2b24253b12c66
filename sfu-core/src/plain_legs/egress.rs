//! How plain RTP copies are made: numbered, built in pooled buffers, queued for the shell.

use std::net::SocketAddr;

use str0m::net::Protocol;

use crate::counters::DropReason;
use crate::outbox::{Egress, Transmit};
use crate::rewrite::{Rewritten, SeqTsRewriter};
use crate::router::RoutedPacket;
use crate::wire::RtpRepr;

/// Numbers `packet` with `rewriter` and queues it through `egress` to `destination` with `ssrc`
/// and `pt`; false when it is not sent (a late packet of an earlier source).
pub fn send_copy(
    egress: &mut Egress,
    rewriter: &mut SeqTsRewriter,
    packet: &RoutedPacket,
    ssrc: u32,
    pt: u8,
    destination: SocketAddr,
) -> bool {
    let Some(numbered) = packet.arrival.renumber(rewriter) else {
        egress.counters.drop(DropReason::StaleSource);
        return false;
    };
    transmit_copy(egress, numbered, packet, (ssrc, pt), destination)
}

/// Queues `packet`, already `numbered`, through `egress` to `destination` as plain RTP with
/// `(ssrc, pt)`; false when its header cannot be written.
pub fn transmit_copy(
    egress: &mut Egress,
    numbered: Rewritten,
    packet: &RoutedPacket,
    (ssrc, pt): (u32, u8),
    destination: SocketAddr,
) -> bool {
    let rtp = &packet.arrival;
    let repr = RtpRepr {
        payload_type: pt,
        // The low 16 bits are the wire's sequence number.
        sequence_number: numbered.seq as u16,
        timestamp: numbered.timestamp,
        ssrc,
        marker: rtp.marker,
    };
    let mut buf = egress.outbox.buffer(repr.header_len() + rtp.payload.len());
    buf.resize(repr.header_len(), 0);
    if repr.emit(&mut buf).is_err() {
        egress.outbox.recycle(buf);
        return false;
    }
    buf.extend_from_slice(rtp.payload);
    egress.counters.forwarded_packets += 1;
    egress.counters.forwarded_bytes += rtp.payload.len() as u64;
    egress.outbox.transmit(Transmit {
        proto: Protocol::Udp,
        source: local_for(egress.candidates, destination),
        destination,
        contents: buf,
    });
    true
}

/// The announced address a datagram to `destination` leaves from: loopback for loopback, else the
/// first other one.
pub fn local_for(candidates: &[SocketAddr], destination: SocketAddr) -> SocketAddr {
    let loopback = destination.ip().is_loopback();
    candidates
        .iter()
        .find(|c| c.ip().is_loopback() == loopback)
        .or(candidates.first())
        .copied()
        .unwrap_or(destination)
}
