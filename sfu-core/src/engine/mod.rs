//! The sans-IO state machine of one worker. [`Core`] owns the parts and orchestrates them; each
//! part keeps its own state behind narrow methods:
//!
//! - [`Members`]: rooms and members, each with its str0m session and subscriptions;
//! - [`Router`]: published tracks and their sinks, the per-packet fan-out;
//! - [`PlainLegs`]: plain RTP ingests (sources) and outputs (sinks);
//! - [`Recordings`]: rooms being recorded (a sink per room), frames for the shell's writer;
//! - [`Quality`]: layer choice, layer hints and stats per subscriber;
//! - [`Demux`]: which member a datagram is for; [`Deadlines`]: when each wants time;
//!   [`Outbox`]: what the shell is to do.
//!
//! Inputs are datagrams ([`Core::handle_datagram`]), signaling messages ([`Core::handle_message`],
//! [`Core::disconnect`]) and time ([`Core::handle_timeout`]). Outputs come from
//! [`Core::poll_output`] until it returns `None`, and [`Core::poll_timeout`] says when time must
//! be fed next. Nothing here reads a clock, touches a socket or spawns a thread.

mod admin;
mod cluster;
mod codecs;
mod data_channels;
mod footprint;
mod isolation;
mod plain;
mod recording;
mod signaling;
mod stop;
mod trunk;
mod whep;
mod whip;

pub use footprint::Footprint;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output as RtcOutput};
use tracing::{debug, info, warn};

use crate::cluster::ClusterRoster;
use crate::config::CoreConfig;
use crate::counters::{Counters, DropReason, StatsSnapshot};
use crate::demux::{Demux, FlowChange};
use crate::events::RoomEvent;
use crate::membership::Members;
use crate::outbox::{Egress, Outbox, Transmit};
use crate::plain_legs::PlainLegs;
use crate::protocol::{ErrorCode, PeerId, ServerMessage};
use crate::quality::{self, Quality};
use crate::recording::{RecordingOutput, Recordings};
use crate::router::{
    Arrival, Delivery, Origin, Refusal, RoutedPacket, Router, SinkRef, SinkSet, TrackKey,
};
use crate::timers::Deadlines;
use crate::trunk::{FanoutChange, TrunkId, TrunkSignal, Trunks};
use crate::viewers::Viewers;
use crate::wire::{classify, DatagramKind, RtpPacket, StunPacket};

pub use signaling::JoinRefusal;

/// What the core asks the shell to do.
#[derive(Debug)]
pub enum Action {
    /// Send a datagram on the worker's media socket (or an ICE-TCP connection).
    Transmit(Transmit),
    /// Send a signaling message to a member's WebSocket.
    Signal(PeerId, ServerMessage),
    /// The member is gone from the core; the shell forgets its WebSocket route.
    PeerClosed(PeerId),
    /// A 5-tuple became valid or stopped being valid (for an in-kernel guard).
    Flow(FlowChange),
    /// A plain RTP output is gone (removed, or its track ended): the shell drops what it set up
    /// for it (its kernel fan-out entry).
    PlainOutputClosed(u64),
    /// A recording wants something of the shell's writer (or a recording to be started).
    Record(RecordingOutput),
    /// Something happened in a room that the world outside the call may want to hear of
    /// (webhooks, and the other nodes of a cluster).
    RoomEvent(RoomEvent),
    /// A trunk description for another node's worker: the control plane carries it there
    /// ([`Core::handle_trunk_signal`] on that side).
    TrunkSignal(TrunkSignal),
    /// The kernel fan-out of plain trunks is to copy a hand-off SSRC to other far nodes, or to
    /// forget it; one that cannot be programmed is reported with [`Core::trunk_fanout_refused`].
    TrunkFanout(FanoutChange),
}

/// Who a datagram is for.
enum Route {
    /// A member's WebRTC session: media (RTP) or anything else its session handles.
    Member(PeerId, DatagramKind),
    /// A plain RTP ingest.
    Ingest(PeerId),
    /// A trunk to another node.
    Trunk(TrunkId),
}

/// How soon a member's session gets time after media arrived from it, at the latest: its
/// receive state (TWCC feedback, NACKs, receiver reports) moved, and media packets are handled
/// without the session's timeout pass.
const SESSION_SERVICE: Duration = Duration::from_millis(20);

/// A session is given the deadlines it sets within this of the time it was woken for, in the
/// same wake. str0m's pacer releases one packet per timeout and asks for the next a microsecond
/// later; each of those waiting for the shell's timer (a millisecond or more) sent probes at a
/// fraction of their rate, and a probe measures what was sent.
const SESSION_DEADLINE_SLACK: Duration = Duration::from_micros(50);

/// At most this many timeouts per session and wake (a probe burst is a few packets; the rest of
/// a large one waits for the next wake).
const SESSION_TIMEOUT_ROUNDS: usize = 32;

/// Room for the largest payload a datagram the core accepts can carry.
const RX_PAYLOAD_BYTES: usize = 2048;

/// The timers each member has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    /// Its str0m session wants time.
    Session,
    /// Check that it connected (before `Connected`) or is still heard from (after).
    Liveness,
}

/// The forwarding core of one worker.
pub struct Core {
    config: CoreConfig,
    members: Members,
    router: Router,
    plain: PlainLegs,
    recordings: Recordings,
    quality: Quality,
    demux: Demux,
    timers: Deadlines<(PeerId, Timer)>,
    outbox: Outbox,
    counters: Counters,
    /// WHEP viewers: what each follows, and its legs.
    viewers: Viewers,
    /// Members of other nodes (`--cluster`), by room; empty on a lone node.
    roster: ClusterRoster,
    /// Trunks to other nodes, and the members of those nodes in this node's rooms.
    trunks: Trunks,
    /// Events polled from a member's session, handled after its polling (reused).
    events: VecDeque<Event>,
    /// Where a member's media payload is decrypted to before its track keeps it (reused).
    rx_payload: Vec<u8>,
    /// The timers due in one [`Core::handle_timeout`] (reused).
    due: Vec<(PeerId, Timer)>,
}

impl Core {
    /// A core with no rooms.
    pub fn new(config: CoreConfig) -> Self {
        let fanout = config.trunk_fanout;
        Core {
            config,
            members: Members::default(),
            router: Router::default(),
            plain: PlainLegs::default(),
            recordings: Recordings::default(),
            quality: Quality::default(),
            demux: Demux::default(),
            timers: Deadlines::default(),
            outbox: Outbox::default(),
            counters: Counters::default(),
            viewers: Viewers::default(),
            roster: ClusterRoster::default(),
            trunks: Trunks::new(fanout),
            events: VecDeque::with_capacity(64),
            rx_payload: vec![0; RX_PAYLOAD_BYTES],
            due: Vec::new(),
        }
    }

    /// Counters since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Rooms, members, plain RTP legs and counters now.
    pub fn stats(&self) -> StatsSnapshot {
        let mut stats = StatsSnapshot::new(
            self.members.room_count(),
            self.members.len(),
            self.router.tracks().count(),
            &self.counters,
        );
        stats.ingests = self.ingest_infos();
        stats.outputs = self.output_infos();
        stats.trunks = self.trunk_infos();
        stats.timers = self.timers.len();
        stats.legs = self.members.leg_count();
        stats
    }

    /// Counts a refusal the shell made on the core's behalf (ICE-TCP framing and limits).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.counters.drop(reason);
    }

    /// Takes back the buffer of a sent [`Transmit`] for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.outbox.recycle(buf);
    }

    /// Number of members.
    pub fn peer_count(&self) -> usize {
        self.members.len()
    }

    /// Whether `peer` is a member here.
    pub fn has_peer(&self, peer: PeerId) -> bool {
        self.members.contains(peer)
    }

    /// Number of rooms.
    pub fn room_count(&self) -> usize {
        self.members.room_count()
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

    /// The TCP connection from `source` to `destination` closed: nothing reaches its member that
    /// way any more.
    pub fn tcp_closed(&mut self, source: SocketAddr, destination: SocketAddr) {
        self.demux.forget(Protocol::Tcp, (source, destination));
    }

    /// Feeds time to every member whose deadline passed, drops members that never connected or
    /// went silent, and revisits media quality when its tick is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Taken out first, so a session that is due again after its turn waits for the next call.
        let mut due = std::mem::take(&mut self.due);
        while let Some(key) = self.timers.pop_due(now) {
            due.push(key);
        }
        for (id, timer) in due.drain(..) {
            match timer {
                Timer::Session => self.isolated(now, id, |core| core.session_timeout(now, id)),
                Timer::Liveness => self.isolated(now, id, |core| core.check_liveness(now, id)),
            }
        }
        self.due = due;
        self.trunk_timeouts(now);
        if self.quality.tick_due(now, !self.members.is_empty()) {
            self.quality_tick(now);
        }
        self.drive(now);
    }

    /// Feeds time to member `id`'s session, and again to each deadline it then sets within
    /// [`SESSION_DEADLINE_SLACK`] of `now` (at most [`SESSION_TIMEOUT_ROUNDS`] times), polling it
    /// in between. Each round is fed the deadline itself, not `now` again: the pacer sends one
    /// packet per instant.
    fn session_timeout(&mut self, now: Instant, id: PeerId) {
        let mut at = now;
        for _ in 0..SESSION_TIMEOUT_ROUNDS {
            let Some(peer) = self.members.get_mut(id) else {
                return;
            };
            peer.session_deadline = None;
            if let Err(e) = peer.rtc.handle_input(Input::Timeout(at)) {
                warn!(peer = id, error = %e, "session failed on timeout");
            }
            self.drive_member(now, id);
            match self.members.get(id).and_then(|p| p.session_deadline) {
                Some(next) if next <= now + SESSION_DEADLINE_SLACK => at = at.max(next),
                _ => return,
            }
        }
    }

    /// The next thing for the shell to do, or `None` when there is nothing until more input.
    pub fn poll_output(&mut self) -> Option<Action> {
        if let Some(t) = self.outbox.next_transmit() {
            return Some(Action::Transmit(t));
        }
        if let Some((peer, msg)) = self.outbox.next_signal() {
            return Some(Action::Signal(peer, msg));
        }
        if let Some(change) = self
            .demux
            .next_change()
            .or_else(|| self.trunks.next_flow_change())
        {
            return Some(Action::Flow(change));
        }
        if let Some(id) = self.outbox.next_closed_output() {
            return Some(Action::PlainOutputClosed(id));
        }
        if let Some(output) = self.recordings.next_output() {
            return Some(Action::Record(output));
        }
        if let Some(event) = self.outbox.next_event() {
            return Some(Action::RoomEvent(event));
        }
        if let Some(signal) = self.trunks.next_signal() {
            return Some(Action::TrunkSignal(signal));
        }
        if let Some(change) = self.trunks.next_fanout_change() {
            return Some(Action::TrunkFanout(change));
        }
        self.outbox.next_closed_peer().map(Action::PeerClosed)
    }

    /// When [`Core::handle_timeout`] must be called next, or `None` with nothing to wait for.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.next(),
            self.quality.next_tick(),
            self.trunks.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) {
        let (id, kind) = match self.route(proto, source, destination, buf) {
            Some(Route::Member(id, kind)) => (id, kind),
            Some(Route::Ingest(id)) => {
                match self.plain.accept(id, buf, now) {
                    Ok((key, arrival)) => {
                        self.counters.received_packets += 1;
                        self.route_packet(key, arrival, None);
                    }
                    Err(reason) => self.counters.drop(reason),
                }
                self.drive(now);
                return;
            }
            Some(Route::Trunk(id)) => {
                return self.receive_trunk(now, id, proto, (source, destination), buf);
            }
            None => return,
        };
        if kind == DatagramKind::Rtp {
            self.isolated(now, id, |core| core.receive_media(now, id, buf));
            self.drive(now);
            return;
        }
        let Ok(contents) = DatagramRecv::try_from(buf) else {
            self.counters.drop(DropReason::Rejected);
            return;
        };
        let receive = Receive {
            proto,
            source,
            destination,
            contents,
        };
        self.isolated(now, id, |core| core.receive_session(now, id, kind, receive));
        self.drive(now);
    }

    /// One datagram (not media) for member `id`'s session.
    fn receive_session(&mut self, now: Instant, id: PeerId, kind: DatagramKind, receive: Receive) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        let _span = tracing::debug_span!("peer", id).entered();
        peer.last_heard = now;
        if let Err(e) = peer.rtc.handle_input(Input::Receive(now, receive)) {
            debug!(peer = id, error = %e, "datagram refused by the session");
            self.counters.drop(DropReason::Rejected);
        }
        if kind == DatagramKind::Rtcp {
            let mut egress = Egress {
                outbox: &mut self.outbox,
                counters: &mut self.counters,
                candidates: &self.config.candidates,
            };
            peer.answer_nacks(now, &self.router, &mut egress);
        }
        self.members.mark_dirty(id);
    }

    /// One SRTP media packet from member `id`: decrypted by its session straight into the
    /// payload buffer, without an event or the session's timeout pass, then routed.
    fn receive_media(&mut self, now: Instant, id: PeerId, buf: &[u8]) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        peer.last_heard = now;
        // Taken out while the packet is routed (a move, not a copy): the router borrows it.
        let mut payload = std::mem::take(&mut self.rx_payload);
        if let Some(rx) = peer.rtc.receive_rtp_direct(now, buf, &mut payload) {
            self.counters.received_packets += 1;
            peer.note_media(now, &mut self.counters);
            let pt = rx.header.payload_type;
            match peer.rtc.codec_config().find(|p| p.pt() == pt).copied() {
                Some(params) => {
                    let level = rx.header.ext_vals.audio_level;
                    let key = TrackKey {
                        peer: id,
                        mid: rx.mid,
                    };
                    let rid = rx.rid;
                    let arrival = Arrival::received(rx, &payload, params, rid, now);
                    self.service_session(now, id);
                    self.route_packet(key, arrival, level);
                }
                None => self.counters.drop(DropReason::NoMatchingCodec),
            }
        }
        self.rx_payload = payload;
    }

    /// Makes sure member `id`'s session gets time within [`SESSION_SERVICE`].
    fn service_session(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        let by = now + SESSION_SERVICE;
        if peer.session_deadline.is_some_and(|d| d > by) {
            peer.session_deadline = Some(by);
            self.timers.set((id, Timer::Session), by);
        }
    }

    /// Finds the member or ingest a datagram is for, counting a drop when there is none. Plain
    /// RTP ingests are UDP only.
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
        if let Some(trunk) = self.trunks.route(proto, tuple, buf) {
            return Some(Route::Trunk(trunk));
        }
        let kind = classify(buf);
        let (found, miss) = match kind {
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
                    None => match self.plain.ingest_for(source, rtp.payload_type()) {
                        Some((ingest, locked_now)) => {
                            if locked_now {
                                info!(ingest, %source, "plain RTP ingest locked to its first source");
                                self.note_ingest_flow(source, true);
                            }
                            return Some(Route::Ingest(ingest));
                        }
                        None => (None, DropReason::UnknownSource),
                    },
                }
            }
            DatagramKind::Rtcp if buf.len() < 8 => {
                self.counters.drop(DropReason::MalformedRtcp);
                return None;
            }
            // An ingest source's RTCP (sender reports) has nothing to tell the SFU.
            DatagramKind::Rtcp if proto == Protocol::Udp && self.plain.is_source(source) => {
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
        found.map(|id| Route::Member(id, kind))
    }

    /// Polls every dirty member's session until it has nothing more, acting on its events.
    fn drive(&mut self, now: Instant) {
        loop {
            while let Some(id) = self.members.next_dirty() {
                self.isolated(now, id, |core| core.drive_member(now, id));
            }
            // A trunk's events may touch members (a far track to offer), and members' the
            // trunks (a keyframe request).
            if !self.drive_trunks(now) {
                return;
            }
        }
    }

    /// Polls member `id`'s session until it has nothing more, acting on its events.
    fn drive_member(&mut self, now: Instant, id: PeerId) {
        self.poll_session(id);
        while let Some(event) = self.events.pop_front() {
            self.on_event(now, id, event);
        }
        if self.members.get(id).is_some_and(|p| !p.rtc.is_alive()) {
            self.remove_peer(now, id, Some("the WebRTC session closed"));
        }
    }

    /// Takes what member `id`'s session has: datagrams to the outbox, events for
    /// [`Core::on_event`], and its next deadline.
    fn poll_session(&mut self, id: PeerId) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        loop {
            match peer.rtc.poll_output() {
                Ok(RtcOutput::Timeout(t)) => {
                    peer.session_deadline = Some(t);
                    self.timers.set((id, Timer::Session), t);
                    break;
                }
                Ok(RtcOutput::Transmit(t)) => self.outbox.transmit(Transmit {
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
            Event::KeyframeRequest(req) => self.on_subscriber_keyframe_request(now, id, req.mid),
            Event::EgressBitrateEstimate(kind) => {
                if let Some(peer) = self.members.get_mut(id) {
                    quality::on_estimate(peer, kind);
                }
            }
            Event::MediaEgressStats(stats) => {
                if let Some(sub) = self
                    .members
                    .get_mut(id)
                    .and_then(|p| p.subscription_by_mid_mut(stats.mid))
                {
                    sub.stats.nacks = stats.nacks;
                }
            }
            Event::Connected => {
                if let Some(p) = self.members.get_mut(id) {
                    info!(peer = id, "WebRTC connected");
                    p.connected = true;
                    let deadline = p.liveness_deadline(&self.config);
                    self.timers.set((id, Timer::Liveness), deadline);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                info!(peer = id, "ICE disconnected");
                self.remove_peer(now, id, Some("the WebRTC connection was lost"));
            }
            Event::ChannelOpen(cid, label) => self.on_channel_open(now, id, cid, label),
            Event::ChannelClose(cid) => self.on_channel_close(id, cid),
            Event::ChannelData(data) => self.on_channel_data(now, id, &data),
            _ => {}
        }
    }

    /// Drops member `id` if it did not connect in time or went silent; otherwise looks again at
    /// its next liveness deadline.
    fn check_liveness(&mut self, now: Instant, id: PeerId) {
        let Some(deadline) = self
            .members
            .get(id)
            .map(|p| p.liveness_deadline(&self.config))
        else {
            return;
        };
        if now < deadline {
            self.timers.set((id, Timer::Liveness), deadline);
            return;
        }
        let connected = self.members.get(id).is_some_and(|p| p.connected);
        if connected {
            info!(peer = id, "nothing heard within the idle timeout");
            self.remove_peer(now, id, Some("the WebRTC connection was lost"));
        } else {
            info!(peer = id, "no ICE/DTLS session within the connect timeout");
            self.remove_peer(
                now,
                id,
                Some("no WebRTC connection within the connect timeout"),
            );
        }
    }

    /// Routes one packet of track `key` to its sinks; `level` is its RFC 6464 audio level, for
    /// the room's speaker detection.
    fn route_packet(&mut self, key: TrackKey, arrival: Arrival<'_>, level: Option<i8>) {
        let at = arrival.at;
        let mut sinks = CoreSinks {
            members: &mut self.members,
            plain: &mut self.plain,
            recordings: &mut self.recordings,
            trunks: &mut self.trunks,
            egress: Egress {
                outbox: &mut self.outbox,
                counters: &mut self.counters,
                candidates: &self.config.candidates,
            },
        };
        let routed = self.router.route(key, arrival, &mut sinks);
        while let Some((track, layer)) = self.router.next_due_keyframe() {
            self.request_keyframe(at, track, layer);
        }
        self.request_recorder_keyframes(at);
        let codec = match routed {
            Ok(codec) => codec,
            Err(Refusal::Dropped(reason)) => return self.counters.drop(reason),
            Err(Refusal::Ignored) => return,
        };
        let Some(level) = level.filter(|_| codec.kind == MediaKind::Audio) else {
            return;
        };
        let change = self.router.track(key).and_then(|t| {
            self.members
                .room_mut(&t.room)
                .and_then(|r| r.speaker.on_level(key, at, level.unsigned_abs()))
                .map(|speaker| (t.room.clone(), speaker))
        });
        if let Some((room, speaker)) = change {
            self.announce_speaker(&room, speaker);
        }
    }

    /// A subscriber asked for a keyframe on the subscription with `mid`: passed on for the layer
    /// it receives, within the publisher's rate limit.
    fn on_subscriber_keyframe_request(&mut self, now: Instant, id: PeerId, mid: Mid) {
        let Some(sub) = self
            .members
            .get_mut(id)
            .and_then(|p| p.subscription_by_mid_mut(mid))
        else {
            return;
        };
        sub.stats.plis += 1;
        let source = sub.source;
        if let Some(layer) = sub.selector.current().or(sub.selector.target()) {
            self.request_keyframe(now, source, layer);
        }
    }

    /// Asks the publisher of `source` for a keyframe of `layer`, at most once per configured
    /// interval per layer however many subscribers ask. Plain RTP ingests cannot be asked.
    fn request_keyframe(&mut self, now: Instant, source: TrackKey, layer: u8) {
        let interval = self.config.keyframe_request_interval;
        let Some(track) = self.router.track_mut(source) else {
            return;
        };
        if !matches!(track.origin, Origin::Member | Origin::Trunk(_))
            || track.kind != MediaKind::Video
        {
            return;
        }
        if let Origin::Trunk(trunk) = track.origin {
            if track.layers.claim_keyframe_request(layer, now, interval) {
                self.request_trunk_keyframe(trunk, source, layer);
            }
            return;
        }
        let rid = track.layers.get(layer).and_then(|l| l.rid);
        let Some(publisher) = self.members.get_mut(source.peer) else {
            return;
        };
        // No stream yet (nothing of that layer received), or the publisher is still connecting
        // (str0m drops RTCP it has no SRTP keys for): nobody to ask now, so the router asks on
        // the layer's first packet. A leg without simulcast starts at once and would otherwise
        // wait for the publisher's next periodic keyframe, which browsers do not send.
        let connected = publisher.rtc.is_connected();
        let mut api = publisher.rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(source.mid, rid).filter(|_| connected) else {
            track.layers.defer_keyframe_request(layer);
            return;
        };
        if !track.layers.claim_keyframe_request(layer, now, interval) {
            return;
        }
        rx.request_keyframe(KeyframeRequestKind::Pli);
        self.members.mark_dirty(source.peer);
    }

    /// Chooses the layers of member `id`'s video subscriptions again and asks for the keyframes
    /// that needs.
    fn reallocate(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        let result = self.quality.reallocate(now, peer, &self.router);
        if result.session_changed {
            self.members.mark_dirty(id);
        }
        for (source, layer) in result.keyframes {
            self.request_keyframe(now, source, layer);
        }
    }

    /// Moves WHEP viewers to what they follow now, then revisits every subscriber's layers and
    /// every publisher's layer hints.
    fn quality_tick(&mut self, now: Instant) {
        self.retarget_viewers(now);
        for id in self.members.ids() {
            self.reallocate(now, id);
        }
        self.trunk_demands();
        for (peer, msg) in self.quality.layer_hints(now, &mut self.router) {
            self.outbox.signal(peer, msg);
        }
    }

    /// Tells `room` its dominant speaker changed.
    fn announce_speaker(&mut self, room: &str, speaker: Option<TrackKey>) {
        debug!(room, speaker = ?speaker.map(|k| k.id()), "dominant speaker");
        self.outbox.event(RoomEvent::ActiveSpeaker {
            room: room.to_owned(),
            peer_id: speaker.map(|k| k.peer),
            track_id: speaker.map(|k| k.id()),
        });
        for member in self.members.members_of(room) {
            self.outbox
                .signal(member, quality::speaker_message(speaker));
        }
    }

    /// Forgets `key` in its room's speaker detection (the track or its member is gone).
    fn forget_speaker(&mut self, room: &str, key: TrackKey) {
        let change = self
            .members
            .room_mut(room)
            .and_then(|r| r.speaker.remove(key));
        if let Some(speaker) = change {
            self.announce_speaker(room, speaker);
        }
    }

    /// Room `name`, created (and announced) if it is new.
    fn open_room(&mut self, name: &str, capacity: usize) -> Arc<str> {
        if self.members.room(name).is_none() {
            self.outbox.event(RoomEvent::RoomStarted {
                room: name.to_owned(),
            });
        }
        self.members.room_entry(name, capacity).0
    }

    /// Removes room `name` (and announces it) when no member and no ingest is left in it.
    fn close_room_if_empty(&mut self, name: &str) {
        let existed = self.members.room(name).is_some();
        self.members.forget_room_if_empty(name);
        if existed && self.members.room(name).is_none() {
            self.outbox.event(RoomEvent::RoomFinished {
                room: name.to_owned(),
            });
        }
    }

    /// Reports an ingest source's flow to the media port as valid or not.
    fn note_ingest_flow(&mut self, source: SocketAddr, admitted: bool) {
        let local = crate::plain_legs::local_for(&self.config.candidates, source);
        let tuple = (source, local);
        self.demux.note(if admitted {
            FlowChange::Admitted(Protocol::Udp, tuple)
        } else {
            FlowChange::Revoked(Protocol::Udp, tuple)
        });
    }

    fn error(&mut self, peer: PeerId, code: ErrorCode, message: &str) {
        self.outbox.signal(
            peer,
            ServerMessage::Error {
                code,
                message: message.to_owned(),
            },
        );
    }
}

/// The owners of every kind of sink, as the router's fan-out sees them.
struct CoreSinks<'a> {
    members: &'a mut Members,
    plain: &'a mut PlainLegs,
    recordings: &'a mut Recordings,
    trunks: &'a mut Trunks,
    egress: Egress<'a>,
}

impl SinkSet for CoreSinks<'_> {
    fn deliver(&mut self, sink: SinkRef, packet: &RoutedPacket) -> Delivery {
        match sink {
            SinkRef::Subscription { subscriber, slot } => {
                self.members
                    .deliver(subscriber, slot, packet, &mut self.egress)
            }
            SinkRef::PlainOutput(id) => self.plain.deliver(id, packet, &mut self.egress),
            SinkRef::Recorder(number) => self.recordings.deliver(number, packet),
            SinkRef::Trunk(id) => self.trunks.deliver(id, packet, &mut self.egress),
        }
    }
}
