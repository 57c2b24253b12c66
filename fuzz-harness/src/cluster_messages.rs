//! `cluster_messages`: what other nodes of a cluster send, each into what reads it here:
//!
//! - a trunk control message (from the far node over the trunk's SCTP channel) into
//!   `ControlMessage::parse`; what parses emits and parses back equal;
//! - a room event another node published (through Redis) into the directory's `Mirror`; the
//!   members it adds all leave when their node is found gone, and nothing is left;
//! - another node's member records (a heartbeat's read of Redis) into `Mirror::resync`, likewise;
//! - a trunk description (through Redis) into a core with a trunk end: an offer makes at most
//!   one trunk, which closes when nothing arrives on it, and nothing else changes.
//!
//! Input: one byte choosing which, then the message.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cluster::mirror::Mirror;
use cluster::record::{MemberRecord, NodeEvent};
use sfu_core::cluster::ClusterEvent;
use sfu_core::trunk::{ControlMessage, TrunkEndpoint, TrunkMedia, TrunkSignal};
use sfu_core::{Core, CoreConfig};

/// Feeds `data` to the reader its first byte chooses.
pub fn run(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    match choice % 4 {
        0 => control_message(body),
        1 => {
            if let Ok(event) = serde_json::from_slice::<NodeEvent>(body) {
                let mut mirror = Mirror::new("here");
                let joined = mirror.apply(event);
                forget_all(mirror, &joined);
            }
        }
        2 => {
            if let Ok(records) = serde_json::from_slice::<Vec<MemberRecord>>(body) {
                let mut mirror = Mirror::new("here");
                let joined = mirror.resync(HashMap::from([("far".to_string(), records)]), true);
                forget_all(mirror, &joined);
            }
        }
        _ => {
            if let Ok(signal) = serde_json::from_slice::<TrunkSignal>(body) {
                let _ = cluster::endpoint::parse(&signal.to);
                trunk_signal(signal);
            }
        }
    }
}

fn control_message(body: &[u8]) {
    if let Ok(message) = ControlMessage::parse(body) {
        let again = ControlMessage::parse(&message.emit());
        assert_eq!(
            again.as_ref(),
            Ok(&message),
            "emit then parse gives it back"
        );
    }
}

/// Every member `joined` announced leaves once the directory finds its node gone, and the
/// mirror is empty then.
fn forget_all(mut mirror: Mirror, joined: &[ClusterEvent]) {
    let members = joined
        .iter()
        .filter(|e| matches!(e, ClusterEvent::MemberJoined { .. }))
        .count();
    assert_eq!(mirror.len(), members, "a member per join: {joined:?}");
    let left = mirror.resync(HashMap::new(), true);
    assert_eq!(left.len(), members, "each one leaves: {left:?}");
    assert!(left
        .iter()
        .all(|e| matches!(e, ClusterEvent::MemberLeft { .. })));
    assert!(mirror.is_empty());
}

fn trunk_signal(signal: TrunkSignal) {
    let now = Instant::now();
    let mut core = Core::new(CoreConfig {
        candidates: vec!["127.0.0.1:4000".parse().expect("an address")],
        trunk_endpoint: Some(TrunkEndpoint {
            name: "here/0".into(),
            advertised: None,
            media: TrunkMedia::Srtp,
        }),
        ..CoreConfig::default()
    });
    core.handle_trunk_signal(now, signal);
    while core.poll_output().is_some() {}
    assert!(
        core.trunk_infos().len() <= 1,
        "at most the one trunk offered"
    );
    assert_eq!(core.room_count(), 0);
    let later = now + Duration::from_secs(16);
    core.handle_timeout(later);
    while core.poll_output().is_some() {}
    assert!(
        core.trunk_infos().is_empty(),
        "a trunk nothing arrived on is closed"
    );
}
