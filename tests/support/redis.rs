//! A real Redis for the cluster tests: Debian's `redis-server` (installed by `scripts/test`),
//! started on a free loopback port, or inside a test's network namespace, without persistence.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` with no persistence; killed on drop.
pub struct Redis {
    child: Child,
    /// The address it listens on.
    host: IpAddr,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// Starts one on `port` (0: a free one) of 127.0.0.1; `None` when the binary is not
    /// installed.
    pub fn start(port: u16) -> Option<Redis> {
        let port = match port {
            0 => TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port(),
            p => p,
        };
        Redis::spawn(
            Command::new("redis-server"),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }

    /// Starts one on `addr` inside network namespace `ns` (which the test created, so any port
    /// is free there); the caller's thread must be able to reach `addr` (be in a namespace
    /// joined to `ns`). `None` when the binary is not installed.
    pub fn start_in(ns: &str, addr: SocketAddr) -> Option<Redis> {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, "redis-server"]);
        Redis::spawn(command, addr)
    }

    /// Runs `command` (which starts `redis-server`) with the options of a test Redis listening on
    /// `addr`, and waits until it accepts connections.
    fn spawn(mut command: Command, addr: SocketAddr) -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            return None;
        }
        let child = command
            .args(["--port", &addr.port().to_string()])
            .args(["--bind", &addr.ip().to_string()])
            .args(["--save", "", "--appendonly", "no"])
            // Protected mode refuses clients from other addresses without a password; this one
            // listens on loopback or on an address inside the test's own namespaces.
            .args(["--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis {
            child,
            host: addr.ip(),
            port: addr.port(),
        })
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
        format!("redis://{}", SocketAddr::new(self.host, self.port))
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
