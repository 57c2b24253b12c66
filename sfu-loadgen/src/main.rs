//! `edge-sfu-loadgen`: runs load scenarios against edge-sfu (or the plain UDP reflector) and
//! prints what it measured. See `--help`, and `docs/benchmarks.md` in the repository.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use sfu_loadgen::find_max::{self, FindMax, HalfLoad, Ladder, Limits, Step, ROOM_CAPACITY};
use sfu_loadgen::procfs;
use sfu_loadgen::scenario::PRESETS;
use sfu_loadgen::{Report, RunOptions, Scenario, Target};

/// Load generator for edge-sfu: simulated WebRTC participants (real signaling, ICE, DTLS-SRTP,
/// RTCP) in rooms of publishers and subscribers; or plain UDP against a reflector, for the kernel's
/// ceiling on the same box.
#[derive(Debug, Parser)]
#[command(name = "edge-sfu-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a scenario and print the report (exit status 2 when a join failed).
    Run(Box<RunArgs>),
    /// Serve as the plain UDP reflector (recvmmsg/sendmmsg, no crypto): the kernel ceiling.
    Reflector {
        /// UDP address to listen on (IPv4).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Exit after this many seconds without any datagram.
        #[arg(long, default_value_t = 60)]
        idle_exit_s: u64,
    },
    /// List the named presets.
    Presets,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A running edge-sfu: http://IP:PORT/ (or ws://IP:PORT/ws).
    #[arg(long, value_name = "URL", conflicts_with_all = ["spawn_sfu", "reflector", "spawn_reflector"])]
    url: Option<String>,
    /// Start edge-sfu for the run (on loopback) and measure its process.
    #[arg(long)]
    spawn_sfu: bool,
    /// The edge-sfu binary for --spawn-sfu [default: `edge-sfu` beside this binary].
    #[arg(long, value_name = "PATH")]
    sfu_bin: Option<PathBuf>,
    /// Extra argument for the spawned edge-sfu (repeatable), e.g. --sfu-arg=--io --sfu-arg=sendmmsg.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    sfu_arg: Vec<String>,
    /// Media workers of the spawned edge-sfu [default: 1 when pinned, else edge-sfu's default].
    #[arg(long, value_name = "N")]
    sfu_workers: Option<usize>,
    /// Process id of the edge-sfu given by --url, when it runs on this machine (CPU and RSS).
    #[arg(long, value_name = "PID")]
    sfu_pid: Option<u32>,
    /// Another edge-sfu node of the same cluster (`--cluster`) as --url: every second
    /// receive-only participant joins there, so its media crosses the trunk between the nodes.
    #[arg(long, value_name = "URL", requires = "url")]
    split_url: Option<String>,
    /// A running reflector (`edge-sfu-loadgen reflector`) at this UDP address.
    #[arg(long, value_name = "ADDR", conflicts_with = "spawn_reflector")]
    reflector: Option<SocketAddr>,
    /// Start the reflector for the run and measure its process.
    #[arg(long)]
    spawn_reflector: bool,
    /// A running Janus (videoroom plugin, WebSocket transport): ws://IP:PORT/.
    #[arg(long, value_name = "URL", conflicts_with = "spawn_janus")]
    janus: Option<String>,
    /// Process id of the Janus given by --janus (CPU and RSS).
    #[arg(long, value_name = "PID")]
    janus_pid: Option<u32>,
    /// Start Janus for the run, with a minimal configuration in a temporary folder.
    #[arg(long)]
    spawn_janus: bool,
    /// The janus binary for --spawn-janus.
    #[arg(long, value_name = "PATH", default_value = "janus")]
    janus_bin: PathBuf,
    /// WebSocket port of the spawned Janus (on 127.0.0.1).
    #[arg(long, value_name = "PORT", default_value_t = 8188)]
    janus_port: u16,
    /// The only interface the spawned Janus gathers ICE candidates on (it skips loopback, so
    /// scripts/bench gives it a veth in a network namespace).
    #[arg(long, value_name = "IFACE", default_value = "esfu0")]
    janus_iface: String,
    /// The IP the participants' media sockets bind when talking to Janus (not loopback).
    #[arg(long, value_name = "IP", default_value = "10.201.0.2")]
    janus_bind: std::net::IpAddr,
    /// A running mediasoup baseline server (sfu-loadgen/mediasoup/server.mjs): ws://IP:PORT/.
    #[arg(long, value_name = "URL", conflicts_with = "spawn_mediasoup")]
    mediasoup: Option<String>,
    /// Process id of the mediasoup-worker of the server given by --mediasoup (CPU and RSS).
    #[arg(long, value_name = "PID")]
    mediasoup_pid: Option<u32>,
    /// Start the mediasoup baseline server for the run (node sfu-loadgen/mediasoup/server.mjs);
    /// CPU and RSS are its mediasoup-worker's, which moves the media.
    #[arg(long)]
    spawn_mediasoup: bool,
    /// The mediasoup build for --spawn-mediasoup (DIR/package, as
    /// ../shared/baselines/mediasoup/build makes it) [default: $MEDIASOUP_DIR, else
    /// target/mediasoup-3.32.2].
    #[arg(long, value_name = "DIR")]
    mediasoup_dir: Option<PathBuf>,
    /// mediasoup workers of the spawned server [default: 1 when pinned, else one per CPU]. Only
    /// a single worker is measured.
    #[arg(long, value_name = "N")]
    mediasoup_workers: Option<usize>,
    /// The server script for --spawn-mediasoup [default: sfu-loadgen/mediasoup/server.mjs of
    /// the source tree this binary was built from].
    #[arg(long, value_name = "PATH")]
    mediasoup_server: Option<PathBuf>,
    /// The Node.js binary for --spawn-mediasoup.
    #[arg(long, value_name = "PATH", default_value = "node")]
    node_bin: PathBuf,
    /// Pin the server to CPU 0 and the generator to the other CPUs [default: on when this run
    /// starts the server and the machine has 2 to 4 CPUs].
    #[arg(long, conflicts_with = "no_pin")]
    pin: bool,
    /// Never pin.
    #[arg(long)]
    no_pin: bool,

    /// A named preset (`edge-sfu-loadgen presets` lists them).
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// A TOML scenario file (fields of the scenario, over --preset; `preset = "NAME"` in the file
    /// starts from that preset instead).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Rooms.
    #[arg(long)]
    rooms: Option<u32>,
    /// Publishers per room (each sends and receives every other publisher).
    #[arg(long)]
    publishers: Option<u32>,
    /// Receive-only participants per room.
    #[arg(long)]
    subscribers: Option<u32>,
    /// Publishers send audio (true/false).
    #[arg(long, value_name = "BOOL")]
    audio: Option<bool>,
    /// Publishers send video (true/false).
    #[arg(long, value_name = "BOOL")]
    video: Option<bool>,
    /// Video bitrate per publisher, kbit/s.
    #[arg(long, value_name = "KBPS")]
    video_kbps: Option<f64>,
    /// Seconds between keyframes (0: only the first frame).
    #[arg(long, value_name = "S")]
    keyframe_interval: Option<f64>,
    /// Measurement window, seconds.
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
    /// Joins are spread over this many seconds.
    #[arg(long, value_name = "S")]
    ramp_up: Option<f64>,
    /// Listeners joining (and, after --churn-stay, leaving) per second during the window.
    #[arg(long, value_name = "PER_S")]
    churn: Option<f64>,
    /// How long a churning listener stays, seconds.
    #[arg(long, value_name = "S")]
    churn_stay: Option<f64>,
    /// Limit for one join, seconds.
    #[arg(long, value_name = "S")]
    join_timeout: Option<f64>,

    /// Print the report as JSON on stdout (the table goes to stderr unless --quiet).
    #[arg(long)]
    json: bool,
    /// No progress bar, no table on stderr.
    #[arg(long)]
    quiet: bool,
    /// Let the spawned server's log through to stderr.
    #[arg(long)]
    server_log: bool,
    /// Receive every packet through its participant's str0m session (the full path, about 18 µs
    /// per packet) instead of the lean receive threads (batched reads, SRTP opened there).
    #[arg(long)]
    full_rx: bool,

    /// Raise the load step by step (subscribers, then rooms; a fresh server each step) until loss
    /// passes 0.5 % or the server's core is saturated, report the highest sustained out-pps per
    /// server core, then run at half of it (and the reflector at the same load). Needs a
    /// --spawn-... server; --duration is each step's window [default here: 6 s].
    #[arg(long)]
    find_max: bool,
    /// --find-max: out-pps the first step asks [default: what the scenario asks].
    #[arg(long, value_name = "PKT_PER_S")]
    start_pps: Option<f64>,
    /// --find-max: steps at most (the half-load runs come on top).
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_steps: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.cmd {
        Cmd::Presets => {
            for (name, what) in PRESETS {
                println!("{name:<12} {what}");
            }
            Ok(())
        }
        Cmd::Reflector {
            listen,
            idle_exit_s,
        } => {
            let socket = sfu_loadgen::reflector::bind(listen)
                .with_context(|| format!("binding {listen}"))?;
            println!("reflector ready: {}", socket.local_addr()?);
            use std::io::Write;
            std::io::stdout().flush()?;
            let stats = sfu_loadgen::reflector::serve(&socket, Duration::from_secs(idle_exit_s))?;
            eprintln!(
                "reflector idle for {idle_exit_s} s, exiting: {} received, {} forwarded",
                stats.received, stats.forwarded
            );
            Ok(())
        }
        Cmd::Run(args) => {
            let code = run(*args)?;
            std::process::exit(code);
        }
    }
}

fn scenario(a: &RunArgs) -> Result<Scenario> {
    let base = match &a.preset {
        Some(p) => Scenario::preset(p)?,
        None => Scenario::default(),
    };
    let mut s = match &a.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Scenario::from_toml_over(&text, base)?
        }
        None => base,
    };
    macro_rules! set {
        ($field:ident, $arg:expr) => {
            if let Some(v) = $arg {
                s.$field = v;
            }
        };
    }
    set!(rooms, a.rooms);
    set!(publishers, a.publishers);
    set!(subscribers, a.subscribers);
    set!(audio, a.audio);
    set!(video, a.video);
    set!(video_kbps, a.video_kbps);
    set!(keyframe_interval_s, a.keyframe_interval);
    set!(duration_s, a.duration);
    set!(ramp_up_s, a.ramp_up);
    set!(churn_per_s, a.churn);
    set!(churn_stay_s, a.churn_stay);
    set!(join_timeout_s, a.join_timeout);
    if a.find_max && a.duration.is_none() {
        // Short windows keep a whole search to a few minutes.
        s.duration_s = 6.0;
    }
    s.validate()?;
    Ok(s)
}

/// A server process this run started; killed (SIGTERM, then SIGKILL) on drop.
struct Spawned {
    child: Child,
    what: &'static str,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.what);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` (pinned to `cpus` when given) and waits for a stdout line starting with `ready`;
/// returns the child and the rest of that line.
fn spawn_ready(
    mut cmd: Command,
    what: &'static str,
    ready: &'static str,
    cpus: Option<Vec<usize>>,
    log: bool,
) -> Result<(Spawned, String)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if log { Stdio::inherit() } else { Stdio::null() });
    if let Some(cpus) = cpus {
        // SAFETY: the closure only makes the sched_setaffinity system call (no allocation, no
        // locks), which is async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || procfs::set_affinity(0, &cpus));
        }
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {what} ({cmd:?})"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout of {what}"))?;
    let spawned = Spawned { child, what };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix(ready) {
                let _ = tx.send(rest.trim().to_string());
            }
        }
    });
    let rest = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| anyhow!("{what} printed no ready line within 30 s"))?;
    Ok((spawned, rest))
}

fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("this binary has no directory"))?;
    let path = dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        bail!(
            "{} not found; build it (cargo build --release -p edge-sfu) or give --sfu-bin",
            path.display()
        )
    }
}

/// Where the server and the generator run.
struct Placement {
    /// The server's CPUs (empty: not pinned).
    server_cpus: Vec<usize>,
    /// The generator's CPUs (empty: not pinned).
    gen_cpus: Vec<usize>,
    /// What was pinned where, for the report.
    note: Option<String>,
}

impl Placement {
    fn pinned(&self) -> bool {
        !self.server_cpus.is_empty()
    }

    /// The server's CPUs, for a spawned server, when pinning.
    fn server(&self) -> Option<Vec<usize>> {
        self.pinned().then(|| self.server_cpus.clone())
    }
}

/// Decides the pinning and pins this process (the generator) when it applies.
fn place(a: &RunArgs) -> Result<Placement> {
    let spawning = a.spawn_sfu || a.spawn_reflector || a.spawn_janus || a.spawn_mediasoup;
    let ncpu = procfs::online_cpus();
    let pin = if a.no_pin {
        false
    } else {
        a.pin || (spawning && (2..=4).contains(&ncpu))
    };
    if pin && ncpu < 2 {
        eprintln!("not pinning: only one CPU");
    }
    if !pin || ncpu < 2 {
        return Ok(Placement {
            server_cpus: Vec::new(),
            gen_cpus: Vec::new(),
            note: None,
        });
    }
    let (server_cpus, gen_cpus): (Vec<usize>, Vec<usize>) = (vec![0], (1..ncpu).collect());
    procfs::set_affinity(0, &gen_cpus).context("pinning the generator")?;
    let what = if a.spawn_janus || a.janus.is_some() {
        "janus"
    } else if a.spawn_mediasoup || a.mediasoup.is_some() {
        "mediasoup"
    } else if a.spawn_reflector || a.reflector.is_some() {
        "the reflector"
    } else {
        "edge-sfu"
    };
    let note = format!(
        "{what} pinned to CPU {server_cpus:?}, the generator to CPU {gen_cpus:?} ({ncpu} CPUs online)"
    );
    if !a.quiet {
        eprintln!("{note}");
    }
    Ok(Placement {
        server_cpus,
        gen_cpus,
        note: Some(note),
    })
}

/// A server to run against, with the processes started for it (stopped on drop).
struct Server {
    target: Target,
    _spawned: Option<Spawned>,
    _janus: Option<sfu_loadgen::janus::JanusProcess>,
}

impl Server {
    fn reached(target: Target) -> Server {
        Server {
            target,
            _spawned: None,
            _janus: None,
        }
    }

    fn spawned(target: Target, spawned: Spawned) -> Server {
        Server {
            target,
            _spawned: Some(spawned),
            _janus: None,
        }
    }

    /// Warns when a spawned server exited during the run.
    fn check_alive(&mut self) {
        if let Some(g) = &mut self._spawned {
            if let Ok(Some(status)) = g.child.try_wait() {
                eprintln!("warning: {} exited during the run ({status})", g.what);
            }
        }
    }
}

/// Starts (or finds) the server the arguments name.
fn start_server(a: &RunArgs, at: &Placement, runtime: &tokio::runtime::Runtime) -> Result<Server> {
    if a.spawn_janus {
        let mut jp = sfu_loadgen::janus::JanusProcess::spawn(
            &a.janus_bin,
            a.janus_port,
            &a.janus_iface,
            at.server(),
        )?;
        runtime
            .block_on(jp.wait_ready(Duration::from_secs(30)))
            .context("starting janus")?;
        let target = Target::Janus {
            ws_url: jp.url.clone(),
            bind_ip: a.janus_bind,
            pid: Some(jp.pid()),
        };
        return Ok(Server {
            target,
            _spawned: None,
            _janus: Some(jp),
        });
    }
    if let Some(url) = &a.janus {
        return Ok(Server::reached(Target::Janus {
            ws_url: url.clone(),
            bind_ip: a.janus_bind,
            pid: a.janus_pid,
        }));
    }
    if a.spawn_mediasoup {
        return start_mediasoup(a, at);
    }
    if let Some(url) = &a.mediasoup {
        return Ok(Server::reached(Target::Mediasoup {
            ws_url: url.clone(),
            pid: a.mediasoup_pid,
        }));
    }
    if a.spawn_sfu {
        let bin = match &a.sfu_bin {
            Some(p) => p.clone(),
            None => sibling_binary("edge-sfu")?,
        };
        let mut cmd = Command::new(&bin);
        cmd.args(["--listen", "127.0.0.1:0", "--public-ip", "127.0.0.1"]);
        // Every simulated participant joins from this one address: the per-address join limit
        // would refuse all but the first few.
        cmd.args(["--join-burst", "0"]);
        let workers = a
            .sfu_workers
            .or(at.pinned().then_some(at.server_cpus.len()));
        if let Some(w) = workers {
            cmd.args(["--workers", &w.to_string()]);
        }
        cmd.args(&a.sfu_arg);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let (child, rest) = spawn_ready(
            cmd,
            "edge-sfu",
            "edge-sfu ready:",
            at.server(),
            a.server_log,
        )?;
        let pid = child.child.id();
        let (ws_url, http) = sfu_loadgen::http::parse_sfu_url(&rest)?;
        let target = Target::Sfu {
            ws_url,
            http,
            pid: Some(pid),
        };
        return Ok(Server::spawned(target, child));
    }
    if a.spawn_reflector {
        return start_reflector(a, at);
    }
    if let Some(addr) = a.reflector {
        return Ok(Server::reached(Target::Reflector { addr, pid: None }));
    }
    if let Some(url) = &a.url {
        let (ws_url, http) = sfu_loadgen::http::parse_sfu_url(url)?;
        if let (Some(pid), true) = (a.sfu_pid, at.pinned()) {
            let n = procfs::set_process_affinity(pid, &at.server_cpus)
                .with_context(|| format!("pinning process {pid}"))?;
            eprintln!("pinned {n} threads of process {pid}");
        }
        return Ok(Server::reached(Target::Sfu {
            ws_url,
            http,
            pid: a.sfu_pid,
        }));
    }
    bail!(
        "say where to send the load: --url, --spawn-sfu, --reflector, --spawn-reflector, \
         --janus, --spawn-janus, --mediasoup or --spawn-mediasoup"
    );
}

/// Starts the mediasoup baseline server (Node) and measures its mediasoup-worker.
fn start_mediasoup(a: &RunArgs, at: &Placement) -> Result<Server> {
    let script = a
        .mediasoup_server
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mediasoup/server.mjs"));
    let dir = a
        .mediasoup_dir
        .clone()
        .or_else(|| std::env::var_os("MEDIASOUP_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target/mediasoup-3.32.2"));
    if !dir
        .join("package/worker/out/Release/mediasoup-worker")
        .exists()
    {
        bail!(
            "no mediasoup build in {} (../shared/baselines/mediasoup/build {} makes one)",
            dir.display(),
            dir.display()
        );
    }
    let workers = a
        .mediasoup_workers
        .or(at.pinned().then_some(at.server_cpus.len()));
    let mut cmd = Command::new(&a.node_bin);
    cmd.arg(&script).arg("--mediasoup-dir").arg(&dir);
    if let Some(w) = workers {
        cmd.args(["--workers", &w.to_string()]);
    }
    let (child, rest) = spawn_ready(
        cmd,
        "mediasoup",
        "mediasoup ready:",
        at.server(),
        a.server_log,
    )?;
    let (ws_url, pids) = sfu_loadgen::mediasoup::parse_ready(&rest)?;
    // /proc figures of one worker would understate several: measure none then.
    let pid = match pids[..] {
        [pid] => Some(pid),
        _ => {
            eprintln!(
                "warning: {} mediasoup workers; no CPU or memory figures (one worker is measured)",
                pids.len()
            );
            None
        }
    };
    Ok(Server::spawned(Target::Mediasoup { ws_url, pid }, child))
}

/// Starts the plain UDP reflector (this binary's `reflector` command) on loopback.
fn start_reflector(a: &RunArgs, at: &Placement) -> Result<Server> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["reflector", "--listen", "127.0.0.1:0"]);
    let (child, rest) = spawn_ready(
        cmd,
        "the reflector",
        "reflector ready:",
        at.server(),
        a.server_log,
    )?;
    let pid = child.child.id();
    let addr: SocketAddr = rest
        .parse()
        .with_context(|| format!("the reflector's ready line: {rest:?}"))?;
    Ok(Server::spawned(
        Target::Reflector {
            addr,
            pid: Some(pid),
        },
        child,
    ))
}

/// The generator's runtime: one worker per generator core.
fn runtime(at: &Placement) -> Result<tokio::runtime::Runtime> {
    let threads = if at.pinned() {
        at.gen_cpus.len()
    } else {
        procfs::online_cpus()
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// One run of `s` against `server`.
fn run_once(
    a: &RunArgs,
    at: &Placement,
    runtime: &tokio::runtime::Runtime,
    server: &mut Server,
    s: Scenario,
) -> Result<Report> {
    let opts = RunOptions {
        scenario: s,
        target: server.target.clone(),
        progress: !a.quiet,
        pinning: at.note.clone(),
        lean_rx: !a.full_rx,
        split: a
            .split_url
            .as_deref()
            .map(sfu_loadgen::http::parse_sfu_url)
            .transpose()?
            .map(|(ws_url, _)| sfu_loadgen::transport::Endpoint::Sfu { ws_url }),
    };
    let report = runtime.block_on(sfu_loadgen::run(opts))?;
    server.check_alive();
    Ok(report)
}

fn run(a: RunArgs) -> Result<i32> {
    let s = scenario(&a)?;
    let per_room = s.publishers + s.subscribers;
    if per_room > ROOM_CAPACITY && (a.url.is_some() || a.spawn_sfu) {
        eprintln!(
            "warning: {per_room} members per room, but edge-sfu refuses joins past \
             {ROOM_CAPACITY}: expect failed joins (use more --rooms)"
        );
    }
    if a.find_max {
        return find_max(a, s);
    }
    let at = place(&a)?;
    let runtime = runtime(&at)?;
    let mut server = start_server(&a, &at, &runtime)?;
    let report = run_once(&a, &at, &runtime, &mut server, s)?;
    print_result(&a, &report, &report.table())?;
    drop(server);
    runtime.shutdown_timeout(Duration::from_secs(2));
    if report.has_failed_joins() {
        eprintln!("{} join(s) failed", report.joins.failed);
        return Ok(2);
    }
    Ok(0)
}

/// Prints `result` as JSON on stdout with `--json` (and `table` on stderr unless `--quiet`), else
/// `table` on stdout.
fn print_result(a: &RunArgs, result: &impl serde::Serialize, table: &str) -> Result<()> {
    if a.json {
        println!("{}", serde_json::to_string_pretty(result)?);
        if !a.quiet {
            eprint!("{table}");
        }
    } else {
        print!("{table}");
    }
    Ok(())
}

/// `--find-max`: a fresh server and fresh participants per step (see `sfu_loadgen::find_max`),
/// then the half-load run on the server and on the reflector.
fn find_max(a: RunArgs, base: Scenario) -> Result<i32> {
    if !(a.spawn_sfu || a.spawn_janus || a.spawn_mediasoup || a.spawn_reflector) {
        bail!("--find-max restarts the server for every step: use --spawn-sfu, --spawn-janus, --spawn-mediasoup or --spawn-reflector");
    }
    let at = place(&a)?;
    let runtime = runtime(&at)?;
    let server_cores = if at.pinned() {
        at.server_cpus.len()
    } else {
        procfs::online_cpus()
    } as f64;
    let ladder = Ladder::new(base.clone());
    let limits = Limits {
        start_pps: a.start_pps.unwrap_or_else(|| base.expected_out_pps()),
        max_steps: a.max_steps,
        server_cores,
    };
    let mut target = None;
    let mut step = |s: &Scenario, reflector: bool| -> Result<Report> {
        let started = if reflector {
            start_reflector(&a, &at)
        } else {
            start_server(&a, &at, &runtime)
        };
        let mut server = started?;
        if !a.quiet {
            eprintln!(
                "-- {} rooms x ({} publishers + {} subscribers), asking {:.0} pkt/s",
                s.rooms,
                s.publishers,
                s.subscribers,
                s.expected_out_pps()
            );
        }
        let report = run_once(&a, &at, &runtime, &mut server, s.clone())?;
        if !reflector {
            target.get_or_insert_with(|| report.target.clone());
        }
        Ok(report)
    };
    let search = find_max::search(&ladder, limits, |s| step(s, false))?;
    let half_load = match &search.best {
        Some(best) => {
            let s = ladder.at(best.out_pps / 2.0);
            let server = Step::of(&step(&s, false)?, server_cores);
            let reflector = if a.spawn_reflector {
                None
            } else {
                Some(Step::of(&step(&s, true)?, server_cores))
            };
            Some(HalfLoad::new(server, reflector))
        }
        None => None,
    };
    let result = FindMax {
        scenario: base.name.clone(),
        target: target.unwrap_or_default(),
        pinning: at.note.clone(),
        search,
        half_load,
    };
    print_result(&a, &result, &result.table())?;
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(if result.search.best.is_some() { 0 } else { 2 })
}
