//! Joins across all client addresses together: one token bucket for the whole server.
//!
//! The per-address limit ([`crate::join_limit`]) stops one host; a flood from many addresses
//! passes it. Each admitted join costs a WebRTC session (its DTLS certificate and handshake), so
//! the server as a whole takes at most a burst, then a steady rate, and refuses the rest with
//! `server_busy` before any worker hears of them.

use std::sync::Mutex;
use std::time::Instant;

use crate::join_limit::JoinLimit;

/// The default server-wide join limit: a burst of 100 (a class joining at once), then 50 per
/// second; far above what one edge box's rooms take in normal use.
pub const DEFAULT_SERVER_JOIN_LIMIT: JoinLimit = JoinLimit {
    burst: 100,
    per_second: 50.0,
};

/// The server-wide join bucket.
#[derive(Debug)]
pub struct ServerJoins {
    limit: JoinLimit,
    /// Tokens left and when they were counted.
    bucket: Mutex<(f64, Instant)>,
}

impl ServerJoins {
    /// A full bucket for `limit` at `now`.
    pub fn new(limit: JoinLimit, now: Instant) -> Self {
        ServerJoins {
            limit,
            bucket: Mutex::new((f64::from(limit.burst), now)),
        }
    }

    /// Takes a token for one join at `now`; false when the server takes no more joins now. A
    /// burst of 0 turns the limit off.
    pub fn allow(&self, now: Instant) -> bool {
        if self.limit.burst == 0 {
            return true;
        }
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *bucket;
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *last = (*last).max(now);
        *tokens = (*tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate_whoever_asks() {
        let t0 = Instant::now();
        let joins = ServerJoins::new(
            JoinLimit {
                burst: 5,
                per_second: 10.0,
            },
            t0,
        );
        assert_eq!((0..20).filter(|_| joins.allow(t0)).count(), 5);
        let later = t0 + Duration::from_millis(300);
        assert_eq!((0..20).filter(|_| joins.allow(later)).count(), 3);
    }

    #[test]
    fn a_burst_of_zero_turns_it_off() {
        let t0 = Instant::now();
        let joins = ServerJoins::new(
            JoinLimit {
                burst: 0,
                per_second: 1.0,
            },
            t0,
        );
        assert!((0..1000).all(|_| joins.allow(t0)));
    }
}
