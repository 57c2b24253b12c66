//! Finds the peer a datagram belongs to in O(1): by ICE ufrag for STUN, by 5-tuple for the rest.
//!
//! A client's first datagrams are STUN binding requests whose USERNAME starts with the ufrag we
//! gave that peer; when one arrives, its 5-tuple is learned, and the DTLS/SRTP that follows on that
//! 5-tuple is routed by a single hash lookup. Nobody is ever asked "is this yours?" in turn.
//! UDP and TCP (ICE-TCP) paths are told apart by their transport, since a TCP connection and a UDP
//! flow may share both addresses.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use str0m::net::Protocol;

use crate::protocol::PeerId;

/// A (remote, local) address pair: a 5-tuple minus the protocol.
pub type FiveTuple = (SocketAddr, SocketAddr);

/// A transport and a 5-tuple: one path a peer is reached on.
type Path = (Protocol, FiveTuple);

/// A path that became valid or stopped being valid: what an in-kernel guard in front of the
/// media port must let through (UDP), and which TCP connections carry a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowChange {
    /// Datagrams on this (remote, local) pair of this transport now belong to someone.
    Admitted(Protocol, FiveTuple),
    /// They no longer do.
    Revoked(Protocol, FiveTuple),
}

/// The routing tables of one core.
#[derive(Debug, Default)]
pub struct Demux {
    by_ufrag: HashMap<Box<[u8]>, PeerId>,
    by_tuple: HashMap<Path, PeerId>,
    tuples_of: HashMap<PeerId, Vec<Path>>,
    changes: VecDeque<FlowChange>,
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
        for path in self.tuples_of.remove(&peer).unwrap_or_default() {
            if self.by_tuple.get(&path) == Some(&peer) {
                self.by_tuple.remove(&path);
                self.changes.push_back(FlowChange::Revoked(path.0, path.1));
            }
        }
    }

    /// The peer a STUN request with this local ufrag is for.
    pub fn by_ufrag(&self, ufrag: &[u8]) -> Option<PeerId> {
        self.by_ufrag.get(ufrag).copied()
    }

    /// The peer reached on this 5-tuple of this transport.
    pub fn by_tuple(&self, proto: Protocol, tuple: &FiveTuple) -> Option<PeerId> {
        self.by_tuple.get(&(proto, *tuple)).copied()
    }

    /// Learns that `peer` is reached on `tuple` over `proto`. At most `max_paths` paths are kept
    /// per peer; the oldest makes room. A path that belonged to another peer moves (a client
    /// restarted ICE from the same port).
    pub fn learn(&mut self, peer: PeerId, proto: Protocol, tuple: FiveTuple, max_paths: usize) {
        let path = (proto, tuple);
        if self.by_tuple.get(&path) == Some(&peer) {
            return;
        }
        match self.by_tuple.insert(path, peer) {
            Some(previous) => {
                if let Some(list) = self.tuples_of.get_mut(&previous) {
                    list.retain(|t| *t != path);
                }
            }
            None => self.changes.push_back(FlowChange::Admitted(proto, tuple)),
        }
        let list = self.tuples_of.entry(peer).or_default();
        list.push(path);
        if list.len() > max_paths.max(1) {
            let oldest = list.remove(0);
            if self.by_tuple.get(&oldest) == Some(&peer) {
                self.by_tuple.remove(&oldest);
                self.changes
                    .push_back(FlowChange::Revoked(oldest.0, oldest.1));
            }
        }
    }

    /// Forgets a path that can no longer carry anything (its TCP connection closed). Reports no
    /// change: whoever closed it knows.
    pub fn forget(&mut self, proto: Protocol, tuple: FiveTuple) {
        let path = (proto, tuple);
        if let Some(peer) = self.by_tuple.remove(&path) {
            if let Some(list) = self.tuples_of.get_mut(&peer) {
                list.retain(|t| *t != path);
            }
        }
    }

    /// Records a flow that is valid outside the peer tables (a plain RTP ingest's source).
    pub fn note(&mut self, change: FlowChange) {
        self.changes.push_back(change);
    }

    /// The next change of the set of valid flows, oldest first.
    pub fn next_change(&mut self) -> Option<FlowChange> {
        self.changes.pop_front()
    }

    /// Number of entries `peer` holds: its ufrags, its learned 5-tuples, and its (possibly empty)
    /// list of them (for checks that a member who left holds none).
    pub fn entries_of(&self, peer: PeerId) -> usize {
        let ufrags = self.by_ufrag.values().filter(|p| **p == peer).count();
        let tuples = self.by_tuple.values().filter(|p| **p == peer).count();
        ufrags + tuples + usize::from(self.tuples_of.contains_key(&peer))
    }

    /// Number of learned 5-tuples (for tests and stats).
    pub fn tuple_count(&self) -> usize {
        self.by_tuple.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: Protocol = Protocol::Udp;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn ipv6_tuples_are_keys_of_their_own() {
        let mut d = Demux::default();
        d.add_peer(1, "aaaa");
        d.add_peer(2, "bbbb");
        let v6: SocketAddr = "[2001:db8::7]:5000".parse().unwrap();
        let local6: SocketAddr = "[2001:db8::1]:9000".parse().unwrap();
        let v4 = (addr(5000), addr(9000));
        d.learn(1, UDP, (v6, local6), 8);
        d.learn(2, UDP, v4, 8);
        assert_eq!(d.by_tuple(UDP, &(v6, local6)), Some(1));
        assert_eq!(d.by_tuple(UDP, &v4), Some(2));
        // Same ports, another address of the /64: another tuple.
        let neighbour: SocketAddr = "[2001:db8::8]:5000".parse().unwrap();
        assert_eq!(d.by_tuple(UDP, &(neighbour, local6)), None);
        assert_eq!(
            d.next_change(),
            Some(FlowChange::Admitted(UDP, (v6, local6)))
        );
    }

    #[test]
    fn routes_by_ufrag_then_by_learned_tuple() {
        let mut d = Demux::default();
        d.add_peer(1, "aaaa");
        d.add_peer(2, "bbbb");
        assert_eq!(d.by_ufrag(b"bbbb"), Some(2));
        assert_eq!(d.by_ufrag(b"cccc"), None);
        let t = (addr(5000), addr(9000));
        assert_eq!(d.by_tuple(UDP, &t), None);
        d.learn(2, UDP, t, 8);
        assert_eq!(d.by_tuple(UDP, &t), Some(2));
    }

    #[test]
    fn removing_a_peer_forgets_everything_it_owned_only() {
        let mut d = Demux::default();
        d.add_peer(1, "aaaa");
        d.add_peer(2, "bbbb");
        d.learn(1, UDP, (addr(1), addr(9000)), 8);
        d.learn(2, UDP, (addr(2), addr(9000)), 8);
        d.remove_peer(1);
        assert_eq!(d.by_ufrag(b"aaaa"), None);
        assert_eq!(d.by_tuple(UDP, &(addr(1), addr(9000))), None);
        assert_eq!(d.by_tuple(UDP, &(addr(2), addr(9000))), Some(2));
        assert_eq!(d.tuple_count(), 1);
    }

    #[test]
    fn every_learned_and_forgotten_tuple_is_reported_once() {
        let mut d = Demux::default();
        d.add_peer(1, "aaaa");
        let (a, b) = ((addr(1), addr(9000)), (addr(2), addr(9000)));
        d.learn(1, UDP, a, 1);
        d.learn(1, UDP, a, 1);
        d.learn(1, UDP, b, 1);
        d.remove_peer(1);
        let changes: Vec<_> = std::iter::from_fn(|| d.next_change()).collect();
        assert_eq!(
            changes,
            vec![
                FlowChange::Admitted(UDP, a),
                FlowChange::Admitted(UDP, b),
                FlowChange::Revoked(UDP, a),
                FlowChange::Revoked(UDP, b)
            ]
        );
    }

    #[test]
    fn paths_per_peer_are_bounded_and_tuples_can_move() {
        let mut d = Demux::default();
        d.add_peer(1, "aaaa");
        for port in 0..20 {
            d.learn(1, UDP, (addr(port), addr(9000)), 4);
        }
        assert_eq!(d.tuple_count(), 4);
        assert_eq!(d.by_tuple(UDP, &(addr(19), addr(9000))), Some(1));
        assert_eq!(d.by_tuple(UDP, &(addr(0), addr(9000))), None);
        d.add_peer(2, "bbbb");
        d.learn(2, UDP, (addr(19), addr(9000)), 4);
        assert_eq!(d.by_tuple(UDP, &(addr(19), addr(9000))), Some(2));
        d.remove_peer(1);
        assert_eq!(d.by_tuple(UDP, &(addr(19), addr(9000))), Some(2));
    }

    #[test]
    fn udp_and_tcp_paths_on_the_same_addresses_are_distinct() {
        let mut d = Demux::default();
        d.add_peer(1, "aaaa");
        d.add_peer(2, "bbbb");
        let t = (addr(5000), addr(9000));
        d.learn(1, UDP, t, 8);
        d.learn(2, Protocol::Tcp, t, 8);
        assert_eq!(d.by_tuple(UDP, &t), Some(1));
        assert_eq!(d.by_tuple(Protocol::Tcp, &t), Some(2));
        d.forget(Protocol::Tcp, t);
        assert_eq!(d.by_tuple(Protocol::Tcp, &t), None);
        assert_eq!(d.by_tuple(UDP, &t), Some(1));
        d.remove_peer(2);
        let changes: Vec<_> = std::iter::from_fn(|| d.next_change()).collect();
        assert_eq!(
            changes,
            vec![
                FlowChange::Admitted(UDP, t),
                FlowChange::Admitted(Protocol::Tcp, t)
            ]
        );
    }
}
