//! WHEP viewers: members that watch over one HTTP exchange. The client offers one audio and one
//! video m-line to receive on (the usual WHEP offer); each becomes a leg whose subscription the
//! core moves to what the viewer follows (the room's active speaker, or one named member),
//! looked at again on every quality tick. A move keeps the leg's numbering continuous (the
//! subscription's rewriter, as at a simulcast layer switch), asks the new source for a keyframe
//! and lets the layer choice start again from the viewer's bandwidth estimate.
//!
//! A viewer is a member: the room sees it join and leave (with no tracks), the liveness timers
//! end it if it never connects or goes silent, and its channel takes no messages
//! ([`SignalingChannel::Http`](crate::membership::SignalingChannel)), so it gets no offers and no
//! subscriptions beyond its legs.

use std::time::Instant;

use str0m::media::{MediaKind, Mid};
use tracing::info;

use super::signaling::JoinRefusal;
use super::Core;
use crate::counters::DropReason;
use crate::membership::{Peer, Subscription};
use crate::permissions::{offer_sends_media, Permissions};
use crate::protocol::{ErrorCode, PeerId, TrackSource};
use crate::router::{SinkRef, TrackKey};
use crate::viewers::{Follow, Viewer, ViewerLeg};

impl Core {
    /// Viewer `id` joins `room` as `name`, following `follow`, with its WHEP `offer`; returns
    /// our SDP answer. It must have the subscribe permission; it never publishes or chats. A
    /// refused join (bad SDP, nothing to receive, a full room) leaves no member behind.
    #[allow(clippy::too_many_arguments)] // one join's parts, as the HTTP request has them
    pub fn join_whep(
        &mut self,
        now: Instant,
        id: PeerId,
        room: String,
        name: String,
        follow: Follow,
        offer: &str,
        permissions: Permissions,
    ) -> Result<String, JoinRefusal> {
        let _span = tracing::info_span!("peer", id).entered();
        let result = self.admit_whep(now, id, (room, name), follow, offer, permissions);
        self.drive(now);
        result
    }

    fn admit_whep(
        &mut self,
        now: Instant,
        id: PeerId,
        (room, name): (String, String),
        follow: Follow,
        offer: &str,
        permissions: Permissions,
    ) -> Result<String, JoinRefusal> {
        if !permissions.subscribe {
            self.counters.drop(DropReason::Forbidden);
            return Err(JoinRefusal::new(
                ErrorCode::Forbidden,
                "the token does not allow watching this room",
            ));
        }
        if offer_sends_media(offer) {
            self.counters.drop(DropReason::BadSdp);
            return Err(JoinRefusal::new(
                ErrorCode::BadSdp,
                "a WHEP offer only receives: its m-lines must be recvonly",
            ));
        }
        let viewer = Permissions {
            publish: false,
            chat: false,
            ..permissions
        };
        let answer = self.join_over_http(now, id, room, name, offer, viewer)?;
        let legs = self
            .members
            .get(id)
            .map(|p| offered_legs(p, offer))
            .unwrap_or_default();
        if legs.is_empty() {
            self.counters.drop(DropReason::BadSdp);
            self.remove_peer(now, id, None);
            return Err(JoinRefusal::new(
                ErrorCode::BadSdp,
                "the offer receives no audio or video",
            ));
        }
        info!(peer = id, ?follow, legs = legs.len(), "WHEP viewer joined");
        // What it decodes counts in the room's codec policy like any member's.
        self.note_video_capabilities(id, offer);
        self.viewers.insert(id, Viewer { follow, legs });
        self.retarget_viewer(now, id);
        Ok(answer)
    }

    /// Moves every viewer's legs to what it follows now.
    pub(super) fn retarget_viewers(&mut self, now: Instant) {
        if self.viewers.is_empty() {
            return;
        }
        for id in self.viewers.ids() {
            self.retarget_viewer(now, id);
        }
    }

    /// Moves viewer `id`'s legs to the tracks of whom it follows now; nothing changes while
    /// there is nobody to follow.
    fn retarget_viewer(&mut self, now: Instant, id: PeerId) {
        let (Some(viewer), Some(peer)) = (self.viewers.get(id), self.members.get(id)) else {
            return;
        };
        let legs = viewer.legs.clone();
        let follow = viewer.follow.clone();
        let room = peer.room.clone();
        let current = legs
            .iter()
            .filter_map(|l| peer.subscriptions.get(l.slot?))
            .map(|s| s.source)
            .find(|k| self.router.track(*k).is_some())
            .map(|k| k.peer);
        let Some(target) = self.followed(&room, &follow, current) else {
            return;
        };
        let mut moved = false;
        for leg in legs {
            if let Some(key) = self.viewed_track(target, leg.kind) {
                moved |= self.move_leg(id, leg, key);
            }
        }
        if moved {
            // The new video source gets its layer and is asked for a keyframe.
            self.reallocate(now, id);
            self.members.mark_dirty(id);
        }
    }

    /// Whose media a viewer of `room` following `follow` receives; `current`: whom it
    /// receives now, if that one still publishes.
    fn followed(&self, room: &str, follow: &Follow, current: Option<PeerId>) -> Option<PeerId> {
        match follow {
            Follow::Peer(name) => self
                .members
                .members_of(room)
                .into_iter()
                .find(|m| self.members.get(*m).is_some_and(|p| p.name == *name)),
            Follow::Speaker => {
                let speaker = self
                    .members
                    .room(room)
                    .and_then(|r| r.speaker.current())
                    .map(|k| k.peer);
                // Until anybody spoke: the earliest publisher of video, else of anything.
                let first = || {
                    let keys = self.router.keys_in_room(room);
                    let video = |k: &&TrackKey| {
                        self.router
                            .track(**k)
                            .is_some_and(|t| t.kind == MediaKind::Video)
                    };
                    let earliest = keys.iter().filter(video).map(|k| k.peer).min();
                    earliest.or_else(|| keys.iter().map(|k| k.peer).min())
                };
                speaker.or(current).or_else(first)
            }
        }
    }

    /// `publisher`'s track of `kind` a viewer takes: its camera (microphone) before any other
    /// track of that kind.
    fn viewed_track(&self, publisher: PeerId, kind: MediaKind) -> Option<TrackKey> {
        let preferred = match kind {
            MediaKind::Audio => TrackSource::Mic,
            MediaKind::Video => TrackSource::Camera,
        };
        self.router
            .keys_of(publisher)
            .into_iter()
            .filter_map(|k| self.router.track(k).map(|t| (k, t)))
            .filter(|(_, t)| t.kind == kind)
            .min_by_key(|(k, t)| (t.source != preferred, k.mid.to_string()))
            .map(|(k, _)| k)
    }

    /// Puts track `key` on viewer `id`'s `leg`; false when the leg carries it already.
    fn move_leg(&mut self, id: PeerId, leg: ViewerLeg, key: TrackKey) -> bool {
        let Some(peer) = self.members.get_mut(id) else {
            return false;
        };
        let sink = |slot| SinkRef::Subscription {
            subscriber: id,
            slot,
        };
        let existing = leg
            .slot
            .and_then(|slot| Some((slot, peer.subscriptions.get_mut(slot)?)));
        match existing {
            // `wanted` is cleared when the source was unpublished: a track published again under
            // the same key is a new track to attach to.
            Some((_, sub)) if sub.source == key && sub.wanted => return false,
            Some((slot, sub)) => {
                let old = sub.source;
                sub.retarget(key);
                self.router.detach(old, sink(slot));
                self.router.attach(key, sink(slot));
            }
            None => {
                let ssrc = peer
                    .rtc
                    .direct_api()
                    .stream_tx_by_mid(leg.mid, None)
                    .map(|tx| tx.ssrc());
                let sub = Subscription::opened(key, leg.kind, leg.mid, ssrc);
                let slot = peer.subscriptions.insert(sub);
                self.router.attach(key, sink(slot));
                if let Some(l) = self.viewers.leg_mut(id, leg.mid) {
                    l.slot = Some(slot);
                }
            }
        }
        info!(viewer = id, track = %key.id(), "viewer leg moved");
        true
    }
}

/// A WHEP offer's legs: its first m-line of each kind that `peer`'s session sends on (the
/// client receives on), in offer order.
fn offered_legs(peer: &Peer, offer: &str) -> Vec<ViewerLeg> {
    let mut legs: Vec<ViewerLeg> = Vec::new();
    for mid in offer
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=mid:"))
        .map(Mid::from)
    {
        match peer.sending_kind(mid) {
            Some(kind) if !legs.iter().any(|l| l.kind == kind) => legs.push(ViewerLeg {
                kind,
                mid,
                slot: None,
            }),
            _ => {}
        }
    }
    legs
}
