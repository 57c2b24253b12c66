//! Real WHIP and WHEP offers: one audio and one video m-line from a str0m peer, sending (a WHIP
//! publisher's) or receiving (a WHEP viewer's). Made once per process: a peer's certificate
//! costs more than the rest of an execution.

use std::sync::OnceLock;
use std::time::Instant;

use sfu_core::str0m::media::{Direction, MediaKind};
use sfu_core::str0m::{Candidate, RtcConfig};

/// A WHIP publisher's offer: audio and video, send-only.
pub fn whip() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| offer(Direction::SendOnly))
}

/// A WHEP viewer's offer: audio and video, receive-only.
pub fn whep() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| offer(Direction::RecvOnly))
}

/// An offer of one audio and one video m-line in `direction`, with one host candidate.
fn offer(direction: Direction) -> String {
    let mut rtc = RtcConfig::new().build(Instant::now());
    let host = Candidate::host(([192, 168, 1, 20], 50_000).into(), "udp")
        .expect("a host candidate of a fixed address");
    rtc.add_local_candidate(host);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, direction, None, None, None);
    api.add_media(MediaKind::Video, direction, None, None, None);
    let (offer, _) = api.apply().expect("two m-lines make an offer");
    offer.to_sdp_string()
}
