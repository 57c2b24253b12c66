//! WHIP publishers (RFC 9725): members whose signaling is one HTTP exchange. The offer comes with
//! the join, the answer goes back in the HTTP response, and the tracks are the offer's sending
//! m-lines (WHIP has no track list). Such a member publishes only: its channel takes no messages
//! ([`SignalingChannel::Http`]), so it subscribes to nothing and is never sent an offer. Others
//! see it as any member (`peerJoined`, `trackPublished`, `peerLeft`); it leaves by `DELETE`
//! ([`Core::disconnect`]) or by the liveness timers, as a member whose WebSocket went quiet.

use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::media::{MediaKind, Mid};
use tracing::info;

use super::signaling::{Join, JoinRefusal, MAX_PUBLICATIONS};
use super::Core;
use crate::counters::DropReason;
use crate::membership::{Peer, SignalingChannel};
use crate::permissions::{offer_sends_media, Permissions};
use crate::protocol::{ErrorCode, PeerId, PublishedTrack, TrackSource, PROTOCOL_VERSION};

impl Core {
    /// Member `id` joins `room` as `name`, publishing what the WHIP `offer` sends; returns our
    /// SDP answer. It may publish only if `permissions` allow; it never subscribes or chats. A
    /// refused join (bad SDP, nothing to publish, a full room) leaves no member behind.
    pub fn join_whip(
        &mut self,
        now: Instant,
        id: PeerId,
        room: String,
        name: String,
        offer: &str,
        permissions: Permissions,
    ) -> Result<String, JoinRefusal> {
        let _span = tracing::info_span!("peer", id).entered();
        let result = self.admit_whip(now, id, room, name, offer, permissions);
        self.drive(now);
        result
    }

    fn admit_whip(
        &mut self,
        now: Instant,
        id: PeerId,
        room: String,
        name: String,
        offer: &str,
        permissions: Permissions,
    ) -> Result<String, JoinRefusal> {
        if !permissions.publish {
            self.counters.drop(DropReason::Forbidden);
            return Err(JoinRefusal::new(
                ErrorCode::Forbidden,
                "the token does not allow publishing in this room",
            ));
        }
        if !offer_sends_media(offer) {
            self.counters.drop(DropReason::BadSdp);
            return Err(JoinRefusal::new(
                ErrorCode::BadSdp,
                "the offer sends no audio or video",
            ));
        }
        let publisher = Permissions {
            subscribe: false,
            chat: false,
            ..permissions
        };
        let answer = self.join_over_http(now, id, room, name, offer, publisher)?;
        let tracks = self
            .members
            .get(id)
            .map(|p| offered_tracks(p, offer))
            .unwrap_or_default();
        info!(peer = id, tracks = tracks.len(), "WHIP publisher joined");
        self.update_publications(now, id, &tracks);
        self.members.mark_dirty(id);
        Ok(answer)
    }

    /// Member `id` joins `room` as `name` with signaling over HTTP (WHIP or WHEP) and what
    /// `permissions` allow, and its `offer` is applied; returns our answer. Refused before the
    /// join when the offer does not parse, and undone when it cannot be applied, so a refusal
    /// leaves no trace in the room.
    pub(super) fn join_over_http(
        &mut self,
        now: Instant,
        id: PeerId,
        room: String,
        name: String,
        offer: &str,
        permissions: Permissions,
    ) -> Result<String, JoinRefusal> {
        if let Err(e) = SdpOffer::from_sdp_string(offer) {
            self.counters.drop(DropReason::BadSdp);
            return Err(JoinRefusal::new(
                ErrorCode::BadSdp,
                &format!("unparsable SDP: {e}"),
            ));
        }
        let join = Join {
            version: PROTOCOL_VERSION,
            room,
            name,
            capacity: None,
        };
        self.try_join(now, id, join, permissions, SignalingChannel::Http)?;
        let Some(peer) = self.members.get_mut(id) else {
            return Err(JoinRefusal::new(
                ErrorCode::Unavailable,
                "the member is gone",
            ));
        };
        match peer.accept_offer(offer) {
            Ok(answer) => Ok(answer),
            Err(e) => {
                self.counters.drop(DropReason::BadSdp);
                self.remove_peer(now, id, None);
                Err(JoinRefusal::new(ErrorCode::BadSdp, &e.to_string()))
            }
        }
    }
}

/// The tracks a WHIP offer publishes: each m-line `peer` receives on (the offer's sending
/// m-lines), audio as a microphone, video as a camera, in offer order.
fn offered_tracks(peer: &Peer, offer: &str) -> Vec<PublishedTrack> {
    offer
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=mid:"))
        .filter_map(|mid| {
            let source = match peer.receiving_kind(Mid::from(mid))? {
                MediaKind::Audio => TrackSource::Mic,
                MediaKind::Video => TrackSource::Camera,
            };
            Some(PublishedTrack {
                mid: mid.to_owned(),
                source,
                muted: false,
            })
        })
        .take(MAX_PUBLICATIONS)
        .collect()
}
