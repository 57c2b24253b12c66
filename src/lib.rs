//! The `edge-sfu` server as a library: the I/O shell around the sans-IO core.
//!
//! [`Server::start`] brings up one thread per media worker (an io_uring driven from a
//! single-threaded tokio loop, with its own UDP port and its own [`sfu_core::Core`]) and one
//! thread running the signaling server (tokio, axum).
//! Rooms are placed on workers by the signaling layer, so a room's packets never cross threads. The
//! binary is a thin wrapper; tests and the load generator start servers in-process.
//!
//! The signaling server speaks HTTPS/WSS when it listens beyond loopback or is told to
//! ([`tls`], [`certificate`]); `--lan` serves the local network ([`lan`]).

pub mod certificate;
pub mod cluster_options;
pub mod config;
mod gso;
mod kernel;
pub mod lan;
mod mmsg;
pub mod net;
mod recording_totals;
mod ring;
mod sockaddr;
pub mod tls;
pub mod token;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context, Result};
use axum::serve::ListenerExt;
use signaling::cluster_api::{ClusterNode, DrainHandle};
use signaling::dispatch::WorkerCommand;
use signaling::webhooks::Webhooks;
use signaling::{AppState, Dispatch, WorkerHandle};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

pub use crate::config::{Cli, Command, ConfiguredOutput, IoMode, Settings};
use crate::kernel::Kernel;
use crate::tls::{HttpTransport, ServerCertificate};
use crate::worker::WorkerSpec;
use sfu_core::plain::{IngestSpec, OutputSpec};
use sfu_core::trunk::TrunkEndpoint;

/// A running edge-sfu: signaling and media workers. Dropping it shuts it down.
pub struct Server {
    url: String,
    local_addr: SocketAddr,
    media_ports: Vec<u16>,
    io: IoMode,
    certificate: Option<ServerCertificate>,
    shutdown: Option<oneshot::Sender<()>>,
    signaling: Option<JoinHandle<Result<()>>>,
    workers: Vec<JoinHandle<()>>,
    /// The node's drain, with `--cluster`.
    drain: Option<DrainHandle>,
}

impl Server {
    /// Binds every socket and starts every thread; returns once the server accepts connections.
    pub fn start(settings: &Settings) -> Result<Server> {
        // The certificate first: a missing key file should stop the start before any thread runs.
        let transport = settings.http_transport()?;
        let certificate = ServerCertificate::open(&transport, settings.data_dir.as_deref())?;
        let acceptor = certificate
            .as_ref()
            .map(ServerCertificate::acceptor)
            .transpose()?;
        if let HttpTransport::Plain { exposed: true } = transport {
            warn!(
                listen = %settings.listen,
                "plain HTTP beyond loopback (--insecure-http): browsers refuse the camera and microphone to pages on http://<LAN address>"
            );
        }
        let ips = net::announced_ips(&settings.public_ips);
        let mut sockets = Vec::with_capacity(settings.workers);
        for index in 0..settings.workers {
            let port = match settings.media_port {
                0 => 0,
                base => base
                    .checked_add(u16::try_from(index).context("too many workers")?)
                    .context("media port range overflows")?,
            };
            sockets.push(net::bind_media_socket(port)?);
        }
        let ports = sockets
            .iter()
            .map(|s| s.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<Vec<u16>>>()?;
        let mut tcp_listeners = Vec::with_capacity(settings.workers);
        for port in &ports {
            tcp_listeners.push(if settings.ice_tcp {
                Some(bind_ice_tcp(*port)?)
            } else {
                None
            });
        }
        let kernel = settings
            .kernel_interface
            .as_deref()
            .and_then(|iface| Kernel::open(iface, settings.kernel_handoff_port, &ports))
            .map(Arc::new);
        let record = worker::RecordSettings {
            dir: worker::absolute(&match &settings.record_dir {
                Some(dir) => dir.clone(),
                None => match &settings.data_dir {
                    Some(dir) => dir.join("recordings"),
                    // Without a state directory (no HOME): the working directory.
                    None => crate::certificate::default_data_dir()
                        .map_or_else(|_| PathBuf::from("recordings"), |d| d.join("recordings")),
                },
            }),
            max_bytes: settings.record_max_bytes,
        };
        let (webhook_sender, webhooks) = open_webhooks(settings)?.unzip();
        let recording_totals = Arc::new(recording_totals::RecordingTotals::default());
        let (cluster_events, cluster_rx) = match &settings.cluster {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let mut handles = Vec::with_capacity(settings.workers);
        let mut workers = Vec::with_capacity(settings.workers);
        let mut io = settings.io;
        let workers_io = sockets.into_iter().zip(ports).zip(tcp_listeners);
        for (index, ((socket, port), tcp)) in workers_io.enumerate() {
            let candidates: Vec<SocketAddr> =
                ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
            let ice_tcp_port = tcp
                .as_ref()
                .map(|l| l.local_addr())
                .transpose()?
                .map(|a| a.port());
            let tcp_candidates = ice_tcp_port
                .map(|p| ips.iter().map(|ip| SocketAddr::new(*ip, p)).collect())
                .unwrap_or_default();
            let (tx, rx) = mpsc::unbounded_channel();
            let (thread, mode) = worker::spawn(
                WorkerSpec {
                    index,
                    socket,
                    candidates,
                    tcp,
                    tcp_candidates,
                    commands: rx,
                    kernel: kernel.clone(),
                    record: record.clone(),
                    record_rooms: settings.record_rooms.clone(),
                    video_codecs: settings.video_codecs.clone(),
                    recording_totals: recording_totals.clone(),
                    webhooks: webhook_sender.clone(),
                    cluster: cluster_events.clone(),
                    trunk_endpoint: settings.cluster.as_ref().map(|c| TrunkEndpoint {
                        name: cluster::endpoint::name(&c.node_id, index),
                        advertised: c
                            .trunk_address
                            .map(|a| cluster_options::worker_trunk_address(a, index)),
                        media: c.trunk_media,
                    }),
                },
                settings.io,
            )?;
            workers.push(thread);
            io = mode;
            handles.push(WorkerHandle {
                commands: tx,
                media_port: port,
                ice_tcp_port,
            });
        }
        let media_ports: Vec<u16> = handles.iter().map(|h| h.media_port).collect();
        let worker_queues: Vec<_> = handles.iter().map(|h| h.commands.clone()).collect();
        let mut dispatch = Dispatch::new(handles).with_max_peers_per_worker(settings.max_peers);
        let cluster_view = settings
            .cluster
            .as_ref()
            .map(|c| cluster::ClusterView::new(&c.node_id));
        if cluster_view.is_some() {
            dispatch = dispatch.with_first_peer_id(crate::cluster_options::first_peer_id());
        }
        let mut state = app_state(settings, dispatch)?;
        let mut drain = None;
        if let (Some(c), Some(view), Some(directory)) =
            (&settings.cluster, &cluster_view, &cluster_events)
        {
            let node = ClusterNode::new(view.clone(), c.drain_timeout, directory.clone());
            drain = Some(node.drain.clone());
            state = state.with_cluster(node);
        }
        if let Some(sender) = webhook_sender {
            state = state.with_webhooks(sender);
        }
        if let Some(kernel) = &kernel {
            state = state.with_metrics_source(kernel.clone());
        }
        state = state.with_metrics_source(recording_totals);
        let state = Arc::new(state);
        let listener = net::bind_tcp_listener(settings.listen)
            .with_context(|| format!("listening on {}", settings.listen))?;
        let metrics_listener = settings
            .metrics_listen
            .map(|addr| {
                let l = net::bind_tcp_listener(addr)
                    .with_context(|| format!("--metrics-listen {addr}"))?;
                info!(%addr, "serving /metrics without admission on --metrics-listen");
                Ok::<_, anyhow::Error>(l)
            })
            .transpose()?;
        let local_addr = listener.local_addr()?;
        let shown = if local_addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], local_addr.port()))
        } else {
            local_addr
        };
        let directory = match (&settings.cluster, cluster_view, cluster_rx) {
            (Some(c), Some(view), Some(events)) => {
                let first_media = SocketAddr::new(
                    ips.first()
                        .copied()
                        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                    media_ports.first().copied().unwrap_or(0),
                );
                let settings = cluster::ClusterSettings {
                    redis_url: c.redis_url.clone(),
                    password: c.password.clone(),
                    node_id: c.node_id.clone(),
                    node_url: c
                        .node_url
                        .clone()
                        .unwrap_or_else(|| format!("{}://{shown}", scheme(certificate.is_some()))),
                    trunk_address: c.trunk_address.unwrap_or(first_media).to_string(),
                    ttl: c.ttl,
                };
                // What other nodes did goes to every worker: each keeps the remote members of
                // every room, so a room's first local member sees who is elsewhere. A trunk
                // description goes to the worker it names.
                let deliver: cluster::directory::Deliver =
                    Box::new(move |delivery| match delivery {
                        cluster::ToWorkers::Everyone(event) => {
                            for queue in &worker_queues {
                                let _ = queue.send(WorkerCommand::Cluster {
                                    event: event.clone(),
                                });
                            }
                        }
                        cluster::ToWorkers::One(worker, signal) => {
                            match worker_queues.get(worker) {
                                Some(queue) => {
                                    let _ = queue.send(WorkerCommand::Trunk { signal });
                                }
                                None => warn!(worker, "trunk description for no worker"),
                            }
                        }
                    });
                // Revocations other nodes made apply here as if made here.
                let revoking = state.clone();
                let apply: cluster::ApplyRevocation =
                    Box::new(move |token| signaling::revoke_api::apply_shared(&revoking, token));
                Some(cluster::Directory::new(
                    settings, view, events, deliver, apply,
                ))
            }
            _ => None,
        };
        let side = SideTasks {
            metrics: metrics_listener,
            webhooks,
            directory,
        };
        let (shutdown, shutdown_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let plain = (settings.ingests.clone(), settings.outputs.clone());
        let signaling = std::thread::Builder::new()
            .name("signaling".into())
            .spawn(move || {
                serve(
                    listener,
                    acceptor,
                    state,
                    plain,
                    side,
                    ready_tx,
                    shutdown_rx,
                )
            })
            .context("spawning the signaling thread")?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = signaling.join();
                return Err(e);
            }
            Err(_) => return Err(anyhow!("the signaling thread stopped while starting")),
        }
        if let Some(cert) = &certificate {
            info!(
                fingerprint = %cert.fingerprint(),
                path = %cert.cert_path().display(),
                generated = cert.is_generated(),
                "HTTPS certificate (SHA-256)"
            );
        }
        info!(%local_addr, ?media_ports, ?io, "edge-sfu up");
        Ok(Server {
            url: format!("{}://{shown}/", scheme(certificate.is_some())),
            local_addr,
            media_ports,
            io,
            certificate,
            shutdown: Some(shutdown),
            signaling: Some(signaling),
            workers,
            drain,
        })
    }

    /// The demo page's URL, `http://HOST:PORT/`, or `https://HOST:PORT/` with TLS (the WebSocket
    /// is at `ws://HOST:PORT/ws`, or `wss://`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The demo page's URL at each LAN address of this machine (see [`lan::page_urls`]).
    pub fn lan_urls(&self) -> Vec<String> {
        lan::page_urls(scheme(self.certificate.is_some()), self.local_addr)
    }

    /// SHA-256 fingerprint (`AB:CD:...`) of the certificate presented now; `None` without TLS.
    pub fn certificate_fingerprint(&self) -> Option<String> {
        self.certificate
            .as_ref()
            .map(ServerCertificate::fingerprint)
    }

    /// The PEM file of the certificate presented now; `None` without TLS.
    pub fn certificate_path(&self) -> Option<PathBuf> {
        self.certificate.as_ref().map(ServerCertificate::cert_path)
    }

    /// Rereads the certificate files (what SIGHUP does): new connections get the new
    /// certificate, established ones (calls in progress) keep going. On error the current
    /// certificate stays. Returns the new fingerprint.
    pub fn reload_tls(&self) -> Result<String> {
        let certificate = self.certificate.as_ref().ok_or(tls::TlsError::NotEnabled)?;
        let fingerprint = certificate.reload()?;
        info!(%fingerprint, path = %certificate.cert_path().display(), "HTTPS certificate reloaded");
        Ok(fingerprint)
    }

    /// The node's drain, with `--cluster` (SIGTERM starts it; the server stops once it is over).
    pub fn drain(&self) -> Option<&DrainHandle> {
        self.drain.as_ref()
    }

    /// The address the HTTP/WebSocket server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Each worker's media UDP port.
    pub fn media_ports(&self) -> &[u16] {
        &self.media_ports
    }

    /// The I/O shell the workers run (the one asked for, or the fallback).
    pub fn io(&self) -> IoMode {
        self.io
    }

    /// Stops accepting connections, lets the workers finish, and waits for every thread.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = match self.signaling.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("the signaling thread panicked"))?,
            None => Ok(()),
        };
        // The signaling state held the workers' command queues: with it gone, they wind down.
        for t in self.workers.drain(..) {
            let _ = t.join();
        }
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A worker's ICE-TCP listener, on the same port number as its UDP socket so that one firewall
/// rule per port covers both; on another port when that one is taken over TCP.
fn bind_ice_tcp(udp_port: u16) -> Result<std::net::TcpListener> {
    net::bind_ice_tcp_listener(udp_port).or_else(|e| {
        tracing::warn!(port = udp_port, error = %e, "ICE-TCP cannot share the UDP port number, using another");
        net::bind_ice_tcp_listener(0)
    })
}

/// Checks the webhook URLs and makes their queue, when there are any. Bodies are signed with the
/// room token secret; without one they go unsigned, with a warning.
fn open_webhooks(
    settings: &Settings,
) -> Result<Option<(signaling::webhooks::WebhookSender, Webhooks)>> {
    if settings.webhook_urls.is_empty() {
        return Ok(None);
    }
    let secret = settings.auth_secret.as_ref().map(|s| s.as_bytes());
    if secret.is_none() {
        warn!(
            "webhooks are sent UNSIGNED: no --auth-secret-file is set, so receivers cannot tell \
             them from forged ones; set one to get X-Edge-Sfu-Signature"
        );
    }
    Ok(Some(signaling::webhooks::channel(
        &settings.webhook_urls,
        secret,
    )?))
}

/// What the signaling runtime runs beside the main server.
struct SideTasks {
    /// The `--metrics-listen` listener.
    metrics: Option<std::net::TcpListener>,
    /// The webhook delivery task.
    webhooks: Option<Webhooks>,
    /// The cluster directory task, with `--cluster`.
    directory: Option<cluster::Directory>,
}

/// The signaling state: room tokens (when a key is configured), the join limit and the ICE servers
/// handed out on join.
fn app_state(settings: &Settings, dispatch: Dispatch) -> Result<AppState> {
    let state = AppState::new(dispatch)
        .with_join_limit(settings.join_limit)
        .with_server_join_limit(settings.server_join_limit)
        .with_ice_servers(settings.ice_servers.clone());
    match settings.authenticator()? {
        Some(auth) => {
            info!(keys = ?auth, "joining requires a room token");
            Ok(state.with_auth(auth))
        }
        None => {
            if !settings.listen.ip().is_loopback() {
                warn!(
                    listen = %settings.listen,
                    "ROOMS ARE OPEN: no --auth-secret-file or --auth-public-key is set and the server \
                     listens beyond this machine, so anyone who can reach it can join any room, \
                     publish and chat. Require room tokens with --auth-secret-file FILE \
                     (see `edge-sfu token --help`)."
                );
            }
            Ok(state)
        }
    }
}

/// The URL scheme of the pages: `https` with TLS.
pub(crate) fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

/// Ingests and outputs from the configuration file.
type PlainConfig = (Vec<IngestSpec>, Vec<ConfiguredOutput>);

/// Creates the configured ingests, then the outputs of their tracks.
async fn apply_plain_config(state: &AppState, (ingests, outputs): PlainConfig) -> Result<()> {
    let mut created = Vec::with_capacity(ingests.len());
    for spec in ingests {
        let name = spec.name.clone();
        let info = signaling::api::add_ingest(state, spec)
            .await
            .with_context(|| format!("configured ingest {name}"))?;
        info!(ingest = info.id, name = %info.name, room = %info.room, port = info.port, "configured ingest ready");
        created.push(info);
    }
    for output in outputs {
        let ingest = created
            .iter()
            .find(|i| i.name == output.ingest)
            .with_context(|| format!("output of unknown ingest {}", output.ingest))?;
        let spec = OutputSpec {
            room: ingest.room.clone(),
            track_id: ingest.track_id.clone(),
            targets: output.targets,
        };
        let info = signaling::api::add_output(state, spec)
            .await
            .with_context(|| format!("configured output of {}", output.ingest))?;
        info!(output = info.id, track = %info.track_id, "configured output ready");
    }
    Ok(())
}

/// Runs the signaling server until `shutdown`; reports on `ready` once it accepts connections
/// (or why it cannot).
fn serve(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<AppState>,
    plain: PlainConfig,
    side: SideTasks,
    ready: std::sync::mpsc::Sender<Result<()>>,
    shutdown: oneshot::Receiver<()>,
) -> Result<()> {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("signaling")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(anyhow!("starting the signaling runtime: {e}")));
            return Ok(());
        }
    };
    runtime.block_on(async move {
        if let Some(webhooks) = side.webhooks {
            tokio::spawn(webhooks.run());
        }
        if let Some(directory) = side.directory {
            tokio::spawn(directory.run());
            tokio::spawn(signaling::cluster_api::run_drain(state.clone()));
        }
        let started = async {
            if let Some(metrics) = side.metrics {
                let metrics = tokio::net::TcpListener::from_std(metrics)?;
                let app = signaling::metrics::open_router(state.clone());
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(metrics, app).await {
                        warn!(error = %e, "the --metrics-listen server stopped");
                    }
                });
            }
            apply_plain_config(&state, plain).await?;
            Ok::<_, anyhow::Error>(tokio::net::TcpListener::from_std(listener)?)
        };
        let listener = match started.await {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return Ok(());
            }
        };
        let _ = ready.send(Ok(()));
        let tls_counters = state.tls.clone();
        let app =
            signaling::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let shutdown = async move {
            let _ = shutdown.await;
            signaling::shutdown::stop(&state).await;
        };
        match tls {
            None => axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
                .context("serving HTTP"),
            // tap_io is also what gives a custom listener's `SocketAddr` to ConnectInfo (axum
            // implements that for TcpListener and TapIo only); nothing needs doing per stream,
            // TlsListener already set TCP_NODELAY.
            Some(acceptor) => axum::serve(
                tls::TlsListener::new(listener, acceptor, tls_counters).tap_io(|_| {}),
                app,
            )
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTPS"),
        }
    })
}
