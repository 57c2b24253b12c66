//! `room_token`: a room token (a JWT from the `token` field of a join, or an API bearer) through
//! verification with an HS256 secret; the seeds are valid tokens, which the fuzzer mutates.

use signaling::auth::{Authenticator, Grant, Secret};

/// The secret the seed tokens are signed with (see [`crate::seeds`]).
pub const SECRET: &[u8] = b"fuzzing-secret-fuzzing-secret-32";
/// The clock the tokens are checked at, seconds since the epoch (the seeds are valid then).
pub const NOW: u64 = 1_800_000_000;

/// Verifies `data` as a token, then (when it verifies) admits it to its own room.
pub fn run(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let secret = Secret::new(SECRET).expect("a valid secret");
    let auth = Authenticator::new(Some(&secret), None).expect("a key");
    if let Ok(Grant {
        room: Some(room), ..
    }) = auth.verify(token, NOW)
    {
        let admitted = auth.admit_join(&room, Some(token), NOW);
        assert!(admitted.is_ok(), "a valid token admits to its own room");
    }
}
