//! The world the `core` target runs in: a [`Core`] and real str0m peers (ICE, DTLS-SRTP, SCTP)
//! exchanging datagrams and signaling messages in memory, with simulated time. Unlike the core's
//! own test world, nothing here assumes the exchange goes well: the fuzzer breaks SDP and
//! packets on purpose, and a peer that cannot follow simply stops following.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sfu_core::protocol::{
    ClientMessage, PeerId, PublishedTrack, ServerMessage, TrackSource, PROTOCOL_VERSION,
};
use sfu_core::str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use sfu_core::str0m::format::Codec;
use sfu_core::str0m::media::{Direction, MediaKind, Mid};
use sfu_core::str0m::net::{Protocol, Receive};
use sfu_core::str0m::rtp::{RtpWrite, SeqNo};
use sfu_core::str0m::{Candidate, Input, Output, Rtc, RtcConfig};
use sfu_core::{Action, Core, CoreConfig, Permissions};

/// The room every peer joins.
pub const ROOM: &str = "kitchen";
/// Rounds of moving messages and datagrams before [`World::pump`] gives up on settling (a
/// broken exchange may ping-pong; the core must survive it, not end it).
const PUMP_ROUNDS: usize = 64;
/// Real datagrams kept for mutation.
const CAPTURED: usize = 128;
/// Simulated time the starting peers get to connect (ICE, DTLS) on the instant network.
const CONNECT_TIME: Duration = Duration::from_millis(300);
/// The shortest step [`World::advance`] takes.
const MIN_TICK: Duration = Duration::from_millis(5);
/// Deadlines served in one [`World::advance`], at most.
const ADVANCE_ROUNDS: usize = 400;

/// The media port the core listens on.
pub fn server_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4000))
}

/// One str0m participant.
pub struct Client {
    /// Its member id in the core.
    pub id: PeerId,
    /// Where it sends from.
    pub addr: SocketAddr,
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    /// Its audio and video m-lines.
    mids: [Option<Mid>; 2],
    next_seq: [u64; 2],
    /// When its session wants time next.
    deadline: Option<Instant>,
    /// It failed (a broken SDP or packet it could not take): it neither sends nor receives.
    broken: bool,
    /// It was disconnected or left.
    pub gone: bool,
    /// The last offer and answer it sent, for mutated copies.
    pub last_offer: Option<String>,
    /// See `last_offer`.
    pub last_answer: Option<String>,
    /// The tracks its offer announced.
    pub tracks: Vec<PublishedTrack>,
}

/// A core and its peers.
pub struct World {
    /// Simulated now.
    pub now: Instant,
    /// The core under test.
    pub core: Core,
    /// Every client ever joined, in join order.
    pub clients: Vec<Client>,
    to_core: VecDeque<(PeerId, ClientMessage)>,
    /// Real datagrams the clients sent the core: (client index, bytes).
    pub captured: Vec<(usize, Vec<u8>)>,
    /// Real messages the clients sent the core.
    pub messages: Vec<ClientMessage>,
    /// Members the core said it closed.
    pub closed: Vec<PeerId>,
}

impl World {
    /// A core with no members.
    pub fn new() -> Self {
        let config = CoreConfig {
            candidates: vec![server_addr()],
            ..CoreConfig::default()
        };
        World {
            now: Instant::now(),
            core: Core::new(config),
            clients: Vec::new(),
            to_core: VecDeque::new(),
            captured: Vec::new(),
            messages: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// A core with `n` peers joined, publishing audio and video, connected and sending.
    pub fn connected(n: usize) -> Self {
        let mut world = World::new();
        for i in 0..n {
            world.join(&format!("p{i}"));
        }
        world.advance(CONNECT_TIME);
        for i in 0..n {
            world.send_media(i, false, &[0x90, 0x90]);
            world.send_media(i, true, &[0x90, 0x80, 0x81, 0x23, 0x10, 0x00]);
        }
        world
    }

    /// Joins a client named `name` that offers to publish audio and video; returns its index.
    pub fn join(&mut self, name: &str) -> usize {
        let index = self.clients.len();
        let id = index as PeerId + 1;
        let addr = SocketAddr::from(([127, 0, 0, 2], 5000 + index as u16));
        let mut rtc = RtcConfig::new().set_rtp_mode(true).build(self.now);
        let candidate = Candidate::host(addr, "udp").expect("a host candidate");
        rtc.add_local_candidate(candidate);
        self.clients.push(Client {
            id,
            addr,
            rtc,
            pending: None,
            mids: [None, None],
            next_seq: [100, 100],
            deadline: None,
            broken: false,
            gone: false,
            last_offer: None,
            last_answer: None,
            tracks: Vec::new(),
        });
        let join = ClientMessage::Join {
            version: PROTOCOL_VERSION,
            room: ROOM.into(),
            name: name.into(),
            capacity: None,
            token: None,
        };
        self.messages.push(join.clone());
        self.core.handle_join(self.now, id, join, Permissions::ALL);
        self.pump();
        if !self.core.has_peer(id) {
            self.clients[index].gone = true;
            return index;
        }
        let client = &mut self.clients[index];
        let mut api = client.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        api.add_channel("chat".into());
        let Some((offer, pending)) = api.apply() else {
            return index;
        };
        client.pending = Some(pending);
        client.mids = [Some(audio), Some(video)];
        client.tracks = vec![
            PublishedTrack {
                mid: audio.to_string(),
                source: TrackSource::Mic,
                muted: false,
            },
            PublishedTrack {
                mid: video.to_string(),
                source: TrackSource::Camera,
                muted: false,
            },
        ];
        let sdp = offer.to_sdp_string();
        client.last_offer = Some(sdp.clone());
        let offer = ClientMessage::Offer {
            sdp,
            tracks: client.tracks.clone(),
        };
        self.send(index, offer);
        index
    }

    /// Sends `message` from client `index` to the core and lets everything settle.
    pub fn send(&mut self, index: usize, message: ClientMessage) {
        if self.messages.len() < CAPTURED {
            self.messages.push(message.clone());
        }
        self.to_core.push_back((self.clients[index].id, message));
        self.pump();
    }

    /// Hands the core a datagram from `source`.
    pub fn datagram(&mut self, source: SocketAddr, bytes: &[u8], tcp: bool) {
        if tcp {
            self.core
                .handle_tcp_frame(self.now, source, server_addr(), bytes);
        } else {
            self.core
                .handle_datagram(self.now, source, server_addr(), bytes);
        }
        self.pump();
    }

    /// Client `index` sends one RTP packet with `payload` on its audio or video track.
    pub fn send_media(&mut self, index: usize, video: bool, payload: &[u8]) {
        let client = &mut self.clients[index];
        let slot = usize::from(video);
        let (Some(mid), false) = (client.mids[slot], client.broken || client.gone) else {
            return;
        };
        let codec = if video { Codec::Vp8 } else { Codec::Opus };
        let Some(pt) = client
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
        else {
            return;
        };
        let seq = client.next_seq[slot];
        client.next_seq[slot] += 1;
        let step = if video { 3000 } else { 960 };
        let now = self.now;
        let mut api = client.rtc.direct_api();
        if let Some(tx) = api.stream_tx_by_mid(mid, None) {
            let write = RtpWrite::new(
                pt,
                SeqNo::from(seq),
                seq as u32 * step,
                now,
                payload.to_vec(),
            )
            .marker(true)
            .nackable(video);
            tx.write_rtp(write);
        }
        self.advance(Duration::from_millis(20));
    }

    /// The core forgets member `index` as the shell does when its WebSocket closes.
    pub fn disconnect(&mut self, index: usize) {
        let client = &mut self.clients[index];
        client.gone = true;
        self.core.disconnect(self.now, client.id);
        self.pump();
    }

    /// Moves messages, datagrams and events until nothing moves (or [`PUMP_ROUNDS`] passed).
    pub fn pump(&mut self) {
        for _ in 0..PUMP_ROUNDS {
            let mut moved = false;
            while let Some((peer, message)) = self.to_core.pop_front() {
                self.core.handle_message(self.now, peer, message);
                moved = true;
            }
            while let Some(action) = self.core.poll_output() {
                moved = true;
                self.deliver(action);
            }
            for index in 0..self.clients.len() {
                moved |= self.poll_client(index);
            }
            if !moved {
                return;
            }
        }
        // Still moving: whatever the core queued is taken out, so each step ends drained.
        while let Some(action) = self.core.poll_output() {
            self.deliver(action);
        }
    }

    /// Advances simulated time by `by`, serving every deadline of the core and the clients on
    /// the way, in order, as the shell's loop does.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        for _ in 0..ADVANCE_ROUNDS {
            let next = self
                .clients
                .iter()
                .filter(|c| !c.broken && !c.gone)
                .filter_map(|c| c.deadline)
                .chain(self.core.poll_timeout())
                .min();
            let Some(next) = next.filter(|t| *t <= end) else {
                break;
            };
            // A deadline in the past is served now; time never goes back. Deadlines closer
            // than [`MIN_TICK`] wait for it, as they do in a busy shell (and the pacer's
            // per-millisecond deadlines do not make every step a thousand rounds).
            self.now = next.max(self.now + MIN_TICK).min(end);
            self.tick();
        }
        self.now = end;
        self.tick();
    }

    /// Feeds the current time to the core and every live client.
    fn tick(&mut self) {
        self.core.handle_timeout(self.now);
        for client in self.clients.iter_mut().filter(|c| !c.broken && !c.gone) {
            if client.rtc.handle_input(Input::Timeout(self.now)).is_err() {
                client.broken = true;
            }
        }
        self.pump();
    }

    /// Takes one action of the core to where it goes.
    fn deliver(&mut self, action: Action) {
        match action {
            Action::Transmit(t) => {
                let now = self.now;
                if let Some(client) = self
                    .clients
                    .iter_mut()
                    .find(|c| c.addr == t.destination && !c.broken && !c.gone)
                {
                    let taken = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents)
                        .map(|r| client.rtc.handle_input(Input::Receive(now, r)));
                    if matches!(taken, Ok(Err(_))) {
                        client.broken = true;
                    }
                }
                self.core.recycle(t.contents);
            }
            Action::Signal(peer, message) => {
                let Some(index) = self.clients.iter().position(|c| c.id == peer) else {
                    return;
                };
                if let Some(reply) = self.clients[index].on_signal(message) {
                    if self.messages.len() < CAPTURED {
                        self.messages.push(reply.clone());
                    }
                    self.to_core.push_back((peer, reply));
                }
            }
            Action::PeerClosed(peer) => {
                // The shell closes its WebSocket: nothing more comes from that connection.
                self.closed.push(peer);
                if let Some(client) = self.clients.iter_mut().find(|c| c.id == peer) {
                    client.gone = true;
                }
            }
            // For the kernel path, a recording's writer, webhooks and a cluster's control plane:
            // none of them here.
            Action::Flow(_)
            | Action::PlainOutputClosed(_)
            | Action::Record(_)
            | Action::RoomEvent(_)
            | Action::TrunkSignal(_)
            | Action::TrunkFanout(_) => {}
        }
    }

    /// Takes client `index`'s output to the core; returns whether anything moved.
    fn poll_client(&mut self, index: usize) -> bool {
        let mut moved = false;
        loop {
            let client = &mut self.clients[index];
            if client.broken || client.gone {
                return moved;
            }
            match client.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    client.deadline = Some(at);
                    return moved;
                }
                Ok(Output::Transmit(t)) => {
                    moved = true;
                    let (source, bytes) = (t.source, t.contents.to_vec());
                    self.core
                        .handle_datagram(self.now, source, server_addr(), &bytes);
                    if self.captured.len() < CAPTURED {
                        self.captured.push((index, bytes));
                    }
                }
                Ok(Output::Event(_)) => moved = true,
                Err(_) => {
                    client.broken = true;
                    return moved;
                }
            }
        }
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl Client {
    /// Reacts to a message of the SFU like a polite browser; returns its reply, if one is due.
    fn on_signal(&mut self, message: ServerMessage) -> Option<ClientMessage> {
        if self.broken || self.gone {
            return None;
        }
        match message {
            ServerMessage::Answer { sdp } => {
                let pending = self.pending.take()?;
                let answer = SdpAnswer::from_sdp_string(&sdp).ok()?;
                if self.rtc.sdp_api().accept_answer(pending, answer).is_err() {
                    self.broken = true;
                }
                None
            }
            ServerMessage::Offer { sdp, .. } => {
                self.pending = None;
                let offer = SdpOffer::from_sdp_string(&sdp).ok()?;
                let Ok(answer) = self.rtc.sdp_api().accept_offer(offer) else {
                    self.broken = true;
                    return None;
                };
                let sdp = answer.to_sdp_string();
                self.last_answer = Some(sdp.clone());
                Some(ClientMessage::Answer { sdp })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starting_call_connects_and_forwards_media() {
        let world = World::connected(2);
        assert_eq!(world.core.peer_count(), 2);
        let counters = world.core.counters();
        assert!(counters.received_packets >= 4, "{counters:?}");
        assert!(counters.forwarded_packets >= 4, "{counters:?}");
        assert!(world
            .clients
            .iter()
            .all(|c| !c.broken && c.last_answer.is_some()));
    }
}
