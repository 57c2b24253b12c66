//! The eBPF fast path of edge-sfu: in-kernel fan-out of plain-RTP legs. Built out in its own issue;
//! until then the SFU reports the kernel path as unavailable and serves every leg in userspace.

/// Whether this build carries the in-kernel forwarding path.
pub const KERNEL_PATH_AVAILABLE: bool = false;
