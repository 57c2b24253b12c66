//! `client_message`: a WebSocket text frame through serde_json into a [`ClientMessage`], and
//! what parses back out to JSON that parses to the same message.

use sfu_core::protocol::ClientMessage;

/// Parses `data` as a signaling message.
pub fn run(data: &[u8]) {
    let Ok(message) = serde_json::from_slice::<ClientMessage>(data) else {
        return;
    };
    let json = serde_json::to_string(&message).expect("a parsed message serializes");
    let again: ClientMessage = serde_json::from_str(&json).expect("its JSON parses");
    assert_eq!(again, message);
}
