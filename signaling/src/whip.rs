//! WHIP (RFC 9725) and WHEP: publishing into a room, and watching it, with one HTTP request, as
//! OBS and other encoders and players do.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `POST /whip/{room}` (`Content-Type: application/sdp`, the offer) | 201, the SDP answer, `Location: /whip/{room}/{session}`, `ETag` |
//! | `POST /whep/{room}` (likewise; `?peer=NAME` to watch one member) | 201, likewise with `/whep/...` |
//! | `DELETE` on the `Location` | 200: the publisher or viewer leaves the room |
//! | `PATCH` on the `Location` | 405: the server is ICE-lite and gathers nothing to trickle |
//! | `OPTIONS` on either | 204 with `Allow` (and `Accept-Post: application/sdp` on the endpoint) |
//!
//! A publisher is a room member (`sfu_core::Core::join_whip`) whose tracks are its offer's
//! sending m-lines; a viewer is a member with one audio and one video leg that follow the active
//! speaker, or the member `?peer=` names (`sfu_core::Core::join_whep`). Each is named after its
//! room token, or `?name=` where rooms are open (`whip-<id>`, `whep-<id>` without one). With room
//! tokens configured the token comes as `Authorization: Bearer <token>` and must grant `publish`
//! (WHIP) or `subscribe` (WHEP) in that room. Every answer
//! carries CORS headers (`Access-Control-Allow-Origin: *`, `Location`, `ETag` and `Link`
//! exposed) so browser-based publishers can use the endpoint. Refusals have a JSON body
//! `{"error": "..."}` as the plain RTP API's do.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{middleware, Router};
use serde::Deserialize;
use sfu_core::protocol::{ErrorCode, PeerId};
use sfu_core::viewers::Follow;
use sfu_core::{JoinRefusal, Permissions};
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use crate::api::error_response;
use crate::auth::AuthError;
use crate::dispatch::{HttpJoin, PlaceError, WorkerCommand};
use crate::limits::MAX_MESSAGE_BYTES;
use crate::server::AppState;

/// The media type of an SDP body.
const SDP: &str = "application/sdp";

/// One WHIP publisher's or WHEP viewer's session.
#[derive(Debug, Clone)]
struct Session {
    /// Its room.
    room: String,
    /// Its member id.
    peer: PeerId,
    /// The worker holding the room.
    worker: usize,
    /// The id (`jti`) of the room token it joined with, by which it can be revoked.
    token_id: Option<String>,
}

/// The open WHIP and WHEP sessions, by their secret id (the last part of their `Location`).
#[derive(Debug, Default)]
pub struct WhipSessions {
    sessions: Mutex<HashMap<String, Session>>,
}

impl WhipSessions {
    fn insert(&self, id: String, session: Session) {
        self.lock().insert(id, session);
    }

    /// Removes session `id` if it is in `room`.
    fn remove_in(&self, room: &str, id: &str) -> Option<Session> {
        let mut sessions = self.lock();
        if sessions.get(id).is_some_and(|s| s.room == room) {
            sessions.remove(id)
        } else {
            None
        }
    }

    /// Removes every session that joined with the token `jti`.
    fn remove_token(&self, jti: &str) -> Vec<Session> {
        let mut sessions = self.lock();
        let ids: Vec<String> = sessions
            .iter()
            .filter(|(_, s)| s.token_id.as_deref() == Some(jti))
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter_map(|id| sessions.remove(id)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a WHIP or WHEP request was refused, as the client sees it.
#[derive(Debug, thiserror::Error)]
enum WhipError {
    /// The body is not `application/sdp`.
    #[error("the offer must be sent as Content-Type: application/sdp")]
    MediaType,
    /// The body is too large or not UTF-8.
    #[error("the offer is not an SDP text of at most 64 KiB")]
    Body,
    /// Too many joins from this address.
    #[error("too many join attempts from your address: wait a few seconds and try again")]
    RateLimited,
    /// The room token is missing or invalid.
    #[error("{0}")]
    Auth(AuthError),
    /// The core refused the join.
    #[error("{0}")]
    Refused(JoinRefusal),
    /// No session with that id in that room (never was, or ended).
    #[error("no such WHIP session")]
    UnknownSession,
    /// The worker is gone.
    #[error("the room's worker is not running")]
    Unavailable,
}

impl IntoResponse for WhipError {
    fn into_response(self) -> Response {
        let status = match &self {
            WhipError::MediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            WhipError::Body => StatusCode::BAD_REQUEST,
            WhipError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            WhipError::Auth(AuthError::WrongRoom) => StatusCode::FORBIDDEN,
            WhipError::Auth(_) => StatusCode::UNAUTHORIZED,
            WhipError::Refused(r) => match r.code {
                ErrorCode::Forbidden => StatusCode::FORBIDDEN,
                ErrorCode::RoomFull | ErrorCode::Unavailable | ErrorCode::ServerBusy => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::BAD_REQUEST,
            },
            WhipError::UnknownSession => StatusCode::NOT_FOUND,
            WhipError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        error_response(status, self.to_string())
    }
}

/// The WHIP and WHEP routes, with CORS headers on every answer.
pub fn routes() -> Router<Arc<AppState>> {
    let session = || {
        axum::routing::delete(end)
            .patch(patch)
            .options(session_options)
    };
    Router::new()
        .route("/whip/{room}", post(publish).options(endpoint_options))
        .route("/whip/{room}/{session}", session())
        .route("/whep/{room}", post(watch).options(endpoint_options))
        .route("/whep/{room}/{session}", session())
        .layer(middleware::map_response(cors))
}

/// `?name=`: the member's name in an open room; `?peer=`: whom a WHEP viewer watches.
#[derive(Debug, Deserialize)]
struct JoinQuery {
    name: Option<String>,
    peer: Option<String>,
}

/// What joins over HTTP.
#[derive(Debug)]
enum Role {
    /// A WHIP publisher.
    Publisher,
    /// A WHEP viewer following this.
    Viewer(Follow),
}

impl Role {
    /// The first part of its paths.
    fn prefix(&self) -> &'static str {
        match self {
            Role::Publisher => "whip",
            Role::Viewer(_) => "whep",
        }
    }
}

/// `POST /whip/{room}`: the publisher joins with its offer; the answer comes back.
async fn publish(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    Query(query): Query<JoinQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhipError> {
    let request = Request {
        room,
        name: query.name,
        headers,
        body,
    };
    join(state, addr, request, Role::Publisher).await
}

/// `POST /whep/{room}`: the viewer joins with its offer; the answer comes back.
async fn watch(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    Query(query): Query<JoinQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhipError> {
    let follow = query.peer.map_or(Follow::Speaker, Follow::Peer);
    let request = Request {
        room,
        name: query.name,
        headers,
        body,
    };
    join(state, addr, request, Role::Viewer(follow)).await
}

/// A join request's parts.
struct Request {
    room: String,
    name: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

/// A join refused because the server takes no more (the server-wide join limit, `--max-peers`):
/// 503, as for a full room.
fn server_busy(why: &str) -> WhipError {
    WhipError::Refused(JoinRefusal::new(
        ErrorCode::ServerBusy,
        &format!("{why}: try again in a few seconds"),
    ))
}

/// Joins a publisher or viewer to its room's worker and answers with the SDP answer and the
/// session's `Location` and `ETag`.
async fn join(
    state: Arc<AppState>,
    addr: SocketAddr,
    request: Request,
    role: Role,
) -> Result<Response, WhipError> {
    let Request {
        room,
        name,
        headers,
        body,
    } = request;
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|t| t.eq_ignore_ascii_case(SDP)) {
        return Err(WhipError::MediaType);
    }
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(WhipError::Body);
    }
    let offer = String::from_utf8(body.to_vec()).map_err(|_| WhipError::Body)?;
    if !state.join_limiter.allow(addr.ip(), Instant::now()) {
        state
            .counters
            .join_rate_limited
            .fetch_add(1, Ordering::Relaxed);
        return Err(WhipError::RateLimited);
    }
    if !state.server_joins.allow(Instant::now()) {
        state.counters.server_busy.fetch_add(1, Ordering::Relaxed);
        return Err(server_busy("the server takes no more joins right now"));
    }
    let id = session_id().ok_or(WhipError::Unavailable)?;
    let peer = state.dispatch.next_peer_id();
    let (name, permissions, token_id) =
        admit(&state, &room, &headers, name, (role.prefix(), peer))?;
    let worker = state.dispatch.enter(&room).map_err(|e| match e {
        PlaceError::Full => {
            state.counters.server_busy.fetch_add(1, Ordering::Relaxed);
            server_busy("the server is full")
        }
        PlaceError::NoWorker => WhipError::Unavailable,
    })?;
    let (closed, mut gone) = mpsc::channel(1);
    let (reply, answer) = oneshot::channel();
    let request = HttpJoin {
        room: room.clone(),
        name,
        offer,
    };
    let prefix = role.prefix();
    let command = match role {
        Role::Publisher => WorkerCommand::WhipJoin {
            peer,
            request,
            permissions,
            closed,
            reply,
        },
        Role::Viewer(follow) => WorkerCommand::WhepJoin {
            peer,
            request,
            follow,
            permissions,
            closed,
            reply,
        },
    };
    let answer = if state.dispatch.send(worker, command) {
        answer.await.map_err(|_| WhipError::Unavailable)
    } else {
        Err(WhipError::Unavailable)
    };
    let answer = match answer.and_then(|a| a.map_err(WhipError::Refused)) {
        Ok(answer) => answer,
        Err(e) => {
            state.dispatch.leave(&room);
            info!(peer, room = %room, error = %e, prefix, "WHIP/WHEP join refused");
            return Err(e);
        }
    };
    let location = format!("/{prefix}/{}/{id}", path_segment(&room));
    let etag = ice_session_tag(&answer);
    state.whip.insert(
        id.clone(),
        Session {
            room: room.clone(),
            peer,
            worker,
            token_id,
        },
    );
    info!(peer, room = %room, worker, prefix, "joined over HTTP");
    // The worker drops its end when the member is gone: the session and the room placement go.
    let watcher = state.clone();
    tokio::spawn(async move {
        while gone.recv().await.is_some() {}
        watcher.whip.remove_in(&room, &id);
        watcher.dispatch.leave(&room);
    });
    let mut response = (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, SDP), (header::LOCATION, &location)],
        answer,
    )
        .into_response();
    if let Some(etag) = etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

/// The member's name, permissions and token id (`jti`): from its room token where tokens are
/// configured, else
/// `?name=` or `<prefix>-<id>` (and no token id).
fn admit(
    state: &AppState,
    room: &str,
    headers: &HeaderMap,
    name: Option<String>,
    (prefix, peer): (&str, PeerId),
) -> Result<(String, Permissions, Option<String>), WhipError> {
    let Some(auth) = &state.auth else {
        let name = name.unwrap_or_else(|| format!("{prefix}-{peer}"));
        return Ok((name, Permissions::OPEN_ROOM, None));
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match state.admit_token(auth, room, token) {
        Ok(grant) => Ok((grant.name, grant.permissions, grant.token_id)),
        Err(e) => {
            state.counters.count_auth(&e);
            info!(room = %room, error = %e, prefix, "WHIP/WHEP join refused");
            Err(WhipError::Auth(e))
        }
    }
}

/// `DELETE /whip/{room}/{session}` (or `/whep/...`): the publisher or viewer leaves.
async fn end(
    State(state): State<Arc<AppState>>,
    Path((room, id)): Path<(String, String)>,
) -> Result<StatusCode, WhipError> {
    let session = state
        .whip
        .remove_in(&room, &id)
        .ok_or(WhipError::UnknownSession)?;
    let command = WorkerCommand::Disconnect { peer: session.peer };
    if !state.dispatch.send(session.worker, command) {
        return Err(WhipError::Unavailable);
    }
    info!(peer = session.peer, room = %room, "WHIP/WHEP session ended");
    Ok(StatusCode::OK)
}

/// Ends every WHIP and WHEP session that joined with the revoked token `jti` (their members
/// leave the room, as with `DELETE`); returns how many.
pub(crate) fn end_sessions_of_token(state: &AppState, jti: &str) -> usize {
    let sessions = state.whip.remove_token(jti);
    for session in &sessions {
        state.dispatch.send(
            session.worker,
            WorkerCommand::Disconnect { peer: session.peer },
        );
        info!(peer = session.peer, room = %session.room, jti, "WHIP/WHEP session's token revoked");
    }
    sessions.len()
}

/// `PATCH` on a session: trickle ICE and ICE restarts are not supported; the server is
/// ICE-lite and its answer already lists all its candidates (RFC 9725 4.3.1 allows 405).
async fn patch() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "DELETE, OPTIONS")],
    )
        .into_response()
}

/// `OPTIONS /whip/{room}` (or `/whep/...`): what the endpoint takes (and a CORS preflight's answer).
async fn endpoint_options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ALLOW, "OPTIONS, POST"),
            (HeaderName::from_static("accept-post"), SDP),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "OPTIONS, POST"),
        ],
    )
        .into_response()
}

/// `OPTIONS` on a session: what a session takes (and a CORS preflight's answer).
async fn session_options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ALLOW, "DELETE, OPTIONS"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "DELETE, OPTIONS"),
        ],
    )
        .into_response()
}

/// Adds the CORS headers browser-based publishers and players need to every answer.
async fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, If-Match"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link, Accept-Post, Allow"),
    );
    response
}

/// A fresh, unguessable session id (whoever knows it can end the session); `None` if the system
/// has no randomness to give.
fn session_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    let mut id = String::with_capacity(32);
    for b in bytes {
        let _ = write!(id, "{b:02x}");
    }
    Some(id)
}

/// `text` as one URL path segment: unreserved characters as they are, every other byte
/// percent-encoded (a room name may hold spaces, slashes, anything).
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The ETag of a session: its ICE session (our ICE ufrag in the answer), quoted.
fn ice_session_tag(answer: &str) -> Option<String> {
    answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(|ufrag| format!("\"{ufrag}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_name_becomes_one_path_segment() {
        assert_eq!(path_segment("lobby-2_a.b~"), "lobby-2_a.b~");
        assert_eq!(path_segment("a b/c?ü"), "a%20b%2Fc%3F%C3%BC");
    }

    #[test]
    fn the_etag_is_the_quoted_ice_ufrag_of_the_answer() {
        let answer = "v=0\r\na=ice-ufrag:Ab12\r\na=ice-pwd:x\r\n";
        assert_eq!(ice_session_tag(answer).as_deref(), Some("\"Ab12\""));
        assert_eq!(ice_session_tag("v=0\r\n"), None);
    }
}
