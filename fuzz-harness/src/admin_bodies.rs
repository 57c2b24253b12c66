//! `admin_bodies`: what the admin side of the HTTP API takes from its caller, into the part that
//! acts on it: a token revocation's body (`POST /api/tokens/revoke`) into the revocation list; a
//! forced mute's body (`POST /api/rooms/{room}/members/{id}/mute`) and a recording's room (the
//! path of `POST` and `DELETE /api/rooms/{room}/recording`) into a core with a WHIP publisher in
//! room `r`, which holds nothing once that publisher leaves. A recording's room also names its
//! directory: its sanitized form must be one path component that cannot climb.
//!
//! Input: one byte choosing the body (revocation, mute, recording room), then the body.

use std::net::SocketAddr;
use std::time::Instant;

use sfu_core::protocol::PeerId;
use sfu_core::{Core, CoreConfig, Permissions};
use signaling::admin::MuteRequest;
use signaling::revocation::Revocations;
use signaling::revoke_api::RevokeRequest;

use crate::offers;

/// The room of the publisher.
const ROOM: &str = "r";
/// The publisher.
const PUBLISHER: PeerId = 1;
/// Now, in seconds since the epoch, for the revocation list (a fixed time: runs repeat).
const NOW_S: u64 = 1_767_225_600;

/// Applies the chosen body.
pub fn run(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    match choice % 3 {
        0 => revoke(body),
        1 => mute(body),
        _ => record(body),
    }
}

/// A revocation: kept when accepted (and accepted again), nothing kept when refused.
fn revoke(body: &[u8]) {
    let Ok(request) = serde_json::from_slice::<RevokeRequest>(body) else {
        return;
    };
    let list = Revocations::default();
    match list.revoke(&request.jti, request.exp, NOW_S) {
        Ok(()) => {
            assert!(
                list.is_revoked(&request.jti),
                "an accepted revocation is kept"
            );
            list.revoke(&request.jti, request.exp, NOW_S)
                .expect("a token revoked can be revoked again");
            assert_eq!(list.len(), 1);
        }
        Err(_) => assert!(list.is_empty(), "a refused revocation keeps nothing"),
    }
}

/// A forced mute of whatever track the body names.
fn mute(body: &[u8]) {
    let Ok(request) = serde_json::from_slice::<MuteRequest>(body) else {
        return;
    };
    // Neither given: the API answers 400 before any worker hears of it.
    let Some(track) = request.track_id.or(request.mid) else {
        return;
    };
    let (mut core, now) = with_publisher();
    let _ = core.force_mute(now, ROOM, PUBLISHER, &track, request.muted);
    leave_and_check(core, now);
}

/// A recording of the room the path names: started and stopped when it is the publisher's.
fn record(body: &[u8]) {
    let Ok(room) = std::str::from_utf8(body) else {
        return;
    };
    let safe = recorder::sanitize(room);
    assert!(
        !safe.is_empty()
            && safe != ".."
            && safe
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{room:?} names the directory {safe:?}"
    );
    let (mut core, now) = with_publisher();
    let started = core.start_recording(now, room, format!("{safe}-1")).is_ok();
    assert_eq!(
        started,
        room == ROOM,
        "only a room with a member is recorded"
    );
    drain(&mut core);
    if started {
        core.stop_recording(now, room, None)
            .expect("the recording just started");
    }
    assert_eq!(core.recording_of(ROOM), None, "the recording stopped");
    leave_and_check(core, now);
}

/// A core whose room [`ROOM`] has a WHIP publisher with a real offer.
fn with_publisher() -> (Core, Instant) {
    let now = Instant::now();
    let mut core = Core::new(CoreConfig {
        candidates: vec![SocketAddr::from(([192, 168, 1, 10], 3478))],
        ..CoreConfig::default()
    });
    core.join_whip(
        now,
        PUBLISHER,
        ROOM.into(),
        "camera".into(),
        offers::whip(),
        Permissions::ALL,
    )
    .expect("a real WHIP offer is accepted");
    drain(&mut core);
    (core, now)
}

/// The publisher leaves; nothing of it, or of its room, stays.
fn leave_and_check(mut core: Core, now: Instant) {
    drain(&mut core);
    core.disconnect(now, PUBLISHER);
    drain(&mut core);
    let left = core.footprint(PUBLISHER);
    assert!(left.is_empty(), "the publisher left but holds {left:?}");
    assert_eq!((core.peer_count(), core.room_count()), (0, 0));
    assert_eq!(core.stats().timers, 0, "no member, no timer");
}

/// Takes every action out of the core, as the shell would.
fn drain(core: &mut Core) {
    while core.poll_output().is_some() {}
}
