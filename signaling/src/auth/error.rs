//! Why a token was refused, why a key could not be loaded, why minting failed.

use sfu_core::protocol::ErrorCode;

/// Why a room token was refused. Each maps to one protocol [`ErrorCode`] ([`AuthError::code`]);
/// the `Display` text is what the client is told, so it names the problem without echoing the
/// token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The join carried no token and the server requires one.
    #[error("this server requires a room token: open the invite link you were given")]
    Required,
    /// `exp` (plus the clock leeway) has passed.
    #[error("the room token expired: ask for a new invite link")]
    Expired,
    /// `nbf` or `iat` is later than now (plus the clock leeway).
    #[error("the room token is not valid yet (check this device's clock)")]
    NotYetValid,
    /// The token is not one this server accepts.
    #[error("the room token is not valid: {0}")]
    Bad(#[from] BadToken),
    /// The token is valid, for another room (or for none).
    #[error("the room token is not for this room")]
    WrongRoom,
    /// The token was revoked (by its `jti`).
    #[error("the room token was revoked: ask for a new invite link")]
    Revoked,
}

impl AuthError {
    /// The protocol error code the client gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Required => ErrorCode::AuthRequired,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::NotYetValid => ErrorCode::TokenNotYetValid,
            AuthError::Bad(_) => ErrorCode::BadToken,
            AuthError::WrongRoom => ErrorCode::WrongRoom,
            AuthError::Revoked => ErrorCode::TokenRevoked,
        }
    }
}

/// What is wrong with a token refused as `bad_token`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadToken {
    /// Longer than [`super::MAX_TOKEN_BYTES`]; not even parsed.
    #[error("longer than {} bytes", super::MAX_TOKEN_BYTES)]
    TooLong,
    /// Not three base64url parts, or a header that is not a JWT header of a known algorithm
    /// (`"alg": "none"` lands here: it is no algorithm at all).
    #[error("not a well-formed JWT")]
    Malformed,
    /// A real algorithm, but not one this server has a key for (HS256 needs the secret, EdDSA the
    /// public key; nothing else is accepted). This refuses algorithm confusion: a token can never
    /// choose which key checks it.
    #[error("algorithm {0} is not accepted by this server")]
    Algorithm(String),
    /// The signature does not match.
    #[error("bad signature")]
    Signature,
    /// The payload is not a JSON object of the expected claims (wrong types, not JSON).
    #[error("malformed claims: {0}")]
    Claims(String),
    /// No `exp`: every token must expire.
    #[error("it has no exp (expiry) claim")]
    MissingExp,
    /// No `sub`, or an empty one: every member has an identity.
    #[error("it has no sub (identity) claim")]
    MissingSubject,
}

/// A key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The HS256 secret is empty.
    #[error("the auth secret is empty")]
    EmptySecret,
    /// The public key is not an Ed25519 public key in PEM (`-----BEGIN PUBLIC KEY-----`).
    #[error("not an Ed25519 public key in PEM form: {0}")]
    PublicKey(String),
    /// Neither a secret nor a public key was given.
    #[error("no auth secret and no public key")]
    NoKey,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The signing library refused (it cannot with a valid secret and these claims).
    #[error("signing the token: {0}")]
    Sign(String),
    /// The expiry lies beyond what a JWT's seconds can hold.
    #[error("the token lifetime is too long")]
    TtlTooLong,
}
