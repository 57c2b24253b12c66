//! What the admin API does to a worker's rooms: list them, close one, remove a member, mute a
//! member's track. Each is a short sequence over the parts, like members' own messages.

use std::time::Instant;

use str0m::media::Mid;
use tracing::info;

use super::Core;
use crate::admin::{AdminError, MemberListing, RoomListing, TrackListing};
use crate::protocol::{PeerId, ServerMessage};
use crate::router::{track_kind, TrackKey};

impl Core {
    /// Every room on this worker with its members and their tracks (`worker` left 0 for the
    /// shell to fill in), sorted by name.
    pub fn room_listing(&self) -> Vec<RoomListing> {
        let mut rooms: Vec<RoomListing> = self
            .members
            .room_names()
            .into_iter()
            .filter_map(|name| self.room_info(&name))
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// Room `name` with its members and their tracks, if it is on this worker.
    pub fn room_info(&self, name: &str) -> Option<RoomListing> {
        let room = self.members.room(name)?;
        let members = room
            .members
            .iter()
            .filter_map(|id| self.member_listing(*id))
            .collect();
        Some(RoomListing {
            name: name.to_owned(),
            worker: 0,
            members,
            ingests: room.ingests.clone(),
        })
    }

    fn member_listing(&self, id: PeerId) -> Option<MemberListing> {
        let peer = self.members.get(id)?;
        let mut keys = self.router.keys_of(id);
        keys.sort_by_key(|k| k.mid.to_string());
        let tracks = keys
            .into_iter()
            .filter_map(|key| {
                let t = self.router.track(key)?;
                Some(TrackListing {
                    id: key.id(),
                    mid: key.mid.to_string(),
                    kind: track_kind(t.kind),
                    source: t.source,
                    muted: t.muted,
                    admin_muted: t.admin_muted,
                    simulcast_layers: t
                        .layers
                        .iter()
                        .filter_map(|l| l.rid.map(|r| r.to_string()))
                        .collect(),
                })
            })
            .collect();
        Some(MemberListing {
            id,
            name: peer.name.clone(),
            connected: peer.connected,
            tracks,
        })
    }

    /// Closes room `name`: every member is told `reason` (`removed`) and removed, and its plain
    /// RTP ingests are removed. Returns the removed ingests' ids (the shell forgets them).
    pub fn close_room(
        &mut self,
        now: Instant,
        name: &str,
        reason: &str,
    ) -> Result<Vec<PeerId>, AdminError> {
        let room = self
            .members
            .room(name)
            .ok_or_else(|| AdminError::UnknownRoom(name.to_owned()))?;
        let (members, ingests) = (room.members.clone(), room.ingests.clone());
        info!(room = name, reason, "closing the room");
        for id in members {
            self.expel(now, id, reason);
        }
        for id in &ingests {
            // An ingest listed in the room exists: it cannot be unknown here.
            let _ = self.remove_ingest(now, *id);
        }
        self.drive(now);
        Ok(ingests)
    }

    /// Removes member `id` of room `room`, telling it `reason` (`removed`) first; the others get
    /// `peerLeft` as for any leave.
    pub fn remove_member(
        &mut self,
        now: Instant,
        room: &str,
        id: PeerId,
        reason: &str,
    ) -> Result<(), AdminError> {
        self.member_in(room, id)?;
        info!(peer = id, room, reason, "removing the member");
        self.expel(now, id, reason);
        self.drive(now);
        Ok(())
    }

    /// Mutes (or unmutes) track `track` of member `id` of `room` (the track's id
    /// `"<peerId>:<mid>"`, or its mid). The member is told (`forceMuted`), the others as for any
    /// mute (`trackMuted`), and an admin-muted track stays muted whatever its member says until an
    /// admin unmutes it. Returns the track as it now is.
    pub fn force_mute(
        &mut self,
        now: Instant,
        room: &str,
        id: PeerId,
        track: &str,
        muted: bool,
    ) -> Result<TrackListing, AdminError> {
        self.member_in(room, id)?;
        let key = TrackKey::parse(track)
            .filter(|k| k.peer == id)
            .unwrap_or(TrackKey {
                peer: id,
                mid: Mid::from(track),
            });
        let unknown = || AdminError::UnknownTrack(id, track.to_owned());
        let t = self.router.track_mut(key).ok_or_else(unknown)?;
        t.admin_muted = muted;
        let changed = t.muted != muted;
        t.muted = muted;
        info!(peer = id, track = %key.id(), muted, "admin mute");
        self.outbox.signal(
            id,
            ServerMessage::ForceMuted {
                mid: key.mid.to_string(),
                track_id: key.id(),
                muted,
            },
        );
        if changed {
            self.announce_mute(now, id, key.mid, muted);
        }
        self.drive(now);
        self.member_listing(id)
            .and_then(|m| m.tracks.into_iter().find(|t| t.id == key.id()))
            .ok_or_else(unknown)
    }

    /// Checks that member `id` is in `room`.
    fn member_in(&self, room: &str, id: PeerId) -> Result<(), AdminError> {
        if self.members.room(room).is_none() {
            return Err(AdminError::UnknownRoom(room.to_owned()));
        }
        match self.members.get(id) {
            Some(p) if &*p.room == room => Ok(()),
            _ => Err(AdminError::UnknownMember(id)),
        }
    }

    /// Tells member `id` why, then removes it.
    fn expel(&mut self, now: Instant, id: PeerId, reason: &str) {
        self.outbox.signal(
            id,
            ServerMessage::Removed {
                reason: reason.to_owned(),
            },
        );
        self.remove_peer(now, id, None);
    }
}
