//! What the admin API sees of and does to a worker's rooms: the listing of rooms, members and
//! tracks, and why a request on them failed. The requests themselves are methods of
//! [`Core`](crate::Core): `room_listing`, `close_room`, `remove_member`, `force_mute`.

use serde::Serialize;

use crate::protocol::{PeerId, TrackKind, TrackSource};

/// One room as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomListing {
    /// Its name.
    pub name: String,
    /// The worker holding it (filled in by the shell, which knows its index).
    pub worker: usize,
    /// Its members, in join order.
    pub members: Vec<MemberListing>,
    /// Its plain RTP ingests' ids (see `/api/ingests`).
    pub ingests: Vec<PeerId>,
}

/// One member of a room.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberListing {
    /// Its server-wide id.
    pub id: PeerId,
    /// Its display name.
    pub name: String,
    /// Whether its WebRTC session is up.
    pub connected: bool,
    /// The tracks it publishes.
    pub tracks: Vec<TrackListing>,
}

/// One published track.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackListing {
    /// Its server-wide id, `"<peerId>:<mid>"`.
    pub id: String,
    /// The mid of its m-line in the publisher's session.
    pub mid: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// What it shows.
    pub source: TrackSource,
    /// Not forwarded now (muted by its member or by an admin).
    pub muted: bool,
    /// Muted by an admin: its member cannot unmute it until an admin does.
    pub admin_muted: bool,
    /// Its simulcast layers' RIDs, lowest first; empty without simulcast.
    pub simulcast_layers: Vec<String>,
}

/// Why an admin request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No room of that name on this worker.
    #[error("no room named {0}")]
    UnknownRoom(String),
    /// No member with that id in that room.
    #[error("no member {0} in that room")]
    UnknownMember(PeerId),
    /// The member publishes no track with that id or mid.
    #[error("member {0} publishes no track {1}")]
    UnknownTrack(PeerId, String),
}
