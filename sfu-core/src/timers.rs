//! Deadlines of many owners (each peer's session timer and liveness check), the earliest first:
//! setting, clearing and finding the next one cost O(log n), so a worker with many peers never
//! scans them all to know when to wake.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Instant;

/// One deadline per key.
#[derive(Debug)]
pub struct Deadlines<K> {
    by_time: BTreeSet<(Instant, K)>,
    by_key: HashMap<K, Instant>,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            by_time: BTreeSet::new(),
            by_key: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Copy> Deadlines<K> {
    /// Sets `key`'s deadline to `at`, replacing the one it had.
    pub fn set(&mut self, key: K, at: Instant) {
        match self.by_key.insert(key, at) {
            Some(old) if old == at => return,
            Some(old) => {
                self.by_time.remove(&(old, key));
            }
            None => {}
        }
        self.by_time.insert((at, key));
    }

    /// Removes `key`'s deadline.
    pub fn clear(&mut self, key: K) {
        if let Some(old) = self.by_key.remove(&key) {
            self.by_time.remove(&(old, key));
        }
    }

    /// Whether `key` has a deadline.
    pub fn is_set(&self, key: &K) -> bool {
        self.by_key.contains_key(key)
    }

    /// How many keys have a deadline.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns a key whose deadline is at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let &(at, key) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.remove(&(at, key));
        self.by_key.remove(&key);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_comes_first_and_replaced_deadlines_are_gone() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut d = Deadlines::default();
        assert_eq!(d.next(), None);
        d.set(1, at(30));
        d.set(2, at(10));
        d.set(3, at(20));
        d.set(2, at(40));
        d.set(3, at(20));
        assert_eq!(d.next(), Some(at(20)));
        assert_eq!(d.len(), 3);
        d.clear(3);
        assert_eq!(d.pop_due(at(25)), None);
        assert_eq!(d.pop_due(at(35)), Some(1));
        assert_eq!(d.pop_due(at(35)), None);
        assert_eq!(d.pop_due(at(40)), Some(2));
        assert_eq!(d.next(), None);
        assert_eq!(d.len(), 0);
    }
}
