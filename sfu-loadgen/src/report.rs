//! The result of a run: a serializable [`Report`] (`--json`) and its table form.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::continuity::ContinuityReport;
use crate::lean_rx::LeanCounts;
use crate::scenario::Scenario;

/// p50 / p99 / max of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    /// Number of values.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Quantiles {
    /// From values in seconds (reported in milliseconds).
    pub fn from_secs(values: &[f64]) -> Quantiles {
        if values.is_empty() {
            return Quantiles::default();
        }
        let mut v: Vec<f64> = values.iter().map(|s| s * 1000.0).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Quantiles {
            n: v.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// One-way latency of measured packets, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencyReport {
    /// Packets measured.
    pub n: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl LatencyReport {
    /// Summarises a histogram of microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> LatencyReport {
        if h.is_empty() {
            return LatencyReport::default();
        }
        LatencyReport {
            n: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Joins: how many, how fast, how many failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JoinReport {
    /// Joins tried (stable participants and churning listeners).
    pub attempted: u64,
    /// Joins that failed (error or timeout).
    pub failed: u64,
    /// Of the attempted, churning listeners.
    pub churn: u64,
    /// From the start of the join to media negotiated (WebSocket, ICE, DTLS, SDP).
    pub join_ms: Quantiles,
    /// From the start of the join to the first media packet received (receivers only).
    pub first_media_ms: Quantiles,
    /// The first few failure messages.
    pub errors: Vec<String>,
}

/// CPU and memory of the server under test over the window (from `/proc/<pid>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServerUsage {
    /// Its process id.
    pub pid: u32,
    /// CPU seconds (user + system, all threads) used during the window.
    pub cpu_s: f64,
    /// Average cores busy during the window.
    pub cpu_cores: f64,
    /// CPU seconds per million packets received by the subscribers.
    pub cpu_s_per_mpkt: f64,
    /// Forwarded packets per CPU second: what one core would move at this cost.
    pub out_pps_per_core: f64,
    /// Resident memory before anyone joined, KiB.
    pub rss_before_kib: u64,
    /// Resident memory at the end of the window, KiB.
    pub rss_kib: u64,
    /// Peak resident memory, KiB.
    pub rss_peak_kib: u64,
    /// Growth of resident memory per joined participant, KiB.
    pub rss_per_participant_kib: f64,
    /// Growth of resident memory per subscriber leg (one track to one receiver), KiB.
    pub rss_per_leg_kib: f64,
}

/// The generator's own CPU use, and whether it limited the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GeneratorUsage {
    /// CPU seconds used during the window.
    pub cpu_s: f64,
    /// Average cores busy during the window.
    pub cpu_cores: f64,
    /// Cores it may run on.
    pub cores_allowed: usize,
    /// How media was received: `lean` (batched reads, SRTP opened on the lean receive threads)
    /// or `full` (every packet through its str0m session).
    pub receive_path: String,
    /// Generator CPU µs (all its threads: sending, sessions, receiving) per packet received in
    /// the window; compare with the server's CPU µs per forwarded packet.
    pub us_per_received_packet: f64,
    /// The lean receive threads' CPU µs per packet received (`None` on the full path).
    pub receive_threads_us_per_packet: Option<f64>,
    /// 99th percentile of how late the send timers fired, ms.
    pub send_lag_p99_ms: f64,
    /// Packets dropped before the network because a client's queue was full.
    pub send_queue_full: u64,
    /// Received packets lost in a client's event queue.
    pub events_dropped: u64,
    /// Whether the generator, not the server, was the limit.
    pub bottleneck: bool,
    /// Why (or "not the bottleneck").
    pub note: String,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario that ran.
    pub scenario: Scenario,
    /// The server under test.
    pub target: String,
    /// What was pinned to which cores, if anything.
    pub pinning: Option<String>,
    /// Whether media reached every receiver before the window opened.
    pub settled: bool,
    /// Length of the measurement window, s.
    pub window_s: f64,
    /// Stable participants that joined.
    pub participants: u64,
    /// Subscriber legs (one track to one receiver) of the joined stable participants.
    pub legs: u64,
    /// Measured packets the publishers sent.
    pub sent_packets: u64,
    /// Measured packets the stable receivers should have received (sent × subscribers).
    pub expected_packets: u64,
    /// Measured packets they received.
    pub received_packets: u64,
    /// expected − received.
    pub lost_packets: u64,
    /// Lost, in percent of expected.
    pub loss_pct: f64,
    /// Packets per second arriving at all receivers (churning ones too) during the window.
    pub out_pps: f64,
    /// Payload bits per second arriving at all receivers during the window.
    pub out_payload_bps: f64,
    /// The server's own count of forwarded packets during the window, when it offers one.
    pub server_forwarded: Option<u64>,
    /// The same per second.
    pub server_out_pps: Option<f64>,
    /// What the scenario asks for (stable receivers, rates averaged).
    pub scenario_out_pps: f64,
    /// One-way latency of measured packets, µs.
    pub latency_us: LatencyReport,
    /// The same, audio packets only.
    pub audio_latency_us: LatencyReport,
    /// The same, video packets only (frames go out as bursts, so later packets of a frame wait).
    pub video_latency_us: LatencyReport,
    /// Joins.
    pub joins: JoinReport,
    /// The server's CPU and memory, when it runs on this machine.
    pub server: Option<ServerUsage>,
    /// The generator's CPU.
    pub generator: Option<GeneratorUsage>,
    /// What the lean receive path counted besides measured packets (duplicates, authentication
    /// failures, socket drops...), summed over the receivers; `None` on the full path.
    pub lean_rx: Option<LeanCounts>,
    /// Per kind, over every receiver that joined (churning ones too): packets missing from each
    /// stream's first received packet on, and freezes between video frames.
    pub continuity: ContinuityReport,
    /// Per stable receiver: what it should have received in the window and what it did.
    pub receivers: Vec<ReceiverSummary>,
}

/// One stable receiver's share of the loss figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiverSummary {
    /// Its display name (`pub-ROOM-K` or `sub-ROOM-K`).
    pub name: String,
    /// Tracks it receives.
    pub tracks: u64,
    /// Measured packets sent on those tracks.
    pub expected: u64,
    /// Measured packets it received.
    pub received: u64,
}

impl Report {
    /// Whether any join failed (the binary exits non-zero then).
    pub fn has_failed_joins(&self) -> bool {
        self.joins.failed > 0
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
        let s = &self.scenario;
        let media = match (s.audio, s.video) {
            (true, true) => format!("audio + video {:.0} kbit/s", s.video_kbps),
            (true, false) => "audio".to_string(),
            (false, true) => format!("video {:.0} kbit/s", s.video_kbps),
            (false, false) => "none".to_string(),
        };
        row(
            "scenario",
            format!(
                "{}: {} room(s) x ({} publishers + {} subscribers), {media}, churn {}/s",
                s.name, s.rooms, s.publishers, s.subscribers, s.churn_per_s
            ),
        );
        row("target", self.target.clone());
        if let Some(p) = &self.pinning {
            row("pinning", p.clone());
        }
        row(
            "window",
            format!(
                "{:.1} s{}",
                self.window_s,
                if self.settled {
                    ""
                } else {
                    " (opened before media reached every receiver)"
                }
            ),
        );
        row(
            "participants",
            format!(
                "{} joined, {} subscriber legs",
                self.participants, self.legs
            ),
        );
        row(
            "out packets/s",
            format!(
                "{:.0} at the receivers (scenario asks {:.0}){}",
                self.out_pps,
                self.scenario_out_pps,
                match self.server_out_pps {
                    Some(p) => format!(
                        ", server counted {p:.0} ({:+.1} %)",
                        pct_diff(p, self.out_pps)
                    ),
                    None => String::new(),
                }
            ),
        );
        row(
            "out bits/s",
            format!("{:.2} Mbit/s of payload", self.out_payload_bps / 1e6),
        );
        row(
            "loss",
            format!(
                "{} sent x subscribers = {} expected, {} received, {} lost ({:.3} %)",
                self.sent_packets,
                self.expected_packets,
                self.received_packets,
                self.lost_packets,
                self.loss_pct
            ),
        );
        let c = &self.continuity;
        row(
            "per stream",
            format!(
                "missing from each stream's first packet: audio {:.3} % of {}, video {:.3} % of {}; \
                 {} of {} video streams froze over 1 s (longest wait {:.0} ms)",
                c.audio_missing_pct,
                c.audio_expected,
                c.video_missing_pct,
                c.video_expected,
                c.freezes_over_1s,
                c.video_streams,
                c.longest_frame_gap_ms
            ),
        );
        let l = &self.latency_us;
        row(
            "latency one-way",
            format!(
                "p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs ({} packets)",
                l.p50, l.p99, l.p999, l.max, l.n
            ),
        );
        for (name, l) in [
            ("  audio", &self.audio_latency_us),
            ("  video", &self.video_latency_us),
        ] {
            if l.n > 0 {
                row(
                    name,
                    format!("p50 {} µs, p99 {} µs, p99.9 {} µs", l.p50, l.p99, l.p999),
                );
            }
        }
        let j = &self.joins;
        row("joins", format!(
            "{} tried ({} churn), {} failed; to negotiated p50 {:.0} ms p99 {:.0} ms; to first media p50 {:.0} ms p99 {:.0} ms",
            j.attempted, j.churn, j.failed, j.join_ms.p50, j.join_ms.p99, j.first_media_ms.p50, j.first_media_ms.p99
        ));
        for e in &j.errors {
            row("  failed join", e.clone());
        }
        match &self.server {
            Some(u) => {
                row("server CPU", format!(
                    "{:.2} s = {:.2} cores; {:.2} CPU-s per million forwarded packets ({:.0} pkt/s per core)",
                    u.cpu_s, u.cpu_cores, u.cpu_s_per_mpkt, u.out_pps_per_core
                ));
                row("server RSS", format!(
                    "{} KiB (from {} KiB; peak {} KiB): {:.1} KiB per participant, {:.1} KiB per leg",
                    u.rss_kib, u.rss_before_kib, u.rss_peak_kib, u.rss_per_participant_kib, u.rss_per_leg_kib
                ));
            }
            None => row("server CPU/RSS", "not measured (no local pid)".into()),
        }
        if let Some(g) = &self.generator {
            row(
                "generator CPU",
                format!(
                    "{:.2} s = {:.2} of {} core(s); send timer lag p99 {:.1} ms",
                    g.cpu_s, g.cpu_cores, g.cores_allowed, g.send_lag_p99_ms
                ),
            );
            let server = self
                .server
                .as_ref()
                .map(|u| format!(" (server: {:.2} µs per forwarded packet)", u.cpu_s_per_mpkt))
                .unwrap_or_default();
            let threads = g
                .receive_threads_us_per_packet
                .map(|t| format!(", of which the receive threads {t:.2}"))
                .unwrap_or_default();
            row(
                "generator cost",
                format!(
                    "{:.2} µs per received packet{threads}, {} receive path{server}",
                    g.us_per_received_packet, g.receive_path
                ),
            );
            row("generator", g.note.clone());
        }
        if let Some(l) = &self.lean_rx {
            row(
                "lean receive",
                format!(
                    "{} datagrams: {} media, {} duplicates, {} too old, {} failed authentication, \
                     {} padding only, {} unstamped, {} malformed; {} to the sessions ({} dropped, \
                     {} after they ended); \
                     {} dropped by full sockets; {} sequence numbers missing",
                    l.datagrams,
                    l.media,
                    l.duplicates,
                    l.too_old,
                    l.auth_failed,
                    l.padding_only,
                    l.unstamped,
                    l.malformed,
                    l.to_session,
                    l.session_dropped,
                    l.session_gone,
                    l.socket_drops,
                    l.seq_missing
                ),
            );
        }
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }
        out
    }
}

fn pct_diff(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        (a - b) * 100.0 / b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_few_values() {
        let q = Quantiles::from_secs(&[0.001, 0.002, 0.003]);
        assert_eq!(q.n, 3);
        assert_eq!(q.p50, 2.0);
        assert_eq!(q.max, 3.0);
        assert_eq!(Quantiles::from_secs(&[]), Quantiles::default());
    }
}
