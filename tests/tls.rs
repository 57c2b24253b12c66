//! HTTPS and WSS: the generated certificate (served, kept across restarts), certificate files
//! reloaded while a WebSocket stays up (in-process and by SIGHUP to the binary), the plain HTTP
//! redirect, and clients that stall or send garbage not holding up anyone else.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use edge_sfu::certificate::{self, SubjectNames};
use edge_sfu::{Cli, Server, Settings};
use futures_util::{SinkExt, StreamExt};
use sfu_core::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "edge-sfu-tls-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// In-process server settings: loopback, one worker, plus `extra` flags.
fn settings(extra: &[&str]) -> Settings {
    let mut args = vec![
        "edge-sfu",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--public-ip",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    Cli::parse_from(args).settings().unwrap()
}

/// The first certificate of a PEM file.
fn read_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path)
        .unwrap_or_else(|e| panic!("reading a certificate from {}: {e}", path.display()))
}

/// A TLS client that trusts exactly `cert` and nothing else.
fn trusting(cert: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS connection to `addr` (verified as its IP address), within 10 s.
async fn tls_connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        TlsConnector::from(config.clone())
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| format!("TLS connection to {addr} not established within 10 s"))?
}

/// The certificate the server presented on `stream`.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("the server presented a certificate")
        .clone()
        .into_owned()
}

/// `GET path` over HTTPS: status and body.
async fn https_get(addr: SocketAddr, config: &Arc<ClientConfig>, path: &str) -> (u16, String) {
    let mut tls = tls_connect(addr, config).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut raw)).await;
    match read {
        Ok(Ok(_)) => {}
        // A server may close without close_notify after a `Connection: close` response.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Ok(Err(e)) => panic!("reading the HTTPS response: {e}"),
        Err(_) => panic!("no complete HTTPS response within 10 s"),
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

/// A WebSocket over TLS to `wss://addr/ws`.
async fn wss_connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Wss {
    let tls = tls_connect(addr, config).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("wss://{addr}/ws"), tls)
        .await
        .expect("WebSocket handshake over TLS");
    ws
}

/// The next protocol message, skipping pings, within 10 s.
async fn next_message(ws: &mut Wss) -> ServerMessage {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the WebSocket is open")
            .expect("a frame");
        match frame {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("protocol JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Joins `room` over `ws`; returns once `joined` arrived.
async fn join(ws: &mut Wss, room: &str, name: &str) {
    let join = ClientMessage::Join {
        version: PROTOCOL_VERSION,
        room: room.into(),
        name: name.into(),
        capacity: None,
        token: None,
    };
    ws.send(Message::text(serde_json::to_string(&join).unwrap()))
        .await
        .unwrap();
    loop {
        if let ServerMessage::Joined { .. } = next_message(ws).await {
            return;
        }
    }
}

/// Sends `ping` and waits for `pong`: the connection still carries signaling.
async fn expect_alive(ws: &mut Wss, what: &str) {
    ws.send(Message::text(
        serde_json::to_string(&ClientMessage::Ping).unwrap(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{what}: sending ping: {e}"));
    loop {
        if let ServerMessage::Pong = next_message(ws).await {
            return;
        }
    }
}

/// Writes a new self-signed certificate for 127.0.0.1 to `cert`/`key`, replacing them by rename
/// (as certbot and friends do); returns it.
fn write_new_certificate(dir: &Path, cert: &Path, key: &Path) -> CertificateDer<'static> {
    let names = SubjectNames {
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().unwrap()],
    };
    let pem = certificate::generate_self_signed(&names).unwrap();
    let tmp_cert = dir.join("cert.pem.new");
    let tmp_key = dir.join("key.pem.new");
    std::fs::write(&tmp_cert, &pem.cert).unwrap();
    std::fs::write(&tmp_key, &pem.key).unwrap();
    std::fs::rename(&tmp_key, key).unwrap();
    std::fs::rename(&tmp_cert, cert).unwrap();
    read_cert(cert)
}

/// A server with `--https` and its generated certificate in a fresh data directory (kept as long
/// as the returned guard).
fn https_server(tag: &str) -> (TempDir, Server) {
    let data = TempDir::new(tag);
    let server = Server::start(&settings(&[
        "--https",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]))
    .unwrap();
    (data, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_certificate_serves_https_and_wss_and_survives_restarts() {
    let data = TempDir::new("generated");
    let data_dir = data.path().join("state");
    let dir = data_dir.to_str().unwrap();
    let server = Server::start(&settings(&["--https", "--data-dir", dir])).unwrap();
    assert!(
        server.url().starts_with("https://127.0.0.1:"),
        "url {}",
        server.url()
    );
    let cert_path = server.certificate_path().expect("a certificate file");
    assert!(cert_path.starts_with(&data_dir), "{}", cert_path.display());
    let cert = read_cert(&cert_path);
    let fingerprint = server.certificate_fingerprint().expect("a fingerprint");
    assert_eq!(fingerprint, certificate::fingerprint(cert.as_ref()));
    assert_eq!(fingerprint.len(), 32 * 3 - 1, "{fingerprint}");

    let client = trusting(&cert);
    let addr = server.local_addr();
    let (status, body) = https_get(addr, &client, "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<html"), "the demo page: {body}");
    let tls = tls_connect(addr, &client).await.unwrap();
    assert_eq!(presented(&tls), cert);
    let mut ws = wss_connect(addr, &client).await;
    join(&mut ws, "tls-room", "ana").await;
    expect_alive(&mut ws, "the wss connection").await;

    // A client that trusts another certificate refuses this server: the check is real.
    let other = write_new_certificate(
        data.path(),
        &data.path().join("o.pem"),
        &data.path().join("ok.pem"),
    );
    assert!(tls_connect(addr, &trusting(&other)).await.is_err());

    drop(ws);
    server.shutdown().unwrap();
    let stored = std::fs::read(&cert_path).unwrap();

    // Same data directory: the same certificate, so a phone that accepted it is not asked again.
    let again = Server::start(&settings(&["--https", "--data-dir", dir])).unwrap();
    assert_eq!(again.certificate_fingerprint(), Some(fingerprint));
    assert_eq!(std::fs::read(&cert_path).unwrap(), stored);
    let (status, _) = https_get(again.local_addr(), &client, "/").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn reloading_certificate_files_keeps_open_websockets() {
    let dir = TempDir::new("reload");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = write_new_certificate(dir.path(), &cert_path, &key_path);
    let server = Server::start(&settings(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]))
    .unwrap();
    let addr = server.local_addr();
    assert!(server.url().starts_with("https://"), "{}", server.url());
    let mut before = wss_connect(addr, &trusting(&first)).await;
    join(&mut before, "reload-room", "ana").await;

    let second = write_new_certificate(dir.path(), &cert_path, &key_path);
    assert_ne!(first, second);
    let fingerprint = server.reload_tls().unwrap();
    assert_eq!(fingerprint, certificate::fingerprint(second.as_ref()));
    assert_eq!(server.certificate_fingerprint(), Some(fingerprint.clone()));

    // New connections get the new certificate...
    let tls = tls_connect(addr, &trusting(&second)).await.unwrap();
    assert_eq!(presented(&tls), second);
    assert!(tls_connect(addr, &trusting(&first)).await.is_err());
    let mut after = wss_connect(addr, &trusting(&second)).await;
    join(&mut after, "reload-room", "ben").await;
    // ...and the WebSocket opened before the reload keeps working: it sees ben arrive.
    loop {
        if let ServerMessage::PeerJoined { .. } = next_message(&mut before).await {
            break;
        }
    }
    expect_alive(&mut before, "the WebSocket opened before the reload").await;

    // A reload of broken files fails and keeps the current certificate.
    std::fs::write(&cert_path, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    assert!(server.reload_tls().is_err());
    assert_eq!(server.certificate_fingerprint(), Some(fingerprint));
    let tls = tls_connect(addr, &trusting(&second)).await.unwrap();
    assert_eq!(presented(&tls), second);
    expect_alive(&mut before, "the first WebSocket after a failed reload").await;
    expect_alive(&mut after, "the second WebSocket after a failed reload").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_makes_the_binary_reread_its_certificate() {
    let dir = TempDir::new("sighup");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = write_new_certificate(dir.path(), &cert_path, &key_path);
    let server = support::Server::start_with(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let mut ws = wss_connect(server.addr, &trusting(&first)).await;
    join(&mut ws, "hup-room", "ana").await;

    let second = write_new_certificate(dir.path(), &cert_path, &key_path);
    let pid = libc::pid_t::try_from(server.pid()).unwrap();
    // SAFETY: kill(2) with a pid we spawned and own; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let new_client = trusting(&second);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tls_connect(server.addr, &new_client).await {
            Ok(tls) => {
                assert_eq!(presented(&tls), second);
                break;
            }
            Err(e) if Instant::now() > deadline => panic!(
                "the new certificate was not served within 20 s of SIGHUP: {e}\n{}",
                server.log_tail(40)
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    expect_alive(&mut ws, "the WebSocket opened before SIGHUP").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_and_garbage_clients_do_not_hold_up_others() {
    let (_data, server) = https_server("stall");
    let addr = server.local_addr();
    let client = trusting(&read_cert(&server.certificate_path().unwrap()));

    // Clients that connect and say nothing, and one that stops halfway through a ClientHello.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    stalled.push(half);
    // A client that sends garbage gets dropped.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(&[0x16, 0xff, 0xff, 0x00, 0x05, 1, 2, 3, 4, 5, 6, 7, 8])
        .await
        .unwrap();

    // Meanwhile a real client gets through, more than once, and over WebSocket too.
    for _ in 0..3 {
        let (status, _) = https_get(addr, &client, "/").await;
        assert_eq!(status, 200);
    }
    let mut ws = wss_connect(addr, &client).await;
    join(&mut ws, "stall-room", "ana").await;

    // ...while the stalled ones are still waiting: they were not served (or timed out) first.
    for (i, s) in stalled.iter().enumerate() {
        // A non-blocking peek: EAGAIN means open with nothing sent; 0 bytes would mean closed.
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(s).peek(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("stalled client {i} was already answered or closed: {other:?}"),
        }
    }
    let mut sink = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(10), garbage.read_to_end(&mut sink)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "the garbage client was not disconnected within 10 s"
    );
    assert!(
        sink.is_empty() || sink[0] == 0x15,
        "a garbage client gets nothing or a TLS alert, got {sink:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_on_the_https_port_is_redirected() {
    let (_data, server) = https_server("redirect");
    let addr = server.local_addr();
    let (status, _) = support::http_get(addr, "/?room=kitchen&name=ana")
        .await
        .unwrap_or_else(|e| panic!("plain GET on the HTTPS port: {e}"));
    assert_eq!(status, 307);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET /share.html HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert!(
        raw.contains(&format!("Location: https://{addr}/share.html\r\n")),
        "{raw}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn loopback_without_flags_stays_plain_http() {
    let server = Server::start(&settings(&[])).unwrap();
    assert!(
        server.url().starts_with("http://127.0.0.1:"),
        "{}",
        server.url()
    );
    assert_eq!(server.certificate_fingerprint(), None);
    assert!(server.reload_tls().is_err());
    let (status, _) = support::http_get(server.local_addr(), "/").await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_handshakes_are_counted_in_metrics() {
    let (_data, server) = https_server("metrics");
    let addr = server.local_addr();
    let client = trusting(&read_cert(&server.certificate_path().unwrap()));
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(&[0x16, 0xff, 0xff, 0x00, 0x05, 1, 2, 3, 4, 5, 6, 7, 8])
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), garbage.read_to_end(&mut sink)).await;
    let handshakes = |text: &str, result: &str| -> u64 {
        let series = format!("edge_sfu_tls_handshakes_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    // The garbage client's connection may close a moment before its failure is counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = https_get(addr, &client, "/metrics").await;
        assert_eq!(status, 200, "{text}");
        assert!(handshakes(&text, "ok") >= 1, "this request's own handshake");
        if handshakes(&text, "failed") >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the garbage handshake was not counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
