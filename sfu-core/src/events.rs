//! What happened in rooms, for the world outside the call (webhooks): rooms starting and
//! finishing, members joining and leaving, tracks published and unpublished. The core queues them
//! as [`Action::RoomEvent`](crate::Action::RoomEvent); the shell decides where they go.

use serde::{Deserialize, Serialize};

use crate::protocol::{PeerId, TrackKind, TrackSource};

/// One thing that happened in a room. Serialized with `"event": "<snake_case name>"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum RoomEvent {
    /// The room's first member joined (the room did not exist on this worker).
    RoomStarted {
        /// The room.
        room: String,
    },
    /// The room's last member (or plain RTP ingest) left: the room is gone.
    RoomFinished {
        /// The room.
        room: String,
    },
    /// A member joined, or a plain RTP ingest was added (its room's members see it as a member).
    ParticipantJoined {
        /// The room.
        room: String,
        /// Its server-wide id.
        peer_id: PeerId,
        /// Its display name.
        name: String,
    },
    /// A member left, was removed or was dropped, or a plain RTP ingest was removed.
    ParticipantLeft {
        /// The room.
        room: String,
        /// Its id.
        peer_id: PeerId,
        /// Its display name.
        name: String,
    },
    /// A member published a track.
    TrackPublished {
        /// The room.
        room: String,
        /// The publisher.
        peer_id: PeerId,
        /// The track's server-wide id.
        track_id: String,
        /// Audio or video.
        kind: TrackKind,
        /// What it shows.
        source: TrackSource,
    },
    /// A track was unpublished (by its member, or because the member left).
    TrackUnpublished {
        /// The room.
        room: String,
        /// The publisher.
        peer_id: PeerId,
        /// The track's id.
        track_id: String,
    },
    /// A member muted or unmuted a track (for other nodes of a cluster, not for webhooks).
    TrackMuted {
        /// The room.
        room: String,
        /// The publisher.
        peer_id: PeerId,
        /// The track's id.
        track_id: String,
        /// New state.
        muted: bool,
    },
    /// A member wrote a chat line (for other nodes of a cluster, not for webhooks).
    Chat {
        /// The room.
        room: String,
        /// The sender.
        peer_id: PeerId,
        /// Its display name.
        name: String,
        /// The text.
        text: String,
    },
    /// The room's dominant speaker changed (for other nodes of a cluster, not for webhooks).
    ActiveSpeaker {
        /// The room.
        room: String,
        /// The member speaking, or `None`.
        peer_id: Option<PeerId>,
        /// Its audio track.
        track_id: Option<String>,
    },
}

impl RoomEvent {
    /// Whether webhook receivers hear of it: mute changes, chat lines and speaker changes are
    /// only for the other nodes of a cluster (a chat line is the members' business, and speaker
    /// changes come several times a second).
    pub fn for_webhooks(&self) -> bool {
        !matches!(
            self,
            RoomEvent::TrackMuted { .. } | RoomEvent::Chat { .. } | RoomEvent::ActiveSpeaker { .. }
        )
    }
}
