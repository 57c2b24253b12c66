//! The HTTP + WebSocket server: pages, `/api/stats`, and one task per WebSocket connection that
//! enforces the limits, parses the protocol and relays to the room's worker.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use sfu_core::protocol::{ClientMessage, ErrorCode, PeerId, ServerMessage};
use sfu_core::{Permissions, StatsSnapshot};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{interval, sleep_until, Duration};
use tracing::{debug, info, Instrument};

use crate::assets;
use crate::auth::{AuthError, Authenticator};
use crate::dispatch::{Dispatch, PlaceError, WorkerCommand, OUTBOX_CAPACITY};
use crate::ice_servers::IceServers;
use crate::join_limit::{JoinLimit, JoinLimiter};
use crate::limits::{
    RateLimiter, IDLE_TIMEOUT, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, MAX_REFUSALS, READ_BUFFER_BYTES,
};
use crate::metrics::{MetricsSource, TlsCounters};
use crate::revocation::Revocations;
use crate::server_joins::{ServerJoins, DEFAULT_SERVER_JOIN_LIMIT};
use crate::shutdown::Stopping;
use crate::token_life::{TokenDue, TokenLife};
use crate::webhooks::WebhookSender;

/// Messages refused on WebSockets, by reason.
#[derive(Debug, Default)]
pub struct SignalingCounters {
    bad_message: AtomicU64,
    too_large: AtomicU64,
    rate_limited: AtomicU64,
    /// Joins refused by the room token check, by [`AuthError`] kind.
    auth_required: AtomicU64,
    token_expired: AtomicU64,
    token_not_yet_valid: AtomicU64,
    bad_token: AtomicU64,
    wrong_room: AtomicU64,
    token_revoked: AtomicU64,
    /// Members removed because their token ran out, or was revoked while they were in.
    member_token_expired: AtomicU64,
    member_token_revoked: AtomicU64,
    /// `refresh` messages refused (bad token, another room or member, not later).
    refresh_refused: AtomicU64,
    /// Joins refused by the per-address join limit.
    pub(crate) join_rate_limited: AtomicU64,
    /// Joins refused by the server-wide join limit or because the worker was full.
    pub(crate) server_busy: AtomicU64,
    /// Plain RTP API requests refused (no loopback caller, no admin token).
    pub(crate) api_refused: AtomicU64,
}

impl SignalingCounters {
    pub(crate) fn snapshot(&self) -> [(&'static str, u64); 15] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("ws_bad_message", n(&self.bad_message)),
            ("ws_too_large", n(&self.too_large)),
            ("ws_rate_limited", n(&self.rate_limited)),
            ("auth_required", n(&self.auth_required)),
            ("token_expired", n(&self.token_expired)),
            ("token_not_yet_valid", n(&self.token_not_yet_valid)),
            ("bad_token", n(&self.bad_token)),
            ("wrong_room", n(&self.wrong_room)),
            ("token_revoked", n(&self.token_revoked)),
            ("member_token_expired", n(&self.member_token_expired)),
            ("member_token_revoked", n(&self.member_token_revoked)),
            ("refresh_refused", n(&self.refresh_refused)),
            ("join_rate_limited", n(&self.join_rate_limited)),
            ("server_busy", n(&self.server_busy)),
            ("api_refused", n(&self.api_refused)),
        ]
    }

    pub(crate) fn count_auth(&self, e: &AuthError) {
        let counter = match e {
            AuthError::Required => &self.auth_required,
            AuthError::Expired => &self.token_expired,
            AuthError::NotYetValid => &self.token_not_yet_valid,
            AuthError::Bad(_) => &self.bad_token,
            AuthError::WrongRoom => &self.wrong_room,
            AuthError::Revoked => &self.token_revoked,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Shared state of the server.
#[derive(Debug)]
pub struct AppState {
    /// The workers and room placement.
    pub dispatch: Dispatch,
    /// WebSocket refusals.
    pub counters: SignalingCounters,
    /// STUN/TURN servers handed to each participant on join.
    ice_servers: IceServers,
    /// Which worker holds each plain RTP leg.
    legs: Mutex<HashMap<u64, Leg>>,
    /// Room token keys; `None`: rooms are open to anyone who can reach the server.
    pub(crate) auth: Option<Authenticator>,
    /// Join attempts per client address.
    pub(crate) join_limiter: JoinLimiter,
    /// The WHIP publishers' and WHEP viewers' sessions.
    pub(crate) whip: crate::whip::WhipSessions,
    /// TLS handshakes of the HTTPS listener (the binary's listener counts them).
    pub tls: Arc<TlsCounters>,
    /// Where room events go, when webhooks are configured (for their counters).
    pub(crate) webhooks: Option<WebhookSender>,
    /// Other parts' counters for `/metrics`.
    pub(crate) metrics_sources: Vec<Arc<dyn MetricsSource>>,
    /// Joins across all addresses.
    pub(crate) server_joins: ServerJoins,
    /// Revoked room tokens.
    pub revocations: Revocations,
    /// Whether the server is stopping ([`crate::shutdown::stop`]).
    pub stopping: Stopping,
    /// This node's part in a cluster (`--cluster`).
    pub cluster: Option<crate::cluster_api::ClusterNode>,
}

/// Where a plain RTP leg lives.
#[derive(Debug, Clone)]
pub struct Leg {
    /// The worker holding it.
    pub worker: usize,
    /// For an ingest, the room it holds a placement in.
    pub room: Option<String>,
}

impl AppState {
    /// State over these workers: open rooms, the default join limit.
    pub fn new(dispatch: Dispatch) -> Self {
        AppState {
            dispatch,
            counters: SignalingCounters::default(),
            ice_servers: IceServers::default(),
            legs: Mutex::new(HashMap::new()),
            auth: None,
            join_limiter: JoinLimiter::new(JoinLimit::default()),
            whip: crate::whip::WhipSessions::default(),
            tls: Arc::default(),
            webhooks: None,
            metrics_sources: Vec::new(),
            server_joins: ServerJoins::new(DEFAULT_SERVER_JOIN_LIMIT, Instant::now()),
            revocations: Revocations::default(),
            stopping: Stopping::default(),
            cluster: None,
        }
    }

    /// Adds `source`'s counters to `/metrics`.
    pub fn with_metrics_source(mut self, source: Arc<dyn MetricsSource>) -> Self {
        self.metrics_sources.push(source);
        self
    }

    /// Makes the server a node of a cluster: `/api/cluster`, `/api/drain`, joins refused while
    /// it drains.
    pub fn with_cluster(mut self, node: crate::cluster_api::ClusterNode) -> Self {
        self.cluster = Some(node);
        self
    }

    /// Shows the counters of these webhooks in `/metrics`.
    pub fn with_webhooks(mut self, webhooks: WebhookSender) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// Checks `token` for a join to `room` now with `auth`'s keys, refusing a revoked one (for
    /// every kind of join: WebSocket, WHIP, WHEP).
    pub(crate) fn admit_token(
        &self,
        auth: &Authenticator,
        room: &str,
        token: Option<&str>,
    ) -> Result<crate::auth::Grant, AuthError> {
        let grant = auth.admit_join(room, token, unix_now())?;
        match &grant.token_id {
            Some(id) if self.revocations.is_revoked(id) => Err(AuthError::Revoked),
            _ => Ok(grant),
        }
    }

    /// Limits joins across all client addresses together to `limit`.
    pub fn with_server_join_limit(mut self, limit: JoinLimit) -> Self {
        self.server_joins = ServerJoins::new(limit, Instant::now());
        self
    }

    /// Hands these STUN/TURN servers to every participant that joins.
    pub fn with_ice_servers(mut self, ice_servers: IceServers) -> Self {
        self.ice_servers = ice_servers;
        self
    }

    /// Requires a room token, checked with these keys, to join.
    pub fn with_auth(mut self, auth: Authenticator) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Limits join attempts per client address to `limit`.
    pub fn with_join_limit(mut self, limit: JoinLimit) -> Self {
        self.join_limiter = JoinLimiter::new(limit);
        self
    }

    pub(crate) fn remember(&self, id: u64, leg: Leg) {
        self.legs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, leg);
    }

    pub(crate) fn leg(&self, id: u64) -> Option<Leg> {
        self.legs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    pub(crate) fn forget(&self, id: u64) {
        self.legs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// The router serving pages, `/ws` and `/api/stats`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ws", get(ws_upgrade))
        .route("/api/stats", get(stats))
        .merge(crate::api::routes())
        .merge(crate::whip::routes())
        .merge(crate::recording_api::routes())
        .merge(crate::admin::routes())
        .merge(crate::metrics::routes())
        .merge(crate::revoke_api::routes())
        .merge(crate::cluster_api::routes())
        .fallback(get(asset))
        .with_state(state)
}

async fn asset(uri: Uri) -> Response {
    match assets::find(uri.path()) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `/api/stats`: server-wide totals and one entry per worker.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    #[serde(flatten)]
    total: StatsSnapshot,
    workers: Vec<WorkerStats>,
}

/// One worker's share of `/api/stats`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WorkerStats {
    /// The worker's index (the `worker` label of `/metrics`).
    #[serde(skip)]
    pub(crate) index: usize,
    media_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    ice_tcp_port: Option<u16>,
    #[serde(flatten)]
    pub(crate) stats: StatsSnapshot,
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<Stats> {
    let (total, workers) = collect_stats(&state).await;
    Json(Stats { total, workers })
}

/// How long a worker may take to report its counters.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks every worker for its counters; returns the totals and each worker's share.
pub(crate) async fn collect_stats(state: &AppState) -> (StatsSnapshot, Vec<WorkerStats>) {
    let mut total = StatsSnapshot {
        drops: BTreeMap::new(),
        ..StatsSnapshot::default()
    };
    let mut workers = Vec::new();
    for (i, w) in state.dispatch.workers().iter().enumerate() {
        let (reply, answer) = oneshot::channel();
        if !state.dispatch.send(i, WorkerCommand::Stats { reply }) {
            continue;
        }
        // A stuck worker leaves a gap in the numbers rather than hanging every scrape.
        if let Ok(Ok(s)) = tokio::time::timeout(STATS_TIMEOUT, answer).await {
            total.merge(&s);
            workers.push(WorkerStats {
                index: i,
                media_port: w.media_port,
                ice_tcp_port: w.ice_tcp_port,
                stats: s,
            });
        }
    }
    for (reason, n) in state.counters.snapshot() {
        if n > 0 {
            total.drops.insert(reason, n);
        }
    }
    (total, workers)
}

async fn ws_upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    State(state): State<Arc<AppState>>,
) -> Response {
    // Messages are written as they come (signaling is sparse), so no write buffer is kept.
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            let span = tracing::info_span!("ws", %addr);
            Connection::new(state, addr).run(socket).instrument(span)
        })
}

/// Where a connection stands with respect to a room.
enum Membership {
    /// No join yet, or the last peer left.
    Outside,
    /// Joined (or joining, until `joined` came back) `room` on `worker` as `peer`.
    Inside {
        peer: PeerId,
        room: String,
        worker: usize,
        outbox: mpsc::Receiver<ServerMessage>,
        joined: bool,
        /// The room token it joined with (or refreshed to); `None` in an open room.
        token: Option<TokenLife>,
    },
}

/// One WebSocket connection.
struct Connection {
    state: Arc<AppState>,
    /// The client's address (join attempts are limited per address).
    addr: SocketAddr,
    membership: Membership,
    limiter: RateLimiter,
    refusals: u32,
    /// Changes when the server starts stopping.
    stopping: watch::Receiver<bool>,
    /// Changes on every token revocation.
    revoked: watch::Receiver<u64>,
}

impl Connection {
    fn new(state: Arc<AppState>, addr: SocketAddr) -> Self {
        let stopping = state.stopping.subscribe();
        let revoked = state.revocations.subscribe();
        Connection {
            state,
            addr,
            membership: Membership::Outside,
            limiter: RateLimiter::new(Instant::now()),
            refusals: 0,
            stopping,
            revoked,
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let mut idle_deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
        let mut ws_ping = interval(Duration::from_secs(15));
        // A connection that came in while the server started stopping missed the change.
        let mut stopping = self.state.stopping.is_stopping();
        while !stopping {
            let token_deadline = self.token_deadline();
            tokio::select! {
                frame = socket.recv() => {
                    let Some(Ok(frame)) = frame else { break };
                    idle_deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
                    let replies = self.on_frame(frame);
                    if !self.send_all(&mut socket, replies).await {
                        break;
                    }
                    if self.refusals >= MAX_REFUSALS {
                        let close = CloseFrame { code: close_code::POLICY, reason: "too many refused messages".into() };
                        let _ = socket.send(Message::Close(Some(close))).await;
                        break;
                    }
                }
                out = recv_outbox(&mut self.membership) => {
                    match out {
                        Some(mut msg) => {
                            if let ServerMessage::Joined { peer_id, ice_servers, .. } = &mut msg {
                                *ice_servers = self.state.ice_servers.for_peer(*peer_id, SystemTime::now());
                            }
                            self.track_join_outcome(&msg);
                            if !self.send_all(&mut socket, vec![msg]).await {
                                break;
                            }
                        }
                        // The worker removed the peer (leave, timeout, stuck outbox).
                        None => self.left(),
                    }
                }
                _ = ws_ping.tick() => {
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        break;
                    }
                }
                _ = sleep_until(idle_deadline) => {
                    debug!("idle timeout");
                    break;
                }
                _ = sleep_until_some(token_deadline) => {
                    let replies = self.on_token_deadline();
                    if !self.send_all(&mut socket, replies).await {
                        break;
                    }
                }
                changed = self.revoked.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let replies = self.on_revocation();
                    if !self.send_all(&mut socket, replies).await {
                        break;
                    }
                }
                changed = self.stopping.changed() => stopping = changed.is_ok(),
            }
        }
        if stopping {
            // The client learns why before the close; its peer goes below, like any disconnect.
            self.send_all(&mut socket, vec![ServerMessage::ServerStopping])
                .await;
            let close = CloseFrame {
                code: close_code::AWAY,
                reason: "the server is stopping".into(),
            };
            let _ = socket.send(Message::Close(Some(close))).await;
        }
        if let Membership::Inside { peer, worker, .. } = &self.membership {
            self.state
                .dispatch
                .send(*worker, WorkerCommand::Disconnect { peer: *peer });
        }
        self.left();
    }

    /// Handles one frame; returns what to send back right away.
    fn on_frame(&mut self, frame: Message) -> Vec<ServerMessage> {
        let text = match frame {
            Message::Text(t) => t,
            Message::Binary(_) => {
                return self.refuse(
                    ErrorCode::BadMessage,
                    "binary frames are not part of the protocol",
                )
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return Vec::new(),
        };
        if !self.limiter.allow(Instant::now()) {
            self.state
                .counters
                .rate_limited
                .fetch_add(1, Ordering::Relaxed);
            return self.refuse(ErrorCode::RateLimited, "too many messages");
        }
        if text.len() > MAX_MESSAGE_BYTES {
            self.state
                .counters
                .too_large
                .fetch_add(1, Ordering::Relaxed);
            return self.refuse(ErrorCode::TooLarge, "messages are limited to 64 KiB");
        }
        let msg: ClientMessage = match serde_json::from_str(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                self.state
                    .counters
                    .bad_message
                    .fetch_add(1, Ordering::Relaxed);
                return self.refuse(
                    ErrorCode::BadMessage,
                    &format!("not a protocol message: {e}"),
                );
            }
        };
        self.dispatch(msg)
    }

    fn dispatch(&mut self, msg: ClientMessage) -> Vec<ServerMessage> {
        match (&self.membership, msg) {
            (_, ClientMessage::Ping) => vec![ServerMessage::Pong],
            (Membership::Outside, msg @ ClientMessage::Join { .. }) => self.join(msg),
            (Membership::Outside, _) => vec![error(ErrorCode::NotJoined, "send join first")],
            (Membership::Inside { .. }, ClientMessage::Refresh { token }) => self.refresh(&token),
            (Membership::Inside { .. }, ClientMessage::Join { .. }) => {
                vec![error(
                    ErrorCode::AlreadyJoined,
                    "this connection is already in a room",
                )]
            }
            (Membership::Inside { peer, worker, .. }, msg) => {
                let cmd = WorkerCommand::Message { peer: *peer, msg };
                if self.state.dispatch.send(*worker, cmd) {
                    Vec::new()
                } else {
                    vec![error(ErrorCode::Unavailable, "the room's worker is gone")]
                }
            }
        }
    }

    fn join(&mut self, msg: ClientMessage) -> Vec<ServerMessage> {
        let ClientMessage::Join {
            version,
            room,
            name,
            capacity,
            token,
        } = msg
        else {
            return Vec::new();
        };
        if !self
            .state
            .join_limiter
            .allow(self.addr.ip(), Instant::now())
        {
            self.state
                .counters
                .join_rate_limited
                .fetch_add(1, Ordering::Relaxed);
            info!("join refused: too many attempts from this address");
            return self.refuse(
                ErrorCode::JoinRateLimited,
                "too many join attempts from your address: wait a few seconds and try again",
            );
        }
        if self
            .state
            .cluster
            .as_ref()
            .is_some_and(|c| c.drain.draining())
        {
            info!("join refused: this node drains");
            return self.refuse(
                ErrorCode::ServerBusy,
                "this node is draining: join another node of the cluster",
            );
        }
        if !self.state.server_joins.allow(Instant::now()) {
            self.state
                .counters
                .server_busy
                .fetch_add(1, Ordering::Relaxed);
            info!("join refused: the server-wide join limit is reached");
            return self.refuse(
                ErrorCode::ServerBusy,
                "the server takes no more joins right now: try again in a few seconds",
            );
        }
        // With auth, the token decides the name and what the member may do; the join's own name
        // is ignored so nobody can pose as someone else. The token goes no further than here.
        let (name, permissions, token) = match &self.state.auth {
            None => (name, Permissions::OPEN_ROOM, None),
            Some(auth) => match self.admit(auth, &room, token.as_deref()) {
                Ok(grant) => {
                    info!(room = %room, subject = %grant.subject, permissions = ?grant.permissions, "room token accepted");
                    let life = TokenLife::new(&room, &grant);
                    (grant.name, grant.permissions, Some(life))
                }
                Err(e) => {
                    self.state.counters.count_auth(&e);
                    info!(room = %room, error = %e, "join refused");
                    return self.refuse(e.code(), &e.to_string());
                }
            },
        };
        let msg = ClientMessage::Join {
            version,
            room: room.clone(),
            name,
            capacity,
            token: None,
        };
        let worker = match self.state.dispatch.enter(&room) {
            Ok(worker) => worker,
            Err(e @ PlaceError::NoWorker) => {
                return vec![error(ErrorCode::Unavailable, &e.to_string())]
            }
            Err(e @ PlaceError::Full) => {
                self.state
                    .counters
                    .server_busy
                    .fetch_add(1, Ordering::Relaxed);
                return self.refuse(ErrorCode::ServerBusy, &e.to_string());
            }
        };
        let peer = self.state.dispatch.next_peer_id();
        let (tx, outbox) = mpsc::channel(OUTBOX_CAPACITY);
        if !self.state.dispatch.send(
            worker,
            WorkerCommand::Join {
                peer,
                msg,
                outbox: tx,
                permissions,
            },
        ) {
            self.state.dispatch.leave(&room);
            return vec![error(ErrorCode::Unavailable, "the room's worker is gone")];
        }
        info!(peer, room = %room, worker, "join");
        self.membership = Membership::Inside {
            peer,
            room,
            worker,
            outbox,
            joined: false,
            token,
        };
        Vec::new()
    }

    /// [`Authenticator::admit_join`], and the token must not be revoked.
    fn admit(
        &self,
        auth: &Authenticator,
        room: &str,
        token: Option<&str>,
    ) -> Result<crate::auth::Grant, AuthError> {
        self.state.admit_token(auth, room, token)
    }

    /// When the member's token next needs attention (from `joined` on: a warning must not
    /// come before it).
    fn token_deadline(&self) -> Option<tokio::time::Instant> {
        let Membership::Inside {
            token: Some(life),
            joined: true,
            ..
        } = &self.membership
        else {
            return None;
        };
        let wait = life.next_deadline().saturating_sub(unix_now());
        Some(tokio::time::Instant::now() + Duration::from_secs(wait))
    }

    /// The member's token deadline passed: warn it, or remove it.
    fn on_token_deadline(&mut self) -> Vec<ServerMessage> {
        let Membership::Inside {
            token: Some(life), ..
        } = &mut self.membership
        else {
            return Vec::new();
        };
        match life.due(unix_now()) {
            None => Vec::new(),
            Some(TokenDue::Warn { seconds_left }) => {
                vec![ServerMessage::TokenExpiring { seconds_left }]
            }
            Some(TokenDue::Expired) => {
                self.state
                    .counters
                    .member_token_expired
                    .fetch_add(1, Ordering::Relaxed);
                self.remove_member(
                    ErrorCode::TokenExpired,
                    "your room token expired: ask for a new invite link",
                )
            }
        }
    }

    /// A token was revoked: remove the member if it is this one's.
    fn on_revocation(&mut self) -> Vec<ServerMessage> {
        let revoked = match &self.membership {
            Membership::Inside {
                token: Some(life), ..
            } => life
                .token_id()
                .is_some_and(|id| self.state.revocations.is_revoked(id)),
            _ => false,
        };
        if !revoked {
            return Vec::new();
        }
        self.state
            .counters
            .member_token_revoked
            .fetch_add(1, Ordering::Relaxed);
        self.remove_member(ErrorCode::TokenRevoked, "your room token was revoked")
    }

    /// Takes the member out of its room (the connection stays open, so the client may join
    /// again with a valid token) and says why.
    fn remove_member(&mut self, code: ErrorCode, message: &str) -> Vec<ServerMessage> {
        if let Membership::Inside { peer, worker, .. } = &self.membership {
            info!(peer, code = ?code, "removing the member");
            self.state
                .dispatch
                .send(*worker, WorkerCommand::Disconnect { peer: *peer });
        }
        self.left();
        vec![error(code, message)]
    }

    /// `refresh`: a fresh token for the member, verified like a join's.
    fn refresh(&mut self, token: &str) -> Vec<ServerMessage> {
        let Some(auth) = &self.state.auth else {
            return self.refuse(ErrorCode::BadMessage, "this server takes no room tokens");
        };
        let now = unix_now();
        let verified = auth
            .verify(token, now)
            .and_then(|grant| match &grant.token_id {
                Some(id) if self.state.revocations.is_revoked(id) => Err(AuthError::Revoked),
                _ => Ok(grant),
            });
        let outcome = match (&mut self.membership, verified) {
            (_, Err(e)) => Err((e.code(), e.to_string())),
            (
                Membership::Inside {
                    token: Some(life), ..
                },
                Ok(grant),
            ) => life
                .refresh(&grant, now)
                .map_err(|e| (ErrorCode::BadToken, e.to_string())),
            _ => Err((ErrorCode::NotJoined, "no member to refresh".to_owned())),
        };
        match outcome {
            Ok(seconds_left) => vec![ServerMessage::TokenRefreshed { seconds_left }],
            Err((code, message)) => {
                self.state
                    .counters
                    .refresh_refused
                    .fetch_add(1, Ordering::Relaxed);
                info!(%message, "refresh refused");
                self.refuse(code, &format!("refresh refused: {message}"))
            }
        }
    }

    /// A worker answers a join with `joined` or an error. On an error the connection is outside
    /// again before the client can read it, so a corrected join sent right after is taken.
    fn track_join_outcome(&mut self, msg: &ServerMessage) {
        if let Membership::Inside {
            joined: joined @ false,
            ..
        } = &mut self.membership
        {
            match msg {
                ServerMessage::Joined { .. } => *joined = true,
                ServerMessage::Error { .. } => self.left(),
                _ => {}
            }
        }
    }

    /// The peer is gone from its worker (or the join was refused): release the room placement.
    fn left(&mut self) {
        if let Membership::Inside { room, .. } =
            std::mem::replace(&mut self.membership, Membership::Outside)
        {
            self.state.dispatch.leave(&room);
        }
    }

    fn refuse(&mut self, code: ErrorCode, message: &str) -> Vec<ServerMessage> {
        self.refusals += 1;
        vec![error(code, message)]
    }

    async fn send_all(&mut self, socket: &mut WebSocket, msgs: Vec<ServerMessage>) -> bool {
        for msg in msgs {
            let Ok(json) = serde_json::to_string(&msg) else {
                continue;
            };
            if socket.send(Message::Text(json.into())).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn recv_outbox(membership: &mut Membership) -> Option<ServerMessage> {
    match membership {
        Membership::Inside { outbox, .. } => outbox.recv().await,
        Membership::Outside => std::future::pending().await,
    }
}

/// Seconds since the Unix epoch, for token times (0 if the clock is before 1970: every token is
/// then "not yet valid", which is the safe way to be wrong).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn error(code: ErrorCode, message: &str) -> ServerMessage {
    ServerMessage::Error {
        code,
        message: message.to_owned(),
    }
}
