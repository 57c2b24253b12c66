//! Small system queries: capabilities, interface index and MAC address. Each works in the
//! network namespace of the calling thread (sockets and netlink are per namespace; `/sys` is
//! not, so it is not used).

use std::ffi::CString;

use crate::Error;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Checks that the calling thread may load BPF programs and attach them to interfaces.
pub(crate) fn check_privileges() -> Result<(), Error> {
    let eff = match effective_caps() {
        Some(eff) => eff,
        // No procfs: fall back to the uid.
        None if unsafe_geteuid() == 0 => return Ok(()),
        None => {
            return Err(Error::NotPermitted {
                missing: "CAP_BPF, CAP_NET_ADMIN".to_string(),
            })
        }
    };
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NotPermitted {
            missing: missing.join(", "),
        })
    }
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status")
        .or_else(|_| std::fs::read_to_string("/proc/self/status"))
        .ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The index of interface `name`, or [`Error::InterfaceMissing`].
pub(crate) fn ifindex(name: &str) -> Result<u32, Error> {
    let missing = || Error::InterfaceMissing {
        name: name.to_string(),
    };
    let c = CString::new(name).map_err(|_| missing())?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(missing())
    } else {
        Ok(idx)
    }
}

/// The hardware (MAC) address of interface `name`.
pub(crate) fn hw_addr(name: &str) -> Result<[u8; 6], Error> {
    let missing = || Error::InterfaceMissing {
        name: name.to_string(),
    };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(missing());
    }
    // SAFETY: plain socket(2) call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(missing());
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name; SIOCGIFHWADDR fills ifru_hwaddr.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    // SAFETY: `fd` is a descriptor we own.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(missing());
    }
    // SAFETY: after a successful SIOCGIFHWADDR the union holds a sockaddr.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = src as u8;
    }
    Ok(mac)
}
