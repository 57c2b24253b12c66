//! `--cluster`: the options that make this process one node of several serving the same rooms,
//! and what the server sets up for it (see `docs/cluster.md`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sfu_core::protocol::PeerId;
use sfu_core::trunk::TrunkMedia;

/// How long a node's record lives without a heartbeat when `--cluster-ttl` is not given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// How long a drain waits for members to leave when `--drain-timeout` is not given.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The cluster's command-line options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// Join a cluster of nodes with this Redis as the directory: `redis://HOST:PORT[/DB]`
    /// (`redis://:PASSWORD@HOST:PORT` for a password) [default: a lone node, no Redis].
    #[arg(long, value_name = "REDIS_URL")]
    pub cluster: Option<String>,

    /// A file holding the Redis password (instead of putting it in the URL).
    #[arg(long, value_name = "FILE")]
    pub cluster_password_file: Option<PathBuf>,

    /// This node's name in the cluster [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub node_id: Option<String>,

    /// Where clients reach this node's pages, sent to the clients of a draining node
    /// [default: the URL the server prints when ready].
    #[arg(long, value_name = "URL")]
    pub node_url: Option<String>,

    /// Where other nodes reach this node's first worker for trunks, when not at its own media
    /// address (a forwarded port); worker n is reached at PORT+n [default: each worker's own
    /// media address].
    #[arg(long, value_name = "IP:PORT")]
    pub trunk_address: Option<SocketAddr>,

    /// How trunks to other nodes carry RTP: `srtp` (encrypted, for any network) or `plain`
    /// (for a private link both nodes trust: no per-packet encryption; a trunk is plain only
    /// when both of its nodes say so) [default: srtp].
    #[arg(long, value_name = "srtp|plain", value_parser = parse_trunk_media)]
    pub trunk: Option<TrunkMedia>,

    /// Seconds a node's directory entry lives without a heartbeat: a node that dies leaves
    /// the others' rooms this long after [default: 15].
    #[arg(long, value_name = "SECONDS")]
    pub cluster_ttl: Option<u64>,

    /// Seconds a drain (SIGTERM or POST /api/drain with --cluster) waits for members to move
    /// to other nodes before the node stops anyway [default: 60].
    #[arg(long, value_name = "SECONDS")]
    pub drain_timeout: Option<u64>,
}

/// The `[cluster]` table of the TOML file: the same settings as the flags, which win over it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// `--cluster`.
    redis: Option<String>,
    /// `--cluster-password-file`, relative to the TOML file.
    password_file: Option<PathBuf>,
    /// `--node-id`.
    node_id: Option<String>,
    /// `--node-url`.
    node_url: Option<String>,
    /// `--trunk-address`.
    trunk_address: Option<SocketAddr>,
    /// `--trunk`: `"srtp"` or `"plain"`.
    trunk: Option<TrunkMedia>,
    /// `--cluster-ttl`, seconds.
    ttl: Option<u64>,
    /// `--drain-timeout`, seconds.
    drain_timeout: Option<u64>,
}

/// The cluster settings in force.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The directory's URL.
    pub redis_url: String,
    /// Its password, from `--cluster-password-file`.
    pub password: Option<String>,
    /// This node's id.
    pub node_id: String,
    /// Where clients reach this node, when set.
    pub node_url: Option<String>,
    /// Where other nodes reach this node's media, when set.
    pub trunk_address: Option<SocketAddr>,
    /// How this node wants its trunks to carry RTP.
    pub trunk_media: TrunkMedia,
    /// The node record's TTL.
    pub ttl: Duration,
    /// The longest drain.
    pub drain_timeout: Duration,
}

impl ClusterArgs {
    /// The settings, from these flags over `file` (the TOML file's `[cluster]`, whose paths are
    /// relative to `file_dir`), or `None` when neither names a Redis.
    pub fn config(&self, file: ClusterFile, file_dir: &Path) -> Result<Option<ClusterConfig>> {
        let Some(redis_url) = self.cluster.clone().or(file.redis) else {
            return Ok(None);
        };
        if !redis_url.starts_with("redis://") {
            bail!("--cluster wants redis://HOST:PORT[/DB], not {redis_url:?}");
        }
        let password_file = self
            .cluster_password_file
            .clone()
            .or(file.password_file.map(|p| file_dir.join(p)));
        let password = password_file
            .as_ref()
            .map(|path| {
                std::fs::read_to_string(path)
                    .map(|s| s.trim().to_owned())
                    .with_context(|| format!("--cluster-password-file {}", path.display()))
            })
            .transpose()?;
        let node_id = match self.node_id.clone().or(file.node_id) {
            Some(id) => id,
            None => host_name().context("no --node-id, and the host name is unknown")?,
        };
        if node_id.is_empty() || node_id.contains(':') {
            bail!("--node-id must be non-empty and have no ':' (it is part of Redis keys)");
        }
        let ttl = self.cluster_ttl.or(file.ttl);
        let ttl = Duration::from_secs(ttl.unwrap_or(DEFAULT_TTL.as_secs()).max(1));
        Ok(Some(ClusterConfig {
            redis_url,
            password,
            node_id,
            node_url: self.node_url.clone().or(file.node_url),
            trunk_address: self.trunk_address.or(file.trunk_address),
            trunk_media: self.trunk.or(file.trunk).unwrap_or_default(),
            ttl,
            drain_timeout: self
                .drain_timeout
                .or(file.drain_timeout)
                .map_or(DEFAULT_DRAIN_TIMEOUT, Duration::from_secs),
        }))
    }
}

/// `--trunk`'s value.
fn parse_trunk_media(value: &str) -> Result<TrunkMedia, String> {
    match value {
        "srtp" => Ok(TrunkMedia::Srtp),
        "plain" => Ok(TrunkMedia::Plain),
        other => Err(format!("{other:?}: srtp or plain")),
    }
}

/// The machine's host name.
fn host_name() -> Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    Ok(name.trim().to_owned())
}

/// The first peer id of this run of a node: peer ids must be unique across the cluster, and each
/// process counts from its own random range (2^20 ranges of 2^32 ids, below 2^53 so pages read
/// them as exact numbers). A restarted node draws a new range, so it never reuses the ids its
/// previous run left in other nodes' views.
pub fn first_peer_id() -> PeerId {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    ((hasher.finish() & 0xF_FFFF) << 32) + 1
}

/// Where other nodes reach worker `index` for trunks, given `--trunk-address` (the first
/// worker's): the port after it for each further worker, as the media ports are laid out.
pub fn worker_trunk_address(first: SocketAddr, index: usize) -> SocketAddr {
    let port = u16::try_from(usize::from(first.port()) + index).unwrap_or(first.port());
    SocketAddr::new(first.ip(), port)
}
