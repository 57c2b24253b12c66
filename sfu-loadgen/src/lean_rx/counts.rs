//! What the lean receive path counted on one receiver's sockets besides generator packets.

use serde::Serialize;

/// Counters of the lean receive path (one receiver, or summed over a run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LeanCounts {
    /// Datagrams read.
    pub datagrams: u64,
    /// RTP packets authenticated (SRTP) or taken (plain RTP), once per SSRC and index.
    pub media: u64,
    /// RTP packets whose SSRC and extended sequence number arrived before (not counted again).
    pub duplicates: u64,
    /// RTP packets too far behind their stream's newest to tell whether they are duplicates.
    pub too_old: u64,
    /// SRTP packets that failed authentication.
    pub auth_failed: u64,
    /// RTP packets with an impossible padding count, and other datagrams that are neither
    /// RTP, RTCP, STUN nor DTLS.
    pub malformed: u64,
    /// Media packets with nothing but padding (the server's bandwidth probes).
    pub padding_only: u64,
    /// Other media without a generator stamp (retransmissions, foreign payloads).
    pub unstamped: u64,
    /// STUN, DTLS and RTCP datagrams passed to the session.
    pub to_session: u64,
    /// Of those, dropped because the session's queue was full.
    pub session_dropped: u64,
    /// Of those, arriving after the session had ended (the server's goodbyes while it leaves).
    pub session_gone: u64,
    /// Datagrams the kernel dropped because a socket's receive buffer was full (`SO_RXQ_OVFL`):
    /// loss caused by the generator, not the server.
    pub socket_drops: u64,
    /// Sequence numbers missing between the lowest and highest seen, over all streams and the
    /// whole connection (not only the window).
    pub seq_missing: u64,
}

impl LeanCounts {
    /// Adds `other` to these.
    pub fn add(&mut self, other: &LeanCounts) {
        self.datagrams += other.datagrams;
        self.media += other.media;
        self.duplicates += other.duplicates;
        self.too_old += other.too_old;
        self.auth_failed += other.auth_failed;
        self.malformed += other.malformed;
        self.padding_only += other.padding_only;
        self.unstamped += other.unstamped;
        self.to_session += other.to_session;
        self.session_dropped += other.session_dropped;
        self.session_gone += other.session_gone;
        self.socket_drops += other.socket_drops;
        self.seq_missing += other.seq_missing;
    }
}
