//! Hostile and odd packets: short UDP, bad lengths, IPv4 options, fragments, non-RTP, RTCP,
//! unknown SSRC, overflowing CSRC counts, RTP with CSRCs/extension/padding. They must pass
//! untouched (or be dropped) and be counted, never rewritten wrongly.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use xdp_forwarder::{
    Direction, FanoutKey, Flow, KernelPath, NextHop, Options, Output, StunRate, TcHook,
};

const PORT: u16 = 5004;
const SSRC: u32 = 0x5151_5151;

fn frame(payload: &[u8], opts: FrameOpts) -> Vec<u8> {
    udp_frame(
        MAC_A0,
        MAC_B0,
        A_V4.into(),
        B0_V4.into(),
        40000,
        PORT,
        payload,
        opts,
    )
}

fn send_raw(t: &Topo, frames: Vec<Vec<u8>>) {
    let a0 = t.a0.clone();
    spawn_in(&t.ns_a, move || {
        let raw = RawSock::open(&a0);
        for f in &frames {
            raw.send(f);
            std::thread::sleep(Duration::from_micros(200));
        }
    })
    .join()
    .expect("sender");
}

#[test]
fn hostile_packets_to_a_fanout_port() {
    require_root!("hostile_packets_to_a_fanout_port");
    let t = Topo::new("hf");
    enter_netns(&t.ns_b);
    let mut kp = KernelPath::open(&Options {
        fanout: vec![TcHook {
            interface: t.b0.clone(),
            direction: Direction::Ingress,
        }],
        ..Default::default()
    })
    .expect("open");
    let outs: Vec<Output> = (0..2u16)
        .map(|i| Output {
            dst: SocketAddr::new(C_V4.into(), 6001 + i),
            src: SocketAddr::new(B1_V4.into(), 7001 + i),
            ssrc: 0x0a0a_0000 + u32::from(i),
            payload_type: Some(100 + i as u8),
            next_hop: NextHop::Fib { interface: None },
        })
        .collect();
    kp.set_outputs(
        FanoutKey {
            port: PORT,
            ssrc: SSRC,
        },
        &outs,
    )
    .expect("outputs");
    let sfu = udp_bind(SocketAddr::new(B0_V4.into(), PORT));

    // Receivers in C.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let listen: Vec<SocketAddr> = outs.iter().map(|o| o.dst).collect();
    let rx = spawn_in(&t.ns_c, move || {
        let socks: Vec<_> = listen.iter().map(|a| udp_bind(*a)).collect();
        ready_tx.send(()).expect("ready");
        let _ = stop_rx.recv();
        socks
            .iter()
            .map(|s| drain(s, Duration::from_millis(300)))
            .collect::<Vec<_>>()
    });
    ready_rx.recv().expect("ready");

    let good = |seq: u16, shape: RtpShape| rtp_packet(96, seq, SSRC, 300, shape);
    let mut rtcp = vec![0x80, 200, 0x00, 0x06];
    rtcp.extend_from_slice(&SSRC.to_be_bytes());
    rtcp.extend_from_slice(&SSRC.to_be_bytes()); // SSRC-looking bytes where RTP has its SSRC
    rtcp.extend_from_slice(&[0u8; 16]);
    let mut v1 = good(100, RtpShape::default());
    v1[0] = 0x40;
    let unknown_ssrc = rtp_packet(96, 101, 0x0bad_0bad, 300, RtpShape::default());
    let mut csrc_overflow = rtp_packet(96, 102, SSRC, 40, RtpShape::default());
    csrc_overflow[0] = 0x8f; // 15 CSRCs claimed, 28 bytes after the fixed header
    let short = vec![0x80, 96, 0, 1, 0, 0, 0, 0];
    let with_options = good(103, RtpShape::default());
    let fragmented = good(104, RtpShape::default());
    let (frag1, frag2) = ipv4_fragments(&frame(&fragmented, FrameOpts::default()), 64);

    // What B's stack must deliver to the SFU socket, untouched, in this order.
    let delivered: Vec<Vec<u8>> = vec![
        short.clone(),
        Vec::new(),
        v1.clone(),
        rtcp.clone(),
        unknown_ssrc.clone(),
        csrc_overflow.clone(),
        with_options.clone(),
        fragmented.clone(),
    ];
    let mut frames = vec![
        frame(&short, FrameOpts::default()),
        frame(&[], FrameOpts::default()),
        frame(&v1, FrameOpts::default()),
        frame(&rtcp, FrameOpts::default()),
        frame(&unknown_ssrc, FrameOpts::default()),
        frame(&csrc_overflow, FrameOpts::default()),
        frame(
            &with_options,
            FrameOpts {
                ip_options: 4,
                ..Default::default()
            },
        ),
        frag1,
        frag2,
        // Inconsistent UDP lengths: the stack drops these too.
        frame(
            &good(105, RtpShape::default()),
            FrameOpts {
                udp_len: Some(8 + 300 + 10),
                ..Default::default()
            },
        ),
        frame(
            &good(106, RtpShape::default()),
            FrameOpts {
                udp_len: Some(4),
                ..Default::default()
            },
        ),
    ];
    // Well-formed RTP for the key, every shape: these are the only ones copied.
    let shapes = [
        RtpShape::default(),
        RtpShape {
            csrcs: 15,
            ..Default::default()
        },
        RtpShape {
            extension_words: 3,
            marker: true,
            ..Default::default()
        },
        RtpShape {
            padding: 17,
            ..Default::default()
        },
        RtpShape {
            csrcs: 2,
            extension_words: 1,
            padding: 1,
            marker: true,
        },
    ];
    let copied: Vec<Vec<u8>> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| good(i as u16, *s))
        .collect();
    frames.extend(copied.iter().map(|p| frame(p, FrameOpts::default())));
    send_raw(&t, frames);

    let at_sfu = drain(&sfu, Duration::from_millis(300));
    assert_eq!(
        at_sfu, delivered,
        "passed packets must reach the stack untouched"
    );
    let _ = stop_tx.send(());
    let got = rx.join().expect("receivers");
    for (o, g) in outs.iter().zip(&got) {
        assert_eq!(g.len(), copied.len(), "receiver {}", o.dst);
        for (sent, p) in copied.iter().zip(g) {
            let mut want = sent.clone();
            want[1] = (want[1] & 0x80) | o.payload_type.unwrap_or(96);
            want[8..12].copy_from_slice(&o.ssrc.to_be_bytes());
            assert_eq!(p, &want, "copy to {} (CSRC/extension/padding kept)", o.dst);
        }
    }
    let c = kp.fanout_counters().expect("counters");
    eprintln!("hostile fan-out counters: {c:#?}");
    assert_eq!(c.matched.packets, copied.len() as u64);
    assert_eq!(
        c.pass_not_rtp.packets, 5,
        "short, empty, v1, RTCP, CSRC overflow"
    );
    assert_eq!(c.pass_no_key.packets, 1);
    assert_eq!(c.pass_unsupported.packets, 2, "IP options, first fragment");
    assert_eq!(c.pass_malformed.packets, 2);
}

#[test]
fn hostile_packets_to_a_guarded_port() {
    require_root!("hostile_packets_to_a_guarded_port");
    let t = Topo::new("hg");
    enter_netns(&t.ns_b);
    let mut kp = KernelPath::open(&Options {
        media_interface: t.b0.clone(),
        guard: true,
        ..Default::default()
    })
    .expect("open");
    kp.add_media_port(PORT).expect("port");
    let media = SocketAddr::new(B0_V4.into(), PORT);
    kp.admit(&Flow {
        peer: SocketAddr::new(IpAddr::V4(A_V4), 40000),
        local: media,
    })
    .expect("admit");
    let sfu = udp_bind(media);

    let rtp = rtp_packet(96, 1, SSRC, 200, RtpShape::default());
    let mut bad_stun_len = stun_binding_request(1);
    bad_stun_len[3] = 8; // claims 8 attribute bytes, has none
    let mut bad_stun_unaligned = stun_binding_request(2);
    bad_stun_unaligned.extend_from_slice(&[0, 0]);
    bad_stun_unaligned[3] = 2;
    let from_unknown = |p: &[u8], opts: FrameOpts| {
        udp_frame(
            MAC_A0,
            MAC_B0,
            A_V4.into(),
            B0_V4.into(),
            40009,
            PORT,
            p,
            opts,
        )
    };
    let frames = vec![
        // Admitted 5-tuple but inconsistent UDP length: malformed, dropped.
        frame(
            &rtp,
            FrameOpts {
                udp_len: Some(8 + 200 + 4),
                ..Default::default()
            },
        ),
        frame(
            &rtp,
            FrameOpts {
                udp_len: Some(7),
                ..Default::default()
            },
        ),
        from_unknown(&bad_stun_len, FrameOpts::default()),
        from_unknown(&bad_stun_unaligned, FrameOpts::default()),
        // STUN-looking but not a binding request (a binding indication): unknown source.
        from_unknown(
            &[
                0x00, 0x11, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            FrameOpts::default(),
        ),
        // Short datagram from an unknown source.
        from_unknown(&[1, 2, 3], FrameOpts::default()),
        // IPv4 options from an unknown source: the guard does not parse it; passes, counted.
        from_unknown(
            &rtp,
            FrameOpts {
                ip_options: 8,
                ..Default::default()
            },
        ),
        // Admitted and well-formed.
        frame(&rtp, FrameOpts::default()),
    ];
    send_raw(&t, frames);
    let at_sfu = drain(&sfu, Duration::from_millis(300));
    assert_eq!(
        at_sfu,
        vec![rtp.clone(), rtp.clone()],
        "options packet and the admitted one"
    );
    let c = kp.guard_counters().expect("counters");
    eprintln!("hostile guard counters: {c:#?}");
    assert_eq!(c.drop_malformed.packets, 4);
    assert_eq!(c.drop_unknown_source.packets, 2);
    assert_eq!(c.pass_unsupported.packets, 1);
    assert_eq!(c.pass_admitted.packets, 1);
    assert_eq!(c.pass_stun.packets, 0);
}

/// IPv6 extension headers: the guard skips destination options to find the UDP datagram, so an
/// unknown source cannot slip past the 5-tuple check by adding one, and an admitted flow that
/// carries one still passes; a chain longer than the guard walks is dropped.
#[test]
fn ipv6_extension_headers_meet_the_guard() {
    require_root!("ipv6_extension_headers_meet_the_guard");
    let t = Topo::new("hx");
    enter_netns(&t.ns_b);
    let mut kp = KernelPath::open(&Options {
        media_interface: t.b0.clone(),
        guard: true,
        ..Default::default()
    })
    .expect("open");
    kp.add_media_port(PORT).expect("port");
    let media = SocketAddr::new(B0_V6.into(), PORT);
    kp.admit(&Flow {
        peer: SocketAddr::new(IpAddr::V6(A_V6), 40000),
        local: media,
    })
    .expect("admit");
    let sfu = udp_bind(media);

    let rtp = rtp_packet(96, 1, SSRC, 200, RtpShape::default());
    let v6 = |sport: u16, ipv6_dest_options: usize| {
        udp_frame(
            MAC_A0,
            MAC_B0,
            A_V6.into(),
            B0_V6.into(),
            sport,
            PORT,
            &rtp,
            FrameOpts {
                ipv6_dest_options,
                ..Default::default()
            },
        )
    };
    send_raw(
        &t,
        vec![
            // Unknown source behind one and two destination options headers: dropped.
            v6(40009, 1),
            v6(40009, 2),
            // Five headers: beyond what the guard walks, dropped as malformed.
            v6(40000, 5),
            // The admitted flow with a destination options header, and without.
            v6(40000, 1),
            v6(40000, 0),
        ],
    );
    let at_sfu = drain(&sfu, Duration::from_millis(300));
    assert_eq!(
        at_sfu,
        vec![rtp.clone(), rtp.clone()],
        "the admitted flow's two"
    );
    let c = kp.guard_counters().expect("counters");
    eprintln!("IPv6 extension header guard counters: {c:#?}");
    assert_eq!(c.drop_unknown_source.packets, 2);
    assert_eq!(c.drop_malformed.packets, 1);
    assert_eq!(c.pass_admitted.packets, 2);
    assert_eq!(c.pass_unsupported.packets, 0);
}

/// STUN buckets key an IPv6 source by its /64: a host that rotates through the addresses of its
/// /64 shares one bucket; a source in another /64 has its own.
#[test]
fn ipv6_stun_buckets_are_per_64() {
    require_root!("ipv6_stun_buckets_are_per_64");
    let t = Topo::new("h64");
    enter_netns(&t.ns_b);
    let kp = KernelPath::open(&Options {
        media_interface: t.b0.clone(),
        guard: true,
        // No refill: only the burst passes, however long the sending takes.
        stun_rate: StunRate {
            per_sec: 0,
            burst: 4,
        },
        ..Default::default()
    });
    let mut kp = kp.expect("open");
    kp.add_media_port(PORT).expect("port");
    let stun = |src: std::net::Ipv6Addr, i: u32| {
        udp_frame(
            MAC_A0,
            MAC_B0,
            src.into(),
            B0_V6.into(),
            40000,
            PORT,
            &stun_binding_request(i),
            FrameOpts::default(),
        )
    };
    let same_64 = |last: u16| {
        let mut seg = A_V6.segments();
        seg[7] = last;
        std::net::Ipv6Addr::from(seg)
    };
    let mut other_64 = A_V6.segments();
    other_64[3] = 0x99;
    let other_64 = std::net::Ipv6Addr::from(other_64);
    // Four addresses of one /64, two requests each; then two from another /64.
    let mut frames: Vec<Vec<u8>> = (0..8u16)
        .map(|i| stun(same_64(0x100 + i / 2), u32::from(i)))
        .collect();
    frames.extend((0..2).map(|i| stun(other_64, 100 + i)));
    send_raw(&t, frames);
    let c = kp.guard_counters().expect("counters");
    eprintln!("IPv6 STUN bucket counters: {c:#?}");
    assert_eq!(
        c.pass_stun.packets,
        4 + 2,
        "one burst for the /64, one for the other"
    );
    assert_eq!(c.drop_stun_rate_limited.packets, 4);
}
