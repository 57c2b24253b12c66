//! Handing a session's media socket to another reader once DTLS is up.
//!
//! A str0m `Rtc` that receives every SRTP packet itself spends most of its time on the receive
//! path (stream bookkeeping, NACK and TWCC registers, an allocation per payload). A load generator
//! with hundreds of subscribers cannot afford that, so after DTLS agreed on keys the socket's
//! reading can go to a [`MediaReader`]: it reads the socket (in batches, on a thread of its own),
//! opens the SRTP media itself with the [`SrtpReceiver`] it is handed, and passes everything else
//! (STUN, DTLS, SRTCP) back to the session as [`SessionDatagram`]s. The session keeps sending on
//! the socket and keeps being fed time, so ICE consent, RTCP and keyframe requests still work.
//!
//! [`MediaSocket`] is the session's side: a UDP socket that is read directly until
//! [`MediaSocket::hand_over`], and afterwards yields what the reader passed back.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use str0m::rtp::SrtpReceiver;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams the reader may queue for the session before it has to drop some (they are rare:
/// STUN consent checks, RTCP, the DTLS close).
const SESSION_QUEUE: usize = 256;

/// A datagram the reader read but does not handle: it belongs to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDatagram {
    /// Where it came from.
    pub source: SocketAddr,
    /// When it was read.
    pub at: Instant,
    /// The datagram.
    pub contents: Vec<u8>,
}

/// What a session hands to a [`MediaReader`].
#[derive(Debug)]
pub struct MediaHandoff {
    /// A duplicate of the session's socket, non-blocking. The session still sends on its own
    /// copy; the reader is now the only one reading.
    pub socket: std::net::UdpSocket,
    /// Opens the SRTP the remote side sends (`None` for plain RTP, without DTLS).
    pub srtp: Option<SrtpReceiver>,
    /// Where datagrams that are not media go (the session reads them as if from the socket).
    pub session: mpsc::Sender<SessionDatagram>,
}

/// Something that takes over reading a session's media socket.
pub trait MediaReader: Send + Sync + fmt::Debug {
    /// Starts reading `handoff.socket`. On an error the session goes on reading it itself.
    fn take_over(&self, handoff: MediaHandoff) -> io::Result<()>;
}

/// A session's UDP socket, read directly until it is handed over to a [`MediaReader`].
#[derive(Debug)]
pub struct MediaSocket {
    state: State,
}

#[derive(Debug)]
enum State {
    /// Read and written here.
    Own(UdpSocket),
    /// Written here (registered for write readiness only, so arriving datagrams wake nobody
    /// here); read by a [`MediaReader`], which passes the session's datagrams back.
    HandedOver {
        send: AsyncFd<std::net::UdpSocket>,
        from_reader: mpsc::Receiver<SessionDatagram>,
        /// Whether the reader still runs (after it stopped, nothing more arrives).
        reader_open: bool,
    },
    /// Only while [`MediaSocket::hand_over`] swaps the states.
    Swapping,
}

impl MediaSocket {
    /// Wraps a bound socket.
    pub fn new(socket: UdpSocket) -> Self {
        MediaSocket {
            state: State::Own(socket),
        }
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.state {
            State::Own(socket) => socket.local_addr(),
            State::HandedOver { send, .. } => send.get_ref().local_addr(),
            State::Swapping => Err(swapping()),
        }
    }

    /// Whether a [`MediaReader`] reads the socket now.
    pub fn is_handed_over(&self) -> bool {
        matches!(self.state, State::HandedOver { .. })
    }

    /// The next datagram for the session: read from the socket, or after the hand-over passed
    /// back by the reader (longer ones are cut to `buf`). Once the reader stopped this never
    /// completes, like a socket nobody writes to.
    pub async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match &mut self.state {
            State::Own(socket) => socket.recv_from(buf).await,
            State::HandedOver {
                from_reader,
                reader_open,
                ..
            } => {
                if *reader_open {
                    if let Some(d) = from_reader.recv().await {
                        let n = d.contents.len().min(buf.len());
                        buf[..n].copy_from_slice(&d.contents[..n]);
                        return Ok((n, d.source));
                    }
                    *reader_open = false;
                }
                std::future::pending().await
            }
            State::Swapping => std::future::pending().await,
        }
    }

    /// Sends one datagram, waiting while the socket's send buffer is full.
    pub async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        match &self.state {
            State::Own(socket) => socket.send_to(buf, target).await,
            State::HandedOver { send, .. } => {
                send.async_io(Interest::WRITABLE, |s| s.send_to(buf, target))
                    .await
            }
            State::Swapping => Err(swapping()),
        }
    }

    /// Sends one datagram if the socket takes it now (`WouldBlock` when its buffer is full).
    pub fn try_send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        match &self.state {
            State::Own(socket) => socket.try_send_to(buf, target),
            State::HandedOver { send, .. } => send.get_ref().send_to(buf, target),
            State::Swapping => Err(swapping()),
        }
    }

    /// Hands the reading to `reader`, with `srtp` to open the media (`None`: plain RTP). Fails
    /// (and keeps reading here) when it was handed over already or the reader refuses.
    pub fn hand_over(
        &mut self,
        srtp: Option<SrtpReceiver>,
        reader: &dyn MediaReader,
    ) -> io::Result<()> {
        let socket = match std::mem::replace(&mut self.state, State::Swapping) {
            State::Own(socket) => socket,
            other => {
                self.state = other;
                return Err(io::Error::other("the socket was handed over already"));
            }
        };
        // Leaving tokio's reactor: from here on datagrams arriving wake only the reader.
        let socket = socket.into_std()?;
        let reader_copy = match socket.try_clone() {
            Ok(copy) => copy,
            Err(e) => {
                self.state = State::Own(UdpSocket::from_std(socket)?);
                return Err(e);
            }
        };
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let handoff = MediaHandoff {
            socket: reader_copy,
            srtp,
            session: tx,
        };
        if let Err(e) = reader.take_over(handoff) {
            self.state = State::Own(UdpSocket::from_std(socket)?);
            return Err(e);
        }
        // SAFETY: the std socket owns its descriptor and the AsyncFd owns the socket: the
        // descriptor stays open and the same for the AsyncFd's whole life.
        let send = unsafe { AsyncFd::register_with_interest(socket, Interest::WRITABLE) }
            .map_err(io::Error::from)?;
        self.state = State::HandedOver {
            send,
            from_reader: rx,
            reader_open: true,
        };
        Ok(())
    }
}

fn swapping() -> io::Error {
    io::Error::other("the media socket is unusable after a failed hand-over")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A reader that keeps the handoff for the test to drive.
    #[derive(Debug, Default)]
    struct Keep(Mutex<Option<MediaHandoff>>);

    impl MediaReader for Keep {
        fn take_over(&self, handoff: MediaHandoff) -> io::Result<()> {
            *self.0.lock().map_err(|_| io::Error::other("poisoned"))? = Some(handoff);
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Refuse;

    impl MediaReader for Refuse {
        fn take_over(&self, _: MediaHandoff) -> io::Result<()> {
            Err(io::Error::other("no"))
        }
    }

    #[tokio::test]
    async fn after_the_hand_over_the_reader_reads_and_the_session_gets_what_it_passes_back() {
        let mut media = MediaSocket::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = media.local_addr().unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer.local_addr().unwrap();

        let keep = Keep::default();
        media.hand_over(None, &keep).unwrap();
        assert!(media.is_handed_over());
        assert_eq!(media.local_addr().unwrap(), addr);
        assert!(media.hand_over(None, &keep).is_err());
        let handoff = keep.0.lock().unwrap().take().unwrap();

        // What arrives now is the reader's to read.
        peer.send_to(b"media", addr).await.unwrap();
        let mut buf = [0u8; 64];
        handoff.socket.set_nonblocking(false).unwrap();
        let (n, from) = handoff.socket.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"media"[..], peer_addr));

        // What the reader passes back reaches the session; sending still works.
        handoff
            .session
            .send(SessionDatagram {
                source: peer_addr,
                at: Instant::now(),
                contents: b"stun".to_vec(),
            })
            .await
            .unwrap();
        let (n, from) = media.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"stun"[..], peer_addr));
        media.send_to(b"out", peer_addr).await.unwrap();
        media.try_send_to(b"out2", peer_addr).unwrap();
        let (n, _) = peer.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"out");
        let (n, _) = peer.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"out2");
    }

    #[tokio::test]
    async fn a_refused_hand_over_keeps_reading_here() {
        let mut media = MediaSocket::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        assert!(media.hand_over(None, &Refuse).is_err());
        assert!(!media.is_handed_over());
        let addr = media.local_addr().unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        peer.send_to(b"x", addr).await.unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = media.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"x");
    }
}
