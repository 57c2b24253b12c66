//! Webhooks: room events POSTed as JSON to every `--webhook-url`, signed, retried with backoff.
//!
//! Workers hand events to a [`WebhookSender`] (a bounded queue: a full queue drops the event,
//! counts it and logs it, and never blocks a worker). One task ([`Webhooks::run`], in the
//! signaling runtime) delivers them in order: to each URL in turn, up to [`MAX_ATTEMPTS`] times
//! with exponential backoff from [`FIRST_RETRY`], until the receiver answers 2xx. A receiver that
//! is down delays the events behind the one being retried (order is kept); past the queue's
//! capacity new events are dropped.
//!
//! Each request carries `X-Edge-Sfu-Event-Id`, `X-Edge-Sfu-Timestamp` (Unix seconds, also in the
//! body) and, when the server has a secret, `X-Edge-Sfu-Signature: sha256=<hex>`: the HMAC-SHA256
//! of the exact body bytes under the secret. `https://` receivers are verified against the
//! system's trusted roots (or `SSL_CERT_FILE` / `SSL_CERT_DIR`, when set).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use sfu_core::RoomEvent;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

use crate::server::unix_now;

/// Events waiting for delivery before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 1024;
/// Attempts per event and URL.
pub const MAX_ATTEMPTS: u32 = 5;
/// The wait before the first retry; it doubles for each one after (0.5, 1, 2, 4 s).
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// How long one attempt (connect, send, answer) may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-edge-sfu-signature";

/// A recording ended; its files are complete.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename = "recording_finished", rename_all = "camelCase")]
pub struct RecordingFinished {
    /// The room recorded.
    pub room: String,
    /// The recording's id.
    pub id: String,
    /// The files written, as paths on the server.
    pub files: Vec<String>,
}

/// What a webhook tells: an event from a room, or from another part of the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Notification {
    /// From a worker's core.
    Room(RoomEvent),
    /// From the recorder.
    RecordingFinished(RecordingFinished),
}

impl From<RoomEvent> for Notification {
    fn from(event: RoomEvent) -> Self {
        Notification::Room(event)
    }
}

impl From<RecordingFinished> for Notification {
    fn from(event: RecordingFinished) -> Self {
        Notification::RecordingFinished(event)
    }
}

/// The body of one webhook request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    /// Unique per event (the same on every retry and every URL).
    event_id: &'a str,
    /// When the event was sent to the queue, Unix seconds.
    timestamp: u64,
    #[serde(flatten)]
    notification: &'a Notification,
}

/// What became of events, for `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookCounters {
    /// Requests a receiver answered with 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed and were retried.
    pub retried: AtomicU64,
    /// Deliveries given up after [`MAX_ATTEMPTS`].
    pub failed: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// Why the webhook configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not an `http(s)://host[:port]/path` URL.
    #[error("webhook URL {0:?}: {1}")]
    BadUrl(String, &'static str),
    /// An `https://` URL, and no trusted root certificate to verify it with.
    #[error("no trusted root certificates to verify https webhook receivers with ({0}); set SSL_CERT_FILE")]
    NoRoots(String),
}

/// Where workers (or any other part of the server) hand events. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    queue: mpsc::Sender<(u64, Notification)>,
    counters: Arc<WebhookCounters>,
}

impl WebhookSender {
    /// Queues `event` for every webhook URL; never waits. A full queue drops it (counted, logged).
    pub fn notify(&self, event: impl Into<Notification>) {
        if let Err(e) = self.queue.try_send((unix_now(), event.into())) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, "webhook queue full or closed: event dropped");
        }
    }

    /// What became of events so far.
    pub fn counters(&self) -> &WebhookCounters {
        &self.counters
    }
}

/// One receiver.
#[derive(Debug, Clone)]
struct Endpoint {
    uri: Uri,
    host: String,
    port: u16,
    /// `https://`: TLS, verified against the trusted roots.
    tls: bool,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, WebhookError> {
        let bad = |why| WebhookError::BadUrl(url.to_owned(), why);
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("the URL must start with http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        Ok(Endpoint {
            host: authority.host().trim_matches(['[', ']']).to_owned(),
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            tls,
            uri,
        })
    }
}

/// The delivery task's state: the receivers, the key, the queue.
pub struct Webhooks {
    endpoints: Vec<Endpoint>,
    /// For `https://` receivers.
    tls: Option<TlsConnector>,
    key: Option<hmac::Key>,
    queue: mpsc::Receiver<(u64, Notification)>,
    counters: Arc<WebhookCounters>,
    /// Random per process, so event ids do not repeat across restarts.
    id_prefix: String,
    next_id: u64,
}

/// Checks `urls` and makes the queue: the sender for the workers, the task for the signaling
/// runtime. `secret` signs each body; `None` sends them unsigned.
pub fn channel(
    urls: &[String],
    secret: Option<&[u8]>,
) -> Result<(WebhookSender, Webhooks), WebhookError> {
    let endpoints = urls
        .iter()
        .map(|u| Endpoint::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    let tls = if endpoints.iter().any(|e| e.tls) {
        Some(tls_connector()?)
    } else {
        None
    };
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let counters = Arc::new(WebhookCounters::default());
    let mut prefix = [0u8; 6];
    // Without randomness ids still differ within a run; only across restarts could they repeat.
    let _ = aws_lc_rs::rand::fill(&mut prefix);
    Ok((
        WebhookSender {
            queue: tx,
            counters: counters.clone(),
        },
        Webhooks {
            endpoints,
            tls,
            key: secret.map(|s| hmac::Key::new(hmac::HMAC_SHA256, s)),
            queue: rx,
            counters,
            id_prefix: hex(&prefix),
            next_id: 1,
        },
    ))
}

/// A TLS client trusting the system's roots (or those `SSL_CERT_FILE` / `SSL_CERT_DIR` name).
fn tls_connector() -> Result<TlsConnector, WebhookError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(WebhookError::NoRoots(why));
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::NoRoots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// `sha256=<hex>` of `body` under `key`: the signature header's value.
pub fn signature(key: &hmac::Key, body: &[u8]) -> String {
    format!("sha256={}", hex(hmac::sign(key, body).as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Webhooks {
    /// Delivers events until every sender is gone.
    pub async fn run(mut self) {
        info!(
            urls = self.endpoints.len(),
            signed = self.key.is_some(),
            "webhooks on"
        );
        while let Some((timestamp, notification)) = self.queue.recv().await {
            let id = format!("{}-{}", self.id_prefix, self.next_id);
            self.next_id += 1;
            let envelope = Envelope {
                event_id: &id,
                timestamp,
                notification: &notification,
            };
            let Ok(body) = serde_json::to_vec(&envelope) else {
                continue;
            };
            let body = Bytes::from(body);
            let signature = self.key.as_ref().map(|k| signature(k, &body));
            for endpoint in &self.endpoints {
                self.deliver(endpoint, &id, timestamp, signature.as_deref(), &body)
                    .await;
            }
        }
    }

    /// Posts one event to one receiver, retrying with backoff.
    async fn deliver(
        &self,
        endpoint: &Endpoint,
        id: &str,
        timestamp: u64,
        signature: Option<&str>,
        body: &Bytes,
    ) {
        let mut wait = FIRST_RETRY;
        for attempt in 1..=MAX_ATTEMPTS {
            let request = request(endpoint, id, timestamp, signature, body.clone());
            let sent = tokio::time::timeout(ATTEMPT_TIMEOUT, self.post(endpoint, request))
                .await
                .unwrap_or_else(|_| Err("timed out".into()));
            match sent {
                Ok(()) => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    debug!(event = id, url = %endpoint.uri, attempt, "webhook delivered");
                    return;
                }
                Err(e) if attempt < MAX_ATTEMPTS => {
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    debug!(event = id, url = %endpoint.uri, attempt, error = %e, "webhook attempt failed, retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    warn!(event = id, url = %endpoint.uri, error = %e, "webhook not delivered, giving up");
                }
            }
        }
    }

    /// Sends `request` to `endpoint` on a fresh connection (TLS for `https://`); `Ok` for a 2xx
    /// answer.
    async fn post(
        &self,
        endpoint: &Endpoint,
        request: Result<Request<Full<Bytes>>, String>,
    ) -> Result<(), String> {
        let request = request?;
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        if !endpoint.tls {
            return exchange(tcp, request).await;
        }
        let connector = self.tls.as_ref().ok_or("no TLS client")?;
        let name =
            ServerName::try_from(endpoint.host.clone()).map_err(|e| format!("server name: {e}"))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(tls, request).await
    }
}

/// The POST request of one event to `endpoint`.
fn request(
    endpoint: &Endpoint,
    id: &str,
    timestamp: u64,
    signature: Option<&str>,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let path = endpoint
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut request = Request::post(path)
        .header(HOST, endpoint.uri.authority().map_or("", |a| a.as_str()))
        .header(CONTENT_TYPE, "application/json")
        .header("x-edge-sfu-event-id", id)
        .header("x-edge-sfu-timestamp", timestamp.to_string());
    if let Some(signature) = signature {
        request = request.header(SIGNATURE_HEADER, signature);
    }
    request
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))
}

/// One HTTP/1.1 exchange on `io`; `Ok` for a 2xx answer.
async fn exchange<S>(io: S, request: Request<Full<Bytes>>) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status();
    // Read the answer to the end so the receiver sees a clean exchange.
    let _ = response.into_body().collect().await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_with_a_host_are_accepted() {
        assert!(Endpoint::parse("http://127.0.0.1:9000/hook").is_ok());
        let e = Endpoint::parse("http://[::1]/").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls), ("::1", 80, false));
        let e = Endpoint::parse("https://hooks.example/edge").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("hooks.example", 443, true)
        );
        for bad in ["ftp://x/", "/relative", "not a url"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_signature_is_the_hmac_of_the_body() {
        // RFC 4231 test case 2.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            signature(&key, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_envelope_flattens_the_event() {
        let n = Notification::from(RecordingFinished {
            room: "r".into(),
            id: "rec1".into(),
            files: vec!["/data/rec1.webm".into()],
        });
        let body = serde_json::to_value(Envelope {
            event_id: "x-1",
            timestamp: 7,
            notification: &n,
        })
        .unwrap();
        assert_eq!(body["event"], "recording_finished");
        assert_eq!(body["eventId"], "x-1");
        assert_eq!(body["id"], "rec1");
        assert_eq!(body["files"][0], "/data/rec1.webm");
    }
}
