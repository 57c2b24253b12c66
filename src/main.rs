//! The `edge-sfu` binary: the I/O shell around the sans-IO core.
//!
//! One tokio runtime serves HTTP and WebSocket signaling; one thread per worker runs a tokio-uring
//! runtime with its own media UDP port. Rooms are placed on workers by the signaling layer, so a
//! room's packets never cross threads.

mod config;
mod net;
mod worker;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use signaling::{AppState, Dispatch, SignalingCounters, WorkerHandle};
use tokio::sync::mpsc;
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::config::Cli;
use crate::worker::WorkerSpec;

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,str0m=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = cli.settings()?;
    let ips = net::announced_ips(&settings.public_ips);

    let mut handles = Vec::with_capacity(settings.workers);
    let mut threads = Vec::with_capacity(settings.workers);
    for index in 0..settings.workers {
        let port = match settings.media_port {
            0 => 0,
            base => base
                .checked_add(u16::try_from(index).context("too many workers")?)
                .context("media port range overflows")?,
        };
        let socket = net::bind_media_socket(port)?;
        let port = socket.local_addr()?.port();
        let candidates: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
        let (tx, rx) = mpsc::unbounded_channel();
        threads.push(worker::spawn(WorkerSpec {
            index,
            socket,
            candidates,
            commands: rx,
        })?);
        handles.push(WorkerHandle {
            commands: tx,
            media_port: port,
        });
    }

    let state = Arc::new(AppState {
        dispatch: Dispatch::new(handles),
        counters: SignalingCounters::default(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("signaling")
        .enable_all()
        .build()
        .context("starting the signaling runtime")?;
    runtime.block_on(serve(settings.listen, state))?;
    drop(runtime);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

async fn serve(listen: SocketAddr, state: Arc<AppState>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr()?;
    let shown = if local.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], local.port()))
    } else {
        local
    };
    let ports: Vec<u16> = state
        .dispatch
        .workers()
        .iter()
        .map(|w| w.media_port)
        .collect();
    info!(%local, media_ports = ?ports, "signaling up");
    let mut stdout = std::io::stdout();
    writeln!(stdout, "edge-sfu ready: http://{shown}/")?;
    stdout.flush()?;
    let app = signaling::router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            info!("shutting down");
        })
        .await
        .context("serving HTTP")
}
