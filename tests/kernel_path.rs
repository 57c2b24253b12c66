//! The kernel path end to end, in two network namespaces the test creates and removes: the SFU
//! runs in S with `--kernel-interface` on its veth; a WebRTC publisher (sfu-client), plain RTP
//! receivers and a flooder live in R, on the far side of that veth. Addresses exist only inside
//! the two namespaces.
//!
//! - the publisher's media crosses the XDP guard because the SFU admitted its flow after ICE;
//! - a flood from an unknown source is dropped in the kernel (the SFU's socket never sees it)
//!   while the call goes on;
//! - a plain RTP output of the publisher's track to two receivers is copied by the TC fan-out:
//!   each receiver gets every packet, with its own SSRC, consecutive sequence numbers and the
//!   payload byte for byte;
//! - the same guard serves a publisher on IPv6: its flow is admitted with IPv6 addresses, an IPv6
//!   flood is dropped in the kernel, and an output to an IPv6 receiver is copied in userspace
//!   (the TC fan-out is IPv4 only);
//! - three nodes of a cluster with `--trunk plain` (Redis and node a in S, nodes b and c in R):
//!   the TC fan-out of node a copies each video packet of its publisher to both far nodes from
//!   one hand-off, and the viewers on b and c get every packet byte-identical and gap-free.
//!
//! Needs root and a build with clang; says so loudly and returns otherwise.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sfu_client::{ClientConfig, TrackKind};
use support::media::{measured_run, warm_up, MEASURED_PACKETS};
use support::redis::Redis;
use support::{http, join_with, vp8_keyframe_payload, wait_tracks_of, Seen};

const S_ADDR: &str = "10.231.0.1";
const R_ADDR: &str = "10.231.0.2";
const S_ADDR6: &str = "fd77:231::1";
const R_ADDR6: &str = "fd77:231::2";

fn skip(why: &str) {
    eprintln!("\n!!! SKIPPED kernel_path: {why} !!!\n");
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; removed on drop.
struct Topology {
    s: String,
    r: String,
    s_if: String,
}

impl Topology {
    /// [`Topology::new`] where the kernel path can run: as root, in a build with clang. Says
    /// loudly why not, and gives `None`, elsewhere.
    fn or_skip(tag: char) -> Option<Topology> {
        if unsafe { libc::geteuid() } != 0 {
            skip("needs root (network namespaces, BPF)");
            return None;
        }
        if !xdp_forwarder::KERNEL_PATH_AVAILABLE {
            skip("edge-sfu was built without clang: no BPF programs");
            return None;
        }
        Some(Topology::new(tag))
    }

    /// `tag` (one character) tells apart the topologies of tests running at the same time.
    fn new(tag: char) -> Topology {
        let id = std::process::id();
        let t = Topology {
            s: format!("esfu-s{tag}-{id}"),
            r: format!("esfu-r{tag}-{id}"),
            s_if: format!("esfu-vs{tag}{}", id % 100_000),
        };
        let r_if = format!("esfu-vr{tag}{}", id % 100_000);
        run(&["ip", "netns", "add", &t.s]);
        run(&["ip", "netns", "add", &t.r]);
        run(&[
            "ip", "link", "add", &t.s_if, "netns", &t.s, "type", "veth", "peer", "name", &r_if,
            "netns", &t.r,
        ]);
        for (ns, iface, addr, addr6) in [
            (&t.s, &t.s_if, S_ADDR, S_ADDR6),
            (&t.r, &r_if, R_ADDR, R_ADDR6),
        ] {
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                iface,
            ]);
            // IPv6 on whatever the host's defaults (sysctl without needing procps), and the
            // address usable at once (no duplicate address detection).
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sh",
                "-c",
                "for c in all default; do echo 0 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done",
            ]);
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr6}/64"),
                "dev",
                iface,
                "nodad",
            ]);
            run(&["ip", "-n", ns, "link", "set", iface, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // The fan-out's fib lookup answers only with forwarding on and the neighbour known.
        let forwarding = format!("/proc/sys/net/ipv4/conf/{}/forwarding", t.s_if);
        run(&[
            "ip",
            "netns",
            "exec",
            &t.s,
            "sh",
            "-c",
            &format!("echo 1 > {forwarding}"),
        ]);
        let mac = Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.r,
                "cat",
                &format!("/sys/class/net/{r_if}/address"),
            ])
            .output()
            .expect("read MAC");
        let mac = String::from_utf8_lossy(&mac.stdout).trim().to_owned();
        run(&[
            "ip",
            "-n",
            &t.s,
            "neigh",
            "replace",
            R_ADDR,
            "lladdr",
            &mac,
            "dev",
            &t.s_if,
            "nud",
            "permanent",
        ]);
        t
    }
}

/// The runtime the participants of a test run on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.s, &self.r] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Moves the calling thread into namespace `ns` (threads it spawns inherit it).
fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// edge-sfu inside a namespace, listening on all of its addresses; killed on drop.
struct Sfu {
    child: Child,
    http: SocketAddr,
    /// The namespace it runs in.
    ns: String,
}

impl Sfu {
    /// The SFU of the guard tests: in S, announcing both of S's addresses, with the kernel path
    /// on S's veth.
    fn start(t: &Topology) -> Sfu {
        Sfu::start_in(
            &t.s,
            &[S_ADDR, S_ADDR6],
            &["--kernel-interface", t.s_if.as_str()],
        )
    }

    /// edge-sfu in namespace `ns` with one worker, announcing `public` (addresses it has there),
    /// with the `extra` flags.
    fn start_in(ns: &str, public: &[&str], extra: &[&str]) -> Sfu {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_edge-sfu")])
            // The test talks plain HTTP to the API; beyond loopback that must be asked for.
            .args(["--listen", "[::]:0", "--workers", "1", "--insecure-http"]);
        for ip in public {
            command.args(["--public-ip", ip]);
        }
        let mut child = command
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start edge-sfu");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let url = line
            .trim()
            .strip_prefix("edge-sfu ready: ")
            .expect("ready line")
            .to_owned();
        let http = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("address in the ready line");
        Sfu {
            child,
            http,
            ns: ns.to_owned(),
        }
    }
}

impl Drop for Sfu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP request to the SFU's API from its own namespace (the API answers loopback only, so the
/// request goes to the namespace's loopback on the same port).
fn api(sfu: &Sfu, method: &'static str, path: String, body: Option<Value>) -> (u16, Value) {
    let (status, text) = request(sfu, method, path, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Like [`api`], with the answer as text.
fn request(sfu: &Sfu, method: &'static str, path: String, body: Option<Value>) -> (u16, String) {
    let ns = sfu.ns.clone();
    let addr = SocketAddr::from(([127, 0, 0, 1], sfu.http.port()));
    std::thread::spawn(move || {
        enter(&ns);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let body = body.map(|b| b.to_string());
        rt.block_on(http(addr, method, &path, body.as_deref()))
            .expect("HTTP")
    })
    .join()
    .expect("API thread")
}

/// The SFU's `/metrics`, and one sample of it by series (name and labels).
struct Metrics(String);

impl Metrics {
    fn of(sfu: &Sfu) -> Metrics {
        let (status, text) = request(sfu, "GET", "/metrics".into(), None);
        assert_eq!(status, 200, "{text}");
        Metrics(text)
    }

    fn sample(&self, series: &str) -> u64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{}", self.0))
    }
}

/// Datagrams received on `socket` until `quiet` passes with nothing new.
fn drain(socket: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    socket.set_read_timeout(Some(quiet)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = socket.recv(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    got
}

#[test]
fn kernel_guard_and_fanout_serve_a_real_call() {
    let Some(t) = Topology::or_skip('4') else {
        return;
    };
    let sfu = Sfu::start(&t);
    enter(&t.r);
    let rt = runtime();

    // The publisher joins from R: its STUN passes the guard, the SFU admits its flow, and its
    // DTLS and SRTP pass after that.
    let ws = format!("ws://{S_ADDR}:{}/ws", sfu.http.port());
    let mut config = ClientConfig::new(ws, "kernel", "publisher");
    config.bind_addr = format!("{R_ADDR}:0").parse().expect("bind address");
    let config = config.audio(false).video(true);
    let publisher = rt.block_on(join_with(config));
    let video = publisher
        .local_tracks()
        .into_iter()
        .find(|tr| tr.kind == TrackKind::Video)
        .expect("video track");
    let track_id = video
        .server_track_id(publisher.peer_id())
        .expect("track id");

    let r1 = UdpSocket::bind((R_ADDR, 6000)).expect("receiver 1");
    let r2 = UdpSocket::bind((R_ADDR, 6002)).expect("receiver 2");
    let (status, info) = api(
        &sfu,
        "POST",
        "/api/outputs".into(),
        Some(json!({"room": "kernel", "trackId": track_id, "targets": [
            {"address": format!("{R_ADDR}:6000"), "ssrc": 1111},
            {"address": format!("{R_ADDR}:6002"), "ssrc": 2222, "payloadType": 100}
        ]})),
    );
    assert_eq!(status, 201, "{info}");
    assert_eq!(
        info["path"], "kernel",
        "the output is served by the TC fan-out: {info}"
    );

    // Warm up until copies arrive, then measure.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut warm = 0;
    r1.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    loop {
        rt.block_on(publisher.send_rtp(
            video.id,
            vp8_keyframe_payload(&format!("warm {warm}"), 100),
            true,
        ))
        .expect("send");
        warm += 1;
        if r1.recv(&mut buf).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no kernel copy arrived");
    }
    drain(&r1, Duration::from_millis(300));
    drain(&r2, Duration::from_millis(50));

    // A flood from a source the SFU never admitted, during the measured run. The receivers read
    // in their own threads while the publisher sends, as a recorder would.
    let media_port = {
        let (_, stats) = api(&sfu, "GET", "/api/stats".into(), None);
        stats["workers"][0]["mediaPort"]
            .as_u64()
            .expect("media port") as u16
    };
    let drops_before = api(&sfu, "GET", "/api/stats".into(), None).1["drops"].clone();
    let readers: Vec<_> = [r1, r2]
        .into_iter()
        .map(|socket| std::thread::spawn(move || drain(&socket, Duration::from_millis(1500))))
        .collect();
    let flooder = UdpSocket::bind((R_ADDR, 0)).expect("flooder");
    const N: usize = 200;
    let payload = |i: usize| vp8_keyframe_payload(&format!("kernel copy #{i:03}|"), 300 + i);
    for i in 0..N {
        rt.block_on(publisher.send_rtp(video.id, payload(i), true))
            .expect("send");
        for _ in 0..5 {
            let _ = flooder.send_to(
                &[0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xde, 0xad],
                (S_ADDR, media_port),
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let received: Vec<Vec<Vec<u8>>> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    for (got, ssrc, pt) in [
        (&received[0], 1111u32, None),
        (&received[1], 2222, Some(100u8)),
    ] {
        let measured: Vec<&Vec<u8>> = got
            .iter()
            .filter(|p| p.windows(12).any(|w| w == b"kernel copy "))
            .collect();
        assert_eq!(
            measured.len(),
            N,
            "every packet reaches receiver with SSRC {ssrc}"
        );
        for (i, p) in measured.iter().enumerate() {
            assert_eq!(u32::from_be_bytes([p[8], p[9], p[10], p[11]]), ssrc);
            if let Some(pt) = pt {
                assert_eq!(p[1] & 0x7f, pt);
            }
            assert_eq!(&p[12..], payload(i).as_slice(), "payload byte for byte");
        }
        for pair in measured.windows(2) {
            let seq = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
            assert_eq!(seq(pair[1]), seq(pair[0]).wrapping_add(1));
        }
    }
    let (_, stats) = api(&sfu, "GET", "/api/stats".into(), None);
    assert_eq!(
        stats["drops"], drops_before,
        "the flood never reached the SFU's socket: the guard dropped it in the kernel"
    );
    let counted = stats["outputs"][0]["targets"][0]["packets"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        counted >= N as u64,
        "kernel counters in stats: {}",
        stats["outputs"]
    );
    // The same kernel counters in /metrics: the guard's verdicts, the fan-out's outcomes, the
    // outputs' copies.
    let metrics = Metrics::of(&sfu);
    let sample = |series: &str| metrics.sample(series);
    let flood = (N * 5) as u64;
    assert!(
        sample(r#"edge_sfu_kernel_guard_packets_total{verdict="drop_unknown_source"}"#) >= flood
    );
    assert!(sample(r#"edge_sfu_kernel_guard_packets_total{verdict="pass_admitted"}"#) >= N as u64);
    assert!(sample(r#"edge_sfu_kernel_fanout_packets_total{outcome="matched"}"#) >= N as u64);
    assert!(sample(r#"edge_sfu_plain_output_packets_total{path="kernel"}"#) >= 2 * N as u64);
    assert_eq!(sample(r#"edge_sfu_plain_outputs{path="kernel"}"#), 1);
    drop(publisher);
}

#[test]
fn kernel_guard_serves_an_ipv6_publisher() {
    let Some(t) = Topology::or_skip('6') else {
        return;
    };
    let sfu = Sfu::start(&t);
    enter(&t.r);
    let rt = runtime();

    // Signaling and media over IPv6 only.
    let ws = format!("ws://[{S_ADDR6}]:{}/ws", sfu.http.port());
    let mut config = ClientConfig::new(ws, "kernel6", "publisher");
    config.bind_addr = format!("[{R_ADDR6}]:0").parse().expect("bind address");
    let publisher = rt.block_on(join_with(config.audio(false).video(true)));
    let video = publisher
        .local_tracks()
        .into_iter()
        .find(|tr| tr.kind == TrackKind::Video)
        .expect("video track");
    let track_id = video
        .server_track_id(publisher.peer_id())
        .expect("track id");

    let receiver = UdpSocket::bind((R_ADDR6, 6000)).expect("receiver");
    let (status, info) = api(
        &sfu,
        "POST",
        "/api/outputs".into(),
        Some(json!({"room": "kernel6", "trackId": track_id, "targets": [
            {"address": format!("[{R_ADDR6}]:6000"), "ssrc": 1111}
        ]})),
    );
    assert_eq!(status, 201, "{info}");
    assert_eq!(info["path"], "userspace", "IPv6 receivers: {info}");

    let media_port = {
        let (_, stats) = api(&sfu, "GET", "/api/stats".into(), None);
        stats["workers"][0]["mediaPort"]
            .as_u64()
            .expect("media port") as u16
    };
    let reader = std::thread::spawn(move || drain(&receiver, Duration::from_millis(1500)));
    let drops_before = api(&sfu, "GET", "/api/stats".into(), None).1["drops"].clone();
    let flooder = UdpSocket::bind((R_ADDR6, 0)).expect("flooder");
    const N: usize = 100;
    for i in 0..N {
        rt.block_on(publisher.send_rtp(
            video.id,
            vp8_keyframe_payload(&format!("ipv6 copy #{i:03}|"), 300),
            true,
        ))
        .expect("send");
        for _ in 0..5 {
            let _ = flooder.send_to(
                &[0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xde, 0xad],
                (S_ADDR6, media_port),
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let got = reader.join().expect("reader");
    let copies = got
        .iter()
        .filter(|p| p.windows(10).any(|w| w == b"ipv6 copy "))
        .count();
    // Userspace output: the first packets may go before the output's first keyframe is seen.
    assert!(
        copies >= N / 2,
        "the publisher's IPv6 media crossed the guard: {copies} of {N} copies arrived"
    );
    let (_, stats) = api(&sfu, "GET", "/api/stats".into(), None);
    assert_eq!(
        stats["drops"], drops_before,
        "the IPv6 flood never reached the SFU's socket: the guard dropped it in the kernel"
    );
    let metrics = Metrics::of(&sfu);
    let sample = |series: &str| metrics.sample(series);
    assert!(
        sample(r#"edge_sfu_kernel_guard_packets_total{verdict="drop_unknown_source"}"#)
            >= (N * 5) as u64
    );
    assert!(sample(r#"edge_sfu_kernel_guard_packets_total{verdict="pass_admitted"}"#) >= N as u64);
    drop(publisher);
}

#[test]
fn kernel_fanout_sends_a_plain_trunk_layer_to_two_far_nodes() {
    let Some(t) = Topology::or_skip('5') else {
        return;
    };
    // This thread joins R, where the participants and nodes b and c are; Redis and node a are in
    // S, reached over the veth.
    enter(&t.r);
    let redis_addr: SocketAddr = format!("{S_ADDR}:6379").parse().expect("address");
    let Some(redis) = Redis::start_in(&t.s, redis_addr) else {
        return skip("redis-server is not installed (scripts/test installs it)");
    };
    let url = redis.url();
    let node = |ns: &str, ip: &str, id: &str, extra: &[&str]| {
        let mut args = vec!["--cluster", &url, "--node-id", id, "--cluster-ttl", "2"];
        args.extend_from_slice(&["--trunk", "plain"]);
        args.extend_from_slice(extra);
        Sfu::start_in(ns, &[ip], &args)
    };
    let a = node(&t.s, S_ADDR, "a", &["--kernel-interface", t.s_if.as_str()]);
    let b = node(&t.r, R_ADDR, "b", &[]);
    let c = node(&t.r, R_ADDR, "c", &[]);
    let rt = runtime();

    // Alice publishes on a; Bob watches on b, Carol on c.
    let member = |sfu: &Sfu, host: &str, name: &str, publishes: bool| {
        let ws = format!("ws://{host}:{}/ws", sfu.http.port());
        let mut config = ClientConfig::new(ws, "trunks", name);
        config.bind_addr = format!("{R_ADDR}:0").parse().expect("bind address");
        rt.block_on(join_with(config.audio(publishes).video(publishes)))
    };
    let alice = member(&a, S_ADDR, "alice", true);
    let bob = member(&b, R_ADDR, "bob", false);
    let carol = member(&c, R_ADDR, "carol", false);
    let mut viewers = vec![(bob, Seen::default()), (carol, Seen::default())];
    for (viewer, _) in &viewers {
        rt.block_on(wait_tracks_of(viewer, alice.peer_id(), 2));
    }
    let warm = rt.block_on(warm_up(&alice, &mut viewers));
    let before = Metrics::of(&a);
    rt.block_on(measured_run("kernel trunks", &alice, &mut viewers));

    // Both trunks are plain, and the kernel copies the video layer to both far nodes.
    let (_, stats) = api(&a, "GET", "/api/stats".into(), None);
    let trunks = stats["trunks"].as_array().cloned().unwrap_or_default();
    assert_eq!(trunks.len(), 2, "{stats}");
    for trunk in &trunks {
        assert_eq!(trunk["media"], "plain", "{trunk}");
        assert_eq!(trunk["kernelLayers"], 1, "the video layer: {trunk}");
    }
    // Each video packet was handed off once, for both far nodes: the fan-out matched every one
    // and consumed the hand-off, so b's and c's video came from its copies. Audio goes out of
    // the trunks' own sessions.
    let after = Metrics::of(&a);
    let delta = |series: &str| after.sample(series) - before.sample(series);
    let matched = delta(r#"edge_sfu_kernel_fanout_packets_total{outcome="matched"}"#);
    let consumed = delta(r#"edge_sfu_kernel_fanout_packets_total{outcome="consumed"}"#);
    let n = MEASURED_PACKETS as u64;
    assert!(
        (n..=n + warm as u64).contains(&matched),
        "one hand-off per video packet, not per far node: {matched} for {n}"
    );
    assert_eq!(consumed, matched);
    // Hand-offs go one per send: a segmented (GSO) one would reach the fan-out as one malformed
    // packet and be passed on to nobody.
    assert_eq!(
        delta(r#"edge_sfu_kernel_fanout_packets_total{outcome="pass_malformed"}"#),
        0
    );
    drop((alice, viewers, a, b, c, redis));
}
