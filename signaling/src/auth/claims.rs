//! The claims of a room token as they appear in its JSON payload, and what a verified token grants.
//!
//! ```json
//! {"room": "kitchen", "sub": "ana", "name": "Ana", "publish": true, "subscribe": true,
//!  "chat": true, "record": false, "admin": false, "exp": 1767225600, "nbf": 1767139200, "iat": 1767139200}
//! ```
//!
//! `sub` and `exp` are required; a missing permission takes its default: `publish`, `subscribe`
//! and `chat` default to true, `record` and `admin` to false. Times are integer seconds since the
//! Unix epoch. `jti`, when present, names the token for revocation (`POST /api/tokens/revoke`).
//! Other claims (`iss`, `aud`, ...) are ignored, so tokens minted by another service may carry them.

use serde::{Deserialize, Serialize};
use sfu_core::Permissions;

/// A token's payload. Every field is optional here so that a missing claim becomes a precise
/// refusal (or its default) instead of a generic parse error; `Claims::grant` decides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The one room the token admits to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The member's identity (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Display name; `sub` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// May send audio and video (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<bool>,
    /// May receive the others' tracks (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<bool>,
    /// May send chat lines (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<bool>,
    /// May start and stop the room's recording from the page (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<bool>,
    /// May use the plain RTP HTTP API from another machine (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    /// Expiry, seconds since the epoch (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Not valid before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The token's own id, by which it can be revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// What a verified token allows its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The room it admits to; `None` for a token that names none (an API-only admin token).
    pub room: Option<String>,
    /// The member's identity (`sub`).
    pub subject: String,
    /// The display name the member gets in the room (`name`, else `sub`); the join's own `name`
    /// is ignored, so nobody can pose as someone else.
    pub name: String,
    /// What it may do in the room.
    pub permissions: Permissions,
    /// Whether it may use the plain RTP HTTP API from another machine.
    pub admin: bool,
    /// When it expires, seconds since the epoch.
    pub expires_at: u64,
    /// The token's id (`jti`), by which it can be revoked.
    pub token_id: Option<String>,
}

impl Claims {
    /// The claims of a member's token: `room`, `sub` and `name`, every permission spelled out,
    /// issued at `now` and expiring `ttl_secs` later (`None` if that overflows).
    pub fn for_member(
        room: &str,
        subject: &str,
        name: Option<&str>,
        permissions: Permissions,
        admin: bool,
        now: u64,
        ttl_secs: u64,
    ) -> Option<Claims> {
        Some(Claims {
            room: Some(room.to_owned()),
            sub: Some(subject.to_owned()),
            name: name.map(str::to_owned),
            publish: Some(permissions.publish),
            subscribe: Some(permissions.subscribe),
            chat: Some(permissions.chat),
            record: Some(permissions.record),
            admin: Some(admin),
            exp: Some(now.checked_add(ttl_secs)?),
            nbf: None,
            iat: Some(now),
            jti: None,
        })
    }

    /// What the claims grant, with defaults filled in; fails when a required claim is missing.
    /// (Times are checked by the caller, which knows the clock.)
    pub(super) fn grant(self) -> Result<Grant, super::BadToken> {
        let expires_at = self.exp.ok_or(super::BadToken::MissingExp)?;
        let subject = self
            .sub
            .filter(|s| !s.trim().is_empty())
            .ok_or(super::BadToken::MissingSubject)?;
        let name = self
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| subject.clone());
        Ok(Grant {
            room: self.room,
            subject,
            name,
            permissions: Permissions {
                publish: self.publish.unwrap_or(true),
                subscribe: self.subscribe.unwrap_or(true),
                chat: self.chat.unwrap_or(true),
                record: self.record.unwrap_or(false),
            },
            admin: self.admin.unwrap_or(false),
            expires_at,
            token_id: self.jti,
        })
    }
}
