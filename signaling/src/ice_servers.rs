//! The ICE servers (STUN/TURN) each participant is handed in its `joined` message: fixed entries
//! from the configuration, and TURN credentials minted per participant from a shared secret (the
//! "TURN REST API" scheme coturn implements as `use-auth-secret`).
//!
//! A minted credential is `username = "<expiry unix seconds>:<peer id>"` and
//! `credential = base64(HMAC-SHA1(secret, username))`; the TURN server recomputes the HMAC with the
//! same secret and refuses the allocation after the expiry, so nothing has to be stored anywhere.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use sfu_core::protocol::{IceServer, PeerId};

/// How long minted TURN credentials stay valid when the configuration says nothing: long enough
/// for a day-long call, since a TURN server also checks the expiry on refreshes.
pub const DEFAULT_TURN_TTL: Duration = Duration::from_secs(24 * 3600);

/// TURN servers that share a secret with the SFU.
#[derive(Debug, Clone)]
pub struct TurnRest {
    /// `turn:`/`turns:` URLs of the servers (with `?transport=` where wanted).
    pub urls: Vec<String>,
    /// The shared secret (coturn's `static-auth-secret`).
    pub secret: String,
    /// Validity of each minted credential.
    pub ttl: Duration,
}

/// Every ICE server the SFU hands out.
#[derive(Debug, Clone, Default)]
pub struct IceServers {
    /// Handed to everyone as they are.
    pub fixed: Vec<IceServer>,
    /// Handed out with per-participant credentials.
    pub turn: Option<TurnRest>,
}

impl IceServers {
    /// Whether there is nothing to hand out.
    pub fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.turn.is_none()
    }

    /// The list for participant `peer`, with TURN credentials valid from `now` for the TTL.
    pub fn for_peer(&self, peer: PeerId, now: SystemTime) -> Vec<IceServer> {
        let mut servers = self.fixed.clone();
        if let Some(turn) = &self.turn {
            let expiry = now
                .checked_add(turn.ttl)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let username = format!("{expiry}:{peer}");
            servers.push(IceServer {
                urls: turn.urls.clone(),
                credential: Some(turn_credential(&turn.secret, &username)),
                username: Some(username),
            });
        }
        servers
    }
}

/// The TURN REST API password for `username`: base64 of HMAC-SHA1 keyed with the shared secret.
pub fn turn_credential(secret: &str, username: &str) -> String {
    // SHA-1 is what the scheme (and every TURN server implementing it) specifies.
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_is_base64_hmac_sha1_of_the_username() {
        // Computed independently: printf '1700000000:42' | openssl dgst -sha1 -hmac s3cret -binary | base64
        assert_eq!(
            turn_credential("s3cret", "1700000000:42"),
            "pkGfLzidB0U1T2lLkxNy/vgk7ZE="
        );
    }

    #[test]
    fn minted_servers_expire_after_the_ttl_and_name_the_peer() {
        let servers = IceServers {
            fixed: vec![IceServer {
                urls: vec!["stun:stun.example.org".into()],
                username: None,
                credential: None,
            }],
            turn: Some(TurnRest {
                urls: vec!["turn:10.0.0.1:3478?transport=tcp".into()],
                secret: "s3cret".into(),
                ttl: Duration::from_secs(600),
            }),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let list = servers.for_peer(7, now);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].urls, ["stun:stun.example.org"]);
        assert_eq!(list[1].username.as_deref(), Some("1700000600:7"));
        assert_eq!(
            list[1].credential.as_deref(),
            Some(turn_credential("s3cret", "1700000600:7").as_str())
        );
    }
}
