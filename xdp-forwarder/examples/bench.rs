//! Fan-out benchmark: kernel path (TC fan-out, and XDP rewrite for N = 1) against a userspace
//! recvmmsg/sendmmsg loop doing the same rewrite, in network namespaces on this machine.
//!
//! ```sh
//! sudo cargo run --release -p xdp-forwarder --example bench [-- SECONDS]
//! ```
//!
//! A: a sender blasting plain RTP (sendmmsg, one flow) -> B: the forwarder under test, N
//! outputs -> C: a sink that drops and counts the copies in XDP (the guard program, with the
//! output ports as media ports and no admitted flow). Prints a table; asserts nothing.
//!
//! Columns: `out pps` = copies counted by the sink per second; `ns/copy` = machine-wide busy
//! CPU time (from /proc/stat, all cores, sender and sink included, and whatever else runs on
//! the machine) divided by copies; `fwd ns/copy` = CPU time of the userspace forwarder thread
//! per copy (the kernel path has no such thread: its work is in softirq, inside the machine
//! figure).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use xdp_forwarder::{Direction, FanoutKey, KernelPath, NextHop, Options, Output, StunRate, TcHook};

const INGEST_PORT: u16 = 5004;
const SSRC: u32 = 0x1234_5678;
const BATCH: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Method {
    KernelTc,
    KernelXdp,
    Userspace,
    Uring,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::KernelTc => "kernel TC fan-out",
            Method::KernelXdp => "kernel XDP rewrite",
            Method::Userspace => "userspace sendmmsg",
            Method::Uring => "userspace io_uring",
        }
    }
}

fn busy_jiffies() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    if v.len() < 7 {
        return 0;
    }
    v[0] + v[1] + v[2] + v[5] + v[6]
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn outputs(n: usize) -> Vec<Output> {
    (0..n)
        .map(|i| Output {
            dst: SocketAddr::new(C_V4.into(), 6001 + i as u16),
            src: SocketAddr::new(B1_V4.into(), 7001 + i as u16),
            ssrc: 0xa000_0000 + i as u32,
            payload_type: Some(100),
            next_hop: NextHop::Fib { interface: None },
        })
        .collect()
}

/// Sends the same RTP packet in batches until `stop`.
fn sender(stop: Arc<AtomicBool>, size: usize) {
    let s = UdpSocket::bind((A_V4, 40000)).expect("bind sender");
    s.connect((B0_V4, INGEST_PORT)).expect("connect");
    let pkt = rtp_packet(96, 1, SSRC, size, RtpShape::default());
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: pkt.as_ptr() as *mut libc::c_void,
            iov_len: pkt.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; pointers set below stay valid for the loop.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, io) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = io;
        m.msg_hdr.msg_iovlen = 1;
    }
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: valid message array.
        unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
    }
}

/// The userspace forwarder: recvmmsg, N rewritten copies per packet, sendmmsg.
fn userspace_forwarder(stop: Arc<AtomicBool>, n: usize, cpu_ns: Arc<AtomicU64>) {
    let rx = udp_bind(SocketAddr::new(B0_V4.into(), INGEST_PORT));
    rx.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let tx = UdpSocket::bind((B1_V4, 7000)).expect("bind tx");
    let outs = outputs(n);
    let dsts: Vec<libc::sockaddr_in> = outs
        .iter()
        .map(|o| {
            let SocketAddr::V4(d) = o.dst else {
                unreachable!()
            };
            sockaddr(d)
        })
        .collect();
    let mut inbufs = vec![[0u8; 1500]; BATCH];
    let mut in_iov: Vec<libc::iovec> = inbufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: plain data.
    let mut in_msgs: Vec<libc::mmsghdr> =
        (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, io) in in_msgs.iter_mut().zip(in_iov.iter_mut()) {
        m.msg_hdr.msg_iov = io;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut outbufs = vec![[0u8; 1500]; BATCH * n];
    let mut out_iov: Vec<libc::iovec> = vec![
        libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0
        };
        BATCH * n
    ];
    // SAFETY: plain data.
    let mut out_msgs: Vec<libc::mmsghdr> = (0..BATCH * n)
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    let start = thread_cpu_ns();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: valid message array with valid buffers.
        let got = unsafe {
            libc::recvmmsg(
                rx.as_raw_fd(),
                in_msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if got <= 0 {
            continue;
        }
        let got = got as usize;
        let mut k = 0;
        for (i, m) in in_msgs.iter().enumerate().take(got) {
            let len = m.msg_len as usize;
            let src = &inbufs[i][..len];
            for (j, o) in outs.iter().enumerate() {
                let buf = &mut outbufs[k];
                buf[..len].copy_from_slice(src);
                if len >= 12 {
                    if let Some(pt) = o.payload_type {
                        buf[1] = (buf[1] & 0x80) | pt;
                    }
                    buf[8..12].copy_from_slice(&o.ssrc.to_be_bytes());
                }
                out_iov[k] = libc::iovec {
                    iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                    iov_len: len,
                };
                let mh = &mut out_msgs[k].msg_hdr;
                mh.msg_name = &dsts[j] as *const _ as *mut libc::c_void;
                mh.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                mh.msg_iov = &mut out_iov[k];
                mh.msg_iovlen = 1;
                k += 1;
            }
        }
        let mut sent = 0;
        while sent < k {
            // SAFETY: the first k messages are fully set up.
            let r = unsafe {
                libc::sendmmsg(
                    tx.as_raw_fd(),
                    out_msgs[sent..].as_mut_ptr(),
                    (k - sent) as u32,
                    0,
                )
            };
            if r <= 0 {
                break;
            }
            sent += r as usize;
        }
    }
    cpu_ns.store(thread_cpu_ns() - start, Ordering::Relaxed);
}

/// Copies waiting for a sender: buffer and destination.
type SendQueue = std::collections::VecDeque<(Vec<u8>, SocketAddr)>;

/// The io_uring forwarder, shaped like edge-sfu's uring shell: one receive in flight, the copies
/// queued, a few sender tasks keeping sends in flight, buffers recycled through a free list.
fn uring_forwarder(stop: Arc<AtomicBool>, n: usize, cpu_ns: Arc<AtomicU64>) {
    use std::cell::RefCell;
    use std::rc::Rc;

    const SENDERS: usize = 8;
    let rx = udp_bind(SocketAddr::new(B0_V4.into(), INGEST_PORT));
    let tx = UdpSocket::bind((B1_V4, 7000)).expect("bind tx");
    let outs = outputs(n);
    let start = thread_cpu_ns();
    tokio_uring::start(async move {
        let rx = tokio_uring::net::UdpSocket::from_std(rx);
        let tx = Rc::new(tokio_uring::net::UdpSocket::from_std(tx));
        let queue: Rc<RefCell<SendQueue>> = Rc::default();
        let free: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
        let wake = Rc::new(tokio::sync::Notify::new());
        for _ in 0..SENDERS {
            let (tx, queue, free, wake, stop) = (
                tx.clone(),
                queue.clone(),
                free.clone(),
                wake.clone(),
                stop.clone(),
            );
            tokio_uring::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let next = queue.borrow_mut().pop_front();
                    match next {
                        Some((buf, dst)) => {
                            if !queue.borrow().is_empty() {
                                wake.notify_one();
                            }
                            let (_, buf) = tx.send_to(buf, dst).await;
                            free.borrow_mut().push(buf);
                        }
                        None => {
                            let _ =
                                tokio::time::timeout(Duration::from_millis(50), wake.notified())
                                    .await;
                        }
                    }
                }
            });
        }
        let mut inbuf = vec![0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let recv = tokio::time::timeout(Duration::from_millis(50), rx.recv_from(inbuf));
            let Ok((result, buf)) = recv.await else {
                inbuf = vec![0u8; 1500];
                continue;
            };
            inbuf = buf;
            let Ok((len, _)) = result else { continue };
            let mut q = queue.borrow_mut();
            for o in &outs {
                let mut out = free
                    .borrow_mut()
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(1500));
                out.clear();
                out.extend_from_slice(&inbuf[..len]);
                if len >= 12 {
                    if let Some(pt) = o.payload_type {
                        out[1] = (out[1] & 0x80) | pt;
                    }
                    out[8..12].copy_from_slice(&o.ssrc.to_be_bytes());
                }
                q.push_back((out, o.dst));
            }
            drop(q);
            wake.notify_one();
        }
    });
    cpu_ns.store(thread_cpu_ns() - start, Ordering::Relaxed);
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

struct Row {
    method: Method,
    n: usize,
    size: usize,
    out_pps: f64,
    ns_per_copy: f64,
    fwd_ns_per_copy: Option<f64>,
}

fn run(t: &Topo, sink: &KernelPath, method: Method, n: usize, size: usize, secs: f64) -> Row {
    // The forwarder under test, in B.
    let stop = Arc::new(AtomicBool::new(false));
    let cpu = Arc::new(AtomicU64::new(0));
    let kp = match method {
        Method::KernelTc | Method::KernelXdp => {
            let outs = outputs(n);
            let tc = method == Method::KernelTc;
            Some(
                spawn_in(&t.ns_b, {
                    let b0 = t.b0.clone();
                    move || {
                        let mut kp = KernelPath::open(&Options {
                            media_interface: b0.clone(),
                            rewrite: !tc,
                            fanout: if tc {
                                vec![TcHook {
                                    interface: b0,
                                    direction: Direction::Ingress,
                                }]
                            } else {
                                Vec::new()
                            },
                            ..Default::default()
                        })
                        .expect("open forwarder");
                        let key = FanoutKey {
                            port: INGEST_PORT,
                            ssrc: SSRC,
                        };
                        if tc {
                            kp.set_outputs(key, &outs).expect("outputs");
                        } else {
                            kp.set_rewrite(key, &outs[0]).expect("rewrite");
                        }
                        kp
                    }
                })
                .join()
                .expect("forwarder"),
            )
        }
        Method::Userspace | Method::Uring => None,
    };
    let fwd = matches!(method, Method::Userspace | Method::Uring).then(|| {
        let stop = stop.clone();
        let cpu = cpu.clone();
        spawn_in(&t.ns_b, move || match method {
            Method::Uring => uring_forwarder(stop, n, cpu),
            _ => userspace_forwarder(stop, n, cpu),
        })
    });
    std::thread::sleep(Duration::from_millis(100));

    let snd = {
        let stop = stop.clone();
        spawn_in(&t.ns_a, move || sender(stop, size))
    };
    // Warm up, then measure.
    std::thread::sleep(Duration::from_millis(200));
    let c0 = sink
        .guard_counters()
        .expect("sink")
        .drop_unknown_source
        .packets;
    let j0 = busy_jiffies();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let c1 = sink
        .guard_counters()
        .expect("sink")
        .drop_unknown_source
        .packets;
    let j1 = busy_jiffies();
    let dt = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    snd.join().expect("sender");
    if let Some(f) = fwd {
        f.join().expect("forwarder");
    }
    drop(kp);
    let copies = (c1 - c0) as f64;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let busy_ns = (j1 - j0) as f64 / hz * 1e9;
    let fwd_cpu = cpu.load(Ordering::Relaxed) as f64;
    Row {
        method,
        n,
        size,
        out_pps: copies / dt,
        ns_per_copy: if copies > 0.0 {
            busy_ns / copies
        } else {
            f64::NAN
        },
        // The forwarder's CPU covers warm-up too: scale by the measured share of its run.
        fwd_ns_per_copy: (matches!(method, Method::Userspace | Method::Uring) && copies > 0.0)
            .then(|| fwd_cpu * (dt / (dt + 0.2)) / copies),
    }
}

fn main() {
    if let Some(reason) = skip_reason() {
        eprintln!("SKIPPED: bench: {reason}");
        return;
    }
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    let t = Topo::new("bn");
    // The sink in C: every copy is dropped (and counted) by XDP on c0.
    let sink = spawn_in(&t.ns_c, {
        let c0 = t.c0.clone();
        move || {
            let mut kp = KernelPath::open(&Options {
                media_interface: c0,
                guard: true,
                stun_rate: StunRate {
                    per_sec: 0,
                    burst: 0,
                },
                ..Default::default()
            })
            .expect("open sink");
            for i in 0..16 {
                kp.add_media_port(6001 + i).expect("sink port");
            }
            kp
        }
    })
    .join()
    .expect("sink");

    let mut rows = Vec::new();
    for size in [200usize, 1200] {
        for n in [1usize, 4, 8, 16] {
            for method in [
                Method::KernelTc,
                Method::KernelXdp,
                Method::Userspace,
                Method::Uring,
            ] {
                if method == Method::KernelXdp && n != 1 {
                    continue;
                }
                let r = run(&t, &sink, method, n, size, secs);
                eprintln!(
                    "  {} N={} {} B: {:.0} copies/s",
                    r.method.name(),
                    r.n,
                    r.size,
                    r.out_pps
                );
                rows.push(r);
            }
        }
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "fan-out over veth in namespaces, {cores} cores, {secs} s per row (machine shared with other work)"
    );
    println!(
        "{:<20} {:>3} {:>7} {:>12} {:>12} {:>14}",
        "method", "N", "size B", "out pps", "ns/copy", "fwd ns/copy"
    );
    for r in &rows {
        println!(
            "{:<20} {:>3} {:>7} {:>12.0} {:>12.0} {:>14}",
            r.method.name(),
            r.n,
            r.size,
            r.out_pps,
            r.ns_per_copy,
            r.fwd_ns_per_copy
                .map_or("-".to_string(), |v| format!("{v:.0}"))
        );
    }
    println!(
        "ns/copy: machine-wide busy CPU (sender, forwarder, sink, anything else) per copy; \
         fwd ns/copy: the userspace forwarder thread alone (its syscalls' softirq work included \
         when the kernel runs it inline)."
    );
}
