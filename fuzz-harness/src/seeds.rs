//! The seed corpus of every target, from real traffic where there is traffic: the datagrams and
//! messages of a simulated call between real str0m peers and the core ([`World`]), tokens
//! minted as the `token` command mints them, the README's configuration and API examples.
//! `tests/corpus.rs`'s ignored `record_seed_corpus` writes them into `fuzz/corpus/<target>/`.

use std::net::SocketAddr;
use std::time::Instant;

use sfu_core::plain::{IngestCodec, IngestSpec, OutputSpec, OutputTarget};
use sfu_core::protocol::ClientMessage;
use sfu_core::wire::{append_frame, classify, DatagramKind};
use sfu_core::{Core, CoreConfig, Permissions};
use signaling::auth::{mint_hs256, Claims, Secret};

use crate::core::World;
use crate::offers;
use crate::room_token;

/// Seeds of one target: its name and its inputs.
pub type Seeds = (&'static str, Vec<Vec<u8>>);

/// The seeds of every target of [`crate::TARGETS`].
pub fn all() -> Vec<Seeds> {
    let call = World::connected(2);
    vec![
        ("classify", datagrams(&call)),
        ("tcp_framing", streams(&call)),
        ("codec_descriptors", payloads()),
        ("client_message", messages(&call)),
        ("api_bodies", api_bodies()),
        ("config_toml", configs()),
        ("room_token", tokens()),
        ("core", core_inputs()),
        ("whip_whep", http_offers()),
        ("admin_bodies", admin_bodies()),
        ("cluster_messages", cluster_messages()),
    ]
}

/// A few datagrams of each kind the clients sent.
fn datagrams(call: &World) -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for kind in [
        DatagramKind::Stun,
        DatagramKind::Dtls,
        DatagramKind::Rtp,
        DatagramKind::Rtcp,
    ] {
        let of_kind = call.captured.iter().filter(|(_, d)| classify(d) == kind);
        seeds.extend(of_kind.take(4).map(|(_, d)| d.clone()));
    }
    seeds
}

/// The clients' first datagrams as an ICE-TCP stream, and a STUN check alone.
fn streams(call: &World) -> Vec<Vec<u8>> {
    let mut stream = Vec::new();
    for (_, datagram) in call.captured.iter().take(6) {
        append_frame(&mut stream, datagram);
    }
    let mut check = Vec::new();
    if let Some((_, stun)) = call.captured.first() {
        append_frame(&mut check, stun);
    }
    vec![stream, check]
}

/// Payloads of each codec (selector byte, then length-prefixed payloads; see
/// [`crate::codec_descriptors`]): an Opus frame, VP8 keyframe and delta frames with picture
/// ids, H.264 IDR slices single, in a STAP-A and in an FU-A, and an encoder's SPS (its picture
/// size) alone and in a STAP-A with its PPS.
fn payloads() -> Vec<Vec<u8>> {
    // x264's SPS for 320x180 (baseline, cropped, with emulation prevention bytes) and a PPS.
    let sps = [
        0x67, 0x42, 0xc0, 0x0b, 0xd9, 0x01, 0x41, 0x9f, 0x9f, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x00, 0x20, 0xf1, 0x42, 0xa4, 0x80,
    ];
    let pps = [0x68, 0xce, 0x38, 0x80];
    let mut sps_pps = vec![0x78, 0, sps.len() as u8];
    sps_pps.extend_from_slice(&sps);
    sps_pps.extend_from_slice(&[0, pps.len() as u8]);
    sps_pps.extend_from_slice(&pps);
    let vp8_key = [
        0x90, 0xe0, 0x81, 0x23, 0x05, 0x20, 0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68,
        0x01,
    ];
    let vp8_delta = [0x90, 0xe0, 0x81, 0x24, 0x06, 0x40, 0x11, 0x00, 0x00];
    let with_len = |selector: u8, payloads: &[&[u8]]| {
        let mut seed = vec![selector];
        for p in payloads {
            seed.push(p.len() as u8);
            seed.extend_from_slice(p);
        }
        seed
    };
    let mut vp8 = with_len(1, &[&vp8_key, &vp8_delta]);
    vp8.push(0); // a layer switch
    vp8.extend_from_slice(&with_len(1, &[&vp8_delta])[1..]);
    vec![
        with_len(0, &[&[0xfc, 0xff, 0xfe]]),
        vp8,
        with_len(2, &[&[0x65, 0x88, 0x84]]),
        with_len(
            2,
            &[&[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x03, 0x65, 0x88, 0x84]],
        ),
        with_len(2, &[&[0x7c, 0x85, 0x88], &[0x7c, 0x45, 0x99]]),
        with_len(2, &[&sps, &sps_pps, &[0x7c, 0x85, 0x88]]),
    ]
}

/// The messages the clients sent (join, offer, answer) and one of every other kind.
fn messages(call: &World) -> Vec<Vec<u8>> {
    let mut all = call.messages.clone();
    all.dedup_by(|a, b| std::mem::discriminant(a) == std::mem::discriminant(b));
    all.extend([
        ClientMessage::Candidate {
            candidate: "candidate:1 1 udp 2130706431 127.0.0.2 5000 typ host".into(),
        },
        ClientMessage::Mute {
            mid: "1".into(),
            muted: true,
        },
        ClientMessage::TileSize {
            track_id: "1:1".into(),
            width: 640,
            height: 360,
        },
        ClientMessage::GetStats,
        ClientMessage::Chat {
            text: "hello".into(),
        },
        ClientMessage::Leave,
        ClientMessage::Ping,
        ClientMessage::Refresh {
            token: String::from_utf8(tokens().swap_remove(0)).expect("a token is ASCII"),
        },
    ]);
    all.iter()
        .map(|m| serde_json::to_vec(m).expect("messages serialize"))
        .collect()
}

/// The README's API examples (selector byte, then the JSON; see [`crate::api_bodies`]).
fn api_bodies() -> Vec<Vec<u8>> {
    let ingest = IngestSpec {
        room: "r".into(),
        name: "door-camera".into(),
        codec: IngestCodec::Vp8,
        payload_type: 96,
        source: Some(SocketAddr::from(([192, 168, 1, 50], 5004))),
    };
    let mut core = Core::new(CoreConfig::default());
    let track_id = core
        .add_ingest(Instant::now(), 1, ingest.clone())
        .expect("a valid ingest")
        .track_id;
    let targets = vec![
        OutputTarget {
            address: SocketAddr::from(([127, 0, 0, 1], 6000)),
            ssrc: None,
            payload_type: None,
        },
        OutputTarget {
            address: SocketAddr::from(([127, 0, 0, 1], 6002)),
            ssrc: Some(42),
            payload_type: Some(100),
        },
    ];
    let output = OutputSpec {
        room: "r".into(),
        track_id,
        targets: targets.clone(),
    };
    let body = |selector: u8, json: Vec<u8>| [vec![selector], json].concat();
    vec![
        body(0, serde_json::to_vec(&ingest).expect("serializes")),
        body(1, serde_json::to_vec(&output).expect("serializes")),
        body(2, serde_json::to_vec(&targets).expect("serializes")),
    ]
}

/// The real WHIP and WHEP offers at each endpoint (selector byte, then the offer; see
/// [`crate::whip_whep`]): each where it belongs, and a WHEP offer sent to WHIP.
fn http_offers() -> Vec<Vec<u8>> {
    let at = |selector: u8, offer: &str| [&[selector], offer.as_bytes()].concat();
    vec![
        at(0, offers::whip()),
        at(1, offers::whep()),
        at(2, offers::whep()),
        at(0, offers::whep()),
    ]
}

/// The admin API's examples (selector byte, then the body; see [`crate::admin_bodies`]): a
/// revocation with and without `exp`, a mute by track id and one by mid of the real WHIP offer's
/// first m-line, and recording rooms, the publisher's and one that tries to climb.
fn admin_bodies() -> Vec<Vec<u8>> {
    let mid = offers::whip()
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .expect("an offer has mids");
    let body = |selector: u8, text: &str| [&[selector], text.as_bytes()].concat();
    vec![
        body(
            0,
            r#"{"jti": "0b6f3a9e-4c1d-4e8a-9f2b-7d5c3e1a6b90", "exp": 1767225600}"#,
        ),
        body(0, r#"{"jti": "a1"}"#),
        body(1, &format!(r#"{{"trackId": "1:{mid}", "muted": true}}"#)),
        body(1, &format!(r#"{{"mid": "{mid}", "muted": false}}"#)),
        body(2, "r"),
        body(2, "../../etc"),
    ]
}

/// What other nodes send (selector byte, then the message; see [`crate::cluster_messages`]):
/// each trunk control message, a join and a chat line as published, a member record as read,
/// and a real core's trunk offer.
fn cluster_messages() -> Vec<Vec<u8>> {
    use cluster::record::{MemberRecord, NodeEvent};
    use sfu_core::protocol::{TrackKind, TrackSource};
    use sfu_core::trunk::{
        ControlMessage, LayerStream, SignalKind, TrunkEndpoint, TrunkMedia, TrunkSignal,
    };
    let with = |selector: u8, bytes: Vec<u8>| [vec![selector], bytes].concat();
    let layer = |rid: &str, ssrc| LayerStream {
        rid: Some(rid.into()),
        ssrc,
        rtx: Some(ssrc + 1),
    };
    let control = [
        ControlMessage::Publish {
            room: "kitchen".into(),
            peer: 7,
            mid: "1".into(),
            trunk_mid: "d0".into(),
            kind: TrackKind::Video,
            source: TrackSource::Camera,
            muted: false,
            layers: vec![layer("l", 10), layer("h", 20)],
        },
        ControlMessage::Unpublish {
            peer: 7,
            mid: "1".into(),
        },
        ControlMessage::Mute {
            peer: 7,
            mid: "0".into(),
            muted: true,
        },
        ControlMessage::Demand {
            peer: 7,
            mid: "1".into(),
            layers: 3,
        },
    ];
    let mut seeds: Vec<Vec<u8>> = control.iter().map(|m| with(0, m.emit())).collect();
    let events = [
        sfu_core::RoomEvent::ParticipantJoined {
            room: "kitchen".into(),
            peer_id: 7,
            name: "ana".into(),
        },
        sfu_core::RoomEvent::Chat {
            room: "kitchen".into(),
            peer_id: 7,
            name: "ana".into(),
            text: "hello".into(),
        },
    ];
    for event in events {
        let published = NodeEvent {
            node: "far".into(),
            trunk: "far/0".into(),
            event,
        };
        seeds.push(with(1, serde_json::to_vec(&published).expect("JSON")));
    }
    let record = MemberRecord {
        room: "kitchen".into(),
        id: 7,
        name: "ana".into(),
        node: "far".into(),
        trunk: "far/1".into(),
        tracks: Vec::new(),
    };
    seeds.push(with(2, serde_json::to_vec(&[record]).expect("JSON")));
    let now = Instant::now();
    let mut dialler = Core::new(CoreConfig {
        candidates: vec![SocketAddr::from(([127, 0, 0, 1], 4001))],
        trunk_endpoint: Some(TrunkEndpoint {
            name: "a/0".into(),
            advertised: None,
            media: TrunkMedia::Srtp,
        }),
        ..CoreConfig::default()
    });
    let description = dialler.open_trunk(now, "here/0").expect("a trunk offer");
    let offer = TrunkSignal {
        from: "a/0".into(),
        to: "here/0".into(),
        kind: SignalKind::Offer,
        description,
    };
    seeds.push(with(3, serde_json::to_vec(&offer).expect("JSON")));
    seeds
}

/// A configuration file setting every key once, and the README's examples.
fn configs() -> Vec<Vec<u8>> {
    let every_key = r#"listen = "0.0.0.0:8443"
workers = 2
public_ip = ["203.0.113.7", "2001:db8::7"]
media_port = 40000
io = "sendmmsg"
kernel_interface = "eth0"
kernel_handoff_port = 47999
ice_tcp = true
turn_url = ["turn:turn.example.org:3478?transport=udp"]
turn_secret = "shared"
turn_ttl = 86400
auth_secret = "0123456789abcdef0123456789abcdef"
join_burst = 20
join_rate = 2.5
tls_cert = "cert.pem"
tls_key = "key.pem"
https = true
insecure_http = false
lan = false
data_dir = "/var/lib/edge-sfu"

[[ice_server]]
urls = ["turn:turn.example.org:3478"]
username = "edge"
credential = "secret"

[[ingest]]
room = "lobby"
name = "door-camera"
codec = "h264"
payload_type = 102
source = "192.168.1.50:5004"

[[output]]
ingest = "door-camera"
targets = [{ address = "192.168.1.60:6000", ssrc = 42 }]
"#;
    let ice_servers = "[[ice_server]]\nurls = [\"stun:stun.example.org:3478\"]\n";
    vec![every_key.into(), ice_servers.into()]
}

/// Valid tokens: a member's, a publish-only member's and an admin's without a room.
fn tokens() -> Vec<Vec<u8>> {
    let secret = Secret::new(room_token::SECRET).expect("a valid secret");
    let issued = room_token::NOW - 60;
    let member = Claims::for_member(
        "kitchen",
        "alice",
        Some("Alice"),
        Permissions::ALL,
        false,
        issued,
        3600,
    );
    let listener = Claims::for_member(
        "kitchen",
        "bob",
        None,
        Permissions {
            publish: false,
            ..Permissions::ALL
        },
        false,
        issued,
        3600,
    );
    let admin = Claims {
        room: None,
        ..Claims::for_member("-", "ops", None, Permissions::ALL, true, issued, 3600)
            .expect("no overflow")
    };
    [
        member.expect("no overflow"),
        listener.expect("no overflow"),
        admin,
    ]
    .iter()
    .map(|c| mint_hs256(&secret, c).expect("mints").into_bytes())
    .collect()
}

/// Operation sequences for the `core` target, from a fixed generator (its inputs are
/// structure-aware: any bytes decode to some sequence, and the fuzzer grows them from these).
fn core_inputs() -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    [16usize, 64, 256, 1024]
        .iter()
        .map(|len| (0..*len).map(|_| next()).collect())
        .collect()
}
