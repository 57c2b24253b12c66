//! The lean receive path: one thread (or a few) reads every simulated receiver's media socket.
//!
//! A str0m session opening every SRTP packet itself costs the generator about 18 µs per packet,
//! so its core ran out long before the server's. Here, once DTLS is up, a session hands its
//! socket over ([`sfu_client::handoff`]) to a [`LeanReceiver`]: a shard thread waits for
//! readiness on all its sockets (epoll), drains each ready one with `recvmmsg` (32 datagrams per
//! call, buffers allocated once), and sorts each datagram by its first bytes (RFC 7983):
//!
//! - SRTP RTP: the header length is taken from the CSRC count and the extension block, the
//!   packet index from the SSRC's rollover counter (kept here, RFC 3711 appendix A); a packet
//!   seen before is counted as a duplicate and not opened again; the rest are authenticated and
//!   decrypted with the session's [`str0m::rtp::SrtpReceiver`], and the payload's stamp goes to
//!   the receiver's [`Tally`] (measured packets, one-way latency).
//! - STUN, DTLS and SRTCP go back to the session, which is still fed time: ICE consent, RTCP and
//!   keyframe requests work as before.
//!
//! What the server no longer gets: the session never sees the media, so it sends no receiver
//! report blocks, NACKs or TWCC feedback for it.
//!
//! The plain UDP participants of the reflector hand their sockets over the same way, without
//! SRTP. The Janus client uses it too; another baseline's client adopts it by giving its
//! receiving session's socket a [`sfu_client::handoff::MediaSocket`] and calling
//! `hand_over(rtc.srtp_receiver(), &*reader)` on str0m's `Event::Connected`.

mod batch;
mod counts;
pub mod packet;
pub mod sequence;
mod shard;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use sfu_client::handoff::{MediaHandoff, MediaReader};
use tokio::sync::oneshot;

pub use counts::LeanCounts;

use crate::tally::Tally;
use shard::{Cmd, Link, Shard};

/// The lean receive threads of a run.
#[derive(Debug)]
pub struct LeanRx {
    shards: Vec<Shard>,
    next: AtomicU64,
}

impl LeanRx {
    /// Starts `threads` shard threads (at least one).
    pub fn start(threads: usize) -> io::Result<LeanRx> {
        let shards = (0..threads.max(1))
            .map(|i| Shard::start(format!("lean-rx-{i}")))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(LeanRx {
            shards,
            next: AtomicU64::new(0),
        })
    }

    /// A receiver counting into `tally`; its sockets go to one shard (round robin).
    pub fn receiver(&self, tally: Tally) -> io::Result<LeanReceiver> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let link = self.shards[(id % self.shards.len() as u64) as usize].link();
        link.send(Cmd::Register {
            receiver: id,
            tally: Box::new(tally),
        })?;
        Ok(LeanReceiver { id, link })
    }

    /// The shard threads' ids (for their CPU time in `/proc/self/task/<tid>`).
    pub fn thread_ids(&self) -> Vec<i32> {
        self.shards.iter().map(Shard::tid).collect()
    }
}

/// One receiver on the lean path: takes over its sessions' sockets ([`MediaReader`]) and hands
/// its tally back at the end.
#[derive(Debug)]
pub struct LeanReceiver {
    id: u64,
    link: Link,
}

impl LeanReceiver {
    /// Stops reading this receiver's sockets and returns its tally (`None` if the thread is gone).
    pub async fn finish(&self) -> Option<Tally> {
        let (reply, rx) = oneshot::channel();
        self.link
            .send(Cmd::Finish {
                receiver: self.id,
                reply,
            })
            .ok()?;
        rx.await.ok().map(|t| *t)
    }
}

impl MediaReader for LeanReceiver {
    fn take_over(&self, handoff: MediaHandoff) -> io::Result<()> {
        self.link.send(Cmd::Attach {
            receiver: self.id,
            handoff,
        })
    }
}
