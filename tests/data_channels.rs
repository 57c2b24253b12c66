//! Any data channel through the real server, with str0m members (sfu-client): channels of any
//! label reach every other member with their options and sender, text and binary unchanged, and
//! close when their member leaves; past the channel and message size limits the sender gets an
//! `error` and `/api/stats` counts the drops.

mod support;

use std::time::Duration;

use sfu_client::{ChannelOptions, Client, ClientConfig, ClientEvent, ErrorCode, PeerId};
use support::{join_with, until, Server};

const WAIT: Duration = Duration::from_secs(15);

/// What one member saw of data channels.
#[derive(Default)]
struct Seen {
    /// label, sender (`None`: its own channel), options.
    opened: Vec<(String, Option<PeerId>, ChannelOptions)>,
    /// label, sender, binary, bytes.
    messages: Vec<(String, PeerId, bool, Vec<u8>)>,
    /// label, sender.
    closed: Vec<(String, Option<PeerId>)>,
    errors: Vec<ErrorCode>,
}

impl Seen {
    fn pump(&mut self, client: &mut Client) {
        while let Some(event) = client.try_next_event() {
            match event {
                ClientEvent::ChannelOpened {
                    label,
                    from,
                    options,
                } => self.opened.push((label, from, options)),
                ClientEvent::ChannelMessage {
                    label,
                    from,
                    binary,
                    data,
                } => self.messages.push((label, from, binary, data)),
                ClientEvent::ChannelClosed { label, from } => self.closed.push((label, from)),
                ClientEvent::ServerError { code, .. } => self.errors.push(code),
                _ => {}
            }
        }
    }

    fn has_open(&self, label: &str, from: Option<PeerId>) -> bool {
        self.opened.iter().any(|(l, f, _)| l == label && *f == from)
    }

    fn options_of(&self, label: &str, from: PeerId) -> Option<ChannelOptions> {
        let mut opened = self.opened.iter();
        let found = opened.find(|(l, f, _)| l == label && *f == Some(from));
        found.map(|(_, _, o)| *o)
    }

    fn received(&self, label: &str, from: PeerId) -> Vec<(bool, Vec<u8>)> {
        let on = self.messages.iter().filter(|m| m.0 == label && m.1 == from);
        on.map(|m| (m.2, m.3.clone())).collect()
    }
}

async fn member(server: &Server, room: &str, name: &str) -> Client {
    join_with(ClientConfig::new(server.ws_url(), room, name)).await
}

/// `client` opens `label` and waits until it may write on it.
async fn open(client: &mut Client, seen: &mut Seen, label: &str, options: ChannelOptions) {
    client.open_channel(label, options).await.expect("open");
    until(WAIT, &format!("{label} open"), || {
        seen.pump(client);
        seen.has_open(label, None)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_of_any_label_reach_the_other_members_as_sent() {
    let server = Server::start();
    let room = "channels";
    let mut ana = member(&server, room, "ana").await;
    let mut bob = member(&server, room, "bob").await;
    let mut cleo = member(&server, room, "cleo").await;
    let (mut sa, mut sb, mut sc) = (Seen::default(), Seen::default(), Seen::default());
    let a = ana.peer_id();

    let cursor = ChannelOptions {
        ordered: false,
        max_retransmits: Some(0),
    };
    open(&mut ana, &mut sa, "cursor", cursor).await;
    open(&mut ana, &mut sa, "game", ChannelOptions::default()).await;
    until(WAIT, "ana's relays at bob and cleo", || {
        sb.pump(&mut bob);
        sc.pump(&mut cleo);
        [&sb, &sc]
            .iter()
            .all(|s| s.has_open("cursor", Some(a)) && s.has_open("game", Some(a)))
    })
    .await;
    for s in [&sb, &sc] {
        assert_eq!(s.options_of("cursor", a), Some(cursor));
        assert_eq!(s.options_of("game", a), Some(ChannelOptions::default()));
    }

    ana.send_on_channel("cursor", br#"{"x":1,"y":2}"#.to_vec(), false)
        .await
        .expect("cursor");
    ana.send_on_channel("game", vec![0, 255, 7], true)
        .await
        .expect("binary");
    ana.send_on_channel("game", "tour 2 ✓".as_bytes().to_vec(), false)
        .await
        .expect("text");
    until(WAIT, "ana's messages at bob and cleo", || {
        sb.pump(&mut bob);
        sc.pump(&mut cleo);
        [&sb, &sc].iter().all(|s| s.messages.len() == 3)
    })
    .await;
    for s in [&sb, &sc] {
        assert_eq!(
            s.received("cursor", a),
            [(false, br#"{"x":1,"y":2}"#.to_vec())]
        );
        assert_eq!(
            s.received("game", a),
            [
                (true, vec![0, 255, 7]),
                (false, "tour 2 ✓".as_bytes().to_vec())
            ]
        );
    }
    sa.pump(&mut ana);
    assert!(sa.messages.is_empty(), "nothing echoed to the sender");

    // Ana leaves: the others' relays of her channels close.
    ana.leave().await;
    until(WAIT, "ana's relays closed", || {
        sb.pump(&mut bob);
        sc.pump(&mut cleo);
        [&sb, &sc].iter().all(|s| {
            s.closed.contains(&("cursor".into(), Some(a)))
                && s.closed.contains(&("game".into(), Some(a)))
        })
    })
    .await;
    assert!(sb.errors.is_empty() && sc.errors.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_limits_a_member_gets_an_error_and_the_drops_are_counted() {
    let server = Server::start();
    let room = "channel-limits";
    let mut ana = member(&server, room, "ana").await;
    let mut bob = member(&server, room, "bob").await;
    let (mut sa, mut sb) = (Seen::default(), Seen::default());
    let a = ana.peer_id();
    open(&mut ana, &mut sa, "game", ChannelOptions::default()).await;
    until(WAIT, "the relay at bob", || {
        sb.pump(&mut bob);
        sb.has_open("game", Some(a))
    })
    .await;

    // Sixteen channels besides chat: "game" and fifteen more pass, the seventeenth is closed.
    for i in 0..15 {
        open(
            &mut ana,
            &mut sa,
            &format!("c{i}"),
            ChannelOptions::default(),
        )
        .await;
    }
    ana.open_channel("one-too-many", ChannelOptions::default())
        .await
        .expect("open");
    until(WAIT, "too_many_channels", || {
        sa.pump(&mut ana);
        sa.errors.contains(&ErrorCode::TooManyChannels)
    })
    .await;

    // A message over 16 KiB.
    ana.send_on_channel("game", vec![1; 17 * 1024], true)
        .await
        .expect("a large message");
    until(WAIT, "too_large", || {
        sa.pump(&mut ana);
        sa.errors.contains(&ErrorCode::TooLarge)
    })
    .await;

    // The rate limits are checked in simulated time (sfu-core/tests/data_channels.rs): here how
    // fast messages reach the server depends on the machine's load.
    ana.send_on_channel("game", b"fits".to_vec(), false)
        .await
        .expect("a message within the limits");
    until(WAIT, "the message within the limits at bob", || {
        sb.pump(&mut bob);
        sb.received("game", a) == [(false, b"fits".to_vec())]
    })
    .await;
    let stats = server.stats().await;
    assert_eq!(stats.drops.get("channel_too_large"), Some(&1), "{stats:?}");
    assert_eq!(stats.drops.get("too_many_channels"), Some(&1), "{stats:?}");
}
