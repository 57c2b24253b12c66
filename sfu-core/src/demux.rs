//! Finds the peer a datagram belongs to in O(1): by ICE ufrag for STUN, by 5-tuple for the rest.
//!
//! A client's first datagrams are STUN binding requests whose USERNAME starts with the ufrag we
//! gave that peer; when one arrives, its 5-tuple is learned, and the DTLS/SRTP that follows on that
//! 5-tuple is routed by a single hash lookup. Nobody is ever asked "is this yours?" in turn.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::protocol::PeerId;

/// A (remote, local) address pair: UDP's 5-tuple minus the protocol.
pub type FiveTuple = (SocketAddr, SocketAddr);

/// The routing tables of one core.
#[derive(Debug, Default)]
pub struct Demux {
    by_ufrag: HashMap<Box<[u8]>, PeerId>,
    by_tuple: HashMap<FiveTuple, PeerId>,
    tuples_of: HashMap<PeerId, Vec<FiveTuple>>,
}

impl Demux {
    /// Registers the ufrag a peer was given in its SDP.
    pub fn add_peer(&mut self, peer: PeerId, ufrag: &str) {
        self.by_ufrag.insert(ufrag.as_bytes().into(), peer);
        self.tuples_of.entry(peer).or_default();
    }

    /// Forgets a peer: its ufrag and every 5-tuple it was reached on.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.by_ufrag.retain(|_, p| *p != peer);
        for tuple in self.tuples_of.remove(&peer).unwrap_or_default() {
            if self.by_tuple.get(&tuple) == Some(&peer) {
                self.by_tuple.remove(&tuple);
            }
        }
    }

    /// The peer a STUN request with this local ufrag is for.
    pub fn by_ufrag(&self, ufrag: &[u8]) -> Option<PeerId> {
        self.by_ufrag.get(ufrag).copied()
    }

    /// The peer reached on this 5-tuple.
    pub fn by_tuple(&self, tuple: &FiveTuple) -> Option<PeerId> {
        self.by_tuple.get(tuple).copied()
    }

    /// Learns that `peer` is reached on `tuple`. At most `max_paths` tuples are kept per peer; the
    /// oldest makes room. A tuple that belonged to another peer moves (a client restarted ICE from
    /// the same port).
    pub fn learn(&mut self, peer: PeerId, tuple: FiveTuple, max_paths: usize) {
        if self.by_tuple.get(&tuple) == Some(&peer) {
            return;
        }
        if let Some(previous) = self.by_tuple.insert(tuple, peer) {
            if let Some(list) = self.tuples_of.get_mut(&previous) {
                list.retain(|t| *t != tuple);
            }
        }
        let list = self.tuples_of.entry(peer).or_default();
        list.push(tuple);
        if list.len() > max_paths.max(1) {
            let oldest = list.remove(0);
            if self.by_tuple.get(&oldest) == Some(&peer) {
                self.by_tuple.remove(&oldest);
            }
        }
    }

    /// Number of learned 5-tuples (for tests and stats).
    pub fn tuple_count(&self) -> usize {
        self.by_tuple.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn routes_by_ufrag_then_by_learned_tuple() {
        let mut d = Demux::default();
        d.add_peer(1, "aaaa");
        d.add_peer(2, "bbbb");
        assert_eq!(d.by_ufrag(b"bbbb"), Some(2));
        assert_eq!(d.by_ufrag(b"cccc"), None);
        let t = (addr(5000), addr(9000));
        assert_eq!(d.by_tuple(&t), None);
        d.learn(2, t, 8);
        assert_eq!(d.by_tuple(&t), Some(2));
    }

    #[test]
    fn removing_a_peer_forgets_everything_it_owned_only() {
        let mut d = Demux::default();
        d.add_peer(1, "aaaa");
        d.add_peer(2, "bbbb");
        d.learn(1, (addr(1), addr(9000)), 8);
        d.learn(2, (addr(2), addr(9000)), 8);
        d.remove_peer(1);
        assert_eq!(d.by_ufrag(b"aaaa"), None);
        assert_eq!(d.by_tuple(&(addr(1), addr(9000))), None);
        assert_eq!(d.by_tuple(&(addr(2), addr(9000))), Some(2));
        assert_eq!(d.tuple_count(), 1);
    }

    #[test]
    fn paths_per_peer_are_bounded_and_tuples_can_move() {
        let mut d = Demux::default();
        d.add_peer(1, "aaaa");
        for port in 0..20 {
            d.learn(1, (addr(port), addr(9000)), 4);
        }
        assert_eq!(d.tuple_count(), 4);
        assert_eq!(d.by_tuple(&(addr(19), addr(9000))), Some(1));
        assert_eq!(d.by_tuple(&(addr(0), addr(9000))), None);
        d.add_peer(2, "bbbb");
        d.learn(2, (addr(19), addr(9000)), 4);
        assert_eq!(d.by_tuple(&(addr(19), addr(9000))), Some(2));
        d.remove_peer(1);
        assert_eq!(d.by_tuple(&(addr(19), addr(9000))), Some(2));
    }
}
