//! Trunks: the media sessions between this node and the other nodes that share a room with it.
//! One [`Trunk`] per remote node carries every shared track once, whatever the number of
//! subscribers on the far side: it is a sink of the router for this node's tracks
//! ([`SinkRef::Trunk`](crate::router::SinkRef::Trunk)) and the source of the far node's tracks
//! ([`Origin::Trunk`](crate::router::Origin::Trunk)). The members of other nodes are known here
//! as [`RemoteMember`]s, told by the control plane; a room is shared with a node while one of its
//! members is in it. See `docs/trunks.md`.

pub mod control;
mod description;
mod fanout;
mod link;
mod signal;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::config::Fingerprint;
use str0m::format::Codec;
use str0m::net::Protocol;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};

pub use control::{ControlError, ControlMessage, LayerStream};
pub use description::{TrunkDescription, TrunkError, TrunkMedia};
pub use fanout::{FanoutChange, FanoutConfig, FanoutMember, KernelFanout, TrunkCopy};
pub use link::{InTrack, Trunk, TrunkCounters};
pub use signal::{SignalKind, TrunkEndpoint, TrunkSignal};

use crate::codec::CodecDescriptor;
use crate::demux::FlowChange;
use crate::outbox::Egress;
use crate::protocol::PeerId;
use crate::router::{Delivery, RoutedPacket};
use crate::wire::{classify, DatagramKind, StunPacket};

/// Names one trunk in the router's sink and origin lists.
pub type TrunkId = u32;

/// Packets each video send stream of a trunk caches for resends: none, the tracks keep their
/// history (as for subscriptions).
/// The video codecs a trunk session carries: every one a room may use (`--video-codecs`), so
/// that both nodes map payload types alike whatever each was told to offer its members.
const TRUNK_VIDEO_CODECS: [Codec; 4] = [Codec::Vp8, Codec::H264, Codec::Vp9, Codec::Av1];

const VIDEO_SEND_CACHE: usize = 0;
/// The same for audio: the least str0m allows.
const AUDIO_SEND_CACHE: usize = 1;

/// A member of another node, in a room this node shares with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMember {
    /// The node it is connected to.
    pub node: String,
    /// Its id on that node.
    pub remote_id: PeerId,
    /// Its room.
    pub room: Arc<str>,
    /// Its display name.
    pub name: String,
}

/// The API's view of one trunk.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrunkInfo {
    /// The other node.
    pub node: String,
    /// ICE and DTLS are up.
    pub connected: bool,
    /// How it carries RTP: `srtp`, or `plain` (both nodes run `--trunk plain`).
    pub media: &'static str,
    /// Local tracks crossing to the other node.
    pub tracks_out: usize,
    /// Layers of those the other node takes now (each crosses once).
    pub layers_out: usize,
    /// Of those, the layers the kernel fan-out copies to the other node (a plain trunk on a
    /// node with `--kernel-interface`).
    pub kernel_layers: usize,
    /// The other node's tracks published here.
    pub tracks_in: usize,
    /// What it carried.
    #[serde(flatten)]
    pub counters: TrunkCounters,
}

/// The trunks of one worker, and the remote members of its rooms.
#[derive(Default)]
pub struct Trunks {
    trunks: HashMap<TrunkId, Trunk>,
    by_node: HashMap<String, TrunkId>,
    /// Which trunk a STUN request naming a local ufrag is for.
    by_ufrag: HashMap<String, TrunkId>,
    /// Which trunk a datagram of a 5-tuple is for.
    by_tuple: HashMap<(SocketAddr, SocketAddr), TrunkId>,
    next_id: TrunkId,
    /// Remote members by their id here.
    members: HashMap<PeerId, RemoteMember>,
    /// Their ids here, by node and id there.
    aliases: HashMap<(String, PeerId), PeerId>,
    /// Publications of far tracks whose member the control plane has not told of yet.
    parked: Vec<(TrunkId, ControlMessage)>,
    /// Descriptions for other ends, waiting for the control plane to carry them.
    signals: VecDeque<TrunkSignal>,
    /// Trunk 5-tuples that became valid or stopped being valid, for the in-kernel guard in front
    /// of the media port (which otherwise passes only STUN from another node).
    flows: VecDeque<FlowChange>,
    /// The kernel fan-out of plain trunks, when the shell has one.
    fanout: Option<KernelFanout>,
    /// What the trunks take or where they send changed since the fan-out was last refreshed.
    fanout_stale: bool,
}

impl Trunks {
    /// No trunk yet; plain trunks' layers go through the kernel fan-out `fanout` when given.
    pub fn new(fanout: Option<FanoutConfig>) -> Self {
        Trunks {
            fanout: fanout.map(KernelFanout::new),
            ..Trunks::default()
        }
    }

    /// Whether there is no trunk.
    pub fn is_empty(&self) -> bool {
        self.trunks.is_empty()
    }

    /// The trunk to `node`.
    pub fn id_of(&self, node: &str) -> Option<TrunkId> {
        self.by_node.get(node).copied()
    }

    /// Trunk `id`.
    pub fn get(&self, id: TrunkId) -> Option<&Trunk> {
        self.trunks.get(&id)
    }

    /// Trunk `id`, to change.
    pub fn get_mut(&mut self, id: TrunkId) -> Option<&mut Trunk> {
        self.trunks.get_mut(&id)
    }

    /// Every trunk id.
    pub fn ids(&self) -> Vec<TrunkId> {
        self.trunks.keys().copied().collect()
    }

    /// Creates the trunk to `node` on `local` (the media address of this worker): the dialling
    /// side (full ICE, controlling, DTLS client) when `remote` is not given, the answering side
    /// (ICE-lite, DTLS server) when it is. Returns its id and this side's description, which
    /// names `advertised` as the address to reach it on when given, `local` when not, and
    /// `media` (what this side wants) in an offer, what both then use in an answer.
    pub fn create(
        &mut self,
        now: Instant,
        node: &str,
        (local, advertised): (SocketAddr, Option<SocketAddr>),
        media: TrunkMedia,
        remote: Option<&TrunkDescription>,
    ) -> Result<(TrunkId, TrunkDescription), TrunkError> {
        if self.by_node.contains_key(node) {
            return Err(TrunkError::Exists(node.to_owned()));
        }
        let dials = remote.is_none();
        let mut rtc = CodecDescriptor::configure(RtcConfig::new(), &TRUNK_VIDEO_CODECS)
            .set_ice_lite(!dials)
            .set_rtp_mode(true)
            .set_send_buffer_audio(AUDIO_SEND_CACHE)
            .set_send_buffer_video(VIDEO_SEND_CACHE)
            .build(now);
        let candidate = Candidate::host(local, "udp")
            .map_err(|e| TrunkError::Invalid(format!("local address {local}: {e}")))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.direct_api();
        api.set_ice_controlling(dials);
        let creds = api.local_ice_credentials();
        let media = remote.map_or(media, |r| media.agree(r.media));
        let description = TrunkDescription {
            ufrag: creds.ufrag.clone(),
            pwd: creds.pass,
            fingerprint: api.local_dtls_fingerprint().to_string(),
            address: advertised.unwrap_or(local),
            media,
        };
        let mut trunk = Trunk::new(node.to_owned(), rtc, description.clone(), dials, now);
        if let Some(remote) = remote {
            start(&mut trunk.rtc, remote, false)?;
            trunk.set_media(media);
            trunk.remote_ufrag = Some(remote.ufrag.clone());
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_ufrag.insert(creds.ufrag, id);
        self.by_node.insert(node.to_owned(), id);
        self.trunks.insert(id, trunk);
        Ok((id, description))
    }

    /// The far node answered the trunk this side dialled: ICE checks and DTLS start.
    /// `local` is this worker's media address the checks leave from.
    pub fn answered(
        &mut self,
        node: &str,
        local: SocketAddr,
        answer: &TrunkDescription,
    ) -> Result<TrunkId, TrunkError> {
        let unknown = || TrunkError::Unknown(node.to_owned());
        let id = self.id_of(node).ok_or_else(unknown)?;
        let trunk = self.trunks.get_mut(&id).ok_or_else(unknown)?;
        if !trunk.awaiting_answer {
            return Err(unknown());
        }
        start(&mut trunk.rtc, answer, true)?;
        trunk.set_media(trunk.media.agree(answer.media));
        trunk.remote_ufrag = Some(answer.ufrag.clone());
        trunk.awaiting_answer = false;
        trunk.dirty = true;
        self.learn_tuple((answer.address, local), id);
        Ok(id)
    }

    /// Removes the trunk to `node`.
    pub fn remove(&mut self, node: &str) -> Option<(TrunkId, Trunk)> {
        let id = self.by_node.remove(node)?;
        self.by_ufrag.retain(|_, t| *t != id);
        let flows = &mut self.flows;
        self.by_tuple.retain(|tuple, t| {
            let keep = *t != id;
            if !keep {
                flows.push_back(FlowChange::Revoked(Protocol::Udp, *tuple));
            }
            keep
        });
        self.parked.retain(|(t, _)| *t != id);
        self.fanout_stale = true;
        self.trunks.remove(&id).map(|t| (id, t))
    }

    /// The trunk a datagram is for: its 5-tuple is a trunk's, or it is a STUN request naming a
    /// trunk's ufrag (the 5-tuple is learnt then). UDP only.
    pub fn route(
        &mut self,
        proto: Protocol,
        tuple: (SocketAddr, SocketAddr),
        buf: &[u8],
    ) -> Option<TrunkId> {
        if self.trunks.is_empty() || proto != Protocol::Udp {
            return None;
        }
        if let Some(id) = self.by_tuple.get(&tuple) {
            return Some(*id);
        }
        if classify(buf) != DatagramKind::Stun {
            return None;
        }
        let stun = StunPacket::new_checked(buf).ok()?;
        let ufrag = std::str::from_utf8(stun.local_ufrag()?).ok()?;
        let id = *self.by_ufrag.get(ufrag)?;
        self.learn_tuple(tuple, id);
        Some(id)
    }

    /// Datagrams on `tuple` are trunk `id`'s from now on, unless it has as many 5-tuples as a
    /// trunk can use (a request naming its ufrag from elsewhere still reaches its session, whose
    /// ICE checks it, but admits nothing).
    fn learn_tuple(&mut self, tuple: (SocketAddr, SocketAddr), id: TrunkId) {
        const MAX_TUPLES_PER_TRUNK: usize = 4;
        if self.by_tuple.values().filter(|t| **t == id).count() >= MAX_TUPLES_PER_TRUNK {
            return;
        }
        if self.by_tuple.insert(tuple, id).is_none() {
            self.flows
                .push_back(FlowChange::Admitted(Protocol::Udp, tuple));
        }
    }

    /// The next trunk 5-tuple that became valid or stopped being valid.
    pub fn next_flow_change(&mut self) -> Option<FlowChange> {
        self.flows.pop_front()
    }

    /// The trunks to poll now (their flag is cleared).
    pub fn take_dirty(&mut self) -> Vec<TrunkId> {
        let mut dirty = Vec::new();
        for (id, t) in &mut self.trunks {
            if std::mem::take(&mut t.dirty) {
                dirty.push(*id);
            }
        }
        dirty
    }

    /// When the earliest trunk wants time.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.trunks.values().filter_map(|t| t.deadline).min()
    }

    /// The far ends of the trunks nothing arrived from since `since`.
    pub fn silent_since(&self, since: Instant) -> Vec<String> {
        self.trunks
            .values()
            .filter(|t| t.heard < since)
            .map(|t| t.node.clone())
            .collect()
    }

    /// The far ends of the trunks that have shared no room here for `longer_than` (the clock of
    /// each starts at the first call that finds it unused, and stops when it is used again).
    pub fn unused_for(&mut self, now: Instant, longer_than: std::time::Duration) -> Vec<String> {
        let used: std::collections::HashSet<&str> =
            self.members.values().map(|m| m.node.as_str()).collect();
        let mut unused = Vec::new();
        for trunk in self.trunks.values_mut() {
            if used.contains(trunk.node.as_str()) {
                trunk.unused_since = None;
                continue;
            }
            let since = *trunk.unused_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= longer_than {
                unused.push(trunk.node.clone());
            }
        }
        unused
    }

    /// Queues a description for the control plane to carry to another end.
    pub fn queue_signal(&mut self, signal: TrunkSignal) {
        self.signals.push_back(signal);
    }

    /// The next description for the control plane to carry.
    pub fn next_signal(&mut self) -> Option<TrunkSignal> {
        self.signals.pop_front()
    }

    /// Whether a remote member here is on far end `node`.
    pub fn serves(&self, node: &str) -> bool {
        self.members.values().any(|m| m.node == node)
    }

    /// The trunks whose deadline passed.
    pub fn due(&self, now: Instant) -> Vec<TrunkId> {
        self.trunks
            .iter()
            .filter(|(_, t)| t.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Sends one packet of a local track to trunk `id`'s far node, if it takes that layer:
    /// through the kernel fan-out when it serves the layer (one hand-off for every trunk of the
    /// layer), else sealed by the trunk's own session.
    pub fn deliver(&mut self, id: TrunkId, packet: &RoutedPacket, egress: &mut Egress) -> Delivery {
        let Some(trunk) = self.trunks.get_mut(&id).filter(|t| t.carries(packet.track)) else {
            return Delivery::Gone;
        };
        let Some(fanout) = self
            .fanout
            .as_mut()
            .filter(|f| f.serves(id, packet.track, packet.layer) && trunk.takes(packet))
        else {
            trunk.deliver(packet, None, egress);
            trunk.dirty = true;
            return Delivery::Done;
        };
        let Some(numbered) = fanout.number(packet, egress) else {
            return Delivery::Done;
        };
        // What the kernel cannot carry is sealed by each trunk's session, numbered as the group.
        match trunk.payload_type(packet) {
            Some(pt) if fanout.hand_off(packet, numbered, *pt, egress) => {
                trunk.note_kernel_copy(packet.arrival.at, packet, numbered, pt);
            }
            _ => {
                trunk.deliver(packet, Some(numbered), egress);
                trunk.dirty = true;
            }
        }
        Delivery::Done
    }

    /// What the trunks take or where they send may have changed: the kernel fan-out is
    /// refreshed at [`Trunks::refresh_fanout`].
    pub fn mark_fanout_stale(&mut self) {
        self.fanout_stale = true;
    }

    /// Makes the kernel fan-out groups match what the connected plain trunks take now, if that
    /// may have changed: each video layer some of them take is one group.
    pub fn refresh_fanout(&mut self) {
        let Some(fanout) = self.fanout.as_mut() else {
            return;
        };
        if !std::mem::take(&mut self.fanout_stale) {
            return;
        }
        let mut wanted: HashMap<_, Vec<FanoutMember>> = HashMap::new();
        for (id, trunk) in &self.trunks {
            let Some((from, to)) = trunk
                .send_tuple
                .filter(|_| trunk.connected && trunk.media == TrunkMedia::Plain)
            else {
                continue;
            };
            for (key, layer, ssrc) in trunk.video_layers_taken() {
                wanted.entry((key, layer)).or_default().push(FanoutMember {
                    trunk: *id,
                    copy: TrunkCopy {
                        from,
                        to,
                        ssrc: *ssrc,
                    },
                });
            }
        }
        fanout.refresh(wanted);
    }

    /// The next programming of the kernel fan-out for the shell.
    pub fn next_fanout_change(&mut self) -> Option<FanoutChange> {
        self.fanout.as_mut()?.next_change()
    }

    /// The shell could not program the fan-out group of `handoff_ssrc`: its trunks send their
    /// own copies. False when there is no such group.
    pub fn fanout_refused(&mut self, handoff_ssrc: u32) -> bool {
        self.fanout
            .as_mut()
            .is_some_and(|f| f.refused(handoff_ssrc))
    }

    /// Adds remote member `member` as `id` here; false when `id` or the member is known already.
    pub fn add_member(&mut self, id: PeerId, member: RemoteMember) -> bool {
        let alias = (member.node.clone(), member.remote_id);
        if self.members.contains_key(&id) || self.aliases.contains_key(&alias) {
            return false;
        }
        self.aliases.insert(alias, id);
        self.members.insert(id, member);
        true
    }

    /// Removes remote member `id`.
    pub fn remove_member(&mut self, id: PeerId) -> Option<RemoteMember> {
        let member = self.members.remove(&id)?;
        self.aliases
            .remove(&(member.node.clone(), member.remote_id));
        Some(member)
    }

    /// Remote member `id`.
    pub fn member(&self, id: PeerId) -> Option<&RemoteMember> {
        self.members.get(&id)
    }

    /// The id here of member `remote_id` of `node`.
    pub fn alias(&self, node: &str, remote_id: PeerId) -> Option<PeerId> {
        self.aliases.get(&(node.to_owned(), remote_id)).copied()
    }

    /// Whether trunk `id`'s node has a member in `room` (the room is shared with it).
    pub fn shares(&self, id: TrunkId, room: &str) -> bool {
        let Some(trunk) = self.trunks.get(&id) else {
            return false;
        };
        self.members
            .values()
            .any(|m| m.node == trunk.node && &*m.room == room)
    }

    /// The trunks that share `room`.
    pub fn sharing(&self, room: &str) -> Vec<TrunkId> {
        self.trunks
            .keys()
            .copied()
            .filter(|id| self.shares(*id, room))
            .collect()
    }

    /// Keeps a publication whose member is not known yet.
    pub fn park(&mut self, id: TrunkId, message: ControlMessage) {
        const MAX_PARKED: usize = 256;
        if self.parked.len() < MAX_PARKED {
            self.parked.push((id, message));
        }
    }

    /// Takes the parked publications of member `remote_id` of `node`.
    pub fn unpark(&mut self, node: &str, remote_id: PeerId) -> Vec<(TrunkId, ControlMessage)> {
        let Some(id) = self.id_of(node) else {
            return Vec::new();
        };
        let (mine, rest) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(t, m)| {
                *t == id && matches!(m, ControlMessage::Publish { peer, .. } if *peer == remote_id)
            });
        self.parked = rest;
        mine
    }

    /// The API's view of every trunk.
    pub fn infos(&self) -> Vec<TrunkInfo> {
        let mut infos: Vec<TrunkInfo> = self
            .trunks
            .iter()
            .map(|(id, t)| TrunkInfo {
                node: t.node.clone(),
                connected: t.connected,
                media: t.media.name(),
                tracks_out: t.demands().count(),
                layers_out: t.demands().map(|(_, d)| d.count_ones() as usize).sum(),
                kernel_layers: self.fanout.as_ref().map_or(0, |f| f.layers_of(*id)),
                tracks_in: t.incoming.len(),
                counters: t.counters.clone(),
            })
            .collect();
        infos.sort_by(|a, b| a.node.cmp(&b.node));
        infos
    }
}

/// Gives `rtc` the far side's credentials and fingerprint and starts ICE, DTLS and SCTP; the
/// dialling side (`dials`) also checks the far side's address.
fn start(rtc: &mut Rtc, remote: &TrunkDescription, dials: bool) -> Result<(), TrunkError> {
    let fingerprint: Fingerprint = remote
        .fingerprint
        .parse()
        .map_err(|_| TrunkError::Invalid("fingerprint".into()))?;
    if remote.ufrag.is_empty() || remote.pwd.is_empty() {
        return Err(TrunkError::Invalid("ICE credentials".into()));
    }
    if dials {
        let candidate = Candidate::host(remote.address, "udp")
            .map_err(|e| TrunkError::Invalid(format!("address: {e}")))?;
        rtc.add_remote_candidate(candidate);
    }
    let mut api = rtc.direct_api();
    api.set_remote_ice_credentials(IceCreds {
        ufrag: remote.ufrag.clone(),
        pass: remote.pwd.clone(),
    });
    api.set_remote_fingerprint(fingerprint);
    api.start_dtls(dials)
        .map_err(|e| TrunkError::Invalid(format!("DTLS: {e}")))?;
    api.start_sctp(dials);
    Ok(())
}
