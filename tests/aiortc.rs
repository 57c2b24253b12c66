//! aiortc, a WebRTC stack we did not write, as a room member over the WebSocket protocol exactly as
//! docs/protocol.md documents it (tests/aiortc/member.py): two aiortc members join the real
//! server, publish a microphone and a camera (VP8, then H.264, forced by codec preferences),
//! answer the SFU's offers, decode each other's video at the published size and each other's
//! Opus, exchange text and binary messages on a data channel the SFU relays (aiortc's own SCTP),
//! and leave; the one that stays sees the departure and answers the offer that stops its
//! m-lines. The Python comes from `target/aiortc-venv` (scripts/test installs it) or
//! `AIORTC_PYTHON`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use support::Server;

/// Time for a member to connect and decode its frames (aiortc encodes and decodes in Python).
const MEDIA_WAIT: Duration = Duration::from_secs(60);
/// Time for a signaling step: a departure, an offer answered, an exit.
const STEP_WAIT: Duration = Duration::from_secs(20);

/// The interpreter that has aiortc and websockets.
fn python() -> PathBuf {
    let path = std::env::var_os("AIORTC_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/aiortc-venv/bin/python3"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: scripts/test installs aiortc and websockets into target/aiortc-venv \
         (or set AIORTC_PYTHON to an interpreter that has them)",
        path.display()
    );
    path
}

/// One aiortc member (member.py with `--hold`): its output lines arrive on `lines`; closing its
/// standard input makes it leave.
struct AiortcMember {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl AiortcMember {
    fn join(server: &Server, room: &str, name: &'static str, codec: &str) -> AiortcMember {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/aiortc/member.py");
        let mut child = Command::new(python())
            .arg(script)
            .args([&server.ws_url(), room, name, "--codec", codec])
            .args(["--frames", "30", "--seconds", "50", "--loopback", "--hold"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the aiortc member");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for pipe in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        AiortcMember {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for an output line starting with `prefix`; panics with everything it printed when
    /// it prints `FAILED` or nothing like it within `timeout`.
    fn expect_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    assert!(
                        !line.starts_with("FAILED"),
                        "{} failed:\n{}",
                        self.name,
                        self.seen.join("\n")
                    );
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "{} printed no `{prefix}` line within {timeout:?}:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Closes its standard input (it leaves) and waits for it to exit.
    fn leave(&mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.expect_line("left", STEP_WAIT);
        let deadline = Instant::now() + STEP_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for aiortc") {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The lines it printed that start with `prefix`.
    fn printed(&self, prefix: &str) -> Vec<&String> {
        self.seen.iter().filter(|l| l.starts_with(prefix)).collect()
    }
}

impl Drop for AiortcMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two aiortc members publishing with `codec` exchange media, and one leaves before the other.
async fn two_members_exchange_media(codec: &str) {
    let server = Server::start();
    let room = format!("aiortc-{codec}");
    let mut ana = AiortcMember::join(&server, &room, "ana", codec);
    let mut bob = AiortcMember::join(&server, &room, "bob", codec);

    // Each decoded 30 frames of the other's camera at its size, and its Opus, in `codec` (the
    // script checks the codecs of what arrived and of the SFU's answer to its offer), and got the
    // other's greetings on the relay of its `game` channel (label and sender checked).
    for member in [&mut ana, &mut bob] {
        member.expect_line("enough", MEDIA_WAIT);
        let wanted = format!("video/{}", codec.to_uppercase());
        let from = member.printed("from ");
        assert!(
            from.len() == 1
                && from[0].contains("320x240")
                && from[0].contains(&wanted)
                && from[0].contains("greetings binary, text"),
            "{}: {from:?}",
            member.name
        );
    }

    // Ana leaves: bob hears it and answers the SFU's offer that stops her m-lines.
    assert!(ana.leave().success(), "ana: {:?}", ana.seen);
    bob.expect_line("peer left: ana", STEP_WAIT);
    let answered = bob.expect_line("answered offer", STEP_WAIT);
    assert!(answered.ends_with("(0 tracks)"), "{answered}");
    assert!(bob.leave().success(), "bob: {:?}", bob.seen);
    server.until_empty(STEP_WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_members_exchange_vp8_and_opus() {
    two_members_exchange_media("vp8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_members_exchange_h264_and_opus() {
    two_members_exchange_media("h264").await;
}
