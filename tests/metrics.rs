//! `GET /metrics`: what the Prometheus text says moves with a call (peers, forwarded packets,
//! joins, join-to-media), `promtool check metrics` finds nothing wrong with it, and on the main
//! listener it has the API's admission while `--metrics-listen` serves it to anyone who reaches
//! that address.

mod support;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use sfu_client::ClientConfig;
use support::ops::{audio_until_received, scrape, send_audio, Scrape};
use support::{http_get, join, join_with, wait_tracks_of, Server};

const WAIT: Duration = Duration::from_secs(20);

/// A port nothing listens on now, on `ip`.
fn free_port(ip: IpAddr) -> SocketAddr {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// Runs `promtool check metrics` on the text; panics with its complaints unless it is clean.
fn promtool_check(scrape: &Scrape) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool (Debian package `prometheus`, installed by scripts/test)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool's verdict");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        scrape.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_a_call_and_pass_promtool() {
    let metrics_addr = free_port(IpAddr::from([127, 0, 0, 1]));
    let server = Server::start_with(&["--metrics-listen", &metrics_addr.to_string()]);

    let idle = scrape(server.addr).await;
    promtool_check(&idle);
    assert_eq!(idle.value("edge_sfu_peers", &[]), 0.0);
    assert_eq!(idle.value("edge_sfu_joins_total", &[]), 0.0);

    let publisher = join(&server, "metrics", "publisher", true, false).await;
    let config = ClientConfig::new(server.ws_url(), "metrics", "viewer")
        .audio(false)
        .video(false)
        .deliver_rtp(false);
    let viewer = join_with(config).await;
    wait_tracks_of(&viewer, publisher.peer_id(), 1).await;
    audio_until_received(&publisher, &viewer, 10).await;

    // The second listener: the same numbers, no admission needed.
    let during = scrape(metrics_addr).await;
    promtool_check(&during);
    assert_eq!(during.value("edge_sfu_peers", &[]), 2.0);
    assert_eq!(during.value("edge_sfu_rooms", &[]), 1.0);
    assert_eq!(during.value("edge_sfu_tracks", &[]), 1.0);
    assert_eq!(
        during.value("edge_sfu_legs", &[]),
        1.0,
        "the viewer receives the audio"
    );
    assert_eq!(during.value("edge_sfu_joins_total", &[]), 2.0);
    let forwarded = during.value("edge_sfu_forwarded_packets_total", &[]);
    assert!(forwarded >= 10.0, "{forwarded}");
    assert!(during.value("edge_sfu_received_packets_total", &[]) >= forwarded);
    // Both members saw media: the publisher's first packet arrived, the viewer's first was sent.
    assert_eq!(
        during.value("edge_sfu_join_to_media_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        during.value("edge_sfu_join_to_media_seconds_bucket", &[("le", "+Inf")]),
        2.0
    );
    assert_eq!(
        during.value("edge_sfu_drops_total", &[("reason", "malformed_rtp")]),
        0.0
    );

    let before = viewer.counters().rtp_received;
    send_audio(&publisher, 20).await;
    assert!(support::try_until(WAIT, || viewer.counters().rtp_received >= before + 20).await);
    let later = scrape(server.addr).await;
    assert!(
        later.value("edge_sfu_forwarded_packets_total", &[]) >= forwarded + 20.0,
        "forwarded packets went up between two scrapes"
    );
    assert!(
        later.value("edge_sfu_forwarded_bytes_total", &[])
            > during.value("edge_sfu_forwarded_bytes_total", &[])
    );

    publisher.leave().await;
    viewer.leave().await;
    server.until_empty(WAIT).await;
    let after = scrape(server.addr).await;
    assert_eq!(after.value("edge_sfu_peers", &[]), 0.0);
    assert_eq!(after.value("edge_sfu_joins_total", &[]), 2.0);
}

/// An IPv4 address of this machine other than loopback: a connection to it comes from it, so the
/// server sees a caller that is not loopback.
fn machine_address() -> IpAddr {
    if_addrs::get_if_addrs()
        .expect("listing interfaces")
        .into_iter()
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .expect("this test needs a network interface with an IPv4 address besides loopback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_listener_admits_like_the_api_and_metrics_listen_does_not() {
    let ip = machine_address();
    let metrics_addr = free_port(ip);
    let server = Server::start_listening(
        &format!("{ip}:0"),
        &[
            "--insecure-http",
            "--metrics-listen",
            &metrics_addr.to_string(),
        ],
    );
    let (status, body) = http_get(server.addr, "/metrics")
        .await
        .expect("GET /metrics");
    assert_eq!(
        status, 403,
        "a caller beyond loopback without room tokens: {body}"
    );
    let (status, _) = http_get(server.addr, "/api/rooms")
        .await
        .expect("GET /api/rooms");
    assert_eq!(status, 403, "the admin API has the same admission");
    let open = scrape(metrics_addr).await;
    assert_eq!(open.value("edge_sfu_peers", &[]), 0.0);
    // The refusals were counted.
    assert_eq!(
        open.value(
            "edge_sfu_signaling_refusals_total",
            &[("reason", "api_refused")]
        ),
        2.0
    );
}
