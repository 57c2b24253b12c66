//! `GET /metrics`: the server's counters in the Prometheus text format (0.0.4, which every
//! Prometheus and `promtool check metrics` read), written with the `prometheus` crate's encoder.
//!
//! Each scrape asks every worker for its [`StatsSnapshot`](sfu_core::StatsSnapshot) (as `/api/stats` does, each with a
//! timeout) and adds the signaling layer's counters. Labels are bounded: `worker` (an index),
//! `reason` (a fixed list), `path`, `result`; never a room or peer name.
//!
//! On the main listener `/metrics` has the API's admission (loopback, or an admin token);
//! `--metrics-listen ADDR` serves it alone on a second listener without admission, for an
//! address the operator chose for the scraper ([`open_router`]).
//!
//! Parts of the binary that keep counters of their own (the kernel path; a recorder's
//! `recordings_active` and `recording_bytes_written`) implement [`MetricsSource`] and are handed
//! to [`AppState::with_metrics_source`]; each scrape reads them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};
use sfu_core::counters::JoinRefusalReason;
use sfu_core::latency::LatencyHistogram;
use sfu_core::DropReason;

use crate::api::admit;
use crate::server::{collect_stats, AppState, WorkerStats};

/// Join refusals the signaling layer makes (tokens, per-address limit), as its counters name them.
const SIGNALING_JOIN_REFUSALS: [&str; 6] = [
    "auth_required",
    "token_expired",
    "token_not_yet_valid",
    "bad_token",
    "wrong_room",
    "join_rate_limited",
];

/// Whether an external sample counts up or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// Only goes up (a restart resets it).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One sample kept outside the workers and the signaling layer. Samples of one family (the same
/// `name`) share `help` and `kind` and differ by their labels (bounded: never a room or a peer).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalSample {
    /// The family name, `edge_sfu_...` (`_total` for a counter).
    pub name: &'static str,
    /// What it counts.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: SampleKind,
    /// Its labels.
    pub labels: Vec<(&'static str, String)>,
    /// Its value now.
    pub value: u64,
}

/// A part of the server with counters of its own, read at every scrape.
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// Its samples now.
    fn samples(&self) -> Vec<ExternalSample>;
}

/// TLS handshakes of the HTTPS listener.
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Handshakes that finished: HTTPS connections served.
    pub established: AtomicU64,
    /// Handshakes that failed or timed out (also a browser that does not trust the certificate).
    pub failed: AtomicU64,
}

/// `/metrics` with the API's admission, for the main router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(admitted_metrics))
}

/// A router serving only `/metrics`, without admission (`--metrics-listen`).
pub fn open_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(open_metrics))
        .with_state(state)
}

async fn admitted_metrics(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
) -> Response {
    match admit(&state, addr, &headers) {
        Ok(()) => open_metrics(State(state)).await,
        Err(e) => e.into_response(),
    }
}

async fn open_metrics(State(state): State<Arc<AppState>>) -> Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&exposition(&state).await, &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, encoder.format_type())], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Every metric family of one scrape.
pub async fn exposition(state: &AppState) -> Vec<MetricFamily> {
    let (total, workers) = collect_stats(state).await;
    let mut out = Families::default();
    let per_worker = |get: fn(&WorkerStats) -> u64| -> Vec<(Labels, u64)> {
        workers
            .iter()
            .map(|w| (vec![("worker", w.index.to_string())], get(w)))
            .collect()
    };
    out.gauge(
        "edge_sfu_rooms",
        "Rooms with at least one member or ingest.",
        per_worker(|w| w.stats.rooms as u64),
    );
    out.gauge(
        "edge_sfu_peers",
        "Joined participants.",
        per_worker(|w| w.stats.peers as u64),
    );
    out.gauge(
        "edge_sfu_tracks",
        "Published tracks (members' and plain RTP ingests').",
        per_worker(|w| w.stats.tracks as u64),
    );
    out.gauge(
        "edge_sfu_legs",
        "Subscriber legs: one per track a member receives.",
        per_worker(|w| w.stats.legs as u64),
    );
    out.counter(
        "edge_sfu_forwarded_packets_total",
        "RTP packets written to subscriber legs.",
        per_worker(|w| w.stats.forwarded_packets),
    );
    out.counter(
        "edge_sfu_forwarded_bytes_total",
        "RTP payload bytes written to subscriber legs.",
        per_worker(|w| w.stats.forwarded_bytes),
    );
    out.counter(
        "edge_sfu_received_packets_total",
        "RTP packets received from publishers and ingests.",
        per_worker(|w| w.stats.received_packets),
    );
    out.counter(
        "edge_sfu_resent_packets_total",
        "RTP packets resent because a subscriber NACKed them.",
        per_worker(|w| w.stats.resent_packets),
    );
    out.counter(
        "edge_sfu_joins_total",
        "Members that joined a room.",
        per_worker(|w| w.stats.joins),
    );
    out.gauge(
        "edge_sfu_ice_tcp_connections",
        "Open ICE-TCP connections.",
        per_worker(|w| w.stats.ice_tcp_connections as u64),
    );
    out.counter(
        "edge_sfu_ice_tcp_accepted_total",
        "ICE-TCP connections accepted.",
        per_worker(|w| w.stats.ice_tcp_accepted),
    );

    let drops = workers.iter().flat_map(|w| {
        DropReason::ALL.iter().map(move |r| {
            let n = w.stats.drops.get(r.as_str()).copied().unwrap_or(0);
            (
                vec![
                    ("worker", w.index.to_string()),
                    ("reason", r.as_str().to_owned()),
                ],
                n,
            )
        })
    });
    out.counter(
        "edge_sfu_drops_total",
        "Datagrams and messages the media workers refused, by reason.",
        drops,
    );

    let signaling = state.counters.snapshot();
    let count_of = |name: &str| {
        signaling
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    };
    let join_refusals = JoinRefusalReason::ALL
        .iter()
        .map(|r| {
            (
                r.as_str(),
                total.join_refusals.get(r.as_str()).copied().unwrap_or(0),
            )
        })
        .chain(SIGNALING_JOIN_REFUSALS.iter().map(|r| (*r, count_of(r))))
        .map(|(r, n)| (vec![("reason", r.to_owned())], n));
    out.counter(
        "edge_sfu_join_refusals_total",
        "Joins refused, by reason.",
        join_refusals,
    );
    let refusals = signaling
        .iter()
        .filter(|(n, _)| !SIGNALING_JOIN_REFUSALS.contains(n))
        .map(|(r, n)| (vec![("reason", (*r).to_owned())], *n));
    out.counter(
        "edge_sfu_signaling_refusals_total",
        "WebSocket messages and API requests refused, by reason.",
        refusals,
    );
    out.histogram(
        "edge_sfu_join_to_media_seconds",
        "From a member's join to the first RTP packet on its session, received from it or forwarded to it.",
        &total.join_to_media,
    );

    let tls = &state.tls;
    out.counter(
        "edge_sfu_tls_handshakes_total",
        "TLS handshakes on the HTTPS listener, by result.",
        [("ok", &tls.established), ("failed", &tls.failed)]
            .map(|(result, n)| (vec![("result", result.to_owned())], load(n))),
    );

    // Plain RTP outputs by path; the kernel path's numbers are the kernel's own counters.
    let mut outputs = [("kernel", 0u64, 0u64, 0u64), ("userspace", 0, 0, 0)];
    for o in &total.outputs {
        let slot = &mut outputs[usize::from(o.path != "kernel")];
        slot.1 += 1;
        for t in &o.targets {
            slot.2 += t.packets;
            slot.3 += t.bytes;
        }
    }
    out.gauge(
        "edge_sfu_plain_outputs",
        "Plain RTP outputs, by the path that copies them.",
        outputs.map(|(p, n, _, _)| (vec![("path", p.to_owned())], n)),
    );
    out.counter(
        "edge_sfu_plain_output_packets_total",
        "Packets the existing plain RTP outputs sent, by path (a removed output takes its count with it).",
        outputs.map(|(p, _, n, _)| (vec![("path", p.to_owned())], n)),
    );
    out.counter(
        "edge_sfu_plain_output_bytes_total",
        "Bytes the existing plain RTP outputs sent, by path (a removed output takes its count with it).",
        outputs.map(|(p, _, _, n)| (vec![("path", p.to_owned())], n)),
    );

    if let Some(webhooks) = &state.webhooks {
        let c = webhooks.counters();
        out.counter(
            "edge_sfu_webhook_requests_total",
            "Webhook deliveries, by result: delivered, retried (an attempt failed), failed (gave up), dropped (queue full).",
            [("delivered", &c.delivered), ("retried", &c.retried), ("failed", &c.failed), ("dropped", &c.dropped)]
                .map(|(result, n)| (vec![("result", result.to_owned())], load(n))),
        );
    }
    let mut external: Vec<ExternalSample> = state
        .metrics_sources
        .iter()
        .flat_map(|s| s.samples())
        .collect();
    // Families in the order their first sample came, each with all its samples.
    while let Some(first) = external.first().cloned() {
        let (family, rest): (Vec<_>, Vec<_>) =
            external.into_iter().partition(|s| s.name == first.name);
        external = rest;
        let samples = family.into_iter().map(|s| (s.labels, s.value));
        match first.kind {
            SampleKind::Counter => out.counter(first.name, first.help, samples),
            SampleKind::Gauge => out.gauge(first.name, first.help, samples),
        }
    }
    out.0
}

fn load(n: &AtomicU64) -> u64 {
    n.load(Ordering::Relaxed)
}

/// A sample's labels.
type Labels = Vec<(&'static str, String)>;

/// The families of one scrape, built with the `prometheus` crate's data model.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

impl Families {
    fn push(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) {
        // The encoder refuses a family without samples (no worker answered, say).
        if metrics.is_empty() {
            return;
        }
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(kind);
        family.set_metric(metrics);
        self.0.push(family);
    }

    fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        let metrics = samples
            .into_iter()
            .map(|(labels, value)| {
                let mut counter = Counter::default();
                counter.set_value(value as f64);
                let mut m = metric(labels);
                m.set_counter(counter);
                m
            })
            .collect();
        self.push(name, help, MetricType::COUNTER, metrics);
    }

    fn gauge(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels, u64)>) {
        let metrics = samples
            .into_iter()
            .map(|(labels, value)| {
                let mut gauge = Gauge::default();
                gauge.set_value(value as f64);
                let mut m = metric(labels);
                m.set_gauge(gauge);
                m
            })
            .collect();
        self.push(name, help, MetricType::GAUGE, metrics);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &LatencyHistogram) {
        let mut histogram = Histogram::default();
        histogram.set_sample_count(h.count());
        histogram.set_sample_sum(h.sum_seconds());
        histogram.set_bucket(
            h.cumulative()
                .map(|(bound, n)| {
                    let mut b = Bucket::default();
                    b.set_upper_bound(bound);
                    b.set_cumulative_count(n);
                    b
                })
                .collect(),
        );
        let mut m = metric(Vec::new());
        m.set_histogram(histogram);
        self.push(name, help, MetricType::HISTOGRAM, vec![m]);
    }
}

fn metric(labels: Labels) -> Metric {
    let mut m = Metric::default();
    m.set_label(
        labels
            .into_iter()
            .map(|(name, value)| {
                let mut l = LabelPair::default();
                l.set_name(name.to_owned());
                l.set_value(value);
                l
            })
            .collect(),
    );
    m
}
