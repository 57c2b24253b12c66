//! Sockets and addresses: the media sockets (socket2 options) and the addresses announced to peers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

/// Kernel buffer size asked for on media sockets: a burst of keyframes for a full room must not
/// overflow the receive queue while the worker is busy.
const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Binds a worker's media UDP socket on all IPv4 interfaces at `port` (0 for any free port).
pub fn bind_media_socket(port: u16) -> Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .context("creating UDP socket")?;
    socket.set_reuse_address(true).context("SO_REUSEADDR")?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max without complaint.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.set_nonblocking(true).context("O_NONBLOCK")?;
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding UDP {addr}"))?;
    Ok(socket.into())
}

/// Binds a worker's ICE-TCP listener on all IPv4 interfaces at `port` (0 for any free port).
pub fn bind_ice_tcp_listener(port: u16) -> Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .context("creating TCP socket")?;
    socket.set_reuse_address(true).context("SO_REUSEADDR")?;
    socket.set_nonblocking(true).context("O_NONBLOCK")?;
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding TCP {addr}"))?;
    socket.listen(1024).context("listen")?;
    Ok(socket.into())
}

/// Every address of every interface of this machine, in interface order (none when they cannot
/// be listed). Callers pick the ones they can use.
pub fn interface_ips() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|ifs| ifs.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// The IPs to announce: the configured ones, or every interface's IPv4 address (loopback
/// included, for browsers on this machine; link-local excluded, as ICE does).
pub fn announced_ips(configured: &[IpAddr]) -> Vec<IpAddr> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let mut ips = interface_ips();
    ips.retain(|ip| matches!(ip, IpAddr::V4(v) if !v.is_link_local() && !v.is_unspecified()));
    if !ips.iter().any(IpAddr::is_loopback) {
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    ips.sort_by_key(IpAddr::is_loopback);
    ips.dedup();
    ips
}

/// Picks the announced address a datagram from `source` was sent to: the socket is bound to all
/// interfaces, so the kernel does not say. Loopback talks to loopback; anything else reached one
/// of the other announced addresses, and with one LAN address (the edge-box case) that is exact.
#[derive(Debug, Clone)]
pub struct LocalAddrs {
    loopback: Option<SocketAddr>,
    other: Option<SocketAddr>,
}

impl LocalAddrs {
    /// From the announced candidate addresses of a worker.
    pub fn new(candidates: &[SocketAddr]) -> Self {
        LocalAddrs {
            loopback: candidates.iter().copied().find(|a| a.ip().is_loopback()),
            other: candidates.iter().copied().find(|a| !a.ip().is_loopback()),
        }
    }

    /// The local address that `source` most likely sent to.
    pub fn destination_for(&self, source: SocketAddr) -> Option<SocketAddr> {
        if source.ip().is_loopback() {
            self.loopback.or(self.other)
        } else {
            self.other.or(self.loopback)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_sources_map_to_the_loopback_candidate() {
        let l = LocalAddrs::new(&[
            "192.0.2.2:5000".parse().unwrap(),
            "127.0.0.1:5000".parse().unwrap(),
        ]);
        assert_eq!(
            l.destination_for("127.0.0.1:9".parse().unwrap()),
            Some("127.0.0.1:5000".parse().unwrap())
        );
        assert_eq!(
            l.destination_for("192.0.2.9:9".parse().unwrap()),
            Some("192.0.2.2:5000".parse().unwrap())
        );
    }

    #[test]
    fn interfaces_always_include_loopback_last() {
        let ips = announced_ips(&[]);
        assert_eq!(ips.last(), Some(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
