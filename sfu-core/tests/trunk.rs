//! Two nodes (two `Core`s) sharing a room over a trunk, with str0m participants on each, over an
//! in-memory network with simulated time. The test plays the control plane the way the binary's
//! directory does: each node's member events reach the other as [`ClusterEvent`]s, and the
//! trunk descriptions the cores queue are carried to the end they name; the trunk sets itself
//! up from there. Media crosses the trunk once whatever the number of far subscribers, keyframe
//! requests travel back to the publisher's node, loss on the trunk is repaired by NACK, a trunk
//! whose far end goes silent is closed and dialled again (its 5-tuple admitted to and revoked
//! from the in-kernel guard as it goes; at once when the answering end closed first and said
//! so), and a trunk between two ends that both want plain RTP
//! carries the payload unencrypted. With a third node, the test plays node a's kernel fan-out
//! too: a video layer two far nodes take over plain trunks is handed off once per packet and
//! copied to both, each with its trunk's SSRC.

mod common;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{join_kitchen, plain_rtp, Client};
use sfu_core::cluster::{ClusterEvent, ClusterMember};
use sfu_core::demux::FlowChange;
use sfu_core::plain::{IngestCodec, IngestSpec};
use sfu_core::protocol::{ClientMessage, PeerId, ServerMessage};
use sfu_core::str0m::format::Codec;
use sfu_core::str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use sfu_core::str0m::net::{Protocol, Receive};
use sfu_core::str0m::rtp::{RtpWrite, SeqNo};
use sfu_core::str0m::{Input, Output as RtcOutput, RtcConfig};
use sfu_core::trunk::{
    FanoutChange, FanoutConfig, SignalKind, TrunkCopy, TrunkDescription, TrunkEndpoint, TrunkInfo,
    TrunkMedia, TrunkSignal,
};
use sfu_core::wire::{classify, DatagramKind};
use sfu_core::{Action, Core, CoreConfig, RoomEvent};

/// Where the nodes' media sockets are.
const NODES: [&str; 3] = ["127.0.0.1:4000", "127.0.0.9:4000", "127.0.0.10:4000"];
/// The trunk end of each node's one worker.
const NAMES: [&str; 3] = ["a/0", "b/0", "c/0"];
/// Where node a hands plain trunk packets to its (simulated) kernel fan-out.
const HANDOFF: &str = "127.0.0.1:4999";

fn node_addr(node: usize) -> SocketAddr {
    NODES[node].parse().unwrap()
}

/// The node whose media socket is at `addr`.
fn node_of(addr: SocketAddr) -> Option<usize> {
    (0..NODES.len()).find(|n| node_addr(*n) == addr)
}

/// The nodes (two, or three) and their participants.
struct Cluster {
    now: Instant,
    cores: Vec<Core>,
    /// Each client and the node it is connected to.
    clients: Vec<(usize, Client)>,
    to_core: VecDeque<(usize, PeerId, ClientMessage)>,
    /// Drops every n-th RTP datagram from node a to node b (0: none).
    trunk_loss_every: usize,
    trunk_rtp_seen: usize,
    trunk_rtp_dropped: usize,
    /// Nothing reaches node b from node a (a's process is stopped, say).
    a_cut_off: bool,
    /// The RTP datagrams node a sent node b, as they went on the wire.
    trunk_rtp: Vec<Vec<u8>>,
    /// The flows each node told its shell to admit to or revoke from its in-kernel guard.
    flows: Vec<Vec<FlowChange>>,
    /// Node a's kernel fan-out as its shell programmed it: hand-off SSRC → copies.
    fanout: HashMap<u32, Vec<TrunkCopy>>,
    /// Node a's shell refuses to program its kernel fan-out.
    refuse_fanout: bool,
    /// Datagrams node a handed off to its kernel fan-out.
    handoffs: usize,
    /// The trunk signals the control plane carried, in order.
    signals: Vec<TrunkSignal>,
}

impl Cluster {
    fn new() -> Self {
        Cluster::with_media(&[TrunkMedia::Srtp; 2])
    }

    /// A node per entry of `media`, each trunk end wanting its entry (`--trunk`).
    fn with_media(media: &[TrunkMedia]) -> Self {
        Cluster::with_fanout(media, None)
    }

    /// [`Cluster::with_media`] with node a's plain trunks served by the kernel fan-out `fanout`.
    fn with_fanout(media: &[TrunkMedia], fanout: Option<FanoutConfig>) -> Self {
        let cores = media
            .iter()
            .enumerate()
            .map(|(n, media)| {
                Core::new(CoreConfig {
                    candidates: vec![node_addr(n)],
                    trunk_endpoint: Some(TrunkEndpoint {
                        name: NAMES[n].into(),
                        advertised: None,
                        media: *media,
                    }),
                    trunk_fanout: fanout.filter(|_| n == 0),
                    ..CoreConfig::default()
                })
            })
            .collect();
        Cluster {
            now: Instant::now(),
            cores,
            clients: Vec::new(),
            to_core: VecDeque::new(),
            trunk_loss_every: 0,
            trunk_rtp_seen: 0,
            trunk_rtp_dropped: 0,
            a_cut_off: false,
            trunk_rtp: Vec::new(),
            flows: vec![Vec::new(); media.len()],
            fanout: HashMap::new(),
            refuse_fanout: false,
            handoffs: 0,
            signals: Vec::new(),
        }
    }

    /// Joins a client to room `kitchen` on `node`, publishing audio and video; the other node
    /// hears of it through the control plane.
    fn join(&mut self, node: usize, name: &str) -> usize {
        self.join_with(node, name, &[])
    }

    /// [`Cluster::join`] with a video track sent as simulcast layers `rids` (lowest first).
    fn join_with(&mut self, node: usize, name: &str, rids: &[&str]) -> usize {
        let idx = self.clients.len();
        let id = idx as PeerId + 1;
        let rtc = RtcConfig::new().set_rtp_mode(true).build(self.now);
        let addr = SocketAddr::from(([127, 0, 0, 2], 5000 + idx as u16));
        let mut client = Client::new(id, addr, rtc);
        self.cores[node].handle_message(self.now, id, join_kitchen(name));
        let simulcast = (!rids.is_empty()).then(|| {
            let mut simulcast = Simulcast::new();
            for rid in rids {
                simulcast.add_send_layer(SimulcastLayer::new(rid));
            }
            simulcast
        });
        let (sdp, tracks) = client.offer_audio_video(simulcast, false);
        self.clients.push((node, client));
        self.to_core
            .push_back((node, id, ClientMessage::Offer { sdp, tracks }));
        self.pump();
        idx
    }

    fn pump(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            while let Some((node, peer, msg)) = self.to_core.pop_front() {
                self.cores[node].handle_message(self.now, peer, msg);
                moved = true;
            }
            for node in 0..self.cores.len() {
                while let Some(out) = self.cores[node].poll_output() {
                    moved = true;
                    match out {
                        Action::Transmit(t) => {
                            if t.destination == HANDOFF.parse().unwrap() {
                                self.handoffs += 1;
                                self.kernel_copies(&t.contents);
                            } else if node_of(t.destination).is_some() {
                                self.cross(node, t.source, t.destination, &t.contents);
                            } else if let Some((_, c)) = self
                                .clients
                                .iter_mut()
                                .find(|(_, c)| c.addr == t.destination)
                            {
                                let input = Input::Receive(
                                    self.now,
                                    Receive::new(
                                        Protocol::Udp,
                                        t.source,
                                        t.destination,
                                        &t.contents,
                                    )
                                    .unwrap(),
                                );
                                c.rtc.handle_input(input).unwrap();
                            }
                            self.cores[node].recycle(t.contents);
                        }
                        Action::Signal(peer, msg) => {
                            if let Some((_, c)) = self
                                .clients
                                .iter_mut()
                                .find(|(n, c)| *n == node && c.id == peer)
                            {
                                if let Some(reply) = c.on_signal(msg) {
                                    self.to_core.push_back((node, peer, reply));
                                }
                            }
                        }
                        Action::RoomEvent(event) => self.tell_other_node(node, event),
                        Action::Flow(change) => self.flows[node].push(change),
                        Action::TrunkSignal(signal) => {
                            let far = NAMES.iter().position(|n| *n == signal.to).unwrap();
                            self.signals.push(signal.clone());
                            self.cores[far].handle_trunk_signal(self.now, signal);
                        }
                        Action::TrunkFanout(FanoutChange::Set {
                            handoff_ssrc,
                            copies,
                        }) => {
                            if self.refuse_fanout {
                                self.cores[node].trunk_fanout_refused(handoff_ssrc);
                            } else {
                                self.fanout.insert(handoff_ssrc, copies);
                            }
                        }
                        Action::TrunkFanout(FanoutChange::Remove { handoff_ssrc }) => {
                            self.fanout.remove(&handoff_ssrc);
                        }
                        _ => {}
                    }
                }
            }
            for (node, c) in &mut self.clients {
                loop {
                    match c.rtc.poll_output().unwrap() {
                        RtcOutput::Timeout(_) => break,
                        RtcOutput::Transmit(t) => {
                            moved = true;
                            let data = t.contents.to_vec();
                            self.cores[*node].handle_datagram(
                                self.now,
                                t.source,
                                node_addr(*node),
                                &data,
                            );
                        }
                        RtcOutput::Event(e) => {
                            moved = true;
                            c.on_event(e);
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the simulated network never settled");
    }

    /// One datagram from `node` to another node: what a trunk carries. RTP from node a is
    /// kept, and lost as [`Cluster::trunk_loss_every`] says.
    fn cross(&mut self, node: usize, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
        let Some(far) = node_of(destination) else {
            return;
        };
        let rtp = classify(data) == DatagramKind::Rtp;
        if rtp && node == 0 {
            self.trunk_rtp.push(data.to_vec());
        }
        let lost = node == 0 && (self.a_cut_off || (rtp && self.lose_trunk_packet()));
        if !lost {
            self.cores[far].handle_datagram(self.now, source, destination, data);
        }
    }

    /// What node a's TC fan-out does with a hand-off datagram: a copy per programmed far node,
    /// with that node's SSRC, from the trunk's local end to its far end; without an entry the
    /// datagram goes on to a port nothing listens on.
    fn kernel_copies(&mut self, handoff: &[u8]) {
        let ssrc = u32::from_be_bytes(handoff[8..12].try_into().unwrap());
        for copy in self.fanout.get(&ssrc).cloned().unwrap_or_default() {
            let mut datagram = handoff.to_vec();
            datagram[8..12].copy_from_slice(&copy.ssrc.to_be_bytes());
            self.cross(0, copy.from, copy.to, &datagram);
        }
    }

    /// What the directory does with a member event of `node`: the other nodes are told.
    fn tell_other_node(&mut self, node: usize, event: RoomEvent) {
        let told = match event {
            RoomEvent::ParticipantJoined {
                room,
                peer_id,
                name,
            } => ClusterEvent::MemberJoined {
                room,
                member: ClusterMember {
                    id: peer_id,
                    name,
                    trunk: NAMES[node].into(),
                },
            },
            RoomEvent::ParticipantLeft { room, peer_id, .. } => {
                ClusterEvent::MemberLeft { room, peer_id }
            }
            _ => return,
        };
        for other in (0..self.cores.len()).filter(|n| *n != node) {
            self.cores[other].handle_cluster_event(self.now, told.clone());
        }
    }

    /// Whether this RTP datagram on the trunk is lost.
    fn lose_trunk_packet(&mut self) -> bool {
        self.trunk_rtp_seen += 1;
        let lost =
            self.trunk_loss_every > 0 && self.trunk_rtp_seen.is_multiple_of(self.trunk_loss_every);
        self.trunk_rtp_dropped += lost as usize;
        lost
    }

    fn advance(&mut self, total: Duration) {
        let step = Duration::from_millis(10);
        let end = self.now + total;
        while self.now < end {
            self.now += step;
            for core in &mut self.cores {
                core.handle_timeout(self.now);
            }
            for (_, c) in &mut self.clients {
                c.rtc.handle_input(Input::Timeout(self.now)).unwrap();
            }
            self.pump();
        }
    }

    /// Nothing from node a reaches node b for `how_long`; then it does again.
    fn cut_off_a_for(&mut self, how_long: Duration) {
        self.a_cut_off = true;
        self.advance(how_long);
        self.a_cut_off = false;
    }

    /// Sends `n` packets on a client's track, one per 20 ms, with payload `[tag, i, i, ..]`.
    fn send_media(&mut self, idx: usize, kind: MediaKind, n: u16, tag: u8) {
        for i in 0..n {
            let c = &mut self.clients[idx].1;
            let (mid, codec, step, slot) = match kind {
                MediaKind::Audio => (c.audio.unwrap(), Codec::Opus, 960, 0),
                MediaKind::Video => (c.video.unwrap(), Codec::Vp8, 3000, 1),
            };
            let seq = c.next_seq[slot];
            c.next_seq[slot] += 1;
            let pt = c
                .rtc
                .codec_config()
                .find(|p| p.spec().codec == codec)
                .unwrap()
                .pt();
            let now = self.now;
            let mut api = c.rtc.direct_api();
            let tx = api.stream_tx_by_mid(mid, None).unwrap();
            tx.write_rtp(
                RtpWrite::new(
                    pt,
                    SeqNo::from(seq),
                    seq as u32 * step,
                    now,
                    payload(tag, i),
                )
                .marker(true)
                .nackable(kind == MediaKind::Video),
            );
            self.advance(Duration::from_millis(20));
        }
    }

    /// Sends `n` VP8 keyframes on each simulcast layer of a client's video, one per 20 ms, layer
    /// `l` of `sizes[l]`; the payload ends with `[tag, l, i, i]`.
    fn send_simulcast(&mut self, idx: usize, rids: &[&str], sizes: &[(u16, u16)], n: u16, tag: u8) {
        for i in 0..n {
            let c = &mut self.clients[idx].1;
            let mid = c.video.unwrap();
            let seq = c.next_seq[1];
            c.next_seq[1] += 1;
            let pt = c
                .rtc
                .codec_config()
                .find(|p| p.spec().codec == Codec::Vp8)
                .unwrap()
                .pt();
            let now = self.now;
            for (l, (rid, (w, h))) in rids.iter().zip(sizes).enumerate() {
                let mut api = c.rtc.direct_api();
                let tx = api.stream_tx_by_mid(mid, Some(Rid::from(*rid))).unwrap();
                let [w0, w1] = w.to_le_bytes();
                let [h0, h1] = h.to_le_bytes();
                let payload = vec![
                    0x10,
                    0x10,
                    0,
                    0,
                    0x9d,
                    0x01,
                    0x2a,
                    w0,
                    w1,
                    h0,
                    h1,
                    tag,
                    l as u8,
                    (i >> 8) as u8,
                    i as u8,
                ];
                tx.write_rtp(
                    RtpWrite::new(pt, SeqNo::from(seq), seq as u32 * 3000, now, payload)
                        .marker(true)
                        .nackable(true),
                );
            }
            self.advance(Duration::from_millis(20));
        }
    }

    /// The simulcast layers of track `tag` viewer `idx` received, in order.
    fn layers_received(&self, idx: usize, tag: u8) -> Vec<u8> {
        self.client(idx)
            .received
            .iter()
            .filter(|r| r.payload.get(11) == Some(&tag))
            .map(|r| r.payload[12])
            .collect()
    }

    fn client(&self, idx: usize) -> &Client {
        &self.clients[idx].1
    }

    fn trunk(&self, node: usize) -> TrunkInfo {
        let mut trunks = self.cores[node].stats().trunks;
        assert_eq!(trunks.len(), 1, "one trunk");
        trunks.remove(0)
    }

    /// Node `node`'s trunk to node `far`.
    fn trunk_to(&self, node: usize, far: usize) -> TrunkInfo {
        let far = NAMES[far];
        self.cores[node]
            .stats()
            .trunks
            .into_iter()
            .find(|t| t.node == far)
            .unwrap_or_else(|| panic!("a trunk to {far}"))
    }
}

fn payload(tag: u8, i: u16) -> Vec<u8> {
    vec![tag, (i >> 8) as u8, i as u8, 0x90, 0x90]
}

/// A publisher on node a, three subscribers on node b, the trunk up.
fn cluster() -> Cluster {
    cluster_with([TrunkMedia::Srtp; 2])
}

/// [`cluster`] with nodes whose trunk ends want `media`.
fn cluster_with(media: [TrunkMedia; 2]) -> Cluster {
    let mut c = Cluster::with_media(&media);
    c.join(0, "publisher");
    for i in 0..3 {
        c.join(1, &format!("viewer{i}"));
    }
    c.advance(Duration::from_secs(3));
    c
}

/// Asserts subscriber `idx` got packets `0..n` of track `tag` once each, byte-identical, with
/// gap-free sequence numbers.
fn assert_complete(c: &Cluster, idx: usize, tag: u8, n: u16) {
    let mut got: Vec<_> = c.client(idx).received_with_tag(tag);
    got.sort_by_key(|r| u16::from_be_bytes([r.payload[1], r.payload[2]]));
    let payloads: Vec<Vec<u8>> = got.iter().map(|r| r.payload.clone()).collect();
    let expected: Vec<Vec<u8>> = (0..n).map(|i| payload(tag, i)).collect();
    assert_eq!(
        payloads, expected,
        "subscriber {idx}: every packet of {tag:#x} once, as sent"
    );
    for pair in got.windows(2) {
        assert_eq!(
            pair[1].seq,
            pair[0].seq.wrapping_add(1),
            "gap-free sequence numbers"
        );
        assert_eq!(pair[0].ssrc, pair[1].ssrc);
    }
}

#[test]
fn each_track_crosses_the_trunk_once_and_reaches_every_far_subscriber() {
    let mut c = cluster();
    assert!(c.trunk(0).connected && c.trunk(1).connected, "trunk up");
    assert_eq!(c.trunk(1).tracks_in, 2, "a's two tracks are published on b");
    assert_eq!(
        c.trunk(0).tracks_in,
        6,
        "b's members' tracks are published on a"
    );
    c.send_media(0, MediaKind::Video, 200, 0xA0);
    c.send_media(0, MediaKind::Audio, 100, 0xB0);
    for viewer in 1..4 {
        assert_complete(&c, viewer, 0xA0, 200);
        assert_complete(&c, viewer, 0xB0, 100);
    }
    let a = c.trunk(0);
    assert_eq!(
        a.counters.packets_out, 300,
        "each packet crossed once, not once per viewer"
    );
    assert_eq!(c.trunk(1).counters.packets_in, 300);
    assert_eq!(
        c.cores[1].counters().forwarded_packets,
        3 * 300,
        "b fanned out to its three viewers"
    );
}

#[test]
fn a_far_subscribers_keyframe_request_reaches_the_publisher() {
    let mut c = cluster();
    c.send_media(0, MediaKind::Video, 20, 0xA0);
    c.advance(Duration::from_secs(1));
    let before = c.client(0).keyframe_requests;
    let mapping = c
        .client(1)
        .mappings
        .iter()
        .find(|m| {
            m.peer_id == 1
                && m.track_id
                    .ends_with(&c.client(0).video.unwrap().to_string())
        })
        .expect("viewer's m-line of the publisher's video")
        .clone();
    let mid = Mid::from(mapping.mid.as_str());
    c.clients[1]
        .1
        .rtc
        .direct_api()
        .stream_rx_by_mid(mid, None)
        .expect("the viewer receives the video")
        .request_keyframe(KeyframeRequestKind::Pli);
    c.advance(Duration::from_millis(500));
    assert!(
        c.client(0).keyframe_requests > before,
        "the PLI crossed the trunk back to the publisher"
    );
    assert!(c.trunk(0).counters.keyframe_requests_in >= 1);
}

#[test]
fn loss_on_the_trunk_is_repaired_by_nack() {
    assert_trunk_loss_repaired([TrunkMedia::Srtp; 2]);
}

/// With one trunk RTP datagram in seven lost (nodes wanting `media`), b NACKs, a resends from
/// the track's history, and every viewer gets every packet.
fn assert_trunk_loss_repaired(media: [TrunkMedia; 2]) {
    let mut c = cluster_with(media);
    c.trunk_loss_every = 7;
    c.send_media(0, MediaKind::Video, 200, 0xA0);
    c.trunk_loss_every = 0;
    c.advance(Duration::from_secs(1));
    assert!(c.trunk_rtp_dropped > 10, "the trunk lost packets");
    assert!(c.trunk(0).counters.resent_out > 0, "a resent what b NACKed");
    for viewer in 1..4 {
        assert_complete(&c, viewer, 0xA0, 200);
    }
}

#[test]
fn far_members_and_their_tracks_come_and_go_as_the_control_plane_and_the_trunk_say() {
    let mut c = cluster();
    let publisher = 1;
    let viewer = c.client(1);
    assert!(
        viewer.saw(|m| matches!(m, ServerMessage::Joined { peers, .. }
            if peers.iter().any(|p| p.id == publisher && p.name == "publisher"))),
        "a viewer joining b sees the member of a"
    );
    assert!(viewer.saw(
        |m| matches!(m, ServerMessage::TrackPublished { peer_id, .. } if *peer_id == publisher)
    ));
    assert!(
        c.client(0)
            .saw(|m| matches!(m, ServerMessage::PeerJoined { peer } if peer.id == 4)),
        "a's member sees b's members join"
    );

    // The publisher mutes its camera on a: b's viewers are told.
    let video = c.client(0).video.unwrap().to_string();
    c.to_core.push_back((
        0,
        1,
        ClientMessage::Mute {
            mid: video.clone(),
            muted: true,
        },
    ));
    c.advance(Duration::from_millis(200));
    let muted_id = format!("{publisher}:{video}");
    for viewer in 1..4 {
        assert!(c.client(viewer).saw(|m| matches!(m,
            ServerMessage::TrackMuted { peer_id, track_id, muted: true }
                if *peer_id == publisher && *track_id == muted_id)));
    }

    // The publisher leaves a: its tracks leave b over the trunk.
    c.cores[0].disconnect(c.now, 1);
    c.advance(Duration::from_millis(500));
    assert!(c.client(1).saw(
        |m| matches!(m, ServerMessage::TrackUnpublished { peer_id, .. } if *peer_id == publisher)
    ));
    assert_eq!(c.trunk(0).tracks_out, 0);
    assert_eq!(c.trunk(1).tracks_in, 0);

    // The control plane said it left.
    for viewer in 1..4 {
        let left = c
            .client(viewer)
            .signals
            .iter()
            .filter(|m| matches!(m, ServerMessage::PeerLeft { peer_id } if *peer_id == publisher))
            .count();
        assert_eq!(left, 1, "viewer {viewer} was told once");
    }
    assert!(!c.cores[1].remove_remote_member(c.now, publisher), "gone");
}

#[test]
fn far_viewers_choose_their_layers_and_only_the_layers_they_take_cross() {
    let rids = ["l", "h"];
    let sizes = [(320, 180), (1280, 720)];
    let mut c = Cluster::new();
    c.join_with(0, "publisher", &rids);
    for i in 0..3 {
        c.join(1, &format!("viewer{i}"));
    }
    c.advance(Duration::from_secs(1));
    let track_id = format!("{}:{}", 1, c.client(0).video.unwrap());
    let tile = |c: &mut Cluster, viewer: usize, width, height| {
        let id = c.client(viewer).id;
        c.to_core.push_back((
            1,
            id,
            ClientMessage::TileSize {
                track_id: track_id.clone(),
                width,
                height,
            },
        ));
        c.pump();
    };
    for viewer in 1..4 {
        tile(&mut c, viewer, 320, 180);
    }
    c.advance(Duration::from_millis(500));
    c.send_simulcast(0, &rids, &sizes, 100, 0xC0);
    for viewer in 1..4 {
        let got = c.layers_received(viewer, 0xC0);
        assert!(
            got.len() > 50,
            "viewer {viewer} gets the picture: {}",
            got.len()
        );
        assert!(
            got.iter().all(|l| *l == 0),
            "small tiles take the low layer"
        );
    }
    let a = c.trunk(0);
    assert_eq!(
        a.layers_out, 2,
        "the audio and only the low video layer are demanded"
    );
    assert!(
        a.counters.packets_out <= 100,
        "the high layer did not cross: {}",
        a.counters.packets_out
    );

    tile(&mut c, 2, 1280, 720);
    c.send_simulcast(0, &rids, &sizes, 250, 0xC1);
    assert_eq!(
        c.trunk(0).layers_out,
        3,
        "the big tile's layer is demanded too"
    );
    let crossed = c.trunk(0).counters.packets_out - a.counters.packets_out;
    assert!(
        crossed > 250 && crossed <= 500,
        "the low layer and then the high one crossed once each: {crossed}"
    );
    let big = c.layers_received(2, 0xC1);
    assert_eq!(big.last(), Some(&1), "the big tile moved to the high layer");
    for viewer in [1, 3] {
        let got = c.layers_received(viewer, 0xC1);
        assert!(
            got.iter().all(|l| *l == 0),
            "small tiles stay on the low layer"
        );
    }
}

#[test]
fn a_trunk_that_goes_silent_is_closed_and_dialled_again() {
    let mut c = cluster();
    assert_eq!(
        (trunk_flows(&c, 0), trunk_flows(&c, 1)),
        ((1, 0), (1, 0)),
        "each node admitted the trunk's 5-tuple to its in-kernel guard"
    );
    c.send_media(0, MediaKind::Video, 20, 0xA0);
    // Nothing from node a reaches node b for longer than a trunk may stay silent: b closes its
    // end after 15 s. a heard b until then, and would close its own end only 15 s later; b says
    // it closed, so a closes and dials again at once.
    c.cut_off_a_for(Duration::from_secs(16));
    c.advance(Duration::from_secs(3));
    assert!(
        c.trunk(0).connected && c.trunk(1).connected,
        "a, the end that dials, set the trunk up again as soon as b closed"
    );
    assert_eq!(
        c.trunk(1).tracks_in,
        2,
        "a's tracks are published on b again"
    );
    c.send_media(0, MediaKind::Video, 100, 0xA1);
    for viewer in 1..4 {
        assert_complete(&c, viewer, 0xA1, 100);
    }
    assert_eq!(
        (trunk_flows(&c, 0), trunk_flows(&c, 1)),
        ((2, 1), (2, 1)),
        "the closed trunk's 5-tuple was revoked, the new one's admitted"
    );
    let answer = c
        .signals
        .iter()
        .rev()
        .find(|s| s.kind == SignalKind::Answer)
        .cloned()
        .expect("b's answer");
    // A late `closed` for an older session changes nothing; one for this session closes it on a,
    // which dials again.
    let stale = TrunkSignal {
        kind: SignalKind::Closed,
        description: TrunkDescription {
            ufrag: "older".into(),
            ..answer.description.clone()
        },
        ..answer.clone()
    };
    c.cores[0].handle_trunk_signal(c.now, stale);
    assert!(c.trunk(0).connected, "the current session stays");
    let closed = TrunkSignal {
        kind: SignalKind::Closed,
        ..answer
    };
    c.cores[0].handle_trunk_signal(c.now, closed);
    assert!(!c.trunk(0).connected, "a closed it and dialled a new one");
    c.advance(Duration::from_secs(3));
    assert!(c.trunk(0).connected && c.trunk(1).connected);
    c.send_media(0, MediaKind::Video, 50, 0xA6);
    for viewer in 1..4 {
        assert_complete(&c, viewer, 0xA6, 50);
    }
}

/// How often node `node` told its shell to admit, and to revoke, the 5-tuple of its trunk to
/// the other node.
fn trunk_flows(c: &Cluster, node: usize) -> (usize, usize) {
    let tuple = (node_addr(1 - node), node_addr(node));
    let count = |admitted: bool| {
        c.flows[node]
            .iter()
            .filter(|f| match f {
                FlowChange::Admitted(Protocol::Udp, t) => admitted && *t == tuple,
                FlowChange::Revoked(Protocol::Udp, t) => !admitted && *t == tuple,
                _ => false,
            })
            .count()
    };
    (count(true), count(false))
}

/// How many of the RTP datagrams node a sent node b carry one of track `tag`'s payloads in the
/// clear, right after a 12-byte header and its extensions.
fn clear_payloads(c: &Cluster, tag: u8, n: u16) -> usize {
    let sent: Vec<Vec<u8>> = (0..n).map(|i| payload(tag, i)).collect();
    c.trunk_rtp
        .iter()
        .filter(|d| sent.iter().any(|p| d.ends_with(p)))
        .count()
}

#[test]
fn a_plain_trunk_carries_each_packet_once_unencrypted() {
    let mut c = cluster_with([TrunkMedia::Plain; 2]);
    assert_eq!((c.trunk(0).media, c.trunk(1).media), ("plain", "plain"));
    c.send_media(0, MediaKind::Video, 200, 0xA0);
    c.send_media(0, MediaKind::Audio, 100, 0xB0);
    for viewer in 1..4 {
        assert_complete(&c, viewer, 0xA0, 200);
        assert_complete(&c, viewer, 0xB0, 100);
    }
    assert_eq!(c.trunk(0).counters.packets_out, 300, "once, not per viewer");
    assert_eq!(
        clear_payloads(&c, 0xA0, 200) + clear_payloads(&c, 0xB0, 100),
        300,
        "every packet crossed with its payload as the publisher sent it"
    );
}

#[test]
fn an_srtp_trunk_carries_no_payload_in_the_clear() {
    let mut c = cluster();
    assert_eq!((c.trunk(0).media, c.trunk(1).media), ("srtp", "srtp"));
    c.send_media(0, MediaKind::Video, 50, 0xA0);
    assert_complete(&c, 1, 0xA0, 50);
    assert!(c.trunk_rtp.len() >= 50);
    assert_eq!(clear_payloads(&c, 0xA0, 50), 0);
}

#[test]
fn a_trunk_is_plain_only_when_both_ends_want_it() {
    for media in [
        [TrunkMedia::Plain, TrunkMedia::Srtp],
        [TrunkMedia::Srtp, TrunkMedia::Plain],
    ] {
        let mut c = cluster_with(media);
        assert_eq!(
            (c.trunk(0).media, c.trunk(1).media),
            ("srtp", "srtp"),
            "{media:?}"
        );
        c.send_media(0, MediaKind::Video, 50, 0xA0);
        assert_complete(&c, 1, 0xA0, 50);
        assert_eq!(clear_payloads(&c, 0xA0, 50), 0, "{media:?}");
    }
}

#[test]
fn loss_on_a_plain_trunk_is_repaired_by_nack() {
    assert_trunk_loss_repaired([TrunkMedia::Plain; 2]);
}

#[test]
fn a_plain_rtp_ingest_alone_in_its_room_reaches_the_far_nodes_members() {
    let mut c = Cluster::new();
    let (viewer_a, viewer_b) = (c.join(1, "viewer0"), c.join(1, "viewer1"));
    c.advance(Duration::from_secs(1));
    // Node a has no member in the room: only a microphone sending plain RTP to it.
    let camera: SocketAddr = "127.0.0.5:6000".parse().unwrap();
    let ingest = 1000;
    let spec = IngestSpec {
        room: "kitchen".into(),
        name: "hall-mic".into(),
        codec: IngestCodec::Opus,
        payload_type: 111,
        source: Some(camera),
    };
    c.cores[0]
        .add_ingest(c.now, ingest, spec)
        .expect("an ingest");
    c.advance(Duration::from_secs(3));
    assert!(
        c.trunk(0).connected,
        "node a dialled node b for the ingest's room"
    );
    for viewer in [viewer_a, viewer_b] {
        assert!(
            c.client(viewer)
                .saw(|m| matches!(m, ServerMessage::PeerJoined { peer }
                if peer.id == ingest && peer.name == "hall-mic")),
            "b's members see the ingest join"
        );
    }
    for i in 0..50u16 {
        let datagram = plain_rtp(
            111,
            500 + i,
            960 * u32::from(i),
            0xC0FFEE,
            &payload(0xC0, i),
        );
        c.cores[0].handle_datagram(c.now, camera, node_addr(0), &datagram);
        c.advance(Duration::from_millis(20));
    }
    for viewer in [viewer_a, viewer_b] {
        assert_complete(&c, viewer, 0xC0, 50);
    }
    assert_eq!(
        c.trunk(0).counters.packets_out,
        50,
        "each packet crossed once"
    );

    // The ingest goes: b's members see it leave.
    c.cores[0]
        .remove_ingest(c.now, ingest)
        .expect("a known ingest");
    c.advance(Duration::from_millis(500));
    for viewer in [viewer_a, viewer_b] {
        assert!(c
            .client(viewer)
            .saw(|m| matches!(m, ServerMessage::PeerLeft { peer_id } if *peer_id == ingest)));
    }
}

#[test]
fn a_trunk_no_room_needs_is_closed_and_set_up_again_when_one_does() {
    let mut c = cluster();
    c.send_media(0, MediaKind::Video, 20, 0xA0);
    // The publisher leaves node a: no room is shared any more.
    c.cores[0].disconnect(c.now, 1);
    c.advance(Duration::from_secs(25));
    assert_eq!(
        c.cores[0].stats().trunks.len(),
        1,
        "kept a while (a member may come back)"
    );
    c.advance(Duration::from_secs(10));
    assert!(
        c.cores[0].stats().trunks.is_empty() && c.cores[1].stats().trunks.is_empty(),
        "both ends closed the unused trunk"
    );
    // A new member on node a: the trunk is dialled again and carries its media.
    let publisher = c.join(0, "publisher2");
    c.advance(Duration::from_secs(3));
    assert!(c.trunk(0).connected && c.trunk(1).connected);
    c.send_media(publisher, MediaKind::Video, 50, 0xD0);
    for viewer in 1..4 {
        assert_complete(&c, viewer, 0xD0, 50);
    }
}

/// Node a (publisher) with its plain trunks served by the kernel fan-out, and far nodes whose
/// trunk ends want `far` (two viewers on b, one on c), the trunks up.
fn kernel_cluster(far: [TrunkMedia; 2], refuse: bool) -> Cluster {
    let fanout = FanoutConfig {
        handoff: HANDOFF.parse().unwrap(),
        worker: 0,
    };
    let mut c = Cluster::with_fanout(&[TrunkMedia::Plain, far[0], far[1]], Some(fanout));
    c.refuse_fanout = refuse;
    c.join(0, "publisher");
    for (node, name) in [(1, "b-viewer0"), (1, "b-viewer1"), (2, "c-viewer")] {
        c.join(node, name);
    }
    c.advance(Duration::from_secs(3));
    c
}

/// The viewers of [`kernel_cluster`]: two on b, one on c.
const FAR_VIEWERS: [usize; 3] = [1, 2, 3];

#[test]
fn a_video_layer_two_far_nodes_take_over_plain_trunks_is_handed_to_the_kernel_once() {
    let mut c = kernel_cluster([TrunkMedia::Plain; 2], false);
    c.send_media(0, MediaKind::Video, 200, 0xD0);
    c.send_media(0, MediaKind::Audio, 100, 0xD1);
    for viewer in FAR_VIEWERS {
        assert_complete(&c, viewer, 0xD0, 200);
        assert_complete(&c, viewer, 0xD1, 100);
    }
    assert_eq!(
        c.handoffs, 200,
        "each video packet handed off once, audio never"
    );
    let (b, cc) = (c.trunk_to(0, 1), c.trunk_to(0, 2));
    assert_eq!((b.kernel_layers, cc.kernel_layers), (1, 1));
    assert_eq!(b.counters.packets_out, 300, "each packet once to b");
    assert_eq!(cc.counters.packets_out, 300, "and once to c");
    // One entry in the kernel: the video layer, copied to b and to c with the SSRC each trunk
    // announced, from a's media address to the far node's.
    assert_eq!(c.fanout.len(), 1, "{:?}", c.fanout);
    let copies = c.fanout.values().next().unwrap();
    let mut to: Vec<_> = copies.iter().map(|copy| (copy.from, copy.to)).collect();
    to.sort();
    assert_eq!(
        to,
        [(node_addr(0), node_addr(1)), (node_addr(0), node_addr(2))]
    );
    assert_ne!(copies[0].ssrc, copies[1].ssrc);
    // When the far viewers leave, nothing is taken any more and the entry is removed.
    for viewer in FAR_VIEWERS {
        let (node, id) = (c.clients[viewer].0, c.client(viewer).id);
        c.cores[node].disconnect(c.now, id);
    }
    c.advance(Duration::from_secs(1));
    assert!(c.fanout.is_empty(), "{:?}", c.fanout);
}

#[test]
fn loss_after_the_kernel_fan_out_is_repaired_by_each_far_node_s_nack() {
    let mut c = kernel_cluster([TrunkMedia::Plain; 2], false);
    // Each loss adds a resend: with copies to b and c alternating, an even period makes the
    // losses alternate between them too.
    c.trunk_loss_every = 6;
    c.send_media(0, MediaKind::Video, 200, 0xD2);
    c.advance(Duration::from_secs(1));
    assert!(c.trunk_rtp_dropped > 0);
    for viewer in FAR_VIEWERS {
        assert_complete(&c, viewer, 0xD2, 200);
    }
    for far in [1, 2] {
        assert!(
            c.trunk_to(0, far).counters.resent_out > 0,
            "a resent to {far}"
        );
    }
}

#[test]
fn an_srtp_trunk_or_a_refused_fan_out_sends_its_own_copies() {
    // c wants SRTP: only b's copy comes from the kernel.
    let mut c = kernel_cluster([TrunkMedia::Plain, TrunkMedia::Srtp], false);
    c.send_media(0, MediaKind::Video, 100, 0xD3);
    for viewer in FAR_VIEWERS {
        assert_complete(&c, viewer, 0xD3, 100);
    }
    assert_eq!(c.handoffs, 100);
    let copies: Vec<_> = c.fanout.values().flatten().map(|copy| copy.to).collect();
    assert_eq!(copies, [node_addr(1)]);
    assert_eq!(
        (
            c.trunk_to(0, 1).kernel_layers,
            c.trunk_to(0, 2).kernel_layers
        ),
        (1, 0)
    );
    // A shell that cannot program the fan-out: every trunk seals its own copies.
    let mut c = kernel_cluster([TrunkMedia::Plain; 2], true);
    c.send_media(0, MediaKind::Video, 100, 0xD4);
    for viewer in FAR_VIEWERS {
        assert_complete(&c, viewer, 0xD4, 100);
    }
    assert_eq!(c.handoffs, 0);
    assert_eq!(c.trunk_to(0, 1).kernel_layers, 0);
    assert_eq!(c.trunk_to(0, 2).counters.packets_out, 100);
}
