//! The sans-IO state machine of one worker: rooms, peers and the forwarding between them.
//!
//! Inputs are datagrams ([`Core::handle_datagram`]), signaling messages ([`Core::handle_message`],
//! [`Core::disconnect`]) and time ([`Core::handle_timeout`]). Outputs come from
//! [`Core::poll_output`] until it returns `None`, and [`Core::poll_timeout`] says when time must
//! be fed next. Nothing here reads a clock, touches a socket or spawns a thread.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use str0m::media::{MediaKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::rtp::{RtpPacket as Str0mRtp, RtpWrite};
use str0m::{Event, IceConnectionState, Input, Output as RtcOutput};
use tracing::{debug, info, warn};

use crate::config::CoreConfig;
use crate::counters::{Counters, DropReason, StatsSnapshot};
use crate::demux::Demux;
use crate::peer::Peer;
use crate::protocol::{
    ChatIn, ChatOut, ClientMessage, ErrorCode, PeerId, PublishedTrack, ServerMessage,
    PROTOCOL_VERSION,
};
use crate::room::Room;
use crate::track::{Publication, Subscription, TrackKey};
use crate::wire::{classify, DatagramKind, RtpPacket, StunPacket};

/// Longest room or display name, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Longest chat line, in characters.
const MAX_CHAT_CHARS: usize = 2000;
/// Most tracks one peer may publish.
const MAX_PUBLICATIONS: usize = 16;
/// Largest data-channel message we parse as chat.
const MAX_CHANNEL_MESSAGE: usize = 8 * 1024;
/// Default room capacity when the creating join names none.
const DEFAULT_CAPACITY: usize = 64;

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    /// Local address to send from (one of the announced candidates).
    pub source: SocketAddr,
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes. The buffer was allocated by str0m when it sealed the packet.
    pub contents: Vec<u8>,
}

/// What the core asks the shell to do.
#[derive(Debug)]
pub enum Output {
    /// Send a datagram on the worker's media socket.
    Transmit(Transmit),
    /// Send a signaling message to a peer's WebSocket.
    Signal(PeerId, ServerMessage),
    /// The peer is gone from the core; the shell forgets its WebSocket route.
    Closed(PeerId),
}

/// The forwarding core of one worker.
pub struct Core {
    config: CoreConfig,
    peers: HashMap<PeerId, Peer>,
    rooms: HashMap<String, Room>,
    demux: Demux,
    counters: Counters,
    transmits: VecDeque<Transmit>,
    signals: VecDeque<(PeerId, ServerMessage)>,
    closed: VecDeque<PeerId>,
    /// Peers to poll in the current drive (reused, never shrunk).
    dirty: Vec<PeerId>,
    /// Events polled from a peer, handled after its polling (reused).
    events: VecDeque<Event>,
    /// Scratch list of peer ids (reused).
    scratch: Vec<PeerId>,
}

impl Core {
    /// A core with no rooms.
    pub fn new(config: CoreConfig) -> Self {
        Core {
            config,
            peers: HashMap::new(),
            rooms: HashMap::new(),
            demux: Demux::default(),
            counters: Counters::default(),
            transmits: VecDeque::with_capacity(256),
            signals: VecDeque::new(),
            closed: VecDeque::new(),
            dirty: Vec::with_capacity(64),
            events: VecDeque::with_capacity(64),
            scratch: Vec::new(),
        }
    }

    /// Counters since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Rooms, peers and counters now.
    pub fn stats(&self) -> StatsSnapshot {
        StatsSnapshot::new(self.rooms.len(), self.peers.len(), &self.counters)
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether `peer` is joined here.
    pub fn has_peer(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }

    /// Number of rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Handles one signaling message from `peer`'s connection.
    pub fn handle_message(&mut self, now: Instant, peer: PeerId, msg: ClientMessage) {
        let _span = tracing::info_span!("peer", id = peer).entered();
        match msg {
            ClientMessage::Join {
                version,
                room,
                name,
                capacity,
            } => self.join(now, peer, version, room, name, capacity),
            _ if !self.peers.contains_key(&peer) => {
                self.error(peer, ErrorCode::NotJoined, "send join first");
            }
            ClientMessage::Offer { sdp, tracks } => self.on_offer(now, peer, &sdp, tracks),
            ClientMessage::Answer { sdp } => self.on_answer(now, peer, &sdp),
            ClientMessage::Candidate { candidate } => self.on_candidate(peer, &candidate),
            ClientMessage::Mute { mid, muted } => self.on_mute(peer, &mid, muted),
            ClientMessage::Chat { text } => self.on_chat(now, peer, text),
            ClientMessage::Leave => self.remove_peer(now, peer, None),
            ClientMessage::Ping => self.signal(peer, ServerMessage::Pong),
        }
        self.drive(now);
    }

    /// The peer's WebSocket closed: it leaves without a word.
    pub fn disconnect(&mut self, now: Instant, peer: PeerId) {
        self.remove_peer(now, peer, None);
        self.drive(now);
    }

    /// Handles one datagram received on the media socket at `destination` from `source`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) {
        let Some(peer_id) = self.route(source, destination, buf) else {
            return;
        };
        let Ok(contents) = DatagramRecv::try_from(buf) else {
            self.counters.drop(DropReason::Rejected);
            return;
        };
        let Some(peer) = self.peers.get_mut(&peer_id) else {
            return;
        };
        let _span = Peer::span(peer_id).entered();
        peer.last_heard = now;
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        if let Err(e) = peer.rtc.handle_input(input) {
            debug!(peer = peer_id, error = %e, "datagram refused by the session");
            self.counters.drop(DropReason::Rejected);
        }
        self.mark_dirty(peer_id);
        self.drive(now);
    }

    /// Finds the peer a datagram is for, counting a drop when there is none.
    fn route(&mut self, source: SocketAddr, destination: SocketAddr, buf: &[u8]) -> Option<PeerId> {
        if buf.len() > self.config.max_datagram {
            self.counters.drop(DropReason::Oversized);
            return None;
        }
        let tuple = (source, destination);
        let (found, miss) = match classify(buf) {
            DatagramKind::Stun => {
                let Ok(stun) = StunPacket::new_checked(buf) else {
                    self.counters.drop(DropReason::MalformedStun);
                    return None;
                };
                match stun.local_ufrag() {
                    Some(ufrag) => {
                        let found = self.demux.by_ufrag(ufrag);
                        if let Some(peer) = found {
                            self.demux
                                .learn(peer, tuple, self.config.max_paths_per_peer);
                        }
                        (found, DropReason::UnknownUfrag)
                    }
                    None => (self.demux.by_tuple(&tuple), DropReason::UnknownSource),
                }
            }
            DatagramKind::Rtp => {
                if RtpPacket::new_checked(buf).is_err() {
                    self.counters.drop(DropReason::MalformedRtp);
                    return None;
                }
                (self.demux.by_tuple(&tuple), DropReason::UnknownSource)
            }
            DatagramKind::Rtcp if buf.len() < 8 => {
                self.counters.drop(DropReason::MalformedRtcp);
                return None;
            }
            DatagramKind::Rtcp | DatagramKind::Dtls => {
                (self.demux.by_tuple(&tuple), DropReason::UnknownSource)
            }
            DatagramKind::Unknown => (None, DropReason::UnknownProtocol),
        };
        if found.is_none() {
            self.counters.drop(miss);
        }
        found
    }

    /// Feeds time to every peer whose deadline passed, and drops peers that never connected.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = std::mem::take(&mut self.scratch);
        expired.clear();
        for (id, peer) in &mut self.peers {
            if now >= peer.liveness_deadline(&self.config) {
                expired.push(*id);
                continue;
            }
            if peer.next_timeout <= now {
                if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                    warn!(peer = id, error = %e, "session failed on timeout");
                }
                if !peer.dirty {
                    peer.dirty = true;
                    self.dirty.push(*id);
                }
            }
        }
        for id in expired.drain(..) {
            info!(peer = id, "no ICE/DTLS session within the connect timeout");
            self.remove_peer(
                now,
                id,
                Some("no WebRTC connection within the connect timeout"),
            );
        }
        self.scratch = expired;
        self.drive(now);
    }

    /// The next output to act on, or `None` when there is nothing until more input.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(Output::Transmit(t));
        }
        if let Some((peer, msg)) = self.signals.pop_front() {
            return Some(Output::Signal(peer, msg));
        }
        self.closed.pop_front().map(Output::Closed)
    }

    /// When [`Core::handle_timeout`] must be called next, or `None` with no peers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .map(|p| {
                if p.connected {
                    p.next_timeout
                } else {
                    p.next_timeout
                        .min(p.joined_at + self.config.connect_timeout)
                }
            })
            .min()
    }

    fn join(
        &mut self,
        now: Instant,
        id: PeerId,
        version: u32,
        room: String,
        name: String,
        capacity: Option<u32>,
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
            .get(&room)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        if self.rooms.get(&room).is_some_and(Room::is_full) {
            return self.error(id, ErrorCode::RoomFull, "the room is full");
        }
        let mut peer = Peer::new(id, name, room.clone(), &self.config.candidates, now);
        let ufrag = peer.local_ufrag();
        self.demux.add_peer(id, &ufrag);
        let mut others = Vec::with_capacity(members.len());
        for other_id in &members {
            let Some(other) = self.peers.get_mut(other_id) else {
                continue;
            };
            for publication in &other.publications {
                let key = TrackKey {
                    peer: *other_id,
                    mid: publication.mid,
                };
                peer.subscriptions
                    .push(Subscription::new(key, publication.kind));
            }
            others.push(other.info());
        }
        let info = peer.info();
        info!(peer = id, room = %room, name = %peer.name, "joined");
        self.peers.insert(id, peer);
        self.rooms
            .entry(room.clone())
            .or_insert_with(|| Room::new(capacity))
            .members
            .push(id);
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
        self.mark_dirty(id);
    }

    fn on_offer(&mut self, now: Instant, id: PeerId, sdp: &str, tracks: Vec<PublishedTrack>) {
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
    fn update_publications(&mut self, now: Instant, id: PeerId, tracks: &[PublishedTrack]) {
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
                    peer.publications.push(Publication {
                        mid,
                        kind,
                        source: t.source,
                        muted: t.muted,
                        last_keyframe_request: None,
                    });
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
            self.announce_mute(id, mid, muted);
        }
    }

    fn publish(&mut self, _now: Instant, id: PeerId, mid: Mid) {
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
            if let Some(o) = self.peers.get_mut(&other) {
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

    fn unpublish(&mut self, id: PeerId, mid: Mid) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.publications.retain(|p| p.mid != mid);
        let key = TrackKey { peer: id, mid };
        info!(peer = id, track = %key.id(), "unpublished");
        let room = peer.room.clone();
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

    fn on_answer(&mut self, now: Instant, id: PeerId, sdp: &str) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        match peer.accept_answer(sdp) {
            Ok(opened) => {
                for source in opened {
                    self.request_keyframe(now, source);
                }
            }
            Err(e) => {
                self.counters.drop(DropReason::BadSdp);
                self.error(id, ErrorCode::BadSdp, &e.to_string());
            }
        }
        self.mark_dirty(id);
        self.negotiate(id);
    }

    fn on_candidate(&mut self, id: PeerId, line: &str) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let line = line.strip_prefix("a=").unwrap_or(line);
        match str0m::Candidate::from_sdp_string(line) {
            Ok(c) => peer.rtc.add_remote_candidate(c),
            Err(e) => debug!(peer = id, error = %e, "ignoring unparsable candidate"),
        }
    }

    fn on_mute(&mut self, id: PeerId, mid: &str, muted: bool) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let mid = Mid::from(mid);
        match peer.publication_mut(mid) {
            Some(p) if p.muted != muted => {
                p.muted = muted;
                self.announce_mute(id, mid, muted);
            }
            Some(_) => {}
            None => self.error(
                id,
                ErrorCode::UnknownTrack,
                "no published track with that mid",
            ),
        }
    }

    fn announce_mute(&mut self, id: PeerId, mid: Mid, muted: bool) {
        let Some(room) = self.peers.get(&id).map(|p| p.room.clone()) else {
            return;
        };
        let track_id = TrackKey { peer: id, mid }.id();
        for other in self.room_members_except(&room, id) {
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

    fn on_chat(&mut self, _now: Instant, id: PeerId, text: String) {
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
    fn remove_peer(&mut self, _now: Instant, id: PeerId, reason: Option<&str>) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        if let Some(reason) = reason {
            self.error(id, ErrorCode::MediaTimeout, reason);
        }
        peer.rtc.disconnect();
        self.demux.remove_peer(id);
        info!(peer = id, room = %peer.room, "left");
        let remaining = match self.rooms.get_mut(&peer.room) {
            Some(room) => {
                room.members.retain(|m| *m != id);
                room.members.clone()
            }
            None => Vec::new(),
        };
        if remaining.is_empty() {
            self.rooms.remove(&peer.room);
        }
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
    fn negotiate(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if let Some((sdp, tracks)) = peer.create_offer() {
            self.signal(id, ServerMessage::Offer { sdp, tracks });
            self.mark_dirty(id);
        }
    }

    /// Polls every dirty peer's session until it has nothing more, acting on its events.
    fn drive(&mut self, now: Instant) {
        while let Some(id) = self.dirty.pop() {
            self.poll_peer(id);
            while let Some(event) = self.events.pop_front() {
                self.on_event(now, id, event);
            }
        }
    }

    fn poll_peer(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.dirty = false;
        loop {
            match peer.rtc.poll_output() {
                Ok(RtcOutput::Timeout(t)) => {
                    peer.next_timeout = t;
                    break;
                }
                Ok(RtcOutput::Transmit(t)) => self.transmits.push_back(Transmit {
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Ok(RtcOutput::Event(e)) => self.events.push_back(e),
                Err(e) => {
                    warn!(peer = id, error = %e, "session failed");
                    peer.rtc.disconnect();
                    break;
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, id: PeerId, event: Event) {
        match event {
            Event::RtpPacket(packet) => self.forward(now, id, packet),
            Event::KeyframeRequest(req) => {
                let source = self
                    .peers
                    .get(&id)
                    .and_then(|p| p.subscription_by_mid(req.mid))
                    .map(|s| s.source);
                if let Some(source) = source {
                    self.request_keyframe(now, source);
                }
            }
            Event::Connected => {
                if let Some(p) = self.peers.get_mut(&id) {
                    info!(peer = id, "WebRTC connected");
                    p.connected = true;
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                info!(peer = id, "ICE disconnected");
                self.remove_peer(now, id, Some("the WebRTC connection was lost"));
            }
            Event::ChannelOpen(cid, label) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    if label == "chat" {
                        p.chat_channel = Some(cid);
                    }
                }
            }
            Event::ChannelClose(cid) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    if p.chat_channel == Some(cid) {
                        p.chat_channel = None;
                    }
                }
            }
            Event::ChannelData(data) => {
                let is_chat = self
                    .peers
                    .get(&id)
                    .is_some_and(|p| p.chat_channel == Some(data.id));
                let line = (is_chat && data.data.len() <= MAX_CHANNEL_MESSAGE)
                    .then(|| serde_json::from_slice::<ChatIn>(&data.data).ok())
                    .flatten();
                match line {
                    Some(line) => self.on_chat(now, id, line.text),
                    None => self.counters.drop(DropReason::BadChannelMessage),
                }
            }
            _ => {}
        }
        let closed = self.peers.get(&id).is_some_and(|p| !p.rtc.is_alive());
        if closed {
            self.remove_peer(now, id, Some("the WebRTC session closed"));
        }
    }

    /// Hands one incoming RTP packet to every member subscribed to its track.
    fn forward(&mut self, _now: Instant, from: PeerId, packet: Str0mRtp) {
        self.counters.received_packets += 1;
        let Some(publisher) = self.peers.get_mut(&from) else {
            return;
        };
        let ssrc = packet.header.ssrc;
        let Some(mid) = publisher.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid()) else {
            return;
        };
        let Some(publication) = publisher.publications.iter().find(|p| p.mid == mid) else {
            return;
        };
        if publication.muted {
            return;
        }
        let in_pt = packet.header.payload_type;
        let Some(params) = publisher
            .rtc
            .codec_config()
            .find(|p| p.pt() == in_pt)
            .copied()
        else {
            self.counters.drop(DropReason::NoMatchingCodec);
            return;
        };
        let key = TrackKey { peer: from, mid };
        let nackable = publication.kind == MediaKind::Video;
        let mut ext = packet.header.ext_vals.clone();
        // These name the publisher's m-line and transport; the subscriber's session sets its own.
        ext.mid = None;
        ext.rid = None;
        ext.rid_repair = None;
        ext.transport_cc = None;
        let Some(room) = self.rooms.get(&publisher.room) else {
            return;
        };
        for &member in &room.members {
            if member == from {
                continue;
            }
            let Some(sub_peer) = self.peers.get_mut(&member) else {
                continue;
            };
            let Some(leg) = sub_peer.subscriptions.iter_mut().find(|s| s.source == key) else {
                continue;
            };
            let Some(out_mid) = leg.open_mid() else {
                continue;
            };
            let rtc = &sub_peer.rtc;
            let Some((out_pt, clock_rate)) =
                leg.map_pt(in_pt, || rtc.codec_config().match_params(params).copied())
            else {
                self.counters.drop(DropReason::NoMatchingCodec);
                continue;
            };
            let Some(out) = leg.rewriter.rewrite(
                *ssrc,
                *packet.seq_no,
                packet.header.timestamp,
                packet.timestamp,
                clock_rate,
            ) else {
                self.counters.drop(DropReason::StaleSource);
                continue;
            };
            // No allocation of ours here: the payload `Arc` is shared by every leg. str0m allocates
            // twice per packet on its own: the decrypted payload (once, before this event) and the
            // sealed datagram (`DatagramSend`, per leg, in `poll_output`).
            let mut api = sub_peer.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(out_mid, None) else {
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(
                    out_pt,
                    out.seq.into(),
                    out.timestamp,
                    packet.timestamp,
                    packet.payload.clone(),
                )
                .marker(packet.header.marker)
                .ext_vals(ext.clone())
                .nackable(nackable),
            );
            self.counters.forwarded_packets += 1;
            self.counters.forwarded_bytes += packet.payload.len() as u64;
            if !sub_peer.dirty {
                sub_peer.dirty = true;
                self.dirty.push(member);
            }
        }
    }

    /// Asks the publisher of `source` for a keyframe, at most once per configured interval.
    fn request_keyframe(&mut self, now: Instant, source: TrackKey) {
        let interval = self.config.keyframe_request_interval;
        let Some(publisher) = self.peers.get_mut(&source.peer) else {
            return;
        };
        let Some(publication) = publisher
            .publications
            .iter_mut()
            .find(|p| p.mid == source.mid)
        else {
            return;
        };
        if publication.kind != MediaKind::Video
            || publication
                .last_keyframe_request
                .is_some_and(|t| now < t + interval)
        {
            return;
        }
        publication.last_keyframe_request = Some(now);
        if let Some(rx) = publisher
            .rtc
            .direct_api()
            .stream_rx_by_mid(source.mid, None)
        {
            rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
        }
        self.mark_dirty(source.peer);
    }

    fn room_members_except(&self, room: &str, except: PeerId) -> Vec<PeerId> {
        self.rooms
            .get(room)
            .map(|r| r.members.iter().copied().filter(|m| *m != except).collect())
            .unwrap_or_default()
    }

    fn mark_dirty(&mut self, id: PeerId) {
        if let Some(p) = self.peers.get_mut(&id) {
            if !p.dirty {
                p.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    fn signal(&mut self, peer: PeerId, msg: ServerMessage) {
        self.signals.push_back((peer, msg));
    }

    fn error(&mut self, peer: PeerId, code: ErrorCode, message: &str) {
        self.signal(
            peer,
            ServerMessage::Error {
                code,
                message: message.to_owned(),
            },
        );
    }
}
