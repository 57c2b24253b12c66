//! Runs a scenario against a target and measures it.
//!
//! Timeline: the stable participants (publishers and subscribers of every room) join, spread over
//! the ramp-up; publishers start sending as soon as their media is negotiated. Once everyone joined
//! (or failed) and every receiver got at least one packet of every track it should receive (or the
//! settle timeout passed), the measurement window opens: packets sent from then on carry the
//! "measured" flag, churning listeners start to come and go, and the SFU's CPU time and counters
//! are read. When the window closes, publishers stop, receivers get one more second to drain, and
//! everyone leaves.
//!
//! Loss is counted per receiver over measured packets only: expected = the measured packets sent
//! on every track the receiver subscribes to, received = the measured packets that arrived, so
//! `sent × subscribers = received + lost` holds by construction (churning listeners are left out
//! of the loss figures: they are not there for the whole window).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use sfu_client::handoff::MediaReader;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::continuity::ContinuityReport;
use crate::error::Result;
use crate::http;
use crate::lean_rx::{LeanCounts, LeanReceiver, LeanRx};
use crate::payload::{Stamp, FLAG_MEASURED};
use crate::procfs::{self, ProcSample};
use crate::reflector::{ReflectorStats, TAG_STATS};
use crate::report::{
    GeneratorUsage, JoinReport, LatencyReport, ReceiverSummary, Report, ServerUsage,
};
use crate::scenario::Scenario;
use crate::tally::{histogram, RxCounters, Tally};
use crate::transport::{Conn, Endpoint, Media, Received};

const PHASE_WARMUP: u8 = 0;
const PHASE_MEASURE: u8 = 1;
const PHASE_DRAIN: u8 = 2;

/// How long receivers keep reading after the window closes.
const DRAIN: Duration = Duration::from_secs(1);

/// The server under test.
#[derive(Debug, Clone)]
pub enum Target {
    /// edge-sfu.
    Sfu {
        /// The signaling WebSocket, `ws://HOST:PORT/ws`.
        ws_url: String,
        /// The HTTP address (for `/api/stats`).
        http: SocketAddr,
        /// Its process id, when it runs on this machine (CPU and memory are read from `/proc`).
        pid: Option<u32>,
    },
    /// Janus's videoroom plugin (the classic-SFU baseline).
    Janus {
        /// `ws://HOST:PORT/` of its WebSocket transport.
        ws_url: String,
        /// The IP the participants' media sockets bind (Janus skips loopback).
        bind_ip: std::net::IpAddr,
        /// Its process id, when it runs on this machine.
        pid: Option<u32>,
    },
    /// The mediasoup baseline server (`sfu-loadgen/mediasoup/server.mjs`).
    Mediasoup {
        /// Its signaling WebSocket, `ws://HOST:PORT/`.
        ws_url: String,
        /// The process measured: its `mediasoup-worker`, which moves the media (the Node
        /// process only signals).
        pid: Option<u32>,
    },
    /// The plain UDP reflector (the kernel ceiling).
    Reflector {
        /// Its UDP address.
        addr: SocketAddr,
        /// Its process id, when it runs on this machine.
        pid: Option<u32>,
    },
}

impl Target {
    fn endpoint(&self) -> Endpoint {
        match self {
            Target::Sfu { ws_url, .. } => Endpoint::Sfu {
                ws_url: ws_url.clone(),
            },
            Target::Reflector { addr, .. } => Endpoint::Reflector { addr: *addr },
            Target::Janus {
                ws_url, bind_ip, ..
            } => Endpoint::Janus {
                ws_url: ws_url.clone(),
                bind_ip: *bind_ip,
            },
            Target::Mediasoup { ws_url, .. } => Endpoint::Mediasoup {
                ws_url: ws_url.clone(),
            },
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Target::Sfu { pid, .. }
            | Target::Reflector { pid, .. }
            | Target::Janus { pid, .. }
            | Target::Mediasoup { pid, .. } => *pid,
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Sfu { ws_url, .. } => format!("edge-sfu {ws_url}"),
            Target::Reflector { addr, .. } => format!("udp-reflector {addr}"),
            Target::Janus { ws_url, .. } => format!("janus videoroom {ws_url}"),
            Target::Mediasoup { ws_url, pid } => match pid {
                Some(pid) => format!("mediasoup {ws_url} (mediasoup-worker {pid} measured)"),
                None => format!("mediasoup {ws_url}"),
            },
        }
    }

    /// The server's own count of forwarded packets, when it offers one.
    async fn forwarded(&self) -> Option<u64> {
        match self {
            Target::Sfu { http, .. } => match http::sfu_stats(*http).await {
                Ok(s) => Some(s.forwarded_packets),
                Err(e) => {
                    tracing::warn!("reading /api/stats: {e}");
                    None
                }
            },
            Target::Reflector { addr, .. } => reflector_stats(*addr).await.map(|s| s.forwarded),
            Target::Janus { .. } | Target::Mediasoup { .. } => None,
        }
    }
}

async fn reflector_stats(addr: SocketAddr) -> Option<ReflectorStats> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
    let mut buf = [0u8; 64];
    for _ in 0..5 {
        socket.send_to(&TAG_STATS, addr).await.ok()?;
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await
        {
            if let Some(s) = ReflectorStats::parse(buf.get(..n)?) {
                return Some(s);
            }
        }
    }
    None
}

/// A run: what, against what, and how to show it.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The scenario.
    pub scenario: Scenario,
    /// The server under test.
    pub target: Target,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// What was pinned where, for the report (the caller does the pinning).
    pub pinning: Option<String>,
    /// Receive media on the lean path ([`crate::lean_rx`]) rather than through each session.
    pub lean_rx: bool,
    /// Another node of the target's cluster: every second receive-only participant joins there
    /// instead, so what it receives crosses the trunk between the two nodes.
    pub split: Option<Endpoint>,
}

/// Counters every participant task updates.
struct Shared {
    epoch: Instant,
    phase: AtomicU8,
    /// Measured packets sent, by global track number.
    sent_measured: Vec<AtomicU64>,
    sent_total: AtomicU64,
    send_dropped: AtomicU64,
    rx: Arc<RxCounters>,
    joined: AtomicU32,
    failed: AtomicU32,
    failed_receivers: AtomicU32,
    /// The lean receive threads, when the run uses them.
    lean: Option<LeanRx>,
}

/// One participant to simulate.
#[derive(Debug, Clone)]
struct Spec {
    index: u32,
    room: u32,
    name: String,
    audio: bool,
    video: bool,
    stable: bool,
    join_at: Instant,
    leave_at: Option<Instant>,
    /// Global track numbers it should receive.
    expected: Vec<u32>,
}

/// What one participant saw.
struct PartResult {
    name: String,
    stable: bool,
    failure: Option<String>,
    join_s: Option<f64>,
    /// Global track numbers it should receive.
    expected: Vec<u32>,
    /// What it received.
    tally: Tally,
    send_lag: Histogram<u64>,
    events_dropped: u64,
}

fn room_name(scenario: &Scenario, room: u32) -> String {
    format!("{}-{room}", scenario.name)
}

/// The tracks a receiver in `room` expects: every track of the room's publishers (participant
/// `p` sends track `2p` for audio and `2p + 1` for video), except the receiver's own (`me`).
fn expected_tracks(s: &Scenario, room: u32, me: Option<u32>) -> Vec<u32> {
    let per_room = s.publishers + s.subscribers;
    (0..s.publishers)
        .map(|p| room * per_room + p)
        .filter(|&p| Some(p) != me)
        .flat_map(|p| {
            let audio = s.audio.then_some(p * 2);
            let video = s.video.then_some(p * 2 + 1);
            audio.into_iter().chain(video)
        })
        .collect()
}

/// The stable population: for each room, its publishers then its subscribers.
fn stable_specs(s: &Scenario, start: Instant) -> Vec<Spec> {
    let per_room = s.publishers + s.subscribers;
    let total = s.stable_participants();
    let step = if total > 1 {
        Duration::from_secs_f64(s.ramp_up_s / f64::from(total - 1).max(1.0))
    } else {
        Duration::ZERO
    };
    let mut specs = Vec::with_capacity(total as usize);
    for room in 0..s.rooms {
        for k in 0..per_room {
            let index = room * per_room + k;
            let publisher = k < s.publishers;
            let expected = expected_tracks(s, room, Some(index));
            specs.push(Spec {
                index,
                room,
                name: if publisher {
                    format!("pub-{room}-{k}")
                } else {
                    format!("sub-{room}-{}", k - s.publishers)
                },
                audio: publisher && s.audio,
                video: publisher && s.video,
                stable: true,
                join_at: start + step * index,
                leave_at: None,
                expected,
            });
        }
    }
    specs
}

/// Runs `opts.scenario` against `opts.target` and returns the report.
pub async fn run(opts: RunOptions) -> Result<Report> {
    let s = opts.scenario.clone();
    s.validate()?;
    let target = opts.target.clone();
    let endpoint = target.endpoint();
    let pid = target.pid();
    let stable_total = s.stable_participants();

    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        phase: AtomicU8::new(PHASE_WARMUP),
        sent_measured: (0..stable_total * 2).map(|_| AtomicU64::new(0)).collect(),
        sent_total: AtomicU64::new(0),
        send_dropped: AtomicU64::new(0),
        rx: Arc::new(RxCounters::default()),
        joined: AtomicU32::new(0),
        failed: AtomicU32::new(0),
        failed_receivers: AtomicU32::new(0),
        lean: if opts.lean_rx {
            // One thread per two generator cores: the others send and run the sessions.
            let cores = procfs::current_affinity().map_or(1, |c| c.len());
            Some(LeanRx::start(cores / 2)?)
        } else {
            None
        },
    });
    let (stop_tx, stop_rx) = watch::channel(false);

    if let Target::Janus { ws_url, .. } = &target {
        for room in 0..s.rooms {
            crate::janus::create_room(ws_url, crate::transport::janus_room(room), s.publishers + 1)
                .await?;
        }
    }
    let base = pid.and_then(|p| procfs::sample(p).ok());
    let start = Instant::now() + Duration::from_millis(100);
    let specs = stable_specs(&s, start);
    let receivers = specs.iter().filter(|p| !p.expected.is_empty()).count() as u32;

    let bar = if opts.progress {
        let total = (s.ramp_up_s + s.duration_s + 2.0) * 1000.0;
        let bar = ProgressBar::new(total as u64);
        let style = ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {msg}")
            .map(|st| st.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut handles: Vec<JoinHandle<PartResult>> = specs
        .iter()
        .cloned()
        .map(|spec| {
            let viewer = !spec.audio && !spec.video;
            let goes = match &opts.split {
                Some(other) if viewer && spec.index % 2 == 1 => other.clone(),
                _ => endpoint.clone(),
            };
            tokio::spawn(participant(
                spec,
                s.clone(),
                goes,
                shared.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();

    // Progress ticker.
    let ticker = {
        let shared = shared.clone();
        let bar = bar.clone();
        let mut stop = stop_rx.clone();
        let started = Instant::now();
        tokio::spawn(async move {
            let mut last = (Instant::now(), shared.rx.packets.load(Ordering::Relaxed));
            let mut iv = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = iv.tick() => {}
                }
                let now = Instant::now();
                let rx = shared.rx.packets.load(Ordering::Relaxed);
                let pps = (rx - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
                last = (now, rx);
                let phase = match shared.phase.load(Ordering::Relaxed) {
                    PHASE_WARMUP => "joining",
                    PHASE_MEASURE => "measuring",
                    _ => "draining",
                };
                bar.set_position(started.elapsed().as_millis() as u64);
                bar.set_message(format!(
                    "{phase}: {} joined, {} failed, {:.0} pkt/s out",
                    shared.joined.load(Ordering::Relaxed),
                    shared.failed.load(Ordering::Relaxed),
                    pps
                ));
            }
        })
    };

    // Wait for the ramp-up and every join to finish.
    let join_deadline = start
        + Duration::from_secs_f64(s.ramp_up_s)
        + Duration::from_secs_f64(s.join_timeout_s)
        + Duration::from_secs(5);
    loop {
        let done = shared.joined.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed);
        if done >= stable_total || Instant::now() > join_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep_until((start + Duration::from_secs_f64(s.ramp_up_s)).into()).await;
    // Wait for media to reach every receiver.
    let settle_deadline = Instant::now() + Duration::from_secs_f64(s.settle_timeout_s);
    let mut settled = false;
    while Instant::now() < settle_deadline {
        let want = receivers.saturating_sub(shared.failed_receivers.load(Ordering::Relaxed));
        if shared.rx.ready.load(Ordering::Relaxed) >= want {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !settled {
        tracing::warn!("media did not reach every receiver before the window opened");
    }

    // The window.
    let fwd0 = target.forwarded().await;
    let sfu0 = pid.and_then(|p| procfs::sample(p).ok());
    let gen0 = procfs::sample(0).ok();
    let lean0 = lean_threads_cpu_s(&shared);
    let rx0 = shared.rx.packets.load(Ordering::Relaxed);
    let rxb0 = shared.rx.bytes.load(Ordering::Relaxed);
    let t0 = Instant::now();
    shared.phase.store(PHASE_MEASURE, Ordering::SeqCst);

    let churn = (s.churn_per_s > 0.0).then(|| {
        tokio::spawn(churn_task(
            s.clone(),
            endpoint.clone(),
            shared.clone(),
            stop_rx.clone(),
            stable_total,
        ))
    });

    tokio::time::sleep(s.duration()).await;
    shared.phase.store(PHASE_DRAIN, Ordering::SeqCst);
    let window = t0.elapsed();
    let rx1 = shared.rx.packets.load(Ordering::Relaxed);
    let rxb1 = shared.rx.bytes.load(Ordering::Relaxed);
    let sfu1 = pid.and_then(|p| procfs::sample(p).ok());
    let gen1 = procfs::sample(0).ok();
    let lean1 = lean_threads_cpu_s(&shared);
    let fwd1 = target.forwarded().await;
    tokio::time::sleep(DRAIN).await;

    let _ = stop_tx.send(true);
    if let Some(c) = churn {
        match c.await {
            Ok(more) => handles.extend(more),
            Err(e) => tracing::warn!("churn task: {e}"),
        }
    }
    let mut results = Vec::with_capacity(handles.len());
    for h in handles {
        match tokio::time::timeout(Duration::from_secs(15), h).await {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => tracing::warn!("participant task: {e}"),
            Err(_) => tracing::warn!("a participant did not end in time"),
        }
    }
    let _ = ticker.await;
    bar.finish_and_clear();

    let window_s = window.as_secs_f64();
    Ok(build_report(ReportInputs {
        s: &s,
        target: &target,
        opts: &opts,
        shared: &shared,
        results,
        window_s,
        settled,
        rx_window: rx1.saturating_sub(rx0),
        rx_bytes_window: rxb1.saturating_sub(rxb0),
        fwd: fwd0.zip(fwd1).map(|(a, b)| b.saturating_sub(a)),
        base,
        sfu: sfu0.zip(sfu1),
        generator: gen0.zip(gen1),
        lean_cpu_s: lean0.zip(lean1).map(|(a, b)| (b - a).max(0.0)),
    }))
}

/// CPU seconds of the lean receive threads so far (`None` without them).
fn lean_threads_cpu_s(shared: &Shared) -> Option<f64> {
    let lean = shared.lean.as_ref()?;
    lean.thread_ids()
        .into_iter()
        .map(procfs::thread_cpu_s)
        .sum::<Option<f64>>()
}

struct ReportInputs<'a> {
    s: &'a Scenario,
    target: &'a Target,
    opts: &'a RunOptions,
    shared: &'a Shared,
    results: Vec<PartResult>,
    window_s: f64,
    settled: bool,
    rx_window: u64,
    rx_bytes_window: u64,
    fwd: Option<u64>,
    base: Option<ProcSample>,
    sfu: Option<(ProcSample, ProcSample)>,
    generator: Option<(ProcSample, ProcSample)>,
    /// CPU seconds the lean receive threads used in the window.
    lean_cpu_s: Option<f64>,
}

fn build_report(i: ReportInputs<'_>) -> Report {
    let s = i.s;
    let mut latency = histogram();
    let mut latency_audio = histogram();
    let mut latency_video = histogram();
    let mut send_lag = histogram();
    let mut join_s = Vec::new();
    let mut media_s = Vec::new();
    let (mut expected, mut received) = (0u64, 0u64);
    let mut events_dropped = 0;
    let mut lean = LeanCounts::default();
    let mut failures = Vec::new();
    let mut attempted = 0u64;
    let mut churn_joins = 0u64;
    let mut continuity = ContinuityReport::default();
    for r in &i.results {
        attempted += 1;
        if !r.stable {
            churn_joins += 1;
        }
        if let Some(f) = &r.failure {
            failures.push(f.clone());
            continue;
        }
        let t = &r.tally;
        for (track, stream) in r.expected.iter().zip(&t.streams) {
            continuity.add(track % 2 == 1, stream);
        }
        let _ = latency.add(&t.latency_audio);
        let _ = latency.add(&t.latency_video);
        let _ = latency_audio.add(&t.latency_audio);
        let _ = latency_video.add(&t.latency_video);
        let _ = send_lag.add(&r.send_lag);
        events_dropped += r.events_dropped;
        lean.add(&t.lean);
        join_s.extend(r.join_s);
        media_s.extend(t.first_media_s);
        if r.stable {
            received += t.measured;
        }
    }
    // Expected: every measured packet of every track, once per stable receiver of it that joined.
    let per_track: Vec<u64> = i
        .shared
        .sent_measured
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let sent_measured: u64 = per_track.iter().sum();
    let mut legs_joined = 0usize;
    let mut receivers = Vec::new();
    for r in i.results.iter().filter(|r| r.stable && r.failure.is_none()) {
        legs_joined += r.expected.len();
        let want: u64 = r
            .expected
            .iter()
            .map(|t| per_track.get(*t as usize).copied().unwrap_or(0))
            .sum();
        expected += want;
        if !r.expected.is_empty() {
            receivers.push(ReceiverSummary {
                name: r.name.clone(),
                tracks: r.expected.len() as u64,
                expected: want,
                received: r.tally.measured,
            });
        }
    }
    let lost = expected.saturating_sub(received);
    let stable_joined = i
        .results
        .iter()
        .filter(|r| r.stable && r.failure.is_none())
        .count() as u64;

    let out_pps = i.rx_window as f64 / i.window_s;
    let forwarded = i.fwd;
    let server = i.sfu.map(|(a, b)| {
        let cpu_s = (b.cpu_s - a.cpu_s).max(0.0);
        let base_rss = i.base.map(|x| x.rss_kib).unwrap_or(a.rss_kib);
        let grown = b.rss_kib.saturating_sub(base_rss);
        ServerUsage {
            pid: i.target.pid().unwrap_or(0),
            cpu_s,
            cpu_cores: cpu_s / i.window_s,
            cpu_s_per_mpkt: if i.rx_window > 0 {
                cpu_s / (i.rx_window as f64 / 1e6)
            } else {
                0.0
            },
            out_pps_per_core: if cpu_s > 0.0 {
                i.rx_window as f64 / cpu_s
            } else {
                0.0
            },
            rss_before_kib: base_rss,
            rss_kib: b.rss_kib,
            rss_peak_kib: b.rss_peak_kib,
            rss_per_participant_kib: grown as f64 / (stable_joined.max(1)) as f64,
            rss_per_leg_kib: grown as f64 / (legs_joined.max(1)) as f64,
        }
    });
    let cores_allowed = procfs::current_affinity().map(|c| c.len()).unwrap_or(1);
    let per_packet_us = |cpu_s: f64| {
        if i.rx_window > 0 {
            cpu_s * 1e6 / i.rx_window as f64
        } else {
            0.0
        }
    };
    let generator = i.generator.map(|(a, b)| {
        let cpu_s = (b.cpu_s - a.cpu_s).max(0.0);
        let util = cpu_s / i.window_s;
        let send_dropped = i.shared.send_dropped.load(Ordering::Relaxed);
        let lag_p99_ms = send_lag.value_at_quantile(0.99) as f64 / 1000.0;
        let mut reasons = Vec::new();
        if util > 0.85 * cores_allowed as f64 {
            reasons.push(format!("it used {util:.2} of its {cores_allowed} core(s)"));
        }
        if lag_p99_ms > 20.0 {
            reasons.push(format!("its send timers ran late (p99 {lag_p99_ms:.1} ms)"));
        }
        if send_dropped > 0 {
            reasons.push(format!("{send_dropped} packets found a full send queue"));
        }
        if events_dropped > 0 {
            reasons.push(format!(
                "{events_dropped} received packets overflowed a client's event queue"
            ));
        }
        if lean.socket_drops > 0 {
            reasons.push(format!(
                "its sockets dropped {} datagrams (receive buffers full)",
                lean.socket_drops
            ));
        }
        GeneratorUsage {
            cpu_s,
            cpu_cores: util,
            cores_allowed,
            receive_path: if i.shared.lean.is_some() {
                "lean".into()
            } else {
                "full".into()
            },
            us_per_received_packet: per_packet_us(cpu_s),
            receive_threads_us_per_packet: i.lean_cpu_s.map(per_packet_us),
            send_lag_p99_ms: lag_p99_ms,
            send_queue_full: send_dropped,
            events_dropped,
            bottleneck: !reasons.is_empty(),
            note: if reasons.is_empty() {
                "not the bottleneck".into()
            } else {
                format!("the generator is the bottleneck: {}", reasons.join("; "))
            },
        }
    });

    Report {
        scenario: s.clone(),
        target: i.target.describe(),
        pinning: i.opts.pinning.clone(),
        settled: i.settled,
        window_s: i.window_s,
        participants: stable_joined,
        legs: legs_joined as u64,
        sent_packets: sent_measured,
        expected_packets: expected,
        received_packets: received,
        lost_packets: lost,
        loss_pct: if expected > 0 {
            lost as f64 * 100.0 / expected as f64
        } else {
            0.0
        },
        out_pps,
        out_payload_bps: i.rx_bytes_window as f64 * 8.0 / i.window_s,
        server_forwarded: forwarded,
        server_out_pps: forwarded.map(|f| f as f64 / i.window_s),
        scenario_out_pps: s.expected_out_pps(),
        latency_us: LatencyReport::from_histogram(&latency),
        audio_latency_us: LatencyReport::from_histogram(&latency_audio),
        video_latency_us: LatencyReport::from_histogram(&latency_video),
        joins: JoinReport {
            attempted,
            failed: failures.len() as u64,
            churn: churn_joins,
            join_ms: crate::report::Quantiles::from_secs(&join_s),
            first_media_ms: crate::report::Quantiles::from_secs(&media_s),
            errors: failures.into_iter().take(5).collect(),
        },
        server,
        generator,
        lean_rx: i.shared.lean.is_some().then_some(lean),
        continuity,
        receivers,
    }
}

async fn churn_task(
    s: Scenario,
    endpoint: Endpoint,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    first_index: u32,
) -> Vec<JoinHandle<PartResult>> {
    let mut handles = Vec::new();
    let period = Duration::from_secs_f64(1.0 / s.churn_per_s);
    let mut iv = tokio::time::interval(period);
    let mut k = 0u32;
    loop {
        iv.tick().await;
        if shared.phase.load(Ordering::Relaxed) != PHASE_MEASURE {
            break;
        }
        let room = k % s.rooms;
        let expected = expected_tracks(&s, room, None);
        let now = Instant::now();
        let spec = Spec {
            index: first_index + k,
            room,
            name: format!("churn-{k}"),
            audio: false,
            video: false,
            stable: false,
            join_at: now,
            leave_at: Some(now + Duration::from_secs_f64(s.churn_stay_s)),
            expected,
        };
        handles.push(tokio::spawn(participant(
            spec,
            s.clone(),
            endpoint.clone(),
            shared.clone(),
            stop.clone(),
        )));
        k += 1;
    }
    handles
}

/// A video sender's state: frames, keyframes, per-track sequence numbers.
struct VideoPacer {
    frame: u64,
    keyframe_every: u64,
}

/// Where a participant's received packets are counted.
enum Counting {
    /// Here, from [`Conn::recv`] (the full receive path, and participants that receive nothing).
    Here(Box<Tally>),
    /// On a lean receive thread, which hands the tally back at the end.
    Lean(Arc<LeanReceiver>),
}

impl Counting {
    /// The lean receiver, as the reader a connection hands its socket to.
    fn reader(&self) -> Option<Arc<dyn MediaReader>> {
        match self {
            Counting::Here(_) => None,
            Counting::Lean(r) => Some(r.clone()),
        }
    }

    /// The final tally (an empty one if the lean thread is gone).
    async fn finish(self, empty: impl FnOnce() -> Tally) -> Tally {
        match self {
            Counting::Here(t) => *t,
            Counting::Lean(r) => r.finish().await.unwrap_or_else(empty),
        }
    }
}

async fn participant(
    spec: Spec,
    s: Scenario,
    endpoint: Endpoint,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> PartResult {
    tokio::time::sleep_until(spec.join_at.into()).await;
    let t_join = Instant::now();
    let new_tally = || {
        Tally::new(
            shared.epoch,
            t_join,
            spec.stable,
            spec.expected.clone(),
            shared.rx.clone(),
        )
    };
    let mut counting = match &shared.lean {
        Some(lean) if !spec.expected.is_empty() => match lean.receiver(new_tally()) {
            Ok(r) => Counting::Lean(Arc::new(r)),
            Err(e) => {
                tracing::warn!("lean receiver: {e}; counting on the full path");
                Counting::Here(Box::new(new_tally()))
            }
        },
        _ => Counting::Here(Box::new(new_tally())),
    };
    let mut send_lag = histogram();
    let timeout = Duration::from_secs_f64(s.join_timeout_s);
    let room = room_name(&s, spec.room);
    let connect = Conn::connect(
        &endpoint,
        &room,
        spec.room,
        &spec.name,
        spec.audio,
        spec.video,
        if spec.audio || spec.video {
            s.publishers.saturating_sub(1)
        } else {
            s.publishers
        },
        timeout,
        counting.reader(),
    );
    let joined = match tokio::time::timeout(timeout + Duration::from_secs(1), connect).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("join timed out".to_string()),
    };
    let mut conn = match joined {
        Ok(c) => c,
        Err(why) => {
            let tally = counting.finish(new_tally).await;
            return failed(&shared, &spec, tally, send_lag, why);
        }
    };
    let join_s = Some(t_join.elapsed().as_secs_f64());
    shared.joined.fetch_add(1, Ordering::Relaxed);

    let audio_track = spec.index * 2;
    let video_track = spec.index * 2 + 1;
    let mut seqs = [0u64; 2];
    let mut audio_iv = tokio::time::interval(Duration::from_secs_f64(1.0 / s.audio_pps));
    let mut video_iv = tokio::time::interval(Duration::from_secs_f64(1.0 / s.video_fps));
    let mut pacer = VideoPacer {
        frame: 0,
        keyframe_every: if s.keyframe_interval_s > 0.0 {
            (s.keyframe_interval_s * s.video_fps).round().max(1.0) as u64
        } else {
            u64::MAX
        },
    };
    let leave_at = spec
        .leave_at
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
    let mut end_reason = None;

    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(leave_at.into()) => break,
            due = audio_iv.tick(), if spec.audio => {
                record_lag(&mut send_lag, &shared, due.into_std());
                if shared.phase.load(Ordering::Relaxed) < PHASE_DRAIN {
                    let len = s.audio_bytes;
                    send_one(&mut conn, &shared, Media::Audio, audio_track, &mut seqs[0], len, true);
                }
            }
            due = video_iv.tick(), if spec.video => {
                record_lag(&mut send_lag, &shared, due.into_std());
                if shared.phase.load(Ordering::Relaxed) < PHASE_DRAIN {
                    let key = pacer.frame.is_multiple_of(pacer.keyframe_every);
                    pacer.frame += 1;
                    let bytes = s.frame_bytes(key);
                    let n = bytes.div_ceil(s.video_packet_bytes).max(1);
                    let each = bytes.div_ceil(n);
                    for p in 0..n {
                        send_one(&mut conn, &shared, Media::Video, video_track, &mut seqs[1], each, p + 1 == n);
                    }
                }
            }
            got = conn.recv() => match got {
                Received::Packet(a) => {
                    if let Counting::Here(tally) = &mut counting {
                        tally.record(&a);
                    }
                }
                Received::Other => {}
                Received::Closed(why) => {
                    end_reason = Some(why);
                    break;
                }
            },
        }
    }
    let events_dropped = conn.events_dropped();
    if let Some(why) = end_reason {
        tracing::debug!(name = spec.name, "connection ended early: {why}");
    }
    conn.leave().await;
    PartResult {
        name: spec.name.clone(),
        stable: spec.stable,
        failure: None,
        join_s,
        expected: spec.expected.clone(),
        tally: counting.finish(new_tally).await,
        send_lag,
        events_dropped,
    }
}

/// How late a send timer fired, counted in the window only (the joins before it keep the
/// generator busy in bursts that say nothing about the measured load).
fn record_lag(send_lag: &mut Histogram<u64>, shared: &Shared, due: Instant) {
    if shared.phase.load(Ordering::Relaxed) == PHASE_MEASURE {
        let late = Instant::now().saturating_duration_since(due);
        let _ = send_lag.record(late.as_micros() as u64);
    }
}

fn send_one(
    conn: &mut Conn,
    shared: &Shared,
    media: Media,
    track: u32,
    seq: &mut u64,
    len: usize,
    marker: bool,
) {
    let measured = shared.phase.load(Ordering::Relaxed) == PHASE_MEASURE;
    let stamp = Stamp {
        track,
        seq: *seq,
        sent_ns: shared.epoch.elapsed().as_nanos() as u64,
        flags: if measured { FLAG_MEASURED } else { 0 },
    };
    match conn.send(media, stamp.payload(len), marker) {
        Ok(true) => {
            *seq += 1;
            shared.sent_total.fetch_add(1, Ordering::Relaxed);
            if measured {
                if let Some(c) = shared.sent_measured.get(track as usize) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(false) => {
            shared.send_dropped.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => tracing::debug!("send: {e}"),
    }
}

fn failed(
    shared: &Shared,
    spec: &Spec,
    tally: Tally,
    send_lag: Histogram<u64>,
    why: String,
) -> PartResult {
    shared.failed.fetch_add(1, Ordering::Relaxed);
    if spec.stable && !spec.expected.is_empty() {
        shared.failed_receivers.fetch_add(1, Ordering::Relaxed);
    }
    PartResult {
        name: spec.name.clone(),
        stable: spec.stable,
        failure: Some(format!("{}: {why}", spec.name)),
        join_s: None,
        expected: spec.expected.clone(),
        tally,
        send_lag,
        events_dropped: 0,
    }
}
