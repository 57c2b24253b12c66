//! A real Redis for the cluster tests: Debian's `redis-server` (installed by `scripts/test`),
//! started on a free loopback port without persistence.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port, with no persistence; killed on drop.
pub struct Redis {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Redis {
    /// Starts one on `port` (0: a free one); `None` when the binary is not installed.
    pub fn start(port: u16) -> Option<Redis> {
        let port = match port {
            0 => TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port(),
            p => p,
        };
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("starting redis-server: {e}"),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis { child, port })
    }

    /// [`Redis::start`] on a free port, or `None` after a loud skip line when `redis-server` is
    /// not installed (the test then returns).
    pub fn start_or_skip() -> Option<Redis> {
        let redis = Redis::start(0);
        if redis.is_none() {
            eprintln!("SKIPPED: redis-server is not installed (scripts/test installs it)");
        }
        redis
    }

    /// Its `redis://` URL, for `--cluster`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `kill -9`, and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
