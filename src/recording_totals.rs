//! The server's recording counters, summed over every worker's recordings, for `/metrics`.
//!
//! Each worker's recorder adds to them: a recording started or finished, the bytes its writer
//! wrote (synced while it runs, so the counter moves during a recording, and once more when it
//! finishes), the frames its full queue refused.

use std::sync::atomic::{AtomicU64, Ordering};

use signaling::metrics::{ExternalSample, MetricsSource, SampleKind};

/// Recording counters of the whole server.
#[derive(Debug, Default)]
pub struct RecordingTotals {
    started: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    bytes_written: AtomicU64,
    frames_dropped: AtomicU64,
}

impl RecordingTotals {
    /// A recording's writer started.
    pub fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    /// A recording's files are finished; `failed` when its writer gave up (disk full, size cap,
    /// I/O error) or could not finish.
    pub fn finished(&self, failed: bool) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `bytes` more were written to recording files.
    pub fn wrote(&self, bytes: u64) {
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A full writer queue refused a frame or command.
    pub fn dropped_frame(&self) {
        self.frames_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl MetricsSource for RecordingTotals {
    fn samples(&self) -> Vec<ExternalSample> {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let started = n(&self.started);
        let finished = n(&self.finished);
        let sample = |name, help, kind, value| ExternalSample {
            name,
            help,
            kind,
            labels: Vec::new(),
            value,
        };
        vec![
            sample(
                "edge_sfu_recordings_active",
                "Recordings being written now.",
                SampleKind::Gauge,
                started.saturating_sub(finished),
            ),
            sample(
                "edge_sfu_recordings_started_total",
                "Recordings started.",
                SampleKind::Counter,
                started,
            ),
            sample(
                "edge_sfu_recordings_failed_total",
                "Recordings ended by their writer (disk full, size cap, I/O error).",
                SampleKind::Counter,
                n(&self.failed),
            ),
            sample(
                "edge_sfu_recording_bytes_written_total",
                "Bytes written to recording files.",
                SampleKind::Counter,
                n(&self.bytes_written),
            ),
            sample(
                "edge_sfu_recording_frames_dropped_total",
                "Frames a full recording queue refused (the disk did not keep up).",
                SampleKind::Counter,
                n(&self.frames_dropped),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_recordings_are_started_minus_finished() {
        let totals = RecordingTotals::default();
        totals.started();
        totals.started();
        totals.finished(true);
        totals.wrote(1000);
        let samples = totals.samples();
        let value = |name: &str| samples.iter().find(|s| s.name == name).unwrap().value;
        assert_eq!(value("edge_sfu_recordings_active"), 1);
        assert_eq!(value("edge_sfu_recordings_failed_total"), 1);
        assert_eq!(value("edge_sfu_recording_bytes_written_total"), 1000);
    }
}
