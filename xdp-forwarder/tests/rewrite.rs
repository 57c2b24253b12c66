//! XDP 1:1 rewrite on B's interface towards A: rewritten in place and redirected to C (other
//! interface) or bounced back to A with XDP_TX (same interface); alone or behind the guard.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use xdp_forwarder::{
    AttachedXdpMode, FanoutKey, Flow, KernelPath, NextHop, Options, Output, StunRate, XdpAttachMode,
};

const INGEST_PORT: u16 = 5004;

fn send_raw(t: &Topo, frames: Vec<Vec<u8>>) {
    let a0 = t.a0.clone();
    spawn_in(&t.ns_a, move || {
        let raw = RawSock::open(&a0);
        for (i, f) in frames.iter().enumerate() {
            raw.send(f);
            if i % 8 == 7 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
    .join()
    .expect("sender");
}

fn rtp_frames(src: IpAddr, dst: IpAddr, sport: u16, ssrc: u32, n: u16) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|seq| {
            let shape = if seq % 3 == 0 {
                RtpShape {
                    csrcs: 2,
                    extension_words: 1,
                    padding: 3,
                    marker: true,
                }
            } else {
                RtpShape::default()
            };
            let p = rtp_packet(96, seq, ssrc, if seq % 2 == 0 { 200 } else { 1200 }, shape);
            let f = udp_frame(
                MAC_A0,
                MAC_B0,
                src,
                dst,
                sport,
                INGEST_PORT,
                &p,
                FrameOpts::default(),
            );
            (p, f)
        })
        .collect()
}

/// Stop signal and the thread that returns (datagrams, captured frames).
type Listener = (
    mpsc::Sender<()>,
    std::thread::JoinHandle<(Packets, Packets)>,
);

/// Listens in C (UDP socket + raw capture of c0) until told to stop.
fn listen_c(t: &Topo, addr: SocketAddr) -> Listener {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let c0 = t.c0.clone();
    let h = spawn_in(&t.ns_c, move || {
        let s = udp_bind(addr);
        let raw = RawSock::open(&c0);
        ready_tx.send(()).expect("ready");
        let _ = stop_rx.recv();
        let got = drain(&s, Duration::from_millis(300));
        let mut frames = Vec::new();
        while let Some(f) = raw.recv_incoming(Duration::from_millis(100)) {
            frames.push(f);
        }
        (got, frames)
    });
    ready_rx.recv().expect("ready");
    (stop_tx, h)
}

fn check_copies(sent: &[Vec<u8>], got: &[Vec<u8>], ssrc: u32, pt: Option<u8>) {
    assert_eq!(got.len(), sent.len(), "got {} of {}", got.len(), sent.len());
    for g in got {
        let seq = u16::from_be_bytes([g[2], g[3]]) as usize;
        let mut want = sent[seq].clone();
        if let Some(pt) = pt {
            want[1] = (want[1] & 0x80) | pt;
        }
        want[8..12].copy_from_slice(&ssrc.to_be_bytes());
        assert_eq!(g, &want, "seq {seq}");
    }
}

fn check_frames(frames: &[Vec<u8>], out: &Output, n: usize) {
    let mut seen = 0;
    for f in frames {
        let Some(p) = parse_frame(f) else { continue };
        if p.dport != out.dst.port() {
            continue;
        }
        assert!(p.ip_csum_ok, "IPv4 header checksum");
        assert!(p.udp_csum_ok, "UDP checksum");
        assert_eq!(p.src, out.src.ip());
        assert_eq!(p.sport, out.src.port());
        assert_eq!(p.dst, out.dst.ip());
        assert_eq!(p.src_mac, MAC_B1);
        assert_eq!(p.dst_mac, MAC_C0);
        seen += 1;
    }
    assert_eq!(seen, n, "captured copies");
}

/// An XDP frame redirected (or XDP_TX'd) into a veth is delivered only when the peer end runs
/// NAPI, i.e. has an XDP program of its own (or GRO enabled). Attach a do-nothing one: the
/// rewrite program with an empty table passes everything.
fn xdp_pass_on(ns: &str, dev: &str) -> KernelPath {
    let dev = dev.to_string();
    spawn_in(ns, move || {
        KernelPath::open(&Options {
            media_interface: dev,
            rewrite: true,
            ..Default::default()
        })
        .expect("pass-through XDP on the veth peer")
    })
    .join()
    .expect("thread")
}

fn rewrite_to_c_and_back_to_a(tag: &str, v6: bool) {
    let t = Topo::new(tag);
    let _peer_c = xdp_pass_on(&t.ns_c, &t.c0);
    let _peer_a = xdp_pass_on(&t.ns_a, &t.a0);
    enter_netns(&t.ns_b);
    let mut kp = KernelPath::open(&Options {
        media_interface: t.b0.clone(),
        rewrite: true,
        ..Default::default()
    })
    .expect("open");
    assert_eq!(kp.xdp_mode(), Some(AttachedXdpMode::Native));
    let (a, b0, b1, c): (IpAddr, IpAddr, IpAddr, IpAddr) = if v6 {
        (A_V6.into(), B0_V6.into(), B1_V6.into(), C_V6.into())
    } else {
        (A_V4.into(), B0_V4.into(), B1_V4.into(), C_V4.into())
    };
    // SSRC 1 -> C through bpf_redirect (fib lookup); SSRC 2 -> back to A with XDP_TX.
    let to_c = Output {
        dst: SocketAddr::new(c, 6001),
        src: SocketAddr::new(b1, 7001),
        ssrc: 0xc0c0_0001,
        payload_type: Some(97),
        next_hop: NextHop::Fib { interface: None },
    };
    let to_a = Output {
        dst: SocketAddr::new(a, 6500),
        src: SocketAddr::new(b0, 7002),
        ssrc: 0xc0c0_0002,
        payload_type: None,
        next_hop: NextHop::Mac {
            interface: t.b0.clone(),
            dst_mac: MAC_A0,
        },
    };
    let id_c = kp
        .set_rewrite(
            FanoutKey {
                port: INGEST_PORT,
                ssrc: 1,
            },
            &to_c,
        )
        .expect("rewrite c");
    let id_a = kp
        .set_rewrite(
            FanoutKey {
                port: INGEST_PORT,
                ssrc: 2,
            },
            &to_a,
        )
        .expect("rewrite a");

    let (stop, h) = listen_c(&t, to_c.dst);
    let a_sock = spawn_in(&t.ns_a, move || udp_bind(to_a.dst.to_owned()))
        .join()
        .expect("bind in A");
    let f1 = rtp_frames(a, b0, 40000, 1, 300);
    let f2 = rtp_frames(a, b0, 40000, 2, 300);
    let mut frames = Vec::new();
    for (x, y) in f1.iter().zip(&f2) {
        frames.push(x.1.clone());
        frames.push(y.1.clone());
    }
    send_raw(&t, frames);
    let _ = stop.send(());
    let (got_c, cap) = h.join().expect("c");
    let got_a = drain(&a_sock, Duration::from_millis(300));

    let sent1: Vec<_> = f1.iter().map(|x| x.0.clone()).collect();
    let sent2: Vec<_> = f2.iter().map(|x| x.0.clone()).collect();
    check_copies(&sent1, &got_c, to_c.ssrc, Some(97));
    check_frames(&cap, &to_c, 300);
    check_copies(&sent2, &got_a, to_a.ssrc, None);

    let rc = kp.rewrite_counters().expect("counters");
    assert_eq!(rc.matched.packets, 600);
    assert_eq!(kp.output_counters(id_c).expect("c").packets, 300);
    assert_eq!(kp.output_counters(id_a).expect("a").packets, 300);
    eprintln!("rewrite ({tag}) counters: {rc:?}");
}

#[test]
fn rewrite_ipv4_redirect_and_xdp_tx() {
    require_root!("rewrite_ipv4_redirect_and_xdp_tx");
    rewrite_to_c_and_back_to_a("r4", false);
}

#[test]
fn rewrite_ipv6_redirect_and_xdp_tx() {
    require_root!("rewrite_ipv6_redirect_and_xdp_tx");
    rewrite_to_c_and_back_to_a("r6", true);
}

#[test]
fn guard_then_rewrite_through_the_tail_call() {
    require_root!("guard_then_rewrite_through_the_tail_call");
    let t = Topo::new("gt");
    let _peer_c = xdp_pass_on(&t.ns_c, &t.c0);
    enter_netns(&t.ns_b);
    let mut kp = KernelPath::open(&Options {
        media_interface: t.b0.clone(),
        guard: true,
        rewrite: true,
        stun_rate: StunRate {
            per_sec: 1,
            burst: 3,
        },
        ..Default::default()
    })
    .expect("open");
    kp.add_media_port(INGEST_PORT).expect("port");
    let camera = SocketAddr::new(A_V4.into(), 40000);
    let media = SocketAddr::new(B0_V4.into(), INGEST_PORT);
    kp.admit(&Flow {
        peer: camera,
        local: media,
    })
    .expect("admit");
    let out = Output {
        dst: SocketAddr::new(C_V4.into(), 6001),
        src: SocketAddr::new(B1_V4.into(), 7001),
        ssrc: 0xdddd_0001,
        payload_type: None,
        next_hop: NextHop::Fib { interface: None },
    };
    kp.set_rewrite(
        FanoutKey {
            port: INGEST_PORT,
            ssrc: 1,
        },
        &out,
    )
    .expect("rewrite");
    let sfu = udp_bind(media);
    let (stop, h) = listen_c(&t, out.dst);

    let admitted = rtp_frames(A_V4.into(), B0_V4.into(), 40000, 1, 200);
    let intruder = rtp_frames(A_V4.into(), B0_V4.into(), 40001, 1, 200);
    let mut frames = Vec::new();
    for (x, y) in admitted.iter().zip(&intruder) {
        frames.push(x.1.clone());
        frames.push(y.1.clone());
    }
    for i in 0..5 {
        frames.push(udp_frame(
            MAC_A0,
            MAC_B0,
            A_V4.into(),
            B0_V4.into(),
            40002,
            INGEST_PORT,
            &stun_binding_request(i),
            FrameOpts::default(),
        ));
    }
    send_raw(&t, frames);
    let _ = stop.send(());
    let (got_c, cap) = h.join().expect("c");
    let sent: Vec<_> = admitted.iter().map(|x| x.0.clone()).collect();
    check_copies(&sent, &got_c, out.ssrc, None);
    check_frames(&cap, &out, 200);
    // The SFU socket sees only the STUN requests within the burst: the admitted RTP was
    // rewritten away, the intruder dropped.
    let at_sfu = drain(&sfu, Duration::from_millis(300));
    assert_eq!(at_sfu.len(), 3, "STUN burst only");
    assert!(at_sfu.iter().all(|p| p.len() == 20));
    let g = kp.guard_counters().expect("guard");
    assert_eq!(g.pass_admitted.packets, 200);
    assert_eq!(g.drop_unknown_source.packets, 200);
    assert_eq!(g.pass_stun.packets, 3);
    assert_eq!(g.drop_stun_rate_limited.packets, 2);
    assert_eq!(kp.rewrite_counters().expect("rw").matched.packets, 200);
}

#[test]
fn xdp_falls_back_to_generic_mode_where_native_is_missing() {
    // Loopback has no native XDP, like a Raspberry Pi 4's bcmgenet.
    require_root!("xdp_falls_back_to_generic_mode_where_native_is_missing");
    let t = Topo::new("gm");
    enter_netns(&t.ns_b);
    let kp = KernelPath::open(&Options {
        media_interface: "lo".into(),
        guard: true,
        ..Default::default()
    })
    .expect("open on lo");
    assert_eq!(kp.xdp_mode(), Some(AttachedXdpMode::Generic));
    drop(kp);
    let native = KernelPath::open(&Options {
        media_interface: "lo".into(),
        guard: true,
        xdp_mode: XdpAttachMode::Native,
        ..Default::default()
    });
    let err = native.expect_err("native only must fail on lo");
    assert!(matches!(err, xdp_forwarder::Error::Attach { .. }), "{err}");
    eprintln!("native-only on lo: {err}");
}
