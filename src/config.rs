//! Settings: command-line flags over an optional TOML file over defaults that work on a laptop.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use serde::Deserialize;
use sfu_core::codec::{CodecDescriptor, DEFAULT_VIDEO_CODECS};
use sfu_core::plain::{IngestSpec, OutputTarget};
use sfu_core::protocol::IceServer;
use signaling::auth::{Authenticator, Secret};
use signaling::dispatch::DEFAULT_MAX_PEERS_PER_WORKER;
use signaling::ice_servers::DEFAULT_TURN_TTL;
use signaling::join_limit::JoinLimit;
use signaling::server_joins::DEFAULT_SERVER_JOIN_LIMIT;
use signaling::{IceServers, TurnRest};
use str0m::format::Codec;

use crate::tls::{HttpTransport, TlsError, TransportOptions};
use crate::token::TokenArgs;

/// edge-sfu: a WebRTC selective forwarding unit for edge boxes.
///
/// Starts the signaling server (demo page, WebSocket, /api/stats) and one media worker per core.
/// Every flag can also be set in the TOML file given with --config (same names, with
/// underscores); flags win over the file.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Something else than serving (without one, edge-sfu serves).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// TOML configuration file.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Address of the HTTP/WebSocket server [default: 127.0.0.1:8080; port 0 picks a free one].
    #[arg(long, value_name = "HOST:PORT", global = true)]
    pub listen: Option<SocketAddr>,

    /// Media worker threads, each with its own UDP port; a room lives on one [default: number of cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// IP address to announce as ICE host candidate, IPv4 or IPv6 (repeatable: one of each for a
    /// dual-stack host) [default: every interface's IPv4 and IPv6 address, loopback included,
    /// IPv6 link-local left out].
    #[arg(long = "public-ip", value_name = "IP")]
    pub public_ip: Vec<IpAddr>,

    /// UDP port of the first worker; worker i uses PORT+i [default: 0, any free port].
    #[arg(long, value_name = "PORT")]
    pub media_port: Option<u16>,

    /// Media I/O shell: io_uring, or epoll with recvmmsg/sendmmsg batches (also the fallback where
    /// io_uring is unavailable) [default: uring].
    #[arg(long, value_enum, value_name = "SHELL")]
    pub io: Option<IoMode>,

    /// Kernel path (needs root or CAP_BPF+CAP_NET_ADMIN, and a build with clang): attach the XDP
    /// guard to this media interface (only admitted flows and rate-limited STUN reach the media
    /// ports) and copy plain RTP outputs to off-box receivers with the TC fan-out, routed out of
    /// this interface (IP forwarding must be on for it). Without it, or where it cannot load,
    /// everything stays in userspace [default: off].
    #[arg(long, value_name = "IFACE")]
    pub kernel_interface: Option<String>,

    /// ICE over TCP: each worker also listens on TCP (same port number as its UDP port when free)
    /// and announces passive TCP host candidates, so clients whose UDP is blocked connect
    /// directly [default: true].
    #[arg(long, value_name = "BOOL")]
    pub ice_tcp: Option<bool>,

    /// TURN server URL handed to clients with credentials minted from --turn-secret, e.g.
    /// `turn:turn.example.org:3478?transport=udp` or `turns:turn.example.org:5349` (repeatable).
    /// Fixed STUN/TURN entries go in the TOML file as `[[ice_server]]` tables.
    #[arg(long = "turn-url", value_name = "URL")]
    pub turn_url: Vec<String>,

    /// Secret shared with the TURN server (coturn: `use-auth-secret`, `static-auth-secret`):
    /// each participant gets its own time-limited credentials.
    #[arg(
        long,
        value_name = "SECRET",
        env = "EDGE_SFU_TURN_SECRET",
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,

    /// File holding the TURN shared secret (its first line), kept out of the command line.
    #[arg(long, value_name = "FILE")]
    pub turn_secret_file: Option<PathBuf>,

    /// Validity of minted TURN credentials, in seconds [default: 86400].
    #[arg(long, value_name = "SECONDS")]
    pub turn_ttl: Option<u64>,

    /// Loopback UDP port the workers hand the one plain copy of a kernel-path output to; the TC
    /// program on lo's egress consumes it [default: 47999].
    #[arg(long, value_name = "PORT")]
    pub kernel_handoff_port: Option<u16>,

    /// Serve HTTPS/WSS with this PEM certificate chain (end-entity first); needs --tls-key.
    /// SIGHUP rereads both files: new connections get the new certificate, calls carry on.
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS/WSS on a loopback address too (with the generated certificate unless
    /// --tls-cert is given). Beyond loopback HTTPS is the default.
    #[arg(long, global = true)]
    pub https: bool,

    /// Serve plain HTTP on a non-loopback address. Browsers then refuse the camera and
    /// microphone to the page.
    #[arg(long, global = true)]
    pub insecure_http: bool,

    /// Serve the local network: listen on every interface, IPv4 and IPv6 (`[::]`, dual-stack), at
    /// the port of --listen [default: 8080], print every LAN URL of the demo page and a QR code of
    /// the first for a phone.
    #[arg(long, global = true)]
    pub lan: bool,

    /// Where state is kept: the generated self-signed certificate and its key
    /// [default: $XDG_STATE_HOME/edge-sfu, else ~/.local/state/edge-sfu].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Room tokens: require a token to join, an HS256 JWT signed with this secret (mint them with
    /// `edge-sfu token`). Other users of the machine can read a command line: prefer
    /// --auth-secret-file [default: rooms are open].
    #[arg(
        long,
        value_name = "SECRET",
        global = true,
        conflicts_with = "auth_secret_file"
    )]
    pub auth_secret: Option<String>,

    /// Room tokens: read the HS256 secret from this file (trailing line breaks are ignored).
    #[arg(long, value_name = "FILE", global = true)]
    pub auth_secret_file: Option<PathBuf>,

    /// Room tokens: also accept EdDSA (Ed25519) tokens signed by another service, checked with
    /// this public key (PEM, `-----BEGIN PUBLIC KEY-----`).
    #[arg(long, value_name = "FILE")]
    pub auth_public_key: Option<PathBuf>,

    /// Join attempts one client address may make at once; 0 turns the join limit off
    /// [default: 10].
    #[arg(long, value_name = "N")]
    pub join_burst: Option<u32>,

    /// Join attempts per second a client address regains [default: 1].
    #[arg(long, value_name = "PER_SECOND")]
    pub join_rate: Option<f64>,

    /// Where recordings go, one directory per recording [default: recordings/ under the data
    /// directory].
    #[arg(long, value_name = "DIR")]
    pub record_dir: Option<PathBuf>,

    /// Stop a recording once its files reach this many bytes [default: no cap].
    #[arg(long, value_name = "BYTES")]
    pub record_max_bytes: Option<u64>,

    /// Also serve /metrics (Prometheus) on this address, without the API's admission: choose an
    /// address only the scraper reaches [default: /metrics only on --listen, for loopback or an
    /// admin token].
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<SocketAddr>,

    /// POST room events (JSON, signed with the auth secret) to this http:// or https:// URL
    /// (repeatable).
    #[arg(long = "webhook-url", value_name = "URL")]
    pub webhook_url: Vec<String>,

    /// Joins the whole server takes at once, from all addresses together; past it joins are
    /// refused with `server_busy` before they cost a WebRTC session; 0 turns it off [default: 100].
    #[arg(long, value_name = "N")]
    pub server_join_burst: Option<u32>,

    /// Joins per second the whole server regains [default: 50].
    #[arg(long, value_name = "PER_SECOND")]
    pub server_join_rate: Option<f64>,

    /// Most members (and plain RTP ingests) one media worker holds; a join past it is refused
    /// with `server_busy` [default: 1000].
    #[arg(long, value_name = "N")]
    pub max_peers: Option<usize>,

    /// Several nodes serving the same rooms (`--cluster` and its options).
    #[command(flatten)]
    pub cluster: crate::cluster_options::ClusterArgs,

    /// Video codecs offered to every member, most preferred first, comma-separated: any of
    /// vp8, h264, vp9, av1 (VP9 and AV1 carry scalable layers, see docs/simulcast.md)
    /// [default: vp8,h264].
    #[arg(long, value_name = "CODECS", value_delimiter = ',')]
    pub video_codecs: Vec<String>,
}

/// What `edge-sfu` does instead of serving.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Mint a room token (HS256, with the configured secret) and print its invite link.
    Token(TokenArgs),
}

/// Which I/O shell drives the media workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// io_uring: a multishot receive into provided buffers, sends batched per round and
    /// segmented (UDP GSO) per destination.
    Uring,
    /// epoll readiness, then recvmmsg/sendmmsg batches.
    Sendmmsg,
}

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    workers: Option<usize>,
    public_ip: Option<Vec<IpAddr>>,
    media_port: Option<u16>,
    io: Option<IoMode>,
    kernel_interface: Option<String>,
    kernel_handoff_port: Option<u16>,
    ice_tcp: Option<bool>,
    turn_url: Option<Vec<String>>,
    turn_secret: Option<String>,
    turn_secret_file: Option<PathBuf>,
    turn_ttl: Option<u64>,
    #[serde(default)]
    ice_server: Vec<IceServer>,
    auth_secret: Option<String>,
    auth_secret_file: Option<PathBuf>,
    auth_public_key: Option<PathBuf>,
    join_burst: Option<u32>,
    join_rate: Option<f64>,
    metrics_listen: Option<SocketAddr>,
    webhook_url: Option<Vec<String>>,
    server_join_burst: Option<u32>,
    server_join_rate: Option<f64>,
    max_peers: Option<usize>,
    video_codecs: Option<Vec<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    https: Option<bool>,
    insecure_http: Option<bool>,
    lan: Option<bool>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    ingest: Vec<IngestSpec>,
    #[serde(default)]
    output: Vec<ConfiguredOutput>,
    record_dir: Option<PathBuf>,
    record_max_bytes: Option<u64>,
    #[serde(default)]
    record: Vec<ConfiguredRecording>,
    #[serde(default)]
    cluster: crate::cluster_options::ClusterFile,
}

/// A room recorded whenever it exists (TOML `[[record]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredRecording {
    /// The room's name.
    pub room: String,
}

/// A plain RTP output set up at start, copying a configured ingest's track.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredOutput {
    /// The `name` of the configured ingest whose track it copies.
    pub ingest: String,
    /// Its receivers.
    pub targets: Vec<OutputTarget>,
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Settings {
    /// HTTP/WebSocket address.
    pub listen: SocketAddr,
    /// Number of media workers.
    pub workers: usize,
    /// Announced IPs; empty means "every interface".
    pub public_ips: Vec<IpAddr>,
    /// First worker's UDP port, 0 for any.
    pub media_port: u16,
    /// Media I/O shell.
    pub io: IoMode,
    /// Interface of the kernel path, if asked for.
    pub kernel_interface: Option<String>,
    /// Loopback port of the kernel path's hand-off.
    pub kernel_handoff_port: u16,
    /// Whether workers accept ICE over TCP.
    pub ice_tcp: bool,
    /// STUN/TURN servers handed to clients.
    pub ice_servers: IceServers,
    /// Plain RTP ingests to create at start (TOML `[[ingest]]`).
    pub ingests: Vec<IngestSpec>,
    /// Plain RTP outputs to create at start (TOML `[[output]]`).
    pub outputs: Vec<ConfiguredOutput>,
    /// PEM certificate chain for HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// HTTPS on loopback too.
    pub https: bool,
    /// Plain HTTP beyond loopback.
    pub insecure_http: bool,
    /// Serve the LAN: `listen` is already `[::]`; the binary prints the LAN URLs.
    pub lan: bool,
    /// State directory; `None` means the default under the user's state directory.
    pub data_dir: Option<PathBuf>,
    /// The HS256 secret room tokens are signed with, if any.
    pub auth_secret: Option<Secret>,
    /// The Ed25519 public key (PEM) EdDSA room tokens are checked with, if any.
    pub auth_public_key: Option<Vec<u8>>,
    /// Join attempts per client address.
    pub join_limit: JoinLimit,
    /// Where recordings go; `None` means `recordings/` under the data directory.
    pub record_dir: Option<PathBuf>,
    /// A recording's size cap in bytes.
    pub record_max_bytes: Option<u64>,
    /// Rooms recorded whenever they exist (TOML `[[record]]`).
    pub record_rooms: Vec<String>,
    /// A second listener serving only /metrics, without admission.
    pub metrics_listen: Option<SocketAddr>,
    /// Where room events are POSTed.
    pub webhook_urls: Vec<String>,
    /// Joins across all client addresses.
    pub server_join_limit: JoinLimit,
    /// Most members and ingests per media worker.
    pub max_peers: usize,
    /// This node's part in a cluster, with `--cluster`.
    pub cluster: Option<crate::cluster_options::ClusterConfig>,
    /// The video codecs sessions offer, most preferred first.
    pub video_codecs: Vec<Codec>,
}

impl Settings {
    /// How the HTTP/WebSocket server speaks on `listen`: plain HTTP or HTTPS, and with which
    /// certificate.
    pub fn http_transport(&self) -> Result<HttpTransport, TlsError> {
        HttpTransport::choose(
            self.listen,
            TransportOptions {
                tls_cert: self.tls_cert.as_deref(),
                tls_key: self.tls_key.as_deref(),
                https: self.https,
                insecure_http: self.insecure_http,
            },
        )
    }

    /// The room token checker, or `None` when no key is configured (rooms are open).
    pub fn authenticator(&self) -> Result<Option<Authenticator>> {
        if self.auth_secret.is_none() && self.auth_public_key.is_none() {
            return Ok(None);
        }
        Authenticator::new(self.auth_secret.as_ref(), self.auth_public_key.as_deref())
            .map(Some)
            .context("loading the room token keys")
    }
}

impl Cli {
    /// Merges flags, the file they name, and defaults.
    pub fn settings(&self) -> Result<Settings> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        // Paths in the file are relative to the file, not to wherever edge-sfu was started.
        let file_dir = self
            .config
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new(""));
        let ice_servers = self.ice_servers(&file, file_dir)?;
        if file.auth_secret.is_some() && file.auth_secret_file.is_some() {
            bail!("the configuration file sets both auth_secret and auth_secret_file");
        }
        let auth_secret = if let Some(s) = &self.auth_secret {
            Some(Secret::new(s.as_bytes()).context("--auth-secret")?)
        } else if let Some(path) = &self.auth_secret_file {
            Some(read_secret(path)?)
        } else if let Some(s) = &file.auth_secret {
            Some(Secret::new(s.as_bytes()).context("auth_secret")?)
        } else if let Some(path) = &file.auth_secret_file {
            Some(read_secret(&file_dir.join(path))?)
        } else {
            None
        };
        if auth_secret.as_ref().is_some_and(Secret::is_short) {
            tracing::warn!(
                "the auth secret is shorter than {} bytes: tokens signed with it are easier to forge \
                 (make one with `head -c 32 /dev/urandom | base64`)",
                signaling::auth::RECOMMENDED_SECRET_BYTES
            );
        }
        let auth_public_key = match (&self.auth_public_key, &file.auth_public_key) {
            (Some(path), _) => Some(path.clone()),
            (None, Some(path)) => Some(file_dir.join(path)),
            (None, None) => None,
        }
        .map(|path| std::fs::read(&path).with_context(|| format!("reading {}", path.display())))
        .transpose()?;
        let defaults = JoinLimit::default();
        let join_limit = JoinLimit {
            burst: self
                .join_burst
                .or(file.join_burst)
                .unwrap_or(defaults.burst),
            per_second: self
                .join_rate
                .or(file.join_rate)
                .unwrap_or(defaults.per_second),
        };
        if !(join_limit.per_second.is_finite() && join_limit.per_second > 0.0) {
            bail!("join_rate must be a number above 0 (join_burst 0 turns the limit off)");
        }
        let server_join_limit = JoinLimit {
            burst: self
                .server_join_burst
                .or(file.server_join_burst)
                .unwrap_or(DEFAULT_SERVER_JOIN_LIMIT.burst),
            per_second: self
                .server_join_rate
                .or(file.server_join_rate)
                .unwrap_or(DEFAULT_SERVER_JOIN_LIMIT.per_second),
        };
        if !(server_join_limit.per_second.is_finite() && server_join_limit.per_second > 0.0) {
            bail!("server_join_rate must be a number above 0 (server_join_burst 0 turns it off)");
        }
        let max_peers = self
            .max_peers
            .or(file.max_peers)
            .unwrap_or(DEFAULT_MAX_PEERS_PER_WORKER);
        let video_codecs = video_codecs(if self.video_codecs.is_empty() {
            file.video_codecs.as_deref().unwrap_or_default()
        } else {
            &self.video_codecs
        })?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let public_ips = if self.public_ip.is_empty() {
            file.public_ip.unwrap_or_default()
        } else {
            self.public_ip.clone()
        };
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let lan = self.lan || file.lan.unwrap_or(false);
        Ok(Settings {
            listen: if lan {
                crate::lan::listen_address(listen.port())
            } else {
                listen
            },
            workers: self.workers.or(file.workers).unwrap_or(cores).max(1),
            public_ips,
            media_port: self.media_port.or(file.media_port).unwrap_or(0),
            io: self.io.or(file.io).unwrap_or(IoMode::Uring),
            kernel_interface: self.kernel_interface.clone().or(file.kernel_interface),
            kernel_handoff_port: self
                .kernel_handoff_port
                .or(file.kernel_handoff_port)
                .unwrap_or(47999),
            ice_tcp: self.ice_tcp.or(file.ice_tcp).unwrap_or(true),
            ice_servers,
            ingests: file.ingest,
            outputs: file.output,
            auth_secret,
            auth_public_key,
            join_limit,
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            webhook_urls: if self.webhook_url.is_empty() {
                file.webhook_url.unwrap_or_default()
            } else {
                self.webhook_url.clone()
            },
            server_join_limit,
            max_peers,
            video_codecs,
            tls_cert: self.tls_cert.clone().or(file.tls_cert),
            tls_key: self.tls_key.clone().or(file.tls_key),
            https: self.https || file.https.unwrap_or(false),
            insecure_http: self.insecure_http || file.insecure_http.unwrap_or(false),
            lan,
            data_dir: self.data_dir.clone().or(file.data_dir),
            record_dir: self
                .record_dir
                .clone()
                .or(file.record_dir.map(|d| file_dir.join(d))),
            record_max_bytes: self.record_max_bytes.or(file.record_max_bytes),
            record_rooms: file.record.into_iter().map(|r| r.room).collect(),
            cluster: self.cluster.config(file.cluster, file_dir)?,
        })
    }
}

/// The codecs `names` name, in their order; none means the default list. An unknown name is an
/// error worth stopping for (a typo would silently drop a codec).
fn video_codecs(names: &[String]) -> Result<Vec<Codec>> {
    if names.is_empty() {
        return Ok(DEFAULT_VIDEO_CODECS.to_vec());
    }
    let mut codecs = Vec::new();
    for name in names {
        let Some(d) = CodecDescriptor::video_by_name(name) else {
            bail!("unknown video codec {name:?} (known: vp8, h264, vp9, av1)");
        };
        if !codecs.contains(&d.codec) {
            codecs.push(d.codec);
        }
    }
    Ok(codecs)
}

impl Cli {
    /// Fixed `[[ice_server]]` entries, and TURN URLs with the secret their credentials are minted
    /// from. URLs without a secret, or a secret without URLs, is a mistake worth stopping for.
    fn ice_servers(&self, file: &FileConfig, file_dir: &Path) -> Result<IceServers> {
        let urls = if self.turn_url.is_empty() {
            file.turn_url.clone().unwrap_or_default()
        } else {
            self.turn_url.clone()
        };
        let secret = match (&self.turn_secret, &self.turn_secret_file) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(path)) => Some(read_turn_secret(path)?),
            (None, None) => match (&file.turn_secret, &file.turn_secret_file) {
                (Some(s), _) => Some(s.clone()),
                (None, Some(path)) => Some(read_turn_secret(&file_dir.join(path))?),
                (None, None) => None,
            },
        };
        let turn = match (urls.is_empty(), secret) {
            (true, None) => None,
            (false, Some(secret)) if !secret.is_empty() => Some(TurnRest {
                urls,
                secret,
                ttl: self
                    .turn_ttl
                    .or(file.turn_ttl)
                    .map_or(DEFAULT_TURN_TTL, Duration::from_secs),
            }),
            (false, _) => bail!("--turn-url needs --turn-secret (or --turn-secret-file)"),
            (true, Some(_)) => bail!("--turn-secret needs at least one --turn-url"),
        };
        for server in &file.ice_server {
            if server.urls.is_empty() {
                bail!("an [[ice_server]] entry has no urls");
            }
        }
        Ok(IceServers {
            fixed: file.ice_server.clone(),
            turn,
        })
    }
}

/// The TURN secret kept in a file: its first line, without surrounding whitespace.
fn read_turn_secret(path: &Path) -> Result<String> {
    let text = String::from_utf8(read_secret_file(path)?)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    let secret = text.lines().next().unwrap_or_default().trim().to_owned();
    if secret.is_empty() {
        bail!("{} holds no secret", path.display());
    }
    Ok(secret)
}

/// The room token secret kept in a file.
fn read_secret(path: &Path) -> Result<Secret> {
    let contents = read_secret_file(path)?;
    Secret::from_file_contents(&contents).with_context(|| format!("secret in {}", path.display()))
}

/// Reads a file holding a secret (room tokens, TURN), warning when other users may read it too.
fn read_secret_file(path: &Path) -> Result<Vec<u8>> {
    let contents = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    "the secret file is readable by other users: chmod 600 it"
                );
            }
        }
    }
    Ok(contents)
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_file(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Parses the text of a configuration file (the files it names are read later, by
/// [`Cli::settings`]).
pub fn parse_file(text: &str) -> Result<FileConfig, toml::de::Error> {
    toml::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu_core::trunk::TrunkMedia;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = temp_dir("flags");
        let path = dir.join("edge-sfu.toml");
        std::fs::write(
            &path,
            "workers = 3\nmedia_port = 40000\npublic_ip = [\"10.0.0.1\"]\nio = \"sendmmsg\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "edge-sfu",
            "--config",
            path.to_str().unwrap(),
            "--workers",
            "5",
        ]);
        let s = cli.settings().unwrap();
        assert_eq!(s.workers, 5);
        assert_eq!(s.media_port, 40000);
        assert_eq!(s.public_ips, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.io, IoMode::Sendmmsg);
    }

    #[test]
    fn the_cluster_comes_from_the_file_and_flags_win() {
        let dir = temp_dir("cluster");
        let path = dir.join("cluster.toml");
        std::fs::write(dir.join("redis.pw"), "s3cret\n").unwrap();
        std::fs::write(
            &path,
            "[cluster]\nredis = \"redis://10.0.0.5:6379\"\nnode_id = \"paris\"\n\
             password_file = \"redis.pw\"\nttl = 5\ntrunk_address = \"192.0.2.7:40000\"\n\
             trunk = \"plain\"\n",
        )
        .unwrap();
        let from_file = Cli::parse_from(["edge-sfu", "--config", path.to_str().unwrap()]);
        let c = from_file.settings().unwrap().cluster.expect("a cluster");
        assert_eq!(c.redis_url, "redis://10.0.0.5:6379");
        assert_eq!(c.node_id, "paris");
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.ttl, Duration::from_secs(5));
        assert_eq!(c.trunk_address, Some("192.0.2.7:40000".parse().unwrap()));
        assert_eq!(c.trunk_media, TrunkMedia::Plain);
        let flags = Cli::parse_from([
            "edge-sfu",
            "--config",
            path.to_str().unwrap(),
            "--node-id",
            "lyon",
            "--trunk",
            "srtp",
        ]);
        let c = flags.settings().unwrap().cluster.unwrap();
        assert_eq!(
            (c.node_id.as_str(), c.trunk_media),
            ("lyon", TrunkMedia::Srtp)
        );
        let wrong = ["edge-sfu", "--cluster", "redis://x:1", "--trunk", "clear"];
        assert!(Cli::try_parse_from(wrong).is_err(), "srtp or plain only");
        std::fs::write(&path, "[cluster]\nnode = \"x\"\n").unwrap();
        let unknown = Cli::parse_from(["edge-sfu", "--config", path.to_str().unwrap()]);
        assert!(unknown.settings().is_err(), "an unknown key is an error");
        let lone = Cli::parse_from(["edge-sfu"]).settings().unwrap();
        assert!(lone.cluster.is_none());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn video_codecs_come_in_preference_order_from_the_flag_or_the_file() {
        let defaults = Cli::parse_from(["edge-sfu"]).settings().unwrap();
        assert_eq!(defaults.video_codecs, [Codec::Vp8, Codec::H264]);
        let flag = Cli::parse_from(["edge-sfu", "--video-codecs", "AV1,vp9,vp8"]);
        assert_eq!(
            flag.settings().unwrap().video_codecs,
            [Codec::Av1, Codec::Vp9, Codec::Vp8]
        );
        let dir = temp_dir("codecs");
        let path = dir.join("codecs.toml");
        std::fs::write(&path, "video_codecs = [\"vp9\"]\n").unwrap();
        let file = Cli::parse_from(["edge-sfu", "--config", path.to_str().unwrap()]);
        assert_eq!(file.settings().unwrap().video_codecs, [Codec::Vp9]);
        let typo = Cli::parse_from(["edge-sfu", "--video-codecs", "vp9,hevc"]);
        assert!(typo.settings().is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn public_ip_takes_one_address_of_each_family() {
        let s = Cli::parse_from([
            "edge-sfu",
            "--public-ip",
            "203.0.113.7",
            "--public-ip",
            "2001:db8::7",
        ])
        .settings()
        .unwrap();
        let want: Vec<IpAddr> = vec![
            "203.0.113.7".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ];
        assert_eq!(s.public_ips, want);
    }

    #[test]
    fn ingests_and_outputs_come_from_the_file() {
        let dir = temp_dir("plain");
        let path = dir.join("plain.toml");
        std::fs::write(
            &path,
            r#"
[[ingest]]
room = "lobby"
name = "door-camera"
codec = "h264"
payload_type = 102
source = "127.0.0.1:5004"

[[output]]
ingest = "door-camera"
targets = [{ address = "127.0.0.1:6000", ssrc = 42 }]

[[record]]
room = "kitchen"
"#,
        )
        .unwrap();
        let s = Cli::parse_from(["edge-sfu", "--config", path.to_str().unwrap()])
            .settings()
            .unwrap();
        assert_eq!(s.ingests.len(), 1);
        assert_eq!(s.ingests[0].payload_type, 102);
        assert_eq!(s.outputs[0].ingest, "door-camera");
        assert_eq!(s.record_rooms, ["kitchen"]);
        assert_eq!(s.outputs[0].targets[0].ssrc, Some(42));
    }

    #[test]
    fn ice_servers_come_from_the_file_and_turn_flags() {
        let dir = temp_dir("ice");
        let path = dir.join("ice.toml");
        std::fs::write(
            &path,
            "turn_ttl = 600\n[[ice_server]]\nurls = [\"stun:stun.example.org:3478\"]\n",
        )
        .unwrap();
        let s = Cli::parse_from([
            "edge-sfu",
            "--config",
            path.to_str().unwrap(),
            "--turn-url",
            "turn:10.0.0.1:3478",
            "--turn-secret",
            "s3cret",
        ])
        .settings()
        .unwrap();
        assert_eq!(s.ice_servers.fixed[0].urls, ["stun:stun.example.org:3478"]);
        let turn = s.ice_servers.turn.expect("minted TURN");
        assert_eq!(turn.urls, ["turn:10.0.0.1:3478"]);
        assert_eq!(turn.ttl, Duration::from_secs(600));
        let half = Cli::parse_from(["edge-sfu", "--turn-url", "turn:10.0.0.1:3478"]);
        assert!(half.settings().is_err(), "a TURN URL without a secret");
    }

    #[test]
    fn tls_and_lan_settings_come_from_flags_and_the_file() {
        let dir = temp_dir("tls");
        let path = dir.join("tls.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9443\"\nlan = true\ntls_cert = \"/etc/edge-sfu/cert.pem\"\n\
             tls_key = \"/etc/edge-sfu/key.pem\"\ndata_dir = \"/var/lib/edge-sfu\"\n\
             https = true\ninsecure_http = false\n",
        )
        .unwrap();
        let s = Cli::parse_from(["edge-sfu", "--config", path.to_str().unwrap()])
            .settings()
            .unwrap();
        // --lan listens on every interface, at the configured port.
        assert_eq!(s.listen, "[::]:9443".parse().unwrap());
        assert!(s.lan && s.https && !s.insecure_http);
        assert_eq!(s.tls_cert, Some(PathBuf::from("/etc/edge-sfu/cert.pem")));
        assert_eq!(s.tls_key, Some(PathBuf::from("/etc/edge-sfu/key.pem")));
        assert_eq!(s.data_dir, Some(PathBuf::from("/var/lib/edge-sfu")));

        let s = Cli::parse_from([
            "edge-sfu",
            "--lan",
            "--data-dir",
            "/tmp/x",
            "--insecure-http",
        ])
        .settings()
        .unwrap();
        assert_eq!(s.listen, "[::]:8080".parse().unwrap());
        assert!(s.insecure_http && !s.https);
        assert_eq!(s.data_dir, Some(PathBuf::from("/tmp/x")));
        let s = Cli::parse_from(["edge-sfu"]).settings().unwrap();
        assert!(!s.lan && !s.https && s.tls_cert.is_none() && s.data_dir.is_none());
    }

    #[test]
    fn unknown_file_keys_are_an_error() {
        let dir = temp_dir("bad");
        let path = dir.join("bad.toml");
        std::fs::write(&path, "wrokers = 3\n").unwrap();
        let cli = Cli::parse_from(["edge-sfu", "--config", path.to_str().unwrap()]);
        assert!(cli.settings().is_err());
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("edge-sfu-config-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn without_auth_rooms_are_open_with_the_default_join_limit() {
        let s = Cli::parse_from(["edge-sfu"]).settings().unwrap();
        assert!(s.auth_secret.is_none() && s.auth_public_key.is_none());
        assert!(s.authenticator().unwrap().is_none());
        assert_eq!(s.join_limit, JoinLimit::default());
        assert!(Cli::parse_from(["edge-sfu"]).command.is_none());
    }

    #[test]
    fn auth_settings_come_from_flags_or_the_file_relative_to_it() {
        let dir = temp_dir("auth");
        std::fs::write(dir.join("secret"), "file secret of some length, 32 bytes\n").unwrap();
        let path = dir.join("auth.toml");
        std::fs::write(
            &path,
            "auth_secret_file = \"secret\"\njoin_burst = 4\njoin_rate = 0.5\n",
        )
        .unwrap();
        let s = Cli::parse_from(["edge-sfu", "--config", path.to_str().unwrap()])
            .settings()
            .unwrap();
        assert_eq!(
            s.auth_secret.as_ref().map(Secret::as_bytes),
            Some(&b"file secret of some length, 32 bytes"[..])
        );
        assert_eq!(
            s.join_limit,
            JoinLimit {
                burst: 4,
                per_second: 0.5
            }
        );
        assert!(s.authenticator().unwrap().is_some());
        // A flag wins over the file.
        let s = Cli::parse_from([
            "edge-sfu",
            "--config",
            path.to_str().unwrap(),
            "--auth-secret",
            "from the command line",
            "--join-burst",
            "0",
        ])
        .settings()
        .unwrap();
        assert_eq!(
            s.auth_secret.as_ref().map(Secret::as_bytes),
            Some(&b"from the command line"[..])
        );
        assert_eq!(s.join_limit.burst, 0);
    }

    #[test]
    fn metrics_listener_and_webhooks_come_from_flags_or_the_file() {
        let s = Cli::parse_from(["edge-sfu"]).settings().unwrap();
        assert!(s.metrics_listen.is_none() && s.webhook_urls.is_empty());
        let dir = temp_dir("ops");
        let path = dir.join("ops.toml");
        std::fs::write(
            &path,
            "metrics_listen = \"127.0.0.1:9464\"\nwebhook_url = [\"http://127.0.0.1:9000/a\"]\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let s = Cli::parse_from(["edge-sfu", "--config", file])
            .settings()
            .unwrap();
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(s.webhook_urls, ["http://127.0.0.1:9000/a"]);
        // Flags win, and --webhook-url repeats.
        let s = Cli::parse_from([
            "edge-sfu",
            "--config",
            file,
            "--webhook-url",
            "http://b.example/",
            "--webhook-url",
            "https://c.example/",
        ])
        .settings()
        .unwrap();
        assert_eq!(s.webhook_urls, ["http://b.example/", "https://c.example/"]);
    }

    #[test]
    fn conflicting_or_broken_auth_settings_are_errors() {
        assert!(
            Cli::try_parse_from(["edge-sfu", "--auth-secret", "a", "--auth-secret-file", "b"])
                .is_err()
        );
        let dir = temp_dir("auth-bad");
        let both = dir.join("both.toml");
        std::fs::write(&both, "auth_secret = \"a\"\nauth_secret_file = \"b\"\n").unwrap();
        assert!(
            Cli::parse_from(["edge-sfu", "--config", both.to_str().unwrap()])
                .settings()
                .is_err()
        );
        let empty = dir.join("empty-secret");
        std::fs::write(&empty, "\n").unwrap();
        assert!(
            Cli::parse_from(["edge-sfu", "--auth-secret-file", empty.to_str().unwrap()])
                .settings()
                .is_err()
        );
        let not_a_key = dir.join("key.pem");
        std::fs::write(&not_a_key, "not a key").unwrap();
        let s = Cli::parse_from(["edge-sfu", "--auth-public-key", not_a_key.to_str().unwrap()])
            .settings()
            .unwrap();
        assert!(s.authenticator().is_err());
        assert!(Cli::parse_from(["edge-sfu", "--join-rate", "0"])
            .settings()
            .is_err());
    }

    #[test]
    fn the_token_subcommand_takes_global_flags_on_either_side() {
        let cli = Cli::parse_from([
            "edge-sfu",
            "--auth-secret",
            "s",
            "token",
            "--room",
            "kitchen",
            "--name",
            "ana",
            "--listen",
            "127.0.0.1:9000",
            "--can-chat",
            "false",
        ]);
        let Some(Command::Token(args)) = &cli.command else {
            panic!("{cli:?}");
        };
        assert_eq!((args.room.as_str(), args.name.as_str()), ("kitchen", "ana"));
        assert!(args.can_publish && args.can_subscribe && !args.can_chat && !args.admin);
        assert_eq!(args.ttl, std::time::Duration::from_secs(86_400));
        assert_eq!(cli.listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(cli.auth_secret.as_deref(), Some("s"));
    }
}
