//! Join attempts per client address: a token bucket per address, in bounded memory.
//!
//! Every `join` costs the server real work (a token check, and for an admitted one a WebRTC
//! session with its own DTLS certificate), and refused joins are how tokens are guessed, so both
//! count. IPv6 clients are keyed by their /64 prefix: one host usually holds a whole /64 and
//! could otherwise get a fresh bucket per address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Instant;

/// Most client addresses tracked at once (about 40 bytes each). Past it, buckets that refilled
/// are forgotten first (losing one loses nothing: a new bucket starts full), then the longest
/// idle, down to three quarters, so the sweep's cost is shared by many joins.
pub const MAX_TRACKED_CLIENTS: usize = 16_384;

/// How many joins one address may attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JoinLimit {
    /// Attempts allowed at once; 0 turns the limit off.
    pub burst: u32,
    /// Attempts regained per second.
    pub per_second: f64,
}

impl Default for JoinLimit {
    /// A burst of 10 (a family opening a few tabs, a page that retries), then 1 per second.
    fn default() -> Self {
        JoinLimit {
            burst: 10,
            per_second: 1.0,
        }
    }
}

/// Whom a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6Prefix(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4),
                None => ClientKey::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The per-address join buckets of one server.
#[derive(Debug)]
pub struct JoinLimiter {
    limit: JoinLimit,
    buckets: Mutex<HashMap<ClientKey, Bucket>>,
}

impl JoinLimiter {
    /// Buckets for `limit`.
    pub fn new(limit: JoinLimit) -> Self {
        JoinLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limit in force.
    pub fn limit(&self) -> JoinLimit {
        self.limit
    }

    /// Takes one join attempt of `ip` at `now`; false when its bucket is empty.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        if self.limit.burst == 0 {
            return true;
        }
        let burst = f64::from(self.limit.burst);
        let key = ClientKey::from(ip);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_CLIENTS && !buckets.contains_key(&key) {
            self.shrink(&mut buckets, now);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.limit.per_second).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Number of addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Forgets refilled buckets, then the longest idle ones, down to three quarters of the cap.
    fn shrink(&self, buckets: &mut HashMap<ClientKey, Bucket>, now: Instant) {
        let burst = f64::from(self.limit.burst);
        let rate = self.limit.per_second;
        buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
        let target = MAX_TRACKED_CLIENTS * 3 / 4;
        if buckets.len() <= target {
            return;
        }
        let mut lasts: Vec<Instant> = buckets.values().map(|b| b.last).collect();
        let cut = lasts.len() - target;
        let (_, cutoff, _) = lasts.select_nth_unstable(cut);
        let cutoff = *cutoff;
        buckets.retain(|_, b| b.last >= cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;
    use std::time::Duration;

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn a_burst_then_one_per_second_per_address() {
        let l = JoinLimiter::new(JoinLimit::default());
        let t0 = Instant::now();
        let a = v4(0x0a00_0001);
        assert_eq!((0..15).filter(|_| l.allow(a, t0)).count(), 10);
        assert!(
            l.allow(v4(0x0a00_0002), t0),
            "another address has its own bucket"
        );
        assert!(!l.allow(a, t0 + Duration::from_millis(500)));
        assert!(l.allow(a, t0 + Duration::from_millis(1500)));
        assert!(!l.allow(a, t0 + Duration::from_millis(1600)));
    }

    #[test]
    fn ipv6_hosts_share_their_slash_64_and_mapped_v4_is_v4() {
        let l = JoinLimiter::new(JoinLimit {
            burst: 2,
            per_second: 1.0,
        });
        let t0 = Instant::now();
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(l.allow(IpAddr::V6(a), t0));
        assert!(l.allow(IpAddr::V6(b), t0));
        assert!(!l.allow(IpAddr::V6(a), t0), "same /64, same bucket");
        let other: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.allow(IpAddr::V6(other), t0));
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert!(l.allow(IpAddr::V4(v4), t0));
        assert!(l.allow(IpAddr::V6(v4.to_ipv6_mapped()), t0));
        assert!(!l.allow(IpAddr::V4(v4), t0));
    }

    #[test]
    fn burst_zero_turns_the_limit_off() {
        let l = JoinLimiter::new(JoinLimit {
            burst: 0,
            per_second: 1.0,
        });
        let t0 = Instant::now();
        assert!((0..1000).all(|_| l.allow(v4(1), t0)));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn memory_stays_bounded_and_a_flood_does_not_reset_a_busy_address() {
        let l = JoinLimiter::new(JoinLimit::default());
        let t0 = Instant::now();
        let busy = v4(7);
        assert_eq!((0..20).filter(|_| l.allow(busy, t0)).count(), 10);
        // A flood of other addresses, one attempt each, within a few milliseconds, while the busy
        // address keeps trying.
        for i in 0..(3 * MAX_TRACKED_CLIENTS as u32) {
            let t = t0 + Duration::from_nanos(u64::from(i) * 100);
            l.allow(v4(0x0b00_0000 + i), t);
            assert!(l.tracked() <= MAX_TRACKED_CLIENTS);
            if i % 1000 == 0 {
                assert!(
                    !l.allow(busy, t),
                    "the busy address got a fresh bucket at {i}"
                );
            }
        }
    }
}
