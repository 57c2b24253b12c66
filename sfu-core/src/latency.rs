//! A latency histogram with fixed buckets, kept as counts so that workers' histograms add up and
//! the shell can expose them (Prometheus `le` buckets) without the core knowing the format.

use std::time::Duration;

/// Upper bounds of the buckets, in seconds: from a quick local join (a tenth of a second) to a
/// join that waited for a TURN relay or a slow publisher (half a minute). Slower ones count only
/// in the total.
pub const LATENCY_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0];

/// How many observations fell at or below each of [`LATENCY_BUCKETS`] (not cumulative), their
/// count and their sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    /// Observations per bucket: `buckets[i]` counts those above bound `i - 1` and at most bound
    /// `i`.
    buckets: [u64; LATENCY_BUCKETS.len()],
    /// Every observation, the ones above the last bound included.
    count: u64,
    /// Their sum, in seconds.
    sum_seconds: f64,
}

impl LatencyHistogram {
    /// Counts one observation.
    pub fn observe(&mut self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }

    /// Adds another histogram's observations (another worker's).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum_seconds += other.sum_seconds;
    }

    /// Each bound with the observations at or below it (cumulative, as Prometheus buckets are).
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        LATENCY_BUCKETS
            .iter()
            .zip(self.buckets.iter())
            .scan(0, |total, (bound, n)| {
                *total += n;
                Some((*bound, *total))
            })
    }

    /// Every observation.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of every observation, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_slow_ones_count_only_in_the_total() {
        let mut h = LatencyHistogram::default();
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_millis(100));
        h.observe(Duration::from_millis(700));
        h.observe(Duration::from_secs(60));
        let mut other = LatencyHistogram::default();
        other.observe(Duration::from_millis(80));
        h.merge(&other);
        let buckets: Vec<(f64, u64)> = h.cumulative().collect();
        assert_eq!(buckets[0], (0.05, 1));
        assert_eq!(buckets[1], (0.1, 3));
        assert_eq!(buckets[4], (1.0, 4));
        assert_eq!(buckets.last(), Some(&(30.0, 4)));
        assert_eq!(h.count(), 5);
        assert!((h.sum_seconds() - 60.91).abs() < 1e-9);
    }
}
