//! Chat: a line written on one member's `chat` data channel reaches every other member with the
//! sender's id and name filled in by the SFU, is not echoed to the sender, and cannot claim to come
//! from someone else; `chat` on the WebSocket reaches the others too.

mod support;

use std::time::Duration;

use sfu_client::{ChatVia, ClientConfig, ErrorCode};
use support::{join, join_with, until, Seen, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reaches_every_other_member_with_the_senders_identity() {
    let server = Server::start();
    let room = "chat";
    let mut alice = join(&server, room, "alice", false, false).await;
    let mut bob = join(&server, room, "bob", false, false).await;
    let mut carol = join(&server, room, "carol", true, false).await;
    // Dave has no data channel: the SFU must relay to him over the WebSocket.
    let mut dave = join_with(
        ClientConfig::new(server.ws_url(), room, "dave")
            .audio(true)
            .data_channel(false),
    )
    .await;
    let (a_id, b_id, c_id) = (alice.peer_id(), bob.peer_id(), carol.peer_id());
    let (mut sa, mut sb, mut sc, mut sd) = (
        Seen::default(),
        Seen::default(),
        Seen::default(),
        Seen::default(),
    );

    let has = |s: &Seen, from, name: &str, text: &str| {
        s.chats
            .iter()
            .any(|(f, n, t, _)| *f == from && n == name && t == text)
    };

    // 1. Over alice's data channel.
    alice
        .send_chat("hello from alice")
        .await
        .expect("alice's chat");
    until(
        Duration::from_secs(10),
        "alice's line at bob and carol",
        || {
            sb.pump(&mut bob);
            sc.pump(&mut carol);
            has(&sb, a_id, "alice", "hello from alice")
                && has(&sc, a_id, "alice", "hello from alice")
        },
    )
    .await;
    // Every member's channel is open, so the SFU relays on the data channel.
    for s in [&sb, &sc] {
        let via = s
            .chats
            .iter()
            .find(|c| c.2 == "hello from alice")
            .map(|c| c.3);
        assert_eq!(via, Some(ChatVia::DataChannel));
    }

    // 2. Bob claims to be alice in the JSON he writes; the SFU must not believe him: the line is
    //    either dropped or relayed under bob's identity. A normal line from bob follows as a marker.
    let spoof = format!(r#"{{"text":"i am alice","from":{a_id},"name":"alice"}}"#);
    bob.send_channel_raw(spoof.into_bytes(), false)
        .await
        .expect("bob's spoofed line");
    bob.send_chat("bob here").await.expect("bob's chat");
    until(
        Duration::from_secs(10),
        "bob's line at alice and carol",
        || {
            sa.pump(&mut alice);
            sc.pump(&mut carol);
            has(&sa, b_id, "bob", "bob here") && has(&sc, b_id, "bob", "bob here")
        },
    )
    .await;
    for (who, s) in [("alice", &sa), ("carol", &sc)] {
        for (from, name, text, _) in &s.chats {
            if text == "i am alice" {
                assert_eq!(
                    (*from, name.as_str()),
                    (b_id, "bob"),
                    "{who} got bob's line under another identity"
                );
            }
        }
    }

    // 3. Over the WebSocket.
    carol
        .send_chat_ws("carol over the websocket")
        .await
        .expect("carol's ws chat");
    until(
        Duration::from_secs(10),
        "carol's line at alice and bob",
        || {
            sa.pump(&mut alice);
            sb.pump(&mut bob);
            has(&sa, c_id, "carol", "carol over the websocket")
                && has(&sb, c_id, "carol", "carol over the websocket")
        },
    )
    .await;

    // Nobody got their own lines back (every later line has been seen by then).
    sc.pump(&mut carol);
    sb.pump(&mut bob);
    sa.pump(&mut alice);
    assert!(
        !sa.chats.iter().any(|c| c.0 == a_id),
        "alice got her own line: {:?}",
        sa.chats
    );
    assert!(
        !sb.chats.iter().any(|c| c.0 == b_id),
        "bob got his own line: {:?}",
        sb.chats
    );
    assert!(
        !sc.chats.iter().any(|c| c.0 == c_id),
        "carol got her own line: {:?}",
        sc.chats
    );

    // 4. A line over the limit (2000 characters) is refused with bad_message.
    carol
        .send_chat_ws("x".repeat(2001))
        .await
        .expect("carol's long line");
    until(
        Duration::from_secs(10),
        "bad_message for the long line",
        || {
            sc.pump(&mut carol);
            sc.server_errors
                .iter()
                .any(|(code, _)| *code == ErrorCode::BadMessage)
        },
    )
    .await;
    carol
        .send_chat("after the long line")
        .await
        .expect("carol's chat");
    until(
        Duration::from_secs(10),
        "carol's next line at alice",
        || {
            sa.pump(&mut alice);
            has(&sa, c_id, "carol", "after the long line")
        },
    )
    .await;
    assert!(
        !sa.chats.iter().any(|c| c.2.len() > 2000),
        "the long line was relayed"
    );

    for s in [&sa, &sb, &sc] {
        assert!(s.errors.is_empty(), "client errors: {:?}", s.errors);
    }
    sd.pump(&mut dave);
    assert!(sd.errors.is_empty(), "client errors: {:?}", sd.errors);
    alice.leave().await;
    bob.leave().await;
    carol.leave().await;
    dave.leave().await;
    server.until_empty(Duration::from_secs(10)).await;
}
