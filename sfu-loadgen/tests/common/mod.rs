//! What the integration tests share: short scenarios and the checks of a report's counts.

use sfu_loadgen::{Report, Scenario};

/// `s` made short and light enough for a test: 2 s window, 300 kbit/s video.
pub fn short(mut s: Scenario) -> Scenario {
    s.duration_s = 2.0;
    s.ramp_up_s = 0.5;
    s.settle_timeout_s = 10.0;
    s.video_kbps = 300.0;
    s.keyframe_interval_s = 1.0;
    s
}

/// Every join done, media at every receiver, each receiver with its expected number of tracks,
/// and the report's totals adding up.
pub fn assert_counts_add_up(r: &Report, receivers: usize, tracks_each: &[u64]) {
    assert_eq!(r.joins.failed, 0, "failed joins: {:?}", r.joins.errors);
    assert!(
        r.settled,
        "media did not reach every receiver before the window"
    );
    assert_eq!(r.receivers.len(), receivers, "{:?}", r.receivers);
    for (rx, tracks) in r.receivers.iter().zip(tracks_each) {
        assert_eq!(rx.tracks, *tracks, "{rx:?}");
        assert!(
            rx.received > 0,
            "{} received nothing in the window: {rx:?}",
            rx.name
        );
        assert!(rx.received <= rx.expected, "{rx:?}");
    }
    let expected: u64 = r.receivers.iter().map(|x| x.expected).sum();
    let received: u64 = r.receivers.iter().map(|x| x.received).sum();
    assert_eq!(r.expected_packets, expected);
    assert_eq!(r.received_packets, received);
    assert_eq!(r.expected_packets, r.received_packets + r.lost_packets);
    assert!(r.sent_packets > 0);
    assert!(r.latency_us.n > 0 && r.latency_us.n <= r.received_packets);
}
