//! Test fixtures: network namespaces and veth pairs created per test (removed on drop, panics
//! included), threads that enter a namespace, raw Ethernet frames built and checked by hand.
//!
//! Addresses are used ONLY inside the test namespaces (10.200.0.0/16 and fd00:200::/32); no
//! packet leaves them.
#![allow(dead_code)]

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

/// Datagrams or frames, in arrival order.
pub type Packets = Vec<Vec<u8>>;

/// Returns why this test cannot run here, if it cannot.
pub fn skip_reason() -> Option<String> {
    if !xdp_forwarder::KERNEL_PATH_AVAILABLE {
        return Some("xdp-forwarder was built without its BPF programs (no clang)".into());
    }
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, BPF)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 `ip` not found".into());
    }
    None
}

/// Prints a loud banner straight to stderr (not through the test harness's output capture, so
/// it shows in a plain `cargo test`) and returns from the test when it cannot run here.
#[macro_export]
macro_rules! require_root {
    ($name:expr) => {
        if let Some(reason) = common::skip_reason() {
            use std::io::Write as _;
            let _ = std::io::stderr().write_all(
                format!(
                    "\n==================================================================\n\
                     SKIPPED: {}: {}\n\
                     ==================================================================\n",
                    $name, reason
                )
                .as_bytes(),
            );
            return;
        }
    };
}

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip ARGS` and returns stdout.
pub fn ip_out(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Moves the calling thread into network namespace `ns`.
pub fn enter_netns(ns: &str) {
    let path = CString::new(format!("/run/netns/{ns}")).expect("path");
    // SAFETY: valid C string; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(
        fd >= 0,
        "open /run/netns/{ns}: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd refers to a network namespace.
    let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    let err = std::io::Error::last_os_error();
    // SAFETY: we own fd.
    unsafe { libc::close(fd) };
    assert_eq!(rc, 0, "setns {ns}: {err}");
}

/// Spawns a thread that runs `f` inside namespace `ns`.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns);
        f()
    })
}

pub const MAC_A0: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];
pub const MAC_B0: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x01];
pub const MAC_B1: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x02];
pub const MAC_C0: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 0x01];

pub const A_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 1);
pub const B0_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 2);
pub const B1_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 1);
pub const C_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 2);
pub const C2_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 3);
pub const A_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 1);
pub const B0_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 1, 0, 0, 0, 0, 2);
pub const B1_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 2, 0, 0, 0, 0, 1);
pub const C_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 2, 0, 0, 0, 0, 2);
pub const C2_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 2, 0, 0, 0, 0, 3);

/// Three namespaces, A (sender) -- B (SFU, programs attached) -- C (receivers):
///
/// ```text
///  A: a0 10.200.1.1 fd00:200:1::1  <->  B: b0 10.200.1.2 fd00:200:1::2
///  B: b1 10.200.2.1 fd00:200:2::1  <->  C: c0 10.200.2.2, .3  fd00:200:2::2, ::3
/// ```
///
/// B has IP forwarding on (bpf_fib_lookup needs it) and permanent neighbour entries for C's
/// and A's addresses, so fib lookups succeed without ARP/ND traffic. Everything is deleted on
/// drop.
pub struct Topo {
    pub ns_a: String,
    pub ns_b: String,
    pub ns_c: String,
    pub a0: String,
    pub b0: String,
    pub b1: String,
    pub c0: String,
}

impl Topo {
    /// `tag`: 1-3 characters unique per test in the crate.
    pub fn new(tag: &str) -> Topo {
        let id = format!("{}{}", std::process::id() % 100_000, tag);
        let t = Topo {
            ns_a: format!("xfw-{id}-a"),
            ns_b: format!("xfw-{id}-b"),
            ns_c: format!("xfw-{id}-c"),
            a0: format!("a{id}"),
            b0: format!("b{id}"),
            b1: format!("d{id}"),
            c0: format!("c{id}"),
        };
        // From here on, Drop cleans up whatever got created.
        for ns in [&t.ns_a, &t.ns_b, &t.ns_c] {
            ip(&["netns", "add", ns]);
        }
        ip(&[
            "link", "add", &t.a0, "netns", &t.ns_a, "type", "veth", "peer", "name", &t.b0, "netns",
            &t.ns_b,
        ]);
        ip(&[
            "link", "add", &t.b1, "netns", &t.ns_b, "type", "veth", "peer", "name", &t.c0, "netns",
            &t.ns_c,
        ]);
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        for (ns, dev, m, v4s, v6s) in [
            (&t.ns_a, &t.a0, MAC_A0, vec![A_V4], vec![A_V6]),
            (&t.ns_b, &t.b0, MAC_B0, vec![B0_V4], vec![B0_V6]),
            (&t.ns_b, &t.b1, MAC_B1, vec![B1_V4], vec![B1_V6]),
            (&t.ns_c, &t.c0, MAC_C0, vec![C_V4, C2_V4], vec![C_V6, C2_V6]),
        ] {
            ip(&["-n", ns, "link", "set", dev, "address", &mac(m)]);
            for a in v4s {
                ip(&["-n", ns, "addr", "add", &format!("{a}/24"), "dev", dev]);
            }
            for a in v6s {
                ip(&[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{a}/64"),
                    "dev",
                    dev,
                    "nodad",
                ]);
            }
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        for (ns, dev, addrs, m) in [
            (
                &t.ns_b,
                &t.b1,
                vec![IpAddr::V4(C_V4), C2_V4.into(), C_V6.into(), C2_V6.into()],
                MAC_C0,
            ),
            (&t.ns_b, &t.b0, vec![IpAddr::V4(A_V4), A_V6.into()], MAC_A0),
            (
                &t.ns_c,
                &t.c0,
                vec![IpAddr::V4(B1_V4), B1_V6.into()],
                MAC_B1,
            ),
            (
                &t.ns_a,
                &t.a0,
                vec![IpAddr::V4(B0_V4), B0_V6.into()],
                MAC_B0,
            ),
        ] {
            for a in addrs {
                ip(&[
                    "-n",
                    ns,
                    "neigh",
                    "replace",
                    &a.to_string(),
                    "lladdr",
                    &mac(m),
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ]);
            }
        }
        let out = Command::new("ip")
            .args(["netns", "exec", &t.ns_b, "sh", "-c"])
            .arg(
                "echo 1 > /proc/sys/net/ipv4/conf/all/forwarding && \
                 echo 1 > /proc/sys/net/ipv6/conf/all/forwarding",
            )
            .output()
            .expect("sysctl");
        assert!(out.status.success(), "enable forwarding in B");
        t
    }

    /// Interface index of `dev` in namespace `ns`.
    pub fn ifindex(ns: &str, dev: &str) -> u32 {
        let out = ip_out(&["-n", ns, "-o", "link", "show", "dev", dev]);
        out.split(':')
            .next()
            .and_then(|s| s.trim().parse().ok())
            .expect("ifindex")
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends (and their peers).
        for ns in [&self.ns_a, &self.ns_b, &self.ns_c] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

// ---- frames -------------------------------------------------------------------------------

/// Options for hostile frames.
#[derive(Clone, Copy, Default)]
pub struct FrameOpts {
    /// IPv4 options bytes to add (multiple of 4).
    pub ip_options: usize,
    /// IPv4 More-Fragments flag.
    pub more_fragments: bool,
    /// IPv4 fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// Override the UDP length field.
    pub udp_len: Option<u16>,
    /// Leave the UDP checksum zero (IPv4 only).
    pub no_udp_csum: bool,
    /// IPv6 destination options headers (8 bytes each, PadN) between the fixed header and UDP.
    pub ipv6_dest_options: usize,
}

fn sum16(data: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        s += u32::from(*b) << 8;
    }
    s
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// UDP checksum (as it must appear in the header) over the pseudo header and `udp` (header with
/// a zero checksum field + payload).
pub fn udp_checksum(src: IpAddr, dst: IpAddr, udp: &[u8]) -> u16 {
    let mut s = 0u32;
    match (src, dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            s += sum16(&a.octets()) + sum16(&b.octets());
            s += 17 + udp.len() as u32;
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            s += sum16(&a.octets()) + sum16(&b.octets());
            s += 17 + udp.len() as u32;
        }
        _ => panic!("mixed families"),
    }
    s += sum16(udp);
    let c = !fold(s);
    if c == 0 {
        0xffff
    } else {
        c
    }
}

/// Builds an Ethernet + IPv4/IPv6 + UDP frame with correct checksums (unless told otherwise).
#[allow(clippy::too_many_arguments)]
pub fn udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    opts: FrameOpts,
) -> Vec<u8> {
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    let ulen = opts.udp_len.unwrap_or((8 + payload.len()) as u16);
    udp.extend_from_slice(&ulen.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    if !opts.no_udp_csum {
        let c = udp_checksum(src, dst, &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
    }
    let mut f = Vec::with_capacity(14 + 60 + udp.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let ihl = 5 + opts.ip_options / 4;
            let tot = (ihl * 4 + udp.len()) as u16;
            let mut ip = vec![0u8; ihl * 4];
            ip[0] = 0x40 | ihl as u8;
            ip[2..4].copy_from_slice(&tot.to_be_bytes());
            ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
            let mut frag = opts.frag_offset & 0x1fff;
            if opts.more_fragments {
                frag |= 0x2000;
            }
            ip[6..8].copy_from_slice(&frag.to_be_bytes());
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            // Options: NOP padding (harmless, accepted by the stack).
            for b in ip.iter_mut().skip(20) {
                *b = 1;
            }
            let c = !fold(sum16(&ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            const DEST_OPTIONS: u8 = 60;
            let ext_len = 8 * opts.ipv6_dest_options;
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&((ext_len + udp.len()) as u16).to_be_bytes());
            ip[6] = if opts.ipv6_dest_options > 0 {
                DEST_OPTIONS
            } else {
                17
            };
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            for i in 0..opts.ipv6_dest_options {
                let next = if i + 1 == opts.ipv6_dest_options {
                    17
                } else {
                    DEST_OPTIONS
                };
                // Next header, length 0 (8 bytes), one PadN option filling the rest.
                ip.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
            }
            f.extend_from_slice(&ip);
        }
        _ => panic!("mixed families"),
    }
    f.extend_from_slice(&udp);
    f
}

/// A parsed UDP frame.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
    /// IPv4 header checksum verifies (always true for IPv6).
    pub ip_csum_ok: bool,
    /// UDP checksum verifies (or is zero over IPv4).
    pub udp_csum_ok: bool,
}

/// Parses an Ethernet + IPv4 (no options) / IPv6 + UDP frame and checks its checksums.
pub fn parse_frame(f: &[u8]) -> Option<Parsed> {
    if f.len() < 14 {
        return None;
    }
    let mut dst_mac = [0u8; 6];
    let mut src_mac = [0u8; 6];
    dst_mac.copy_from_slice(&f[0..6]);
    src_mac.copy_from_slice(&f[6..12]);
    let et = u16::from_be_bytes([f[12], f[13]]);
    let (src, dst, l4, ip_ok) = match et {
        0x0800 => {
            let ip = f.get(14..34)?;
            if ip[9] != 17 || ip[0] != 0x45 {
                return None;
            }
            let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            let s = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let d = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let ok = fold(sum16(ip)) == 0xffff;
            (IpAddr::V4(s), IpAddr::V4(d), f.get(34..14 + tot)?, ok)
        }
        0x86dd => {
            let ip = f.get(14..54)?;
            if ip[6] != 17 {
                return None;
            }
            let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            (
                IpAddr::V6(s.into()),
                IpAddr::V6(d.into()),
                f.get(54..54 + plen)?,
                true,
            )
        }
        _ => return None,
    };
    if l4.len() < 8 {
        return None;
    }
    let check = u16::from_be_bytes([l4[6], l4[7]]);
    let mut zeroed = l4.to_vec();
    zeroed[6] = 0;
    zeroed[7] = 0;
    let udp_ok = (check == 0 && src.is_ipv4()) || udp_checksum(src, dst, &zeroed) == check;
    Some(Parsed {
        dst_mac,
        src_mac,
        src,
        dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        payload: l4[8..].to_vec(),
        ip_csum_ok: ip_ok,
        udp_csum_ok: udp_ok,
    })
}

// ---- RTP / STUN ---------------------------------------------------------------------------

/// Shape of a test RTP packet.
#[derive(Clone, Copy, Default)]
pub struct RtpShape {
    pub csrcs: u8,
    pub extension_words: u16,
    pub padding: u8,
    pub marker: bool,
}

/// An RTP packet of `total` bytes (at least the headers), payload bytes derived from `seq`.
pub fn rtp_packet(pt: u8, seq: u16, ssrc: u32, total: usize, shape: RtpShape) -> Vec<u8> {
    let mut p = Vec::with_capacity(total);
    let mut b0 = 0x80 | (shape.csrcs & 0x0f);
    if shape.extension_words > 0 {
        b0 |= 0x10;
    }
    if shape.padding > 0 {
        b0 |= 0x20;
    }
    p.push(b0);
    p.push(if shape.marker { 0x80 } else { 0 } | (pt & 0x7f));
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 90).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for i in 0..shape.csrcs {
        p.extend_from_slice(&(0xc5c50000u32 + u32::from(i)).to_be_bytes());
    }
    if shape.extension_words > 0 {
        p.extend_from_slice(&0xbedeu16.to_be_bytes());
        p.extend_from_slice(&shape.extension_words.to_be_bytes());
        for i in 0..shape.extension_words {
            p.extend_from_slice(&(0xe0e00000u32 + u32::from(i)).to_be_bytes());
        }
    }
    let pad = usize::from(shape.padding);
    let mut x = u32::from(seq).wrapping_mul(2654435761);
    while p.len() + pad < total {
        x = x.wrapping_mul(1103515245).wrapping_add(12345);
        p.push((x >> 16) as u8);
    }
    if pad > 0 {
        p.extend(std::iter::repeat_n(0, pad - 1));
        p.push(shape.padding);
    }
    p
}

/// A STUN binding request (20-byte header, no attributes).
pub fn stun_binding_request(txid: u32) -> Vec<u8> {
    let mut p = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    p.extend_from_slice(&[0u8; 8]);
    p.extend_from_slice(&txid.to_be_bytes());
    p
}

// ---- raw sockets --------------------------------------------------------------------------

/// An AF_PACKET socket bound to one interface (of the calling thread's namespace).
pub struct RawSock {
    fd: i32,
    ifindex: i32,
}

impl RawSock {
    pub fn open(dev: &str) -> RawSock {
        let c = CString::new(dev).expect("dev");
        // SAFETY: valid C string.
        let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) } as i32;
        assert!(ifindex > 0, "no interface {dev}");
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        // SAFETY: plain syscall.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto as u16;
        sll.sll_ifindex = ifindex;
        // SAFETY: valid sockaddr_ll and length.
        let rc = unsafe {
            libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        let bufsize: i32 = 8 << 20;
        // SAFETY: valid option pointer/length.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &bufsize as *const _ as *const libc::c_void,
                4,
            );
        }
        RawSock { fd, ifindex }
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: valid buffer.
        let n = unsafe {
            libc::send(
                self.fd,
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        assert_eq!(
            n as usize,
            frame.len(),
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Receives one frame that was received on the interface (not sent by it), or None after
    /// `timeout`.
    pub fn recv_incoming(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if rc <= 0 {
                return None;
            }
            let mut buf = vec![0u8; 2048];
            // SAFETY: sockaddr_ll is plain data.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: valid buffers.
            let n = unsafe {
                libc::recvfrom(
                    self.fd,
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                    &mut sll as *mut _ as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n < 0 {
                return None;
            }
            if sll.sll_pkttype == libc::PACKET_OUTGOING || sll.sll_ifindex != self.ifindex {
                continue;
            }
            buf.truncate(n as usize);
            return Some(buf);
        }
    }
}

impl Drop for RawSock {
    fn drop(&mut self) {
        // SAFETY: we own fd.
        unsafe { libc::close(self.fd) };
    }
}

/// A UDP socket bound in the calling thread's namespace, with a large buffer and a timeout.
pub fn udp_bind(addr: std::net::SocketAddr) -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let bufsize: i32 = 8 << 20;
    use std::os::fd::AsRawFd;
    // SAFETY: valid option pointer/length.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &bufsize as *const _ as *const libc::c_void,
            4,
        );
    }
    s
}

/// Receives datagrams on `sock` until `idle` passes without one; returns them.
pub fn drain(sock: &std::net::UdpSocket, idle: Duration) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(idle)).expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

/// Splits an IPv4 frame without options (as built by [`udp_frame`]) into two fragments, the
/// first carrying `first_len` bytes of IP payload (a multiple of 8).
pub fn ipv4_fragments(frame: &[u8], first_len: usize) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(first_len % 8, 0);
    let eth = &frame[..14];
    let ip = &frame[14..34];
    let payload = &frame[34..];
    let make = |part: &[u8], offset_units: u16, more: bool| {
        let mut h = ip.to_vec();
        h[2..4].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
        let mut frag = offset_units;
        if more {
            frag |= 0x2000;
        }
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h[10] = 0;
        h[11] = 0;
        let c = !fold(sum16(&h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut f = eth.to_vec();
        f.extend_from_slice(&h);
        f.extend_from_slice(part);
        f
    };
    (
        make(&payload[..first_len], 0, true),
        make(&payload[first_len..], (first_len / 8) as u16, false),
    )
}

/// Turns TX checksum offload of `dev` (in the calling thread's namespace) on or off, with the
/// legacy ETHTOOL_STXCSUM ioctl. With it off, the kernel finishes CHECKSUM_PARTIAL skbs in
/// software before the device, so a copy's UDP checksum is complete (and checkable) on the wire.
pub fn set_tx_csum_offload(dev: &str, on: bool) {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    const ETHTOOL_STXCSUM: u32 = 0x17;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let mut val = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    // SAFETY: ifreq is plain data.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(dev.as_bytes()) {
        *d = *s as libc::c_char;
    }
    req.ifr_ifru.ifru_data = &mut val as *mut EthtoolValue as *mut libc::c_char;
    // SAFETY: plain syscalls with valid arguments; fd closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let rc = libc::ioctl(fd, SIOCETHTOOL, &mut req);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(rc, 0, "ETHTOOL_STXCSUM on {dev}: {err}");
    }
}
