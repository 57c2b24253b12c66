//! SIGTERM and SIGINT stop the server cleanly with a call in progress: every member is told
//! (`serverStopping`), and the process exits 0 within a few seconds. As root, with the kernel
//! path on, no BPF program stays attached afterwards.

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
    let server = Server::start();
    stop_call(server, signal, room).await;
}

/// Starts a call in `room` on `server`, sends it `signal`, and checks the clean stop.
async fn stop_call(mut server: Server, signal: libc::c_int, room: &str) {
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

/// The BPF programs attached in namespace `ns` (`bpftool net show`: XDP, TC and TCX), one per
/// line.
fn bpf_attachments(ns: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "bpftool", "net", "show"])
        .output()
        .expect("running bpftool in the namespace");
    assert!(out.status.success(), "bpftool net show failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.ends_with(':'))
        .map(str::to_owned)
        .collect()
}

/// A network namespace with only its loopback up; removed on drop.
struct Namespace(String);

impl Namespace {
    fn new(name: String) -> Namespace {
        for args in [
            vec!["netns", "add", &name],
            vec!["-n", &name, "link", "set", "lo", "up"],
        ] {
            let status = std::process::Command::new("ip")
                .args(&args)
                .status()
                .expect("running ip");
            assert!(status.success(), "ip {args:?}");
        }
        Namespace(name)
    }

    /// Moves the calling thread into the namespace (processes it starts are in it too).
    fn enter(&self) {
        let file = std::fs::File::open(format!("/run/netns/{}", self.0)).expect("open netns");
        // SAFETY: setns on a valid namespace descriptor changes only the calling thread.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

#[test]
fn sigterm_detaches_the_kernel_path() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return eprintln!("\n!!! SKIPPED sigterm_detaches_the_kernel_path: needs root !!!\n");
    }
    if !xdp_forwarder::KERNEL_PATH_AVAILABLE {
        return eprintln!(
            "\n!!! SKIPPED sigterm_detaches_the_kernel_path: built without BPF programs !!!\n"
        );
    }
    // Its own namespace: the guard and fan-out on its loopback touch no other test's traffic.
    let ns = Namespace::new(format!("esfu-stop-{}", std::process::id()));
    let name = ns.0.clone();
    let attached = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter();
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async {
                    let server = Server::start_with(&["--kernel-interface", "lo"]);
                    let mut active = None;
                    until(Duration::from_secs(5), "the kernel path's log line", || {
                        let log = server.log_tail(200);
                        if log.contains("kernel path active") {
                            active = Some(true);
                        } else if log.contains("kernel path unavailable") {
                            active = Some(false);
                        }
                        active.is_some()
                    })
                    .await;
                    assert_eq!(
                        active,
                        Some(true),
                        "the kernel path did not come up on lo; output:\n{}",
                        server.log_tail(100)
                    );
                    let attached = bpf_attachments(&name);
                    stop_call(server, libc::SIGTERM, "kernel").await;
                    attached
                })
            })
            .join()
            .expect("the call in the namespace")
    });
    assert!(
        !attached.is_empty(),
        "bpftool showed no program while the server ran"
    );
    let left = bpf_attachments(&ns.0);
    assert!(left.is_empty(), "attached after the exit: {left:?}");
}
