//! Room tokens: who may join which room, under which name, and do what there.
//!
//! A room token is a JWT signed either with HS256 and the secret shared with edge-sfu
//! (`--auth-secret`, minted by `edge-sfu token`) or with EdDSA (Ed25519) by another service whose
//! public key edge-sfu is given (`--auth-public-key`). The algorithm a token names must be one the
//! server has a key for, and each algorithm is checked only with its own key: an HS256 token is
//! never checked against the public key, and `alg: none` is no algorithm at all (refused as
//! `bad_token`). Claims and their defaults: [`claims`].
//!
//! Time: `exp` is required; `nbf` and `iat` are optional. Each is allowed
//! [`CLOCK_LEEWAY_SECS`] of clock difference between the minting machine and this one. A token is
//! checked when its member joins; the member is warned before it runs out and removed when it
//! does, unless it sent a fresh one (`crate::token_life`).
//!
//! The signaling server asks [`Authenticator::admit_join`] before the room's worker hears of a
//! join, so a refused join leaves no trace in the room.

pub mod claims;
mod error;
mod mint;
mod secret;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};

pub use claims::{Claims, Grant};
pub use error::{AuthError, BadToken, KeyError, MintError};
pub use mint::mint_hs256;
pub use secret::{Secret, RECOMMENDED_SECRET_BYTES};

/// Largest token accepted, in bytes. Real tokens are a few hundred bytes; the cap bounds the work
/// a hostile join can cause (base64 and JSON decoding, a signature check).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Clock difference tolerated on `exp`, `nbf` and `iat`, in seconds: edge boxes without a good
/// time source drift, and a token minted a moment ago on a machine a few seconds ahead should work.
pub const CLOCK_LEEWAY_SECS: u64 = 30;

/// The keys room tokens are checked with. Its `Debug` form names which keys exist, never their
/// bytes.
#[derive(Clone)]
pub struct Authenticator {
    hs256: Option<DecodingKey>,
    eddsa: Option<DecodingKey>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.hs256.is_some())
            .field("eddsa", &self.eddsa.is_some())
            .finish()
    }
}

impl Authenticator {
    /// Checks HS256 tokens with `secret` and EdDSA tokens with the Ed25519 public key in
    /// `public_key_pem` (SPKI PEM, `-----BEGIN PUBLIC KEY-----`); at least one must be given.
    pub fn new(secret: Option<&Secret>, public_key_pem: Option<&[u8]>) -> Result<Self, KeyError> {
        if secret.is_none() && public_key_pem.is_none() {
            return Err(KeyError::NoKey);
        }
        let eddsa = public_key_pem
            .map(|pem| {
                DecodingKey::from_ed_pem(pem).map_err(|e| KeyError::PublicKey(e.to_string()))
            })
            .transpose()?;
        Ok(Authenticator {
            hs256: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            eddsa,
        })
    }

    /// Verifies a token at `now` (seconds since the epoch) and returns what it grants.
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(BadToken::TooLong.into());
        }
        let header = decode_header(token).map_err(|_| BadToken::Malformed)?;
        // The token names its algorithm, but the server decides which key (if any) goes with it.
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::EdDSA => self.eddsa.as_ref(),
            _ => None,
        }
        .ok_or_else(|| BadToken::Algorithm(format!("{:?}", header.alg)))?;
        let mut validation = Validation::new(header.alg);
        // Times are checked below against the caller's clock, with our leeway and our error codes.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = decode::<Claims>(token, key, &validation)
            .map_err(|e| bad_token(e.into_kind()))?
            .claims;
        let (nbf, iat) = (claims.nbf, claims.iat);
        let grant = claims.grant()?;
        if now > grant.expires_at.saturating_add(CLOCK_LEEWAY_SECS) {
            return Err(AuthError::Expired);
        }
        let not_before = nbf.into_iter().chain(iat).max();
        if not_before.is_some_and(|t| t > now.saturating_add(CLOCK_LEEWAY_SECS)) {
            return Err(AuthError::NotYetValid);
        }
        Ok(grant)
    }

    /// Admits a join to `room` with `token` at `now`: the token must be present, valid and for
    /// this room.
    pub fn admit_join(
        &self,
        room: &str,
        token: Option<&str>,
        now: u64,
    ) -> Result<Grant, AuthError> {
        let grant = self.verify(token.ok_or(AuthError::Required)?, now)?;
        if grant.room.as_deref() != Some(room) {
            return Err(AuthError::WrongRoom);
        }
        Ok(grant)
    }
}

/// Maps the JWT library's refusals (after the algorithm was accepted) to ours.
fn bad_token(kind: ErrorKind) -> BadToken {
    match kind {
        ErrorKind::InvalidSignature => BadToken::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            BadToken::Algorithm("of this token".into())
        }
        ErrorKind::Json(e) => BadToken::Claims(e.to_string()),
        ErrorKind::InvalidClaimFormat(claim) => BadToken::Claims(format!("bad {claim}")),
        _ => BadToken::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use sfu_core::Permissions;

    const SECRET: &str = "a test secret of at least thirty-two bytes";
    /// A test-only Ed25519 key pair (made with `openssl genpkey -algorithm ed25519`).
    const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIMgyNjYQqteqKzi9QeqtOj1zmyR3w8KfNv0AzCIbkxCk\n-----END PRIVATE KEY-----\n";
    const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAtXr2EQ6a42JNDPxHSuvtXKj4MRXPfnS8ZjvuBLhgAqA=\n-----END PUBLIC KEY-----\n";
    /// The public key of another pair.
    const OTHER_ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAehq/OeSuJX6AcvUSJ6VpSKkXUrdDSLQETEguQxSjCQ0=\n-----END PUBLIC KEY-----\n";
    const NOW: u64 = 1_800_000_000;

    fn secret() -> Secret {
        Secret::new(SECRET).unwrap()
    }

    fn hs_only() -> Authenticator {
        Authenticator::new(Some(&secret()), None).unwrap()
    }

    fn ed_only() -> Authenticator {
        Authenticator::new(None, Some(ED_PUBLIC.as_bytes())).unwrap()
    }

    fn claims() -> Claims {
        Claims::for_member(
            "kitchen",
            "ana",
            Some("Ana"),
            Permissions::ALL,
            false,
            NOW,
            3600,
        )
        .unwrap()
    }

    fn hs(claims: &Claims) -> String {
        mint_hs256(&secret(), claims).unwrap()
    }

    fn ed(claims: &impl serde::Serialize) -> String {
        let key = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
        encode(&Header::new(Algorithm::EdDSA), claims, &key).unwrap()
    }

    /// base64url without padding (RFC 4648 §5), by hand: hostile tokens are built byte by byte.
    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    /// A token with this header and payload JSON and this signature part.
    fn raw(header: &str, payload: &str, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            b64(header.as_bytes()),
            b64(payload.as_bytes())
        )
    }

    #[test]
    fn a_valid_hs256_token_grants_its_claims() {
        let grant = hs_only().verify(&hs(&claims()), NOW).unwrap();
        assert_eq!(grant.room.as_deref(), Some("kitchen"));
        assert_eq!(
            (grant.subject.as_str(), grant.name.as_str()),
            ("ana", "Ana")
        );
        assert_eq!(grant.permissions, Permissions::ALL);
        assert!(!grant.admin);
        assert_eq!(grant.expires_at, NOW + 3600);
    }

    #[test]
    fn a_valid_eddsa_token_grants_its_claims() {
        let grant = ed_only().verify(&ed(&claims()), NOW).unwrap();
        assert_eq!(grant.name, "Ana");
        let both = Authenticator::new(Some(&secret()), Some(ED_PUBLIC.as_bytes())).unwrap();
        assert!(both.verify(&ed(&claims()), NOW).is_ok());
        assert!(both.verify(&hs(&claims()), NOW).is_ok());
    }

    #[test]
    fn missing_permissions_take_their_defaults_and_name_falls_back_to_sub() {
        let c = Claims {
            room: Some("kitchen".into()),
            sub: Some("ben".into()),
            exp: Some(NOW + 60),
            ..Claims::default()
        };
        let grant = hs_only().verify(&hs(&c), NOW).unwrap();
        assert_eq!(grant.name, "ben");
        assert_eq!(
            grant.permissions,
            Permissions::OPEN_ROOM,
            "everything but record"
        );
        assert!(!grant.admin);
        let c = Claims {
            publish: Some(false),
            chat: Some(false),
            admin: Some(true),
            ..c
        };
        let grant = hs_only().verify(&hs(&c), NOW).unwrap();
        assert_eq!(
            grant.permissions,
            Permissions {
                publish: false,
                subscribe: true,
                chat: false,
                record: false
            }
        );
        assert!(grant.admin);
    }

    #[test]
    fn expiry_is_enforced_with_the_leeway() {
        let token = hs(&claims());
        let exp = NOW + 3600;
        assert!(hs_only().verify(&token, exp + CLOCK_LEEWAY_SECS).is_ok());
        assert_eq!(
            hs_only().verify(&token, exp + CLOCK_LEEWAY_SECS + 1),
            Err(AuthError::Expired)
        );
        assert_eq!(
            AuthError::Expired.code(),
            sfu_core::protocol::ErrorCode::TokenExpired
        );
    }

    #[test]
    fn not_before_and_issued_at_in_the_future_are_not_yet_valid() {
        let nbf = Claims {
            nbf: Some(NOW + 600),
            ..claims()
        };
        assert_eq!(
            hs_only().verify(&hs(&nbf), NOW),
            Err(AuthError::NotYetValid)
        );
        assert!(hs_only()
            .verify(&hs(&nbf), NOW + 600 - CLOCK_LEEWAY_SECS)
            .is_ok());
        let iat = Claims {
            iat: Some(NOW + 600),
            ..claims()
        };
        assert_eq!(
            hs_only().verify(&hs(&iat), NOW),
            Err(AuthError::NotYetValid)
        );
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let other = Secret::new("another secret, also thirty-two bytes long").unwrap();
        let token = mint_hs256(&other, &claims()).unwrap();
        assert_eq!(
            hs_only().verify(&token, NOW),
            Err(AuthError::Bad(BadToken::Signature))
        );
        let other_ed = Authenticator::new(None, Some(OTHER_ED_PUBLIC.as_bytes())).unwrap();
        assert_eq!(
            other_ed.verify(&ed(&claims()), NOW),
            Err(AuthError::Bad(BadToken::Signature))
        );
        // A payload changed after signing.
        let token = hs(&claims());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(br#"{"room":"kitchen","sub":"ana","admin":true,"exp":1800003600}"#);
        parts[1] = &forged;
        assert_eq!(
            hs_only().verify(&parts.join("."), NOW),
            Err(AuthError::Bad(BadToken::Signature))
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let payload = r#"{"room":"kitchen","sub":"ana","exp":1800003600}"#;
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"None"}"#,
            r#"{"typ":"JWT"}"#,
        ] {
            for sig in ["", "AAAA"] {
                let token = raw(header, payload, sig);
                for auth in [hs_only(), ed_only()] {
                    let got = auth.verify(&token, NOW);
                    assert!(
                        matches!(got, Err(AuthError::Bad(_))),
                        "{header} with signature {sig:?}: {got:?}"
                    );
                    assert_eq!(
                        got.unwrap_err().code(),
                        sfu_core::protocol::ErrorCode::BadToken
                    );
                }
            }
        }
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        // An HS256 token where only the Ed25519 public key is configured, including one "signed"
        // with the public key's own bytes as the HMAC secret (the classic confusion attack).
        let as_secret = Secret::new(ED_PUBLIC).unwrap();
        for token in [hs(&claims()), mint_hs256(&as_secret, &claims()).unwrap()] {
            assert_eq!(
                ed_only().verify(&token, NOW),
                Err(AuthError::Bad(BadToken::Algorithm("HS256".into())))
            );
        }
        // An EdDSA token where only the secret is configured.
        assert_eq!(
            hs_only().verify(&ed(&claims()), NOW),
            Err(AuthError::Bad(BadToken::Algorithm("EdDSA".into())))
        );
        // Algorithms nobody configured.
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = encode(&Header::new(alg), &claims(), &key).unwrap();
            assert!(matches!(
                hs_only().verify(&token, NOW),
                Err(AuthError::Bad(BadToken::Algorithm(_)))
            ));
        }
    }

    #[test]
    fn a_token_for_another_room_is_refused() {
        let token = hs(&claims());
        assert!(hs_only().admit_join("kitchen", Some(&token), NOW).is_ok());
        assert_eq!(
            hs_only().admit_join("garage", Some(&token), NOW),
            Err(AuthError::WrongRoom)
        );
        assert_eq!(
            hs_only().admit_join("Kitchen", Some(&token), NOW),
            Err(AuthError::WrongRoom)
        );
        let roomless = Claims {
            room: None,
            ..claims()
        };
        assert_eq!(
            hs_only().admit_join("kitchen", Some(&hs(&roomless)), NOW),
            Err(AuthError::WrongRoom)
        );
        assert_eq!(
            hs_only().admit_join("kitchen", None, NOW),
            Err(AuthError::Required)
        );
    }

    #[test]
    fn garbage_is_refused_cleanly() {
        for token in [
            "",
            ".",
            "..",
            "a.b.c",
            "not a token",
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9..",
            "\u{0}\u{1}.\u{ffff}.é",
            "%%%.%%%.%%%",
            "a.b.c.d.e",
        ] {
            let got = hs_only().verify(token, NOW);
            assert!(matches!(got, Err(AuthError::Bad(_))), "{token:?}: {got:?}");
        }
        // Wrong types in claims, properly signed.
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        for payload in [
            serde_json::json!({"room": "kitchen", "sub": "ana", "exp": "tomorrow"}),
            serde_json::json!({"room": 7, "sub": "ana", "exp": NOW + 60}),
            serde_json::json!({"room": "kitchen", "sub": "ana", "exp": NOW + 60, "publish": "yes"}),
            serde_json::json!({"room": "kitchen", "sub": "ana", "exp": -5}),
            serde_json::json!({"room": "kitchen", "sub": "ana", "exp": 1.5e9}),
            serde_json::json!(["not", "an", "object"]),
            serde_json::json!("a string"),
        ] {
            let token = encode(&Header::new(Algorithm::HS256), &payload, &key).unwrap();
            let got = hs_only().verify(&token, NOW);
            assert!(
                matches!(
                    got,
                    Err(AuthError::Bad(BadToken::Claims(_) | BadToken::Malformed))
                ),
                "{payload}: {got:?}"
            );
        }
    }

    #[test]
    fn an_oversized_token_is_refused_before_parsing() {
        let huge = Claims {
            name: Some("x".repeat(MAX_TOKEN_BYTES)),
            ..claims()
        };
        assert_eq!(
            hs_only().verify(&hs(&huge), NOW),
            Err(AuthError::Bad(BadToken::TooLong))
        );
        assert_eq!(
            hs_only().verify(&"a".repeat(1 << 20), NOW),
            Err(AuthError::Bad(BadToken::TooLong))
        );
    }

    #[test]
    fn missing_exp_or_sub_is_refused() {
        let no_exp = Claims {
            exp: None,
            ..claims()
        };
        assert_eq!(
            hs_only().verify(&hs(&no_exp), NOW),
            Err(AuthError::Bad(BadToken::MissingExp))
        );
        let no_sub = Claims {
            sub: None,
            ..claims()
        };
        assert_eq!(
            hs_only().verify(&hs(&no_sub), NOW),
            Err(AuthError::Bad(BadToken::MissingSubject))
        );
        let blank_sub = Claims {
            sub: Some("  ".into()),
            ..claims()
        };
        assert_eq!(
            hs_only().verify(&hs(&blank_sub), NOW),
            Err(AuthError::Bad(BadToken::MissingSubject))
        );
    }

    #[test]
    fn keys_are_checked_when_loaded() {
        assert!(matches!(
            Authenticator::new(None, None),
            Err(KeyError::NoKey)
        ));
        assert!(matches!(
            Authenticator::new(None, Some(b"not a pem")),
            Err(KeyError::PublicKey(_))
        ));
        // A private key is not a public key.
        assert!(Authenticator::new(None, Some(ED_PRIVATE.as_bytes())).is_err());
        let shown = format!("{:?}", hs_only());
        assert!(!shown.contains(SECRET), "{shown}");
    }

    #[test]
    fn error_codes_are_distinct() {
        use sfu_core::protocol::ErrorCode;
        let codes = [
            AuthError::Required.code(),
            AuthError::Expired.code(),
            AuthError::NotYetValid.code(),
            AuthError::Bad(BadToken::Malformed).code(),
            AuthError::WrongRoom.code(),
        ];
        assert_eq!(
            codes,
            [
                ErrorCode::AuthRequired,
                ErrorCode::TokenExpired,
                ErrorCode::TokenNotYetValid,
                ErrorCode::BadToken,
                ErrorCode::WrongRoom
            ]
        );
    }
}
