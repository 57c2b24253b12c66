//! Per-connection limits on the WebSocket: message size and a token-bucket message rate.

use std::time::{Duration, Instant};

/// Largest message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest frame the WebSocket layer reads at all; between this and [`MAX_MESSAGE_BYTES`] a
/// message is refused with `too_large`, above it the connection closes.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// The WebSocket's read buffer (tungstenite's default is 128 KiB, kept for the connection's
/// life: the largest part of a participant's memory). Signaling messages are small; a larger
/// one is read in several chunks.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Sustained messages per second.
pub const RATE_PER_SECOND: f64 = 50.0;
/// Burst size.
pub const RATE_BURST: f64 = 100.0;
/// Refused messages after which the connection is closed.
pub const MAX_REFUSALS: u32 = 200;
/// A connection that sends nothing (not even `ping`) for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A token bucket: `RATE_BURST` tokens, refilled at `RATE_PER_SECOND`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A full bucket at `now`.
    pub fn new(now: Instant) -> Self {
        RateLimiter {
            tokens: RATE_BURST,
            last: now,
        }
    }

    /// Takes a token for one message at `now`; false when the bucket is empty.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * RATE_PER_SECOND).min(RATE_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(t0);
        let allowed = (0..150).filter(|_| r.allow(t0)).count();
        assert_eq!(allowed, RATE_BURST as usize);
        assert!(!r.allow(t0));
        let later = t0 + Duration::from_millis(100);
        let refilled = (0..20).filter(|_| r.allow(later)).count();
        assert_eq!(refilled, 5, "50/s for 100 ms");
    }
}
