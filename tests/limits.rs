//! Server-wide bounds against the real server, each refused with `server_busy` and counted
//! before any worker creates a session: the joins the whole server takes at once (whatever the
//! addresses), and the members one worker holds (`--max-peers`).

mod support;

use std::time::Duration;

use sfu_client::ErrorCode;
use support::{RawWs, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_past_the_server_wide_limit_are_refused() {
    // The per-address limit is off: only the server-wide one holds.
    let server = Server::start_with(&[
        "--join-burst",
        "0",
        "--server-join-burst",
        "3",
        "--server-join-rate",
        "0.001",
    ]);
    let mut joined = Vec::new();
    for n in 0..3 {
        let mut ws = RawWs::connect(&server).await;
        ws.join(&format!("flood-{n}"), "member").await;
        joined.push(ws);
    }
    for n in 3..5 {
        let mut ws = RawWs::connect(&server).await;
        ws.join_raw(&format!("flood-{n}"), "member").await;
        assert_eq!(
            ws.expect_error("a join past the burst").await,
            ErrorCode::ServerBusy
        );
    }
    let stats = server.stats().await;
    assert_eq!(
        stats.peers, 3,
        "a refused join creates no member: {stats:?}"
    );
    assert_eq!(stats.drops.get("server_busy"), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_refuses_members_until_one_leaves() {
    // Two workers of one member each.
    let server = Server::start_with(&["--max-peers", "1"]);
    let mut a = RawWs::connect(&server).await;
    a.join("room-a", "a").await;
    let mut b = RawWs::connect(&server).await;
    b.join("room-b", "b").await;

    let mut c = RawWs::connect(&server).await;
    c.join_raw("room-a", "c").await;
    assert_eq!(
        c.expect_error("a second member of a's room").await,
        ErrorCode::ServerBusy
    );
    c.join_raw("room-c", "c").await;
    assert_eq!(c.expect_error("a new room").await, ErrorCode::ServerBusy);
    let stats = server.stats().await;
    assert_eq!((stats.rooms, stats.peers), (2, 2), "{stats:?}");
    assert_eq!(stats.drops.get("server_busy"), Some(&2));

    a.close().await;
    server
        .stats_until(Duration::from_secs(10), "a gone", |s| s.peers == 1)
        .await;
    c.join("room-c", "c").await;
    b.expect_alive("the other member").await;
}
