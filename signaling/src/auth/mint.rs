//! Minting HS256 room tokens with the shared secret (`edge-sfu token`, and tests).
//!
//! EdDSA tokens are minted by the service that holds the private key; edge-sfu only verifies them.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

use super::claims::Claims;
use super::error::MintError;
use super::secret::Secret;

/// Signs `claims` with `secret` as an HS256 JWT (`typ: JWT`).
pub fn mint_hs256(secret: &Secret, claims: &Claims) -> Result<String, MintError> {
    let key = EncodingKey::from_secret(secret.as_bytes());
    encode(&Header::new(Algorithm::HS256), claims, &key).map_err(|e| MintError::Sign(e.to_string()))
}
