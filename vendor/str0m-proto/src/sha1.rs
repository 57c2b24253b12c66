use std::fmt::Debug;

/// Marker trait for types that are safe to use in crypto provider components.
///
/// This trait combines the common bounds required for crypto provider trait objects:
/// - [`Send`] + [`Sync`]: Thread-safe
/// - [`Debug`]: Support debugging
///
/// Note: We don't require `UnwindSafe` because some error types (like `dimpl::Error`)
/// may not implement it, but they're still safe to use in our context.
pub trait CryptoSafe: Send + Sync + Debug {}

/// Blanket implementation: any type satisfying the bounds implements [`CryptoSafe`].
impl<T: Send + Sync + Debug> CryptoSafe for T {}

/// SHA1 HMAC provider for STUN message integrity.
pub trait Sha1HmacProvider: CryptoSafe {
    /// Compute HMAC-SHA1(key, payloads) and return the result.
    fn sha1_hmac(&self, key: &[u8], payloads: &[&[u8]]) -> [u8; 20];

    /// HMAC-SHA1 under `key`, set up once for many messages (edge-sfu).
    fn sha1_hmac_key(&self, key: &[u8]) -> Box<dyn Sha1HmacKey>;
}

/// HMAC-SHA1 under one key (edge-sfu): SRTP with AES128_CM_SHA1_80 authenticates every packet of
/// a session with the same key, and setting a key up (its inner and outer SHA-1 states) cost
/// about as much as authenticating a small packet.
pub trait Sha1HmacKey: CryptoSafe {
    /// HMAC-SHA1(key, payloads).
    fn sign(&self, payloads: &[&[u8]]) -> [u8; 20];
}
