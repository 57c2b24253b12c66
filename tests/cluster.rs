//! Regional nodes (`--cluster`): three real edge-sfu processes share a real Redis (Debian's
//! `redis-server`, started here on a free loopback port without persistence) and one room, with
//! str0m participants spread over them. Membership lists agree across nodes, chat crosses nodes,
//! a `kill -9`ed node's members leave the others' rooms within its TTL, a Redis restart
//! mid-call loses nobody and a member who joins after it sees everyone, and a drained node sends
//! its members to another node and exits 0. Media crosses nodes on trunks: every packet reaches
//! every far subscriber byte-identical and gap-free, each track crosses each trunk once whatever
//! the far node's subscriber count, and media keeps crossing while Redis is down and between the
//! survivors of a `kill -9`. Two nodes that both run `--trunk plain` carry plain RTP between
//! them, and SRTP to a node that does not. A room token revoked on one node is refused on every
//! node, one started later included.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sfu_client::{Client, ClientEvent, ErrorCode, PeerId};
use support::media::{measured_run, warm_up, MEASURED_PACKETS as N};
use support::redis::Redis;
use support::tokens::{join_msg, join_with_token, revoke, secret_file, token};
use support::{http, http_get, join, until, wait_tracks_of, RawWs, Seen, Server};

/// The nodes' TTL: short, so a dead node is noticed within seconds.
const TTL_SECONDS: &str = "2";

/// A node `id` of the cluster at `redis`.
fn node(redis: &str, id: &str) -> Server {
    node_with(redis, id, &[])
}

/// [`node`] with `extra` flags.
fn node_with(redis: &str, id: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "--cluster",
        redis,
        "--node-id",
        id,
        "--cluster-ttl",
        TTL_SECONDS,
        "--drain-timeout",
        "20",
    ];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

/// What one participant learned of the room: who is in it (from `joined` and the later
/// `peerJoined`/`peerLeft`), chat lines, and where it was told to reconnect.
#[derive(Default)]
struct View {
    members: BTreeSet<PeerId>,
    left: Vec<PeerId>,
    chats: Vec<(PeerId, String)>,
    reconnect: Option<String>,
}

impl View {
    fn of(client: &Client) -> View {
        View {
            members: client.initial_peers().iter().map(|p| p.id).collect(),
            ..View::default()
        }
    }

    fn pump(&mut self, client: &mut Client) {
        while let Some(event) = client.try_next_event() {
            match event {
                ClientEvent::PeerJoined(p) => {
                    self.members.insert(p.id);
                }
                ClientEvent::PeerLeft(id) => {
                    self.members.remove(&id);
                    self.left.push(id);
                }
                ClientEvent::Chat { from, text, .. } => self.chats.push((from, text)),
                ClientEvent::Reconnect { url } => self.reconnect = Some(url),
                _ => {}
            }
        }
    }
}

/// `GET /api/cluster` of the node at `addr`, parsed.
async fn cluster_listing(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = http_get(addr, "/api/cluster")
        .await
        .expect("GET /api/cluster");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn kill_9(server: &Server) {
    // SAFETY: kill(2) on the pid of a child this test started and still holds.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_room_across_three_nodes_survives_a_dead_node_a_redis_restart_and_a_drain() {
    let Some(mut redis) = Redis::start_or_skip() else {
        return;
    };
    let url = redis.url();
    let a = node(&url, "a");
    let mut b = node(&url, "b");
    let c = node(&url, "c");
    let room = "kitchen";

    // Membership: each sees the other two, whichever node they are on.
    let mut alice = join(&a, room, "alice", true, false).await;
    let mut bob = join(&b, room, "bob", false, false).await;
    let mut carol = join(&c, room, "carol", false, false).await;
    let (ia, ib, ic) = (alice.peer_id(), bob.peer_id(), carol.peer_id());
    assert!(
        ia != ib && ib != ic && ia != ic,
        "peer ids are unique across nodes"
    );
    let (mut va, mut vb, mut vc) = (View::of(&alice), View::of(&bob), View::of(&carol));
    until(
        Duration::from_secs(10),
        "every member listing the other two",
        || {
            va.pump(&mut alice);
            vb.pump(&mut bob);
            vc.pump(&mut carol);
            va.members == BTreeSet::from([ib, ic])
                && vb.members == BTreeSet::from([ia, ic])
                && vc.members == BTreeSet::from([ia, ib])
        },
    )
    .await;

    // Chat crosses nodes (carol has no other member on her node).
    carol.send_chat("hello from c").await.expect("carol's chat");
    until(Duration::from_secs(10), "carol's line on a and b", || {
        va.pump(&mut alice);
        vb.pump(&mut bob);
        let has = |v: &View| v.chats.iter().any(|(f, t)| *f == ic && t == "hello from c");
        has(&va) && has(&vb)
    })
    .await;

    // /api/cluster on any node lists the three with their load (as of its next heartbeat).
    let mut ids = Vec::new();
    for _ in 0..100 {
        let listing = cluster_listing(a.addr).await;
        ids = listing["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        if ids == ["a", "b", "c"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ids, ["a", "b", "c"]);

    // kill -9 of node c: a and b drop carol within the TTL and a few seconds.
    kill_9(&c);
    let killed = Instant::now();
    until(
        Duration::from_secs(10),
        "carol's peerLeft on a and b",
        || {
            va.pump(&mut alice);
            vb.pump(&mut bob);
            va.left.contains(&ic) && vb.left.contains(&ic)
        },
    )
    .await;
    eprintln!("dead node noticed after {:?}", killed.elapsed());
    drop(carol);

    // Redis restarted mid-call: nobody leaves, and after it returns a new member on b sees
    // everyone and is seen by everyone.
    let port = redis.port;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _redis = Redis::start(port).expect("redis-server again");
    let mut dave = join(&b, room, "dave", false, false).await;
    let id_d = dave.peer_id();
    let mut vd = View::of(&dave);
    until(
        Duration::from_secs(15),
        "dave (joined after the restart) and the others seeing each other",
        || {
            va.pump(&mut alice);
            vb.pump(&mut bob);
            vd.pump(&mut dave);
            vd.members == BTreeSet::from([ia, ib]) && va.members.contains(&id_d)
        },
    )
    .await;
    assert!(
        !va.left.contains(&ib) && !vb.left.contains(&ia),
        "nobody left while Redis was away"
    );

    // Drain b: its members are told to reconnect to a, then leave; b exits 0.
    let (status, body) = http(b.addr, "POST", "/api/drain", None)
        .await
        .expect("POST /api/drain");
    assert_eq!(status, 200, "{body}");
    let a_url = format!("http://{}", a.addr);
    until(
        Duration::from_secs(10),
        "bob and dave told to reconnect to a",
        || {
            vb.pump(&mut bob);
            vd.pump(&mut dave);
            vb.reconnect.as_deref() == Some(a_url.as_str())
                && vd.reconnect.as_deref() == Some(a_url.as_str())
        },
    )
    .await;
    bob.leave().await;
    dave.leave().await;
    let status = b.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "the drained node exits 0 once empty: {status:?}\n{}",
        b.log_tail(40)
    );
    until(
        Duration::from_secs(10),
        "bob and dave gone from alice's room",
        || {
            va.pump(&mut alice);
            va.members.is_empty()
        },
    )
    .await;

    // SIGTERM drains too: a keeps serving (its record says it drains) until alice leaves, then
    // exits 0.
    let mut a = a;
    // SAFETY: kill(2) on the pid of a child this test started and still holds.
    let rc = unsafe { libc::kill(a.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    let mut draining = false;
    for _ in 0..100 {
        let listing = cluster_listing(a.addr).await;
        draining = listing["nodes"].as_array().is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["id"] == "a" && n["draining"] == true)
        });
        if draining {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(draining, "SIGTERM made a drain\n{}", a.log_tail(20));
    alice.leave().await;
    let status = a.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "a exits 0 once empty: {status:?}\n{}",
        a.log_tail(40)
    );
}

/// Packets per track in the measured runs of the media test.
/// The trunk counters of the node at `server` towards the node whose id is `far`.
async fn trunk_towards(server: &Server, far: &str) -> serde_json::Value {
    let stats = server.stats().await;
    let trunks = stats.raw["trunks"].as_array().cloned().unwrap_or_default();
    let towards: Vec<_> = trunks
        .into_iter()
        .filter(|t| {
            t["node"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("{far}/")))
        })
        .collect();
    assert_eq!(towards.len(), 1, "one trunk towards {far}: {towards:?}");
    towards[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_crosses_each_trunk_once_and_survives_redis_going_away_and_a_dead_node() {
    let Some(mut redis) = Redis::start_or_skip() else {
        return;
    };
    let url = redis.url();
    let (a, b, c) = (node(&url, "a"), node(&url, "b"), node(&url, "c"));
    let room = "kitchen";
    let alice_rx = join(&a, room, "alice", true, true).await;
    let bob1 = join(&b, room, "bob1", false, false).await;
    let bob2 = join(&b, room, "bob2", false, false).await;
    let carol = join(&c, room, "carol", true, false).await;
    let (ia, ic) = (alice_rx.peer_id(), carol.peer_id());
    for viewer in [&bob1, &bob2, &carol] {
        wait_tracks_of(viewer, ia, 2).await;
    }
    wait_tracks_of(&alice_rx, ic, 1).await;

    // bob1, bob2 and carol watch alice; alice watches carol.
    let mut viewers: Vec<(Client, Seen)> = [bob1, bob2, carol]
        .into_iter()
        .map(|client| (client, Seen::default()))
        .collect();
    let mut alice = [(alice_rx, Seen::default())];
    let warm = warm_up(&alice[0].0, &mut viewers).await;
    warm_up(&viewers[2].0, &mut alice).await;
    let alice = &alice[0].0;

    measured_run("one", alice, &mut viewers).await;
    let sent_by_alice = 2 * (warm + N) as u64;
    let to_b = trunk_towards(&a, "b").await;
    let from_a = trunk_towards(&b, "a").await;
    let crossed = to_b["packetsOut"].as_u64().unwrap_or_default();
    assert!(
        crossed >= 2 * N as u64 && crossed <= sent_by_alice,
        "each of alice's packets crossed to b once, not once per viewer there: {crossed} of \
         {sent_by_alice} sent\n{to_b}"
    );
    assert_eq!(from_a["packetsIn"], to_b["packetsOut"], "{from_a}");
    assert_eq!(from_a["tracksIn"], 2, "{from_a}");
    let to_c = trunk_towards(&a, "c").await;
    assert!(to_c["packetsOut"].as_u64().unwrap_or_default() <= sent_by_alice);
    let carol_to_a = trunk_towards(&c, "a").await;
    assert!(
        carol_to_a["packetsOut"].as_u64().unwrap_or_default() > 0,
        "{carol_to_a}"
    );

    eprintln!("after run one, a towards b: {to_b}\nb from a: {from_a}\na towards c: {to_c}");

    // Redis goes away mid-call: the trunks do not need it, media keeps crossing.
    let port = redis.port;
    redis.kill();
    measured_run("without-redis", alice, &mut viewers).await;
    let redis = Redis::start(port).expect("redis-server again");

    // kill -9 of node c: media between a and b never stops.
    kill_9(&c);
    let killed = Instant::now();
    // Only b's viewers: carol's node is gone.
    measured_run("two", alice, &mut viewers[..2]).await;
    // Its trunks go silent and close (15 s without a datagram); the one to b stays.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = a.stats().await;
        let ends: Vec<String> = stats.raw["trunks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["node"].as_str().map(str::to_owned))
            .collect();
        if ends.iter().all(|e| !e.starts_with("c/")) {
            assert!(ends.iter().any(|e| e.starts_with("b/")), "{ends:?}");
            eprintln!(
                "a's trunk to c closed {:?} after the kill",
                killed.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a's trunk to c still open: {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_node_is_refused_on_every_node() {
    let Some(redis) = Redis::start_or_skip() else {
        return;
    };
    let url = redis.url();
    let secret = secret_file("cluster-revoke");
    let auth = ["--auth-secret-file", secret.to_str().expect("a UTF-8 path")];
    let (a, b) = (node_with(&url, "a", &auth), node_with(&url, "b", &auth));
    let room = "revoked";
    let revoked = token(room, "eve", 3600, "eve-1");
    let (mut eve, _) = join_with_token(&b, room, revoked.clone()).await;
    let (mut ana, _) = join_with_token(&b, room, token(room, "ana", 3600, "ana-1")).await;

    revoke(&a, "eve-1").await;
    assert_eq!(
        eve.expect_error("revocation made on node a").await,
        ErrorCode::TokenRevoked,
        "b removed the member whose token a revoked"
    );
    ana.expect_alive("the member whose token stands").await;

    // A node started after the revocation reads it from the directory when it connects.
    let c = node_with(&url, "c", &auth);
    let mut connected = false;
    for _ in 0..100 {
        connected = cluster_listing(c.addr).await["connected"] == true;
        if connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        connected,
        "c connected to the directory\n{}",
        c.log_tail(20)
    );
    let mut late = RawWs::connect(&c).await;
    late.send(&join_msg(room, revoked))
        .await
        .expect("sending join");
    assert_eq!(
        late.expect_error("join on a node started later").await,
        ErrorCode::TokenRevoked
    );
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunks_between_nodes_that_both_run_trunk_plain_carry_plain_rtp() {
    let Some(redis) = Redis::start_or_skip() else {
        return;
    };
    let url = redis.url();
    let plain = ["--trunk", "plain"];
    let (a, b, c) = (
        node_with(&url, "a", &plain),
        node_with(&url, "b", &plain),
        node(&url, "c"),
    );
    let room = "kitchen";
    let alice = join(&a, room, "alice", true, true).await;
    let bob = join(&b, room, "bob", false, false).await;
    let carol = join(&c, room, "carol", false, false).await;
    for viewer in [&bob, &carol] {
        wait_tracks_of(viewer, alice.peer_id(), 2).await;
    }
    let mut viewers = vec![(bob, Seen::default()), (carol, Seen::default())];
    let warm = warm_up(&alice, &mut viewers).await;
    measured_run("plain", &alice, &mut viewers).await;
    let to_b = trunk_towards(&a, "b").await;
    let from_a = trunk_towards(&b, "a").await;
    assert_eq!(
        (to_b["media"].as_str(), from_a["media"].as_str()),
        (Some("plain"), Some("plain"))
    );
    let crossed = to_b["packetsOut"].as_u64().unwrap_or_default();
    assert!(
        crossed >= 2 * N as u64 && crossed <= 2 * (warm + N) as u64,
        "each packet crossed once: {to_b}"
    );
    assert_eq!(from_a["packetsIn"], to_b["packetsOut"], "{from_a}");
    let to_c = trunk_towards(&a, "c").await;
    assert_eq!(
        to_c["media"], "srtp",
        "c does not run --trunk plain: {to_c}"
    );
    drop(redis);
}
