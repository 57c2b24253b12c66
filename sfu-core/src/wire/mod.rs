//! Zero-copy views over the packets that reach the media port, in the style of smoltcp's `wire`:
//! a `Packet<T: AsRef<[u8]>>` with `new_checked`, accessors (and setters where we rewrite), and a
//! small `Repr` where a parsed value is worth keeping. They classify and validate hostile input
//! before str0m sees it, so every refusal is counted by reason.

mod classify;
mod framing;
mod rtp;
mod stun;

pub use classify::{classify, DatagramKind};
pub use framing::{append_frame, FrameRules};
pub use rtp::{RtpPacket, RtpRepr};
pub use stun::StunPacket;

/// Why a packet view refused a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header says it must be.
    #[error("truncated packet")]
    Truncated,
    /// A version or magic field holds a value this protocol never uses.
    #[error("bad version or magic")]
    BadVersion,
    /// A length field points outside the buffer or is inconsistent.
    #[error("inconsistent length field")]
    BadLength,
}
