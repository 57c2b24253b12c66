//! The HTTP API for plain RTP legs: create, change and remove ingests and outputs.
//!
//! It changes where the SFU sends media, so it answers loopback clients, and, where room tokens are
//! configured, other machines that send a token with the `admin` claim
//! (`Authorization: Bearer <token>`; [`authorize`]). Each request goes to the worker that owns the
//! room; the answer is the leg as that worker now has it.
//!
//! | method and path | body | answer |
//! | --- | --- | --- |
//! | `POST /api/ingests` | `IngestSpec` | `IngestInfo` |
//! | `DELETE /api/ingests/{id}` | | 204 |
//! | `POST /api/outputs` | `OutputSpec` | `OutputInfo` |
//! | `PUT /api/outputs/{id}/targets` | `[OutputTarget]` | `OutputInfo` |
//! | `DELETE /api/outputs/{id}` | | 204 |
//! | `GET /api/ingests`, `GET /api/outputs` | | lists |

use std::net::SocketAddr;
use std::sync::Arc;

use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::{Json, Router};
use serde::Serialize;
use sfu_core::plain::{IngestInfo, IngestSpec, OutputInfo, OutputSpec, OutputTarget, PlainError};
use tokio::sync::oneshot;

use crate::auth::Authenticator;
use crate::dispatch::{PlaceError, PlainReply, PlainRequest, WorkerCommand};
use crate::server::{collect_stats, unix_now, AppState, Leg};

/// Why an API request failed, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request came from another machine, and no room tokens are configured.
    #[error("the plain RTP API answers loopback clients only")]
    Forbidden,
    /// The request came from another machine without a valid token (or none at all).
    #[error("send `Authorization: Bearer <token>` with an admin room token: {0}")]
    Unauthorized(String),
    /// The request came from another machine with a valid token that does not grant `admin`.
    #[error("the token does not grant admin")]
    NotAdmin,
    /// The worker refused it.
    #[error(transparent)]
    Plain(#[from] PlainError),
    /// The room is not on any worker (nobody is in it).
    #[error("no room named {0}")]
    UnknownRoom(String),
    /// The worker is gone.
    #[error("the room's worker is not running")]
    Unavailable,
    /// The worker refused an admin request.
    #[error(transparent)]
    Admin(#[from] sfu_core::admin::AdminError),
    /// The request's body did not make sense.
    #[error("{0}")]
    BadRequest(String),
    /// The worker that would hold it holds its most connections (`--max-peers`).
    #[error("the server is full (--max-peers)")]
    Full,
    /// A cluster request to a node started without `--cluster`.
    #[error("this node is not part of a cluster (--cluster)")]
    NoCluster,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Forbidden | ApiError::NotAdmin => StatusCode::FORBIDDEN,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Plain(
                PlainError::UnknownIngest(_)
                | PlainError::UnknownOutput(_)
                | PlainError::UnknownTrack(..),
            )
            | ApiError::UnknownRoom(_)
            | ApiError::NoCluster
            | ApiError::Admin(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Plain(PlainError::SourceInUse(_)) => StatusCode::CONFLICT,
            ApiError::Plain(PlainError::Invalid(_)) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable | ApiError::Full => StatusCode::SERVICE_UNAVAILABLE,
        };
        error_response(status, self.to_string())
    }
}

/// An HTTP error answer as every endpoint of this server gives it: `status` with the JSON body
/// `{"error": message}`, and on 401 the `WWW-Authenticate` challenge for a bearer token.
pub(crate) fn error_response(status: StatusCode, message: String) -> Response {
    let mut response = (status, Json(ErrorBody { error: message })).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"edge-sfu\""),
        );
    }
    response
}

/// The API's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/ingests", post(post_ingest).get(list_ingests))
        .route("/api/ingests/{id}", delete(delete_ingest))
        .route("/api/outputs", post(post_output).get(list_outputs))
        .route("/api/outputs/{id}", delete(delete_output))
        .route("/api/outputs/{id}/targets", put(put_targets))
}

/// Whether `caller` may use the API: loopback callers always (as without tokens); others only
/// with room tokens configured (`auth`) and an `Authorization: Bearer` token that verifies at
/// `now` and carries `admin: true`. The token's room does not matter: admin is server-wide.
pub fn authorize(
    auth: Option<&Authenticator>,
    caller: SocketAddr,
    authorization: Option<&HeaderValue>,
    now: u64,
) -> Result<(), ApiError> {
    if caller.ip().to_canonical().is_loopback() {
        return Ok(());
    }
    let Some(auth) = auth else {
        return Err(ApiError::Forbidden);
    };
    let token = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| ApiError::Unauthorized("no bearer token".into()))?;
    let grant = auth
        .verify(token, now)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    if grant.admin {
        Ok(())
    } else {
        Err(ApiError::NotAdmin)
    }
}

/// [`authorize`] for a request to this server, counting refusals.
pub(crate) fn admit(
    state: &AppState,
    caller: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let result = authorize(
        state.auth.as_ref(),
        caller,
        headers.get(header::AUTHORIZATION),
        unix_now(),
    );
    if let Err(e) = &result {
        state.counters.api_refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%caller, error = %e, "API request refused");
    }
    result
}

async fn ask(
    state: &AppState,
    worker: usize,
    request: PlainRequest,
) -> Result<PlainReply, ApiError> {
    let (reply, answer) = oneshot::channel();
    if !state
        .dispatch
        .send(worker, WorkerCommand::Plain { request, reply })
    {
        return Err(ApiError::Unavailable);
    }
    Ok(answer.await.map_err(|_| ApiError::Unavailable)??)
}

/// Creates an ingest, placing its room on a worker if nobody is in it yet.
pub async fn add_ingest(state: &AppState, spec: IngestSpec) -> Result<IngestInfo, ApiError> {
    let room = spec.room.clone();
    let worker = state.dispatch.enter(&room).map_err(|e| match e {
        PlaceError::Full => ApiError::Full,
        PlaceError::NoWorker => ApiError::Unavailable,
    })?;
    let id = state.dispatch.next_peer_id();
    match ask(state, worker, PlainRequest::AddIngest { id, spec }).await {
        Ok(PlainReply::Ingest(info)) => {
            state.remember(
                id,
                Leg {
                    worker,
                    room: Some(room),
                },
            );
            Ok(info)
        }
        other => {
            state.dispatch.leave(&room);
            Err(other.err().unwrap_or(ApiError::Unavailable))
        }
    }
}

/// Creates an output of a track in a room that has members or ingests.
pub async fn add_output(state: &AppState, spec: OutputSpec) -> Result<OutputInfo, ApiError> {
    let worker = state
        .dispatch
        .worker_of(&spec.room)
        .ok_or_else(|| ApiError::UnknownRoom(spec.room.clone()))?;
    let id = state.dispatch.next_peer_id();
    match ask(state, worker, PlainRequest::AddOutput { id, spec }).await? {
        PlainReply::Output(info) => {
            state.remember(id, Leg { worker, room: None });
            Ok(info)
        }
        _ => Err(ApiError::Unavailable),
    }
}

async fn post_ingest(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
    Json(spec): Json<IngestSpec>,
) -> Result<(StatusCode, Json<IngestInfo>), ApiError> {
    admit(&state, addr, &headers)?;
    Ok((StatusCode::CREATED, Json(add_ingest(&state, spec).await?)))
}

async fn delete_ingest(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    admit(&state, addr, &headers)?;
    let leg = state.leg(id).ok_or(PlainError::UnknownIngest(id))?;
    ask(&state, leg.worker, PlainRequest::RemoveIngest { id }).await?;
    state.forget(id);
    if let Some(room) = leg.room {
        state.dispatch.leave(&room);
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn post_output(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
    Json(spec): Json<OutputSpec>,
) -> Result<(StatusCode, Json<OutputInfo>), ApiError> {
    admit(&state, addr, &headers)?;
    Ok((StatusCode::CREATED, Json(add_output(&state, spec).await?)))
}

async fn put_targets(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
    Path(id): Path<u64>,
    Json(targets): Json<Vec<OutputTarget>>,
) -> Result<Json<OutputInfo>, ApiError> {
    admit(&state, addr, &headers)?;
    let leg = state.leg(id).ok_or(PlainError::UnknownOutput(id))?;
    match ask(
        &state,
        leg.worker,
        PlainRequest::SetOutputTargets { id, targets },
    )
    .await?
    {
        PlainReply::Output(info) => Ok(Json(info)),
        _ => Err(ApiError::Unavailable),
    }
}

async fn delete_output(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    admit(&state, addr, &headers)?;
    let leg = state.leg(id).ok_or(PlainError::UnknownOutput(id))?;
    let result = ask(&state, leg.worker, PlainRequest::RemoveOutput { id }).await;
    state.forget(id);
    result?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_ingests(State(state): State<Arc<AppState>>) -> Json<Vec<IngestInfo>> {
    Json(collect_stats(&state).await.0.ingests)
}

async fn list_outputs(State(state): State<Arc<AppState>>) -> Json<Vec<OutputInfo>> {
    Json(collect_stats(&state).await.0.outputs)
}

#[cfg(test)]
mod tests {
    //! The API cannot be reached from a non-loopback address in a test without network namespaces,
    //! so the decision itself is tested here, with the addresses such callers would have.

    use super::*;
    use crate::auth::{mint_hs256, Claims, Secret};
    use sfu_core::Permissions;

    const NOW: u64 = 1_800_000_000;

    fn secret() -> Secret {
        Secret::new("api test secret, thirty-two bytes or more").unwrap()
    }

    fn auth() -> Authenticator {
        Authenticator::new(Some(&secret()), None).unwrap()
    }

    fn token(admin: bool) -> String {
        let claims =
            Claims::for_member("lobby", "ops", None, Permissions::ALL, admin, NOW, 600).unwrap();
        mint_hs256(&secret(), &claims).unwrap()
    }

    fn bearer(token: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
    }

    fn remote() -> SocketAddr {
        "192.0.2.10:50000".parse().unwrap()
    }

    #[test]
    fn loopback_callers_need_nothing_with_or_without_auth() {
        for caller in [
            "127.0.0.1:1",
            "127.8.9.1:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            let caller: SocketAddr = caller.parse().unwrap();
            assert!(authorize(None, caller, None, NOW).is_ok(), "{caller}");
            assert!(
                authorize(Some(&auth()), caller, None, NOW).is_ok(),
                "{caller}"
            );
        }
    }

    #[test]
    fn without_auth_remote_callers_are_refused_whatever_they_send() {
        let got = authorize(None, remote(), Some(&bearer(&token(true))), NOW);
        assert!(matches!(got, Err(ApiError::Forbidden)), "{got:?}");
    }

    #[test]
    fn with_auth_remote_callers_need_a_valid_admin_token() {
        let auth = auth();
        assert!(authorize(Some(&auth), remote(), Some(&bearer(&token(true))), NOW).is_ok());
        let lower = HeaderValue::from_str(&format!("bearer {}", token(true))).unwrap();
        assert!(authorize(Some(&auth), remote(), Some(&lower), NOW).is_ok());
        assert!(matches!(
            authorize(Some(&auth), remote(), Some(&bearer(&token(false))), NOW),
            Err(ApiError::NotAdmin)
        ));
        for header in [
            None,
            Some(HeaderValue::from_static("Basic b3BzOm9wcw==")),
            Some(HeaderValue::from_static("Bearer")),
            Some(HeaderValue::from_static("Bearer not.a.token")),
        ] {
            let got = authorize(Some(&auth), remote(), header.as_ref(), NOW);
            assert!(
                matches!(got, Err(ApiError::Unauthorized(_))),
                "{header:?}: {got:?}"
            );
        }
        // Expired admin token.
        let got = authorize(
            Some(&auth),
            remote(),
            Some(&bearer(&token(true))),
            NOW + 3600,
        );
        assert!(matches!(got, Err(ApiError::Unauthorized(_))), "{got:?}");
        // Statuses: 401 with a challenge for a missing or bad token, 403 for a non-admin one.
        let response = ApiError::Unauthorized("x".into()).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(
            ApiError::NotAdmin.into_response().status(),
            StatusCode::FORBIDDEN
        );
    }
}
