//! The `edge-sfu` binary: reads the settings, starts the [`Server`], prints where it is (with
//! `--lan`, every LAN URL and a QR code for a phone), and runs until SIGINT or SIGTERM. SIGHUP
//! rereads the TLS certificate. `edge-sfu token` mints a room token instead.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Parser;
use edge_sfu::token::{mint_invite, TokenArgs};
use edge_sfu::{Cli, Command, Server, Settings};
use tracing::{info, warn};
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
    if settings.lan {
        print_lan_urls(&mut stdout, &server)?;
    }
    // The ready line comes last: whoever waits for it (tests, scripts) has everything above.
    writeln!(stdout, "edge-sfu ready: {}", server.url())?;
    stdout.flush()?;
    run_until_stopped(&server)?;
    info!("shutting down");
    server.shutdown()
}

/// `edge-sfu token`: the invite link on stdout (for scripts), what it grants on stderr.
fn print_invite(args: &TokenArgs, settings: &Settings) -> Result<()> {
    let invite = mint_invite(args, settings, std::time::SystemTime::now())?;
    let c = &invite.claims;
    let yes = |b: Option<bool>| if b == Some(true) { "yes" } else { "no" };
    eprintln!(
        "room {:?}, name {:?}, valid for {}s; publish: {}, subscribe: {}, chat: {}, admin: {}; jti {} (to revoke it)",
        args.room,
        args.name,
        args.ttl.as_secs(),
        yes(c.publish),
        yes(c.subscribe),
        yes(c.chat),
        yes(c.admin),
        c.jti.as_deref().unwrap_or("none"),
    );
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", invite.link)?;
    stdout.flush()?;
    Ok(())
}

/// `--lan`: every URL a device on the local network can open, the certificate's fingerprint
/// to compare with the one the phone shows, and a QR code of the first URL.
fn print_lan_urls(out: &mut impl Write, server: &Server) -> Result<()> {
    let urls = server.lan_urls();
    if urls.is_empty() {
        writeln!(
            out,
            "edge-sfu: no LAN address found (no non-loopback IPv4 interface is up)"
        )?;
        return Ok(());
    }
    writeln!(out, "edge-sfu on the LAN:")?;
    for url in &urls {
        writeln!(out, "  {url}")?;
    }
    if let Some(fingerprint) = server.certificate_fingerprint() {
        writeln!(out, "certificate SHA-256 fingerprint: {fingerprint}")?;
    }
    match edge_sfu::lan::terminal_qr_code(&urls[0]) {
        Ok(qr) => writeln!(out, "scan to open {}:\n{qr}", urls[0])?,
        Err(e) => warn!("no QR code for {}: {e}", urls[0]),
    }
    Ok(())
}

/// Waits for SIGINT or SIGTERM; on SIGHUP reloads the TLS certificate and keeps waiting.
fn run_until_stopped(server: &Server) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        // With --cluster, SIGTERM drains (members move to other nodes) and the server stops
        // once the drain is over, whether SIGTERM or POST /api/drain began it.
        let mut drained = server.drain().map(|d| d.drained());
        let drain_over = async {
            match drained.as_mut() {
                Some(rx) => {
                    let _ = rx.wait_for(|done| *done).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(drain_over);
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => return r,
                _ = &mut drain_over => return Ok(()),
                _ = term.recv() => match server.drain() {
                    Some(drain) if !drain.draining() => {
                        info!("SIGTERM: draining before stopping");
                        drain.begin();
                    }
                    _ => return Ok(()),
                },
                _ = hangup.recv() => {
                    // Reading two small files: blocking this thread briefly is fine, it only
                    // waits for signals.
                    if let Err(e) = server.reload_tls() {
                        warn!("SIGHUP: keeping the current certificate: {e:#}");
                    }
                }
            }
        }
    })?;
    Ok(())
}
