//! The router: every published track of a worker, indexed by [`TrackKey`], each with the list of
//! sinks its packets go to. A source hands a packet in ([`Router::route`]), the router checks it
//! against its track (muted, known layer, keyframe, layer rates) and fans it out to the track's
//! sinks in the same call. A packet costs one hash lookup and one pass over its own sinks: no
//! scan of the room's members.

mod history;
mod packet;
mod sink;
mod track;

use std::collections::HashMap;

use str0m::format::Codec;

pub use history::PacketIndex;
pub use packet::{Arrival, RoutedPacket};
pub use sink::{Delivery, SinkRef, SinkSet};
pub use track::{track_kind, Origin, Track, TrackKey};

use crate::codec::dependency_descriptor::DependencyDescriptorBytes;
use crate::codec::CodecDescriptor;
use crate::counters::DropReason;
use crate::protocol::{PeerId, TrackInfo};
use tracing::info;

/// Every published track of one worker.
#[derive(Debug, Default)]
pub struct Router {
    tracks: HashMap<TrackKey, Track>,
    /// Keyframe requests that were deferred until a layer's first packet and are due now
    /// (track and layer), for the core to send (see [`Router::next_due_keyframe`]).
    due_keyframes: Vec<(TrackKey, u8)>,
}

/// Why the router did not route a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not to be forwarded, and not worth a drop counter: the track is muted or unknown (it was
    /// unpublished while packets were on their way).
    Ignored,
    /// A drop, counted by reason.
    Dropped(DropReason),
}

impl Router {
    /// Publishes `track` as `key` (replacing nothing: a key is published once).
    pub fn publish(&mut self, key: TrackKey, track: Track) {
        self.tracks.entry(key).or_insert(track);
    }

    /// Unpublishes `key`; returns the track, whose sinks are no longer fed.
    pub fn unpublish(&mut self, key: TrackKey) -> Option<Track> {
        self.tracks.remove(&key)
    }

    /// The track published as `key`.
    pub fn track(&self, key: TrackKey) -> Option<&Track> {
        self.tracks.get(&key)
    }

    /// The track published as `key`, to change.
    pub fn track_mut(&mut self, key: TrackKey) -> Option<&mut Track> {
        self.tracks.get_mut(&key)
    }

    /// Every track, in no particular order.
    pub fn tracks(&self) -> impl Iterator<Item = (TrackKey, &Track)> {
        self.tracks.iter().map(|(k, t)| (*k, t))
    }

    /// Every track, to change.
    pub fn tracks_mut(&mut self) -> impl Iterator<Item = (TrackKey, &mut Track)> {
        self.tracks.iter_mut().map(|(k, t)| (*k, t))
    }

    /// The tracks `publisher` publishes (a scan: for joins and offers, not for packets).
    pub fn keys_of(&self, publisher: PeerId) -> Vec<TrackKey> {
        self.tracks
            .keys()
            .filter(|k| k.peer == publisher)
            .copied()
            .collect()
    }

    /// The tracks `wanted` selects (a scan: for trunks opening and closing, not for packets).
    pub fn keys_where(&self, wanted: impl Fn(&Track) -> bool) -> Vec<TrackKey> {
        self.tracks
            .iter()
            .filter(|(_, t)| wanted(t))
            .map(|(k, _)| *k)
            .collect()
    }

    /// The tracks published in `room` (a scan: for joins, not for packets).
    pub fn keys_in_room(&self, room: &str) -> Vec<TrackKey> {
        self.tracks
            .iter()
            .filter(|(_, t)| &*t.room == room)
            .map(|(k, _)| *k)
            .collect()
    }

    /// The protocol's view of what `publisher` publishes.
    pub fn infos_of(&self, publisher: PeerId) -> Vec<TrackInfo> {
        let mut keys = self.keys_of(publisher);
        keys.sort_by_key(|k| k.mid.to_string());
        keys.into_iter()
            .filter_map(|k| self.tracks.get(&k).map(|t| t.info(k)))
            .collect()
    }

    /// Adds `sink` to track `key`'s sinks (once).
    pub fn attach(&mut self, key: TrackKey, sink: SinkRef) {
        if let Some(track) = self.tracks.get_mut(&key) {
            if !track.sinks.contains(&sink) {
                track.sinks.push(sink);
            }
        }
    }

    /// A keyframe request that was deferred until its layer's first packet, which has come.
    pub fn next_due_keyframe(&mut self) -> Option<(TrackKey, u8)> {
        self.due_keyframes.pop()
    }

    /// Removes `sink` from track `key`'s sinks.
    pub fn detach(&mut self, key: TrackKey, sink: SinkRef) {
        if let Some(track) = self.tracks.get_mut(&key) {
            track.sinks.retain(|s| *s != sink);
        }
    }

    /// Routes one packet of track `key`: checks it against its track and records it there
    /// (layer rates, keyframes and the picture size they carry), keeps its payload in the
    /// track's history, and hands it to every sink of the track; sinks that are gone are
    /// forgotten. Returns the packet's codec.
    pub fn route(
        &mut self,
        key: TrackKey,
        arrival: Arrival<'_>,
        sinks: &mut impl SinkSet,
    ) -> Result<&'static CodecDescriptor, Refusal> {
        let track = self.tracks.get_mut(&key).ok_or(Refusal::Ignored)?;
        if track.muted {
            return Err(Refusal::Ignored);
        }
        let codec = CodecDescriptor::of(&arrival.params)
            .filter(|c| c.kind == track.kind)
            .ok_or(Refusal::Dropped(DropReason::NoMatchingCodec))?;
        let keyframe = codec.keyframe(arrival.payload);
        // A scalable stream's layers: from its dependency descriptors (AV1), or its payload
        // descriptors (VP9). Its spatial layers become the track's layers.
        let descriptor = arrival
            .ext
            .user_values
            .get::<DependencyDescriptorBytes>()
            .filter(|_| codec.codec == Codec::Av1);
        let svc = match descriptor {
            Some(bytes) => track.frame_layers(&bytes.0),
            None => codec.svc(arrival.payload),
        }
        .filter(|_| !track.layers.is_simulcast());
        if let Some(count) = svc
            .and_then(|p| p.spatial_layers)
            .filter(|_| keyframe.is_some())
        {
            let sizes = codec.svc_sizes(arrival.payload);
            track.layers.set_nested(count, sizes.as_deref());
        }
        let mut layer = match svc {
            Some(p) if track.layers.is_nested() => p.spatial.min(track.layers.count() as u8 - 1),
            _ => track
                .layers
                .index_of(arrival.rid)
                .ok_or(Refusal::Dropped(DropReason::UnknownLayer))?,
        };
        track
            .layers
            .on_packet(layer, arrival.at, arrival.payload.len(), keyframe);
        if track.layers.take_deferred_keyframe(layer) {
            self.due_keyframes.push((key, layer));
        }
        // A keyframe's size may show that the offer listed the layers in another order.
        let layers_reordered = keyframe.is_some() && track.layers.order_by_size();
        if layers_reordered {
            info!(track = %key.id(), "simulcast layers put in order of picture size");
            layer = track.layers.index_of(arrival.rid).unwrap_or(layer);
        }
        let top_layer = track.layers.count() as u8 - 1;
        // Only a simulcast track's legs switch layers and so renumber picture ids.
        let picture_ids = (top_layer > 0)
            .then(|| codec.picture_ids(arrival.payload))
            .flatten();
        let index = track
            .history
            .push(arrival.payload)
            .ok_or(Refusal::Dropped(DropReason::Oversized))?;
        let track_nested = track.layers.is_nested();
        let Track {
            history,
            sinks: track_sinks,
            ..
        } = track;
        let payload = history.get(index).ok_or(Refusal::Ignored)?;
        let packet = RoutedPacket {
            track: key,
            arrival: Arrival {
                payload,
                ssrc: arrival.ssrc,
                seq: arrival.seq,
                timestamp: arrival.timestamp,
                marker: arrival.marker,
                at: arrival.at,
                pt: arrival.pt,
                params: arrival.params,
                ext: arrival.ext,
                rid: arrival.rid,
            },
            index,
            codec,
            layer,
            top_layer,
            layers_reordered,
            keyframe: keyframe.is_some(),
            picture_ids,
            svc: svc.filter(|p| track_nested || p.layered),
        };
        track_sinks.retain(|&sink| sinks.deliver(sink, &packet) == Delivery::Done);
        Ok(codec)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use str0m::format::CodecConfig;
    use str0m::media::{MediaKind, Mid, Pt};
    use str0m::rtp::ExtensionValues;

    use super::*;
    use crate::protocol::TrackSource;
    use crate::quality::layers::TrackLayers;

    /// Counts what each sink got; sink 2 is gone.
    #[derive(Default)]
    struct Recorder {
        got: Vec<SinkRef>,
    }

    impl SinkSet for Recorder {
        fn deliver(&mut self, sink: SinkRef, packet: &RoutedPacket) -> Delivery {
            assert_eq!(packet.arrival.payload, &PAYLOAD[..]);
            self.got.push(sink);
            if sink == SinkRef::PlainOutput(2) {
                Delivery::Gone
            } else {
                Delivery::Done
            }
        }
    }

    const PAYLOAD: [u8; 7] = [0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00];

    fn arrival(params: str0m::format::PayloadParams) -> Arrival<'static> {
        Arrival {
            ssrc: 1,
            seq: 1,
            timestamp: 0,
            marker: false,
            at: Instant::now(),
            payload: &PAYLOAD,
            pt: Pt::from(96),
            params,
            ext: ExtensionValues::default(),
            rid: None,
        }
    }

    fn video_track() -> Track {
        Track::new(
            Arc::from("room"),
            Origin::Member,
            MediaKind::Video,
            TrackSource::Camera,
            false,
            TrackLayers::single(),
        )
    }

    fn vp8() -> str0m::format::PayloadParams {
        *CodecConfig::new_with_defaults()
            .find(|p| p.spec().codec == str0m::format::Codec::Vp8)
            .unwrap()
    }

    #[test]
    fn packets_reach_each_sink_of_their_track_once_and_gone_sinks_are_forgotten() {
        let mut router = Router::default();
        let key = TrackKey {
            peer: 1,
            mid: Mid::from("0"),
        };
        let other = TrackKey {
            peer: 2,
            mid: Mid::from("0"),
        };
        router.publish(key, video_track());
        router.publish(other, video_track());
        for sink in [1, 2, 3, 3] {
            router.attach(key, SinkRef::PlainOutput(sink));
        }
        router.attach(other, SinkRef::PlainOutput(9));
        let mut sinks = Recorder::default();
        router.route(key, arrival(vp8()), &mut sinks).unwrap();
        assert_eq!(
            sinks.got,
            [1, 2, 3].map(SinkRef::PlainOutput),
            "each sink of the track once, none of another track"
        );
        assert_eq!(
            router.track(key).unwrap().sinks(),
            &[SinkRef::PlainOutput(1), SinkRef::PlainOutput(3)]
        );
        router.detach(key, SinkRef::PlainOutput(1));
        assert_eq!(
            router.track(key).unwrap().sinks(),
            &[SinkRef::PlainOutput(3)]
        );
    }

    #[test]
    fn muted_unknown_and_mismatched_packets_are_refused() {
        let mut router = Router::default();
        let key = TrackKey {
            peer: 1,
            mid: Mid::from("0"),
        };
        let mut sinks = Recorder::default();
        assert_eq!(
            router.route(key, arrival(vp8()), &mut sinks).err(),
            Some(Refusal::Ignored)
        );
        router.publish(key, video_track());
        let opus = *CodecConfig::new_with_defaults()
            .find(|p| p.spec().codec == str0m::format::Codec::Opus)
            .unwrap();
        assert_eq!(
            router.route(key, arrival(opus), &mut sinks).err(),
            Some(Refusal::Dropped(DropReason::NoMatchingCodec)),
            "audio on a video track"
        );
        router.track_mut(key).unwrap().muted = true;
        assert_eq!(
            router.route(key, arrival(vp8()), &mut sinks).err(),
            Some(Refusal::Ignored)
        );
        assert!(sinks.got.is_empty(), "nothing refused reached a sink");
    }
}
