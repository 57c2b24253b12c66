//! How a member's signaling reaches it, which decides what the core may send it.

/// The channel a member's signaling travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalingChannel {
    /// A WebSocket speaking the protocol (`docs/protocol.md`): the member hears of the room's
    /// events, and gets offers when its subscriptions change.
    WebSocket,
    /// One HTTP exchange, a WHIP publisher (RFC 9725) or a WHEP viewer: its offer, our answer
    /// in the response, then nothing until it ends the session with `DELETE` or goes silent.
    /// Nothing can reach it afterwards, so it is never sent an offer or a message, and gets no
    /// subscriptions beyond the m-lines its own offer set up (a viewer's legs).
    Http,
}

impl SignalingChannel {
    /// Whether the member can be sent messages (room events, errors) and offers after its join.
    pub fn takes_messages(self) -> bool {
        self == SignalingChannel::WebSocket
    }
}
