//! The in-kernel fast path as the server uses it (`--kernel-interface`): an XDP guard on the media
//! interface that lets through only flows the cores admitted (and rate-limited STUN), and a TC
//! fan-out on the egress of `lo` that turns the one plain copy a worker hands over into the copies
//! of a plain RTP output, or into the copies of a video layer for every plain trunk that takes
//! it. One [`KernelPath`] serves the process; its maps change on joins, leaves, output and
//! demand changes, never per packet, so a mutex is enough.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use sfu_core::demux::FlowChange;
use sfu_core::plain::{OutputInfo, OutputPath};
use sfu_core::str0m::net::Protocol;
use sfu_core::trunk::{FanoutChange, FanoutConfig};
use signaling::metrics::{ExternalSample, MetricsSource, SampleKind};
use tracing::{debug, info, warn};
use xdp_forwarder::{
    Direction, FanoutKey, Flow, KernelPath, NextHop, Options, Output, OutputId, PacketCount, TcHook,
};

/// The kernel path of this process.
pub struct Kernel {
    path: Mutex<State>,
    interface: String,
    handoff_port: u16,
}

struct State {
    kp: KernelPath,
    /// Output id → its fan-out key and the kernel's ids of its receivers, in target order.
    outputs: HashMap<u64, (FanoutKey, Vec<OutputId>)>,
    /// The hand-off SSRCs of trunk layers programmed now.
    trunk_layers: std::collections::HashSet<u32>,
}

impl Kernel {
    /// Loads and attaches the programs on `interface`, or says in one line why the kernel path is
    /// not available (the server then guards nothing in the kernel and copies outputs in userspace).
    pub fn open(interface: &str, handoff_port: u16, media_ports: &[u16]) -> Option<Kernel> {
        let options = Options {
            media_interface: interface.into(),
            guard: true,
            fanout: vec![TcHook {
                interface: "lo".into(),
                direction: Direction::Egress,
            }],
            ..Options::default()
        };
        let opened = KernelPath::open(&options)
            .and_then(|mut kp| kp.set_media_ports(media_ports).map(|()| kp));
        match opened {
            Ok(kp) => {
                info!(
                    interface,
                    xdp = ?kp.xdp_mode(),
                    handoff_port,
                    "kernel path active: XDP guard on the media interface, TC fan-out for plain RTP outputs"
                );
                Some(Kernel {
                    path: Mutex::new(State {
                        kp,
                        outputs: HashMap::new(),
                        trunk_layers: Default::default(),
                    }),
                    interface: interface.into(),
                    handoff_port,
                })
            }
            Err(e) => {
                warn!(interface, error = %e, "kernel path unavailable: no in-kernel guard, plain RTP outputs are copied in userspace");
                None
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.path.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mirrors a core's change of admitted UDP flows into the guard (TCP never meets it).
    pub fn apply(&self, change: FlowChange) {
        let (result, what) = match change {
            FlowChange::Admitted(Protocol::Udp, (peer, local)) => {
                (self.state().kp.admit(&Flow { peer, local }), "admit")
            }
            FlowChange::Revoked(Protocol::Udp, (peer, local)) => {
                (self.state().kp.revoke(&Flow { peer, local }), "revoke")
            }
            FlowChange::Admitted(..) | FlowChange::Revoked(..) => return,
        };
        if let Err(e) = result {
            warn!(?change, error = %e, "guard map update failed ({what})");
        }
    }

    /// Programs the fan-out for output `id` as `info` describes it; returns the path the core is to
    /// use, or `None` to keep (or go back to) userspace. Loopback receivers cannot be reached by a
    /// redirected copy, so outputs with one stay in userspace; so do outputs with an IPv6
    /// receiver: the hand-off is an IPv4 datagram on `lo`, and the fan-out rewrites addresses
    /// within one family.
    pub fn program(
        &self,
        id: u64,
        info: &OutputInfo,
        candidates: &[SocketAddr],
    ) -> Option<OutputPath> {
        if !info.targets.iter().all(|t| reached_by_fanout(t.address)) {
            debug!(
                output = id,
                "an output with a loopback or IPv6 receiver is copied in userspace"
            );
            self.unprogram(id);
            return None;
        }
        let key = self.handoff_key(handoff_ssrc(id));
        let mut outputs = Vec::with_capacity(info.targets.len());
        for t in &info.targets {
            let Some(src) = candidates
                .iter()
                .find(|c| !c.ip().is_loopback() && c.is_ipv4())
            else {
                debug!(output = id, to = %t.address, "no announced IPv4 address: userspace");
                self.unprogram(id);
                return None;
            };
            outputs.push(self.output(t.address, *src, t.ssrc, t.payload_type));
        }
        let mut state = self.state();
        match state.kp.set_outputs(key, &outputs) {
            Ok(ids) => {
                state.outputs.insert(id, (key, ids));
                Some(OutputPath::Kernel {
                    handoff: self.handoff(),
                    ssrc: key.ssrc,
                })
            }
            Err(e) => {
                warn!(output = id, error = %e, "kernel fan-out not programmed: userspace copies");
                drop(state);
                self.unprogram(id);
                None
            }
        }
    }

    /// Where workers hand the fan-out its plain copies: the key port on `lo`.
    pub fn handoff(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.handoff_port)
    }

    /// Where worker `worker` hands plain trunk packets over, for its core's configuration.
    pub fn trunk_fanout(&self, worker: usize) -> FanoutConfig {
        FanoutConfig {
            handoff: self.handoff(),
            worker: worker as u16,
        }
    }

    /// Programs what a core asks of the fan-out for its plain trunks: a video layer's hand-off
    /// copied to the far end of each trunk taking it (from this worker's address, with the SSRC
    /// the trunk announced), or forgotten. Says why when a layer cannot be served: its trunks
    /// then send their own copies, and whatever was programmed for it before is removed (the
    /// core asks nothing more of a layer it was refused). Like outputs, copies to loopback or
    /// IPv6 far ends stay in userspace.
    pub fn program_trunk_layer(&self, change: &FanoutChange) -> Result<(), String> {
        let mut state = self.state();
        let (handoff_ssrc, copies) = match change {
            FanoutChange::Remove { handoff_ssrc } => {
                self.forget_trunk_layer(&mut state, *handoff_ssrc);
                return Ok(());
            }
            FanoutChange::Set {
                handoff_ssrc,
                copies,
            } => (*handoff_ssrc, copies),
        };
        let programmed = match copies
            .iter()
            .find(|c| !reached_by_fanout(c.to) || !c.from.is_ipv4())
        {
            Some(c) => Err(format!("far end {} is loopback or IPv6", c.to)),
            None => {
                let outputs: Vec<Output> = copies
                    .iter()
                    .map(|c| self.output(c.to, c.from, c.ssrc, None))
                    .collect();
                state
                    .kp
                    .set_outputs(self.handoff_key(handoff_ssrc), &outputs)
                    .map_err(|e| e.to_string())
            }
        };
        match programmed {
            Ok(_) => {
                state.trunk_layers.insert(handoff_ssrc);
                debug!(
                    handoff_ssrc,
                    copies = copies.len(),
                    "trunk layer on the kernel fan-out"
                );
                Ok(())
            }
            Err(why) => {
                self.forget_trunk_layer(&mut state, handoff_ssrc);
                Err(why)
            }
        }
    }

    /// Removes the fan-out entry of trunk layer `handoff_ssrc`, if one is programmed.
    fn forget_trunk_layer(&self, state: &mut State, handoff_ssrc: u32) {
        if state.trunk_layers.remove(&handoff_ssrc) {
            if let Err(e) = state.kp.remove_key(self.handoff_key(handoff_ssrc)) {
                warn!(handoff_ssrc, error = %e, "kernel fan-out entry not removed");
            }
        }
    }

    /// The fan-out key of hand-offs with `ssrc`.
    fn handoff_key(&self, ssrc: u32) -> FanoutKey {
        FanoutKey {
            port: self.handoff_port,
            ssrc,
        }
    }

    /// One copy the fan-out makes: to `dst` from `src` (an address of this host) with `ssrc`,
    /// and `payload_type` or the hand-off's, routed out of the media interface.
    fn output(
        &self,
        dst: SocketAddr,
        src: SocketAddr,
        ssrc: u32,
        payload_type: Option<u8>,
    ) -> Output {
        Output {
            dst,
            src,
            ssrc,
            payload_type,
            next_hop: NextHop::Fib {
                interface: Some(self.interface.clone()),
            },
        }
    }

    /// Removes what was programmed for output `id`, if anything.
    pub fn unprogram(&self, id: u64) {
        let mut state = self.state();
        if let Some((key, _)) = state.outputs.remove(&id) {
            if let Err(e) = state.kp.remove_key(key) {
                warn!(output = id, error = %e, "kernel fan-out entry not removed");
            }
        }
    }

    /// Replaces the userspace counts of kernel outputs by what the kernel sent.
    pub fn overlay_counters(&self, outputs: &mut [OutputInfo]) {
        let state = self.state();
        for info in outputs {
            let Some((_, ids)) = state.outputs.get(&info.id) else {
                continue;
            };
            for (target, kid) in info.targets.iter_mut().zip(ids) {
                if let Ok(c) = state.kp.output_counters(*kid) {
                    target.packets = c.packets;
                    target.bytes = c.bytes;
                }
            }
        }
    }
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("interface", &self.interface)
            .finish_non_exhaustive()
    }
}

/// The guard's verdicts and the fan-out's outcomes for `/metrics`: packets and bytes by
/// `verdict` / `outcome`, read from the programs' per-CPU maps at each scrape.
impl MetricsSource for Kernel {
    fn samples(&self) -> Vec<ExternalSample> {
        let state = self.state();
        let mut samples = Vec::new();
        if let Ok(g) = state.kp.guard_counters() {
            packet_samples(
                &mut samples,
                [
                    "edge_sfu_kernel_guard_packets_total",
                    "edge_sfu_kernel_guard_bytes_total",
                ],
                "Datagrams the XDP guard on the media interface let through or dropped, by verdict.",
                "verdict",
                &[
                    ("pass_admitted", g.pass_admitted),
                    ("pass_stun", g.pass_stun),
                    ("pass_unsupported", g.pass_unsupported),
                    ("drop_unknown_source", g.drop_unknown_source),
                    ("drop_stun_rate_limited", g.drop_stun_rate_limited),
                    ("drop_malformed", g.drop_malformed),
                ],
            );
        }
        if let Ok(f) = state.kp.fanout_counters() {
            packet_samples(
                &mut samples,
                [
                    "edge_sfu_kernel_fanout_packets_total",
                    "edge_sfu_kernel_fanout_bytes_total",
                ],
                "Packets the TC fan-out of plain RTP outputs saw, by outcome.",
                "outcome",
                &[
                    ("matched", f.matched),
                    ("consumed", f.consumed),
                    ("pass_original", f.pass_original),
                    ("pass_no_key", f.pass_no_key),
                    ("pass_not_rtp", f.pass_not_rtp),
                    ("pass_unsupported", f.pass_unsupported),
                    ("pass_malformed", f.pass_malformed),
                ],
            );
        }
        samples
    }
}

/// Two counter families, packets and bytes (`names`), with one sample per `(label value, count)`.
fn packet_samples(
    out: &mut Vec<ExternalSample>,
    names: [&'static str; 2],
    help: &'static str,
    label: &'static str,
    counts: &[(&str, PacketCount)],
) {
    for (name, pick) in names.into_iter().zip([
        (|c: &PacketCount| c.packets) as fn(&PacketCount) -> u64,
        |c| c.bytes,
    ]) {
        out.extend(counts.iter().map(|(value, count)| ExternalSample {
            name,
            help,
            kind: SampleKind::Counter,
            labels: vec![(label, (*value).to_owned())],
            value: pick(count),
        }));
    }
}

/// Whether a copy redirected out of the media interface reaches `addr`: not a loopback address
/// (a redirected copy cannot reach a local socket), and IPv4 (the hand-off is an IPv4 datagram
/// on `lo`, and the fan-out rewrites addresses within one family).
fn reached_by_fanout(addr: SocketAddr) -> bool {
    !addr.ip().is_loopback() && addr.is_ipv4()
}

/// The SSRC that keys output `id`'s hand-off in the fan-out map: distinct per output.
fn handoff_ssrc(id: u64) -> u32 {
    (id as u32).wrapping_mul(0x9E37_79B1) | 1
}
