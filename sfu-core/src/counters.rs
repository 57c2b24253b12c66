//! Counters the core keeps: what it forwarded, and every datagram or message it refused, by reason.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::latency::LatencyHistogram;

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
    /// A chat line or relayed data channel message not written to a member's data channel:
    /// what the channel holds unsent or unacknowledged is at its bound (the member does not read).
    ChannelBufferFull,
    /// A data channel message over the size a member may send; dropped.
    ChannelTooLarge,
    /// A data channel message past the member's message or byte rate; dropped.
    ChannelRateLimited,
    /// A data channel beyond the number a member may open; closed.
    TooManyChannels,
}

impl DropReason {
    /// Every reason, in a fixed order (the order of [`Counters::drops`]).
    pub const ALL: [DropReason; 28] = [
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
        DropReason::ChannelTooLarge,
        DropReason::ChannelRateLimited,
        DropReason::TooManyChannels,
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
            DropReason::ChannelTooLarge => "channel_too_large",
            DropReason::ChannelRateLimited => "channel_rate_limited",
            DropReason::TooManyChannels => "too_many_channels",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Why the core refused a `join` (the signaling layer counts its own refusals: tokens, rates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinRefusalReason {
    /// A second `join` for a member already in a room.
    AlreadyJoined,
    /// A protocol version this server does not speak.
    UnsupportedVersion,
    /// A room or member name that is empty or too long.
    InvalidJoin,
    /// The room holds as many members as it may.
    RoomFull,
}

impl JoinRefusalReason {
    /// Every reason, in a fixed order.
    pub const ALL: [JoinRefusalReason; 4] = [
        JoinRefusalReason::AlreadyJoined,
        JoinRefusalReason::UnsupportedVersion,
        JoinRefusalReason::InvalidJoin,
        JoinRefusalReason::RoomFull,
    ];

    /// The reason's name in stats output.
    pub const fn as_str(self) -> &'static str {
        match self {
            JoinRefusalReason::AlreadyJoined => "already_joined",
            JoinRefusalReason::UnsupportedVersion => "unsupported_version",
            JoinRefusalReason::InvalidJoin => "invalid_join",
            JoinRefusalReason::RoomFull => "room_full",
        }
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
    /// Members that joined.
    pub joins: u64,
    /// From a member's join to the first RTP packet on its session, received from it or
    /// forwarded to it (whichever comes first): how long until a participant is in the call.
    pub join_to_media: LatencyHistogram,
    drops: [u64; DropReason::ALL.len()],
    join_refusals: [u64; JoinRefusalReason::ALL.len()],
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

    /// Counts one refused join.
    pub fn refuse_join(&mut self, reason: JoinRefusalReason) {
        self.join_refusals[reason as usize] += 1;
    }

    /// How many joins were refused for `reason`.
    pub fn join_refusals(&self, reason: JoinRefusalReason) -> u64 {
        self.join_refusals[reason as usize]
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
        self.joins += other.joins;
        self.join_to_media.merge(&other.join_to_media);
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
        for (a, b) in self
            .join_refusals
            .iter_mut()
            .zip(other.join_refusals.iter())
        {
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
    /// Published tracks (members' and plain RTP ingests').
    pub tracks: usize,
    /// Subscriber legs: one per track a member receives.
    pub legs: usize,
    /// RTP packets written to subscriber legs.
    pub forwarded_packets: u64,
    /// RTP packets sent again because a subscriber NACKed them (RTX).
    pub resent_packets: u64,
    /// RTP payload bytes written to subscriber legs.
    pub forwarded_bytes: u64,
    /// RTP packets received from publishers.
    pub received_packets: u64,
    /// Refusals by reason name (only reasons seen at least once).
    pub drops: BTreeMap<&'static str, u64>,
    /// Members that joined.
    pub joins: u64,
    /// Joins the core refused, by reason name (only reasons seen at least once).
    pub join_refusals: BTreeMap<&'static str, u64>,
    /// From join to first media, per member (see [`Counters::join_to_media`]); `/metrics` shows
    /// it as a histogram, `/api/stats` leaves it out.
    #[serde(skip)]
    pub join_to_media: LatencyHistogram,
    /// Open ICE-TCP connections (filled in by the I/O shell, which holds them).
    pub ice_tcp_connections: usize,
    /// ICE-TCP connections accepted since start (filled in by the I/O shell).
    pub ice_tcp_accepted: u64,
    /// Pending member deadlines (session and liveness timers): none once every member left.
    pub timers: usize,
    /// Plain RTP ingests.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingests: Vec<crate::plain::IngestInfo>,
    /// Plain RTP outputs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<crate::plain::OutputInfo>,
    /// Trunks to other nodes, with what each carried.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trunks: Vec<crate::trunk::TrunkInfo>,
}

impl StatsSnapshot {
    /// Builds a snapshot from counters and sizes.
    pub fn new(rooms: usize, peers: usize, tracks: usize, counters: &Counters) -> Self {
        let drops = DropReason::ALL
            .iter()
            .filter(|r| counters.drops(**r) > 0)
            .map(|r| (r.as_str(), counters.drops(*r)))
            .collect();
        let join_refusals = JoinRefusalReason::ALL
            .iter()
            .filter(|r| counters.join_refusals(**r) > 0)
            .map(|r| (r.as_str(), counters.join_refusals(*r)))
            .collect();
        StatsSnapshot {
            rooms,
            peers,
            tracks,
            legs: 0,
            forwarded_packets: counters.forwarded_packets,
            resent_packets: counters.resent_packets,
            forwarded_bytes: counters.forwarded_bytes,
            received_packets: counters.received_packets,
            drops,
            joins: counters.joins,
            join_refusals,
            join_to_media: counters.join_to_media.clone(),
            ice_tcp_connections: 0,
            ice_tcp_accepted: 0,
            timers: 0,
            ingests: Vec::new(),
            outputs: Vec::new(),
            trunks: Vec::new(),
        }
    }

    /// Adds another snapshot (another worker) to this one.
    pub fn merge(&mut self, other: &StatsSnapshot) {
        self.rooms += other.rooms;
        self.peers += other.peers;
        self.tracks += other.tracks;
        self.legs += other.legs;
        self.forwarded_packets += other.forwarded_packets;
        self.resent_packets += other.resent_packets;
        self.forwarded_bytes += other.forwarded_bytes;
        self.received_packets += other.received_packets;
        self.ice_tcp_connections += other.ice_tcp_connections;
        self.ice_tcp_accepted += other.ice_tcp_accepted;
        self.timers += other.timers;
        self.joins += other.joins;
        self.join_to_media.merge(&other.join_to_media);
        for (reason, n) in &other.drops {
            *self.drops.entry(reason).or_default() += n;
        }
        for (reason, n) in &other.join_refusals {
            *self.join_refusals.entry(reason).or_default() += n;
        }
        self.ingests.extend(other.ingests.iter().cloned());
        self.outputs.extend(other.outputs.iter().cloned());
        self.trunks.extend(other.trunks.iter().cloned());
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
        let s = StatsSnapshot::new(1, 2, 0, &c);
        assert_eq!(s.drops.get("malformed_rtp"), Some(&2));
        assert_eq!(s.drops.get("oversized"), None);
    }
}
