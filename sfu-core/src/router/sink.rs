//! Where a track's packets go. The router keeps, per track, the list of its sinks and hands each
//! packet to each of them through [`SinkSet`]; what a sink does with it is its owner's business.
//!
//! A new kind of sink (a recorder, a trunk to another node) is a new [`SinkRef`] variant, an
//! owner that delivers to it, and one arm in the [`SinkSet`] the core implements: the router's
//! fan-out does not change.

use crate::protocol::PeerId;

use super::packet::RoutedPacket;

/// One sink of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkRef {
    /// A member's subscription: one m-line of its WebRTC session, sealed with its keys.
    Subscription {
        /// The receiving member.
        subscriber: PeerId,
        /// The subscription's slot in that member's table.
        slot: usize,
    },
    /// A plain RTP output: its receivers (or the one copy handed to the kernel).
    PlainOutput(u64),
    /// A room's recording (its number in [`Recordings`](crate::recording::Recordings)).
    Recorder(u64),
    /// A trunk to another node: the layers that node takes, each once.
    Trunk(crate::trunk::TrunkId),
}

impl SinkRef {
    /// Whether this sink takes a simulcast track's top layer whatever anybody else wants
    /// (recorders and relays want the best picture; subscriptions choose their own layer, and
    /// a trunk takes the layers its far node's subscriptions choose).
    pub fn takes_top_layer(&self) -> bool {
        matches!(self, SinkRef::PlainOutput(_) | SinkRef::Recorder(_))
    }
}

/// What became of a packet handed to a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Sent, or deliberately skipped (another layer, a paused leg).
    Done,
    /// The sink no longer exists: the router forgets it.
    Gone,
}

/// The owners of sinks, as the router sees them.
pub trait SinkSet {
    /// Hands `packet` to `sink`.
    fn deliver(&mut self, sink: SinkRef, packet: &RoutedPacket) -> Delivery;
}
