//! Trunks in the core: setting them up (the control plane carries the descriptions between the
//! nodes), the members of other nodes (the control plane says who they are), and the media: this
//! node's tracks in a shared room cross each trunk once ([`SinkRef::Trunk`]), the far node's
//! tracks are published here like any member's ([`Origin::Trunk`]) and reach local members the
//! way theirs do. See `docs/trunks.md`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::media::{MediaKind, Mid, Rid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Event, Input, Output as RtcOutput};
use tracing::{debug, info, warn};

use super::signaling::DEFAULT_CAPACITY;
use super::Core;
use crate::counters::DropReason;
use crate::outbox::{Egress, Transmit};
use crate::protocol::{PeerId, ServerMessage, TrackKind};
use crate::quality::layers::TrackLayers;
use crate::router::{Arrival, Origin, SinkRef, Track, TrackKey};
use crate::trunk::{
    ControlMessage, RemoteMember, SignalKind, TrunkDescription, TrunkError, TrunkId, TrunkInfo,
    TrunkMedia, TrunkSignal,
};
use crate::wire::DatagramKind;

/// How soon a trunk's session gets time after media arrived on it (its NACK and receiver
/// report state moved), as for members.
const TRUNK_SERVICE: Duration = Duration::from_millis(20);

/// A trunk from which nothing arrived for this long is closed: its far end is gone, restarted
/// or never answered. The dialling side keeps ICE alive with a check every few seconds, and
/// the end that dials sets it up again when its rooms still need it.
const TRUNK_SILENCE: Duration = Duration::from_secs(15);

/// A trunk that shares no room with its far end for this long is closed: the last members on one
/// side left. Long enough that a member who leaves and comes back finds the trunk still up; the
/// end that dials sets it up again when a room needs it.
const TRUNK_UNUSED: Duration = Duration::from_secs(30);

impl Core {
    /// Dials a trunk to `node` (the node whose id sorts lower dials): returns this side's
    /// description, for the control plane to hand to `node`'s [`Core::accept_trunk`].
    pub fn open_trunk(&mut self, now: Instant, node: &str) -> Result<TrunkDescription, TrunkError> {
        let addresses = (self.trunk_address()?, self.advertised_trunk_address());
        let media = self.trunk_media();
        let (_, description) = self.trunks.create(now, node, addresses, media, None)?;
        info!(node, "trunk dialled");
        Ok(description)
    }

    /// Answers a trunk `node` dialled with `offer`: returns this side's description, for the
    /// control plane to hand to `node`'s [`Core::trunk_answer`].
    pub fn accept_trunk(
        &mut self,
        now: Instant,
        node: &str,
        offer: &TrunkDescription,
    ) -> Result<TrunkDescription, TrunkError> {
        let addresses = (self.trunk_address()?, self.advertised_trunk_address());
        let media = self.trunk_media();
        let (id, description) = self
            .trunks
            .create(now, node, addresses, media, Some(offer))?;
        info!(node, "trunk accepted");
        self.isolated_trunk(now, id, |core| core.drive_trunk(now, id));
        Ok(description)
    }

    /// `node` answered the trunk this side dialled: ICE, DTLS and SCTP start.
    pub fn trunk_answer(
        &mut self,
        now: Instant,
        node: &str,
        answer: &TrunkDescription,
    ) -> Result<(), TrunkError> {
        let local = self.trunk_address()?;
        let id = self.trunks.answered(node, local, answer)?;
        self.isolated_trunk(now, id, |core| core.drive_trunk(now, id));
        Ok(())
    }

    /// Closes the trunk to `node`: the tracks it brought are unpublished here (its members
    /// stay). False when there was none.
    fn forget_trunk(&mut self, node: &str) -> bool {
        let Some((id, mut trunk)) = self.trunks.remove(node) else {
            return false;
        };
        info!(node, "trunk closed");
        trunk.rtc.disconnect();
        self.withdraw_trunk(id, &trunk);
        true
    }

    /// Closes the trunk to `node` after a panic while handling it: its session is not asked
    /// anything (it may be in any state), and is dropped under guard. The end that dials sets
    /// the trunk up again while it still has members of that end.
    pub(super) fn forget_poisoned_trunk(&mut self, now: Instant, node: &str) {
        let Some((id, trunk)) = self.trunks.remove(node) else {
            return;
        };
        self.withdraw_trunk(id, &trunk);
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(trunk))).is_err() {
            warn!(node, "dropping the trunk's session panicked too");
        }
        if self.trunks.serves(node) {
            self.dial_trunk(now, node);
        }
    }

    /// Takes trunk `id`, already out of the trunk table, out of the router: the far tracks it
    /// brought are unpublished here, and it is no sink of this node's tracks any more.
    fn withdraw_trunk(&mut self, id: TrunkId, trunk: &crate::trunk::Trunk) {
        for key in self.router.keys_where(|t| t.origin == Origin::Trunk(id)) {
            self.unpublish(key);
        }
        for (key, _) in trunk.demands() {
            self.router.detach(key, SinkRef::Trunk(id));
        }
    }

    /// Every trunk of this core.
    pub fn trunk_infos(&self) -> Vec<TrunkInfo> {
        self.trunks.infos()
    }

    /// The shell could not program the kernel fan-out for `handoff_ssrc` (an
    /// [`Action::TrunkFanout`](super::Action::TrunkFanout) it was given): the trunks of that
    /// layer send their own copies from now on.
    pub fn trunk_fanout_refused(&mut self, handoff_ssrc: u32) {
        if self.trunks.fanout_refused(handoff_ssrc) {
            warn!(
                handoff_ssrc,
                "kernel fan-out refused: the trunks send their own copies"
            );
        }
    }

    /// Adds `member`, a member of another node, to its room here as `id` (its id in the cluster:
    /// ids are unique across nodes): the room's members see it join, and its tracks appear as
    /// the trunk to its node announces them. The room is shared with that node from now on:
    /// this node's tracks in it cross the trunk.
    pub(super) fn insert_remote_member(
        &mut self,
        now: Instant,
        id: PeerId,
        member: RemoteMember,
    ) -> Result<(), TrunkError> {
        if self.members.contains(id) || self.plain.has_ingest(id) {
            return Err(TrunkError::Invalid(format!("id {id} is taken")));
        }
        let node = member.node.clone();
        let remote_id = member.remote_id;
        let created = self.members.room(&member.room).is_none();
        let room = self.open_room(&member.room, DEFAULT_CAPACITY);
        let member = RemoteMember {
            room: room.clone(),
            ..member
        };
        if !self.trunks.add_member(id, member) {
            self.close_room_if_empty(&room);
            return Err(TrunkError::Invalid(format!(
                "member {remote_id} of {node} or id {id} is known already"
            )));
        }
        if let Some(r) = self.members.room_mut(&room) {
            r.remote_members.push(id);
        }
        info!(peer = id, node, remote_id, room = %room, "remote member joined");
        if let Some(info) = self.peer_info(id) {
            for other in self.members.members_of(&room) {
                self.outbox
                    .signal(other, ServerMessage::PeerJoined { peer: info.clone() });
            }
        }
        if created {
            self.on_room_created(&room);
        }
        if let Some(trunk) = self.trunks.id_of(&node) {
            self.share_room(trunk, &room);
        }
        for (trunk, message) in self.trunks.unpark(&node, remote_id) {
            self.on_control(now, trunk, message);
        }
        Ok(())
    }

    /// Removes remote member `id`: its tracks are unpublished here, its room told it left.
    pub fn remove_remote_member(&mut self, now: Instant, id: PeerId) -> bool {
        let removed = self.forget_remote_member(now, id);
        self.drive(now);
        removed
    }

    /// [`Core::remove_remote_member`] without driving the sessions it touched.
    pub(super) fn forget_remote_member(&mut self, now: Instant, id: PeerId) -> bool {
        let Some(member) = self.trunks.remove_member(id) else {
            return false;
        };
        info!(peer = id, node = %member.node, "remote member left");
        for key in self.router.keys_of(id) {
            if let Some(trunk) = self
                .trunks
                .id_of(&member.node)
                .and_then(|t| self.trunks.get_mut(t))
            {
                trunk.forget(&(member.remote_id, key.mid));
            }
            self.unpublish(key);
        }
        if let Some(r) = self.members.room_mut(&member.room) {
            r.remote_members.retain(|m| *m != id);
        }
        for other in self.members.members_of(&member.room) {
            self.outbox
                .signal(other, ServerMessage::PeerLeft { peer_id: id });
        }
        if let Some(trunk) = self.trunks.id_of(&member.node) {
            if !self.trunks.shares(trunk, &member.room) {
                self.unshare_room(trunk, &member.room);
            }
        }
        self.close_room_if_empty(&member.room);
        self.end_recording_if_room_gone(now, &member.room);
        true
    }

    /// The media address trunks run on: the worker's first candidate.
    fn trunk_address(&self) -> Result<SocketAddr, TrunkError> {
        self.config
            .candidates
            .first()
            .copied()
            .ok_or(TrunkError::NoAddress)
    }

    /// The address other nodes are told to send trunk media to, when not the worker's own.
    fn advertised_trunk_address(&self) -> Option<SocketAddr> {
        self.config
            .trunk_endpoint
            .as_ref()
            .and_then(|e| e.advertised)
    }

    /// How this end wants its trunks to carry RTP (`--trunk`; SRTP without a trunk end).
    fn trunk_media(&self) -> TrunkMedia {
        self.config
            .trunk_endpoint
            .as_ref()
            .map_or(TrunkMedia::Srtp, |e| e.media)
    }

    /// Makes sure a trunk to end `far` exists or is on its way: the end whose name sorts lower
    /// dials, queueing its offer for the control plane ([`Action::TrunkSignal`]); the other
    /// waits for that offer.
    ///
    /// [`Action::TrunkSignal`]: super::Action::TrunkSignal
    pub(super) fn dial_trunk(&mut self, now: Instant, far: &str) {
        if self.trunks.id_of(far).is_some() || !self.dials(far) {
            return;
        }
        match self.open_trunk(now, far) {
            Ok(description) => self.send_trunk_signal(far, SignalKind::Offer, description),
            Err(e) => warn!(far, error = %e, "trunk not dialled"),
        }
    }

    /// Whether this end dials the trunk to end `far`: the one whose name sorts lower does.
    fn dials(&self, far: &str) -> bool {
        self.config
            .trunk_endpoint
            .as_ref()
            .is_some_and(|e| e.name.as_str() < far)
    }

    /// Queues a signal of `kind` with `description` for end `far`, for the control plane.
    fn send_trunk_signal(&mut self, far: &str, kind: SignalKind, description: TrunkDescription) {
        let Some(own) = self.config.trunk_endpoint.as_ref().map(|e| e.name.clone()) else {
            return;
        };
        self.trunks.queue_signal(TrunkSignal {
            from: own,
            to: far.to_owned(),
            kind,
            description,
        });
    }

    /// A trunk description another end sent this one through the control plane. An offer is
    /// answered (replacing any trunk to that end: it restarted, or gave up on the old one); an
    /// answer starts the trunk this end dialled; a `closed` ends the session it names here too
    /// (and this end dials again at once if it dials and still needs the trunk). One for another
    /// end, or one this end cannot use, is logged and dropped.
    pub fn handle_trunk_signal(&mut self, now: Instant, signal: TrunkSignal) {
        let Some(own) = self.config.trunk_endpoint.as_ref().map(|e| e.name.clone()) else {
            return warn!(from = %signal.from, "trunk signal without a trunk end here: dropped");
        };
        if signal.to != own {
            return warn!(to = %signal.to, own, "trunk signal for another end: dropped");
        }
        match signal.kind {
            SignalKind::Offer => {
                self.forget_trunk(&signal.from);
                match self.accept_trunk(now, &signal.from, &signal.description) {
                    Ok(description) => {
                        self.send_trunk_signal(&signal.from, SignalKind::Answer, description)
                    }
                    Err(e) => warn!(from = %signal.from, error = %e, "trunk offer refused"),
                }
            }
            SignalKind::Answer => {
                if let Err(e) = self.trunk_answer(now, &signal.from, &signal.description) {
                    warn!(from = %signal.from, error = %e, "trunk answer refused");
                }
            }
            SignalKind::Closed => {
                let current = self
                    .trunks
                    .id_of(&signal.from)
                    .and_then(|id| self.trunks.get(id))
                    .is_some_and(|t| t.remote_ufrag.as_ref() == Some(&signal.description.ufrag));
                if current {
                    info!(far = %signal.from, "trunk closed by the far end");
                    self.forget_trunk(&signal.from);
                    if self.trunks.serves(&signal.from) {
                        self.dial_trunk(now, &signal.from);
                    }
                }
            }
        }
        self.drive(now);
    }

    /// Announces every track of this node in `room` on trunk `id` and attaches the trunk to
    /// them (it sends only what the far node then asks for).
    fn share_room(&mut self, id: TrunkId, room: &str) {
        let keys = self.router.keys_where(|t| {
            &*t.room == room && matches!(t.origin, Origin::Member | Origin::PlainIngest)
        });
        for key in keys {
            self.share_track(id, key);
        }
    }

    /// Announces local track `key` on trunk `id` and makes the trunk one of its sinks.
    fn share_track(&mut self, id: TrunkId, key: TrackKey) {
        let (Some(trunk), Some(track)) = (self.trunks.get_mut(id), self.router.track(key)) else {
            return;
        };
        if trunk.carries(key) {
            return;
        }
        trunk.announce(key, track);
        trunk.dirty = true;
        self.router.attach(key, SinkRef::Trunk(id));
    }

    /// Withdraws every track of this node in `room` from trunk `id` (no member of its node is
    /// left there).
    fn unshare_room(&mut self, id: TrunkId, room: &str) {
        for key in self.router.keys_where(|t| &*t.room == room) {
            self.router.detach(key, SinkRef::Trunk(id));
            if let Some(trunk) = self.trunks.get_mut(id) {
                trunk.withdraw(key);
                trunk.dirty = true;
            }
        }
        self.trunks.mark_fanout_stale();
    }

    /// A local track `key` was published: it crosses every trunk sharing its room.
    pub(super) fn trunk_new_track(&mut self, key: TrackKey) {
        let Some(room) = self
            .router
            .track(key)
            .filter(|t| matches!(t.origin, Origin::Member | Origin::PlainIngest))
            .map(|t| t.room.clone())
        else {
            return;
        };
        for id in self.trunks.sharing(&room) {
            self.share_track(id, key);
        }
    }

    /// Track `key` was unpublished: the trunks it crossed tell their far nodes.
    pub(super) fn trunk_track_gone(&mut self, key: TrackKey) {
        for id in self.trunks.ids() {
            if let Some(trunk) = self.trunks.get_mut(id).filter(|t| t.carries(key)) {
                trunk.withdraw(key);
                trunk.dirty = true;
            }
        }
        self.trunks.mark_fanout_stale();
    }

    /// Local track `key` was muted or unmuted: the trunks it crosses tell their far nodes.
    pub(super) fn trunk_track_muted(&mut self, key: TrackKey, muted: bool) {
        for id in self.trunks.ids() {
            if let Some(trunk) = self.trunks.get_mut(id).filter(|t| t.carries(key)) {
                trunk.send_control(&ControlMessage::Mute {
                    peer: key.peer,
                    mid: key.mid.to_string(),
                    muted,
                });
                trunk.dirty = true;
            }
        }
    }

    /// A datagram for trunk `id`: media straight to the router, anything else to its session.
    pub(super) fn receive_trunk(
        &mut self,
        now: Instant,
        id: TrunkId,
        proto: Protocol,
        tuple: (SocketAddr, SocketAddr),
        buf: &[u8],
    ) {
        self.isolated_trunk(now, id, |core| {
            core.receive_trunk_datagram(now, id, proto, tuple, buf)
        });
        self.drive(now);
    }

    /// [`Core::receive_trunk`] itself.
    fn receive_trunk_datagram(
        &mut self,
        now: Instant,
        id: TrunkId,
        proto: Protocol,
        tuple: (SocketAddr, SocketAddr),
        buf: &[u8],
    ) {
        if let Some(trunk) = self.trunks.get_mut(id) {
            trunk.heard = now;
        }
        if crate::wire::classify(buf) == DatagramKind::Rtp {
            self.receive_trunk_media(now, id, buf);
        } else if let Some(trunk) = self.trunks.get_mut(id) {
            let Ok(contents) = DatagramRecv::try_from(buf) else {
                self.counters.drop(DropReason::Rejected);
                return;
            };
            let receive = Receive {
                proto,
                source: tuple.0,
                destination: tuple.1,
                contents,
            };
            if let Err(e) = trunk.rtc.handle_input(Input::Receive(now, receive)) {
                debug!(node = %trunk.node, error = %e, "datagram refused by the trunk");
                self.counters.drop(DropReason::Rejected);
            }
            let mut egress = Egress {
                outbox: &mut self.outbox,
                counters: &mut self.counters,
                candidates: &self.config.candidates,
            };
            trunk.answer_nacks(now, &self.router, &mut egress);
            trunk.dirty = true;
        }
    }

    /// One media packet from trunk `id` (SRTP, or plain RTP on a plain trunk): opened into the
    /// payload buffer and routed as a packet of the far track its SSRC belongs to.
    fn receive_trunk_media(&mut self, now: Instant, id: TrunkId, buf: &[u8]) {
        let Some(trunk) = self.trunks.get_mut(id) else {
            return;
        };
        let mut payload = std::mem::take(&mut self.rx_payload);
        let received = trunk.rtc.receive_rtp_direct(now, buf, &mut payload);
        let service = now + TRUNK_SERVICE;
        if trunk.deadline.is_none_or(|d| d > service) {
            trunk.deadline = Some(service);
        }
        let routed = received.and_then(|rx| {
            let (key, layer) = trunk.source_of(rx.header.ssrc)?;
            let params = trunk
                .rtc
                .codec_config()
                .find(|p| p.pt() == rx.header.payload_type)
                .copied()?;
            trunk.counters.packets_in += 1;
            Some((key, layer, params, rx))
        });
        match routed {
            Some((key, layer, params, rx)) => {
                self.counters.received_packets += 1;
                let rid = self
                    .router
                    .track(key)
                    .and_then(|t| t.layers.get(layer))
                    .and_then(|l| l.rid);
                let level = rx.header.ext_vals.audio_level;
                let arrival = Arrival::received(rx, &payload, params, rid, now);
                self.route_packet(key, arrival, level);
            }
            None => self.counters.drop(DropReason::UnknownSource),
        }
        self.rx_payload = payload;
    }

    /// Closes the trunks that shared no room for [`TRUNK_UNUSED`] and those nothing came from
    /// for [`TRUNK_SILENCE`] (dialling again those this end dials and its rooms still need), and
    /// feeds time to those whose deadline passed.
    pub(super) fn trunk_timeouts(&mut self, now: Instant) {
        for far in self.trunks.unused_for(now, TRUNK_UNUSED) {
            info!(far, "trunk shared no room for {TRUNK_UNUSED:?}: closed");
            self.forget_trunk(&far);
        }
        let silent = now
            .checked_sub(TRUNK_SILENCE)
            .map(|since| self.trunks.silent_since(since))
            .unwrap_or_default();
        for far in silent {
            warn!(far, "trunk silent for {TRUNK_SILENCE:?}: closed");
            let closed = self
                .trunks
                .id_of(&far)
                .and_then(|id| self.trunks.get(id))
                .map(|t| t.description.clone());
            self.forget_trunk(&far);
            if self.dials(&far) {
                if self.trunks.serves(&far) {
                    self.dial_trunk(now, &far);
                }
            } else if let Some(description) = closed {
                // The dialling end may still hear this end (only its own datagrams were lost),
                // and would notice only when its own silence timer runs out: tell it.
                self.send_trunk_signal(&far, SignalKind::Closed, description);
            }
        }
        for id in self.trunks.due(now) {
            self.isolated_trunk(now, id, |core| {
                if let Some(trunk) = core.trunks.get_mut(id) {
                    trunk.deadline = None;
                    if let Err(e) = trunk.rtc.handle_input(Input::Timeout(now)) {
                        warn!(node = %trunk.node, error = %e, "trunk failed on timeout");
                    }
                    trunk.dirty = true;
                }
            });
        }
    }

    /// Polls every trunk that was touched, then brings the kernel fan-out in step with what the
    /// trunks take; false when none was touched.
    pub(super) fn drive_trunks(&mut self, now: Instant) -> bool {
        let dirty = self.trunks.take_dirty();
        for id in &dirty {
            self.isolated_trunk(now, *id, |core| core.drive_trunk(now, *id));
        }
        self.trunks.refresh_fanout();
        !dirty.is_empty()
    }

    /// Polls trunk `id`'s session until it has nothing more, acting on its events.
    fn drive_trunk(&mut self, now: Instant, id: TrunkId) {
        let mut events = Vec::new();
        let mut moved = false;
        let Some(trunk) = self.trunks.get_mut(id) else {
            return;
        };
        loop {
            match trunk.rtc.poll_output() {
                Ok(RtcOutput::Timeout(t)) => {
                    trunk.deadline = Some(trunk.deadline.map_or(t, |d| d.min(t)));
                    break;
                }
                Ok(RtcOutput::Transmit(t)) => {
                    // Where the kernel fan-out sends this trunk's copies from and to.
                    moved |=
                        t.proto == Protocol::Udp && trunk.note_send_tuple(t.source, t.destination);
                    self.outbox.transmit(Transmit {
                        proto: t.proto,
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.into(),
                    })
                }
                Ok(RtcOutput::Event(e)) => events.push(e),
                Err(e) => {
                    warn!(node = %trunk.node, error = %e, "trunk session failed");
                    trunk.rtc.disconnect();
                    break;
                }
            }
        }
        if moved {
            self.trunks.mark_fanout_stale();
        }
        for event in events {
            self.on_trunk_event(now, id, event);
        }
    }

    fn on_trunk_event(&mut self, now: Instant, id: TrunkId, event: Event) {
        let Some(trunk) = self.trunks.get_mut(id) else {
            return;
        };
        match event {
            Event::Connected => {
                info!(node = %trunk.node, "trunk connected");
                trunk.connected = true;
                self.trunks.mark_fanout_stale();
            }
            Event::ChannelOpen(cid, label) if trunk.on_channel_open(cid, &label) => {
                trunk.dirty = true;
                debug!(node = %trunk.node, "trunk control channel open");
                for room in self.members.room_names() {
                    if self.trunks.shares(id, &room) {
                        self.share_room(id, &room);
                    }
                }
            }
            Event::ChannelData(data) if trunk.is_control(data.id) => {
                match ControlMessage::parse(&data.data) {
                    Ok(message) => self.on_control(now, id, message),
                    Err(e) => {
                        debug!(node = %trunk.node, error = %e, "trunk control message refused");
                        trunk.counters.bad_control_messages += 1;
                        self.counters.drop(DropReason::BadChannelMessage);
                    }
                }
            }
            Event::KeyframeRequest(req) => {
                if let Some((key, layer)) = trunk.keyframe_request(req.mid, req.rid, &self.router) {
                    self.request_keyframe(now, key, layer);
                }
            }
            _ => {}
        }
    }

    /// One control message from trunk `id`'s far node.
    fn on_control(&mut self, now: Instant, id: TrunkId, message: ControlMessage) {
        let Some(node) = self.trunks.get(id).map(|t| t.node.clone()) else {
            return;
        };
        match message {
            ControlMessage::Publish {
                ref room,
                peer,
                ref mid,
                ref trunk_mid,
                kind,
                source,
                muted,
                ref layers,
            } => {
                let Some(alias) = self.trunks.alias(&node, peer) else {
                    return self.trunks.park(id, message);
                };
                let member_room = self.trunks.member(alias).map(|m| m.room.clone());
                let Some(member_room) = member_room.filter(|r| &**r == room.as_str()) else {
                    return self.refuse_control(id, "publication in another room");
                };
                let key = TrackKey {
                    peer: alias,
                    mid: Mid::from(mid.as_str()),
                };
                if self.router.track(key).is_some() {
                    return self.refuse_control(id, "track published twice");
                }
                let media_kind = match kind {
                    TrackKind::Audio => MediaKind::Audio,
                    TrackKind::Video => MediaKind::Video,
                };
                let far = (peer, key.mid);
                let expected = self.trunks.get_mut(id).is_some_and(|t| {
                    t.expect(far, key, Mid::from(trunk_mid.as_str()), media_kind, layers)
                });
                if !expected {
                    return self.refuse_control(id, "streams already taken");
                }
                let rids: Vec<Rid> = layers
                    .iter()
                    .filter_map(|l| l.rid.as_deref().map(Rid::from))
                    .collect();
                let track_layers = if rids.is_empty() {
                    TrackLayers::single()
                } else {
                    TrackLayers::simulcast(&rids)
                };
                let track = Track::new(
                    member_room.clone(),
                    Origin::Trunk(id),
                    media_kind,
                    source,
                    muted,
                    track_layers,
                );
                self.router.publish(key, track);
                self.announce_published(now, &member_room, alias, key);
            }
            ControlMessage::Unpublish { peer, mid } => {
                let far = (peer, Mid::from(mid.as_str()));
                match self.trunks.get_mut(id).and_then(|t| t.forget(&far)) {
                    Some(key) => self.unpublish(key),
                    None => self.refuse_control(id, "unknown track"),
                }
            }
            ControlMessage::Mute { peer, mid, muted } => {
                #[cfg(test)]
                if mid == super::isolation::TRUNK_PANIC_MID_FOR_TESTS {
                    panic!("asked to panic by a test");
                }
                let far = (peer, Mid::from(mid.as_str()));
                let key = self
                    .trunks
                    .get(id)
                    .and_then(|t| t.incoming.get(&far))
                    .map(|t| t.key);
                let Some(track) = key.and_then(|k| self.router.track_mut(k)) else {
                    return self.refuse_control(id, "mute of an unknown track");
                };
                if track.muted != muted {
                    track.muted = muted;
                    if let Some(key) = key {
                        self.announce_mute(now, key.peer, key.mid, muted);
                    }
                }
            }
            ControlMessage::Demand { peer, mid, layers } => {
                let key = TrackKey {
                    peer,
                    mid: Mid::from(mid.as_str()),
                };
                let added = self
                    .trunks
                    .get_mut(id)
                    .and_then(|t| t.set_demand(key, layers));
                let Some(added) = added else {
                    return self.refuse_control(id, "demand for a track not crossing");
                };
                debug!(node, track = %key.id(), layers, "trunk demand");
                self.trunks.mark_fanout_stale();
                for layer in (0..8).filter(|l| added & (1 << l) != 0) {
                    self.request_keyframe(now, key, layer);
                }
            }
        }
    }

    /// Counts a control message that names what does not exist or contradicts what was said.
    fn refuse_control(&mut self, id: TrunkId, why: &str) {
        if let Some(trunk) = self.trunks.get_mut(id) {
            debug!(node = %trunk.node, why, "trunk control message refused");
            trunk.counters.bad_control_messages += 1;
        }
        self.counters.drop(DropReason::BadChannelMessage);
    }

    /// Tells the far nodes which layers of their tracks this node's members take now, where
    /// that changed, and gives this node's publishers' layer hints the layers far nodes take.
    pub(super) fn trunk_demands(&mut self) {
        for id in self.trunks.ids() {
            let Some(trunk) = self.trunks.get(id) else {
                continue;
            };
            let mut changes = Vec::new();
            for ((far_peer, far_mid), incoming) in &trunk.incoming {
                let Some(track) = self.router.track(incoming.key) else {
                    continue;
                };
                let taken = !track.sinks().is_empty();
                let demand = if !taken {
                    0
                } else if track.layers.is_simulcast() {
                    self.quality.demand_of(incoming.key)
                } else {
                    1
                };
                if demand != incoming.demand {
                    changes.push((*far_peer, *far_mid, demand));
                }
            }
            for (key, demand) in trunk.demands().collect::<Vec<_>>() {
                self.quality.add_demand(key, demand);
            }
            let Some(trunk) = self.trunks.get_mut(id) else {
                continue;
            };
            for (peer, mid, layers) in changes {
                if let Some(incoming) = trunk.incoming.get_mut(&(peer, mid)) {
                    incoming.demand = layers;
                }
                trunk.send_control(&ControlMessage::Demand {
                    peer,
                    mid: mid.to_string(),
                    layers,
                });
                trunk.dirty = true;
            }
        }
    }

    /// Asks the far node of trunk `id` for a keyframe of `layer` of far track `key`.
    pub(super) fn request_trunk_keyframe(&mut self, id: TrunkId, key: TrackKey, layer: u8) {
        if let Some(trunk) = self.trunks.get_mut(id) {
            trunk.request_keyframe(key, layer);
            trunk.dirty = true;
        }
    }
}
