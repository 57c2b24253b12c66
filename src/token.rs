//! `edge-sfu token`: mints an HS256 room token with the configured secret and makes the invite
//! link that carries it (`<base-url>/?room=kitchen&token=...`, the room page's own parameters).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args};
use sfu_core::Permissions;
use signaling::auth::{mint_hs256, Claims, MintError};

use crate::config::Settings;

/// The flags of `edge-sfu token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The room the token admits to.
    #[arg(long, value_name = "ROOM")]
    pub room: String,

    /// The display name its holder gets in the room (the page cannot change it).
    #[arg(long, value_name = "NAME")]
    pub name: String,

    /// The holder's identity (`sub`) [default: the name].
    #[arg(long, value_name = "ID")]
    pub sub: Option<String>,

    /// How long the token is valid: a number and s, m, h or d, combinable (90s, 45m, 24h, 7d,
    /// 1h30m).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_ttl)]
    pub ttl: Duration,

    /// May send audio and video.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub can_publish: bool,

    /// May receive the others' audio and video.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub can_subscribe: bool,

    /// May chat.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub can_chat: bool,

    /// May start and stop the room's recording from the page.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = ArgAction::Set)]
    pub can_record: bool,

    /// May also use the plain RTP HTTP API from another machine (`Authorization: Bearer TOKEN`).
    #[arg(long)]
    pub admin: bool,

    /// Start of the invite link [default: this server's own URL, from --listen].
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
}

/// A minted token and its invite link.
#[derive(Debug, Clone)]
pub struct Invite {
    /// `<base-url>/?room=ROOM&token=TOKEN`.
    pub link: String,
    /// The JWT.
    pub token: String,
    /// What it says.
    pub claims: Claims,
}

/// 16 random bytes in hex: a token's `jti`.
fn token_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no random bytes"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Mints the token `args` ask for, issued at `now`, with the secret of `settings`.
pub fn mint_invite(args: &TokenArgs, settings: &Settings, now: SystemTime) -> Result<Invite> {
    let Some(secret) = &settings.auth_secret else {
        bail!(
            "edge-sfu token signs with the HS256 secret: give --auth-secret-file FILE (or \
             --auth-secret, or auth_secret_file in --config); EdDSA tokens are minted by the \
             service that holds the private key"
        );
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let permissions = Permissions {
        publish: args.can_publish,
        subscribe: args.can_subscribe,
        chat: args.can_chat,
        record: args.can_record,
    };
    let claims = Claims {
        // A random id, so that the token can be revoked (`POST /api/tokens/revoke`).
        jti: Some(token_id()?),
        ..Claims::for_member(
            &args.room,
            args.sub.as_deref().unwrap_or(&args.name),
            Some(&args.name),
            permissions,
            args.admin,
            now,
            args.ttl.as_secs(),
        )
        .ok_or(MintError::TtlTooLong)?
    };
    let token = mint_hs256(secret, &claims)?;
    let base = match &args.base_url {
        Some(url) => url.clone(),
        None => own_url(settings.listen, settings.http_transport()?.is_tls())?,
    };
    let link = format!(
        "{}/?room={}&token={}",
        base.trim_end_matches('/'),
        query_escape(&args.room),
        query_escape(&token)
    );
    Ok(Invite {
        link,
        token,
        claims,
    })
}

/// The server's own URL for `listen`, `https` when it serves TLS there. An invite is for other
/// devices: for an unspecified address (`--lan`) it names the first LAN address, as the server's
/// LAN list does, and loopback only when the machine has no other.
fn own_url(listen: SocketAddr, tls: bool) -> Result<String> {
    if listen.port() == 0 {
        bail!("--listen has port 0 (any free port): give --base-url for the invite link");
    }
    let scheme = crate::scheme(tls);
    if let Some(lan) = crate::lan::page_urls(scheme, listen).into_iter().next() {
        return Ok(lan.trim_end_matches('/').to_owned());
    }
    let shown = if listen.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), listen.port())
    } else {
        listen
    };
    Ok(format!("{scheme}://{shown}"))
}

/// Percent-encodes a query value: everything but RFC 3986's unreserved characters.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses a lifetime: one or more `<number><unit>` with unit `s`, `m`, `h` or `d` (`90s`, `24h`,
/// `1h30m`). Zero is refused: such a token would be expired when minted.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("{text:?}: unknown unit {c:?} (use s, m, h or d)")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?}: a number must come before {c:?}"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| format!("{text:?} is too long"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "{text:?}: give a unit (s, m, h or d) after {digits}"
        ));
    }
    if total == 0 {
        return Err("the lifetime must be above zero".into());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse_with_units() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("45m"), Ok(Duration::from_secs(2700)));
        assert_eq!(parse_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_ttl("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in [
            "",
            "24",
            "h",
            "1x",
            "-1h",
            "0s",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_token_gets_its_own_id() {
        let (a, b) = (token_id().unwrap(), token_id().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("kitchen"), "kitchen");
        assert_eq!(query_escape("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(query_escape("eyJ.a-b_c"), "eyJ.a-b_c");
    }

    #[test]
    fn the_default_base_url_is_the_servers_own() {
        let lan = crate::lan::page_urls("http", "0.0.0.0:8080".parse().unwrap());
        let expected = lan
            .first()
            .map_or("http://127.0.0.1:8080", |u| u.trim_end_matches('/'));
        assert_eq!(
            own_url("0.0.0.0:8080".parse().unwrap(), false).unwrap(),
            expected
        );
        assert_eq!(
            own_url("192.168.1.5:9000".parse().unwrap(), true).unwrap(),
            "https://192.168.1.5:9000"
        );
        assert!(own_url("127.0.0.1:0".parse().unwrap(), false).is_err());
    }
}
