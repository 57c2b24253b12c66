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
            handoff: Box::new(handoff),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{Stamp, FLAG_MEASURED};
    use crate::tally::RxCounters;
    use sfu_client::handoff::MediaSocket;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// A plain RTP packet of track `track`: `csrcs` CSRCs, an extension block of `ext_words`
    /// words when given, and `pad` bytes of padding.
    fn rtp(seq: u16, ssrc: u32, track: u32, csrcs: u8, ext_words: Option<u16>, pad: u8) -> Vec<u8> {
        let mut p = vec![0x80 | csrcs, 96];
        if ext_words.is_some() {
            p[0] |= 0x10;
        }
        if pad > 0 {
            p[0] |= 0x20;
        }
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend(std::iter::repeat_n(7u8, 4 * usize::from(csrcs)));
        if let Some(w) = ext_words {
            p.extend_from_slice(&[0xbe, 0xde]);
            p.extend_from_slice(&w.to_be_bytes());
            p.extend(std::iter::repeat_n(1u8, 4 * usize::from(w)));
        }
        let stamp = Stamp {
            track,
            seq: u64::from(seq),
            sent_ns: 0,
            flags: FLAG_MEASURED,
        };
        p.extend_from_slice(&stamp.payload(40));
        if pad > 0 {
            p.extend(std::iter::repeat_n(0u8, usize::from(pad) - 1));
            p.push(pad);
        }
        p
    }

    #[tokio::test]
    async fn plain_rtp_is_counted_once_per_ssrc_and_index_across_the_rollover() {
        let lean = LeanRx::start(1).unwrap();
        let counters = Arc::new(RxCounters::default());
        let epoch = Instant::now();
        let tally = Tally::new(epoch, epoch, true, vec![0, 1], counters.clone());
        let receiver = lean.receiver(tally).unwrap();
        let mut socket =
            MediaSocket::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        socket.hand_over(None, &receiver).unwrap();
        let to = socket.local_addr().unwrap();

        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let packets = [
            rtp(65534, 10, 0, 0, None, 0),
            rtp(65535, 10, 0, 2, Some(3), 0),
            rtp(0, 10, 0, 0, Some(1), 4),      // rollover, with padding
            rtp(0, 10, 0, 0, None, 0),         // duplicate across the rollover
            rtp(2, 10, 0, 0, None, 0),         // 1 is missing
            rtp(5, 11, 1, 1, None, 0),         // another stream
            vec![0x80, 200, 0, 1, 0, 0, 0, 0], // RTCP: plain RTP has no session for it
            vec![0xff, 1, 2],                  // neither RTP, RTCP, STUN nor DTLS
        ];
        for p in &packets {
            tx.send_to(p, to).unwrap();
        }
        // Wait (without a time limit on the result) until the five new packets were counted.
        let deadline = Instant::now() + Duration::from_secs(10);
        while counters.packets.load(std::sync::atomic::Ordering::Relaxed) < 5
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t = receiver.finish().await.unwrap();
        assert_eq!(t.measured, 5);
        assert_eq!(
            (
                t.lean.datagrams,
                t.lean.media,
                t.lean.duplicates,
                t.lean.seq_missing
            ),
            (8, 5, 1, 1)
        );
        assert_eq!(
            (t.lean.malformed, t.lean.auth_failed, t.lean.too_old),
            (1, 0, 0)
        );
        assert_eq!(counters.ready.load(std::sync::atomic::Ordering::Relaxed), 1);
        // Finished: nothing more is counted.
        tx.send_to(&packets[0], to).unwrap();
        assert!(receiver.finish().await.is_none());
    }
}
