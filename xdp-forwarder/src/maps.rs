//! Rust mirrors of the map keys and values in `bpf/maps.h`.
//!
//! Every struct is `#[repr(C)]` with the same explicit padding as its C twin; the unit tests at
//! the bottom check sizes and field offsets against the numbers the C compiler gives the same
//! declarations. Addresses, ports and SSRCs are kept in network byte order (as on the wire);
//! counters, indices and configuration in host byte order.

use std::net::IpAddr;

/// Outputs per fan-out key (`MAX_OUTPUTS`; the unrolled loop in `fanout.c` has this many steps).
pub const MAX_OUTPUTS: usize = 16;
/// Per-output counter slots in each program's `output_counters` array (`MAX_OUTPUT_COUNTERS`).
pub const MAX_OUTPUT_COUNTERS: u32 = 4096;
/// Capacity of the admitted-flow table (`MAX_FLOWS`).
pub const MAX_FLOWS: u32 = 65536;
/// Capacity of the port sets (`MAX_PORTS`).
pub const MAX_PORTS: u32 = 1024;
/// Capacity of the fan-out and rewrite tables (`MAX_FANOUT_KEYS`).
pub const MAX_FANOUT_KEYS: u32 = 4096;
/// `family` value of an IPv4 entry (`FAMILY_V4`).
pub const FAMILY_V4: u8 = 4;
/// `family` value of an IPv6 entry (`FAMILY_V6`).
pub const FAMILY_V6: u8 = 6;
/// `FanoutOutput::pt` value that keeps the packet's payload type (`PT_KEEP`).
pub const PT_KEEP: u8 = 0xff;
/// `FanoutValue::flags` bit: restore the original after the copies and pass it up the stack.
pub const FANOUT_F_PASS_ORIGINAL: u32 = 1;

/// Index of each counter in `guard_stats` (`enum guard_stat`).
pub mod guard_stat {
    /// Admitted 5-tuple, passed.
    pub const PASS_ADMITTED: u32 = 0;
    /// STUN binding request within its source's rate, passed.
    pub const PASS_STUN: u32 = 1;
    /// To a media port from a 5-tuple never admitted, dropped.
    pub const DROP_UNKNOWN_SOURCE: u32 = 2;
    /// STUN binding request over its source's rate, dropped.
    pub const DROP_STUN_RATE_LIMITED: u32 = 3;
    /// Bad UDP length or inconsistent STUN header, dropped.
    pub const DROP_MALFORMED: u32 = 4;
    /// IPv4 options or a first fragment to a media port, passed untouched.
    pub const PASS_UNSUPPORTED: u32 = 5;
    /// Size of the array.
    pub const MAX: u32 = 8;
}

/// Index of each counter in `fanout_stats` / `rewrite_stats` (`enum fwd_stat`).
pub mod fwd_stat {
    /// RTP packet with a key: copied / rewritten.
    pub const MATCHED: u32 = 0;
    /// To a forwarding port but short, not RTP version 2, or RTCP: untouched.
    pub const PASS_NOT_RTP: u32 = 1;
    /// RTP to a forwarding port whose SSRC has no key: untouched.
    pub const PASS_NO_KEY: u32 = 2;
    /// IP options, fragments or GSO: untouched.
    pub const PASS_UNSUPPORTED: u32 = 3;
    /// Inconsistent IP/UDP lengths: untouched.
    pub const PASS_MALFORMED: u32 = 4;
    /// Original restored and passed up after its copies.
    pub const PASS_ORIGINAL: u32 = 5;
    /// Original dropped after its copies.
    pub const CONSUMED: u32 = 6;
    /// Size of the array.
    pub const MAX: u32 = 8;
}

/// An address in the 16-byte map form: IPv4 in the first 4 bytes, the rest zero.
pub fn addr_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, FAMILY_V4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

/// `struct flow_key`: an admitted UDP 5-tuple as it arrives (source = peer, destination = SFU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Peer address (network order, IPv4 in the first 4 bytes).
    pub src_addr: [u8; 16],
    /// SFU address the peer sends to.
    pub dst_addr: [u8; 16],
    /// Peer port, network byte order.
    pub src_port: u16,
    /// SFU media port, network byte order.
    pub dst_port: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Explicit padding, zero.
    pub pad: [u8; 3],
}

/// `struct src_key`: key of a source's STUN token bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SrcKey {
    /// Source address.
    pub addr: [u8; 16],
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Explicit padding, zero.
    pub pad: [u8; 3],
}

/// `struct stun_bucket`: one source's STUN token bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StunBucket {
    /// `bpf_ktime_get_ns()` of the last refill.
    pub last_ns: u64,
    /// Tokens times 1000.
    pub tokens_milli: u64,
}

/// `struct guard_config`: the single entry of `guard_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardConfig {
    /// Refill rate of each source's bucket, requests per second.
    pub stun_rate_per_sec: u32,
    /// Bucket size; a new source starts with a full bucket.
    pub stun_burst: u32,
}

/// `struct counter`: a per-CPU packets/bytes pair.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes (whole frames).
    pub bytes: u64,
}

/// `struct fanout_key`: UDP destination port and RTP SSRC of the incoming plain copy.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FanoutKeyRaw {
    /// Network byte order.
    pub dst_port: u16,
    /// Explicit padding, zero.
    pub pad: [u8; 2],
    /// Network byte order.
    pub ssrc: u32,
}

/// `struct fanout_output`: how one copy leaves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutOutput {
    /// New IP destination.
    pub dst_addr: [u8; 16],
    /// New IP source.
    pub src_addr: [u8; 16],
    /// Next-hop MAC; all zero means "bpf_fib_lookup per packet".
    pub dst_mac: [u8; 6],
    /// Source MAC, used with `dst_mac`.
    pub src_mac: [u8; 6],
    /// Egress interface index (0 only with fib lookup).
    pub ifindex: u32,
    /// New RTP SSRC, network byte order.
    pub ssrc: u32,
    /// New UDP destination port, network byte order.
    pub dst_port: u16,
    /// New UDP source port, network byte order.
    pub src_port: u16,
    /// Slot in `output_counters`.
    pub counter_idx: u32,
    /// New payload type, or [`PT_KEEP`].
    pub pt: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Explicit padding, zero.
    pub pad: [u8; 2],
}

/// `struct fanout_value`: the outputs of one key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutValue {
    /// Outputs in use.
    pub count: u32,
    /// `FANOUT_F_*` bits.
    pub flags: u32,
    /// The outputs; entries at `count..` are ignored.
    pub outputs: [FanoutOutput; MAX_OUTPUTS],
}

/// `struct output_counter`: per-CPU counters of one output.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputCounterRaw {
    /// Copies handed to the egress interface.
    pub packets: u64,
    /// Their bytes, L2 header included.
    pub bytes: u64,
    /// Copies not sent: no route, no neighbour, forwarding disabled.
    pub fib_errors: u64,
    /// Copies not sent: family mismatch, rewrite or redirect failure.
    pub tx_errors: u64,
}

// SAFETY: plain `#[repr(C)]` data without implicit padding (checked by the tests below) and
// without pointers; any byte pattern is a valid value.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for SrcKey {}
// SAFETY: as above.
unsafe impl aya::Pod for StunBucket {}
// SAFETY: as above.
unsafe impl aya::Pod for GuardConfig {}
// SAFETY: as above.
unsafe impl aya::Pod for Counter {}
// SAFETY: as above.
unsafe impl aya::Pod for FanoutKeyRaw {}
// SAFETY: as above.
unsafe impl aya::Pod for FanoutOutput {}
// SAFETY: as above.
unsafe impl aya::Pod for FanoutValue {}
// SAFETY: as above.
unsafe impl aya::Pod for OutputCounterRaw {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    // The expected numbers are what clang gives the declarations in bpf/maps.h (see
    // `c_layout_matches` below, which asks clang itself when it is installed).

    #[test]
    fn flow_key_layout() {
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(offset_of!(FlowKey, src_addr), 0);
        assert_eq!(offset_of!(FlowKey, dst_addr), 16);
        assert_eq!(offset_of!(FlowKey, src_port), 32);
        assert_eq!(offset_of!(FlowKey, dst_port), 34);
        assert_eq!(offset_of!(FlowKey, family), 36);
        assert_eq!(offset_of!(FlowKey, pad), 37);
    }

    #[test]
    fn guard_value_layouts() {
        assert_eq!(size_of::<SrcKey>(), 20);
        assert_eq!(offset_of!(SrcKey, family), 16);
        assert_eq!(offset_of!(SrcKey, pad), 17);
        assert_eq!(size_of::<StunBucket>(), 16);
        assert_eq!(offset_of!(StunBucket, tokens_milli), 8);
        assert_eq!(size_of::<GuardConfig>(), 8);
        assert_eq!(offset_of!(GuardConfig, stun_burst), 4);
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(offset_of!(Counter, bytes), 8);
    }

    #[test]
    fn fanout_layouts() {
        assert_eq!(size_of::<FanoutKeyRaw>(), 8);
        assert_eq!(offset_of!(FanoutKeyRaw, pad), 2);
        assert_eq!(offset_of!(FanoutKeyRaw, ssrc), 4);

        assert_eq!(size_of::<FanoutOutput>(), 64);
        assert_eq!(offset_of!(FanoutOutput, dst_addr), 0);
        assert_eq!(offset_of!(FanoutOutput, src_addr), 16);
        assert_eq!(offset_of!(FanoutOutput, dst_mac), 32);
        assert_eq!(offset_of!(FanoutOutput, src_mac), 38);
        assert_eq!(offset_of!(FanoutOutput, ifindex), 44);
        assert_eq!(offset_of!(FanoutOutput, ssrc), 48);
        assert_eq!(offset_of!(FanoutOutput, dst_port), 52);
        assert_eq!(offset_of!(FanoutOutput, src_port), 54);
        assert_eq!(offset_of!(FanoutOutput, counter_idx), 56);
        assert_eq!(offset_of!(FanoutOutput, pt), 60);
        assert_eq!(offset_of!(FanoutOutput, family), 61);
        assert_eq!(offset_of!(FanoutOutput, pad), 62);

        assert_eq!(size_of::<FanoutValue>(), 8 + 64 * MAX_OUTPUTS);
        assert_eq!(offset_of!(FanoutValue, count), 0);
        assert_eq!(offset_of!(FanoutValue, flags), 4);
        assert_eq!(offset_of!(FanoutValue, outputs), 8);

        assert_eq!(size_of::<OutputCounterRaw>(), 32);
        assert_eq!(offset_of!(OutputCounterRaw, bytes), 8);
        assert_eq!(offset_of!(OutputCounterRaw, fib_errors), 16);
        assert_eq!(offset_of!(OutputCounterRaw, tx_errors), 24);
    }

    #[test]
    fn addr_bytes_places_ipv4_first() {
        let (b, f) = addr_bytes("10.200.1.2".parse().expect("literal"));
        assert_eq!(f, FAMILY_V4);
        assert_eq!(&b[..4], &[10, 200, 1, 2]);
        assert!(b[4..].iter().all(|&x| x == 0));
        let (b, f) = addr_bytes("fd00:200::1".parse().expect("literal"));
        assert_eq!(f, FAMILY_V6);
        assert_eq!(b[0], 0xfd);
        assert_eq!(b[15], 1);
    }

    /// Asks clang for the C side of the layout (sizeof/offsetof of every field in maps.h, as a
    /// host program with the same headers) and compares it with the Rust side. Skipped, loudly,
    /// when clang is not installed.
    #[test]
    fn c_layout_matches() {
        use std::process::Command;

        let manifest = env!("CARGO_MANIFEST_DIR");
        let dir = std::env::temp_dir().join(format!("xdp-fwd-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let src = dir.join("layout.c");
        let bin = dir.join("layout");
        let fields: &[(&str, &str)] = &[
            ("flow_key", "src_addr"),
            ("flow_key", "dst_addr"),
            ("flow_key", "src_port"),
            ("flow_key", "dst_port"),
            ("flow_key", "family"),
            ("src_key", "family"),
            ("stun_bucket", "tokens_milli"),
            ("guard_config", "stun_burst"),
            ("counter", "bytes"),
            ("fanout_key", "ssrc"),
            ("fanout_output", "dst_mac"),
            ("fanout_output", "src_mac"),
            ("fanout_output", "ifindex"),
            ("fanout_output", "ssrc"),
            ("fanout_output", "dst_port"),
            ("fanout_output", "src_port"),
            ("fanout_output", "counter_idx"),
            ("fanout_output", "pt"),
            ("fanout_output", "family"),
            ("fanout_value", "flags"),
            ("fanout_value", "outputs"),
            ("output_counter", "fib_errors"),
            ("output_counter", "tx_errors"),
        ];
        let structs = [
            "flow_key",
            "src_key",
            "stun_bucket",
            "guard_config",
            "counter",
            "fanout_key",
            "fanout_output",
            "fanout_value",
            "output_counter",
        ];
        let mut c = String::from(
            "#include <stdio.h>\n#include <stddef.h>\n#include \"maps.h\"\nint main(void){\n",
        );
        for s in structs {
            c += &format!("printf(\"size {s} %zu\\n\", sizeof(struct {s}));\n");
        }
        for (s, f) in fields {
            c += &format!("printf(\"off {s}.{f} %zu\\n\", offsetof(struct {s}, {f}));\n");
        }
        c += "return 0;}\n";
        std::fs::write(&src, c).expect("write layout.c");
        let built = Command::new("clang")
            .arg("-I")
            .arg(format!("{manifest}/bpf"))
            .arg(&src)
            .arg("-o")
            .arg(&bin)
            .status();
        match built {
            Ok(s) if s.success() => {}
            _ => {
                eprintln!(
                    "\n===== SKIPPED: c_layout_matches: clang could not build the probe =====\n"
                );
                let _ = std::fs::remove_dir_all(&dir);
                return;
            }
        }
        let out = Command::new(&bin).output().expect("run layout probe");
        let _ = std::fs::remove_dir_all(&dir);
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |what: &str| -> usize {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{what} ")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("probe did not print {what}"))
        };
        assert_eq!(get("size flow_key"), size_of::<FlowKey>());
        assert_eq!(get("size src_key"), size_of::<SrcKey>());
        assert_eq!(get("size stun_bucket"), size_of::<StunBucket>());
        assert_eq!(get("size guard_config"), size_of::<GuardConfig>());
        assert_eq!(get("size counter"), size_of::<Counter>());
        assert_eq!(get("size fanout_key"), size_of::<FanoutKeyRaw>());
        assert_eq!(get("size fanout_output"), size_of::<FanoutOutput>());
        assert_eq!(get("size fanout_value"), size_of::<FanoutValue>());
        assert_eq!(get("size output_counter"), size_of::<OutputCounterRaw>());
        assert_eq!(get("off flow_key.src_addr"), offset_of!(FlowKey, src_addr));
        assert_eq!(get("off flow_key.dst_addr"), offset_of!(FlowKey, dst_addr));
        assert_eq!(get("off flow_key.src_port"), offset_of!(FlowKey, src_port));
        assert_eq!(get("off flow_key.dst_port"), offset_of!(FlowKey, dst_port));
        assert_eq!(get("off flow_key.family"), offset_of!(FlowKey, family));
        assert_eq!(get("off src_key.family"), offset_of!(SrcKey, family));
        assert_eq!(
            get("off stun_bucket.tokens_milli"),
            offset_of!(StunBucket, tokens_milli)
        );
        assert_eq!(
            get("off guard_config.stun_burst"),
            offset_of!(GuardConfig, stun_burst)
        );
        assert_eq!(get("off counter.bytes"), offset_of!(Counter, bytes));
        assert_eq!(get("off fanout_key.ssrc"), offset_of!(FanoutKeyRaw, ssrc));
        assert_eq!(
            get("off fanout_output.dst_mac"),
            offset_of!(FanoutOutput, dst_mac)
        );
        assert_eq!(
            get("off fanout_output.src_mac"),
            offset_of!(FanoutOutput, src_mac)
        );
        assert_eq!(
            get("off fanout_output.ifindex"),
            offset_of!(FanoutOutput, ifindex)
        );
        assert_eq!(
            get("off fanout_output.ssrc"),
            offset_of!(FanoutOutput, ssrc)
        );
        assert_eq!(
            get("off fanout_output.dst_port"),
            offset_of!(FanoutOutput, dst_port)
        );
        assert_eq!(
            get("off fanout_output.src_port"),
            offset_of!(FanoutOutput, src_port)
        );
        assert_eq!(
            get("off fanout_output.counter_idx"),
            offset_of!(FanoutOutput, counter_idx)
        );
        assert_eq!(get("off fanout_output.pt"), offset_of!(FanoutOutput, pt));
        assert_eq!(
            get("off fanout_output.family"),
            offset_of!(FanoutOutput, family)
        );
        assert_eq!(
            get("off fanout_value.flags"),
            offset_of!(FanoutValue, flags)
        );
        assert_eq!(
            get("off fanout_value.outputs"),
            offset_of!(FanoutValue, outputs)
        );
        assert_eq!(
            get("off output_counter.fib_errors"),
            offset_of!(OutputCounterRaw, fib_errors)
        );
        assert_eq!(
            get("off output_counter.tx_errors"),
            offset_of!(OutputCounterRaw, tx_errors)
        );
    }
}
