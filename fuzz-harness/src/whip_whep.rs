//! `whip_whep`: the SDP offer of a WHIP publish (`POST /whip/{room}`) or a WHEP view
//! (`POST /whep/{room}`) into a core, as the worker hands it over: refused with an error that
//! leaves no member, or a member whose answer parses as SDP and who, once it leaves (`DELETE`)
//! after a second of simulated time, holds nothing (`Core::footprint`).
//!
//! Input: one byte choosing the endpoint (WHIP; WHEP following the active speaker; WHEP
//! following the publisher by name), then the offer (the request body; axum takes it as UTF-8).
//! The room already has a WHIP publisher with a real offer, so a viewer has tracks to follow.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sfu_core::protocol::PeerId;
use sfu_core::str0m::change::SdpAnswer;
use sfu_core::viewers::Follow;
use sfu_core::{Core, CoreConfig, Permissions};

use crate::offers;

/// The member already in the room, publishing.
const PUBLISHER: PeerId = 1;
/// The member the input's offer makes.
const NEWCOMER: PeerId = 2;
/// The publisher's name, which a WHEP viewer may follow.
const PUBLISHER_NAME: &str = "camera";

/// Applies the offer in `data` to a core with one publisher; checks what the core holds after.
pub fn run(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let Ok(offer) = std::str::from_utf8(body) else {
        return;
    };
    let now = Instant::now();
    let mut core = Core::new(CoreConfig {
        candidates: vec![SocketAddr::from(([192, 168, 1, 10], 3478))],
        ..CoreConfig::default()
    });
    core.join_whip(
        now,
        PUBLISHER,
        "r".into(),
        PUBLISHER_NAME.into(),
        offers::whip(),
        Permissions::ALL,
    )
    .expect("a real WHIP offer is accepted");
    let (room, name) = ("r".to_owned(), "newcomer".to_owned());
    let joined = match choice % 3 {
        0 => core.join_whip(now, NEWCOMER, room, name, offer, Permissions::ALL),
        1 => core.join_whep(
            now,
            NEWCOMER,
            room,
            name,
            Follow::Speaker,
            offer,
            Permissions::ALL,
        ),
        _ => {
            let follow = Follow::Peer(PUBLISHER_NAME.into());
            core.join_whep(now, NEWCOMER, room, name, follow, offer, Permissions::ALL)
        }
    };
    drain(&mut core);
    match &joined {
        Ok(answer) => {
            assert!(
                SdpAnswer::from_sdp_string(answer).is_ok(),
                "the answer to an accepted offer is SDP: {answer}"
            );
            assert!(
                core.footprint(NEWCOMER).member,
                "an accepted offer makes a member"
            );
        }
        Err(_) => assert_eq!(core.peer_count(), 1, "a refused offer leaves no member"),
    }
    let later = now + Duration::from_secs(1);
    core.handle_timeout(later);
    drain(&mut core);
    core.disconnect(later, NEWCOMER);
    drain(&mut core);
    let left = core.footprint(NEWCOMER);
    assert!(left.is_empty(), "the newcomer left but holds {left:?}");
    core.disconnect(later, PUBLISHER);
    drain(&mut core);
    assert_eq!((core.peer_count(), core.room_count()), (0, 0));
    assert_eq!(core.stats().timers, 0, "no member, no timer");
}

/// Takes every action out of the core, as the shell would.
fn drain(core: &mut Core) {
    while core.poll_output().is_some() {}
}
