//! XDP guard on B's interface towards A: floods from unknown sources are dropped and counted,
//! admitted flows and rate-limited STUN binding requests reach the media socket.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use xdp_forwarder::{Flow, KernelPath, Options, StunRate};

const MEDIA_PORT: u16 = 5004;

fn open_guard(t: &Topo, rate: StunRate) -> KernelPath {
    let kp = KernelPath::open(&Options {
        media_interface: t.b0.clone(),
        guard: true,
        stun_rate: rate,
        ..Default::default()
    })
    .expect("open kernel path");
    eprintln!("guard attached in {:?} mode", kp.xdp_mode());
    kp
}

/// Guard scenario for one address family.
fn flood_admitted_and_stun(tag: &str, a: IpAddr, b: IpAddr) {
    let t = Topo::new(tag);
    enter_netns(&t.ns_b);
    let mut kp = open_guard(
        &t,
        StunRate {
            per_sec: 5,
            burst: 10,
        },
    );
    kp.add_media_port(MEDIA_PORT).expect("port");
    let admitted_peer = SocketAddr::new(a, 40000);
    let media = SocketAddr::new(b, MEDIA_PORT);
    kp.admit(&Flow {
        peer: admitted_peer,
        local: media,
    })
    .expect("admit");
    let sfu = udp_bind(media);
    // A port that is not a media port: untouched.
    let other = udp_bind(SocketAddr::new(b, 5999));

    spawn_in(&t.ns_a, move || {
        let admitted = UdpSocket::bind(admitted_peer).expect("bind admitted");
        let flood = UdpSocket::bind(SocketAddr::new(a, 40001)).expect("bind flood");
        let stun = UdpSocket::bind(SocketAddr::new(a, 40002)).expect("bind stun");
        for i in 0u32..2000 {
            flood.send_to(&[0xde; 160], media).expect("flood");
            if i % 10 == 0 {
                let seq = (i / 10) as u16;
                admitted
                    .send_to(&rtp_packet(96, seq, 7, 200, RtpShape::default()), media)
                    .expect("admitted");
            }
            if i % 8 == 7 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // 30 binding requests at once from a new source: the burst (10) passes, the rest not.
        for i in 0..30 {
            stun.send_to(&stun_binding_request(i), media).expect("stun");
        }
        flood
            .send_to(b"not a media port", SocketAddr::new(media.ip(), 5999))
            .expect("other");
    })
    .join()
    .expect("sender");

    let got = drain(&sfu, Duration::from_millis(300));
    let rtp = got.iter().filter(|p| p.len() == 200).count();
    let stun_ok = got.iter().filter(|p| p.len() == 20).count();
    let flood_leaked = got.iter().filter(|p| p.len() == 160).count();
    assert_eq!(rtp, 200, "admitted flow lost packets");
    assert_eq!(flood_leaked, 0, "unknown source reached the media socket");
    assert!(
        (10..=11).contains(&stun_ok),
        "{stun_ok} STUN requests passed, want the burst of 10"
    );
    assert_eq!(drain(&other, Duration::from_millis(100)).len(), 1);

    let c = kp.guard_counters().expect("counters");
    eprintln!("guard counters ({tag}): {c:#?}");
    assert_eq!(c.drop_unknown_source.packets, 2000);
    assert_eq!(c.pass_admitted.packets, 200);
    assert_eq!(c.pass_stun.packets as usize, stun_ok);
    assert_eq!(c.drop_stun_rate_limited.packets as usize, 30 - stun_ok);
    assert_eq!(c.drop_malformed.packets, 0);
}

#[test]
fn guard_ipv4_drops_unknown_passes_admitted_and_rate_limited_stun() {
    require_root!("guard_ipv4_drops_unknown_passes_admitted_and_rate_limited_stun");
    flood_admitted_and_stun("g4", A_V4.into(), B0_V4.into());
}

#[test]
fn guard_ipv6_drops_unknown_passes_admitted_and_rate_limited_stun() {
    require_root!("guard_ipv6_drops_unknown_passes_admitted_and_rate_limited_stun");
    flood_admitted_and_stun("g6", A_V6.into(), B0_V6.into());
}

#[test]
fn guard_revoke_and_stun_refill() {
    require_root!("guard_revoke_and_stun_refill");
    let t = Topo::new("gr");
    enter_netns(&t.ns_b);
    let mut kp = open_guard(
        &t,
        StunRate {
            per_sec: 20,
            burst: 2,
        },
    );
    kp.set_media_ports(&[MEDIA_PORT, 5006, 5008])
        .expect("ports");
    kp.set_media_ports(&[5008, MEDIA_PORT]).expect("ports");
    assert_eq!(kp.media_ports().expect("ports"), vec![MEDIA_PORT, 5008]);
    let peer = SocketAddr::new(A_V4.into(), 40000);
    let media = SocketAddr::new(B0_V4.into(), MEDIA_PORT);
    let flow = Flow { peer, local: media };
    kp.admit(&flow).expect("admit");
    let sfu = udp_bind(media);
    let send = |n: usize, payload: Vec<u8>, ns: &str| {
        spawn_in(ns, move || {
            let s = UdpSocket::bind(peer).expect("bind");
            for _ in 0..n {
                s.send_to(&payload, media).expect("send");
            }
        })
        .join()
        .expect("sender");
    };
    send(5, vec![0x80; 100], &t.ns_a);
    assert_eq!(drain(&sfu, Duration::from_millis(200)).len(), 5);
    kp.revoke(&flow).expect("revoke");
    send(5, vec![0x80; 100], &t.ns_a);
    assert_eq!(
        drain(&sfu, Duration::from_millis(200)).len(),
        0,
        "revoked flow passed"
    );

    // STUN: burst 2, then refill at 20/s: after 200 ms about 4 more tokens (capped at 2).
    send(5, stun_binding_request(1), &t.ns_a);
    assert_eq!(drain(&sfu, Duration::from_millis(200)).len(), 2);
    std::thread::sleep(Duration::from_millis(300));
    send(5, stun_binding_request(2), &t.ns_a);
    assert_eq!(
        drain(&sfu, Duration::from_millis(200)).len(),
        2,
        "bucket refilled to its burst"
    );
    let c = kp.guard_counters().expect("counters");
    assert_eq!(c.pass_stun.packets, 4);
    assert_eq!(c.drop_stun_rate_limited.packets, 6);
    assert_eq!(c.drop_unknown_source.packets, 5);
}
