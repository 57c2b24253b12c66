//! What the core has for the shell: datagrams to send, signaling messages to deliver, members
//! and plain RTP outputs that are gone. Datagram buffers are pooled: the shell gives each back
//! once sent ([`Outbox::recycle`]), so a steady flow allocates none.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;

use str0m::net::Protocol;

use crate::counters::Counters;
use crate::events::RoomEvent;
use crate::pool::BufferPool;
use crate::protocol::{PeerId, ServerMessage};

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    /// UDP on the media socket, or TCP: a frame on the ICE-TCP connection of this (source,
    /// destination) pair.
    pub proto: Protocol,
    /// Local address to send from (one of the announced candidates).
    pub source: SocketAddr,
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes: sealed by str0m, or built by the core in a pooled buffer. Give the buffer back
    /// with [`Core::recycle`](crate::Core::recycle) once sent.
    pub contents: Vec<u8>,
}

/// The core's queues toward the shell.
#[derive(Debug)]
pub struct Outbox {
    transmits: VecDeque<Transmit>,
    signals: VecDeque<(PeerId, ServerMessage)>,
    closed_peers: VecDeque<PeerId>,
    closed_outputs: VecDeque<u64>,
    /// Members whose signaling channel takes no messages (WHIP publishers, WHEP viewers): nothing
    /// is queued for them, since no shell could deliver it.
    without_messages: HashSet<PeerId>,
    events: VecDeque<RoomEvent>,
    pool: BufferPool,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            transmits: VecDeque::with_capacity(256),
            signals: VecDeque::new(),
            closed_peers: VecDeque::new(),
            closed_outputs: VecDeque::new(),
            without_messages: HashSet::new(),
            events: VecDeque::new(),
            pool: BufferPool::default(),
        }
    }
}

impl Outbox {
    /// Queues a datagram.
    pub fn transmit(&mut self, t: Transmit) {
        self.transmits.push_back(t);
    }

    /// Queues a signaling message to `peer`, unless its channel takes none
    /// ([`Outbox::takes_no_messages`]).
    pub fn signal(&mut self, peer: PeerId, msg: ServerMessage) {
        if !self.without_messages.contains(&peer) {
            self.signals.push_back((peer, msg));
        }
    }

    /// Member `peer`'s signaling channel takes no messages (see
    /// [`SignalingChannel`](crate::membership::SignalingChannel)): from now until it is closed,
    /// nothing is queued for it.
    pub fn takes_no_messages(&mut self, peer: PeerId) {
        self.without_messages.insert(peer);
    }

    /// Tells the shell member `peer` is gone.
    pub fn peer_closed(&mut self, peer: PeerId) {
        self.without_messages.remove(&peer);
        self.closed_peers.push_back(peer);
    }

    /// Tells the shell plain RTP output `id` is gone.
    pub fn output_closed(&mut self, id: u64) {
        self.closed_outputs.push_back(id);
    }

    /// Queues a room event.
    pub fn event(&mut self, event: RoomEvent) {
        self.events.push_back(event);
    }

    /// An empty buffer for a datagram of about `capacity` bytes, from the pool.
    pub fn buffer(&mut self, capacity: usize) -> Vec<u8> {
        self.pool.take(capacity)
    }

    /// A buffer of `len` bytes to write a datagram into, from the pool.
    pub fn buffer_of_len(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self.pool.take(len);
        buf.resize(len, 0);
        buf
    }

    /// Takes back a sent datagram's buffer.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }

    /// The next datagram.
    pub fn next_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next signaling message.
    pub fn next_signal(&mut self) -> Option<(PeerId, ServerMessage)> {
        self.signals.pop_front()
    }

    /// The next member gone.
    pub fn next_closed_peer(&mut self) -> Option<PeerId> {
        self.closed_peers.pop_front()
    }

    /// The next room event.
    pub fn next_event(&mut self) -> Option<RoomEvent> {
        self.events.pop_front()
    }

    /// The next plain RTP output gone.
    pub fn next_closed_output(&mut self) -> Option<u64> {
        self.closed_outputs.pop_front()
    }
}

/// Where forwarded packets go: the outbox with its buffers, the counters, and the worker's
/// addresses (a copy built by the core leaves from one of them).
pub struct Egress<'a> {
    /// Datagrams and their buffers.
    pub outbox: &'a mut Outbox,
    /// Forwarded, resent and dropped packets.
    pub counters: &'a mut Counters,
    /// The worker's announced addresses.
    pub candidates: &'a [SocketAddr],
}
