//! Micro-benchmarks of the per-packet work on edge-sfu's forwarding path:
//!
//! - `rtp_view`: `sfu_core::wire::RtpPacket::new_checked` on a 1100-byte packet plus the header reads;
//! - `rtp_rewrite`: the in-place header rewrite (SSRC, sequence number, timestamp, payload type);
//! - `seq_ts_rewriter`: `sfu_core::rewrite::SeqTsRewriter::rewrite` for one leg;
//! - `demux`: `sfu_core::demux::Demux` lookups by 5-tuple and by ICE ufrag among 1000 peers;
//! - `srtp_seal`: one RTP packet written on a connected str0m `Rtc` (`write_rtp`) and sealed into
//!   an SRTP datagram (`poll_output` → `Transmit`), as the SFU does once per subscriber leg.
//!
//! There is no buffer pool in edge-sfu (each worker reuses one receive buffer; str0m allocates the
//! sealed datagram), so there is nothing to benchmark there.
//!
//! Run: `cargo bench --bench forwarding` (add `-- srtp` to pick some).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sfu_core::demux::Demux;
use sfu_core::rewrite::SeqTsRewriter;
use sfu_core::wire::{RtpPacket, RtpRepr};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};

fn rtp_packet(payload: usize) -> Vec<u8> {
    let repr = RtpRepr {
        marker: true,
        payload_type: 96,
        sequence_number: 4711,
        timestamp: 90_000,
        ssrc: 0x1234_5678,
    };
    let mut buf = vec![0u8; 12 + payload];
    repr.emit(&mut buf).expect("the buffer holds the header");
    buf
}

fn rtp(c: &mut Criterion) {
    let buf = rtp_packet(1100);
    let mut g = c.benchmark_group("rtp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rtp_view", |b| {
        b.iter(|| {
            let p = RtpPacket::new_checked(black_box(&buf[..])).expect("valid packet");
            black_box((
                p.sequence_number(),
                p.timestamp(),
                p.ssrc(),
                p.payload_type(),
                p.marker(),
                p.payload().len(),
            ))
        })
    });
    let mut owned = buf.clone();
    let mut n: u16 = 0;
    g.bench_function("rtp_rewrite", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let mut p = RtpPacket::new_unchecked(black_box(&mut owned[..]));
            p.set_ssrc(0xdead_beef);
            p.set_sequence_number(n);
            p.set_timestamp(u32::from(n) * 3000);
            p.set_payload_type(102);
        })
    });
    let mut rw = SeqTsRewriter::new();
    let start = Instant::now();
    let mut seq: u64 = 70_000;
    g.bench_function("seq_ts_rewriter", |b| {
        b.iter(|| {
            seq += 1;
            black_box(rw.rewrite(
                black_box(0x1234_5678),
                seq,
                (seq as u32).wrapping_mul(3000),
                start,
                90_000,
            ))
        })
    });
    g.finish();
}

fn demux(c: &mut Criterion) {
    let mut d = Demux::default();
    let local: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let peers = 1000u64;
    for p in 0..peers {
        d.add_peer(p, &format!("ufrag{p:04}"));
        let remote = SocketAddr::from(([127, 0, 0, 1], 20_000 + p as u16));
        d.learn(p, Protocol::Udp, (remote, local), 4);
    }
    let hit = (SocketAddr::from(([127, 0, 0, 1], 20_500)), local);
    let miss = (SocketAddr::from(([127, 0, 0, 2], 9)), local);
    let mut g = c.benchmark_group("demux");
    g.throughput(Throughput::Elements(1));
    g.bench_function("by_tuple_hit_1000_peers", |b| {
        b.iter(|| black_box(d.by_tuple(Protocol::Udp, black_box(&hit))))
    });
    g.bench_function("by_tuple_miss_1000_peers", |b| {
        b.iter(|| black_box(d.by_tuple(Protocol::Udp, black_box(&miss))))
    });
    g.bench_function("by_ufrag_hit_1000_peers", |b| {
        b.iter(|| black_box(d.by_ufrag(black_box(b"ufrag0500"))))
    });
    g.finish();
}

/// Two str0m peers connected over an in-memory network: `a` sends one video m-line to `b`.
struct Pair {
    a: Rtc,
    b: Rtc,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    mid: Mid,
    now: Instant,
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        let a_addr: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let b_addr: SocketAddr = "127.0.0.1:6000".parse().expect("addr");
        let mut a = Rtc::builder().set_rtp_mode(true).build(now);
        let mut b = Rtc::builder().set_rtp_mode(true).build(now);
        a.add_local_candidate(Candidate::host(a_addr, "udp").expect("candidate"));
        b.add_local_candidate(Candidate::host(b_addr, "udp").expect("candidate"));
        let mut api = a.sdp_api();
        let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        let answer = b
            .sdp_api()
            .accept_offer(offer)
            .expect("accepting the offer");
        a.sdp_api()
            .accept_answer(pending, answer)
            .expect("accepting the answer");
        let mut pair = Pair {
            a,
            b,
            a_addr,
            b_addr,
            mid,
            now,
        };
        let mut connected = false;
        for _ in 0..10_000 {
            connected |= pair.step();
            if connected && pair.a.is_connected() && pair.b.is_connected() {
                return pair;
            }
        }
        panic!("the in-memory str0m pair did not connect");
    }

    /// Moves datagrams both ways and advances time a little; true once `a` saw `Connected`.
    fn step(&mut self) -> bool {
        let mut connected = false;
        let mut to_b = Vec::new();
        let mut to_a = Vec::new();
        loop {
            match self.a.poll_output().expect("a output") {
                Output::Transmit(t) => to_b.push(t.contents.to_vec()),
                Output::Event(Event::Connected) => connected = true,
                Output::Event(_) => {}
                Output::Timeout(_) => break,
            }
        }
        loop {
            match self.b.poll_output().expect("b output") {
                Output::Transmit(t) => to_a.push(t.contents.to_vec()),
                Output::Event(_) => {}
                Output::Timeout(_) => break,
            }
        }
        for d in to_b {
            if let Ok(r) = Receive::new(Protocol::Udp, self.a_addr, self.b_addr, &d) {
                let _ = self.b.handle_input(Input::Receive(self.now, r));
            }
        }
        for d in to_a {
            if let Ok(r) = Receive::new(Protocol::Udp, self.b_addr, self.a_addr, &d) {
                let _ = self.a.handle_input(Input::Receive(self.now, r));
            }
        }
        self.now += Duration::from_millis(5);
        let _ = self.a.handle_input(Input::Timeout(self.now));
        let _ = self.b.handle_input(Input::Timeout(self.now));
        connected
    }
}

fn srtp_seal(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp_seal");
    for size in [100usize, 1100] {
        let mut pair = Pair::new();
        let pt = {
            let media = pair.a.media(pair.mid).expect("the m-line");
            *media.remote_pts().first().expect("a payload type")
        };
        let payload: std::sync::Arc<[u8]> = vec![0x5au8; size].into();
        let mut seq: u64 = 1000;
        // Sanity check: every write must come out sealed, so the timing below is of real work.
        let (mut sealed, mut timeouts) = (0, 0);
        for _ in 0..1000 {
            seq += 1;
            let (s, t) = seal_one(&mut pair, pt, seq, &payload, size);
            sealed += usize::from(s);
            timeouts += t;
        }
        eprintln!(
            "srtp_seal/{size}: 1000 writes gave {sealed} sealed datagrams ({timeouts} timeouts fed)"
        );
        assert_eq!(
            sealed, 1000,
            "write_rtp did not yield one SRTP datagram per packet"
        );
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                seq += 1;
                black_box(seal_one(&mut pair, pt, seq, &payload, size))
            })
        });
    }
    g.finish();
}

/// Writes one RTP packet on `pair.a` and polls until its SRTP datagram comes out. Returns whether
/// it did and how many str0m timeouts had to be fed on the way (each moves the clock 1 ms).
fn seal_one(
    pair: &mut Pair,
    pt: str0m::media::Pt,
    seq: u64,
    payload: &std::sync::Arc<[u8]>,
    size: usize,
) -> (bool, u32) {
    let now = pair.now;
    let mut api = pair.a.direct_api();
    let Some(tx) = api.stream_tx_by_mid(pair.mid, None) else {
        return (false, 0);
    };
    tx.write_rtp(
        RtpWrite::new(
            pt,
            seq.into(),
            (seq as u32).wrapping_mul(3000),
            now,
            payload.clone(),
        )
        .marker(true)
        .nackable(true),
    );
    let mut timeouts = 0;
    loop {
        match pair.a.poll_output() {
            Ok(Output::Transmit(t)) => {
                // RTCP may come out too; the sealed RTP packet is the one longer than its payload.
                if t.contents.len() > size {
                    black_box(&t);
                    return (true, timeouts);
                }
            }
            Ok(Output::Event(_)) => {}
            Ok(Output::Timeout(_)) if timeouts < 3 => {
                timeouts += 1;
                pair.now += Duration::from_millis(1);
                let _ = pair.a.handle_input(Input::Timeout(pair.now));
            }
            Ok(Output::Timeout(_)) | Err(_) => return (false, timeouts),
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = rtp, demux, srtp_seal
}
criterion_main!(benches);
