//! The `edge-sfu` binary: reads the settings, starts the [`Server`], prints where it is, and runs
//! until SIGINT or SIGTERM.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Parser;
use edge_sfu::{Cli, Server};
use tracing::info;
use tracing_subscriber::EnvFilter;

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,str0m=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = cli.settings()?;
    let server = Server::start(&settings)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "edge-sfu ready: {}", server.url())?;
    stdout.flush()?;
    wait_for_signal()?;
    info!("shutting down");
    server.shutdown()
}

fn wait_for_signal() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}
