//! Helpers of the operations tests (metrics, admin API, webhooks): a `/metrics` reader and a
//! sender of audio that waits until it arrives.

use std::net::SocketAddr;
use std::time::Duration;

use sfu_client::{Client, ClientEvent};

use super::http_get;

/// One `/metrics` answer.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The text as served.
    pub text: String,
}

impl Scrape {
    /// The sum of the samples named `name` whose labels include every one of `labels`; panics
    /// when there is none (a metric that is missing is a failure, not a zero).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut found = false;
        let mut sum = 0.0;
        for line in self.text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            if series_name != name {
                continue;
            }
            let matches = labels
                .iter()
                .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            if matches {
                found = true;
                sum += value
                    .parse::<f64>()
                    .unwrap_or_else(|e| panic!("{line}: {e}"));
            }
        }
        assert!(found, "no sample {name} {labels:?} in:\n{}", self.text);
        sum
    }
}

/// `GET /metrics` from `addr`; panics unless it answers 200.
pub async fn scrape(addr: SocketAddr) -> Scrape {
    let (status, text) = http_get(addr, "/metrics")
        .await
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(status, 200, "GET /metrics answered {status}: {text}");
    Scrape { text }
}

/// Sends audio from `publisher` (20 ms apart) until `subscriber` has received `n` more RTP
/// packets than now; returns how many were sent. Panics after 20 s.
pub async fn audio_until_received(publisher: &Client, subscriber: &Client, n: u64) -> usize {
    let track = publisher.audio_track().expect("the publisher sends audio");
    let start = subscriber.counters().rtp_received;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    while subscriber.counters().rtp_received < start + n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} received {} of {n} packets of {} in 20 s",
            subscriber.name(),
            subscriber.counters().rtp_received - start,
            publisher.name()
        );
        publisher
            .send_rtp(track, format!("audio {sent}").into_bytes(), true)
            .await
            .expect("sending audio");
        sent += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent
}

/// Sends `n` audio packets from `publisher`, 20 ms apart.
pub async fn send_audio(publisher: &Client, n: usize) {
    let track = publisher.audio_track().expect("the publisher sends audio");
    for i in 0..n {
        publisher
            .send_rtp(track, format!("audio {i}").into_bytes(), true)
            .await
            .expect("sending audio");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `client`'s events until one matches `pred`; panics with `what` after 20 s.
pub async fn wait_event(
    client: &mut Client,
    what: &str,
    mut pred: impl FnMut(&ClientEvent) -> bool,
) -> ClientEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.next_event_timeout(left).await {
            Some(e) if pred(&e) => return e,
            Some(_) => {}
            None => panic!("{} never saw {what}", client.name()),
        }
    }
}
