//! Membership: the rooms of one worker and the members in them, each with its WebRTC session and
//! its subscriptions. Members are polled when something happened to their session; this part
//! keeps the list of those ("dirty") members.

pub(crate) mod data_channels;
mod message_rate;
mod peer;
mod resend_log;
mod room;
mod signaling_channel;
mod subscription;

use std::collections::HashMap;
use std::sync::Arc;

pub use data_channels::DataChannels;
pub use peer::{Bandwidth, Peer, SdpError};
pub(crate) use resend_log::{ResendLog, Sent};
pub use room::Room;
pub use signaling_channel::SignalingChannel;
pub(crate) use subscription::seal;
pub use subscription::{LegCounters, LegState, Subscription};

use crate::outbox::Egress;
use crate::protocol::PeerId;
use crate::router::{Delivery, RoutedPacket};

/// Rooms and members of one worker.
#[derive(Default)]
pub struct Members {
    rooms: HashMap<Arc<str>, Room>,
    /// Boxed: a member's session is about 20 KiB, and the map's spare capacity should not be.
    peers: HashMap<PeerId, Box<Peer>>,
    /// Members to poll in the current drive (reused, never shrunk).
    dirty: Vec<PeerId>,
}

impl Members {
    /// The member `id`.
    pub fn get(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(&id).map(|p| &**p)
    }

    /// The member `id`, to change.
    pub fn get_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(&id).map(|p| &mut **p)
    }

    /// Whether `id` is a member here.
    pub fn contains(&self, id: PeerId) -> bool {
        self.peers.contains_key(&id)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Their subscriber legs: one per track a member receives (or is being set up to).
    pub fn leg_count(&self) -> usize {
        self.peers.values().map(|p| p.subscriptions.len()).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Every member id.
    pub fn ids(&self) -> Vec<PeerId> {
        self.peers.keys().copied().collect()
    }

    /// Number of rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Room `name`.
    pub fn room(&self, name: &str) -> Option<&Room> {
        self.rooms.get(name)
    }

    /// Room `name`, to change.
    pub fn room_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.rooms.get_mut(name)
    }

    /// The room named `name`, created with `capacity` if it does not exist, and its shared key.
    pub fn room_entry(&mut self, name: &str, capacity: usize) -> (Arc<str>, &mut Room) {
        let key = self
            .rooms
            .get_key_value(name)
            .map_or_else(|| Arc::from(name), |(k, _)| k.clone());
        let room = self
            .rooms
            .entry(key.clone())
            .or_insert_with(|| Room::new(capacity));
        (key, room)
    }

    /// The names of every room.
    pub fn room_names(&self) -> Vec<Arc<str>> {
        self.rooms.keys().cloned().collect()
    }

    /// Removes room `name` when no member and no ingest is left in it.
    pub fn forget_room_if_empty(&mut self, name: &str) {
        if self.rooms.get(name).is_some_and(Room::is_empty) {
            self.rooms.remove(name);
        }
    }

    /// The members of `room` in join order (a copy, as [`Members::members_except`]).
    pub fn members_of(&self, room: &str) -> Vec<PeerId> {
        self.rooms
            .get(room)
            .map(|r| r.members.clone())
            .unwrap_or_default()
    }

    /// The members of `room` in join order, `except` left out (a copy: for joins, leaves and
    /// messages, while other parts change).
    pub fn members_except(&self, room: &str, except: PeerId) -> Vec<PeerId> {
        self.rooms
            .get(room)
            .map(|r| r.members.iter().copied().filter(|m| *m != except).collect())
            .unwrap_or_default()
    }

    /// Adds `peer` to its room (which must exist) and to the members.
    pub fn insert(&mut self, peer: Peer) {
        if let Some(room) = self.rooms.get_mut(&*peer.room) {
            room.members.push(peer.id);
        }
        self.peers.insert(peer.id, Box::new(peer));
    }

    /// Removes member `id` from its room and the members; the room itself stays (see
    /// [`Members::forget_room_if_empty`]).
    pub fn remove(&mut self, id: PeerId) -> Option<Peer> {
        let peer = self.peers.remove(&id)?;
        if let Some(room) = self.rooms.get_mut(&*peer.room) {
            room.members.retain(|m| *m != id);
        }
        Some(*peer)
    }

    /// Queues member `id` for polling in the current drive.
    pub fn mark_dirty(&mut self, id: PeerId) {
        if let Some(p) = self.peers.get_mut(&id) {
            if !p.dirty {
                p.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// The next member to poll.
    pub fn next_dirty(&mut self) -> Option<PeerId> {
        let id = self.dirty.pop()?;
        if let Some(p) = self.peers.get_mut(&id) {
            p.dirty = false;
        }
        Some(id)
    }

    /// Sends one packet on `subscriber`'s subscription in `slot`.
    pub fn deliver(
        &mut self,
        subscriber: PeerId,
        slot: usize,
        packet: &RoutedPacket,
        egress: &mut Egress,
    ) -> Delivery {
        match self.peers.get_mut(&subscriber) {
            Some(peer) => peer.deliver(slot, packet, egress),
            None => Delivery::Gone,
        }
    }
}
