//! What one member holds in the core's parts, read-only: the check, for tests and the `core` fuzz
//! target, that a member who left holds nothing any more.

use crate::protocol::PeerId;
use crate::router::SinkRef;

use super::{Core, Timer};

/// The entries one member holds in each part of a [`Core`]; all zero once it left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Whether it is a member.
    pub member: bool,
    /// Tracks it publishes in the router.
    pub tracks: usize,
    /// Its subscriptions attached as sinks to tracks of others.
    pub sinks: usize,
    /// Its ICE ufrags and learned 5-tuples in the demultiplexer.
    pub demux_entries: usize,
    /// Its pending timers (session and liveness).
    pub timers: usize,
}

impl Footprint {
    /// Whether it holds nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == Footprint::default()
    }
}

impl Core {
    /// What member `peer` holds in the core's parts now (see [`Footprint`]).
    pub fn footprint(&self, peer: PeerId) -> Footprint {
        let sinks = self
            .router
            .tracks()
            .flat_map(|(_, track)| track.sinks())
            .filter(
                |s| matches!(s, SinkRef::Subscription { subscriber, .. } if *subscriber == peer),
            )
            .count();
        Footprint {
            member: self.members.contains(peer),
            tracks: self.router.keys_of(peer).len(),
            sinks,
            demux_entries: self.demux.entries_of(peer),
            timers: [Timer::Session, Timer::Liveness]
                .into_iter()
                .filter(|t| self.timers.is_set(&(peer, *t)))
                .count(),
        }
    }
}
