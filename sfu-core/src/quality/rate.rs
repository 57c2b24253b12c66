//! A sliding-window bit rate meter fed with packet sizes and arrival times (never a clock of its
//! own), for layer bit rates, leg bit rates and the allocation that compares them with a
//! bandwidth estimate.

use std::time::{Duration, Instant};

/// Buckets in the window.
const BUCKETS: usize = 10;
/// Width of one bucket; the window is `BUCKETS` of them (one second).
const BUCKET: Duration = Duration::from_millis(BUCKET_MS);
const BUCKET_MS: u64 = 100;

/// The span a rate is measured over.
pub const RATE_WINDOW: Duration = Duration::from_millis(BUCKET_MS * BUCKETS as u64);

/// Bytes seen over the last second, in 100 ms buckets.
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    /// (bucket number, bytes) per slot; bucket numbers count 100 ms steps since `origin`, and a
    /// slot holds bucket `n` at index `n % BUCKETS`.
    buckets: [(u64, u64); BUCKETS],
    /// Time of bucket 0; set by the first sample.
    origin: Option<Instant>,
}

impl RateMeter {
    /// A meter that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `bytes` arriving at `now`.
    pub fn add(&mut self, now: Instant, bytes: usize) {
        let origin = *self.origin.get_or_insert(now);
        let n = bucket_of(origin, now);
        let slot = &mut self.buckets[(n % BUCKETS as u64) as usize];
        if slot.0 != n {
            *slot = (n, 0);
        }
        slot.1 += bytes as u64;
    }

    /// Bits per second over the window that ends at `now`.
    pub fn bps(&self, now: Instant) -> u64 {
        let Some(origin) = self.origin else {
            return 0;
        };
        let newest = bucket_of(origin, now);
        let oldest = newest.saturating_sub(BUCKETS as u64 - 1);
        let bytes: u64 = self
            .buckets
            .iter()
            .filter(|(n, _)| (oldest..=newest).contains(n))
            .map(|(_, b)| b)
            .sum();
        bytes * 8 * 1000 / (BUCKET.as_millis() as u64 * BUCKETS as u64)
    }
}

/// The bucket number of `now`.
fn bucket_of(origin: Instant, now: Instant) -> u64 {
    (now.saturating_duration_since(origin).as_millis() / BUCKET.as_millis()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_is_measured_and_decays_when_input_stops() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        assert_eq!(m.bps(t0), 0);
        // 1250 bytes every 10 ms = 1 Mbit/s.
        for i in 0..300 {
            m.add(t0 + Duration::from_millis(i * 10), 1250);
        }
        let now = t0 + Duration::from_millis(2995);
        let bps = m.bps(now);
        assert!((950_000..=1_050_000).contains(&bps), "{bps}");
        assert_eq!(m.bps(now + Duration::from_secs(2)), 0);
        assert_eq!(RateMeter::new().bps(now), 0);
    }
}
