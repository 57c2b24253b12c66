//! One trunk: the media session between this node and another (one `str0m::Rtc`, DTLS-SRTP,
//! SCTP for the control channel, RTP mode with streams declared by SSRC). It is both a sink of
//! the router (the tracks of this node the far node takes, each layer once as its own stream)
//! and a source (the far node's tracks, published here as [`Origin::Trunk`] tracks).
//!
//! [`Origin::Trunk`]: crate::router::Origin::Trunk

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use str0m::channel::{ChannelConfig, ChannelId};
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, Ssrc};
use str0m::Rtc;
use tracing::info;

use super::control::{ControlMessage, LayerStream};
use super::{TrunkDescription, TrunkMedia};
use crate::counters::DropReason;
use crate::membership::{seal, ResendLog, Sent};
use crate::outbox::Egress;
use crate::rewrite::{Rewritten, SeqTsRewriter};
use crate::router::{track_kind, RoutedPacket, Router, Track, TrackKey};

/// The label of the control channel (negotiated out of band as SCTP stream 0 on both sides).
const CONTROL_LABEL: &str = "trunk";
/// The SCTP stream of the control channel.
const CONTROL_STREAM: u16 = 0;
/// Control messages kept while the channel is not open yet (more means the far node is gone).
const MAX_QUEUED_CONTROL: usize = 1024;

/// Counters of one trunk.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrunkCounters {
    /// RTP packets sent to the far node (each crosses once, whatever its subscriber count there).
    pub packets_out: u64,
    /// Their payload bytes.
    pub bytes_out: u64,
    /// Packets resent because the far node NACKed them.
    pub resent_out: u64,
    /// RTP packets received from the far node.
    pub packets_in: u64,
    /// Keyframe requests the far node sent for this node's tracks.
    pub keyframe_requests_in: u64,
    /// Control messages refused (malformed, or naming what does not exist).
    pub bad_control_messages: u64,
}

/// One layer of a local track crossing the trunk.
#[derive(Debug)]
struct OutLayer {
    ssrc: Ssrc,
    /// Its numbering on the trunk: the publisher's sequence numbers (their low 16 bits) and
    /// timestamps, from a rollover counter of 0 as the far side's SRTP expects (a publisher
    /// long past 65,535 packets, or a plain RTP ingest, starts higher); continuous when the
    /// publisher's source changes or the far node takes the layer up again after a pause, which
    /// the far side could otherwise not tell from a packet whose rollover it guessed wrong.
    rewriter: SeqTsRewriter,
    /// What was sent, to answer NACKs from the track's history.
    resend_log: ResendLog,
}

impl OutLayer {
    /// `packet` went to the far node as `sent`: counted in `counters`, and kept for its NACKs.
    fn sent(&mut self, packet: &RoutedPacket, sent: Sent, counters: &mut TrunkCounters) {
        if packet.is_nackable() {
            self.resend_log.record(sent);
        }
        counters.packets_out += 1;
        counters.bytes_out += packet.arrival.payload.len() as u64;
    }
}

/// The layer of the local track `packet` belongs to, among the tracks crossing (`out`).
fn out_layer<'a>(
    out: &'a mut HashMap<TrackKey, OutTrack>,
    packet: &RoutedPacket,
) -> Option<&'a mut OutLayer> {
    out.get_mut(&packet.track)?
        .layers
        .get_mut(packet.layer as usize)
}

/// A local track announced on the trunk.
#[derive(Debug)]
struct OutTrack {
    /// The trunk media its streams belong to.
    mid: Mid,
    /// Audio or video.
    kind: MediaKind,
    layers: Vec<OutLayer>,
    /// The layers the far node takes (bit n: layer n).
    demand: u8,
}

/// A track of the far node published here.
#[derive(Debug)]
pub struct InTrack {
    /// Its key in this node's router.
    pub key: TrackKey,
    /// The trunk media its streams belong to.
    pub mid: Mid,
    /// The SSRC of each of its layers on the trunk, lowest first.
    pub ssrcs: Vec<Ssrc>,
    /// The layers last asked of the far node.
    pub demand: u8,
}

/// The media session with one other node.
pub struct Trunk {
    /// The other node's id.
    pub node: String,
    /// The session.
    pub rtc: Rtc,
    /// ICE and DTLS are up.
    pub connected: bool,
    /// How it carries RTP: what this side wants until the far side answered, then what both use.
    pub media: TrunkMedia,
    /// This end's description of the session, as the far end was sent it.
    pub description: TrunkDescription,
    /// The far end's ICE username fragment, once its description arrived: names the session in
    /// a [`SignalKind::Closed`](super::SignalKind::Closed) from the far end.
    pub remote_ufrag: Option<String>,
    /// When the session next wants time.
    pub deadline: Option<Instant>,
    /// Waiting for the far node's answer (this side dialled).
    pub awaiting_answer: bool,
    /// To be polled in the current drive.
    pub dirty: bool,
    /// When a datagram last arrived from the far node (when the trunk was created, before).
    pub heard: Instant,
    /// Since when no room here is shared with the far node (none of its members is admitted).
    pub unused_since: Option<Instant>,
    /// What it carried.
    pub counters: TrunkCounters,
    /// The 5-tuple its session last sent on: (this worker's address, the far end).
    pub send_tuple: Option<(SocketAddr, SocketAddr)>,
    /// The control channel once open.
    control: Option<ChannelId>,
    /// Control messages waiting for the channel.
    queued: VecDeque<Vec<u8>>,
    /// Local tracks crossing, by key.
    out: HashMap<TrackKey, OutTrack>,
    /// Which local track a trunk media carries (keyframe requests name the media).
    out_by_mid: HashMap<Mid, TrackKey>,
    /// Far tracks published here, by the far node's (publisher, mid).
    pub incoming: HashMap<(u64, Mid), InTrack>,
    /// Which far track and layer a received SSRC is.
    by_ssrc: HashMap<Ssrc, (TrackKey, u8)>,
    /// The next trunk media number this side gives a track.
    next_mid: u32,
    /// What the mids this side gives start with (the two sides' differ, so the media each
    /// declares for its own tracks never meets one the other announces).
    mid_prefix: char,
}

impl Trunk {
    /// A trunk over `rtc` to `node`, described to it as `description` (whose `media` is what
    /// this side wants, or what both use when it answers); the control channel is declared at
    /// once (out of band, so both sides open it without a round trip).
    pub fn new(
        node: String,
        mut rtc: Rtc,
        description: TrunkDescription,
        awaiting_answer: bool,
        now: Instant,
    ) -> Self {
        rtc.direct_api().create_data_channel(ChannelConfig {
            label: CONTROL_LABEL.into(),
            negotiated: Some(CONTROL_STREAM),
            ..ChannelConfig::default()
        });
        Trunk {
            node,
            rtc,
            connected: false,
            media: description.media,
            description,
            remote_ufrag: None,
            deadline: None,
            awaiting_answer,
            dirty: true,
            heard: now,
            unused_since: None,
            counters: TrunkCounters::default(),
            send_tuple: None,
            control: None,
            queued: VecDeque::new(),
            out: HashMap::new(),
            out_by_mid: HashMap::new(),
            incoming: HashMap::new(),
            by_ssrc: HashMap::new(),
            next_mid: 0,
            mid_prefix: if awaiting_answer { 'd' } else { 'a' },
        }
    }

    /// Carries RTP as `media` from now on (both sides agreed on it).
    pub fn set_media(&mut self, media: TrunkMedia) {
        self.media = media;
        self.rtc
            .direct_api()
            .set_plain_rtp(media == TrunkMedia::Plain);
        info!(node = %self.node, media = media.name(), "trunk media");
    }

    /// Whether channel `label` is the control channel; then it is open from now on and the
    /// messages queued for it are sent.
    pub fn on_channel_open(&mut self, id: ChannelId, label: &str) -> bool {
        if label != CONTROL_LABEL {
            return false;
        }
        self.control = Some(id);
        while let Some(message) = self.queued.pop_front() {
            if !self.write(&message) {
                self.queued.push_front(message);
                break;
            }
        }
        true
    }

    /// Whether `id` is the control channel.
    pub fn is_control(&self, id: ChannelId) -> bool {
        self.control == Some(id)
    }

    /// Sends a control message, or queues it until the channel is open.
    pub fn send_control(&mut self, message: &ControlMessage) {
        let bytes = message.emit();
        if self.queued.is_empty() && self.control.is_some() && self.write(&bytes) {
            return;
        }
        if self.queued.len() < MAX_QUEUED_CONTROL {
            self.queued.push_back(bytes);
        }
    }

    fn write(&mut self, bytes: &[u8]) -> bool {
        let Some(mut channel) = self.control.and_then(|id| self.rtc.channel(id)) else {
            return false;
        };
        matches!(channel.write(false, bytes), Ok(true))
    }

    /// Whether local track `key` crosses this trunk.
    pub fn carries(&self, key: TrackKey) -> bool {
        self.out.contains_key(&key)
    }

    /// Declares the streams of local track `key` (one per layer, with RTX for video) and tells
    /// the far node which SSRCs carry them. The far node takes nothing until it says so.
    pub fn announce(&mut self, key: TrackKey, track: &Track) {
        if self.out.contains_key(&key) {
            return;
        }
        let mid = Mid::from(format!("{}{}", self.mid_prefix, self.next_mid).as_str());
        self.next_mid += 1;
        let mut api = self.rtc.direct_api();
        api.declare_media(mid, track.kind);
        let mut layers = Vec::new();
        let mut announced = Vec::new();
        for layer in track.layers.iter() {
            let ssrc = api.new_ssrc();
            let rtx = (track.kind == MediaKind::Video).then(|| api.new_ssrc());
            api.declare_stream_tx(ssrc, rtx, mid, layer.rid);
            layers.push(OutLayer {
                ssrc,
                rewriter: SeqTsRewriter::new(),
                resend_log: ResendLog::default(),
            });
            announced.push(LayerStream {
                rid: layer.rid.map(|r| r.to_string()),
                ssrc: *ssrc,
                rtx: rtx.map(|r| *r),
            });
        }
        self.out.insert(
            key,
            OutTrack {
                mid,
                kind: track.kind,
                layers,
                demand: 0,
            },
        );
        self.out_by_mid.insert(mid, key);
        self.send_control(&ControlMessage::Publish {
            room: track.room.to_string(),
            peer: key.peer,
            mid: key.mid.to_string(),
            trunk_mid: mid.to_string(),
            kind: track_kind(track.kind),
            source: track.source,
            muted: track.muted,
            layers: announced,
        });
    }

    /// Local track `key` no longer crosses: its streams go and the far node is told.
    pub fn withdraw(&mut self, key: TrackKey) {
        let Some(out) = self.out.remove(&key) else {
            return;
        };
        self.out_by_mid.remove(&out.mid);
        self.rtc.direct_api().remove_media(out.mid);
        self.send_control(&ControlMessage::Unpublish {
            peer: key.peer,
            mid: key.mid.to_string(),
        });
    }

    /// The far node takes `layers` of local track `key` from now on; returns the layers it did
    /// not take before (they start at a keyframe). `None` for a track not crossing.
    pub fn set_demand(&mut self, key: TrackKey, layers: u8) -> Option<u8> {
        let out = self.out.get_mut(&key)?;
        let added = layers & !out.demand;
        out.demand = layers;
        for (n, layer) in out.layers.iter_mut().enumerate() {
            if added & (1 << n) != 0 {
                layer.rewriter.resync();
            }
        }
        Some(added)
    }

    /// What the far node takes of each local track now.
    pub fn demands(&self) -> impl Iterator<Item = (TrackKey, u8)> + '_ {
        self.out.iter().map(|(k, o)| (*k, o.demand))
    }

    /// The local track and layer a keyframe request from the far node names.
    pub fn keyframe_request(
        &mut self,
        mid: Mid,
        rid: Option<Rid>,
        router: &Router,
    ) -> Option<(TrackKey, u8)> {
        let key = *self.out_by_mid.get(&mid)?;
        let layer = router.track(key)?.layers.index_of(rid)?;
        self.counters.keyframe_requests_in += 1;
        Some((key, layer))
    }

    /// Whether the far node takes the layer of `packet`.
    pub fn takes(&self, packet: &RoutedPacket) -> bool {
        self.out
            .get(&packet.track)
            .is_some_and(|o| o.demand & (1 << packet.layer) != 0)
    }

    /// The payload type of `packet`'s format on this trunk (every trunk maps formats alike).
    pub fn payload_type(&self, packet: &RoutedPacket) -> Option<Pt> {
        self.rtc
            .codec_config()
            .match_params(packet.arrival.params)
            .map(|p| p.pt())
    }

    /// Sends one packet of a local track to the far node, if it takes that layer, numbered by the
    /// layer's own rewriter (`numbered` is `None`) or as given (the numbering all
    /// the trunks of a kernel fan-out group share).
    pub fn deliver(
        &mut self,
        packet: &RoutedPacket,
        numbered: Option<Rewritten>,
        egress: &mut Egress,
    ) {
        if !self.takes(packet) {
            return;
        }
        let Some(pt) = self.payload_type(packet) else {
            egress.counters.drop(DropReason::NoMatchingCodec);
            return;
        };
        let Some(layer) = out_layer(&mut self.out, packet) else {
            return;
        };
        let rtp = &packet.arrival;
        let Some(numbered) = numbered.or_else(|| rtp.renumber(&mut layer.rewriter)) else {
            egress.counters.drop(DropReason::StaleSource);
            return;
        };
        let sent = sent(packet, numbered, pt);
        if seal(
            &mut self.rtc,
            layer.ssrc,
            &sent,
            &rtp.ext,
            rtp.payload,
            None,
            rtp.at,
            egress,
        ) {
            layer.sent(packet, sent, &mut self.counters);
        }
    }

    /// The kernel fan-out sent the far node its copy of `packet`, `numbered` and with `pt`: it is
    /// counted, kept for NACKs, and noted on the layer's stream (its sender reports, and the
    /// rollover its NACKs are read with).
    pub fn note_kernel_copy(
        &mut self,
        now: Instant,
        packet: &RoutedPacket,
        numbered: Rewritten,
        pt: Pt,
    ) {
        let Some(layer) = out_layer(&mut self.out, packet) else {
            return;
        };
        let rtp = &packet.arrival;
        layer.sent(packet, sent(packet, numbered, pt), &mut self.counters);
        if let Some(stream) = self.rtc.direct_api().stream_tx(&layer.ssrc) {
            stream.note_sent_elsewhere(
                now,
                numbered.seq.into(),
                (numbered.timestamp, rtp.at),
                rtp.params.spec().clock_rate,
                rtp.payload.len(),
            );
        }
    }

    /// The video layers the far node takes now, with the SSRC of each on this trunk: those a
    /// kernel fan-out may serve.
    pub fn video_layers_taken(&self) -> impl Iterator<Item = (TrackKey, u8, Ssrc)> + '_ {
        self.out
            .iter()
            .filter(|(_, o)| o.kind == MediaKind::Video)
            .flat_map(|(key, o)| {
                o.layers
                    .iter()
                    .enumerate()
                    .filter(|(n, _)| o.demand & (1 << n) != 0)
                    .map(|(n, l)| (*key, n as u8, l.ssrc))
            })
    }

    /// Notes the 5-tuple its session sent a datagram on; true when it changed.
    pub fn note_send_tuple(&mut self, from: SocketAddr, to: SocketAddr) -> bool {
        let changed = self.send_tuple != Some((from, to));
        self.send_tuple = Some((from, to));
        changed
    }

    /// Resends what the far node NACKed, from each track's history in `router`.
    pub fn answer_nacks(&mut self, now: Instant, router: &Router, egress: &mut Egress) {
        let ext = ExtensionValues::default();
        for (key, out) in &mut self.out {
            let track = router.track(*key);
            for layer in &mut out.layers {
                while let Some(seq) = self
                    .rtc
                    .direct_api()
                    .stream_tx(&layer.ssrc)
                    .and_then(|s| s.poll_nack())
                {
                    let Some(sent) = layer.resend_log.get(*seq) else {
                        continue;
                    };
                    let Some(payload) = track.and_then(|t| t.payload(sent.packet)) else {
                        continue;
                    };
                    if seal(
                        &mut self.rtc,
                        layer.ssrc,
                        &sent,
                        &ext,
                        payload,
                        Some(seq),
                        now,
                        egress,
                    ) {
                        self.counters.resent_out += 1;
                    }
                }
            }
        }
    }

    /// Declares the receive streams of a far track published here as `key`.
    pub fn expect(
        &mut self,
        far: (u64, Mid),
        key: TrackKey,
        trunk_mid: Mid,
        kind: MediaKind,
        layers: &[LayerStream],
    ) -> bool {
        if self.incoming.contains_key(&far)
            || layers
                .iter()
                .any(|l| self.by_ssrc.contains_key(&Ssrc::from(l.ssrc)))
        {
            return false;
        }
        // Each far track has its own media, named by the far side: one this side already has
        // (its own, or another far track's) is refused.
        if self.rtc.media(trunk_mid).is_some() {
            return false;
        }
        let mut api = self.rtc.direct_api();
        api.declare_media(trunk_mid, kind);
        let mut ssrcs = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let ssrc = Ssrc::from(l.ssrc);
            let rid = l.rid.as_deref().map(Rid::from);
            api.expect_stream_rx(ssrc, l.rtx.map(Ssrc::from), trunk_mid, rid);
            self.by_ssrc.insert(ssrc, (key, i as u8));
            ssrcs.push(ssrc);
        }
        self.incoming.insert(
            far,
            InTrack {
                key,
                mid: trunk_mid,
                ssrcs,
                demand: 0,
            },
        );
        true
    }

    /// Forgets the far track `far`; returns its key here.
    pub fn forget(&mut self, far: &(u64, Mid)) -> Option<TrackKey> {
        let track = self.incoming.remove(far)?;
        for ssrc in &track.ssrcs {
            self.by_ssrc.remove(ssrc);
        }
        self.rtc.direct_api().remove_media(track.mid);
        Some(track.key)
    }

    /// The far track and layer a received SSRC belongs to.
    pub fn source_of(&self, ssrc: Ssrc) -> Option<(TrackKey, u8)> {
        self.by_ssrc.get(&ssrc).copied()
    }

    /// Asks the far node for a keyframe of `layer` of far track `key`.
    pub fn request_keyframe(&mut self, key: TrackKey, layer: u8) {
        let Some(ssrc) = self
            .incoming
            .values()
            .find(|t| t.key == key)
            .and_then(|t| t.ssrcs.get(layer as usize).copied())
        else {
            return;
        };
        if let Some(rx) = self.rtc.direct_api().stream_rx(&ssrc) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }
}

/// What a trunk sends of `packet`, `numbered` on the trunk with payload type `pt`.
fn sent(packet: &RoutedPacket, numbered: Rewritten, pt: Pt) -> Sent {
    Sent {
        seq: numbered.seq,
        packet: packet.index,
        timestamp: numbered.timestamp,
        pt,
        marker: packet.arrival.marker,
        patch: None,
    }
}
