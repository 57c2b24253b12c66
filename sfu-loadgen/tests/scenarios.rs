//! Short runs of the presets against an in-process edge-sfu (and the reflector): media reaches every
//! simulated subscriber and the report's counts add up. No timing assertions.

use std::time::Duration;

use clap::Parser;
use edge_sfu::{Cli, Server};
use sfu_loadgen::http::parse_sfu_url;
use sfu_loadgen::{run, Report, RunOptions, Scenario, Target};

mod common;
use common::{assert_counts_add_up, short};

fn start_server() -> Server {
    // Through the command line, so settings added later keep their defaults.
    let settings = Cli::parse_from([
        "edge-sfu",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--public-ip",
        "127.0.0.1",
    ])
    .settings()
    .expect("settings");
    Server::start(&settings).expect("starting edge-sfu in-process")
}

async fn run_against_sfu(s: Scenario, lean_rx: bool) -> Report {
    let server = start_server();
    let (ws_url, http) = parse_sfu_url(server.url()).expect("the server's url");
    let report = run(RunOptions {
        scenario: s,
        target: Target::Sfu {
            ws_url,
            http,
            pid: None,
        },
        progress: false,
        pinning: None,
        lean_rx,
        split: None,
    })
    .await
    .expect("the run");
    tokio::task::spawn_blocking(move || server.shutdown())
        .await
        .expect("joining the shutdown")
        .expect("shutting down");
    println!("{}", report.table());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livestream_reaches_every_viewer_and_counts_add_up() {
    let mut s = short(Scenario::preset("livestream").expect("preset"));
    s.subscribers = 4;
    let r = run_against_sfu(s, true).await;
    // One publisher, two tracks, four viewers: each viewer expects every measured packet.
    assert_counts_add_up(&r, 4, &[2, 2, 2, 2]);
    assert_eq!(r.expected_packets, r.sent_packets * 4);
    // The server's counter moved too (the cross-check the report prints).
    assert!(
        r.server_forwarded.is_some_and(|f| f > 0),
        "{:?}",
        r.server_forwarded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meeting_reaches_every_member_and_counts_add_up() {
    let mut s = short(Scenario::preset("meeting-10").expect("preset"));
    s.publishers = 4;
    let r = run_against_sfu(s, true).await;
    // Four members, each receiving the audio and video of the three others.
    assert_counts_add_up(&r, 4, &[6, 6, 6, 6]);
    assert_eq!(r.expected_packets, r.sent_packets * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lean_receivers_count_every_packet_once_and_keep_the_sessions_alive() {
    let mut s = short(Scenario::preset("livestream").expect("preset"));
    s.subscribers = 3;
    let r = run_against_sfu(s, true).await;
    assert_counts_add_up(&r, 3, &[2, 2, 2]);
    // Nothing lost, nothing counted twice: every measured packet reached every viewer once.
    assert_eq!(r.lost_packets, 0, "{:?}", r.receivers);
    assert_eq!(r.received_packets, r.sent_packets * 3);
    assert!(r.latency_us.n > 0 && r.audio_latency_us.n > 0 && r.video_latency_us.n > 0);
    let lean = r.lean_rx.expect("lean receive counts");
    assert_eq!(lean.auth_failed, 0, "{lean:?}");
    assert_eq!((lean.duplicates, lean.too_old, lean.malformed), (0, 0, 0));
    assert_eq!((lean.socket_drops, lean.session_dropped), (0, 0));
    assert!(lean.media >= r.received_packets, "{lean:?}");
    // STUN consent checks and RTCP went on to the sessions.
    assert!(lean.to_session > 0, "{lean:?}");
    assert_eq!(lean.seq_missing, 0, "{lean:?}");
    let g = r.generator.expect("generator usage");
    assert_eq!(g.receive_path, "lean");
    assert!(g.receive_threads_us_per_packet.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_receive_path_still_counts() {
    let mut s = short(Scenario::preset("livestream").expect("preset"));
    s.subscribers = 2;
    let r = run_against_sfu(s, false).await;
    assert_counts_add_up(&r, 2, &[2, 2]);
    assert!(r.lean_rx.is_none());
    assert_eq!(
        r.generator.map(|g| g.receive_path),
        Some("full".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reflector_baseline_counts_add_up() {
    let socket = sfu_loadgen::reflector::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = socket.local_addr().expect("local addr");
    std::thread::spawn(move || sfu_loadgen::reflector::serve(&socket, Duration::from_secs(5)));
    let mut s = short(Scenario::preset("audio-room").expect("preset"));
    s.subscribers = 3;
    s.publishers = 2;
    let r = run(RunOptions {
        scenario: s,
        target: Target::Reflector { addr, pid: None },
        progress: false,
        pinning: None,
        lean_rx: true,
        split: None,
    })
    .await
    .expect("the run");
    println!("{}", r.table());
    // Two speakers (audio only) and three listeners: speakers hear each other, listeners both.
    assert_counts_add_up(&r, 5, &[1, 1, 2, 2, 2]);
    assert!(r.server_forwarded.is_some_and(|f| f > 0));
}
