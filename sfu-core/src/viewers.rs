//! WHEP viewers: members whose signaling is one HTTP exchange and who only watch. A viewer's
//! client offers one audio and one video m-line to receive on; each carries a
//! [`Subscription`](crate::membership::Subscription) (the router's usual sink) whose source
//! changes with what the viewer follows: the room's active speaker, or one named member. This
//! part remembers, per viewer, what it follows and which m-lines and subscriptions are its legs;
//! the core moves the legs (`engine/whep.rs`).

use std::collections::HashMap;

use str0m::media::{MediaKind, Mid};

use crate::protocol::PeerId;

/// Whose audio and video a viewer receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Follow {
    /// The room's active speaker (the latest one while nobody speaks; the first publisher until
    /// anybody has).
    Speaker,
    /// The member with this name.
    Peer(String),
}

/// One m-line of a viewer's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewerLeg {
    /// Audio or video.
    pub kind: MediaKind,
    /// The m-line, as the client offered it.
    pub mid: Mid,
    /// The slot of the subscription carrying it, once it had a source.
    pub slot: Option<usize>,
}

/// A viewer: what it follows and its legs (at most one audio and one video).
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Whose media it receives.
    pub follow: Follow,
    /// Its m-lines.
    pub legs: Vec<ViewerLeg>,
}

/// The viewers of one worker, by member id.
#[derive(Debug, Default)]
pub struct Viewers {
    viewers: HashMap<PeerId, Viewer>,
}

impl Viewers {
    /// Member `id` is a viewer.
    pub fn insert(&mut self, id: PeerId, viewer: Viewer) {
        self.viewers.insert(id, viewer);
    }

    /// Member `id` is gone.
    pub fn remove(&mut self, id: PeerId) {
        self.viewers.remove(&id);
    }

    /// The viewer `id`.
    pub fn get(&self, id: PeerId) -> Option<&Viewer> {
        self.viewers.get(&id)
    }

    /// The viewer `id`'s leg on `mid`, to change.
    pub fn leg_mut(&mut self, id: PeerId, mid: Mid) -> Option<&mut ViewerLeg> {
        self.viewers
            .get_mut(&id)?
            .legs
            .iter_mut()
            .find(|l| l.mid == mid)
    }

    /// Every viewer's id.
    pub fn ids(&self) -> Vec<PeerId> {
        self.viewers.keys().copied().collect()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.viewers.is_empty()
    }
}
