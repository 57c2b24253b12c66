//! SIGTERM and SIGINT stop the server cleanly with a call in progress: every member is told
//! (`serverStopping`), and the process exits 0 within a few seconds.

mod support;

use std::time::Duration;

use sfu_client::{Client, ClientEvent};
use support::{join, until, wait_tracks_of, Server};

/// How long the process may take to exit after the signal (the drain and worker stop take at
/// most 2 s each; a clean stop takes a fraction of that).
const EXIT_LIMIT: Duration = Duration::from_secs(8);

/// Two members in a call, each receiving the other's audio.
async fn call(server: &Server, room: &str) -> (Client, Client) {
    let ana = join(server, room, "ana", true, false).await;
    let bob = join(server, room, "bob", true, false).await;
    wait_tracks_of(&ana, bob.peer_id(), 1).await;
    wait_tracks_of(&bob, ana.peer_id(), 1).await;
    let audio = ana.audio_track().expect("ana publishes audio");
    let ana_track = bob.status().remote_tracks[0].track_id.clone();
    // Media flows: bob gets ana's packets before the signal.
    let mut got = false;
    for n in 0..100 {
        ana.send_rtp(audio, format!("before stop {n}").into_bytes(), true)
            .await
            .expect("sending audio");
        tokio::time::sleep(Duration::from_millis(20)).await;
        if bob.counters().rtp_received > 0 {
            got = true;
            break;
        }
    }
    assert!(got, "bob received none of ana's audio ({ana_track})");
    (ana, bob)
}

async fn stops_cleanly_on(signal: libc::c_int, room: &str) {
    let mut server = Server::start();
    let (mut ana, mut bob) = call(&server, room).await;

    // SAFETY: kill(2) on the pid of a child this test started and still holds.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());

    let (mut ana_told, mut bob_told) = (false, false);
    until(
        Duration::from_secs(5),
        "serverStopping at both members",
        || {
            for (client, told) in [(&mut ana, &mut ana_told), (&mut bob, &mut bob_told)] {
                while let Some(event) = client.try_next_event() {
                    if matches!(event, ClientEvent::ServerStopping) {
                        *told = true;
                    }
                }
            }
            ana_told && bob_told
        },
    )
    .await;
    let status = tokio::task::block_in_place(|| server.wait_exit(EXIT_LIMIT))
        .unwrap_or_else(|| panic!("edge-sfu still runs {EXIT_LIMIT:?} after the signal"));
    assert!(
        status.success(),
        "edge-sfu exited with {status}; output:\n{}",
        server.log_tail(100)
    );
    let log = server.log_tail(400);
    assert!(
        log.contains("every client told, every room emptied"),
        "the workers were not stopped through the shutdown path; output:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_every_member_and_exits_zero() {
    stops_cleanly_on(libc::SIGTERM, "sigterm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_tells_every_member_and_exits_zero() {
    stops_cleanly_on(libc::SIGINT, "sigint").await;
}
