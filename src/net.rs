//! Sockets and addresses: the media sockets (socket2 options) and the addresses announced to peers.
//!
//! Every listening socket is dual-stack where the host has IPv6: one `[::]` socket with
//! `IPV6_V6ONLY` off serves IPv4 peers too, which the kernel shows as v4-mapped addresses
//! (`::ffff:a.b.c.d`). [`canonical`] turns those back into IPv4 addresses at the edge (receives,
//! accepts), so the core, its demux, the XDP guard's flow table and the statistics see one form
//! per peer. Sends to an IPv4 destination on a dual-stack socket go out as IPv4 (Linux takes an
//! `AF_INET` destination on an `AF_INET6` UDP socket that is not v6-only).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::warn;

/// Kernel buffer size asked for on media sockets: a burst of keyframes for a full room must not
/// overflow the receive queue while the worker is busy.
const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Pending connections a TCP listener keeps.
const LISTEN_BACKLOG: i32 = 1024;

/// Binds a worker's media UDP socket on every interface at `port` (0 for any free port):
/// dual-stack, or IPv4 only where the host has no IPv6.
pub fn bind_media_socket(port: u16) -> Result<std::net::UdpSocket> {
    let socket = bind_all_interfaces(Type::DGRAM, Protocol::UDP, port, |socket| {
        // Best effort: the kernel caps these at net.core.{r,w}mem_max without complaint.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
        Ok(())
    })?;
    Ok(socket.into())
}

/// Binds a worker's ICE-TCP listener on every interface at `port` (0 for any free port):
/// dual-stack, or IPv4 only where the host has no IPv6.
pub fn bind_ice_tcp_listener(port: u16) -> Result<std::net::TcpListener> {
    let socket = bind_all_interfaces(Type::STREAM, Protocol::TCP, port, |_| Ok(()))?;
    socket.listen(LISTEN_BACKLOG).context("listen")?;
    Ok(socket.into())
}

/// Binds a TCP listener (the HTTP/WebSocket server, `--metrics-listen`) at `addr`. `[::]` is
/// dual-stack, so IPv4 clients reach it too; where the host has no IPv6 it becomes `0.0.0.0`.
/// Any other address is bound as it is.
pub fn bind_tcp_listener(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            bind_all_interfaces(Type::STREAM, Protocol::TCP, addr.port(), |_| Ok(()))?
        }
        _ => {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
                .context("creating TCP socket")?;
            socket.set_reuse_address(true).context("SO_REUSEADDR")?;
            socket
                .bind(&addr.into())
                .with_context(|| format!("binding TCP {addr}"))?;
            socket
        }
    };
    socket.listen(LISTEN_BACKLOG).context("listen")?;
    socket.set_nonblocking(true).context("O_NONBLOCK")?;
    Ok(socket.into())
}

/// A non-blocking socket bound to every interface at `port`: `[::]` with `IPV6_V6ONLY` off, or,
/// where that cannot be had (IPv6 disabled in the kernel, say), `0.0.0.0` with a warning.
/// `options` sets what the caller needs before the bind.
fn bind_all_interfaces(
    ty: Type,
    protocol: Protocol,
    port: u16,
    options: impl Fn(&Socket) -> Result<()>,
) -> Result<Socket> {
    let bind = |addr: SocketAddr| -> Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))
            .with_context(|| format!("creating a {protocol:?} socket for {addr}"))?;
        if addr.is_ipv6() {
            socket.set_only_v6(false).context("IPV6_V6ONLY off")?;
        }
        socket.set_reuse_address(true).context("SO_REUSEADDR")?;
        options(&socket)?;
        socket.set_nonblocking(true).context("O_NONBLOCK")?;
        socket
            .bind(&addr.into())
            .with_context(|| format!("binding {protocol:?} {addr}"))?;
        Ok(socket)
    };
    bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))).or_else(|v6_error| {
        let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let socket =
            bind(v4).with_context(|| format!("dual-stack bind failed too: {v6_error:#}"))?;
        warn!(error = %format!("{v6_error:#}"), %v4, "no dual-stack socket: IPv4 only");
        Ok(socket)
    })
}

/// `addr` in the one form the server keys peers by: a v4-mapped IPv6 address (an IPv4 peer of a
/// dual-stack socket) becomes the IPv4 address it maps; everything else is unchanged.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Every address of every interface of this machine, in interface order (none when they cannot
/// be listed). Callers pick the ones they can use.
pub fn interface_ips() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|ifs| ifs.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// Whether an interface address can be announced as a host candidate: not unspecified, not
/// link-local (ICE leaves those out: they need a zone a peer cannot know), not v4-mapped.
fn announceable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            !v6.is_unspecified() && !v6.is_unicast_link_local() && v6.to_ipv4_mapped().is_none()
        }
    }
}

/// The IPs to announce: the configured ones, or every interface's IPv4 and IPv6 address (global
/// and unique-local IPv6 included, link-local left out), loopback included for browsers and
/// clients on this machine: IPv4 first, loopback last.
pub fn announced_ips(configured: &[IpAddr]) -> Vec<IpAddr> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    let mut ips = interface_ips();
    ips.retain(announceable);
    if !ips.iter().any(|ip| ip.is_ipv4() && ip.is_loopback()) {
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    // Stable: interface order within each group.
    ips.sort_by_key(|ip| (ip.is_loopback(), ip.is_ipv6()));
    ips.dedup();
    ips
}

/// Picks the announced address a datagram from `source` was sent to: the socket is bound to all
/// interfaces, so the kernel does not say. Per address family, loopback talks to loopback;
/// anything else reached one of the other announced addresses of its family, and with one LAN
/// address per family (the edge-box case) that is exact.
#[derive(Debug, Clone)]
pub struct LocalAddrs {
    v4: FamilyAddrs,
    v6: FamilyAddrs,
}

/// The first loopback and the first other announced address of one family.
#[derive(Debug, Clone, Default)]
struct FamilyAddrs {
    loopback: Option<SocketAddr>,
    other: Option<SocketAddr>,
}

impl FamilyAddrs {
    fn of(candidates: &[SocketAddr], ipv4: bool) -> Self {
        let mut family = candidates.iter().copied().filter(|a| a.is_ipv4() == ipv4);
        FamilyAddrs {
            loopback: family.clone().find(|a| a.ip().is_loopback()),
            other: family.find(|a| !a.ip().is_loopback()),
        }
    }
}

impl LocalAddrs {
    /// From the announced candidate addresses of a worker.
    pub fn new(candidates: &[SocketAddr]) -> Self {
        LocalAddrs {
            v4: FamilyAddrs::of(candidates, true),
            v6: FamilyAddrs::of(candidates, false),
        }
    }

    /// The local address that `source` (in [`canonical`] form) most likely sent to; `None` when no
    /// address of its family is announced (nothing of it can be a peer's path then).
    pub fn destination_for(&self, source: SocketAddr) -> Option<SocketAddr> {
        let family = if source.is_ipv4() { &self.v4 } else { &self.v6 };
        if source.ip().is_loopback() {
            family.loopback.or(family.other)
        } else {
            family.other.or(family.loopback)
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
    fn sources_map_to_a_candidate_of_their_family() {
        let l = LocalAddrs::new(&[
            "192.0.2.2:5000".parse().unwrap(),
            "[2001:db8::2]:5000".parse().unwrap(),
            "127.0.0.1:5000".parse().unwrap(),
            "[::1]:5000".parse().unwrap(),
        ]);
        let to = |s: &str| l.destination_for(s.parse().unwrap());
        assert_eq!(to("[::1]:9"), Some("[::1]:5000".parse().unwrap()));
        assert_eq!(
            to("[fd00::9]:9"),
            Some("[2001:db8::2]:5000".parse().unwrap())
        );
        assert_eq!(to("192.0.2.9:9"), Some("192.0.2.2:5000".parse().unwrap()));
        assert_eq!(to("127.0.0.1:9"), Some("127.0.0.1:5000".parse().unwrap()));

        // Nothing announced in a family: its datagrams have no destination.
        let v4_only = LocalAddrs::new(&["127.0.0.1:5000".parse().unwrap()]);
        assert_eq!(v4_only.destination_for("[::1]:9".parse().unwrap()), None);
    }

    #[test]
    fn v4_mapped_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:4000".parse().unwrap();
        assert_eq!(canonical(mapped), "192.0.2.7:4000".parse().unwrap());
        for unchanged in ["[::1]:4000", "[fd00::7]:4000", "192.0.2.7:4000"] {
            let addr: SocketAddr = unchanged.parse().unwrap();
            assert_eq!(canonical(addr), addr);
        }
    }

    #[test]
    fn interfaces_always_include_loopback_last() {
        let ips = announced_ips(&[]);
        assert!(ips.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let first_loopback = ips.iter().position(IpAddr::is_loopback).unwrap();
        assert!(ips[first_loopback..].iter().all(IpAddr::is_loopback));
        assert!(ips.iter().all(announceable), "{ips:?}");
    }

    #[test]
    fn announced_ips_leave_out_link_local_and_unspecified() {
        for ip in [
            "169.254.1.1",
            "fe80::1",
            "::",
            "0.0.0.0",
            "::ffff:192.0.2.1",
        ] {
            assert!(!announceable(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["192.0.2.1", "fd00::1", "2001:db8::1", "::1", "127.0.0.1"] {
            assert!(announceable(&ip.parse().unwrap()), "{ip}");
        }
    }

    /// Where the host has IPv6 (skipped, with a note, where it has not): one media socket
    /// answers an IPv4 and an IPv6 peer, and replies reach the IPv4 one at its IPv4 address.
    #[test]
    fn the_media_socket_serves_both_families() {
        let server = bind_media_socket(0).unwrap();
        server.set_nonblocking(false).unwrap();
        let port = server.local_addr().unwrap().port();
        if server.local_addr().unwrap().is_ipv4() {
            eprintln!("no IPv6 on this host: dual-stack check skipped");
            return;
        }
        let Ok(v6_client) = std::net::UdpSocket::bind("[::1]:0") else {
            eprintln!("no ::1 on this host: dual-stack check skipped");
            return;
        };
        let v4_client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for (client, to) in [
            (&v4_client, SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
            (&v6_client, SocketAddr::from((Ipv6Addr::LOCALHOST, port))),
        ] {
            client.send_to(b"ping", to).unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"ping");
            let from = canonical(from);
            assert_eq!(from, client.local_addr().unwrap());
            server.send_to(b"pong", from).unwrap();
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let (n, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"pong");
        }
    }
}
