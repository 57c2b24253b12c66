//! Webhooks against a small HTTP receiver in the test: the events of a join / publish / leave
//! sequence arrive in order, each signed with HMAC-SHA256 of its body under the auth secret, and
//! a receiver that fails the first attempts gets the event again until it takes it; a finished
//! recording is announced with its files and counted in `/metrics`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sfu_client::ClientConfig;
use sfu_core::Permissions;
use signaling::auth::{mint_hs256, Claims, Secret};
use support::ops::{scrape, send_audio};
use support::{http, join_with, Server};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

const SECRET: &str = "webhook test secret, thirty-two bytes or more";
const WAIT: Duration = Duration::from_secs(20);

/// One request the receiver got.
#[derive(Debug)]
struct Received {
    /// Header names (lowercase) and values.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A receiver on a free loopback port: answers `500` to the first `failures` requests and `204`
/// to the rest, and hands every request to the channel. Returns its URL.
async fn receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<Received>) {
    receiver_with(failures, None).await
}

/// [`receiver`], speaking TLS with `tls` when given (an `https://` URL then).
async fn receiver_with(
    failures: usize,
    tls: Option<TlsAcceptor>,
) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!(
        "{scheme}://{}/hooks/edge-sfu",
        listener.local_addr().unwrap()
    );
    let (tx, rx) = mpsc::unbounded_channel();
    let left = Arc::new(Mutex::new(failures));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (tx, left, tls) = (tx.clone(), left.clone(), tls.clone());
            tokio::spawn(async move {
                let stream: Box<dyn Stream> = match tls {
                    // A client that does not trust the certificate gives up here.
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(tls) => Box::new(tls),
                        Err(_) => return,
                    },
                    None => Box::new(tcp),
                };
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).await.expect("request line");
                assert!(line.starts_with("POST /hooks/edge-sfu "), "{line}");
                let mut headers = Vec::new();
                loop {
                    line.clear();
                    reader.read_line(&mut line).await.expect("a header");
                    let Some((name, value)) = line.trim_end().split_once(':') else {
                        break;
                    };
                    headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
                }
                let length: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .expect("a content length");
                let mut body = vec![0; length];
                reader.read_exact(&mut body).await.expect("the body");
                let fail = {
                    let mut left = left.lock().unwrap();
                    let fail = *left > 0;
                    *left = left.saturating_sub(1);
                    fail
                };
                let status = if fail {
                    "500 Internal Server Error"
                } else {
                    "204 No Content"
                };
                let answer =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let mut tcp = reader.into_inner();
                let _ = tcp.write_all(answer.as_bytes()).await;
                let _ = tcp.shutdown().await;
                let _ = tx.send(Received { headers, body });
            });
        }
    });
    (url, rx)
}

/// What the receiver reads from: a TCP or TLS stream.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a webhook within 20 s")
        .expect("the receiver runs")
}

fn token(room: &str, name: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = Claims::for_member(room, name, Some(name), Permissions::ALL, false, now, 600)
        .expect("claims");
    mint_hs256(&Secret::new(SECRET).unwrap(), &claims).expect("minting")
}

/// What an event says, in a few words (its kind and whose).
fn summary(event: &Value) -> String {
    let kind = event["event"].as_str().expect("an event name");
    match event.get("peerId") {
        Some(peer) => format!("{kind} {peer}"),
        None => kind.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_and_signed() {
    let (url, mut rx) = receiver(0).await;
    let server = Server::start_with(&["--auth-secret", SECRET, "--webhook-url", &url]);
    let config = |name: &str, audio: bool| {
        ClientConfig::new(server.ws_url(), "hooks", name)
            .audio(audio)
            .video(false)
            .token(token("hooks", name))
    };
    let ana = join_with(config("ana", true)).await;
    let bo = join_with(config("bo", false)).await;
    let (ana_id, bo_id) = (ana.peer_id(), bo.peer_id());
    let ana_track = ana
        .local_tracks()
        .first()
        .and_then(|t| t.server_track_id(ana_id))
        .expect("ana's track id");
    ana.leave().await;
    bo.leave().await;

    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut events = Vec::new();
    let mut ids = Vec::new();
    while events.last().map(summary).as_deref() != Some("room_finished") {
        let got = next(&mut rx).await;
        let signature = got.header("x-edge-sfu-signature").expect("a signature");
        let hex = signature.strip_prefix("sha256=").expect("sha256=<hex>");
        let mac: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        aws_lc_rs::hmac::verify(&key, &got.body, &mac).expect("the HMAC of the body verifies");
        assert_eq!(got.header("content-type"), Some("application/json"));
        let event = got.json();
        assert_eq!(got.header("x-edge-sfu-event-id"), event["eventId"].as_str());
        assert_eq!(event["room"], "hooks");
        ids.push(event["eventId"].as_str().unwrap().to_owned());
        events.push(event);
    }
    let got: Vec<String> = events.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            "room_started".to_owned(),
            format!("participant_joined {ana_id}"),
            format!("track_published {ana_id}"),
            format!("participant_joined {bo_id}"),
            format!("track_unpublished {ana_id}"),
            format!("participant_left {ana_id}"),
            format!("participant_left {bo_id}"),
            "room_finished".to_owned(),
        ]
    );
    assert_eq!(events[1]["name"], "ana");
    assert_eq!(events[2]["trackId"], ana_track);
    assert_eq!(events[2]["kind"], "audio");
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "every event has its own id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_event_again() {
    let (url, mut rx) = receiver(2).await;
    let server = Server::start_with(&["--webhook-url", &url]);
    let config = ClientConfig::new(server.ws_url(), "retry", "cy")
        .audio(false)
        .video(false);
    let cy = join_with(config).await;

    // Two refused attempts, then the same event taken; the next one follows.
    let attempts: Vec<Value> = [
        next(&mut rx).await,
        next(&mut rx).await,
        next(&mut rx).await,
    ]
    .iter()
    .map(Received::json)
    .collect();
    for a in &attempts {
        assert_eq!(a, &attempts[0], "a retry sends the same event");
    }
    assert_eq!(attempts[0]["event"], "room_started");
    let joined = next(&mut rx).await.json();
    assert_eq!(
        summary(&joined),
        format!("participant_joined {}", cy.peer_id())
    );
    assert_ne!(joined["eventId"], attempts[0]["eventId"]);

    let metrics = scrape(server.addr).await;
    let requests = |result| metrics.value("edge_sfu_webhook_requests_total", &[("result", result)]);
    assert_eq!(requests("retried"), 2.0);
    assert_eq!(requests("failed"), 0.0);
    assert_eq!(requests("dropped"), 0.0);
    cy.leave().await;
    server.until_empty(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receivers_are_verified_and_reached() {
    // A receiver with a self-signed certificate for 127.0.0.1, which the server is told to trust
    // through SSL_CERT_FILE (where it looks for trusted roots, as OpenSSL does).
    let self_signed = || rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let generated = self_signed();
    let dir = std::env::temp_dir().join(format!("edge-sfu-webhooks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let roots = dir.join("roots.pem");
    std::fs::write(&roots, generated.cert.pem()).unwrap();
    let other_roots = dir.join("other-roots.pem");
    std::fs::write(&other_roots, self_signed().cert.pem()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(generated.cert.der().to_vec())],
            key,
        )
        .unwrap();
    let (url, mut rx) = receiver_with(0, Some(TlsAcceptor::from(Arc::new(config)))).await;

    // A server that trusts another certificate does not talk to the receiver: it retries.
    let untrusting = Server::start_with_env(
        &["--webhook-url", &url],
        &[("SSL_CERT_FILE", other_roots.to_str().unwrap())],
    );
    let config = ClientConfig::new(untrusting.ws_url(), "insecure", "eve")
        .audio(false)
        .video(false);
    let eve = join_with(config).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = scrape(untrusting.addr).await;
        if metrics.value("edge_sfu_webhook_requests_total", &[("result", "retried")]) >= 1.0 {
            assert_eq!(
                metrics.value(
                    "edge_sfu_webhook_requests_total",
                    &[("result", "delivered")]
                ),
                0.0
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed attempt:\n{}",
            metrics.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rx.try_recv().is_err(), "nothing reached the receiver");
    eve.leave().await;
    drop(untrusting);

    let server = Server::start_with_env(
        &["--webhook-url", &url],
        &[("SSL_CERT_FILE", roots.to_str().unwrap())],
    );
    let config = ClientConfig::new(server.ws_url(), "secure", "di")
        .audio(false)
        .video(false);
    let di = join_with(config).await;
    assert_eq!(next(&mut rx).await.json()["event"], "room_started");
    assert_eq!(
        summary(&next(&mut rx).await.json()),
        format!("participant_joined {}", di.peer_id())
    );
    di.leave().await;
    server.until_empty(WAIT).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_recording_is_announced_with_its_files_and_counted() {
    let (url, mut rx) = receiver(0).await;
    let dir = std::env::temp_dir().join(format!("edge-sfu-hook-rec-{}", std::process::id()));
    let record_dir = dir
        .to_str()
        .expect("a UTF-8 temporary directory")
        .to_owned();
    let server = Server::start_with(&[
        "--auth-secret",
        SECRET,
        "--webhook-url",
        &url,
        "--record-dir",
        &record_dir,
    ]);
    let ana = join_with(
        ClientConfig::new(server.ws_url(), "taped", "ana")
            .audio(true)
            .video(false)
            .token(token("taped", "ana")),
    )
    .await;
    let api = |method: &'static str| {
        let addr = server.addr;
        async move {
            let (status, body) = http(addr, method, "/api/rooms/taped/recording", None)
                .await
                .expect("the recording API answers");
            (
                status,
                serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    let (status, started) = api("POST").await;
    assert_eq!(status, 201, "{started}");
    send_audio(&ana, 100).await;
    let during = scrape(server.addr).await;
    assert_eq!(during.value("edge_sfu_recordings_active", &[]), 1.0);
    let (status, stopped) = api("DELETE").await;
    assert_eq!(status, 200, "{stopped}");
    let files = stopped["files"].clone();
    assert_eq!(files.as_array().map(Vec::len), Some(1), "{stopped}");

    let finished = loop {
        let event = next(&mut rx).await.json();
        if event["event"] == "recording_finished" {
            break event;
        }
    };
    assert_eq!(finished["room"], "taped");
    assert_eq!(finished["id"], started["id"]);
    assert_eq!(
        finished["files"], files,
        "the webhook lists the API's files"
    );
    let after = scrape(server.addr).await;
    assert_eq!(after.value("edge_sfu_recordings_active", &[]), 0.0);
    assert_eq!(after.value("edge_sfu_recordings_started_total", &[]), 1.0);
    let written = after.value("edge_sfu_recording_bytes_written_total", &[]);
    let on_disk = std::fs::metadata(files[0].as_str().expect("a path"))
        .expect("the file exists")
        .len();
    assert!(
        written >= on_disk as f64 * 0.9,
        "{written} bytes counted, the file has {on_disk}"
    );
    ana.leave().await;
    let _ = std::fs::remove_dir_all(&dir);
}
