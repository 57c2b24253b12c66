//! A member's room token over the member's stay: when it is warned that the token runs out
//! (`tokenExpiring`), when it is removed (`error` `token_expired`), and which fresh token a
//! `refresh` may replace it with.
//!
//! A token runs out when the server would refuse it at a join: `exp` plus
//! [`CLOCK_LEEWAY_SECS`]. The warning comes [`EXPIRY_WARNING_SECS`] before that, or at once when
//! less is left at join. Times are whole seconds since the Unix epoch, given by the caller.

use crate::auth::{Grant, CLOCK_LEEWAY_SECS};

/// How long before its token runs out a member is warned: time for a page to fetch a fresh
/// token and send it.
pub const EXPIRY_WARNING_SECS: u64 = 60;

/// What a member's token calls for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenDue {
    /// Warn the member: it is removed in this many seconds.
    Warn {
        /// Seconds until removal.
        seconds_left: u64,
    },
    /// The token ran out: remove the member.
    Expired,
}

/// Why a `refresh` was refused (the member keeps its current token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The fresh token is for another room.
    #[error("the new token is for another room")]
    WrongRoom,
    /// The fresh token names another identity (`sub`).
    #[error("the new token is for someone else")]
    OtherSubject,
    /// The fresh token does not run out later than the current one.
    #[error("the new token does not expire later than the current one")]
    NotLater,
}

/// The token a member holds now.
#[derive(Debug, Clone)]
pub struct TokenLife {
    room: String,
    subject: String,
    token_id: Option<String>,
    /// The last second the token is accepted.
    valid_until: u64,
    /// Whether the warning for the current token went out.
    warned: bool,
}

impl TokenLife {
    /// The token `grant` came from, held by a member of `room`.
    pub fn new(room: &str, grant: &Grant) -> Self {
        TokenLife {
            room: room.to_owned(),
            subject: grant.subject.clone(),
            token_id: grant.token_id.clone(),
            valid_until: grant.expires_at.saturating_add(CLOCK_LEEWAY_SECS),
            warned: false,
        }
    }

    /// The token's `jti`, when it has one.
    pub fn token_id(&self) -> Option<&str> {
        self.token_id.as_deref()
    }

    /// The second at which [`TokenLife::due`] next has something to say.
    pub fn next_deadline(&self) -> u64 {
        if self.warned {
            self.valid_until.saturating_add(1)
        } else {
            self.valid_until.saturating_sub(EXPIRY_WARNING_SECS)
        }
    }

    /// What is due at `now`, if anything; a warning is given once per token.
    pub fn due(&mut self, now: u64) -> Option<TokenDue> {
        if now > self.valid_until {
            return Some(TokenDue::Expired);
        }
        if !self.warned && now >= self.next_deadline() {
            self.warned = true;
            return Some(TokenDue::Warn {
                seconds_left: self.valid_until - now,
            });
        }
        None
    }

    /// Replaces the token with the one `grant` came from (already verified at `now`); returns
    /// the seconds the member may now stay.
    pub fn refresh(&mut self, grant: &Grant, now: u64) -> Result<u64, RefreshError> {
        if grant.room.as_deref() != Some(self.room.as_str()) {
            return Err(RefreshError::WrongRoom);
        }
        if grant.subject != self.subject {
            return Err(RefreshError::OtherSubject);
        }
        let valid_until = grant.expires_at.saturating_add(CLOCK_LEEWAY_SECS);
        if valid_until <= self.valid_until {
            return Err(RefreshError::NotLater);
        }
        self.valid_until = valid_until;
        self.token_id = grant.token_id.clone();
        self.warned = false;
        Ok(valid_until.saturating_sub(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu_core::Permissions;

    const NOW: u64 = 1_800_000_000;

    fn grant(room: &str, subject: &str, exp: u64) -> Grant {
        Grant {
            room: Some(room.into()),
            subject: subject.into(),
            name: subject.into(),
            permissions: Permissions::ALL,
            admin: false,
            expires_at: exp,
            token_id: Some(format!("{subject}-{exp}")),
        }
    }

    #[test]
    fn warned_once_before_then_expired_after_the_leeway() {
        let exp = NOW + 600;
        let mut life = TokenLife::new("kitchen", &grant("kitchen", "ana", exp));
        let until = exp + CLOCK_LEEWAY_SECS;
        assert_eq!(life.next_deadline(), until - EXPIRY_WARNING_SECS);
        assert_eq!(life.due(until - EXPIRY_WARNING_SECS - 1), None);
        assert_eq!(
            life.due(until - EXPIRY_WARNING_SECS),
            Some(TokenDue::Warn {
                seconds_left: EXPIRY_WARNING_SECS
            })
        );
        assert_eq!(life.due(until - 1), None);
        assert_eq!(life.next_deadline(), until + 1);
        assert_eq!(life.due(until), None);
        assert_eq!(life.due(until + 1), Some(TokenDue::Expired));
    }

    #[test]
    fn a_short_token_is_warned_at_once() {
        let mut life = TokenLife::new("kitchen", &grant("kitchen", "ana", NOW + 5));
        assert_eq!(
            life.due(NOW),
            Some(TokenDue::Warn {
                seconds_left: 5 + CLOCK_LEEWAY_SECS
            })
        );
    }

    #[test]
    fn refresh_takes_a_later_token_of_the_same_member_only() {
        let mut life = TokenLife::new("kitchen", &grant("kitchen", "ana", NOW + 20));
        assert!(matches!(life.due(NOW), Some(TokenDue::Warn { .. })));
        assert_eq!(
            life.refresh(&grant("hall", "ana", NOW + 600), NOW),
            Err(RefreshError::WrongRoom)
        );
        assert_eq!(
            life.refresh(&grant("kitchen", "bob", NOW + 600), NOW),
            Err(RefreshError::OtherSubject)
        );
        assert_eq!(
            life.refresh(&grant("kitchen", "ana", NOW + 20), NOW),
            Err(RefreshError::NotLater)
        );
        assert_eq!(
            life.refresh(&grant("kitchen", "ana", NOW + 600), NOW),
            Ok(600 + CLOCK_LEEWAY_SECS)
        );
        assert_eq!(life.token_id(), Some("ana-1800000600"));
        // A fresh token gets its own warning.
        assert_eq!(life.due(NOW + 100), None);
        assert!(matches!(
            life.due(NOW + 600 + CLOCK_LEEWAY_SECS - EXPIRY_WARNING_SECS),
            Some(TokenDue::Warn { .. })
        ));
    }
}
