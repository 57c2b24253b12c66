//! `tcp_framing`: a hostile ICE-TCP byte stream through the RFC 4571 framing rules, the way the
//! worker's reader applies them, and every accepted frame framed back to the same bytes.

use sfu_core::wire::{append_frame, FrameRules};

/// The receive buffer of a worker (`RECV_BUFFER_BYTES` in src/worker): the largest frame taken.
const MAX_FRAME: usize = 2048;

/// Reads `stream` frame by frame until it ends or breaks a rule.
pub fn run(stream: &[u8]) {
    let mut rules = FrameRules::new(MAX_FRAME);
    let mut rest = stream;
    let mut reframed = Vec::with_capacity(stream.len());
    while let [hi, lo, tail @ ..] = rest {
        let Ok(len) = rules.frame_len([*hi, *lo]) else {
            break;
        };
        assert!((1..=MAX_FRAME).contains(&len));
        let Some(frame) = tail.get(..len) else {
            break; // The stream ended inside a frame: the reader waits for the rest.
        };
        if rules.accept(frame).is_err() {
            break;
        }
        assert!(append_frame(&mut reframed, frame));
        rest = &tail[len..];
    }
    assert_eq!(
        reframed,
        stream[..stream.len() - rest.len()],
        "accepted frames reframe to the bytes they came from"
    );
}
