//! `core`: the core itself, structure-aware. Two real str0m peers join a room, connect (ICE,
//! DTLS-SRTP) and publish; then the input, read as a sequence of [`Op`]s, feeds the core
//! datagrams (arbitrary bytes, or a mutated copy of a real STUN, DTLS, RTP or RTCP datagram),
//! signaling messages (arbitrary JSON, or a real offer or answer with lines flipped, inserted or
//! deleted), media, joins, disconnects and time steps. After each step [`check`] holds:
//! the core's output was drained, its member count matches the members it knows, every room
//! has members, its counters
//! only grow and forward no more than fan-out allows, and a member that left holds nothing.

mod world;

use std::net::SocketAddr;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use sfu_core::protocol::{ClientMessage, PeerId};
use sfu_core::Counters;

pub use world::World;

/// Peers joined before the operations start.
const PEERS: usize = 2;
/// Operations taken from one input, at most (each may run the simulated network a while).
const MAX_OPS: usize = 48;
/// Clients one input may ever have (joins past it are ignored).
const MAX_CLIENTS: usize = 4;

/// Where a datagram comes from.
#[derive(Debug, Arbitrary)]
pub enum Sender {
    /// A joined client's address (known to the core once it connected).
    Client(u8),
    /// An address nobody joined from.
    Stranger(u8, u16),
}

/// One change to a datagram's bytes.
#[derive(Debug, Arbitrary)]
pub enum ByteEdit {
    /// Flips bit `bit % 8` of byte `at`.
    Flip {
        /// Which byte (modulo the length).
        at: u16,
        /// Which bit.
        bit: u8,
    },
    /// Sets byte `at` to `value`.
    Set {
        /// Which byte (modulo the length).
        at: u16,
        /// Its new value.
        value: u8,
    },
    /// Cuts the datagram to `len` bytes (modulo its length plus one).
    Truncate(u16),
    /// Appends bytes.
    Append(Vec<u8>),
}

/// One change to an SDP's lines.
#[derive(Debug, Arbitrary)]
pub enum LineEdit {
    /// Replaces byte `at` of line `line` with `value`.
    Flip {
        /// Which line (modulo the count).
        line: u8,
        /// Which byte of it (modulo its length).
        at: u8,
        /// Its new value (kept ASCII: SDP is text).
        value: u8,
    },
    /// Inserts `text` as a line before line `line`.
    Insert {
        /// Where (modulo the count plus one).
        line: u8,
        /// The new line.
        text: String,
    },
    /// Deletes line `line`.
    Delete(u8),
    /// Repeats line `line` after itself.
    Duplicate(u8),
}

/// One step of a run.
#[derive(Debug, Arbitrary)]
pub enum Op {
    /// A datagram of arbitrary bytes, over UDP or ICE-TCP.
    Datagram {
        /// From whom.
        from: Sender,
        /// Over ICE-TCP (one RFC 4571 frame) rather than UDP.
        tcp: bool,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// A real datagram a client sent earlier, edited, from that client.
    Mutated {
        /// Which captured datagram (modulo the count).
        packet: u8,
        /// The edits, in order.
        edits: Vec<ByteEdit>,
    },
    /// A signaling message from a client: `json` parsed as a [`ClientMessage`] (dropped when it
    /// does not parse, as the signaling server does).
    Message {
        /// From which client.
        client: u8,
        /// The text frame.
        json: String,
    },
    /// A real message a client sent earlier (join, offer, answer), sent again by a client.
    Replay {
        /// From which client.
        client: u8,
        /// Which captured message (modulo the count).
        message: u8,
    },
    /// The client's last offer, its SDP edited.
    Offer {
        /// Which client.
        client: u8,
        /// The edits, in order.
        edits: Vec<LineEdit>,
    },
    /// The client's last answer (or offer, before it answered one), its SDP edited.
    Answer {
        /// Which client.
        client: u8,
        /// The edits, in order.
        edits: Vec<LineEdit>,
    },
    /// A client sends an RTP packet on its audio or video track.
    Media {
        /// Which client.
        client: u8,
        /// Video (VP8) rather than audio (Opus).
        video: bool,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A new client joins and publishes.
    Join(String),
    /// A client's WebSocket closes.
    Disconnect(u8),
    /// A client's ICE-TCP connection closes.
    TcpClosed(u8),
    /// Simulated time passes.
    Time(u16),
}

/// Runs the operations `data` encodes against a core with [`PEERS`] connected peers.
pub fn run(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let mut world = World::connected(PEERS);
    let mut before = world.core.counters().clone();
    check(&world, &before);
    for _ in 0..MAX_OPS {
        let Ok(op) = Op::arbitrary(&mut input) else {
            break;
        };
        step(&mut world, op);
        check(&world, &before);
        before = world.core.counters().clone();
        if input.is_empty() {
            break;
        }
    }
}

/// Applies one operation.
fn step(world: &mut World, op: Op) {
    let clients = world.clients.len();
    let pick = |n: u8| usize::from(n) % clients;
    match op {
        Op::Datagram { from, tcp, bytes } => {
            let source = match from {
                Sender::Client(n) => world.clients[pick(n)].addr,
                Sender::Stranger(host, port) => SocketAddr::from(([10, 9, 8, host], port)),
            };
            world.datagram(source, &bytes, tcp);
        }
        Op::Mutated { packet, edits } => {
            if world.captured.is_empty() {
                return;
            }
            let (index, mut bytes) =
                world.captured[usize::from(packet) % world.captured.len()].clone();
            for edit in edits {
                edit_bytes(&mut bytes, edit);
            }
            let source = world.clients[index].addr;
            world.datagram(source, &bytes, false);
        }
        Op::Message { client, json } => {
            if let Ok(message) = serde_json::from_str::<ClientMessage>(&json) {
                send(world, pick(client), message);
            }
        }
        Op::Replay { client, message } => {
            if world.messages.is_empty() {
                return;
            }
            let message = world.messages[usize::from(message) % world.messages.len()].clone();
            send(world, pick(client), message);
        }
        Op::Offer { client, edits } => {
            let index = pick(client);
            let Some(sdp) = world.clients[index].last_offer.clone() else {
                return;
            };
            let tracks = world.clients[index].tracks.clone();
            let sdp = edit_sdp(&sdp, edits);
            send(world, index, ClientMessage::Offer { sdp, tracks });
        }
        Op::Answer { client, edits } => {
            let index = pick(client);
            let c = &world.clients[index];
            let Some(sdp) = c.last_answer.clone().or_else(|| c.last_offer.clone()) else {
                return;
            };
            let sdp = edit_sdp(&sdp, edits);
            send(world, index, ClientMessage::Answer { sdp });
        }
        Op::Media {
            client,
            video,
            payload,
        } => world.send_media(pick(client), video, &payload),
        Op::Join(name) => {
            if clients < MAX_CLIENTS {
                world.join(&name);
            }
        }
        Op::Disconnect(n) => world.disconnect(pick(n)),
        Op::TcpClosed(n) => {
            let addr = world.clients[pick(n)].addr;
            world.core.tcp_closed(addr, world::server_addr());
            world.pump();
        }
        Op::Time(millis) => world.advance(Duration::from_millis(u64::from(millis))),
    }
}

/// A message from client `index`, unless its connection is gone (the server would not read it).
fn send(world: &mut World, index: usize, message: ClientMessage) {
    if !world.clients[index].gone {
        world.send(index, message);
    }
}

/// Applies one edit to a datagram.
fn edit_bytes(bytes: &mut Vec<u8>, edit: ByteEdit) {
    let len = bytes.len();
    match edit {
        ByteEdit::Flip { at, bit } if len > 0 => bytes[usize::from(at) % len] ^= 1 << (bit % 8),
        ByteEdit::Set { at, value } if len > 0 => bytes[usize::from(at) % len] = value,
        ByteEdit::Truncate(to) => bytes.truncate(usize::from(to) % (len + 1)),
        ByteEdit::Append(more) => bytes.extend_from_slice(&more),
        ByteEdit::Flip { .. } | ByteEdit::Set { .. } => {}
    }
}

/// Applies edits to an SDP's lines (CRLF-separated, as SDP is written).
fn edit_sdp(sdp: &str, edits: Vec<LineEdit>) -> String {
    let mut lines: Vec<String> = sdp.split("\r\n").map(str::to_owned).collect();
    for edit in edits {
        let count = lines.len();
        match edit {
            LineEdit::Flip { line, at, value } if count > 0 => {
                let line = &mut lines[usize::from(line) % count];
                if !line.is_empty() {
                    let mut bytes = std::mem::take(line).into_bytes();
                    let at = usize::from(at) % bytes.len();
                    bytes[at] = value & 0x7f;
                    *line = String::from_utf8_lossy(&bytes).into_owned();
                }
            }
            LineEdit::Insert { line, text } => {
                lines.insert(usize::from(line) % (count + 1), text);
            }
            LineEdit::Delete(line) if count > 0 => {
                lines.remove(usize::from(line) % count);
            }
            LineEdit::Duplicate(line) if count > 0 => {
                let at = usize::from(line) % count;
                lines.insert(at, lines[at].clone());
            }
            LineEdit::Flip { .. } | LineEdit::Delete(_) | LineEdit::Duplicate(_) => {}
        }
    }
    lines.join("\r\n")
}

/// The invariants that hold after every step (see the module documentation).
fn check(world: &World, before: &Counters) {
    let core = &world.core;
    let ids: Vec<PeerId> = world.clients.iter().map(|c| c.id).collect();
    let members = ids.iter().filter(|id| core.has_peer(**id)).count();
    assert_eq!(
        core.peer_count(),
        members,
        "the core counts members nobody joined"
    );
    let stats = core.stats();
    assert_eq!(stats.peers, core.peer_count());
    assert!(stats.rooms <= members, "a room without members stays");
    assert_eq!(stats.rooms == 0, members == 0, "members without a room");
    for client in &world.clients {
        let footprint = core.footprint(client.id);
        if client.gone || world.closed.contains(&client.id) {
            assert!(
                !core.has_peer(client.id),
                "peer {} left but stays",
                client.id
            );
        }
        if !core.has_peer(client.id) {
            assert!(
                footprint.is_empty(),
                "peer {} left but holds {footprint:?}",
                client.id
            );
        }
    }
    let after = core.counters();
    assert!(after.received_packets >= before.received_packets);
    assert!(after.forwarded_packets >= before.forwarded_packets);
    assert!(after.forwarded_bytes >= before.forwarded_bytes);
    assert!(after.resent_packets >= before.resent_packets);
    assert!(after.total_drops() >= before.total_drops());
    // Each packet received is forwarded at most once to each other member ever joined.
    let fan_out = world.clients.len().saturating_sub(1).max(1) as u64;
    assert!(
        after.forwarded_packets <= after.received_packets * fan_out,
        "forwarded {} of {} received packets to {fan_out} subscribers at most",
        after.forwarded_packets,
        after.received_packets
    );
}
