//! The sans-IO heart of edge-sfu: rooms, peers, tracks and the forwarding of RTP between them.
//!
//! Nothing here touches a socket, a clock or a thread: datagrams, signaling messages and time go in,
//! datagrams, signaling messages and the next deadline come out. That keeps the core deterministic and
//! testable with simulated time; the I/O shell of the `edge-sfu` binary drives it.

pub mod protocol;
