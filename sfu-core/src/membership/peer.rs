//! One participant: its str0m session, what it publishes, what it receives, and where the SDP
//! negotiation with it stands.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Rids};
use str0m::net::TcpType;
use str0m::{Candidate, Rtc, RtcConfig};

use slab::Slab;

use super::data_channels::DataChannels;
use super::signaling_channel::SignalingChannel;
use super::subscription::{LegState, Subscription};
use crate::codec::dependency_descriptor::DependencyDescriptorExtension;
use crate::codec::CodecDescriptor;
use crate::config::CoreConfig;
use crate::counters::Counters;
use crate::outbox::Egress;
use crate::permissions::Permissions;
use crate::protocol::{PeerId, TrackMapping};
use crate::quality::layers::TrackLayers;
use crate::router::{Delivery, RoutedPacket, Router, TrackKey};

/// Packets each video send stream of the session caches for resends: none. Forwarded media is
/// sealed at once and each track keeps its recent packets once for all its subscriptions
/// (`router/history.rs`), so these caches would only cost memory (str0m preallocates them).
const VIDEO_SEND_CACHE: usize = 0;
/// The same for audio: the least str0m allows.
const AUDIO_SEND_CACHE: usize = 1;

/// The bandwidth estimate toward a new subscriber before any feedback: enough for the middle
/// layer of a 720p camera and a few small tiles; probing finds more within seconds.
const INITIAL_ESTIMATE_KBPS: u64 = 1000;
/// The dependency descriptor's id in the SDPs the SFU writes (str0m's standard map leaves 12
/// free; a browser's offer brings its own id).
const DEPENDENCY_DESCRIPTOR_EXTENSION_ID: u8 = 12;

/// How often the session reports its per-leg counters (NACKs, keyframe requests).
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Why an SDP exchange with a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum SdpError {
    /// The text is not SDP str0m can parse.
    #[error("unparsable SDP: {0}")]
    Parse(String),
    /// str0m refused to apply it.
    #[error("SDP not applicable: {0}")]
    Apply(String),
    /// An answer came while no offer of ours was outstanding.
    #[error("no offer is outstanding")]
    NoOffer,
}

/// A joined participant.
pub struct Peer {
    /// Server-wide id.
    pub id: PeerId,
    /// Display name.
    pub name: String,
    /// Room it is in.
    pub room: Arc<str>,
    /// Its WebRTC session (ICE-lite, DTLS-SRTP, SCTP), in RTP mode.
    pub rtc: Rtc,
    /// Its m-lines carrying other members' tracks to it, by slot (the router names a
    /// subscription by its member and slot).
    pub subscriptions: Slab<Subscription>,
    /// Our offer awaiting its answer.
    pub pending_offer: Option<SdpPendingOffer>,
    /// We offer only after answering its first offer (it creates the session's transport).
    pub answered_first_offer: bool,
    /// Its `chat` data channel, once open.
    pub chat_channel: Option<ChannelId>,
    /// Its other data channels, relayed to the room, and the relays of the others' to it.
    pub data_channels: DataChannels,
    /// ICE and DTLS are up.
    pub connected: bool,
    /// When it joined (the connect deadline counts from here).
    pub joined_at: Instant,
    /// An RTP packet went either way on its session (the join-to-media time is counted).
    pub media_seen: bool,
    /// When a datagram from it last arrived (the idle deadline counts from here).
    pub last_heard: Instant,
    /// When its session is next given time, as the core's timers have it (`None` while it is
    /// being polled).
    pub session_deadline: Option<Instant>,
    /// Queued for polling in the current drive.
    pub dirty: bool,
    /// What it may do in its room (from its token; everything in an open room).
    pub permissions: Permissions,
    /// How its signaling reaches it: a WebSocket, or one HTTP exchange (WHIP, WHEP: never sent
    /// offers or messages).
    pub signaling: SignalingChannel,
    /// What the SFU knows of the bandwidth toward it.
    pub bandwidth: Bandwidth,
    /// Subscriptions removed since the router last heard (see [`Peer::take_removed`]).
    removed: Vec<(usize, TrackKey)>,
}

/// The bandwidth toward one subscriber and what the allocation made of it.
#[derive(Debug, Clone, Default)]
pub struct Bandwidth {
    /// The latest estimate, bits per second: str0m's TWCC estimator, or the client's REMB when it
    /// gives no TWCC feedback.
    pub estimate: Option<u64>,
    /// The estimate comes from TWCC (a REMB then is ignored).
    pub from_twcc: bool,
    /// What the video allocation adds up to now.
    pub allocated: u64,
    /// The (minimum, desired) rates last handed to the estimator, so it is told only changes.
    pub requested: (u64, u64),
    /// Added to the desired rate to ask the estimator for another probe (see `PROBE_RETRY`).
    pub probe_nudge: u64,
    /// When another probe was last asked for.
    pub probe_requested: Option<Instant>,
}

impl Peer {
    /// A new participant whose session announces the UDP and TCP host candidates of `config`.
    pub fn new(
        id: PeerId,
        name: String,
        room: Arc<str>,
        config: &CoreConfig,
        now: Instant,
    ) -> Self {
        let config_with_codecs = CodecDescriptor::configure(RtcConfig::new(), &config.video_codecs);
        // AV1's layers are in the dependency descriptor extension: read from publishers where
        // AV1 is offered (other codecs say theirs in the payload).
        let config_with_codecs = if config.video_codecs.contains(&Codec::Av1) {
            config_with_codecs.set_extension(
                DEPENDENCY_DESCRIPTOR_EXTENSION_ID,
                DependencyDescriptorExtension::extension(),
            )
        } else {
            config_with_codecs
        };
        let mut rtc = config_with_codecs
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_send_buffer_audio(AUDIO_SEND_CACHE)
            .set_send_buffer_video(VIDEO_SEND_CACHE)
            .enable_bwe(Some(Bitrate::kbps(INITIAL_ESTIMATE_KBPS)))
            .set_stats_interval(Some(STATS_INTERVAL))
            .build(now);
        let udp = config.candidates.iter().map(|a| Candidate::host(*a, "udp"));
        // Passive: the client connects to us (RFC 6544). str0m ranks TCP host candidates below
        // UDP ones, so a client uses TCP only when UDP does not get through.
        let tcp = config.tcp_candidates.iter().map(|a| {
            Candidate::builder()
                .tcp()
                .host(*a)
                .tcptype(TcpType::Passive)
                .build()
        });
        for candidate in udp.chain(tcp) {
            match candidate {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::warn!(error = %e, "address not usable as ICE candidate"),
            }
        }
        Peer {
            id,
            name,
            room,
            rtc,
            subscriptions: Slab::new(),
            pending_offer: None,
            answered_first_offer: false,
            chat_channel: None,
            data_channels: DataChannels::default(),
            connected: false,
            joined_at: now,
            media_seen: false,
            last_heard: now,
            session_deadline: None,
            dirty: false,
            permissions: Permissions::ALL,
            signaling: SignalingChannel::WebSocket,
            bandwidth: Bandwidth::default(),
            removed: Vec::new(),
        }
    }

    /// Whether it gets a subscription to each track of its room as it is published: it may
    /// subscribe, and its signaling carries the offers that adds. (A WHEP viewer's legs are the
    /// m-lines it offered, moved by the core to what it follows.)
    pub fn takes_room_tracks(&self) -> bool {
        self.permissions.subscribe && self.signaling.takes_messages()
    }

    /// When the peer is given up on if nothing else happens: the connect deadline until it
    /// connects, then the idle deadline.
    pub fn liveness_deadline(&self, config: &CoreConfig) -> Instant {
        if self.connected {
            self.last_heard + config.idle_timeout
        } else {
            self.joined_at + config.connect_timeout
        }
    }

    /// A tracing span naming this peer, entered while the core works on its behalf.
    pub fn span(id: PeerId) -> tracing::Span {
        tracing::debug_span!("peer", id)
    }

    /// The ufrag STUN requests for this peer carry.
    pub fn local_ufrag(&mut self) -> String {
        self.rtc.direct_api().local_ice_credentials().ufrag
    }

    /// Applies the client's offer and returns our answer.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, SdpError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| SdpError::Parse(e.to_string()))?;
        // str0m ends the whole session (not just the offer) on an offer without a DTLS
        // fingerprint, so such an offer is refused before it gets there.
        if !sdp
            .lines()
            .any(|l| l.trim_start().starts_with("a=fingerprint:"))
        {
            return Err(SdpError::Apply("missing a=fingerprint".into()));
        }
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SdpError::Apply(e.to_string()))?;
        self.answered_first_offer = true;
        Ok(answer.to_sdp_string())
    }

    /// The kind of an m-line the client sends on (from our side: receiving), if it exists.
    pub fn receiving_kind(&self, mid: Mid) -> Option<MediaKind> {
        let media = self.rtc.media(mid)?;
        matches!(media.direction(), Direction::RecvOnly | Direction::SendRecv).then(|| media.kind())
    }

    /// The kind of an m-line the SFU sends on (the client receives on it), if it exists.
    pub fn sending_kind(&self, mid: Mid) -> Option<MediaKind> {
        let media = self.rtc.media(mid)?;
        matches!(media.direction(), Direction::SendOnly | Direction::SendRecv).then(|| media.kind())
    }

    /// The layers the client's sending m-line `mid` negotiated: its simulcast RIDs in offer order,
    /// or one layer.
    pub fn receiving_layers(&self, mid: Mid) -> TrackLayers {
        match self.rtc.media(mid).map(|m| m.rids_rx()) {
            Some(Rids::Specific(rids)) => TrackLayers::simulcast(rids),
            _ => TrackLayers::single(),
        }
    }

    /// Puts every leg change into one offer, if there are any and no offer is outstanding.
    /// Returns the SDP and the mapping of receiving m-lines to tracks.
    /// A member whose signaling takes no messages (WHIP, WHEP) is never offered anything.
    pub fn create_offer(&mut self) -> Option<(String, Vec<TrackMapping>)> {
        if !self.signaling.takes_messages()
            || !self.answered_first_offer
            || self.pending_offer.is_some()
        {
            return None;
        }
        self.remove_subscriptions(|s| !s.wanted && s.state == LegState::ToOpen);
        let mut api = self.rtc.sdp_api();
        for (_, sub) in &mut self.subscriptions {
            match sub.state {
                LegState::ToOpen => {
                    let mid = api.add_media(
                        sub.kind,
                        Direction::SendOnly,
                        Some(sub.source.peer.to_string()),
                        Some(sub.source.id()),
                        None,
                    );
                    sub.state = LegState::Negotiating(mid);
                }
                LegState::Open(mid) | LegState::ToStop(mid) if !sub.wanted => {
                    api.stop_media(mid);
                    sub.state = LegState::Stopping(mid);
                }
                _ => {}
            }
        }
        if !api.has_changes() {
            return None;
        }
        let (offer, pending) = api.apply()?;
        self.pending_offer = Some(pending);
        Some((offer.to_sdp_string(), self.track_mappings()))
    }

    /// What each receiving m-line carries, for the offer message.
    fn track_mappings(&self) -> Vec<TrackMapping> {
        self.subscriptions
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.wanted)
            .filter_map(|s| {
                Some(TrackMapping {
                    mid: s.mid()?.to_string(),
                    peer_id: s.source.peer,
                    track_id: s.source.id(),
                })
            })
            .collect()
    }

    /// Applies the client's answer to our outstanding offer. Returns the legs that just opened.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<Vec<TrackKey>, SdpError> {
        let pending = self.pending_offer.take().ok_or(SdpError::NoOffer)?;
        let result = match SdpAnswer::from_sdp_string(sdp) {
            Ok(answer) => self
                .rtc
                .sdp_api()
                .accept_answer(pending, answer)
                .map_err(|e| SdpError::Apply(e.to_string())),
            Err(e) => Err(SdpError::Parse(e.to_string())),
        };
        let applied = result.is_ok();
        let mut opened = Vec::new();
        for (_, sub) in &mut self.subscriptions {
            sub.state = match (sub.state, applied) {
                (LegState::Negotiating(mid), true) => {
                    opened.push(sub.source);
                    if sub.wanted {
                        LegState::Open(mid)
                    } else {
                        LegState::ToStop(mid)
                    }
                }
                // The offer is void: offer the same change again next time.
                (LegState::Negotiating(_), false) => LegState::ToOpen,
                (LegState::Stopping(mid), false) => LegState::ToStop(mid),
                (state, _) => state,
            };
        }
        if applied {
            self.remove_subscriptions(|s| matches!(s.state, LegState::Stopping(_)));
            // Forwarded media is sealed at once on each subscription's send stream, named by
            // its SSRC: not through str0m's send queue and pacer (the SFU sets each
            // subscription's rate by the layer it picks, and a pacer queue in front of a
            // congested link would hold seconds of the old layer and delay the downgrade that
            // relieves it; str0m paces only probes and padding).
            let mut api = self.rtc.direct_api();
            for (_, sub) in &mut self.subscriptions {
                sub.ssrc = sub
                    .open_mid()
                    .and_then(|m| api.stream_tx_by_mid(m, None))
                    .map(|tx| tx.ssrc());
            }
        }
        result.map(|()| opened)
    }

    /// Adds a subscription to `source`, to be offered; returns its slot.
    pub fn subscribe(&mut self, source: TrackKey, kind: MediaKind) -> usize {
        self.subscriptions.insert(Subscription::new(source, kind))
    }

    /// Removes the subscriptions `gone` selects, remembering their slots for
    /// [`Peer::take_removed`].
    fn remove_subscriptions(&mut self, gone: impl Fn(&Subscription) -> bool) {
        let removed = &mut self.removed;
        self.subscriptions.retain(|slot, s| {
            if gone(s) {
                removed.push((slot, s.source));
            }
            !gone(s)
        });
    }

    /// The (slot, track) of each subscription removed since the last call, so the router stops
    /// delivering to them.
    pub fn take_removed(&mut self) -> Vec<(usize, TrackKey)> {
        std::mem::take(&mut self.removed)
    }

    /// The subscription whose m-line in this peer's session is `mid`.
    pub fn subscription_by_mid_mut(&mut self, mid: Mid) -> Option<&mut Subscription> {
        self.subscriptions
            .iter_mut()
            .map(|(_, s)| s)
            .find(|s| s.mid() == Some(mid))
    }

    /// The subscription carrying `source`.
    pub fn subscription_of_mut(&mut self, source: TrackKey) -> Option<&mut Subscription> {
        self.subscriptions
            .iter_mut()
            .map(|(_, s)| s)
            .find(|s| s.wanted && s.source == source)
    }

    /// Marks every subscription whose track `source` selects as unwanted.
    pub fn unsubscribe(&mut self, source: impl Fn(&TrackKey) -> bool) {
        for (_, sub) in &mut self.subscriptions {
            if source(&sub.source) {
                sub.wanted = false;
            }
        }
    }

    /// Counts, once, the time from this member's join to the first RTP packet on its session
    /// (received from it or forwarded to it) in `counters`' join-to-media histogram.
    pub fn note_media(&mut self, now: Instant, counters: &mut Counters) {
        if !self.media_seen {
            self.media_seen = true;
            counters
                .join_to_media
                .observe(now.saturating_duration_since(self.joined_at));
        }
    }

    /// Sends one packet on the subscription in `slot`; `Gone` when that slot no longer holds a
    /// subscription to the packet's track.
    pub fn deliver(&mut self, slot: usize, packet: &RoutedPacket, egress: &mut Egress) -> Delivery {
        match self.subscriptions.get_mut(slot) {
            Some(sub) if sub.source == packet.track => {
                let sent_before = egress.counters.forwarded_packets;
                sub.deliver(&mut self.rtc, packet, egress);
                if !self.media_seen && egress.counters.forwarded_packets != sent_before {
                    self.note_media(packet.arrival.at, egress.counters);
                }
                Delivery::Done
            }
            _ => Delivery::Gone,
        }
    }

    /// Resends what this member NACKed on its video subscriptions, from the tracks' histories.
    pub fn answer_nacks(&mut self, now: Instant, router: &Router, egress: &mut Egress) {
        for (_, sub) in &mut self.subscriptions {
            sub.answer_nacks(now, &mut self.rtc, router, egress);
        }
    }
}
