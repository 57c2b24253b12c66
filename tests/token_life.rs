//! A member's room token over its stay, against the real server: the member is warned
//! (`tokenExpiring`) before its token runs out and removed (`token_expired`) when it does; a
//! `refresh` with a fresh token of the same member keeps it in, one of another member is refused;
//! a token revoked by its `jti` (`POST /api/tokens/revoke`) removes its member and is refused at
//! join. Short-lived tokens are minted with `exp` in the past within the server's clock leeway,
//! so that they run out seconds after the join.

mod support;

use std::time::Duration;

use sfu_client::ErrorCode;
use sfu_core::protocol::{ClientMessage, ServerMessage};
use support::tokens::{join_msg, join_with_token as join, revoke, secret_file, token};
use support::{http, Next, RawWs, Server};

const WAIT: Duration = Duration::from_secs(10);

fn server(test: &str) -> Server {
    let secret = secret_file(test);
    Server::start_with(&["--auth-secret-file", secret.to_str().expect("a UTF-8 path")])
}

/// Reads until `pred` takes a message; panics on close or after [`WAIT`].
async fn expect(
    ws: &mut RawWs,
    what: &str,
    mut pred: impl FnMut(&ServerMessage) -> bool,
) -> ServerMessage {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match ws.next(left).await {
            Next::Msg(m) if pred(&m) => return m,
            Next::Msg(_) | Next::Other(_) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_warned_then_removed_when_its_token_runs_out() {
    let server = server("expiry");
    let (mut watcher, _) = join(&server, "expiry", token("expiry", "watcher", 3600, "w")).await;
    let (mut short, short_id) = join(&server, "expiry", token("expiry", "short", 4, "s")).await;

    // Less than the warning time is left at join: the warning comes at once.
    let warning = expect(&mut short, "tokenExpiring", |m| {
        matches!(m, ServerMessage::TokenExpiring { .. })
    })
    .await;
    let ServerMessage::TokenExpiring { seconds_left } = warning else {
        unreachable!()
    };
    assert!(seconds_left <= 4, "{seconds_left} s left of a 4 s token");

    let code = short.expect_error("removal at expiry").await;
    assert_eq!(code, ErrorCode::TokenExpired);
    expect(
        &mut watcher,
        "peerLeft of the expired member",
        |m| matches!(m, ServerMessage::PeerLeft { peer_id } if *peer_id == short_id),
    )
    .await;
    let stats = server
        .stats_until(WAIT, "one member left", |s| s.peers == 1)
        .await;
    assert_eq!(stats.drops.get("member_token_expired"), Some(&1));
    // The connection stays open: the client may join again with a valid token.
    short.expect_alive("after the removal").await;
    watcher.expect_alive("the other member").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_member_stays_and_a_foreign_token_is_refused() {
    let server = server("refresh");
    let (mut ana, _) = join(&server, "refresh", token("refresh", "ana", 5, "a1")).await;
    expect(&mut ana, "tokenExpiring", |m| {
        matches!(m, ServerMessage::TokenExpiring { .. })
    })
    .await;

    // Someone else's token, and one for another room, are refused; ana stays on her old token.
    for (foreign, what) in [
        (
            token("refresh", "bob", 3600, "b1"),
            "another member's token",
        ),
        (
            token("elsewhere", "ana", 3600, "a2"),
            "another room's token",
        ),
    ] {
        ana.send(&ClientMessage::Refresh { token: foreign })
            .await
            .expect("sending refresh");
        assert_eq!(ana.expect_error(what).await, ErrorCode::BadToken, "{what}");
    }
    ana.send(&ClientMessage::Refresh {
        token: "not a jwt".into(),
    })
    .await
    .expect("sending refresh");
    assert_eq!(ana.expect_error("garbage").await, ErrorCode::BadToken);

    ana.send(&ClientMessage::Refresh {
        token: token("refresh", "ana", 3600, "a3"),
    })
    .await
    .expect("sending refresh");
    let refreshed = expect(&mut ana, "tokenRefreshed", |m| {
        matches!(m, ServerMessage::TokenRefreshed { .. })
    })
    .await;
    assert!(
        matches!(refreshed, ServerMessage::TokenRefreshed { seconds_left } if seconds_left > 3000)
    );

    // Past the old token's end, ana is still in the room.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stats = server.stats().await;
    assert_eq!(stats.peers, 1, "{stats:?}");
    assert_eq!(stats.drops.get("member_token_expired"), None);
    assert_eq!(stats.drops.get("refresh_refused"), Some(&3));
    ana.expect_alive("after the old token's end").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_removes_its_member_and_cannot_join() {
    let server = server("revoke");
    let revoked = token("revoke", "eve", 3600, "eve-1");
    let (mut eve, eve_id) = join(&server, "revoke", revoked.clone()).await;
    let (mut ana, _) = join(&server, "revoke", token("revoke", "ana", 3600, "ana-1")).await;

    revoke(&server, "eve-1").await;

    assert_eq!(
        eve.expect_error("revocation").await,
        ErrorCode::TokenRevoked
    );
    expect(
        &mut ana,
        "peerLeft of the revoked member",
        |m| matches!(m, ServerMessage::PeerLeft { peer_id } if *peer_id == eve_id),
    )
    .await;
    // The same token cannot join again, on this connection or a new one.
    eve.send(&join_msg("revoke", revoked.clone()))
        .await
        .expect("sending join");
    assert_eq!(
        eve.expect_error("join again").await,
        ErrorCode::TokenRevoked
    );
    let mut again = RawWs::connect(&server).await;
    again
        .send(&join_msg("revoke", revoked))
        .await
        .expect("sending join");
    assert_eq!(
        again.expect_error("join anew").await,
        ErrorCode::TokenRevoked
    );

    let stats = server
        .stats_until(WAIT, "only ana left", |s| s.peers == 1)
        .await;
    assert_eq!(stats.drops.get("member_token_revoked"), Some(&1));
    assert_eq!(stats.drops.get("token_revoked"), Some(&2));
    ana.expect_alive("the member whose token stands").await;

    let (status, _) = http(
        server.addr,
        "POST",
        "/api/tokens/revoke",
        Some(r#"{"jti": ""}"#),
    )
    .await
    .expect("POST /api/tokens/revoke");
    assert_eq!(status, 400, "an empty jti");
}
