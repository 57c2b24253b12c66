//! The room's video codec policy (`codec/policy.rs`) applied: members' SDP says which video
//! codecs they take, and each publisher whose codec should change is told with `videoCodec`.

use super::Core;
use crate::codec::policy::{self, VideoCapabilities};
use crate::protocol::{PeerId, ServerMessage};

impl Core {
    /// Member `id` sent or accepted `sdp` (its offer or its answer): if it says anew which video
    /// codecs the member takes, the room's codecs are chosen again.
    pub(super) fn note_video_capabilities(&mut self, id: PeerId, sdp: &str) {
        let capabilities = policy::video_codecs_in_sdp(sdp, &self.config.video_codecs);
        // A member that receives nothing (no subscribe permission) decodes nothing for anyone.
        let Some(peer) = self.members.get_mut(id).filter(|p| p.permissions.subscribe) else {
            return;
        };
        // An SDP without video leaves what an earlier one said.
        if capabilities.is_none() || peer.video_capabilities == capabilities {
            return;
        }
        peer.video_capabilities = capabilities;
        let room = peer.room.clone();
        self.apply_codec_policy(&room);
    }

    /// Chooses each publisher's video codec in `room` for its members as they are now, and asks
    /// each member that may publish, and whose codec changed, to send it.
    pub(super) fn apply_codec_policy(&mut self, room: &str) {
        let room_capabilities: Vec<(PeerId, VideoCapabilities)> = self
            .members
            .members_of(room)
            .into_iter()
            .filter_map(|m| Some((m, self.members.get(m)?.video_capabilities.clone())))
            .collect();
        for (id, own) in &room_capabilities {
            let others = room_capabilities
                .iter()
                .filter(|(other, _)| other != id)
                .map(|(_, c)| c);
            let codec = policy::codec_for(&self.config.video_codecs, own, others);
            let Some(peer) = self.members.get_mut(*id) else {
                continue;
            };
            let Some(codec) = codec.filter(|c| peer.video_codec_asked != Some(*c)) else {
                continue;
            };
            // WHIP publishers cannot be told: their offer chose, and viewers that cannot decode
            // it drop it (counted).
            if !peer.permissions.publish || !peer.signaling.takes_messages() {
                continue;
            }
            peer.video_codec_asked = Some(codec);
            tracing::info!(peer = id, %codec, room, "asked to send video codec");
            self.outbox.signal(
                *id,
                ServerMessage::VideoCodec {
                    codec: codec.to_string(),
                },
            );
        }
    }
}
