//! ICE over TCP from the client side: an active candidate (RFC 6544) that opens one TCP
//! connection per remote passive candidate it checks, and RFC 4571 framing both ways.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::debug;

/// Port of an active TCP candidate: it is never connected to (RFC 6544 uses the discard port).
pub(crate) const ACTIVE_PORT: u16 = 9;

/// Frames received, with the remote address they came from.
pub(crate) type Incoming = (SocketAddr, Vec<u8>);

/// The client's TCP connections, by remote address.
pub(crate) struct TcpLinks {
    writers: HashMap<SocketAddr, OwnedWriteHalf>,
    incoming_tx: mpsc::Sender<Incoming>,
    incoming: mpsc::Receiver<Incoming>,
}

impl TcpLinks {
    pub(crate) fn new() -> Self {
        let (incoming_tx, incoming) = mpsc::channel(1024);
        TcpLinks {
            writers: HashMap::new(),
            incoming_tx,
            incoming,
        }
    }

    /// Sends one framed datagram to `destination`, connecting first if needed.
    pub(crate) async fn send(
        &mut self,
        destination: SocketAddr,
        data: &[u8],
    ) -> std::io::Result<()> {
        let len = u16::try_from(data.len())
            .map_err(|_| std::io::Error::other("datagram too large for RFC 4571 framing"))?;
        if !self.writers.contains_key(&destination) {
            let stream = TcpStream::connect(destination).await?;
            stream.set_nodelay(true)?;
            let (reader, writer) = stream.into_split();
            tokio::spawn(read_frames(reader, destination, self.incoming_tx.clone()));
            self.writers.insert(destination, writer);
        }
        let Some(writer) = self.writers.get_mut(&destination) else {
            return Ok(());
        };
        let mut frame = Vec::with_capacity(2 + data.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(data);
        if let Err(e) = writer.write_all(&frame).await {
            self.writers.remove(&destination);
            return Err(e);
        }
        Ok(())
    }

    /// The next frame from any connection.
    pub(crate) async fn recv(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }
}

async fn read_frames(
    reader: tokio::net::tcp::OwnedReadHalf,
    remote: SocketAddr,
    out: mpsc::Sender<Incoming>,
) {
    let mut reader = BufReader::new(reader);
    while let Ok(len) = reader.read_u16().await {
        let mut frame = vec![0; usize::from(len)];
        if reader.read_exact(&mut frame).await.is_err() || out.send((remote, frame)).await.is_err()
        {
            break;
        }
    }
    debug!(%remote, "ICE-TCP connection ended");
}
