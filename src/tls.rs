//! HTTPS and WSS: whether the HTTP server speaks TLS, the certificate it presents (reloadable
//! without dropping connections), and the listener that does the TLS handshakes for `axum::serve`.
//!
//! Browsers give a page the camera and microphone only in a secure context. `http://127.0.0.1` is
//! one, a LAN address over plain HTTP is not, so anything listening beyond loopback speaks TLS
//! unless told otherwise (see [`HttpTransport::choose`]).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use signaling::metrics::TlsCounters;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error};

use crate::certificate::{self, CertificateError, LoadedCertificate, SubjectNames};

/// How long a client may take from TCP accept to a finished TLS handshake (or, on the TLS port,
/// to a plain HTTP request head that gets redirected). A client that stalls longer is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many handshakes may be under way at once. Beyond that, new connections wait in the
/// kernel's accept queue until one finishes or times out: memory stays bounded under a flood.
pub const MAX_PENDING_HANDSHAKES: usize = 512;

/// The largest plain HTTP request head read on the TLS port before answering with a redirect.
const MAX_REDIRECT_HEAD_BYTES: usize = 8 * 1024;

/// Why TLS could not be set up, or a reload failed.
#[derive(Debug, Error)]
pub enum TlsError {
    /// `--tls-cert` without `--tls-key`, or the other way round.
    #[error("--tls-cert and --tls-key go together: give both or neither")]
    IncompleteCertificate,
    /// Two settings that contradict each other.
    #[error("{0} and --insecure-http contradict each other")]
    Contradiction(&'static str),
    /// The certificate could not be read, generated or stored.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// A reload was asked of a server without TLS.
    #[error("the server speaks plain HTTP: there is no certificate to reload")]
    NotEnabled,
}

/// How the HTTP/WebSocket server speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpTransport {
    /// Plain HTTP. `exposed` is true on a non-loopback address (only with `--insecure-http`),
    /// where browsers refuse the camera and microphone.
    Plain {
        /// Listening beyond loopback.
        exposed: bool,
    },
    /// HTTPS with the certificate and key in these PEM files (`--tls-cert`, `--tls-key`).
    TlsFromFiles {
        /// Certificate chain, end-entity first.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// HTTPS with the self-signed certificate kept in the data directory.
    TlsGenerated,
}

/// The TLS-related settings, as given.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransportOptions<'a> {
    /// `--tls-cert`.
    pub tls_cert: Option<&'a Path>,
    /// `--tls-key`.
    pub tls_key: Option<&'a Path>,
    /// `--https`: TLS on loopback too.
    pub https: bool,
    /// `--insecure-http`: plain HTTP on a non-loopback address.
    pub insecure_http: bool,
}

impl HttpTransport {
    /// Decides how a server listening on `listen` speaks:
    /// a given certificate always means HTTPS with it; `--https` means HTTPS (generated
    /// certificate unless one is given); `--insecure-http` means plain HTTP; otherwise loopback
    /// stays plain HTTP (already a secure context for browsers) and any other address gets HTTPS
    /// with the generated certificate.
    pub fn choose(listen: SocketAddr, options: TransportOptions<'_>) -> Result<Self, TlsError> {
        let files = match (options.tls_cert, options.tls_key) {
            (Some(cert), Some(key)) => Some((cert.to_path_buf(), key.to_path_buf())),
            (None, None) => None,
            _ => return Err(TlsError::IncompleteCertificate),
        };
        if options.insecure_http {
            if files.is_some() {
                return Err(TlsError::Contradiction("--tls-cert"));
            }
            if options.https {
                return Err(TlsError::Contradiction("--https"));
            }
        }
        Ok(match files {
            Some((cert, key)) => HttpTransport::TlsFromFiles { cert, key },
            None if options.https => HttpTransport::TlsGenerated,
            None if options.insecure_http || listen.ip().is_loopback() => HttpTransport::Plain {
                exposed: !listen.ip().is_loopback(),
            },
            None => HttpTransport::TlsGenerated,
        })
    }

    /// Whether this is HTTPS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, HttpTransport::Plain { .. })
    }
}

/// The certificate the server presents, swappable while it runs: rustls asks it for the
/// certificate at every handshake, so after [`ServerCertificate::reload`] new connections get the
/// new one while established connections (and their WebSockets) carry on untouched.
#[derive(Debug)]
struct SwappableCertificate {
    current: RwLock<LoadedCertificate>,
}

impl SwappableCertificate {
    fn get(&self) -> LoadedCertificate {
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the value is whole.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, loaded: LoadedCertificate) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
    }
}

impl ResolvesServerCert for SwappableCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get().certified)
    }
}

/// Where the certificate comes from, which is also where a reload reads it again.
#[derive(Debug, Clone)]
enum CertificateOrigin {
    Files { cert: PathBuf, key: PathBuf },
    Generated { data_dir: PathBuf },
}

/// The server's TLS certificate and the rustls configuration that presents it.
#[derive(Debug)]
pub struct ServerCertificate {
    origin: CertificateOrigin,
    provider: Arc<CryptoProvider>,
    swappable: Arc<SwappableCertificate>,
}

impl ServerCertificate {
    /// The certificate for `transport`: read from its files, or the generated one in `data_dir`
    /// (generated and stored there if missing). `None` for plain HTTP.
    pub fn open(
        transport: &HttpTransport,
        data_dir: Option<&Path>,
    ) -> Result<Option<ServerCertificate>, TlsError> {
        // Named explicitly rather than rustls' process default: the crate graph must never pick
        // another provider behind our back, and aws-lc-rs is what str0m already builds.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (origin, loaded) = match transport {
            HttpTransport::Plain { .. } => return Ok(None),
            HttpTransport::TlsFromFiles { cert, key } => (
                CertificateOrigin::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                certificate::load_pem_files(cert, key, &provider)?,
            ),
            HttpTransport::TlsGenerated => {
                let data_dir = match data_dir {
                    Some(dir) => dir.to_path_buf(),
                    None => certificate::default_data_dir()?,
                };
                let loaded = certificate::load_or_generate(
                    &data_dir,
                    &SubjectNames::of_this_machine(),
                    &provider,
                )?;
                (CertificateOrigin::Generated { data_dir }, loaded)
            }
        };
        Ok(Some(ServerCertificate {
            origin,
            provider,
            swappable: Arc::new(SwappableCertificate {
                current: RwLock::new(loaded),
            }),
        }))
    }

    /// SHA-256 fingerprint of the certificate presented now (`AB:CD:...`).
    pub fn fingerprint(&self) -> String {
        self.swappable.get().fingerprint
    }

    /// The PEM file of the certificate presented now.
    pub fn cert_path(&self) -> PathBuf {
        self.swappable.get().cert_path
    }

    /// Whether the certificate is the generated self-signed one.
    pub fn is_generated(&self) -> bool {
        matches!(self.origin, CertificateOrigin::Generated { .. })
    }

    /// Reads the certificate files again and presents them to every new connection; existing
    /// connections keep theirs. On failure the current certificate stays. Returns the new
    /// fingerprint. (The generated certificate is reread from the data directory, not
    /// regenerated.)
    pub fn reload(&self) -> Result<String, TlsError> {
        let loaded = match &self.origin {
            CertificateOrigin::Files { cert, key } => {
                certificate::load_pem_files(cert, key, &self.provider)?
            }
            CertificateOrigin::Generated { data_dir } => certificate::load_pem_files(
                &data_dir.join(certificate::GENERATED_CERTIFICATE_FILE),
                &data_dir.join(certificate::GENERATED_KEY_FILE),
                &self.provider,
            )?,
        };
        let fingerprint = loaded.fingerprint.clone();
        self.swappable.set(loaded);
        Ok(fingerprint)
    }

    /// The acceptor for the HTTP server: TLS 1.2 and 1.3, HTTP/1.1 by ALPN (the server and the
    /// WebSocket upgrade are HTTP/1.1), this certificate through every reload.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.swappable.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// A TLS listener for `axum::serve`: accepts TCP connections and runs each TLS handshake in its
/// own task with a deadline, handing over finished streams in the order they finish. A client
/// that connects and stalls, or sends garbage, costs one task until [`HANDSHAKE_TIMEOUT`] and
/// never holds up anyone else. A plain HTTP request on this port is answered with a redirect to
/// the `https://` URL (someone typed `192.168.1.20:8080` on a phone).
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    counters: Arc<TlsCounters>,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    /// Wraps a bound TCP listener; counts handshakes in `counters`.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor, counters: Arc<TlsCounters>) -> Self {
        TlsListener {
            tcp,
            acceptor,
            counters,
            handshakes: JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Cancel safety: axum drops this future when shutting down. Both branches are
        // cancel-safe (TcpListener::accept, JoinSet::join_next), and a handshake is put into the
        // set in the same poll its TCP accept completes, so no connection is lost in between.
        loop {
            tokio::select! {
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    match done {
                        Ok(Some(established)) => return established,
                        Ok(None) => {}
                        Err(e) => error!("a TLS handshake task failed: {e}"),
                    }
                }
                accepted = self.tcp.accept(), if self.handshakes.len() < MAX_PENDING_HANDSHAKES => {
                    match accepted {
                        Ok((tcp, peer)) => {
                            let acceptor = self.acceptor.clone();
                            let counters = self.counters.clone();
                            self.handshakes.spawn(establish(acceptor, tcp, peer, counters));
                        }
                        Err(e) => on_accept_error(e).await,
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// What axum's own TCP listener does on accept errors: a connection that died before we got it
/// is nothing; anything else (out of file descriptors) gets logged and a pause, not a busy loop.
async fn on_accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    error!("accepting a connection: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Runs one connection's TLS handshake (or plain HTTP redirect) under [`HANDSHAKE_TIMEOUT`].
async fn establish(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    counters: Arc<TlsCounters>,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    // Signaling messages are small and latency matters more than packet count.
    let _ = tcp.set_nodelay(true);
    let attempt = async {
        // A TLS connection starts with a handshake record (content type 22); a plain HTTP one
        // with a method name in ASCII.
        let mut first = [0u8; 1];
        let n = tcp.peek(&mut first).await?;
        if n == 1 && first[0].is_ascii_uppercase() {
            redirect_to_https(tcp).await?;
            return Ok(None);
        }
        acceptor.accept(tcp).await.map(Some)
    };
    let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await;
    let counter = match &outcome {
        Ok(Ok(Some(_))) => Some(&counters.established),
        Ok(Ok(None)) => None,
        Ok(Err(_)) | Err(_) => Some(&counters.failed),
    };
    if let Some(c) = counter {
        c.fetch_add(1, Ordering::Relaxed);
    }
    match outcome {
        Ok(Ok(Some(stream))) => Some((stream, peer)),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            // Also what a browser that does not trust the certificate (yet) looks like.
            debug!(%peer, "TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Answers a plain HTTP request that reached the TLS port with `307` to the same URL over HTTPS.
async fn redirect_to_https(mut tcp: TcpStream) -> io::Result<()> {
    // On a dual-stack listener an IPv4 client reached a v4-mapped address: name the IPv4 one.
    let local = crate::net::canonical(tcp.local_addr()?);
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_REDIRECT_HEAD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "plain HTTP request head too large",
            ));
        }
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let location = https_location(&String::from_utf8_lossy(&head), local);
    debug!(%location, "plain HTTP request on the HTTPS port: redirecting");
    let response = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(response.as_bytes()).await?;
    tcp.shutdown().await
}

/// The `https://` URL for a plain HTTP request head: its Host header (when it is a plain
/// host[:port]) or else the address it reached, and its path (when it is an origin-form path).
/// Anything odd is replaced rather than echoed, so the answer cannot be used to inject headers.
fn https_location(head: &str, local: SocketAddr) -> String {
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|request_line| request_line.split(' ').nth(1))
        .filter(|p| {
            p.starts_with('/') && p.len() <= 2048 && p.bytes().all(|b| b.is_ascii_graphic())
        })
        .unwrap_or("/");
    let host = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .map_or_else(|| local.to_string(), str::to_string);
    format!("https://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(listen: &str, options: TransportOptions<'_>) -> Result<HttpTransport, TlsError> {
        HttpTransport::choose(listen.parse().unwrap(), options)
    }

    #[test]
    fn loopback_stays_plain_http_and_other_addresses_get_https() {
        let none = TransportOptions::default();
        assert_eq!(
            choose("127.0.0.1:8080", none).unwrap(),
            HttpTransport::Plain { exposed: false }
        );
        assert_eq!(
            choose("[::1]:8080", none).unwrap(),
            HttpTransport::Plain { exposed: false }
        );
        assert_eq!(
            choose("0.0.0.0:8080", none).unwrap(),
            HttpTransport::TlsGenerated
        );
        assert_eq!(
            choose("192.168.1.20:8080", none).unwrap(),
            HttpTransport::TlsGenerated
        );
    }

    #[test]
    fn https_forces_tls_on_loopback() {
        let https = TransportOptions {
            https: true,
            ..TransportOptions::default()
        };
        assert_eq!(
            choose("127.0.0.1:0", https).unwrap(),
            HttpTransport::TlsGenerated
        );
    }

    #[test]
    fn insecure_http_allows_plain_http_beyond_loopback() {
        let insecure = TransportOptions {
            insecure_http: true,
            ..TransportOptions::default()
        };
        assert_eq!(
            choose("0.0.0.0:8080", insecure).unwrap(),
            HttpTransport::Plain { exposed: true }
        );
        assert_eq!(
            choose("127.0.0.1:8080", insecure).unwrap(),
            HttpTransport::Plain { exposed: false }
        );
        let both = TransportOptions {
            insecure_http: true,
            https: true,
            ..TransportOptions::default()
        };
        assert!(matches!(
            choose("0.0.0.0:8080", both),
            Err(TlsError::Contradiction(_))
        ));
    }

    #[test]
    fn given_certificate_files_mean_https_everywhere() {
        let (cert, key) = (Path::new("/c.pem"), Path::new("/k.pem"));
        let files = TransportOptions {
            tls_cert: Some(cert),
            tls_key: Some(key),
            ..TransportOptions::default()
        };
        let expected = HttpTransport::TlsFromFiles {
            cert: cert.into(),
            key: key.into(),
        };
        assert_eq!(choose("127.0.0.1:8080", files).unwrap(), expected);
        assert_eq!(choose("0.0.0.0:8080", files).unwrap(), expected);
        let half = TransportOptions {
            tls_cert: Some(cert),
            ..TransportOptions::default()
        };
        assert!(matches!(
            choose("0.0.0.0:8080", half),
            Err(TlsError::IncompleteCertificate)
        ));
        let insecure = TransportOptions {
            insecure_http: true,
            ..files
        };
        assert!(matches!(
            choose("0.0.0.0:8080", insecure),
            Err(TlsError::Contradiction(_))
        ));
    }

    #[test]
    fn redirect_location_keeps_host_and_path_and_refuses_odd_ones() {
        let local: SocketAddr = "192.0.2.2:8443".parse().unwrap();
        assert_eq!(
            https_location(
                "GET /?room=a&name=b HTTP/1.1\r\nHost: 192.0.2.2:8443\r\n\r\n",
                local
            ),
            "https://192.0.2.2:8443/?room=a&name=b"
        );
        assert_eq!(
            https_location("GET http://evil/ HTTP/1.1\r\nhost: a b\r\n\r\n", local),
            "https://192.0.2.2:8443/"
        );
        assert_eq!(
            https_location("GET / HTTP/1.0\r\n\r\n", local),
            "https://192.0.2.2:8443/"
        );
    }
}
