//! Settings: command-line flags over an optional TOML file over defaults that work on a laptop.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use serde::Deserialize;
use sfu_core::plain::{IngestSpec, OutputTarget};

/// edge-sfu: a WebRTC selective forwarding unit for edge boxes.
///
/// Starts the signaling server (demo page, WebSocket, /api/stats) and one media worker per core.
/// Every flag can also be set in the TOML file given with --config (same names, with
/// underscores); flags win over the file.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address of the HTTP/WebSocket server [default: 127.0.0.1:8080; port 0 picks a free one].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,

    /// Media worker threads, each with its own UDP port; a room lives on one [default: number of cores].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// IP address to announce as ICE host candidate (repeatable) [default: every interface's IPv4
    /// address, loopback included].
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

    /// Loopback UDP port the workers hand the one plain copy of a kernel-path output to; the TC
    /// program on lo's egress consumes it [default: 47999].
    #[arg(long, value_name = "PORT")]
    pub kernel_handoff_port: Option<u16>,

    /// Serve HTTPS/WSS with this PEM certificate chain (end-entity first); needs --tls-key.
    /// SIGHUP rereads both files: new connections get the new certificate, calls carry on.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS/WSS on a loopback address too (with the generated certificate unless
    /// --tls-cert is given). Beyond loopback HTTPS is the default.
    #[arg(long)]
    pub https: bool,

    /// Serve plain HTTP on a non-loopback address. Browsers then refuse the camera and
    /// microphone to the page.
    #[arg(long)]
    pub insecure_http: bool,

    /// Serve the local network: listen on 0.0.0.0 at the port of --listen [default: 8080], print
    /// every LAN URL of the demo page and a QR code of the first for a phone.
    #[arg(long)]
    pub lan: bool,

    /// Where state is kept: the generated self-signed certificate and its key
    /// [default: $XDG_STATE_HOME/edge-sfu, else ~/.local/state/edge-sfu].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Which I/O shell drives the media workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// tokio-uring: receives and sends as io_uring operations.
    Uring,
    /// epoll readiness, then recvmmsg/sendmmsg batches.
    Sendmmsg,
}

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    workers: Option<usize>,
    public_ip: Option<Vec<IpAddr>>,
    media_port: Option<u16>,
    io: Option<IoMode>,
    kernel_interface: Option<String>,
    kernel_handoff_port: Option<u16>,
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
    /// Serve the LAN: `listen` is already 0.0.0.0; the binary prints the LAN URLs.
    pub lan: bool,
    /// State directory; `None` means the default under the user's state directory.
    pub data_dir: Option<PathBuf>,
}

impl Cli {
    /// Merges flags, the file they name, and defaults.
    pub fn settings(&self) -> Result<Settings> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
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
            ingests: file.ingest,
            outputs: file.output,
            tls_cert: self.tls_cert.clone().or(file.tls_cert),
            tls_key: self.tls_key.clone().or(file.tls_key),
            https: self.https || file.https.unwrap_or(false),
            insecure_http: self.insecure_http || file.insecure_http.unwrap_or(false),
            lan,
            data_dir: self.data_dir.clone().or(file.data_dir),
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("edge-sfu-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
    fn ingests_and_outputs_come_from_the_file() {
        let dir =
            std::env::temp_dir().join(format!("edge-sfu-config-plain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
"#,
        )
        .unwrap();
        let s = Cli::parse_from(["edge-sfu", "--config", path.to_str().unwrap()])
            .settings()
            .unwrap();
        assert_eq!(s.ingests.len(), 1);
        assert_eq!(s.ingests[0].payload_type, 102);
        assert_eq!(s.outputs[0].ingest, "door-camera");
        assert_eq!(s.outputs[0].targets[0].ssrc, Some(42));
    }

    #[test]
    fn tls_and_lan_settings_come_from_flags_and_the_file() {
        let dir = std::env::temp_dir().join(format!("edge-sfu-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
        assert_eq!(s.listen, "0.0.0.0:9443".parse().unwrap());
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
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        assert!(s.insecure_http && !s.https);
        assert_eq!(s.data_dir, Some(PathBuf::from("/tmp/x")));
        let s = Cli::parse_from(["edge-sfu"]).settings().unwrap();
        assert!(!s.lan && !s.https && s.tls_cert.is_none() && s.data_dir.is_none());
    }

    #[test]
    fn unknown_file_keys_are_an_error() {
        let dir = std::env::temp_dir().join(format!("edge-sfu-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "wrokers = 3\n").unwrap();
        let cli = Cli::parse_from(["edge-sfu", "--config", path.to_str().unwrap()]);
        assert!(cli.settings().is_err());
    }
}
