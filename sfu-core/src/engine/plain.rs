//! The plain RTP API of the core: ingests publish into rooms as sources, outputs copy tracks to
//! plain receivers as sinks. The state lives in [`PlainLegs`](crate::plain_legs::PlainLegs); this
//! ties it to rooms and the router.

use std::time::Instant;

use tracing::info;

use super::signaling::DEFAULT_CAPACITY;
use super::Core;
use crate::events::RoomEvent;
use crate::plain::{
    IngestInfo, IngestSpec, OutputInfo, OutputPath, OutputSpec, OutputTarget, PlainError,
};
use crate::plain_legs::Ingest;
use crate::protocol::{PeerId, ServerMessage, TrackSource};
use crate::quality::layers::TrackLayers;
use crate::router::{Origin, SinkRef, Track, TrackKey};

impl Core {
    /// Creates an ingest with id `id` publishing into `spec.room`.
    pub fn add_ingest(
        &mut self,
        now: Instant,
        id: PeerId,
        spec: IngestSpec,
    ) -> Result<IngestInfo, PlainError> {
        if self.members.contains(id) || self.plain.has_ingest(id) {
            return Err(PlainError::Invalid(format!("id {id} is taken")));
        }
        let created = self.members.room(&spec.room).is_none();
        let (room, _) = self.members.room_entry(&spec.room, DEFAULT_CAPACITY);
        let kind = match self.plain.add_ingest(id, &spec, room.clone()) {
            Ok(ingest) => ingest.kind,
            Err(e) => {
                self.members.forget_room_if_empty(&room);
                return Err(e);
            }
        };
        if let Some(r) = self.members.room_mut(&room) {
            r.ingests.push(id);
        }
        if created {
            self.outbox.event(RoomEvent::RoomStarted {
                room: room.to_string(),
            });
        }
        // The room's members see an ingest as a member; so do the other nodes' (the directory
        // lists it, and its track crosses the trunks like a member's), and webhooks.
        self.outbox.event(RoomEvent::ParticipantJoined {
            room: room.to_string(),
            peer_id: id,
            name: spec.name.clone(),
        });
        let key = Ingest::track(id);
        let track = Track::new(
            room.clone(),
            Origin::PlainIngest,
            kind,
            TrackSource::Other,
            false,
            TrackLayers::single(),
        );
        self.router.publish(key, track);
        if let Some(source) = spec.source {
            self.note_ingest_flow(source, true);
        }
        info!(ingest = id, room = %room, name = %spec.name, source = ?spec.source, "plain RTP ingest added");
        if let Some(info) = self.peer_info(id) {
            let message = ServerMessage::PeerJoined { peer: info };
            self.offer_track_to_room(&room, id, key, &message);
        }
        if created {
            self.on_room_created(&room);
        }
        self.record_new_track(now, key);
        self.trunk_new_track(key);
        // The room now has something of this worker: other nodes' members in it are admitted.
        self.admit_roster(now, &room);
        self.drive(now);
        self.ingest_info(id).ok_or(PlainError::UnknownIngest(id))
    }

    /// Removes an ingest: its track leaves every member, its outputs go.
    pub fn remove_ingest(&mut self, now: Instant, id: PeerId) -> Result<(), PlainError> {
        let ingest = self.plain.remove_ingest(id)?;
        if let Some(source) = ingest.source {
            self.note_ingest_flow(source, false);
        }
        info!(ingest = id, room = %ingest.room, "plain RTP ingest removed");
        self.remove_outputs_of(|k| k.peer == id);
        self.router.unpublish(Ingest::track(id));
        self.end_recorded_track(Ingest::track(id));
        self.trunk_track_gone(Ingest::track(id));
        if let Some(room) = self.members.room_mut(&ingest.room) {
            room.ingests.retain(|i| *i != id);
        }
        self.outbox.event(RoomEvent::ParticipantLeft {
            room: ingest.room.to_string(),
            peer_id: id,
            name: ingest.name.clone(),
        });
        self.release_roster(now, &ingest.room);
        self.close_room_if_empty(&ingest.room);
        self.end_recording_if_room_gone(now, &ingest.room);
        self.drop_ingest_from_room(&ingest.room, id);
        self.drive(now);
        Ok(())
    }

    /// Every ingest of this core.
    pub fn ingest_infos(&self) -> Vec<IngestInfo> {
        self.plain
            .ingest_ids()
            .filter_map(|id| self.ingest_info(id))
            .collect()
    }

    fn ingest_info(&self, id: PeerId) -> Option<IngestInfo> {
        let port = self.config.candidates.first().map_or(0, |c| c.port());
        self.plain.ingest_info(id, port)
    }

    /// Creates output `id` copying `spec.track_id` of `spec.room` to its targets.
    pub fn add_output(&mut self, id: u64, spec: OutputSpec) -> Result<OutputInfo, PlainError> {
        let unknown = || PlainError::UnknownTrack(spec.track_id.clone(), spec.room.clone());
        let key = TrackKey::parse(&spec.track_id).ok_or_else(unknown)?;
        let room = self
            .router
            .track(key)
            .filter(|t| *t.room == *spec.room)
            .map(|t| t.room.clone())
            .ok_or_else(unknown)?;
        self.plain.add_output(id, room, key, &spec.targets)?;
        self.router.attach(key, SinkRef::PlainOutput(id));
        self.plain
            .output_info(id)
            .ok_or(PlainError::UnknownOutput(id))
    }

    /// Replaces the receivers of output `id`; receivers that stay keep their SSRC and numbering.
    pub fn set_output_targets(
        &mut self,
        id: u64,
        targets: Vec<OutputTarget>,
    ) -> Result<OutputInfo, PlainError> {
        self.plain.set_output_targets(id, &targets)?;
        self.plain
            .output_info(id)
            .ok_or(PlainError::UnknownOutput(id))
    }

    /// Removes output `id`.
    pub fn remove_output(&mut self, id: u64) -> Result<(), PlainError> {
        let output = self.plain.remove_output(id)?;
        self.router.detach(output.key, SinkRef::PlainOutput(id));
        info!(output = id, "plain RTP output removed");
        self.outbox.output_closed(id);
        Ok(())
    }

    /// Moves output `id` to another path (the shell programmed or unprogrammed the kernel).
    pub fn set_output_path(&mut self, id: u64, path: OutputPath) -> Result<OutputInfo, PlainError> {
        self.plain.set_output_path(id, path)?;
        self.plain
            .output_info(id)
            .ok_or(PlainError::UnknownOutput(id))
    }

    /// Every output of this core.
    pub fn output_infos(&self) -> Vec<OutputInfo> {
        self.plain
            .output_ids()
            .filter_map(|id| self.plain.output_info(id))
            .collect()
    }

    /// Removes the outputs of every track `gone` names (its publisher left or unpublished it).
    pub(super) fn remove_outputs_of(&mut self, gone: impl Fn(&TrackKey) -> bool) {
        for id in self.plain.outputs_of(gone) {
            let _ = self.remove_output(id);
        }
    }
}
