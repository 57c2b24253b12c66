//! TC fan-out: a plain RTP sender in namespace A -> namespace B (fan-out classifier on the
//! ingress of B's interface towards A) -> N receivers in namespace C.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use xdp_forwarder::{Direction, FanoutKey, KernelPath, NextHop, Options, Output, OutputId, TcHook};

const INGEST_PORT: u16 = 5004;
const INGEST_SSRC: u32 = 0x1111_2222;
const INGEST_PT: u8 = 96;

/// Receivers in namespace C: UDP sockets plus a raw capture of c0.
struct Receivers {
    stop: mpsc::Sender<()>,
    handle: std::thread::JoinHandle<(Vec<Packets>, Packets)>,
}

impl Receivers {
    fn start(t: &Topo, addrs: Vec<SocketAddr>) -> Receivers {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let c0 = t.c0.clone();
        let handle = spawn_in(&t.ns_c, move || {
            let socks: Vec<_> = addrs.iter().map(|a| udp_bind(*a)).collect();
            let raw = RawSock::open(&c0);
            ready_tx.send(()).expect("ready");
            let _ = stop_rx.recv();
            let got: Vec<_> = socks
                .iter()
                .map(|s| drain(s, Duration::from_millis(300)))
                .collect();
            let mut frames = Vec::new();
            while let Some(f) = raw.recv_incoming(Duration::from_millis(100)) {
                frames.push(f);
            }
            (got, frames)
        });
        ready_rx.recv().expect("receivers ready");
        Receivers {
            stop: stop_tx,
            handle,
        }
    }

    fn finish(self) -> (Vec<Packets>, Packets) {
        let _ = self.stop.send(());
        self.handle.join().expect("receiver thread")
    }
}

/// The RTP packets of a run: mixed shapes (CSRCs, extension, padding, marker), sizes 200/1200.
fn packets(n: u16, ssrc: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|seq| {
            let shape = match seq % 4 {
                0 => RtpShape::default(),
                1 => RtpShape {
                    csrcs: 3,
                    marker: true,
                    ..Default::default()
                },
                2 => RtpShape {
                    extension_words: 2,
                    ..Default::default()
                },
                _ => RtpShape {
                    csrcs: 1,
                    extension_words: 1,
                    padding: 4,
                    marker: true,
                },
            };
            let size = if seq % 2 == 0 { 200 } else { 1200 };
            rtp_packet(INGEST_PT, seq, ssrc, size, shape)
        })
        .collect()
}

/// Sends `pkts` from A (raw frames, full checksums) to B's ingest port, paced.
fn send_from_a(t: &Topo, pkts: Vec<Vec<u8>>, v6: bool, pace_every: usize) {
    start_sender(t, pkts, v6, pace_every)
        .join()
        .expect("sender");
}

fn start_sender(
    t: &Topo,
    pkts: Vec<Vec<u8>>,
    v6: bool,
    pace_every: usize,
) -> std::thread::JoinHandle<()> {
    let a0 = t.a0.clone();
    spawn_in(&t.ns_a, move || {
        let raw = RawSock::open(&a0);
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            (A_V6.into(), B0_V6.into())
        } else {
            (A_V4.into(), B0_V4.into())
        };
        for (i, p) in pkts.iter().enumerate() {
            let f = udp_frame(
                MAC_A0,
                MAC_B0,
                src,
                dst,
                40000,
                INGEST_PORT,
                p,
                FrameOpts::default(),
            );
            raw.send(&f);
            if i % pace_every == pace_every - 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
}

/// What a copy must look like: the sent packet with SSRC (and PT) replaced, nothing else.
fn expected_copy(sent: &[u8], ssrc: u32, pt: Option<u8>) -> Vec<u8> {
    let mut e = sent.to_vec();
    if let Some(pt) = pt {
        e[1] = (e[1] & 0x80) | pt;
    }
    e[8..12].copy_from_slice(&ssrc.to_be_bytes());
    e
}

struct Case {
    out: Output,
    listen: SocketAddr,
}

fn outputs_v4(t: &Topo) -> Vec<Case> {
    let src = |port| SocketAddr::new(B1_V4.into(), port);
    let mut v = Vec::new();
    for i in 0..4u16 {
        let dst = SocketAddr::new(if i == 3 { C2_V4 } else { C_V4 }.into(), 6001 + i);
        let next_hop = if i % 2 == 0 {
            NextHop::Fib { interface: None }
        } else {
            NextHop::Mac {
                interface: t.b1.clone(),
                dst_mac: MAC_C0,
            }
        };
        v.push(Case {
            out: Output {
                dst,
                src: src(7001 + i),
                ssrc: 0xa000_0000 + u32::from(i),
                payload_type: if i == 2 { Some(111) } else { None },
                next_hop,
            },
            listen: dst,
        });
    }
    v
}

fn outputs_v6(t: &Topo) -> Vec<Case> {
    let mut v = Vec::new();
    for i in 0..3u16 {
        let dst = SocketAddr::new(if i == 2 { C2_V6 } else { C_V6 }.into(), 6101 + i);
        v.push(Case {
            out: Output {
                dst,
                src: SocketAddr::new(B1_V6.into(), 7101 + i),
                ssrc: 0xb000_0000 + u32::from(i),
                payload_type: if i == 1 { Some(100) } else { None },
                next_hop: if i == 0 {
                    NextHop::Fib {
                        interface: Some(t.b1.clone()),
                    }
                } else {
                    NextHop::Mac {
                        interface: t.b1.clone(),
                        dst_mac: MAC_C0,
                    }
                },
            },
            listen: dst,
        });
    }
    v
}

fn open_fanout(t: &Topo) -> KernelPath {
    KernelPath::open(&Options {
        fanout: vec![TcHook {
            interface: t.b0.clone(),
            direction: Direction::Ingress,
        }],
        ..Default::default()
    })
    .expect("open kernel path")
}

/// Checks every receiver got every packet, rewritten exactly, and every captured frame has
/// valid checksums and the output's addresses.
fn check_run(cases: &[Case], sent: &[Vec<u8>], got: &[Vec<Vec<u8>>], frames: &[Vec<u8>]) {
    for (c, got) in cases.iter().zip(got) {
        assert_eq!(
            got.len(),
            sent.len(),
            "receiver {} got {} of {} packets",
            c.listen,
            got.len(),
            sent.len()
        );
        for g in got {
            let seq = u16::from_be_bytes([g[2], g[3]]) as usize;
            let want = expected_copy(&sent[seq], c.out.ssrc, c.out.payload_type);
            assert_eq!(g, &want, "receiver {} packet seq {seq} differs", c.listen);
        }
    }
    let mut per_output = vec![0usize; cases.len()];
    for f in frames {
        // Other traffic on the link (IPv6 neighbour discovery, MLD) is not ours.
        let Some(p) = parse_frame(f) else {
            continue;
        };
        let Some(i) = cases.iter().position(|c| c.listen.port() == p.dport) else {
            continue;
        };
        let c = &cases[i];
        assert!(
            p.ip_csum_ok,
            "bad IPv4 header checksum on copy to {}",
            c.listen
        );
        assert!(p.udp_csum_ok, "bad UDP checksum on copy to {}", c.listen);
        assert_eq!(p.src, c.out.src.ip());
        assert_eq!(p.sport, c.out.src.port());
        assert_eq!(p.dst, c.out.dst.ip());
        assert_eq!(p.src_mac, MAC_B1);
        assert_eq!(p.dst_mac, MAC_C0);
        per_output[i] += 1;
    }
    for (c, n) in cases.iter().zip(&per_output) {
        assert_eq!(*n, sent.len(), "raw capture saw {n} copies to {}", c.listen);
    }
}

#[test]
fn fanout_ipv4_every_receiver_gets_every_packet() {
    require_root!("fanout_ipv4_every_receiver_gets_every_packet");
    let t = Topo::new("f4");
    enter_netns(&t.ns_b);
    let mut kp = open_fanout(&t);
    let key = FanoutKey {
        port: INGEST_PORT,
        ssrc: INGEST_SSRC,
    };
    let cases = outputs_v4(&t);
    let outs: Vec<Output> = cases.iter().map(|c| c.out.clone()).collect();
    let ids = kp.set_outputs(key, &outs).expect("set outputs");

    let rx = Receivers::start(&t, cases.iter().map(|c| c.listen).collect());
    let sent = packets(400, INGEST_SSRC);
    send_from_a(&t, sent.clone(), false, 8);
    let (got, frames) = rx.finish();
    check_run(&cases, &sent, &got, &frames);

    let fc = kp.fanout_counters().expect("counters");
    assert_eq!(fc.matched.packets, 400);
    assert_eq!(fc.consumed.packets, 400);
    for id in &ids {
        let oc = kp.output_counters(*id).expect("output counters");
        assert_eq!(oc.packets, 400, "{oc:?}");
        assert_eq!(oc.fib_errors + oc.tx_errors, 0, "{oc:?}");
    }
    eprintln!("fanout ipv4: {fc:?}");
}

#[test]
fn fanout_ipv6_every_receiver_gets_every_packet() {
    require_root!("fanout_ipv6_every_receiver_gets_every_packet");
    let t = Topo::new("f6");
    enter_netns(&t.ns_b);
    let mut kp = open_fanout(&t);
    let key = FanoutKey {
        port: INGEST_PORT,
        ssrc: INGEST_SSRC,
    };
    let cases = outputs_v6(&t);
    let mut ids: Vec<OutputId> = Vec::new();
    for c in &cases {
        ids.push(kp.add_output(key, &c.out).expect("add output"));
    }
    let rx = Receivers::start(&t, cases.iter().map(|c| c.listen).collect());
    let sent = packets(300, INGEST_SSRC);
    send_from_a(&t, sent.clone(), true, 8);
    let (got, frames) = rx.finish();
    check_run(&cases, &sent, &got, &frames);
    for id in &ids {
        let oc = kp.output_counters(*id).expect("output counters");
        assert_eq!(oc.packets, 300, "{oc:?}");
    }
}

/// Sequence numbers received, checked to be one contiguous run; returns (first, count).
fn contiguous_run(got: &[Vec<u8>]) -> (usize, usize) {
    let mut seqs: Vec<usize> = got
        .iter()
        .map(|g| u16::from_be_bytes([g[2], g[3]]) as usize)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), got.len(), "duplicates");
    if let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) {
        assert_eq!(last - first + 1, seqs.len(), "gap in {first}..={last}");
        (first, seqs.len())
    } else {
        (0, 0)
    }
}

#[test]
fn fanout_outputs_added_and_removed_while_traffic_flows() {
    require_root!("fanout_outputs_added_and_removed_while_traffic_flows");
    let t = Topo::new("fd");
    enter_netns(&t.ns_b);
    let mut kp = open_fanout(&t);
    let key = FanoutKey {
        port: INGEST_PORT,
        ssrc: INGEST_SSRC,
    };
    let cases = outputs_v4(&t);
    let extra = Case {
        out: Output {
            dst: SocketAddr::new(C_V4.into(), 6010),
            src: SocketAddr::new(B1_V4.into(), 7010),
            ssrc: 0xa000_0010,
            payload_type: None,
            next_hop: NextHop::Fib { interface: None },
        },
        listen: SocketAddr::new(C_V4.into(), 6010),
    };
    let mut ids = Vec::new();
    for c in &cases {
        ids.push(kp.add_output(key, &c.out).expect("add"));
    }
    let mut listen: Vec<SocketAddr> = cases.iter().map(|c| c.listen).collect();
    listen.push(extra.listen);
    let rx = Receivers::start(&t, listen);

    const N: u16 = 3000;
    let sent = packets(N, INGEST_SSRC);
    let sender = start_sender(&t, sent.clone(), false, 4);
    std::thread::sleep(Duration::from_millis(200));
    let extra_id = kp.add_output(key, &extra.out).expect("add while flowing");
    std::thread::sleep(Duration::from_millis(200));
    kp.remove_output(key, ids[1]).expect("remove while flowing");
    sender.join().expect("sender");
    let (got, _) = rx.finish();

    for i in [0, 2, 3] {
        assert_eq!(
            got[i].len(),
            N as usize,
            "untouched output {} lost packets",
            cases[i].listen
        );
        contiguous_run(&got[i]);
    }
    let (first, n) = contiguous_run(&got[1]);
    assert_eq!(first, 0, "removed output got a prefix");
    assert!(n > 0 && n < N as usize, "removed output got {n}");
    let (first, n) = contiguous_run(&got[4]);
    assert!(
        first > 0 && first + n == N as usize,
        "added output got {first}+{n}"
    );
    let oc = kp.output_counters(extra_id).expect("counters");
    assert_eq!(oc.packets as usize, n);
    eprintln!(
        "dynamic: removed output got seq 0..{}, added output got seq {first}..{N}",
        got[1].len()
    );
}

#[test]
fn fanout_pass_original_restores_the_packet_for_the_sfu() {
    require_root!("fanout_pass_original_restores_the_packet_for_the_sfu");
    let t = Topo::new("fp");
    enter_netns(&t.ns_b);
    let mut kp = open_fanout(&t);
    let key = FanoutKey {
        port: INGEST_PORT,
        ssrc: INGEST_SSRC,
    };
    let cases = outputs_v4(&t);
    for c in &cases {
        kp.add_output(key, &c.out).expect("add");
    }
    kp.set_pass_original(key, true).expect("pass original");
    // The SFU's own socket on the ingest port, in B (this thread is in B).
    let sfu = udp_bind(SocketAddr::new(B0_V4.into(), INGEST_PORT));
    let rx = Receivers::start(&t, cases.iter().map(|c| c.listen).collect());
    let sent = packets(200, INGEST_SSRC);
    send_from_a(&t, sent.clone(), false, 8);
    let (got, frames) = rx.finish();
    check_run(&cases, &sent, &got, &frames);
    let originals = drain(&sfu, Duration::from_millis(300));
    assert_eq!(originals.len(), sent.len());
    for o in &originals {
        let seq = u16::from_be_bytes([o[2], o[3]]) as usize;
        assert_eq!(o, &sent[seq], "original seq {seq} not restored exactly");
    }
    let fc = kp.fanout_counters().expect("counters");
    assert_eq!(fc.pass_original.packets, 200);
    assert_eq!(fc.consumed.packets, 0);
}

#[test]
fn fanout_from_a_normal_udp_socket() {
    // A UDP socket's datagrams cross veth with CHECKSUM_PARTIAL (the checksum is finished
    // later, or never needed); the csum helpers must keep such skbs right too.
    require_root!("fanout_from_a_normal_udp_socket");
    let t = Topo::new("fu");
    enter_netns(&t.ns_b);
    // Copies leave b1 with their checksum finished in software, so C can check it.
    set_tx_csum_offload(&t.b1, false);
    let mut kp = open_fanout(&t);
    let key = FanoutKey {
        port: INGEST_PORT,
        ssrc: INGEST_SSRC,
    };
    let cases = outputs_v4(&t);
    for c in &cases {
        kp.add_output(key, &c.out).expect("add");
    }
    let v6 = outputs_v6(&t);
    for c in &v6 {
        kp.add_output(key, &c.out).expect("add v6");
    }
    let mut listen: Vec<SocketAddr> = cases.iter().map(|c| c.listen).collect();
    listen.extend(v6.iter().map(|c| c.listen));
    let rx = Receivers::start(&t, listen);
    let sent = packets(200, INGEST_SSRC);
    let pkts = sent.clone();
    spawn_in(&t.ns_a, move || {
        let s4 = std::net::UdpSocket::bind((A_V4, 0)).expect("bind");
        let s6 = std::net::UdpSocket::bind((A_V6, 0)).expect("bind6");
        for (i, p) in pkts.iter().enumerate() {
            s4.send_to(p, (B0_V4, INGEST_PORT)).expect("send");
            s6.send_to(p, (B0_V6, INGEST_PORT)).expect("send6");
            if i % 4 == 3 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
    .join()
    .expect("sender");
    let (got, frames) = rx.finish();
    // IPv4 packets reach only the IPv4 outputs (the IPv6 ones count a family mismatch), and
    // the other way round.
    let mut all = cases;
    all.extend(v6);
    check_run(&all, &sent, &got, &frames);
    let fc = kp.fanout_counters().expect("counters");
    assert_eq!(fc.matched.packets, 400);
}

#[test]
fn fanout_userspace_handoff_through_loopback_egress() {
    // The SFU hands ONE plain copy to the kernel by sending it to 127.0.0.1:PORT; the
    // classifier on lo's egress makes the copies and consumes the original.
    require_root!("fanout_userspace_handoff_through_loopback_egress");
    let t = Topo::new("fl");
    enter_netns(&t.ns_b);
    set_tx_csum_offload(&t.b1, false);
    let mut kp = KernelPath::open(&Options {
        fanout: vec![TcHook {
            interface: "lo".into(),
            direction: Direction::Egress,
        }],
        ..Default::default()
    })
    .expect("open");
    let key = FanoutKey {
        port: 5555,
        ssrc: INGEST_SSRC,
    };
    let cases: Vec<Case> = outputs_v4(&t)
        .into_iter()
        .map(|mut c| {
            // The lookup must not depend on lo's forwarding: name the egress interface.
            if let NextHop::Fib { interface } = &mut c.out.next_hop {
                *interface = Some(t.b1.clone());
            }
            c
        })
        .collect();
    for c in &cases {
        kp.add_output(key, &c.out).expect("add");
    }
    let local = udp_bind(SocketAddr::new([127, 0, 0, 1].into(), 5555));
    let rx = Receivers::start(&t, cases.iter().map(|c| c.listen).collect());
    let sent = packets(200, INGEST_SSRC);
    let s = std::net::UdpSocket::bind(("127.0.0.1", 0)).expect("bind");
    for (i, p) in sent.iter().enumerate() {
        s.send_to(p, ("127.0.0.1", 5555)).expect("send");
        if i % 4 == 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (got, frames) = rx.finish();
    check_run(&cases, &sent, &got, &frames);
    assert!(
        drain(&local, Duration::from_millis(100)).is_empty(),
        "the handed-over original must be consumed"
    );
}
