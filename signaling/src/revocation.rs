//! Revoked room tokens, by their `jti`: a join with one is refused, a member holding one is
//! removed (each connection watches [`Revocations::subscribe`] and checks its own token).
//!
//! The list is bounded: an entry lasts until its token would be refused anyway (its `exp` plus
//! the clock leeway), expired entries are purged when the list is full, and a revocation that
//! still finds it full is refused ([`RevokeError::Full`]) rather than growing it.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::auth::CLOCK_LEEWAY_SECS;

/// Most revoked tokens remembered at once.
pub const MAX_REVOKED: usize = 65_536;
/// Longest `jti` accepted, in bytes.
pub const MAX_TOKEN_ID_BYTES: usize = 256;
/// How long a revocation that names no `exp` is kept: past the lifetime of any token this server
/// is expected to see (`edge-sfu token` defaults to far less). Name the token's `exp` for longer.
pub const DEFAULT_REVOCATION_SECS: u64 = 7 * 24 * 3600;

/// Why a revocation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    /// The `jti` is empty or longer than [`MAX_TOKEN_ID_BYTES`].
    #[error("jti must be 1 to {MAX_TOKEN_ID_BYTES} bytes")]
    BadId,
    /// [`MAX_REVOKED`] tokens that have not expired are revoked already.
    #[error("the revocation list is full ({MAX_REVOKED} unexpired tokens)")]
    Full,
}

/// The server-wide revocation list.
#[derive(Debug)]
pub struct Revocations {
    /// `jti` → the second (since the epoch) after which the token is refused anyway.
    revoked: Mutex<HashMap<String, u64>>,
    /// Bumped on every revocation.
    generation: watch::Sender<u64>,
}

impl Default for Revocations {
    fn default() -> Self {
        Revocations {
            revoked: Mutex::new(HashMap::new()),
            generation: watch::Sender::new(0),
        }
    }
}

impl Revocations {
    /// Revokes token `jti` at `now` (seconds since the epoch); `expires_at` is its `exp` when the
    /// caller knows it. Revoking a revoked token again keeps the later end.
    pub fn revoke(&self, jti: &str, expires_at: Option<u64>, now: u64) -> Result<(), RevokeError> {
        if jti.is_empty() || jti.len() > MAX_TOKEN_ID_BYTES {
            return Err(RevokeError::BadId);
        }
        let until = expires_at
            .unwrap_or(now.saturating_add(DEFAULT_REVOCATION_SECS))
            .saturating_add(CLOCK_LEEWAY_SECS);
        {
            let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
            if !revoked.contains_key(jti) && revoked.len() >= MAX_REVOKED {
                revoked.retain(|_, end| *end >= now);
                if revoked.len() >= MAX_REVOKED {
                    return Err(RevokeError::Full);
                }
            }
            let end = revoked.entry(jti.to_owned()).or_insert(until);
            *end = (*end).max(until);
        }
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
        Ok(())
    }

    /// Whether token `jti` is revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(jti)
    }

    /// Tokens remembered now (expired ones included until the next purge).
    pub fn len(&self) -> usize {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no token is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A receiver that sees a change on every revocation.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_revoked_token_is_known_and_watchers_see_it() {
        let list = Revocations::default();
        let mut watcher = list.subscribe();
        assert!(!list.is_revoked("a"));
        list.revoke("a", Some(NOW + 60), NOW).unwrap();
        assert!(list.is_revoked("a"));
        assert!(!list.is_revoked("b"));
        assert!(watcher.has_changed().unwrap());
        watcher.mark_unchanged();
        assert_eq!(list.revoke("", None, NOW), Err(RevokeError::BadId));
        let long = "x".repeat(MAX_TOKEN_ID_BYTES + 1);
        assert_eq!(list.revoke(&long, None, NOW), Err(RevokeError::BadId));
        assert!(!watcher.has_changed().unwrap());
    }

    #[test]
    fn the_list_is_bounded_and_expired_entries_make_room() {
        let list = Revocations::default();
        for i in 0..MAX_REVOKED {
            // Half of them expire 10 s from NOW.
            let exp = if i % 2 == 0 { NOW + 10 } else { NOW + 3600 };
            list.revoke(&i.to_string(), Some(exp), NOW).unwrap();
        }
        assert_eq!(
            list.revoke("one more", Some(NOW + 60), NOW),
            Err(RevokeError::Full)
        );
        // Revoking a known token again needs no room.
        list.revoke("1", Some(NOW + 7200), NOW).unwrap();
        let later = NOW + 10 + CLOCK_LEEWAY_SECS + 1;
        list.revoke("one more", Some(later + 60), later).unwrap();
        assert_eq!(list.len(), MAX_REVOKED / 2 + 1);
        assert!(!list.is_revoked("0"));
        assert!(list.is_revoked("1"));
    }
}
