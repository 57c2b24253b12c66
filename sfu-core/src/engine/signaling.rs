//! What members' signaling messages do: joining and leaving, publishing and unpublishing, the
//! SDP exchange, mute, tile sizes, stats and chat. Each is a short sequence over the parts.

use std::time::Instant;

use str0m::channel::ChannelData;
use str0m::media::{MediaKind, Mid};
use tracing::{debug, info};

use super::{Core, Timer};
use crate::codec::policy;
use crate::counters::{DropReason, JoinRefusalReason};
use crate::events::RoomEvent;
use crate::membership::{Peer, SignalingChannel};
use crate::permissions::{offer_sends_media, Permissions};
use crate::plain_legs::Ingest;
use crate::protocol::{
    valid_name, ChatIn, ChatOut, ClientMessage, ErrorCode, PeerId, PeerInfo, PublishedTrack,
    ServerMessage, PROTOCOL_VERSION,
};
use crate::quality::{self, MAX_TILE_SIDE};
use crate::router::{Origin, Router, SinkRef, Track, TrackKey};

/// Longest chat line, in characters.
const MAX_CHAT_CHARS: usize = 2000;
/// Most tracks one member may publish.
pub(super) const MAX_PUBLICATIONS: usize = 16;
/// Largest data-channel message parsed as chat.
const MAX_CHANNEL_MESSAGE: usize = 8 * 1024;
/// Most bytes a member's chat channel may hold unsent or unacknowledged; past it chat lines for
/// that member are dropped and counted (below the SCTP stack's own limit, past which a write fails
/// and the line would go to the member's WebSocket queue instead).
const MAX_CHANNEL_BUFFERED_BYTES: usize = 64 * 1024;
/// Room capacity when the creating join names none, and the most any join may ask for.
pub(super) const DEFAULT_CAPACITY: usize = 64;

/// A `join` message's fields.
pub(super) struct Join {
    pub(super) version: u32,
    pub(super) room: String,
    pub(super) name: String,
    pub(super) capacity: Option<u32>,
}

/// Why a join was refused: what the member is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JoinRefusal {
    /// The protocol's code for it.
    pub code: ErrorCode,
    /// Why, for people.
    pub message: String,
}

impl JoinRefusal {
    /// A refusal with `code`, saying `message` to whoever asked to join.
    pub fn new(code: ErrorCode, message: &str) -> Self {
        JoinRefusal {
            code,
            message: message.to_owned(),
        }
    }
}

impl Core {
    /// Handles one signaling message from `peer`'s connection.
    pub fn handle_message(&mut self, now: Instant, peer: PeerId, msg: ClientMessage) {
        let _span = tracing::info_span!("peer", id = peer).entered();
        self.isolated(now, peer, |core| core.on_message(now, peer, msg));
        self.drive(now);
    }

    fn on_message(&mut self, now: Instant, peer: PeerId, msg: ClientMessage) {
        #[cfg(test)]
        super::isolation::panic_if_asked(&msg);
        match msg {
            ClientMessage::Join {
                version,
                room,
                name,
                capacity,
                token: _,
            } => self.join(
                now,
                peer,
                Join {
                    version,
                    room,
                    name,
                    capacity,
                },
                Permissions::OPEN_ROOM,
            ),
            _ if !self.members.contains(peer) => {
                self.error(peer, ErrorCode::NotJoined, "send join first");
            }
            ClientMessage::Offer { sdp, tracks } => self.on_offer(now, peer, &sdp, tracks),
            ClientMessage::Answer { sdp } => self.on_answer(now, peer, &sdp),
            ClientMessage::Candidate { candidate } => self.on_candidate(peer, &candidate),
            ClientMessage::Mute { mid, muted } => self.on_mute(now, peer, &mid, muted),
            ClientMessage::TileSize {
                track_id,
                width,
                height,
            } => self.on_tile_size(now, peer, &track_id, width, height),
            ClientMessage::GetStats => {
                if let Some(p) = self.members.get(peer) {
                    let stats = quality::media_stats(p, &self.router, now);
                    self.outbox.signal(peer, ServerMessage::MediaStats(stats));
                }
            }
            ClientMessage::Chat { text } => self.on_chat(peer, text),
            ClientMessage::Record { active } => self.on_record(now, peer, active),
            ClientMessage::Leave => self.remove_peer(now, peer, None),
            ClientMessage::Ping => self.outbox.signal(peer, ServerMessage::Pong),
            // Tokens are the signaling layer's: it answers `refresh` and never forwards it.
            ClientMessage::Refresh { .. } => {}
        }
    }

    /// Handles a `join` whose member may do only what `permissions` allow (the signaling layer
    /// checked its room token). [`Core::handle_message`] gives a `join` every permission: an open
    /// room. Any other message is handled as by [`Core::handle_message`].
    pub fn handle_join(
        &mut self,
        now: Instant,
        peer: PeerId,
        msg: ClientMessage,
        permissions: Permissions,
    ) {
        let ClientMessage::Join {
            version,
            room,
            name,
            capacity,
            token: _,
        } = msg
        else {
            return self.handle_message(now, peer, msg);
        };
        let _span = tracing::info_span!("peer", id = peer).entered();
        let join = Join {
            version,
            room,
            name,
            capacity,
        };
        self.isolated(now, peer, |core| core.join(now, peer, join, permissions));
        self.drive(now);
    }

    /// The member's WebSocket closed: it leaves without a word.
    pub fn disconnect(&mut self, now: Instant, peer: PeerId) {
        self.remove_peer(now, peer, None);
        self.drive(now);
    }

    fn join(&mut self, now: Instant, id: PeerId, join: Join, permissions: Permissions) {
        let joined = self.try_join(now, id, join, permissions, SignalingChannel::WebSocket);
        if let Err(refusal) = joined {
            self.error(id, refusal.code, &refusal.message);
        }
    }

    /// Makes `id` a member of the room `join` names, whose signaling travels on `channel`, and
    /// tells the room; refused when it cannot join, leaving no trace.
    pub(super) fn try_join(
        &mut self,
        now: Instant,
        id: PeerId,
        join: Join,
        permissions: Permissions,
        channel: SignalingChannel,
    ) -> Result<(), JoinRefusal> {
        if self.members.contains(id) {
            self.counters.refuse_join(JoinRefusalReason::AlreadyJoined);
            return Err(JoinRefusal::new(
                ErrorCode::AlreadyJoined,
                "already in a room",
            ));
        }
        if join.version != PROTOCOL_VERSION {
            self.counters
                .refuse_join(JoinRefusalReason::UnsupportedVersion);
            return Err(JoinRefusal::new(
                ErrorCode::UnsupportedVersion,
                &format!("this server speaks protocol version {PROTOCOL_VERSION}"),
            ));
        }
        if !valid_name(&join.room) || !valid_name(&join.name) {
            self.counters.refuse_join(JoinRefusalReason::InvalidJoin);
            return Err(JoinRefusal::new(
                ErrorCode::InvalidJoin,
                "room and name must be 1 to 64 characters",
            ));
        }
        let capacity = join.capacity.map_or(DEFAULT_CAPACITY, |c| {
            (c as usize).clamp(1, DEFAULT_CAPACITY)
        });
        if self.members.room(&join.room).is_some_and(|r| r.is_full()) {
            self.counters.refuse_join(JoinRefusalReason::RoomFull);
            return Err(JoinRefusal::new(ErrorCode::RoomFull, "the room is full"));
        }
        let created = self.members.room(&join.room).is_none();
        let room = self.open_room(&join.room, capacity);
        // Members of other nodes already in the room come first, so `joined` lists them.
        self.admit_roster(now, &room);
        let existing = self.members.members_of(&room);
        let mut peer = Peer::new(id, join.name, room.clone(), &self.config, now);
        peer.permissions = permissions;
        peer.signaling = channel;
        if !channel.takes_messages() {
            self.outbox.takes_no_messages(id);
        }
        let ufrag = peer.local_ufrag();
        self.demux.add_peer(id, &ufrag);
        // Without the subscribe permission the member sees who is there, but gets no
        // subscriptions.
        if peer.takes_room_tracks() {
            let mut keys = self.router.keys_in_room(&room);
            keys.sort_by_key(|k| (k.peer, k.mid.to_string()));
            for key in keys {
                subscribe(&mut self.router, &mut peer, key);
            }
        }
        let mut others: Vec<PeerInfo> =
            existing.iter().filter_map(|m| self.peer_info(*m)).collect();
        let ingests = self
            .members
            .room(&room)
            .map(|r| r.ingests.clone())
            .unwrap_or_default();
        others.extend(ingests.into_iter().filter_map(|i| self.peer_info(i)));
        let remote = self
            .members
            .room(&room)
            .map(|r| r.remote_members.clone())
            .unwrap_or_default();
        others.extend(remote.into_iter().filter_map(|m| self.peer_info(m)));
        let info = PeerInfo {
            id,
            name: peer.name.clone(),
            tracks: Vec::new(),
        };
        info!(peer = id, room = %room, name = %peer.name, "joined");
        self.counters.joins += 1;
        self.outbox.event(RoomEvent::ParticipantJoined {
            room: room.to_string(),
            peer_id: id,
            name: peer.name.clone(),
        });
        self.timers
            .set((id, Timer::Liveness), peer.liveness_deadline(&self.config));
        self.members.insert(peer);
        self.quality.start_ticks(now);
        self.outbox.signal(
            id,
            ServerMessage::Joined {
                version: PROTOCOL_VERSION,
                peer_id: id,
                room: join.room,
                peers: others,
                ice_servers: Vec::new(),
                recording: self.recording_of(&room),
                may_record: permissions.record,
            },
        );
        for other in existing {
            self.outbox
                .signal(other, ServerMessage::PeerJoined { peer: info.clone() });
        }
        if let Some(speaker) = self.members.room(&room).and_then(|r| r.speaker.current()) {
            self.outbox
                .signal(id, quality::speaker_message(Some(speaker)));
        }
        self.members.mark_dirty(id);
        if created {
            self.on_room_created(&room);
        }
        Ok(())
    }

    /// The protocol's view of member or ingest `id`.
    pub(super) fn peer_info(&self, id: PeerId) -> Option<PeerInfo> {
        let name = match self.members.get(id) {
            Some(p) => p.name.clone(),
            None => match self.plain.ingest(id) {
                Some(ingest) => ingest.name.clone(),
                None => self.trunks.member(id)?.name.clone(),
            },
        };
        Some(PeerInfo {
            id,
            name,
            tracks: self.router.infos_of(id),
        })
    }

    /// Gives every member of `room` but `except` that may subscribe a subscription to `key`,
    /// tells them with `message`, and renegotiates.
    pub(super) fn offer_track_to_room(
        &mut self,
        room: &str,
        except: PeerId,
        key: TrackKey,
        message: &ServerMessage,
    ) {
        for other in self.members.members_except(room, except) {
            if let Some(o) = self
                .members
                .get_mut(other)
                .filter(|o| o.takes_room_tracks())
            {
                subscribe(&mut self.router, o, key);
            }
            self.outbox.signal(other, message.clone());
            self.negotiate(other);
        }
    }

    fn on_offer(&mut self, now: Instant, id: PeerId, sdp: &str, tracks: Vec<PublishedTrack>) {
        let Some(peer) = self.members.get_mut(id) else {
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
        // The room's codec for this member, chosen anew with what its offer says it has, goes
        // first in the answer: the browser sends that one.
        self.note_video_capabilities(id, sdp);
        let answer = match self.members.get(id).and_then(|p| p.video_codec_asked) {
            Some(codec) => policy::prefer_codec_in_sdp(&answer, codec),
            None => answer,
        };
        self.outbox
            .signal(id, ServerMessage::Answer { sdp: answer });
        self.update_publications(now, id, &tracks);
        self.members.mark_dirty(id);
        self.negotiate(id);
    }

    /// Publishes what the offer's track list adds, unpublishes what it no longer names, and
    /// applies mute changes.
    pub(super) fn update_publications(
        &mut self,
        now: Instant,
        id: PeerId,
        tracks: &[PublishedTrack],
    ) {
        let Some(peer) = self.members.get(id) else {
            return;
        };
        let room = peer.room.clone();
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
        let gone: Vec<Mid> = self
            .router
            .keys_of(id)
            .into_iter()
            .map(|k| k.mid)
            .filter(|mid| !declared.iter().any(|(m, _, _)| m == mid))
            .collect();
        let mut added = Vec::new();
        let mut mute_changes = Vec::new();
        for (mid, kind, t) in declared {
            let key = TrackKey { peer: id, mid };
            match self.router.track_mut(key) {
                Some(track) if track.admin_muted => {}
                Some(track) if track.muted != t.muted => {
                    track.muted = t.muted;
                    mute_changes.push((mid, t.muted));
                }
                Some(_) => {}
                None => {
                    let layers = peer.receiving_layers(mid);
                    let track = Track::new(
                        room.clone(),
                        Origin::Member,
                        kind,
                        t.source,
                        t.muted,
                        layers,
                    );
                    self.router.publish(key, track);
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
            self.unpublish(TrackKey { peer: id, mid });
        }
        for mid in added {
            self.announce_published(now, &room, id, TrackKey { peer: id, mid });
        }
        for (mid, muted) in mute_changes {
            self.announce_mute(now, id, mid, muted);
        }
    }

    /// Tells `room` that `publisher` published track `key` (a member's, or a remote member's
    /// over a trunk): its members get a subscription, the recording and the trunks sharing the
    /// room take it.
    pub(super) fn announce_published(
        &mut self,
        now: Instant,
        room: &str,
        publisher: PeerId,
        key: TrackKey,
    ) {
        let Some(track) = self.router.track(key).map(|t| t.info(key)) else {
            return;
        };
        info!(peer = publisher, track = %track.id, source = ?track.source, "published");
        self.outbox.event(RoomEvent::TrackPublished {
            room: room.to_string(),
            peer_id: publisher,
            track_id: track.id.clone(),
            kind: track.kind,
            source: track.source,
        });
        let message = ServerMessage::TrackPublished {
            peer_id: publisher,
            track,
        };
        self.offer_track_to_room(room, publisher, key, &message);
        self.record_new_track(now, key);
        self.trunk_new_track(key);
    }

    /// Unpublishes track `key`: its subscriptions and outputs go, the room is told.
    pub(super) fn unpublish(&mut self, key: TrackKey) {
        let Some(track) = self.router.unpublish(key) else {
            return;
        };
        info!(peer = key.peer, track = %key.id(), "unpublished");
        self.end_recorded_track(key);
        self.trunk_track_gone(key);
        self.announce_unpublished(&track.room, key);
        self.forget_speaker(&track.room, key);
        self.remove_outputs_of(|k| *k == key);
        for other in self.members.members_except(&track.room, key.peer) {
            if let Some(o) = self.members.get_mut(other) {
                o.unsubscribe(|k| *k == key);
            }
            self.outbox.signal(
                other,
                ServerMessage::TrackUnpublished {
                    peer_id: key.peer,
                    track_id: key.id(),
                },
            );
            self.negotiate(other);
        }
    }

    fn on_answer(&mut self, now: Instant, id: PeerId, sdp: &str) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        match peer.accept_answer(sdp) {
            Ok(opened) => {
                self.note_video_capabilities(id, sdp);
                // The new subscriptions get their layers (and ask for their first keyframes) at
                // once.
                if !opened.is_empty() {
                    self.reallocate(now, id);
                }
            }
            Err(e) => {
                self.counters.drop(DropReason::BadSdp);
                self.error(id, ErrorCode::BadSdp, &e.to_string());
            }
        }
        self.detach_removed(id);
        self.members.mark_dirty(id);
        self.negotiate(id);
    }

    fn on_candidate(&mut self, id: PeerId, line: &str) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        let line = line.strip_prefix("a=").unwrap_or(line);
        match str0m::Candidate::from_sdp_string(line) {
            Ok(c) => peer.rtc.add_remote_candidate(c),
            Err(e) => debug!(peer = id, error = %e, "ignoring unparsable candidate"),
        }
    }

    fn on_mute(&mut self, now: Instant, id: PeerId, mid: &str, muted: bool) {
        let mid = Mid::from(mid);
        match self.router.track_mut(TrackKey { peer: id, mid }) {
            Some(track) if track.admin_muted && !muted => {
                self.counters.drop(DropReason::Forbidden);
                self.error(
                    id,
                    ErrorCode::Forbidden,
                    "an admin muted this track: only an admin can unmute it",
                );
            }
            Some(track) if track.muted != muted => {
                track.muted = muted;
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

    /// Tells the room a track was muted or unmuted, and pauses or resumes its subscriptions.
    pub(super) fn announce_mute(&mut self, now: Instant, id: PeerId, mid: Mid, muted: bool) {
        let room = match self.members.get(id) {
            Some(p) => p.room.clone(),
            None => match self.trunks.member(id) {
                Some(remote) => remote.room.clone(),
                None => return,
            },
        };
        let key = TrackKey { peer: id, mid };
        self.trunk_track_muted(key, muted);
        let track_id = key.id();
        self.outbox.event(RoomEvent::TrackMuted {
            room: room.to_string(),
            peer_id: id,
            track_id: track_id.clone(),
            muted,
        });
        for other in self.members.members_except(&room, id) {
            self.mute_subscriptions(now, other, key, muted);
            self.outbox.signal(
                other,
                ServerMessage::TrackMuted {
                    peer_id: id,
                    track_id: track_id.clone(),
                    muted,
                },
            );
        }
    }

    /// Pauses (`muted`) or resumes `subscriber`'s subscriptions to `key`. Whatever was not
    /// forwarded in between leaves no gap in their numbering, and video resumes at a keyframe.
    fn mute_subscriptions(&mut self, now: Instant, subscriber: PeerId, key: TrackKey, muted: bool) {
        let Some(peer) = self.members.get_mut(subscriber) else {
            return;
        };
        let mut video = false;
        for (_, sub) in peer
            .subscriptions
            .iter_mut()
            .filter(|(_, s)| s.source == key)
        {
            sub.resync();
            if sub.kind == MediaKind::Video {
                video = true;
                if muted {
                    sub.selector.set_target(None);
                }
            }
        }
        if video && !muted {
            self.reallocate(now, subscriber);
        }
    }

    /// A subscriber reported the size of a tile.
    fn on_tile_size(&mut self, now: Instant, id: PeerId, track_id: &str, width: u32, height: u32) {
        let key = TrackKey::parse(track_id);
        let sub = key.and_then(|k| self.members.get_mut(id)?.subscription_of_mut(k));
        let Some(sub) = sub else {
            // Not an error: a resize can race the track's removal.
            debug!(
                peer = id,
                track = track_id,
                "tile size for a track not received"
            );
            return;
        };
        sub.tile = Some((width.min(MAX_TILE_SIDE), height.min(MAX_TILE_SIDE)));
        self.reallocate(now, id);
    }

    /// Data arrived on one of member `id`'s data channels: a chat line, if it is the chat
    /// channel's and parses; otherwise a message to relay (`data_channels.rs`).
    pub(super) fn on_channel_data(&mut self, now: Instant, id: PeerId, data: &ChannelData) {
        let is_chat = self
            .members
            .get(id)
            .is_some_and(|p| p.chat_channel == Some(data.id));
        if !is_chat {
            return self.on_relayed_data(now, id, data);
        }
        let line = (data.data.len() <= MAX_CHANNEL_MESSAGE)
            .then(|| serde_json::from_slice::<ChatIn>(&data.data).ok())
            .flatten();
        match line {
            Some(line) => self.on_chat(id, line.text),
            None => self.counters.drop(DropReason::BadChannelMessage),
        }
    }

    /// A chat line from member `id`: to the others' chat channels, or their WebSockets.
    fn on_chat(&mut self, id: PeerId, text: String) {
        if self.members.get(id).is_some_and(|p| !p.permissions.chat) {
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
        let Some(peer) = self.members.get(id) else {
            return;
        };
        let line = ChatOut {
            from: id,
            name: peer.name.clone(),
            text,
        };
        let room = peer.room.clone();
        self.outbox.event(RoomEvent::Chat {
            room: room.to_string(),
            peer_id: id,
            name: line.name.clone(),
            text: line.text.clone(),
        });
        self.relay_chat(&room, Some(id), line);
    }

    /// Hands chat `line` to every member of `room` but `except`: on its chat data channel when
    /// open, else as a `chat` message.
    pub(super) fn relay_chat(&mut self, room: &str, except: Option<PeerId>, line: ChatOut) {
        let Ok(json) = serde_json::to_string(&line) else {
            return;
        };
        let to = match except {
            Some(id) => self.members.members_except(room, id),
            None => self.members.members_of(room),
        };
        for other in to {
            let Some(o) = self.members.get_mut(other) else {
                continue;
            };
            let mut channel = o.chat_channel.and_then(|cid| o.rtc.channel(cid));
            if channel
                .as_mut()
                .is_some_and(|ch| ch.buffered_amount() + json.len() > MAX_CHANNEL_BUFFERED_BYTES)
            {
                self.counters.drop(DropReason::ChannelBufferFull);
                continue;
            }
            let written = channel.is_some_and(|mut ch| ch.write(false, json.as_bytes()).is_ok());
            if written {
                self.members.mark_dirty(other);
            } else {
                self.outbox.signal(
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

    /// Removes a member everywhere. With `reason`, it is told why first.
    pub(super) fn remove_peer(&mut self, now: Instant, id: PeerId, reason: Option<&str>) {
        let Some(mut peer) = self.members.remove(id) else {
            return;
        };
        if let Some(reason) = reason {
            self.error(id, ErrorCode::MediaTimeout, reason);
        }
        peer.rtc.disconnect();
        self.forget_member(now, id, &peer, reason.unwrap_or("left or disconnected"));
    }

    /// Takes member `id` (already out of the member table) out of everything else: the
    /// demultiplexer, timers, the tracks it took and published, the recording of its room if it
    /// was the last one; tells the room it left.
    pub(super) fn forget_member(&mut self, now: Instant, id: PeerId, peer: &Peer, reason: &str) {
        self.viewers.remove(id);
        self.demux.remove_peer(id);
        self.timers.clear((id, Timer::Session));
        self.timers.clear((id, Timer::Liveness));
        info!(peer = id, room = %peer.room, reason, "left");
        for (slot, sub) in &peer.subscriptions {
            self.router.detach(
                sub.source,
                SinkRef::Subscription {
                    subscriber: id,
                    slot,
                },
            );
        }
        self.remove_outputs_of(|k| k.peer == id);
        for key in self.router.keys_of(id) {
            self.router.unpublish(key);
            self.end_recorded_track(key);
            self.trunk_track_gone(key);
            self.announce_unpublished(&peer.room, key);
            self.forget_speaker(&peer.room, key);
        }
        self.outbox.event(RoomEvent::ParticipantLeft {
            room: peer.room.to_string(),
            peer_id: id,
            name: peer.name.clone(),
        });
        self.release_roster(now, &peer.room);
        self.close_room_if_empty(&peer.room);
        self.end_recording_if_room_gone(now, &peer.room);
        // Its capabilities no longer hold the others back.
        self.apply_codec_policy(&peer.room);
        for other in self.members.members_of(&peer.room) {
            if let Some(o) = self.members.get_mut(other) {
                o.unsubscribe(|k| k.peer == id);
            }
            self.close_relays_from(other, id);
            self.outbox
                .signal(other, ServerMessage::PeerLeft { peer_id: id });
            self.negotiate(other);
        }
        self.outbox.peer_closed(id);
    }

    /// Queues the room event for track `key`'s unpublication.
    fn announce_unpublished(&mut self, room: &str, key: TrackKey) {
        self.outbox.event(RoomEvent::TrackUnpublished {
            room: room.to_owned(),
            peer_id: key.peer,
            track_id: key.id(),
        });
    }

    /// Removes ingest `id`'s track from every member of `room` and tells them it left.
    pub(super) fn drop_ingest_from_room(&mut self, room: &str, id: PeerId) {
        for member in self.members.members_of(room) {
            if let Some(p) = self.members.get_mut(member) {
                p.unsubscribe(|k| *k == Ingest::track(id));
            }
            self.outbox
                .signal(member, ServerMessage::PeerLeft { peer_id: id });
            self.negotiate(member);
        }
    }

    /// Sends an offer to `id` if its subscriptions changed and no offer is outstanding.
    pub(super) fn negotiate(&mut self, id: PeerId) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        if let Some((sdp, tracks)) = peer.create_offer() {
            // As in answers: a browser answering sends the first codec of the offer it accepts.
            let sdp = match peer.video_codec_asked {
                Some(codec) => policy::prefer_codec_in_sdp(&sdp, codec),
                None => sdp,
            };
            self.outbox.signal(id, ServerMessage::Offer { sdp, tracks });
            self.members.mark_dirty(id);
        }
        self.detach_removed(id);
    }

    /// Detaches the subscriptions member `id` removed from their tracks.
    fn detach_removed(&mut self, id: PeerId) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        for (slot, key) in peer.take_removed() {
            self.router.detach(
                key,
                SinkRef::Subscription {
                    subscriber: id,
                    slot,
                },
            );
        }
    }
}

/// Gives `peer` a subscription to track `key` and attaches it to the track.
fn subscribe(router: &mut Router, peer: &mut Peer, key: TrackKey) {
    let Some(kind) = router.track(key).map(|t| t.kind) else {
        return;
    };
    let slot = peer.subscribe(key, kind);
    router.attach(
        key,
        SinkRef::Subscription {
            subscriber: peer.id,
            slot,
        },
    );
}
