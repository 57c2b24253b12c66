//! [`KernelPath`]: loads the embedded BPF objects, attaches them, and updates their maps while
//! traffic flows.

use std::collections::HashMap as StdHashMap;
use std::net::SocketAddr;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues, ProgramArray};
use aya::programs::{tc, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use crate::error::{chain, map_err};
use crate::maps::{
    addr_bytes, fwd_stat, guard_stat, Counter, FanoutKeyRaw, FanoutOutput, FanoutValue, FlowKey,
    GuardConfig, OutputCounterRaw, FANOUT_F_PASS_ORIGINAL, MAX_OUTPUTS, MAX_OUTPUT_COUNTERS,
    PT_KEEP,
};
use crate::{sys, Error};

/// How to attach the XDP program (guard, or rewrite alone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// Native (driver) mode, falling back to generic (SKB) mode with one log line when the
    /// driver has no native XDP (a Raspberry Pi 4's bcmgenet, for one).
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (SKB) mode only.
    Generic,
}

/// The mode an XDP program ended up attached in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedXdpMode {
    /// Run by the driver, before any skb exists.
    Native,
    /// Run by the kernel's generic XDP hook, after the skb is allocated.
    Generic,
}

/// Which side of an interface a TC program sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Packets arriving on the interface (plain RTP ingest).
    Ingress,
    /// Packets leaving through the interface (the plain copy userspace sends).
    Egress,
}

/// Where to attach one instance of the fan-out classifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcHook {
    /// Interface name.
    pub interface: String,
    /// Ingress or egress.
    pub direction: Direction,
}

/// STUN binding-request rate allowed per source IP address by the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StunRate {
    /// Sustained requests per second.
    pub per_sec: u32,
    /// Bucket size: requests a new or idle source may send at once.
    pub burst: u32,
}

impl Default for StunRate {
    fn default() -> Self {
        // ICE keeps a few checks per second per candidate pair; a browser with many pairs
        // bursts higher while gathering.
        StunRate {
            per_sec: 50,
            burst: 100,
        }
    }
}

/// What [`KernelPath::open`] loads and where it attaches it.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The SFU's media interface: the guard, or the 1:1 rewrite when there is no guard, is
    /// attached here as XDP. May be empty when neither is enabled.
    pub media_interface: String,
    /// Load and attach the XDP ingress guard.
    pub guard: bool,
    /// Load the XDP 1:1 rewrite: behind the guard (tail call) when the guard is enabled,
    /// otherwise attached to `media_interface` itself.
    pub rewrite: bool,
    /// Attach the TC fan-out classifier to these hooks (one program, shared maps). Empty: no
    /// fan-out.
    pub fanout: Vec<TcHook>,
    /// XDP attach mode.
    pub xdp_mode: XdpAttachMode,
    /// Initial STUN rate limit of the guard.
    pub stun_rate: StunRate,
}

/// An admitted UDP flow, as the SFU sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The remote end (ICE-validated peer, registered ingest source).
    pub peer: SocketAddr,
    /// The SFU's address and media port the peer sends to.
    pub local: SocketAddr,
}

/// Identifies a fan-out (or rewrite) entry: the UDP destination port and the RTP SSRC of the
/// plain packet the kernel receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FanoutKey {
    /// UDP destination port of the incoming plain copy.
    pub port: u16,
    /// RTP SSRC of the incoming plain copy.
    pub ssrc: u32,
}

/// How a copy finds its next hop's MAC address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// `bpf_fib_lookup` per packet: follows routes and neighbour changes. The kernel answers
    /// only when IP forwarding is enabled on the interface the lookup names (the output's
    /// `interface`, or else the one the packet arrived on) and the neighbour is resolved;
    /// otherwise the copy is not sent and counted in `fib_errors`.
    Fib {
        /// Egress interface to constrain the lookup to; `None` lets the routing table decide.
        interface: Option<String>,
    },
    /// A fixed next-hop MAC on a given interface (the source MAC is the interface's).
    Mac {
        /// Egress interface.
        interface: String,
        /// Destination MAC (the target's, or its gateway's).
        dst_mac: [u8; 6],
    },
}

/// One plain-RTP output: a copy rewritten to these values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Destination address and port (the recorder, ffmpeg, another SFU).
    pub dst: SocketAddr,
    /// Source address and port the copy carries (an address of this host).
    pub src: SocketAddr,
    /// SSRC the copy carries.
    pub ssrc: u32,
    /// Payload type the copy carries; `None` keeps the incoming one.
    pub payload_type: Option<u8>,
    /// Next-hop resolution.
    pub next_hop: NextHop,
}

/// Handle of one output, valid until it is removed; use it to read its counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutputId {
    table: Table,
    slot: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Table {
    Fanout,
    Rewrite,
}

/// Counters of one output (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputCounters {
    /// Copies handed to the egress interface.
    pub packets: u64,
    /// Their bytes, Ethernet header included.
    pub bytes: u64,
    /// Copies not sent because the next hop could not be resolved.
    pub fib_errors: u64,
    /// Copies not sent because of a family mismatch or a rewrite/redirect failure.
    pub tx_errors: u64,
}

/// A packets/bytes pair (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCount {
    /// Packets.
    pub packets: u64,
    /// Bytes (whole frames).
    pub bytes: u64,
}

/// The guard's counters, per reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardCounters {
    /// Passed: admitted 5-tuple.
    pub pass_admitted: PacketCount,
    /// Passed: STUN binding request within its source's rate.
    pub pass_stun: PacketCount,
    /// Dropped: to a media port from a 5-tuple never admitted.
    pub drop_unknown_source: PacketCount,
    /// Dropped: STUN binding request over its source's rate.
    pub drop_stun_rate_limited: PacketCount,
    /// Dropped: bad UDP length or inconsistent STUN header.
    pub drop_malformed: PacketCount,
    /// Passed untouched without the 5-tuple check: IPv4 options or a first fragment to a
    /// media port (the guard does not parse those; userspace still validates what it reads).
    pub pass_unsupported: PacketCount,
}

/// The fan-out or rewrite program's counters, per outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardCounters {
    /// RTP packets with a key (copied / rewritten).
    pub matched: PacketCount,
    /// Untouched: short, not RTP version 2, or RTCP.
    pub pass_not_rtp: PacketCount,
    /// Untouched: RTP whose SSRC has no key on that port.
    pub pass_no_key: PacketCount,
    /// Untouched: IP options, fragments, GSO.
    pub pass_unsupported: PacketCount,
    /// Untouched: inconsistent IP/UDP lengths.
    pub pass_malformed: PacketCount,
    /// Originals restored and passed up after their copies (fan-out only).
    pub pass_original: PacketCount,
    /// Originals dropped after their copies (fan-out only).
    pub consumed: PacketCount,
}

/// Hands out per-output counter slots.
#[derive(Debug, Default)]
struct Slots {
    free: Vec<u32>,
    next: u32,
}

impl Slots {
    fn alloc(&mut self) -> Result<u32, Error> {
        if let Some(s) = self.free.pop() {
            return Ok(s);
        }
        if self.next >= MAX_OUTPUT_COUNTERS {
            return Err(Error::CountersExhausted(MAX_OUTPUT_COUNTERS));
        }
        self.next += 1;
        Ok(self.next - 1)
    }

    fn release(&mut self, slot: u32) {
        self.free.push(slot);
    }
}

struct GuardPart {
    _ebpf: Ebpf,
    ports: HashMap<MapData, u16, u8>,
    flows: HashMap<MapData, FlowKey, u8>,
    config: Array<MapData, GuardConfig>,
    stats: PerCpuArray<MapData, Counter>,
    // Kept so the tail-call slot stays populated for the guard's lifetime.
    _next: ProgramArray<MapData>,
}

struct FwdPart {
    _ebpf: Ebpf,
    ports: HashMap<MapData, u16, u8>,
    counters: PerCpuArray<MapData, OutputCounterRaw>,
    stats: PerCpuArray<MapData, Counter>,
    slots: Slots,
    port_refs: StdHashMap<u16, u32>,
}

struct FanoutEntry {
    flags: u32,
    outputs: Vec<(u32, FanoutOutput)>,
}

/// The loaded and attached kernel path. Dropping it detaches every program (the attachments
/// are BPF links owned by this value, so they also go when the process dies).
pub struct KernelPath {
    guard: Option<GuardPart>,
    fanout: Option<(FwdPart, HashMap<MapData, FanoutKeyRaw, FanoutValue>)>,
    rewrite: Option<(FwdPart, HashMap<MapData, FanoutKeyRaw, FanoutOutput>)>,
    fanout_entries: StdHashMap<FanoutKey, FanoutEntry>,
    rewrite_entries: StdHashMap<FanoutKey, u32>,
    xdp_mode: Option<AttachedXdpMode>,
    nr_cpus: usize,
}

impl std::fmt::Debug for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPath")
            .field("guard", &self.guard.is_some())
            .field("fanout", &self.fanout.is_some())
            .field("rewrite", &self.rewrite.is_some())
            .field("xdp_mode", &self.xdp_mode)
            .field("fanout_keys", &self.fanout_entries.len())
            .field("rewrite_keys", &self.rewrite_entries.len())
            .finish()
    }
}

#[cfg(xdp_bpf_built)]
mod objects {
    pub(super) static GUARD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guard.o"));
    pub(super) static FANOUT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fanout.o"));
    pub(super) static REWRITE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rewrite.o"));
}

/// The three embedded ELF objects.
struct Objects {
    guard: &'static [u8],
    fanout: &'static [u8],
    rewrite: &'static [u8],
}

/// The embedded objects, or why there are none.
fn objects() -> Result<Objects, Error> {
    #[cfg(xdp_bpf_built)]
    {
        Ok(Objects {
            guard: objects::GUARD,
            fanout: objects::FANOUT,
            rewrite: objects::REWRITE,
        })
    }
    #[cfg(not(xdp_bpf_built))]
    {
        match option_env!("XDP_FORWARDER_BPF_MISSING") {
            Some("compile-failed") => Err(Error::BpfCompileFailed),
            _ => Err(Error::BuiltWithoutClang),
        }
    }
}

fn load(program: &'static str, bytes: &[u8]) -> Result<Ebpf, Error> {
    EbpfLoader::new()
        .load(bytes)
        .map_err(|e| load_err(program, e))
}

fn load_err(program: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Load {
        program,
        detail: chain(&e),
        source: Box::new(e),
    }
}

fn missing_map(program: &'static str, map: &'static str) -> Error {
    let detail = format!("{map} not found in the object");
    Error::Load {
        program,
        source: detail.clone().into(),
        detail,
    }
}

fn attach_err(program: &'static str, interface: String, source: ProgramError) -> Error {
    Error::Attach {
        program,
        interface,
        detail: chain(&source),
        source: Box::new(source),
    }
}

fn take<T>(ebpf: &mut Ebpf, program: &'static str, map: &'static str) -> Result<T, Error>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let m = ebpf
        .take_map(map)
        .ok_or_else(|| missing_map(program, map))?;
    T::try_from(m).map_err(|e| load_err(program, e))
}

fn attach_xdp(
    prog: &mut Xdp,
    program: &'static str,
    interface: &str,
    mode: XdpAttachMode,
) -> Result<AttachedXdpMode, Error> {
    let err = |source| attach_err(program, format!("{interface} (xdp)"), source);
    match mode {
        XdpAttachMode::Native => prog
            .attach(interface, XdpMode::Driver)
            .map(|_| AttachedXdpMode::Native)
            .map_err(err),
        XdpAttachMode::Generic => prog
            .attach(interface, XdpMode::Skb)
            .map(|_| AttachedXdpMode::Generic)
            .map_err(err),
        XdpAttachMode::Auto => match prog.attach(interface, XdpMode::Driver) {
            Ok(_) => Ok(AttachedXdpMode::Native),
            Err(native) => {
                tracing::warn!(
                    interface,
                    program,
                    "no native XDP on {interface} ({native}); using generic (SKB) mode"
                );
                prog.attach(interface, XdpMode::Skb)
                    .map(|_| AttachedXdpMode::Generic)
                    .map_err(err)
            }
        },
    }
}

fn attach_tc(prog: &mut SchedClassifier, hook: &TcHook) -> Result<(), Error> {
    let kind = match hook.direction {
        Direction::Ingress => TcAttachType::Ingress,
        Direction::Egress => TcAttachType::Egress,
    };
    let label = match hook.direction {
        Direction::Ingress => "tc ingress",
        Direction::Egress => "tc egress",
    };
    // Kernels >= 6.6: a TCX link, no qdisc needed, detached when its fd closes (process exit
    // included). Older kernels: aya uses netlink, which needs the clsact qdisc.
    match prog.attach(&hook.interface, kind) {
        Ok(_) => Ok(()),
        Err(first) => {
            match tc::qdisc_add_clsact(&hook.interface) {
                Ok(()) => {
                    tracing::info!(interface = %hook.interface, "added the clsact qdisc");
                }
                // Already there (EEXIST) or failing for the reason the attach will report.
                Err(e) => tracing::debug!(interface = %hook.interface, "clsact: {e}"),
            }
            prog.attach_with_options(
                &hook.interface,
                kind,
                tc::TcAttachOptions::Netlink(tc::NlOptions::default()),
            )
            .map(|_| ())
            .map_err(|second| {
                tracing::debug!("tc attach, first attempt: {first}");
                attach_err("fanout", format!("{} ({label})", hook.interface), second)
            })
        }
    }
}

fn sum_counter(values: &PerCpuValues<Counter>) -> PacketCount {
    values
        .iter()
        .fold(PacketCount::default(), |acc, c| PacketCount {
            packets: acc.packets.wrapping_add(c.packets),
            bytes: acc.bytes.wrapping_add(c.bytes),
        })
}

fn read_stats(
    stats: &PerCpuArray<MapData, Counter>,
    map: &'static str,
    idx: u32,
) -> Result<PacketCount, Error> {
    stats
        .get(&idx, 0)
        .map(|v| sum_counter(&v))
        .map_err(map_err(map))
}

fn fwd_counters(
    stats: &PerCpuArray<MapData, Counter>,
    map: &'static str,
) -> Result<ForwardCounters, Error> {
    Ok(ForwardCounters {
        matched: read_stats(stats, map, fwd_stat::MATCHED)?,
        pass_not_rtp: read_stats(stats, map, fwd_stat::PASS_NOT_RTP)?,
        pass_no_key: read_stats(stats, map, fwd_stat::PASS_NO_KEY)?,
        pass_unsupported: read_stats(stats, map, fwd_stat::PASS_UNSUPPORTED)?,
        pass_malformed: read_stats(stats, map, fwd_stat::PASS_MALFORMED)?,
        pass_original: read_stats(stats, map, fwd_stat::PASS_ORIGINAL)?,
        consumed: read_stats(stats, map, fwd_stat::CONSUMED)?,
    })
}

impl FwdPart {
    fn new(mut ebpf: Ebpf, program: &'static str, stats_map: &'static str) -> Result<Self, Error> {
        Ok(FwdPart {
            ports: take(&mut ebpf, program, "fwd_ports")?,
            counters: take(&mut ebpf, program, "output_counters")?,
            stats: take(&mut ebpf, program, stats_map)?,
            _ebpf: ebpf,
            slots: Slots::default(),
            port_refs: StdHashMap::new(),
        })
    }

    /// Takes a counter slot and zeroes it.
    fn alloc_slot(&mut self, nr_cpus: usize) -> Result<u32, Error> {
        let slot = self.slots.alloc()?;
        let zeroed = PerCpuValues::try_from(vec![OutputCounterRaw::default(); nr_cpus])
            .map_err(|io_error| {
                aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                    call: "per-cpu values",
                    io_error,
                })
            })
            .and_then(|zero| self.counters.set(slot, zero, 0));
        if let Err(e) = zeroed {
            self.slots.release(slot);
            return Err(map_err("output_counters")(e));
        }
        Ok(slot)
    }

    fn port_ref(&mut self, port: u16) -> Result<(), Error> {
        let n = self.port_refs.entry(port).or_insert(0);
        if *n == 0 {
            self.ports
                .insert(port, 1, 0)
                .map_err(map_err("fwd_ports"))?;
        }
        *n += 1;
        Ok(())
    }

    fn port_unref(&mut self, port: u16) -> Result<(), Error> {
        if let Some(n) = self.port_refs.get_mut(&port) {
            *n -= 1;
            if *n == 0 {
                self.port_refs.remove(&port);
                self.ports.remove(&port).map_err(map_err("fwd_ports"))?;
            }
        }
        Ok(())
    }

    fn counters(&self, slot: u32) -> Result<OutputCounters, Error> {
        let v = self
            .counters
            .get(&slot, 0)
            .map_err(map_err("output_counters"))?;
        Ok(v.iter()
            .fold(OutputCounters::default(), |a, c| OutputCounters {
                packets: a.packets.wrapping_add(c.packets),
                bytes: a.bytes.wrapping_add(c.bytes),
                fib_errors: a.fib_errors.wrapping_add(c.fib_errors),
                tx_errors: a.tx_errors.wrapping_add(c.tx_errors),
            }))
    }
}

/// Converts an [`Output`] to its map form (counter slot filled in by the caller).
fn output_raw(out: &Output) -> Result<FanoutOutput, Error> {
    let (dst_addr, dst_family) = addr_bytes(out.dst.ip());
    let (src_addr, src_family) = addr_bytes(out.src.ip());
    if dst_family != src_family {
        return Err(Error::InvalidOutput(format!(
            "source {} and destination {} are of different families",
            out.src, out.dst
        )));
    }
    if out.dst.port() == 0 || out.src.port() == 0 {
        return Err(Error::InvalidOutput("port 0".to_string()));
    }
    let pt = match out.payload_type {
        None => PT_KEEP,
        Some(pt) if pt <= 127 => pt,
        Some(pt) => {
            return Err(Error::InvalidOutput(format!(
                "payload type {pt} is not in 0..=127"
            )))
        }
    };
    let (ifindex, dst_mac, src_mac) = match &out.next_hop {
        NextHop::Fib { interface: None } => (0, [0u8; 6], [0u8; 6]),
        NextHop::Fib {
            interface: Some(name),
        } => (sys::ifindex(name)?, [0u8; 6], [0u8; 6]),
        NextHop::Mac { interface, dst_mac } => {
            if dst_mac.iter().all(|&b| b == 0) {
                return Err(Error::InvalidOutput("all-zero next-hop MAC".to_string()));
            }
            (sys::ifindex(interface)?, *dst_mac, sys::hw_addr(interface)?)
        }
    };
    Ok(FanoutOutput {
        dst_addr,
        src_addr,
        dst_mac,
        src_mac,
        ifindex,
        ssrc: out.ssrc.to_be(),
        dst_port: out.dst.port().to_be(),
        src_port: out.src.port().to_be(),
        counter_idx: 0,
        pt,
        family: dst_family,
        pad: [0; 2],
    })
}

fn key_raw(key: FanoutKey) -> FanoutKeyRaw {
    FanoutKeyRaw {
        dst_port: key.port.to_be(),
        pad: [0; 2],
        ssrc: key.ssrc.to_be(),
    }
}

fn flow_key(flow: &Flow) -> Result<FlowKey, Error> {
    let (src_addr, f1) = addr_bytes(flow.peer.ip());
    let (dst_addr, f2) = addr_bytes(flow.local.ip());
    if f1 != f2 {
        return Err(Error::InvalidOutput(format!(
            "flow {} -> {} mixes address families",
            flow.peer, flow.local
        )));
    }
    Ok(FlowKey {
        src_addr,
        dst_addr,
        src_port: flow.peer.port().to_be(),
        dst_port: flow.local.port().to_be(),
        family: f1,
        pad: [0; 3],
    })
}

impl KernelPath {
    /// Loads the enabled programs, attaches them, and returns the handle that owns the
    /// attachments.
    ///
    /// Errors, each meaning "use the userspace path": [`Error::BuiltWithoutClang`] /
    /// [`Error::BpfCompileFailed`] (no embedded objects), [`Error::NotPermitted`] (not root, no
    /// CAP_BPF/CAP_NET_ADMIN), [`Error::InterfaceMissing`], [`Error::Load`] (verifier),
    /// [`Error::Attach`].
    pub fn open(opts: &Options) -> Result<KernelPath, Error> {
        let Objects {
            guard: guard_obj,
            fanout: fanout_obj,
            rewrite: rewrite_obj,
        } = objects()?;
        sys::check_privileges()?;
        if opts.guard || opts.rewrite {
            sys::ifindex(&opts.media_interface)?;
        }
        for hook in &opts.fanout {
            sys::ifindex(&hook.interface)?;
        }
        let nr_cpus = aya::util::nr_cpus().map_err(|(what, e)| {
            load_err(
                "guard",
                std::io::Error::new(e.kind(), format!("{what}: {e}")),
            )
        })?;

        let mut xdp_mode = None;

        // Rewrite first: the guard's tail-call slot needs its fd.
        let mut rewrite_ebpf = None;
        if opts.rewrite {
            let mut ebpf = load("rewrite", rewrite_obj)?;
            let prog: &mut Xdp = ebpf
                .program_mut("rewrite")
                .ok_or_else(|| missing_map("rewrite", "program rewrite"))?
                .try_into()
                .map_err(|e| load_err("rewrite", e))?;
            prog.load().map_err(|e| load_err("rewrite", e))?;
            if !opts.guard {
                xdp_mode = Some(attach_xdp(
                    prog,
                    "rewrite",
                    &opts.media_interface,
                    opts.xdp_mode,
                )?);
            }
            rewrite_ebpf = Some(ebpf);
        }

        let mut guard = None;
        if opts.guard {
            let mut ebpf = load("guard", guard_obj)?;
            let mut next: ProgramArray<MapData> = take(&mut ebpf, "guard", "guard_next")?;
            if let Some(rw) = rewrite_ebpf.as_ref() {
                let prog: &Xdp = rw
                    .program("rewrite")
                    .ok_or_else(|| missing_map("rewrite", "program rewrite"))?
                    .try_into()
                    .map_err(|e| load_err("rewrite", e))?;
                let fd = prog.fd().map_err(|e| load_err("rewrite", e))?;
                next.set(0, fd, 0).map_err(map_err("guard_next"))?;
            }
            let ports = take(&mut ebpf, "guard", "guard_ports")?;
            let flows = take(&mut ebpf, "guard", "guard_flows")?;
            let mut config: Array<MapData, GuardConfig> = take(&mut ebpf, "guard", "guard_config")?;
            let stats = take(&mut ebpf, "guard", "guard_stats")?;
            config
                .set(
                    0,
                    GuardConfig {
                        stun_rate_per_sec: opts.stun_rate.per_sec,
                        stun_burst: opts.stun_rate.burst,
                    },
                    0,
                )
                .map_err(map_err("guard_config"))?;
            let prog: &mut Xdp = ebpf
                .program_mut("guard")
                .ok_or_else(|| missing_map("guard", "program guard"))?
                .try_into()
                .map_err(|e| load_err("guard", e))?;
            prog.load().map_err(|e| load_err("guard", e))?;
            xdp_mode = Some(attach_xdp(
                prog,
                "guard",
                &opts.media_interface,
                opts.xdp_mode,
            )?);
            guard = Some(GuardPart {
                _ebpf: ebpf,
                ports,
                flows,
                config,
                stats,
                _next: next,
            });
        }

        let rewrite = match rewrite_ebpf {
            Some(mut ebpf) => {
                let map = take(&mut ebpf, "rewrite", "rewrite_map")?;
                Some((FwdPart::new(ebpf, "rewrite", "rewrite_stats")?, map))
            }
            None => None,
        };

        let mut fanout = None;
        if !opts.fanout.is_empty() {
            let mut ebpf = load("fanout", fanout_obj)?;
            let map = take(&mut ebpf, "fanout", "fanout_map")?;
            let prog: &mut SchedClassifier = ebpf
                .program_mut("fanout")
                .ok_or_else(|| missing_map("fanout", "program fanout"))?
                .try_into()
                .map_err(|e| load_err("fanout", e))?;
            prog.load().map_err(|e| load_err("fanout", e))?;
            for hook in &opts.fanout {
                attach_tc(prog, hook)?;
            }
            fanout = Some((FwdPart::new(ebpf, "fanout", "fanout_stats")?, map));
        }

        tracing::info!(
            guard = opts.guard,
            rewrite = opts.rewrite,
            fanout_hooks = opts.fanout.len(),
            xdp_mode = ?xdp_mode,
            "kernel path attached"
        );
        Ok(KernelPath {
            guard,
            fanout,
            rewrite,
            fanout_entries: StdHashMap::new(),
            rewrite_entries: StdHashMap::new(),
            xdp_mode,
            nr_cpus,
        })
    }

    /// The mode the XDP program was attached in, if one was attached.
    pub fn xdp_mode(&self) -> Option<AttachedXdpMode> {
        self.xdp_mode
    }

    fn guard_mut(&mut self) -> Result<&mut GuardPart, Error> {
        self.guard.as_mut().ok_or(Error::NotEnabled("guard"))
    }

    /// Adds a UDP port to the set the guard protects.
    pub fn add_media_port(&mut self, port: u16) -> Result<(), Error> {
        self.guard_mut()?
            .ports
            .insert(port, 1, 0)
            .map_err(map_err("guard_ports"))
    }

    /// Removes a UDP port from the set the guard protects (its traffic then passes untouched).
    pub fn remove_media_port(&mut self, port: u16) -> Result<(), Error> {
        self.guard_mut()?
            .ports
            .remove(&port)
            .map_err(map_err("guard_ports"))
    }

    /// Makes the guard protect exactly `ports`: adds the missing ones first, then removes the
    /// others, so a port in both the old and the new set is never unprotected.
    pub fn set_media_ports(&mut self, ports: &[u16]) -> Result<(), Error> {
        let g = self.guard_mut()?;
        for &port in ports {
            g.ports.insert(port, 1, 0).map_err(map_err("guard_ports"))?;
        }
        let current: Vec<u16> = g.ports.keys().filter_map(Result::ok).collect();
        for port in current {
            if !ports.contains(&port) {
                g.ports.remove(&port).map_err(map_err("guard_ports"))?;
            }
        }
        Ok(())
    }

    /// The ports the guard protects, as the kernel map holds them.
    pub fn media_ports(&self) -> Result<Vec<u16>, Error> {
        let g = self.guard.as_ref().ok_or(Error::NotEnabled("guard"))?;
        let mut ports = g
            .ports
            .keys()
            .collect::<Result<Vec<u16>, _>>()
            .map_err(map_err("guard_ports"))?;
        ports.sort_unstable();
        Ok(ports)
    }

    /// Admits a flow: the guard passes its datagrams to the media port.
    pub fn admit(&mut self, flow: &Flow) -> Result<(), Error> {
        let key = flow_key(flow)?;
        self.guard_mut()?
            .flows
            .insert(key, 1, 0)
            .map_err(map_err("guard_flows"))
    }

    /// Revokes an admitted flow; its datagrams are dropped again (STUN excepted).
    pub fn revoke(&mut self, flow: &Flow) -> Result<(), Error> {
        let key = flow_key(flow)?;
        self.guard_mut()?
            .flows
            .remove(&key)
            .map_err(map_err("guard_flows"))
    }

    /// Changes the STUN rate limit (existing buckets keep their tokens).
    pub fn set_stun_rate(&mut self, rate: StunRate) -> Result<(), Error> {
        self.guard_mut()?
            .config
            .set(
                0,
                GuardConfig {
                    stun_rate_per_sec: rate.per_sec,
                    stun_burst: rate.burst,
                },
                0,
            )
            .map_err(map_err("guard_config"))
    }

    /// The guard's counters per reason, summed over CPUs.
    pub fn guard_counters(&self) -> Result<GuardCounters, Error> {
        let g = self.guard.as_ref().ok_or(Error::NotEnabled("guard"))?;
        let m = "guard_stats";
        Ok(GuardCounters {
            pass_admitted: read_stats(&g.stats, m, guard_stat::PASS_ADMITTED)?,
            pass_stun: read_stats(&g.stats, m, guard_stat::PASS_STUN)?,
            drop_unknown_source: read_stats(&g.stats, m, guard_stat::DROP_UNKNOWN_SOURCE)?,
            drop_stun_rate_limited: read_stats(&g.stats, m, guard_stat::DROP_STUN_RATE_LIMITED)?,
            drop_malformed: read_stats(&g.stats, m, guard_stat::DROP_MALFORMED)?,
            pass_unsupported: read_stats(&g.stats, m, guard_stat::PASS_UNSUPPORTED)?,
        })
    }

    /// Writes one key's outputs to the kernel as one element update: a packet in flight sees
    /// either the old list or the new one.
    fn write_fanout(&mut self, key: FanoutKey) -> Result<(), Error> {
        let (_, map) = self.fanout.as_mut().ok_or(Error::NotEnabled("fanout"))?;
        let entry = self.fanout_entries.get(&key).ok_or(Error::Unknown)?;
        let mut value = FanoutValue {
            count: entry.outputs.len() as u32,
            flags: entry.flags,
            ..FanoutValue::default()
        };
        for (dst, (_, out)) in value.outputs.iter_mut().zip(&entry.outputs) {
            *dst = *out;
        }
        map.insert(key_raw(key), value, 0)
            .map_err(map_err("fanout_map"))
    }

    fn fanout_part(&mut self) -> Result<&mut FwdPart, Error> {
        self.fanout
            .as_mut()
            .map(|(p, _)| p)
            .ok_or(Error::NotEnabled("fanout"))
    }

    /// Adds one output to a fan-out key (creating the key), without disturbing the others.
    pub fn add_output(&mut self, key: FanoutKey, output: &Output) -> Result<OutputId, Error> {
        let mut raw = output_raw(output)?;
        let nr_cpus = self.nr_cpus;
        let existing = self.fanout_entries.get(&key).map(|e| e.outputs.len());
        if existing.unwrap_or(0) >= MAX_OUTPUTS {
            return Err(Error::TooManyOutputs { max: MAX_OUTPUTS });
        }
        let part = self.fanout_part()?;
        let slot = part.alloc_slot(nr_cpus)?;
        if existing.is_none() {
            if let Err(e) = part.port_ref(key.port) {
                part.slots.release(slot);
                return Err(e);
            }
        }
        raw.counter_idx = slot;
        let entry = self.fanout_entries.entry(key).or_insert(FanoutEntry {
            flags: 0,
            outputs: Vec::new(),
        });
        entry.outputs.push((slot, raw));
        if let Err(e) = self.write_fanout(key) {
            // Undo the bookkeeping: the kernel still has the previous list (or no key).
            self.forget_output(key, slot);
            if existing.is_none() {
                self.fanout_entries.remove(&key);
                if let Some((part, _)) = self.fanout.as_mut() {
                    let _ = part.port_unref(key.port);
                }
            }
            return Err(e);
        }
        Ok(OutputId {
            table: Table::Fanout,
            slot,
        })
    }

    /// Userspace bookkeeping of a removal (no map write).
    fn forget_output(&mut self, key: FanoutKey, slot: u32) -> bool {
        let Some(entry) = self.fanout_entries.get_mut(&key) else {
            return false;
        };
        let before = entry.outputs.len();
        entry.outputs.retain(|(s, _)| *s != slot);
        let removed = entry.outputs.len() != before;
        if removed {
            if let Some((part, _)) = self.fanout.as_mut() {
                part.slots.release(slot);
            }
        }
        removed
    }

    /// Removes one output of a key; the other outputs keep receiving every packet. Removing
    /// the last output removes the key (its packets then pass untouched).
    pub fn remove_output(&mut self, key: FanoutKey, id: OutputId) -> Result<(), Error> {
        if id.table != Table::Fanout || !self.forget_output(key, id.slot) {
            return Err(Error::Unknown);
        }
        if self
            .fanout_entries
            .get(&key)
            .is_some_and(|e| e.outputs.is_empty())
        {
            return self.remove_key(key);
        }
        self.write_fanout(key)
    }

    /// Replaces all outputs of a key at once (one atomic map update). Returns the new ids, in
    /// order. An empty list removes the key.
    pub fn set_outputs(
        &mut self,
        key: FanoutKey,
        outputs: &[Output],
    ) -> Result<Vec<OutputId>, Error> {
        if outputs.len() > MAX_OUTPUTS {
            return Err(Error::TooManyOutputs { max: MAX_OUTPUTS });
        }
        if outputs.is_empty() {
            return match self.remove_key(key) {
                Ok(()) | Err(Error::Unknown) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        let raws = outputs
            .iter()
            .map(output_raw)
            .collect::<Result<Vec<_>, _>>()?;
        let nr_cpus = self.nr_cpus;
        let is_new = !self.fanout_entries.contains_key(&key);
        let part = self.fanout_part()?;
        let mut slots = Vec::with_capacity(raws.len());
        for _ in &raws {
            match part.alloc_slot(nr_cpus) {
                Ok(s) => slots.push(s),
                Err(e) => {
                    for s in slots {
                        part.slots.release(s);
                    }
                    return Err(e);
                }
            }
        }
        if is_new {
            if let Err(e) = part.port_ref(key.port) {
                for s in slots {
                    part.slots.release(s);
                }
                return Err(e);
            }
        }
        let flags = self.fanout_entries.get(&key).map_or(0, |e| e.flags);
        let new_outputs: Vec<(u32, FanoutOutput)> = slots
            .iter()
            .zip(raws)
            .map(|(&slot, mut raw)| {
                raw.counter_idx = slot;
                (slot, raw)
            })
            .collect();
        let old = self.fanout_entries.insert(
            key,
            FanoutEntry {
                flags,
                outputs: new_outputs,
            },
        );
        if let Err(e) = self.write_fanout(key) {
            // The kernel still has the previous list: restore the bookkeeping to match it.
            let Some((part, _)) = self.fanout.as_mut() else {
                return Err(e);
            };
            for s in &slots {
                part.slots.release(*s);
            }
            match old {
                Some(old) => {
                    self.fanout_entries.insert(key, old);
                }
                None => {
                    self.fanout_entries.remove(&key);
                    let _ = part.port_unref(key.port);
                }
            }
            return Err(e);
        }
        if let (Some(old), Some((part, _))) = (old, self.fanout.as_mut()) {
            for (slot, _) in old.outputs {
                part.slots.release(slot);
            }
        }
        Ok(slots
            .into_iter()
            .map(|slot| OutputId {
                table: Table::Fanout,
                slot,
            })
            .collect())
    }

    /// With `pass` set, the original packet of this key is restored after its copies and
    /// continues up the stack (so the SFU's own socket still receives the ingest) instead of
    /// being dropped.
    pub fn set_pass_original(&mut self, key: FanoutKey, pass: bool) -> Result<(), Error> {
        let entry = self.fanout_entries.get_mut(&key).ok_or(Error::Unknown)?;
        entry.flags = if pass {
            entry.flags | FANOUT_F_PASS_ORIGINAL
        } else {
            entry.flags & !FANOUT_F_PASS_ORIGINAL
        };
        self.write_fanout(key)
    }

    /// Removes a fan-out key and all its outputs.
    pub fn remove_key(&mut self, key: FanoutKey) -> Result<(), Error> {
        let entry = self.fanout_entries.remove(&key).ok_or(Error::Unknown)?;
        let (part, map) = self.fanout.as_mut().ok_or(Error::NotEnabled("fanout"))?;
        for (slot, _) in &entry.outputs {
            part.slots.release(*slot);
        }
        let removed = map.remove(&key_raw(key)).map_err(map_err("fanout_map"));
        part.port_unref(key.port)?;
        removed
    }

    /// The ids of a key's outputs, in order.
    pub fn outputs(&self, key: FanoutKey) -> Vec<OutputId> {
        self.fanout_entries
            .get(&key)
            .map(|e| {
                e.outputs
                    .iter()
                    .map(|(slot, _)| OutputId {
                        table: Table::Fanout,
                        slot: *slot,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets the single output of a key for the XDP 1:1 rewrite (replacing any previous one).
    pub fn set_rewrite(&mut self, key: FanoutKey, output: &Output) -> Result<OutputId, Error> {
        let mut raw = output_raw(output)?;
        let nr_cpus = self.nr_cpus;
        let previous = self.rewrite_entries.get(&key).copied();
        let (part, map) = self.rewrite.as_mut().ok_or(Error::NotEnabled("rewrite"))?;
        let slot = part.alloc_slot(nr_cpus)?;
        raw.counter_idx = slot;
        if previous.is_none() {
            if let Err(e) = part.port_ref(key.port) {
                part.slots.release(slot);
                return Err(e);
            }
        }
        if let Err(source) = map.insert(key_raw(key), raw, 0) {
            part.slots.release(slot);
            if previous.is_none() {
                // Best effort: the key was not added.
                let _ = part.port_unref(key.port);
            }
            return Err(map_err("rewrite_map")(source));
        }
        if let Some(old) = previous {
            part.slots.release(old);
        }
        self.rewrite_entries.insert(key, slot);
        Ok(OutputId {
            table: Table::Rewrite,
            slot,
        })
    }

    /// Removes a key from the XDP 1:1 rewrite.
    pub fn remove_rewrite(&mut self, key: FanoutKey) -> Result<(), Error> {
        let slot = self.rewrite_entries.remove(&key).ok_or(Error::Unknown)?;
        let (part, map) = self.rewrite.as_mut().ok_or(Error::NotEnabled("rewrite"))?;
        part.slots.release(slot);
        let removed = map.remove(&key_raw(key)).map_err(map_err("rewrite_map"));
        part.port_unref(key.port)?;
        removed
    }

    /// Counters of one output (fan-out or rewrite), summed over CPUs.
    pub fn output_counters(&self, id: OutputId) -> Result<OutputCounters, Error> {
        match id.table {
            Table::Fanout => self
                .fanout
                .as_ref()
                .ok_or(Error::NotEnabled("fanout"))?
                .0
                .counters(id.slot),
            Table::Rewrite => self
                .rewrite
                .as_ref()
                .ok_or(Error::NotEnabled("rewrite"))?
                .0
                .counters(id.slot),
        }
    }

    /// The fan-out program's counters per outcome, summed over CPUs.
    pub fn fanout_counters(&self) -> Result<ForwardCounters, Error> {
        let (part, _) = self.fanout.as_ref().ok_or(Error::NotEnabled("fanout"))?;
        fwd_counters(&part.stats, "fanout_stats")
    }

    /// The rewrite program's counters per outcome, summed over CPUs.
    pub fn rewrite_counters(&self) -> Result<ForwardCounters, Error> {
        let (part, _) = self.rewrite.as_ref().ok_or(Error::NotEnabled("rewrite"))?;
        fwd_counters(&part.stats, "rewrite_stats")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_says_why_when_built_without_bpf() {
        if crate::KERNEL_PATH_AVAILABLE {
            // The root-only integration tests cover this build.
            return;
        }
        let err = KernelPath::open(&Options::default()).expect_err("no objects");
        assert!(err.is_unavailable());
        let text = err.to_string();
        assert!(
            text == "kernel path unavailable: built without clang"
                || matches!(err, Error::BpfCompileFailed),
            "{text}"
        );
        eprintln!("{text}");
    }

    #[test]
    fn slots_are_reused_and_bounded() {
        let mut s = Slots::default();
        let a = s.alloc().expect("slot");
        let b = s.alloc().expect("slot");
        assert_ne!(a, b);
        s.release(a);
        assert_eq!(s.alloc().expect("slot"), a);
        let mut n = 2;
        while s.alloc().is_ok() {
            n += 1;
        }
        assert_eq!(n, MAX_OUTPUT_COUNTERS);
    }

    #[test]
    fn outputs_are_validated() {
        let out = Output {
            dst: "10.200.2.2:6000".parse().expect("addr"),
            src: "[fd00:200::1]:7000".parse().expect("addr"),
            ssrc: 1,
            payload_type: None,
            next_hop: NextHop::Fib { interface: None },
        };
        assert!(matches!(output_raw(&out), Err(Error::InvalidOutput(_))));
        let out = Output {
            src: "10.200.2.1:7000".parse().expect("addr"),
            payload_type: Some(128),
            ..out
        };
        assert!(matches!(output_raw(&out), Err(Error::InvalidOutput(_))));
        let out = Output {
            payload_type: Some(111),
            ..out
        };
        let raw = output_raw(&out).expect("valid");
        assert_eq!(raw.pt, 111);
        assert_eq!(raw.dst_port, 6000u16.to_be());
        assert_eq!(raw.ssrc, 1u32.to_be());
        assert_eq!(&raw.dst_addr[..4], &[10, 200, 2, 2]);
        assert_eq!(raw.family, crate::maps::FAMILY_V4);
        assert_eq!(raw.dst_mac, [0; 6], "fib lookup");
    }
}
