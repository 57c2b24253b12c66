//! Membership and signaling: joining and leaving, publishing and unpublishing, SDP exchange, mute
//! and chat.

use std::time::Instant;

use super::*;

impl Core {
    #[allow(clippy::too_many_arguments)] // the join message's fields, and what the member may do
    pub(super) fn join(
        &mut self,
        now: Instant,
        id: PeerId,
        version: u32,
        room: String,
        name: String,
        capacity: Option<u32>,
        permissions: Permissions,
    ) {
        if self.peers.contains_key(&id) {
            return self.error(id, ErrorCode::AlreadyJoined, "already in a room");
        }
        if version != PROTOCOL_VERSION {
            return self.error(
                id,
                ErrorCode::UnsupportedVersion,
                &format!("this server speaks protocol version {PROTOCOL_VERSION}"),
            );
        }
        let valid = |s: &str| !s.trim().is_empty() && s.chars().count() <= MAX_NAME_CHARS;
        if !valid(&room) || !valid(&name) {
            return self.error(
                id,
                ErrorCode::InvalidJoin,
                "room and name must be 1 to 64 characters",
            );
        }
        let capacity = capacity.map_or(DEFAULT_CAPACITY, |c| {
            (c as usize).clamp(1, DEFAULT_CAPACITY)
        });
        let members = self
            .rooms
            .get(room.as_str())
            .map(|r| r.members.clone())
            .unwrap_or_default();
        if self.rooms.get(room.as_str()).is_some_and(Room::is_full) {
            return self.error(id, ErrorCode::RoomFull, "the room is full");
        }
        let (room_key, _) = self.room_entry(&room, capacity);
        let mut peer = Peer::new(id, name, room_key.clone(), &self.config, now);
        peer.permissions = permissions;
        let ufrag = peer.local_ufrag();
        self.demux.add_peer(id, &ufrag);
        let mut others = Vec::with_capacity(members.len());
        for other_id in &members {
            let Some(other) = self.peers.get_mut(other_id) else {
                continue;
            };
            // Without the subscribe permission the member sees who is there, but gets no legs.
            for publication in other.publications.iter().filter(|_| permissions.subscribe) {
                let key = TrackKey {
                    peer: *other_id,
                    mid: publication.mid,
                };
                peer.subscriptions
                    .push(Subscription::new(key, publication.kind));
            }
            others.push(other.info());
        }
        for (ingest, key, kind) in self.ingests_of_room(&room) {
            if permissions.subscribe {
                peer.subscriptions.push(Subscription::new(key, kind));
            }
            others.push(ingest);
        }
        let info = peer.info();
        info!(peer = id, room = %room, name = %peer.name, "joined");
        self.peers.insert(id, peer);
        self.room_entry(&room_key, capacity).1.members.push(id);
        self.next_quality_tick
            .get_or_insert(now + quality::QUALITY_TICK);
        self.signal(
            id,
            ServerMessage::Joined {
                version: PROTOCOL_VERSION,
                peer_id: id,
                room,
                peers: others,
                ice_servers: Vec::new(),
            },
        );
        for other in members {
            self.signal(other, ServerMessage::PeerJoined { peer: info.clone() });
        }
        if let Some(speaker) = self.rooms.get(&*room_key).and_then(|r| r.speaker.current()) {
            self.signal(id, quality::speaker_message(Some(speaker)));
        }
        self.mark_dirty(id);
    }

    pub(super) fn on_offer(
        &mut self,
        now: Instant,
        id: PeerId,
        sdp: &str,
        tracks: Vec<PublishedTrack>,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.pending_offer.is_some() {
            // Glare: we are the impolite side. The client rolls back and answers ours, then offers again.
            debug!(peer = id, "ignoring a colliding offer");
            return;
        }
        if tracks.len() > MAX_PUBLICATIONS {
            return self.error(id, ErrorCode::BadMessage, "too many tracks");
        }
        // Checked before the offer touches the session: a refused offer changes nothing.
        if !peer.permissions.publish && (!tracks.is_empty() || offer_sends_media(sdp)) {
            self.counters.drop(DropReason::Forbidden);
            return self.error(
                id,
                ErrorCode::Forbidden,
                "your token does not allow publishing in this room: offer no sending audio or video",
            );
        }
        let answer = match peer.accept_offer(sdp) {
            Ok(answer) => answer,
            Err(e) => {
                self.counters.drop(DropReason::BadSdp);
                return self.error(id, ErrorCode::BadSdp, &e.to_string());
            }
        };
        self.signal(id, ServerMessage::Answer { sdp: answer });
        self.update_publications(now, id, &tracks);
        self.mark_dirty(id);
        self.negotiate(id);
    }

    /// Publishes what the offer's track list adds, unpublishes what it no longer names.
    pub(super) fn update_publications(
        &mut self,
        now: Instant,
        id: PeerId,
        tracks: &[PublishedTrack],
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let mut declared: Vec<(Mid, MediaKind, &PublishedTrack)> = Vec::with_capacity(tracks.len());
        let mut unknown = false;
        for t in tracks {
            let mid = Mid::from(t.mid.as_str());
            match peer.receiving_kind(mid) {
                Some(kind) if !declared.iter().any(|(m, _, _)| *m == mid) => {
                    declared.push((mid, kind, t))
                }
                _ => unknown = true,
            }
        }
        let gone: Vec<Mid> = peer
            .publications
            .iter()
            .map(|p| p.mid)
            .filter(|mid| !declared.iter().any(|(m, _, _)| m == mid))
            .collect();
        let mut added = Vec::new();
        let mut mute_changes = Vec::new();
        for (mid, kind, t) in declared {
            match peer.publication_mut(mid) {
                Some(p) if p.muted != t.muted => {
                    p.muted = t.muted;
                    mute_changes.push((mid, t.muted));
                }
                Some(_) => {}
                None => {
                    let layers = peer.receiving_layers(mid);
                    peer.publications
                        .push(Publication::new(mid, kind, t.source, t.muted, layers));
                    added.push(mid);
                }
            }
        }
        if unknown {
            self.error(
                id,
                ErrorCode::UnknownTrack,
                "a declared track has no sending m-line",
            );
        }
        for mid in gone {
            self.unpublish(id, mid);
        }
        for mid in added {
            self.publish(now, id, mid);
        }
        for (mid, muted) in mute_changes {
            self.announce_mute(now, id, mid, muted);
        }
    }

    pub(super) fn publish(&mut self, _now: Instant, id: PeerId, mid: Mid) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let Some(publication) = peer.publications.iter().find(|p| p.mid == mid) else {
            return;
        };
        let track = publication.info(id);
        let kind = publication.kind;
        info!(peer = id, track = %track.id, source = ?track.source, "published");
        let room = peer.room.clone();
        for other in self.room_members_except(&room, id) {
            if let Some(o) = self
                .peers
                .get_mut(&other)
                .filter(|o| o.permissions.subscribe)
            {
                o.subscriptions
                    .push(Subscription::new(TrackKey { peer: id, mid }, kind));
            }
            self.signal(
                other,
                ServerMessage::TrackPublished {
                    peer_id: id,
                    track: track.clone(),
                },
            );
            self.negotiate(other);
        }
    }

    pub(super) fn unpublish(&mut self, id: PeerId, mid: Mid) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.publications.retain(|p| p.mid != mid);
        let key = TrackKey { peer: id, mid };
        info!(peer = id, track = %key.id(), "unpublished");
        let room = peer.room.clone();
        self.forget_speaker(&room, key);
        self.remove_outputs_of(|k| *k == key);
        for other in self.room_members_except(&room, id) {
            if let Some(o) = self.peers.get_mut(&other) {
                o.drop_legs_of(|k| *k == key);
            }
            self.signal(
                other,
                ServerMessage::TrackUnpublished {
                    peer_id: id,
                    track_id: key.id(),
                },
            );
            self.negotiate(other);
        }
    }

    pub(super) fn on_answer(&mut self, now: Instant, id: PeerId, sdp: &str) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        match peer.accept_answer(sdp) {
            // The new legs get their layers (and ask for their first keyframes) at once.
            Ok(opened) if !opened.is_empty() => self.reallocate(now, id),
            Ok(_) => {}
            Err(e) => {
                self.counters.drop(DropReason::BadSdp);
                self.error(id, ErrorCode::BadSdp, &e.to_string());
            }
        }
        self.mark_dirty(id);
        self.negotiate(id);
    }

    pub(super) fn on_candidate(&mut self, id: PeerId, line: &str) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let line = line.strip_prefix("a=").unwrap_or(line);
        match str0m::Candidate::from_sdp_string(line) {
            Ok(c) => peer.rtc.add_remote_candidate(c),
            Err(e) => debug!(peer = id, error = %e, "ignoring unparsable candidate"),
        }
    }

    pub(super) fn on_mute(&mut self, now: Instant, id: PeerId, mid: &str, muted: bool) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let mid = Mid::from(mid);
        match peer.publication_mut(mid) {
            Some(p) if p.muted != muted => {
                p.muted = muted;
                self.announce_mute(now, id, mid, muted);
            }
            Some(_) => {}
            None => self.error(
                id,
                ErrorCode::UnknownTrack,
                "no published track with that mid",
            ),
        }
    }

    /// Tells the room a track was muted or unmuted, and pauses or resumes its legs.
    pub(super) fn announce_mute(&mut self, now: Instant, id: PeerId, mid: Mid, muted: bool) {
        let Some(room) = self.peers.get(&id).map(|p| p.room.clone()) else {
            return;
        };
        let key = TrackKey { peer: id, mid };
        let track_id = key.id();
        for other in self.room_members_except(&room, id) {
            self.mute_legs(now, other, key, muted);
            self.signal(
                other,
                ServerMessage::TrackMuted {
                    peer_id: id,
                    track_id: track_id.clone(),
                    muted,
                },
            );
        }
    }

    pub(super) fn on_chat(&mut self, _now: Instant, id: PeerId, text: String) {
        if self.peers.get(&id).is_some_and(|p| !p.permissions.chat) {
            self.counters.drop(DropReason::Forbidden);
            return self.error(
                id,
                ErrorCode::Forbidden,
                "your token does not allow chat in this room",
            );
        }
        if text.chars().count() > MAX_CHAT_CHARS || text.is_empty() {
            return self.error(
                id,
                ErrorCode::BadMessage,
                "chat text must be 1 to 2000 characters",
            );
        }
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let line = ChatOut {
            from: id,
            name: peer.name.clone(),
            text,
        };
        let room = peer.room.clone();
        let Ok(json) = serde_json::to_string(&line) else {
            return;
        };
        for other in self.room_members_except(&room, id) {
            let Some(o) = self.peers.get_mut(&other) else {
                continue;
            };
            let written = o
                .chat_channel
                .and_then(|cid| o.rtc.channel(cid))
                .is_some_and(|mut ch| ch.write(false, json.as_bytes()).is_ok());
            if written {
                self.mark_dirty(other);
            } else {
                self.signal(
                    other,
                    ServerMessage::Chat {
                        from: line.from,
                        name: line.name.clone(),
                        text: line.text.clone(),
                    },
                );
            }
        }
    }

    /// Removes a peer everywhere. With `reason`, the peer is told why first.
    pub(super) fn remove_peer(&mut self, _now: Instant, id: PeerId, reason: Option<&str>) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        if let Some(reason) = reason {
            self.error(id, ErrorCode::MediaTimeout, reason);
        }
        peer.rtc.disconnect();
        self.demux.remove_peer(id);
        info!(peer = id, room = %peer.room, reason = reason.unwrap_or("left or disconnected"), "left");
        self.remove_outputs_of(|k| k.peer == id);
        let remaining = match self.rooms.get_mut(&*peer.room) {
            Some(room) => {
                room.members.retain(|m| *m != id);
                room.members.clone()
            }
            None => Vec::new(),
        };
        for publication in &peer.publications {
            self.forget_speaker(
                &peer.room,
                TrackKey {
                    peer: id,
                    mid: publication.mid,
                },
            );
        }
        self.forget_room_if_empty(&peer.room);
        for other in remaining {
            if let Some(o) = self.peers.get_mut(&other) {
                o.drop_legs_of(|k| k.peer == id);
            }
            self.signal(other, ServerMessage::PeerLeft { peer_id: id });
            self.negotiate(other);
        }
        self.closed.push_back(id);
    }

    /// Sends an offer to `id` if its legs changed and no offer is outstanding.
    pub(super) fn negotiate(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if let Some((sdp, tracks)) = peer.create_offer() {
            self.signal(id, ServerMessage::Offer { sdp, tracks });
            self.mark_dirty(id);
        }
    }
}
