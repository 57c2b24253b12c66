//! Socket addresses in the form the kernel takes: `sockaddr_storage` and back, for the system
//! calls and io_uring operations that carry a peer address.

use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The socket address in `storage`, if it holds an IPv4 or IPv6 one, in
/// [`canonical`](crate::net::canonical) form: what a dual-stack socket received from an IPv4
/// peer (a v4-mapped address) comes back as that IPv4 address.
pub fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large enough for.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(crate::net::canonical(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            ))))
        }
        _ => None,
    }
}

/// Writes `addr` into `storage`; returns the length of the `sockaddr` written. An IPv4 address is
/// written as `sockaddr_in` whatever the socket's family: a dual-stack IPv6 socket sends it as
/// IPv4.
pub fn to_storage(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let a = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_port = v4.port().to_be();
            a.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            a.sin6_port = v6.port().to_be();
            a.sin6_flowinfo = v6.flowinfo();
            a.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            a.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::zeroed;

    #[test]
    fn addresses_round_trip_through_storage() {
        for addr in ["127.0.0.1:5004", "[::1]:6000", "[fe80::1%2]:7"] {
            let addr: SocketAddr = addr.parse().unwrap();
            // SAFETY: zeroed storage is valid.
            let mut s: libc::sockaddr_storage = unsafe { zeroed() };
            to_storage(addr, &mut s);
            assert_eq!(from_storage(&s), Some(addr));
        }
    }

    #[test]
    fn v4_mapped_addresses_come_back_as_ipv4() {
        // SAFETY: zeroed storage is valid.
        let mut s: libc::sockaddr_storage = unsafe { zeroed() };
        to_storage("[::ffff:10.0.0.7]:5004".parse().unwrap(), &mut s);
        assert_eq!(from_storage(&s), Some("10.0.0.7:5004".parse().unwrap()));
    }
}
