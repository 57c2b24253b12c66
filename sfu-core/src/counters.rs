//! Counters the core keeps: what it forwarded, and every datagram or message it refused, by reason.

use serde::Serialize;

/// Why the core refused a datagram or a signaling message. Every refusal is counted under one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// First byte matches no protocol on the media port.
    UnknownProtocol,
    /// STUN with a bad header or length.
    MalformedStun,
    /// STUN whose USERNAME names no peer of this worker.
    UnknownUfrag,
    /// RTP with a bad version or lengths.
    MalformedRtp,
    /// RTCP too short to be RTCP.
    MalformedRtcp,
    /// DTLS/RTP/RTCP from a 5-tuple no peer has used for STUN.
    UnknownSource,
    /// Larger than any datagram the media path uses.
    Oversized,
    /// str0m refused the datagram (bad SRTP authentication, DTLS garbage, ...).
    Rejected,
    /// A forwarded packet's codec has no payload type on the subscriber's leg.
    NoMatchingCodec,
    /// A late packet from an earlier source of a leg, whose number is already taken.
    StaleSource,
    /// A data-channel message that is not a chat line of the protocol.
    BadChannelMessage,
    /// An SDP offer or answer that could not be applied.
    BadSdp,
    /// An ICE-TCP connection sent an RFC 4571 frame of length 0 or above the datagram limit; the
    /// connection was closed.
    TcpBadFrame,
    /// An ICE-TCP connection's first frame was not STUN; the connection was closed.
    TcpNotStun,
    /// An ICE-TCP connection stalled mid-frame (reading or writing); it was closed.
    TcpStalled,
    /// An ICE-TCP connection made no valid ICE check in time; it was closed.
    TcpNotAdmitted,
    /// A frame for an ICE-TCP client that does not read fast enough was dropped.
    TcpOverflow,
    /// An ICE-TCP connection beyond the worker's limit was refused.
    TcpTooMany,
    /// Something the member's token does not allow: an offer that publishes without the publish
    /// permission, a chat line (WebSocket or data channel) without the chat permission.
    Forbidden,
    /// An RTP packet whose RID is none of the simulcast layers its m-line negotiated.
    UnknownLayer,
    /// A NACKed packet not resent: the subscriber asked for more resends than its credit
    /// allows.
    ResendLimited,
    /// A datagram dropped by the I/O shell because its send queue was full: the socket did not
    /// keep up with what the worker forwards.
    SendQueueFull,
    /// A datagram the kernel refused to send (an unreachable destination, say).
    SendFailed,
    /// A member removed because handling it panicked (a bug, here or in a dependency): the
    /// worker and the other members went on.
    PeerPanicked,
    /// A chat line not written to a member's data channel: what the channel holds unsent or
    /// unacknowledged is at its bound (the member does not read).
    ChannelBufferFull,
}

impl DropReason {
    /// Every reason, in a fixed order (the order of [`Counters::drops`]).
    pub const ALL: [DropReason; 25] = [
        DropReason::UnknownProtocol,
        DropReason::MalformedStun,
        DropReason::UnknownUfrag,
        DropReason::MalformedRtp,
        DropReason::MalformedRtcp,
        DropReason::UnknownSource,
        DropReason::Oversized,
        DropReason::Rejected,
        DropReason::NoMatchingCodec,
        DropReason::StaleSource,
        DropReason::BadChannelMessage,
        DropReason::BadSdp,
        DropReason::TcpBadFrame,
        DropReason::TcpNotStun,
        DropReason::TcpStalled,
        DropReason::TcpNotAdmitted,
        DropReason::TcpOverflow,
        DropReason::TcpTooMany,
        DropReason::Forbidden,
        DropReason::UnknownLayer,
        DropReason::ResendLimited,
        DropReason::SendQueueFull,
        DropReason::SendFailed,
        DropReason::PeerPanicked,
        DropReason::ChannelBufferFull,
    ];

    /// The reason's name in stats output.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::UnknownProtocol => "unknown_protocol",
            DropReason::MalformedStun => "malformed_stun",
            DropReason::UnknownUfrag => "unknown_ufrag",
            DropReason::MalformedRtp => "malformed_rtp",
            DropReason::MalformedRtcp => "malformed_rtcp",
            DropReason::UnknownSource => "unknown_source",
            DropReason::Oversized => "oversized",
            DropReason::Rejected => "rejected",
            DropReason::NoMatchingCodec => "no_matching_codec",
            DropReason::StaleSource => "stale_source",
            DropReason::BadChannelMessage => "bad_channel_message",
            DropReason::BadSdp => "bad_sdp",
            DropReason::TcpBadFrame => "tcp_bad_frame",
            DropReason::TcpNotStun => "tcp_not_stun",
            DropReason::TcpStalled => "tcp_stalled",
            DropReason::TcpNotAdmitted => "tcp_not_admitted",
            DropReason::TcpOverflow => "tcp_overflow",
            DropReason::TcpTooMany => "tcp_too_many",
            DropReason::Forbidden => "forbidden",
            DropReason::UnknownLayer => "unknown_layer",
            DropReason::ResendLimited => "resend_limited",
            DropReason::SendQueueFull => "send_queue_full",
            DropReason::SendFailed => "send_failed",
            DropReason::PeerPanicked => "peer_panicked",
            DropReason::ChannelBufferFull => "channel_buffer_full",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Monotonic counters of one core.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// RTP packets written to subscriber legs.
    pub forwarded_packets: u64,
    /// RTP packets sent again because a subscriber NACKed them (RTX).
    pub resent_packets: u64,
    /// RTP payload bytes written to subscriber legs.
    pub forwarded_bytes: u64,
    /// RTP packets received from publishers.
    pub received_packets: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl Counters {
    /// Counts one refusal.
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason.index()] += 1;
    }

    /// How many refusals for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Total refusals of every reason.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another core's counters to these (for server-wide totals).
    pub fn merge(&mut self, other: &Counters) {
        self.forwarded_packets += other.forwarded_packets;
        self.resent_packets += other.resent_packets;
        self.forwarded_bytes += other.forwarded_bytes;
        self.received_packets += other.received_packets;
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
    }
}

/// A point-in-time summary of a core, for `/api/stats`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Peers (joined participants).
    pub peers: usize,
    /// RTP packets written to subscriber legs.
    pub forwarded_packets: u64,
    /// RTP packets sent again because a subscriber NACKed them (RTX).
    pub resent_packets: u64,
    /// RTP payload bytes written to subscriber legs.
    pub forwarded_bytes: u64,
    /// RTP packets received from publishers.
    pub received_packets: u64,
    /// Refusals by reason name (only reasons seen at least once).
    pub drops: std::collections::BTreeMap<&'static str, u64>,
    /// Open ICE-TCP connections (filled in by the I/O shell, which holds them).
    pub ice_tcp_connections: usize,
    /// Plain RTP ingests.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingests: Vec<crate::plain::IngestInfo>,
    /// Plain RTP outputs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<crate::plain::OutputInfo>,
}

impl StatsSnapshot {
    /// Builds a snapshot from counters and sizes.
    pub fn new(rooms: usize, peers: usize, counters: &Counters) -> Self {
        let drops = DropReason::ALL
            .iter()
            .filter(|r| counters.drops(**r) > 0)
            .map(|r| (r.as_str(), counters.drops(*r)))
            .collect();
        StatsSnapshot {
            rooms,
            peers,
            forwarded_packets: counters.forwarded_packets,
            resent_packets: counters.resent_packets,
            forwarded_bytes: counters.forwarded_bytes,
            received_packets: counters.received_packets,
            drops,
            ice_tcp_connections: 0,
            ingests: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Adds another snapshot (another worker) to this one.
    pub fn merge(&mut self, other: &StatsSnapshot) {
        self.rooms += other.rooms;
        self.peers += other.peers;
        self.forwarded_packets += other.forwarded_packets;
        self.resent_packets += other.resent_packets;
        self.forwarded_bytes += other.forwarded_bytes;
        self.received_packets += other.received_packets;
        self.ice_tcp_connections += other.ice_tcp_connections;
        for (reason, n) in &other.drops {
            *self.drops.entry(reason).or_default() += n;
        }
        self.ingests.extend(other.ingests.iter().cloned());
        self.outputs.extend(other.outputs.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_own_slot() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut c = Counters::default();
        c.drop(DropReason::MalformedRtp);
        c.drop(DropReason::MalformedRtp);
        c.drop(DropReason::BadSdp);
        assert_eq!(c.drops(DropReason::MalformedRtp), 2);
        assert_eq!(c.total_drops(), 3);
        let s = StatsSnapshot::new(1, 2, &c);
        assert_eq!(s.drops.get("malformed_rtp"), Some(&2));
        assert_eq!(s.drops.get("oversized"), None);
    }
}
