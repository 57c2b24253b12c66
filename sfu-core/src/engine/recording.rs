//! Recording in the core: starting and stopping a room's recording, attaching the recorder to
//! every track of the room (and to tracks published later), telling every member, and passing
//! the recorder's keyframe requests to publishers. The recorder itself is
//! [`Recordings`](crate::recording::Recordings).

use std::sync::Arc;
use std::time::Instant;

use str0m::media::MediaKind;
use tracing::info;

use super::Core;
use crate::protocol::{ErrorCode, PeerId, ServerMessage};
use crate::recording::RecordingError;
use crate::router::{SinkRef, TrackKey};

impl Core {
    /// Starts recording `room` as recording `id`: every track of the room gets the recorder as
    /// a sink, video publishers are asked for a keyframe, and every member is told.
    pub fn start_recording(
        &mut self,
        now: Instant,
        room: &str,
        id: String,
    ) -> Result<(), RecordingError> {
        self.can_start_recording(room)?;
        let number = self.recordings.start(Arc::from(room), id.clone(), now)?;
        info!(room, id = %id, "recording started");
        for key in self.router.keys_in_room(room) {
            self.record_track(now, number, key);
        }
        self.announce_recording(room, true, id, None);
        self.drive(now);
        Ok(())
    }

    /// Stops `room`'s recording (`error` says why when it failed): the recorder leaves every
    /// track, its files are closed, and every member is told. Returns the recording's id.
    pub fn stop_recording(
        &mut self,
        now: Instant,
        room: &str,
        error: Option<String>,
    ) -> Result<String, RecordingError> {
        let (number, _) = self
            .recordings
            .of_room(room)
            .ok_or_else(|| RecordingError::NotRecording(room.to_owned()))?;
        for key in self.router.keys_in_room(room) {
            self.router.detach(key, SinkRef::Recorder(number));
        }
        let id = self.recordings.stop(room, error.clone())?;
        self.announce_recording(room, false, id.clone(), error);
        self.drive(now);
        Ok(id)
    }

    /// Whether `room` could start recording now: it exists here and is not recorded yet. (The
    /// shell asks before it prepares the recording's directory off the media thread.)
    pub fn can_start_recording(&self, room: &str) -> Result<(), RecordingError> {
        if self.members.room(room).is_none() {
            return Err(RecordingError::UnknownRoom(room.to_owned()));
        }
        match self.recordings.of_room(room) {
            Some(_) => Err(RecordingError::AlreadyRecording(room.to_owned())),
            None => Ok(()),
        }
    }

    /// Tells every member of `room` that recording `id` could not start, and why (its directory
    /// could not be written).
    pub fn recording_failed(&mut self, room: &str, id: &str, error: String) {
        self.announce_recording(room, false, id.to_owned(), Some(error));
    }

    /// The id of `room`'s recording, while it is being recorded.
    pub fn recording_of(&self, room: &str) -> Option<String> {
        self.recordings.of_room(room).map(|(_, id)| id.to_owned())
    }

    /// Records track `key` too, if its room is being recorded (it was just published).
    pub(super) fn record_new_track(&mut self, now: Instant, key: TrackKey) {
        let number = self
            .router
            .track(key)
            .and_then(|t| self.recordings.of_room(&t.room))
            .map(|(number, _)| number);
        if let Some(number) = number {
            self.record_track(now, number, key);
        }
    }

    /// Attaches recording `number` to track `key` (its top layer) and asks for a keyframe.
    fn record_track(&mut self, now: Instant, number: u64, key: TrackKey) {
        let Some((kind, top)) = self
            .router
            .track(key)
            .map(|t| (t.kind, t.layers.count().saturating_sub(1) as u8))
        else {
            return;
        };
        let name = self
            .peer_info(key.peer)
            .map_or_else(|| key.peer.to_string(), |p| p.name);
        self.recordings.add_track(number, key, &name, kind, top);
        self.router.attach(key, SinkRef::Recorder(number));
        if kind == MediaKind::Video {
            self.request_keyframe(now, key, top);
        }
    }

    /// Track `key` ended (unpublished, or its publisher left): the recorder writes what it holds.
    pub(super) fn end_recorded_track(&mut self, key: TrackKey) {
        self.recordings.end_track(key);
    }

    /// Ends `room`'s recording when the room itself is gone (its last member left).
    pub(super) fn end_recording_if_room_gone(&mut self, now: Instant, room: &str) {
        if self.members.room(room).is_none() && self.recordings.of_room(room).is_some() {
            let _ = self.stop_recording(now, room, None);
        }
    }

    /// A room was just created: the configuration may want it recorded.
    pub(super) fn on_room_created(&mut self, room: &str) {
        if self.config.record_rooms.iter().any(|r| r == room) {
            self.recordings.request(Arc::from(room));
        }
    }

    /// Passes the recorder's keyframe requests on to the publishers (rate-limited as viewers').
    pub(super) fn request_recorder_keyframes(&mut self, now: Instant) {
        if !self.recordings.wants_keyframes() {
            return;
        }
        let wanted: Vec<(TrackKey, u8)> = self.recordings.take_keyframe_requests().collect();
        for (key, layer) in wanted {
            self.request_keyframe(now, key, layer);
        }
    }

    /// A member's `record` message: start (through the shell, which names the recording) or
    /// stop its room's recording, if its permissions allow.
    pub(super) fn on_record(&mut self, now: Instant, id: PeerId, active: bool) {
        let Some(peer) = self.members.get(id) else {
            return;
        };
        if !peer.permissions.record {
            self.counters.drop(crate::counters::DropReason::Forbidden);
            return self.error(
                id,
                ErrorCode::Forbidden,
                "your token does not allow recording this room",
            );
        }
        let room = peer.room.clone();
        let recording = self.recordings.of_room(&room).is_some();
        match (active, recording) {
            (true, false) => self.recordings.request(room),
            (false, true) => {
                let _ = self.stop_recording(now, &room, None);
            }
            (true, true) => self.error(
                id,
                ErrorCode::BadMessage,
                "the room is already being recorded",
            ),
            (false, false) => {
                self.error(id, ErrorCode::BadMessage, "the room is not being recorded")
            }
        }
    }

    /// Tells every member of `room` that its recording started or stopped.
    fn announce_recording(&mut self, room: &str, active: bool, id: String, error: Option<String>) {
        for member in self.members.members_of(room) {
            self.outbox.signal(
                member,
                ServerMessage::Recording {
                    active,
                    id: id.clone(),
                    error: error.clone(),
                },
            );
        }
    }
}
