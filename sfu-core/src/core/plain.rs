//! Plain RTP legs in the core. An ingest is a virtual member of its room that publishes one track
//! from a plain RTP source; browsers subscribe to it like to anyone else. An output copies one
//! track, whoever publishes it, to plain RTP receivers, each with its own SSRC and sequence.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::Pt;
use str0m::rtp::ExtensionValues;

use super::forward::{video_codec, Forwarded};
use super::*;
use crate::layers::TrackLayers;
use crate::plain::{
    IngestInfo, IngestSpec, OutputInfo, OutputPath, OutputSpec, OutputTarget, PlainError,
    TargetInfo,
};
use crate::protocol::{PeerInfo, TrackKind, TrackSource};
use crate::rewrite::{SeqExtender, SeqTsRewriter};
use crate::wire::keyframe_start;

/// The mid an ingest's one track has.
const INGEST_MID: &str = "0";

/// A plain RTP source publishing into a room.
pub(super) struct Ingest {
    pub name: String,
    pub room: Arc<str>,
    pub publication: Publication,
    pub params: PayloadParams,
    pub payload_type: u8,
    /// Where RTP is taken from; `None` until the first packet locks it.
    pub source: Option<SocketAddr>,
    pub seq: SeqExtender,
    pub packets: u64,
}

impl Ingest {
    fn info(&self, id: PeerId) -> PeerInfo {
        PeerInfo {
            id,
            name: self.name.clone(),
            tracks: vec![self.publication.info(id)],
        }
    }
}

/// One output: a track copied to plain RTP receivers.
pub(super) struct PlainOutput {
    pub room: Arc<str>,
    pub key: TrackKey,
    pub targets: Vec<PlainTarget>,
    pub path: OutputPath,
    /// Numbering of the one copy handed to the kernel (its receivers differ only in SSRC, PT
    /// and addresses, which the kernel rewrites).
    pub handoff: SeqTsRewriter,
}

/// One receiver of an output, with its own numbering.
pub(super) struct PlainTarget {
    pub address: SocketAddr,
    pub ssrc: u32,
    pub payload_type: Option<u8>,
    pub rewriter: SeqTsRewriter,
    pub packets: u64,
    pub bytes: u64,
}

impl Core {
    /// Creates an ingest with id `id` publishing into `spec.room`.
    pub fn add_ingest(
        &mut self,
        now: Instant,
        id: PeerId,
        spec: IngestSpec,
    ) -> Result<IngestInfo, PlainError> {
        let valid = |s: &str| !s.trim().is_empty() && s.chars().count() <= MAX_NAME_CHARS;
        if !valid(&spec.room) || !valid(&spec.name) {
            return Err(PlainError::Invalid(
                "room and name must be 1 to 64 characters".into(),
            ));
        }
        if spec.payload_type > 127 {
            return Err(PlainError::Invalid("payload type must be 0 to 127".into()));
        }
        if self.peers.contains_key(&id) || self.ingests.contains_key(&id) {
            return Err(PlainError::Invalid(format!("id {id} is taken")));
        }
        if let Some(source) = spec.source {
            if self.ingest_by_source.contains_key(&source) {
                return Err(PlainError::SourceInUse(source));
            }
        }
        let params = spec
            .codec
            .params()
            .ok_or_else(|| PlainError::Invalid("codec not available".into()))?;
        let (room_name, room) = self.room_entry(&spec.room, DEFAULT_CAPACITY);
        room.ingests.push(id);
        let members = room.members.clone();
        let kind = match spec.codec.kind() {
            TrackKind::Audio => MediaKind::Audio,
            TrackKind::Video => MediaKind::Video,
        };
        let ingest = Ingest {
            name: spec.name,
            room: room_name,
            publication: Publication::new(
                Mid::from(INGEST_MID),
                kind,
                TrackSource::Other,
                false,
                TrackLayers::single(),
            ),
            params,
            payload_type: spec.payload_type,
            source: spec.source,
            seq: SeqExtender::default(),
            packets: 0,
        };
        let info = ingest.info(id);
        if let Some(source) = spec.source {
            self.ingest_by_source.insert(source, id);
            self.note_ingest_flow(source, true);
        }
        info!(ingest = id, room = %ingest.room, name = %ingest.name, source = ?spec.source, "plain RTP ingest added");
        let key = TrackKey {
            peer: id,
            mid: ingest.publication.mid,
        };
        self.ingests.insert(id, ingest);
        for member in members {
            if let Some(p) = self
                .peers
                .get_mut(&member)
                .filter(|p| p.permissions.subscribe)
            {
                p.subscriptions.push(Subscription::new(key, kind));
            }
            self.signal(member, ServerMessage::PeerJoined { peer: info.clone() });
            self.negotiate(member);
        }
        self.drive(now);
        self.ingest_info(id).ok_or(PlainError::UnknownIngest(id))
    }

    /// Removes an ingest: its track leaves every member, its outputs go.
    pub fn remove_ingest(&mut self, now: Instant, id: PeerId) -> Result<(), PlainError> {
        let ingest = self
            .ingests
            .remove(&id)
            .ok_or(PlainError::UnknownIngest(id))?;
        if let Some(source) = ingest.source {
            self.ingest_by_source.remove(&source);
            self.note_ingest_flow(source, false);
        }
        info!(ingest = id, room = %ingest.room, "plain RTP ingest removed");
        self.remove_outputs_of(|k| k.peer == id);
        let members = match self.rooms.get_mut(&*ingest.room) {
            Some(room) => {
                room.ingests.retain(|i| *i != id);
                room.members.clone()
            }
            None => Vec::new(),
        };
        self.forget_room_if_empty(&ingest.room);
        for member in members {
            if let Some(p) = self.peers.get_mut(&member) {
                p.drop_legs_of(|k| k.peer == id);
            }
            self.signal(member, ServerMessage::PeerLeft { peer_id: id });
            self.negotiate(member);
        }
        self.drive(now);
        Ok(())
    }

    /// Every ingest of this core.
    pub fn ingest_infos(&self) -> Vec<IngestInfo> {
        self.ingests
            .keys()
            .filter_map(|id| self.ingest_info(*id))
            .collect()
    }

    fn ingest_info(&self, id: PeerId) -> Option<IngestInfo> {
        let i = self.ingests.get(&id)?;
        Some(IngestInfo {
            id,
            room: i.room.to_string(),
            name: i.name.clone(),
            track_id: TrackKey {
                peer: id,
                mid: i.publication.mid,
            }
            .id(),
            port: self.config.candidates.first().map_or(0, |c| c.port()),
            source: i.source,
            packets: i.packets,
        })
    }

    /// The ingest to join a room's members as a virtual member, with legs for its track.
    pub(super) fn ingests_of_room(&self, room: &str) -> Vec<(PeerInfo, TrackKey, MediaKind)> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        r.ingests
            .iter()
            .filter_map(|id| {
                let i = self.ingests.get(id)?;
                let key = TrackKey {
                    peer: *id,
                    mid: i.publication.mid,
                };
                Some((i.info(*id), key, i.publication.kind))
            })
            .collect()
    }

    /// The ingest a datagram from `source` with payload type `pt` is for, locking an unlocked
    /// ingest waiting for that payload type to `source`.
    pub(super) fn ingest_for(&mut self, source: SocketAddr, pt: u8) -> Option<PeerId> {
        if let Some(id) = self.ingest_by_source.get(&source) {
            return Some(*id);
        }
        let (id, ingest) = self
            .ingests
            .iter_mut()
            .find(|(_, i)| i.source.is_none() && i.payload_type == pt)?;
        ingest.source = Some(source);
        let id = *id;
        self.ingest_by_source.insert(source, id);
        self.note_ingest_flow(source, true);
        info!(ingest = id, %source, "plain RTP ingest locked to its first source");
        Some(id)
    }

    /// One plain RTP datagram of an ingest.
    pub(super) fn on_ingest_datagram(&mut self, now: Instant, id: PeerId, buf: &[u8]) {
        let Ok(packet) = RtpPacket::new_checked(buf) else {
            self.counters.drop(DropReason::MalformedRtp);
            return;
        };
        let Some(ingest) = self.ingests.get_mut(&id) else {
            return;
        };
        if packet.payload_type() != ingest.payload_type {
            self.counters.drop(DropReason::NoMatchingCodec);
            return;
        }
        ingest.packets += 1;
        self.counters.received_packets += 1;
        // The one allocation of an ingest packet: str0m takes payloads as `Arc<[u8]>`, and this is
        // where ours is made (a browser's is made by str0m when it decrypts).
        let payload: Arc<[u8]> = Arc::from(packet.payload());
        let keyframe = video_codec(&ingest.params)
            .filter(|_| ingest.publication.kind == MediaKind::Video)
            .and_then(|codec| keyframe_start(codec, &payload));
        ingest
            .publication
            .layers
            .on_packet(0, now, payload.len(), keyframe);
        let forwarded = Forwarded {
            key: TrackKey {
                peer: id,
                mid: ingest.publication.mid,
            },
            ssrc: packet.ssrc(),
            seq: ingest.seq.extend(packet.sequence_number()),
            timestamp: packet.timestamp(),
            marker: packet.marker(),
            arrival: now,
            payload,
            pt: Pt::from(packet.payload_type()),
            params: ingest.params,
            ext: ExtensionValues::default(),
            nackable: ingest.publication.kind == MediaKind::Video,
            layer: 0,
            simulcast: false,
            keyframe: keyframe.is_some(),
            top_layer: 0,
            vp8: None,
        };
        let room = ingest.room.clone();
        self.fan_out(&room, &forwarded);
    }

    /// Reports an ingest source's flow to the media port as valid or not.
    fn note_ingest_flow(&mut self, source: SocketAddr, admitted: bool) {
        let local = forward::local_for(&self.config.candidates, source);
        let tuple = (source, local);
        self.demux.note(if admitted {
            FlowChange::Admitted(Protocol::Udp, tuple)
        } else {
            FlowChange::Revoked(Protocol::Udp, tuple)
        });
    }

    /// Creates output `id` copying `spec.track_id` of `spec.room` to its targets.
    pub fn add_output(&mut self, id: u64, spec: OutputSpec) -> Result<OutputInfo, PlainError> {
        if self.outputs.contains_key(&id) {
            return Err(PlainError::Invalid(format!("id {id} is taken")));
        }
        let key = self
            .track_in_room(&spec.room, &spec.track_id)
            .ok_or_else(|| PlainError::UnknownTrack(spec.track_id.clone(), spec.room.clone()))?;
        let room = self
            .rooms
            .get_key_value(spec.room.as_str())
            .map(|(k, _)| k.clone())
            .ok_or_else(|| PlainError::UnknownTrack(spec.track_id.clone(), spec.room.clone()))?;
        let targets = build_targets(id, &spec.targets, Vec::new())?;
        info!(output = id, track = %spec.track_id, targets = targets.len(), "plain RTP output added");
        self.outputs.insert(
            id,
            PlainOutput {
                room,
                key,
                targets,
                path: OutputPath::Userspace,
                handoff: SeqTsRewriter::new(),
            },
        );
        self.outputs_by_track.entry(key).or_default().push(id);
        self.output_info(id).ok_or(PlainError::UnknownOutput(id))
    }

    /// Replaces the receivers of output `id`; receivers that stay keep their SSRC and numbering.
    pub fn set_output_targets(
        &mut self,
        id: u64,
        targets: Vec<OutputTarget>,
    ) -> Result<OutputInfo, PlainError> {
        let output = self
            .outputs
            .get_mut(&id)
            .ok_or(PlainError::UnknownOutput(id))?;
        let previous = std::mem::take(&mut output.targets);
        match build_targets(id, &targets, previous) {
            Ok(t) => output.targets = t,
            Err(e) => return Err(e),
        }
        info!(
            output = id,
            targets = targets.len(),
            "plain RTP output receivers replaced"
        );
        self.output_info(id).ok_or(PlainError::UnknownOutput(id))
    }

    /// Removes output `id`.
    pub fn remove_output(&mut self, id: u64) -> Result<(), PlainError> {
        let output = self
            .outputs
            .remove(&id)
            .ok_or(PlainError::UnknownOutput(id))?;
        if let Some(ids) = self.outputs_by_track.get_mut(&output.key) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.outputs_by_track.remove(&output.key);
            }
        }
        info!(output = id, "plain RTP output removed");
        self.closed_outputs.push_back(id);
        Ok(())
    }

    /// Moves output `id` to another path (the shell programmed or unprogrammed the kernel).
    pub fn set_output_path(&mut self, id: u64, path: OutputPath) -> Result<OutputInfo, PlainError> {
        let output = self
            .outputs
            .get_mut(&id)
            .ok_or(PlainError::UnknownOutput(id))?;
        if output.path != path {
            info!(output = id, path = path.name(), "plain RTP output path");
            output.path = path;
        }
        self.output_info(id).ok_or(PlainError::UnknownOutput(id))
    }

    /// Every output of this core.
    pub fn output_infos(&self) -> Vec<OutputInfo> {
        self.outputs
            .keys()
            .filter_map(|id| self.output_info(*id))
            .collect()
    }

    fn output_info(&self, id: u64) -> Option<OutputInfo> {
        let o = self.outputs.get(&id)?;
        Some(OutputInfo {
            id,
            room: o.room.to_string(),
            track_id: o.key.id(),
            path: o.path.name(),
            targets: o
                .targets
                .iter()
                .map(|t| TargetInfo {
                    address: t.address,
                    ssrc: t.ssrc,
                    payload_type: t.payload_type,
                    packets: t.packets,
                    bytes: t.bytes,
                })
                .collect(),
        })
    }

    /// Removes the outputs of every track `gone` names (its publisher left or unpublished it).
    pub(super) fn remove_outputs_of(&mut self, gone: impl Fn(&TrackKey) -> bool) {
        let ids: Vec<u64> = self
            .outputs
            .iter()
            .filter(|(_, o)| gone(&o.key))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let _ = self.remove_output(id);
        }
    }

    /// The track `track_id` (`"<peer>:<mid>"`) if it is published in `room`.
    fn track_in_room(&self, room: &str, track_id: &str) -> Option<TrackKey> {
        let key = TrackKey::parse(track_id)?;
        let r = self.rooms.get(room)?;
        let published = if r.members.contains(&key.peer) {
            self.peers
                .get(&key.peer)?
                .publications
                .iter()
                .any(|p| p.mid == key.mid)
        } else if r.ingests.contains(&key.peer) {
            self.ingests.get(&key.peer)?.publication.mid == key.mid
        } else {
            false
        };
        published.then_some(key)
    }
}

/// Receivers for output `id`: those already in `previous` (same address) keep their state.
fn build_targets(
    id: u64,
    wanted: &[OutputTarget],
    mut previous: Vec<PlainTarget>,
) -> Result<Vec<PlainTarget>, PlainError> {
    if wanted.is_empty() || wanted.len() > MAX_OUTPUT_TARGETS {
        return Err(PlainError::Invalid(format!(
            "an output has 1 to {MAX_OUTPUT_TARGETS} receivers"
        )));
    }
    let mut targets = Vec::with_capacity(wanted.len());
    for (index, w) in wanted.iter().enumerate() {
        if targets.iter().any(|t: &PlainTarget| t.address == w.address) {
            return Err(PlainError::Invalid(format!(
                "{} is listed twice",
                w.address
            )));
        }
        if w.payload_type.is_some_and(|pt| pt > 127) {
            return Err(PlainError::Invalid("payload type must be 0 to 127".into()));
        }
        let kept = previous
            .iter()
            .position(|p| p.address == w.address)
            .map(|i| previous.swap_remove(i));
        let target = match kept {
            Some(mut t) => {
                t.ssrc = w.ssrc.unwrap_or(t.ssrc);
                t.payload_type = w.payload_type;
                t
            }
            None => PlainTarget {
                address: w.address,
                ssrc: w.ssrc.unwrap_or_else(|| default_ssrc(id, index)),
                payload_type: w.payload_type,
                rewriter: SeqTsRewriter::new(),
                packets: 0,
                bytes: 0,
            },
        };
        targets.push(target);
    }
    Ok(targets)
}

/// An SSRC for receiver `index` of output `id` when the caller names none: distinct per receiver,
/// the same across restarts of the same configuration.
fn default_ssrc(id: u64, index: usize) -> u32 {
    let mixed = (id ^ ((index as u64) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 32) as u32 | 1
}
