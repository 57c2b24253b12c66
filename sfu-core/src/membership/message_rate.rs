//! A token bucket over simulated time: how many units (messages, bytes) a member may send now.

use std::time::Instant;

/// Refills at `per_second` up to `burst`; each accepted send takes its cost out.
#[derive(Debug, Clone)]
pub struct MessageRate {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Option<Instant>,
}

impl MessageRate {
    /// A full bucket.
    pub fn new(per_second: u32, burst: u32) -> Self {
        MessageRate {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            refilled_at: None,
        }
    }

    /// Whether `cost` units fit at `now`; if so they are taken.
    pub fn take(&mut self, now: Instant, cost: usize) -> bool {
        if let Some(then) = self.refilled_at {
            let elapsed = now.saturating_duration_since(then).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        }
        self.refilled_at = Some(now);
        let cost = cost as f64;
        if cost > self.tokens {
            return false;
        }
        self.tokens -= cost;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut rate = MessageRate::new(10, 20);
        assert!((0..20).all(|_| rate.take(start, 1)));
        assert!(!rate.take(start, 1), "past the burst");
        let later = start + Duration::from_millis(500);
        assert!((0..5).all(|_| rate.take(later, 1)), "half a second: 5 more");
        assert!(!rate.take(later, 1));
        let much_later = later + Duration::from_secs(60);
        assert!(rate.take(much_later, 20), "refilled up to the burst");
        assert!(!rate.take(much_later, 1), "never above it");
    }
}
