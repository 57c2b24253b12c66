//! The sans-IO state machine of one worker: rooms, peers and the forwarding between them.
//!
//! Inputs are datagrams ([`Core::handle_datagram`]), signaling messages ([`Core::handle_message`],
//! [`Core::disconnect`]) and time ([`Core::handle_timeout`]). Outputs come from
//! [`Core::poll_output`] until it returns `None`, and [`Core::poll_timeout`] says when time must
//! be fed next. Nothing here reads a clock, touches a socket or spawns a thread.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::media::{MediaKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::rtp::{RtpPacket as Str0mRtp, RtpWrite};
use str0m::{Event, IceConnectionState, Input, Output as RtcOutput};
use tracing::{debug, info, warn};

use crate::config::CoreConfig;
use crate::counters::{Counters, DropReason, StatsSnapshot};
use crate::demux::{Demux, FlowChange};
use crate::peer::Peer;
use crate::permissions::{offer_sends_media, Permissions};
use crate::pool::BufferPool;
use crate::protocol::{
    ChatIn, ChatOut, ClientMessage, ErrorCode, PeerId, PublishedTrack, ServerMessage,
    PROTOCOL_VERSION,
};
use crate::room::Room;
use crate::track::{Publication, Subscription, TrackKey};
use crate::wire::{classify, DatagramKind, RtpPacket, StunPacket};

mod forward;
mod members;
mod plain;
mod quality;

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
/// Most receivers of one plain RTP output.
const MAX_OUTPUT_TARGETS: usize = 16;

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    /// UDP on the media socket, or TCP: a frame on the ICE-TCP connection of this (source,
    /// destination) pair.
    pub proto: Protocol,
    /// Local address to send from (one of the announced candidates).
    pub source: SocketAddr,
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes: sealed by str0m, or built by the core in a pooled buffer. Give the buffer back
    /// with [`Core::recycle`] once sent.
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
    /// A 5-tuple became valid or stopped being valid (for an in-kernel guard).
    Flow(FlowChange),
    /// A plain RTP output is gone (removed, or its track ended): the shell drops what it set up
    /// for it (its kernel fan-out entry).
    OutputClosed(u64),
}

/// Who a datagram is for.
enum Route {
    /// A browser (or other WebRTC) peer's session.
    Peer(PeerId),
    /// A plain RTP ingest.
    Ingest(PeerId),
}

/// The forwarding core of one worker.
pub struct Core {
    config: CoreConfig,
    peers: HashMap<PeerId, Peer>,
    rooms: HashMap<Arc<str>, Room>,
    ingests: HashMap<PeerId, plain::Ingest>,
    ingest_by_source: HashMap<SocketAddr, PeerId>,
    outputs: HashMap<u64, plain::PlainOutput>,
    outputs_by_track: HashMap<TrackKey, Vec<u64>>,
    closed_outputs: VecDeque<u64>,
    pool: BufferPool,
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
    /// Simulcast layers subscribers want per track since the last quality tick (bit i: layer i).
    layer_demand: HashMap<TrackKey, u8>,
    /// When layer choices and hints are next revisited.
    next_quality_tick: Option<Instant>,
}

impl Core {
    /// A core with no rooms.
    pub fn new(config: CoreConfig) -> Self {
        Core {
            config,
            peers: HashMap::new(),
            rooms: HashMap::new(),
            ingests: HashMap::new(),
            ingest_by_source: HashMap::new(),
            outputs: HashMap::new(),
            outputs_by_track: HashMap::new(),
            closed_outputs: VecDeque::new(),
            pool: BufferPool::default(),
            demux: Demux::default(),
            counters: Counters::default(),
            transmits: VecDeque::with_capacity(256),
            signals: VecDeque::new(),
            closed: VecDeque::new(),
            dirty: Vec::with_capacity(64),
            events: VecDeque::with_capacity(64),
            scratch: Vec::new(),
            layer_demand: HashMap::new(),
            next_quality_tick: None,
        }
    }

    /// Counters since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Rooms, peers, plain legs and counters now.
    pub fn stats(&self) -> StatsSnapshot {
        let mut stats = StatsSnapshot::new(self.rooms.len(), self.peers.len(), &self.counters);
        stats.ingests = self.ingest_infos();
        stats.outputs = self.output_infos();
        stats
    }

    /// Counts a refusal the shell made on the core's behalf (ICE-TCP framing and limits).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.counters.drop(reason);
    }

    /// Takes back the buffer of a sent [`Transmit`] for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
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
                token: _,
            } => self.join(now, peer, version, room, name, capacity, Permissions::ALL),
            _ if !self.peers.contains_key(&peer) => {
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
            ClientMessage::GetStats => self.on_get_stats(now, peer),
            ClientMessage::Chat { text } => self.on_chat(now, peer, text),
            ClientMessage::Leave => self.remove_peer(now, peer, None),
            ClientMessage::Ping => self.signal(peer, ServerMessage::Pong),
        }
        self.drive(now);
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
        self.join(now, peer, version, room, name, capacity, permissions);
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
        self.receive(now, Protocol::Udp, source, destination, buf);
    }

    /// Handles one RFC 4571 frame (its length prefix removed) that arrived on the ICE-TCP
    /// connection from `source` to `destination`.
    pub fn handle_tcp_frame(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) {
        self.receive(now, Protocol::Tcp, source, destination, buf);
    }

    /// The TCP connection from `source` to `destination` closed: nothing reaches its peer that
    /// way any more.
    pub fn tcp_closed(&mut self, source: SocketAddr, destination: SocketAddr) {
        self.demux.forget(Protocol::Tcp, (source, destination));
    }

    fn receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) {
        let peer_id = match self.route(proto, source, destination, buf) {
            Some(Route::Peer(id)) => id,
            Some(Route::Ingest(id)) => {
                self.on_ingest_datagram(now, id, buf);
                self.drive(now);
                return;
            }
            None => return,
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
                proto,
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

    /// Finds the peer or ingest a datagram is for, counting a drop when there is none. Plain RTP
    /// ingests are UDP only.
    fn route(
        &mut self,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) -> Option<Route> {
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
                                .learn(peer, proto, tuple, self.config.max_paths_per_peer);
                        }
                        (found, DropReason::UnknownUfrag)
                    }
                    None => (
                        self.demux.by_tuple(proto, &tuple),
                        DropReason::UnknownSource,
                    ),
                }
            }
            DatagramKind::Rtp => {
                let Ok(rtp) = RtpPacket::new_checked(buf) else {
                    self.counters.drop(DropReason::MalformedRtp);
                    return None;
                };
                match self.demux.by_tuple(proto, &tuple) {
                    Some(peer) => (Some(peer), DropReason::UnknownSource),
                    None if proto != Protocol::Udp => (None, DropReason::UnknownSource),
                    None => match self.ingest_for(source, rtp.payload_type()) {
                        Some(ingest) => return Some(Route::Ingest(ingest)),
                        None => (None, DropReason::UnknownSource),
                    },
                }
            }
            DatagramKind::Rtcp if buf.len() < 8 => {
                self.counters.drop(DropReason::MalformedRtcp);
                return None;
            }
            // An ingest source's RTCP (sender reports) has nothing to tell the SFU.
            DatagramKind::Rtcp
                if proto == Protocol::Udp && self.ingest_by_source.contains_key(&source) =>
            {
                return None
            }
            DatagramKind::Rtcp | DatagramKind::Dtls => (
                self.demux.by_tuple(proto, &tuple),
                DropReason::UnknownSource,
            ),
            DatagramKind::Unknown => (None, DropReason::UnknownProtocol),
        };
        if found.is_none() {
            self.counters.drop(miss);
        }
        found.map(Route::Peer)
    }

    /// The room named `name`, created with `capacity` if it does not exist, and its shared key.
    fn room_entry(&mut self, name: &str, capacity: usize) -> (Arc<str>, &mut Room) {
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

    /// Removes room `name` when no member and no ingest is left in it.
    fn forget_room_if_empty(&mut self, name: &str) {
        if self.rooms.get(name).is_some_and(Room::is_empty) {
            self.rooms.remove(name);
        }
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
        if self.next_quality_tick.is_some_and(|t| now >= t) {
            self.quality_tick(now);
            self.next_quality_tick = Some(now + quality::QUALITY_TICK);
        }
        if self.peers.is_empty() {
            self.next_quality_tick = None;
        }
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
        if let Some(change) = self.demux.next_change() {
            return Some(Output::Flow(change));
        }
        if let Some(id) = self.closed_outputs.pop_front() {
            return Some(Output::OutputClosed(id));
        }
        self.closed.pop_front().map(Output::Closed)
    }

    /// When [`Core::handle_timeout`] must be called next, or `None` with no peers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sessions = self
            .peers
            .values()
            .map(|p| {
                if p.connected {
                    p.next_timeout
                } else {
                    p.next_timeout
                        .min(p.joined_at + self.config.connect_timeout)
                }
            })
            .min()?;
        Some(self.next_quality_tick.map_or(sessions, |t| sessions.min(t)))
    }

    /// Polls every dirty peer's session until it has nothing more, acting on its events.
    fn drive(&mut self, now: Instant) {
        while let Some(id) = self.dirty.pop() {
            self.poll_peer(now, id);
            while let Some(event) = self.events.pop_front() {
                self.on_event(now, id, event);
            }
            if self.peers.get(&id).is_some_and(|p| !p.rtc.is_alive()) {
                self.remove_peer(now, id, Some("the WebRTC session closed"));
            }
        }
    }

    fn poll_peer(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.dirty = false;
        if std::mem::take(&mut peer.written) {
            // str0m sends what `write_rtp` queued only when time is fed to it: without this a
            // forwarded packet waits for the session's next timer, about a millisecond.
            if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                debug!(peer = id, error = %e, "session refused time");
            }
        }
        loop {
            match peer.rtc.poll_output() {
                Ok(RtcOutput::Timeout(t)) => {
                    peer.next_timeout = t;
                    break;
                }
                Ok(RtcOutput::Transmit(t)) => self.transmits.push_back(Transmit {
                    proto: t.proto,
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
            Event::RtpPacket(packet) => self.forward(id, packet),
            Event::KeyframeRequest(req) => self.on_subscriber_keyframe_request(now, id, req.mid),
            Event::EgressBitrateEstimate(kind) => self.on_estimate(id, kind),
            Event::MediaEgressStats(stats) => self.on_egress_stats(id, &stats),
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
