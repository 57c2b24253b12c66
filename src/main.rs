//! The `edge-sfu` binary: reads the settings, starts the [`Server`], prints where it is, and runs
//! until SIGINT or SIGTERM. `edge-sfu token` mints a room token instead.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Parser;
use edge_sfu::token::{mint_invite, TokenArgs};
use edge_sfu::{Cli, Command, Server, Settings};
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
    if let Some(Command::Token(args)) = &cli.command {
        return print_invite(args, &settings);
    }
    let server = Server::start(&settings)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "edge-sfu ready: {}", server.url())?;
    stdout.flush()?;
    wait_for_signal()?;
    info!("shutting down");
    server.shutdown()
}

/// `edge-sfu token`: the invite link on stdout (for scripts), what it grants on stderr.
fn print_invite(args: &TokenArgs, settings: &Settings) -> Result<()> {
    let invite = mint_invite(args, settings, std::time::SystemTime::now())?;
    let c = &invite.claims;
    let yes = |b: Option<bool>| if b == Some(true) { "yes" } else { "no" };
    eprintln!(
        "room {:?}, name {:?}, valid for {}s; publish: {}, subscribe: {}, chat: {}, admin: {}",
        args.room,
        args.name,
        args.ttl.as_secs(),
        yes(c.publish),
        yes(c.subscribe),
        yes(c.chat),
        yes(c.admin),
    );
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", invite.link)?;
    stdout.flush()?;
    Ok(())
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
