//! A room: who is in it, how many it may hold, and who speaks.

use crate::protocol::PeerId;
use crate::quality::speaker::SpeakerDetector;

/// Members of one room, in join order.
#[derive(Debug)]
pub struct Room {
    /// Most members it may hold.
    pub capacity: usize,
    /// Members in join order.
    pub members: Vec<PeerId>,
    /// Plain RTP ingests publishing into it (virtual members, not counted against capacity).
    pub ingests: Vec<PeerId>,
    /// Who speaks.
    pub speaker: SpeakerDetector,
    /// Members of other nodes in it (their media comes over trunks; not counted against
    /// capacity).
    pub remote_members: Vec<PeerId>,
}

impl Room {
    /// An empty room holding at most `capacity` members.
    pub fn new(capacity: usize) -> Self {
        Room {
            capacity,
            members: Vec::new(),
            ingests: Vec::new(),
            remote_members: Vec::new(),
            speaker: SpeakerDetector::new(),
        }
    }

    /// Whether nobody and nothing is left in it.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.ingests.is_empty() && self.remote_members.is_empty()
    }

    /// Whether a member or ingest of this worker is in it (not only members of other nodes).
    pub fn has_local(&self) -> bool {
        !self.members.is_empty() || !self.ingests.is_empty()
    }

    /// Whether another member fits.
    pub fn is_full(&self) -> bool {
        self.members.len() >= self.capacity
    }
}
