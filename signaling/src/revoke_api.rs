//! `POST /api/tokens/revoke {"jti": "...", "exp": 1767225600}`: revokes a room token by its `jti`
//! (`exp`, the token's expiry, is optional and tells how long the revocation must be kept).
//! A join with the token is refused from then on, and a member holding it is removed with an
//! `error` `token_revoked`. Admission is the plain RTP API's ([`crate::api::authorize`]):
//! loopback callers, or an admin token. Answers 204, or 400 for a bad `jti` and 503 when the
//! list is full. With `--cluster` the revocation goes to every node (through the directory).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use cluster::record::RevokedToken;

use crate::api::admit;
use crate::revocation::{RevokeError, DEFAULT_REVOCATION_SECS};
use crate::server::{unix_now, AppState};

/// The body of a revocation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp`, when known.
    #[serde(default)]
    pub exp: Option<u64>,
}

/// The route.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/tokens/revoke", post(revoke))
}

async fn revoke(
    State(state): State<Arc<AppState>>,
    ConnectInfo(caller): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(request): Json<RevokeRequest>,
) -> Response {
    if let Err(e) = admit(&state, caller, &headers) {
        return e.into_response();
    }
    let now = unix_now();
    match state.revocations.revoke(&request.jti, request.exp, now) {
        Ok(()) => {
            let ended = end_sessions(&state, &request.jti);
            if let Some(node) = &state.cluster {
                node.share_revocation(RevokedToken {
                    jti: request.jti.clone(),
                    until: request
                        .exp
                        .unwrap_or(now.saturating_add(DEFAULT_REVOCATION_SECS)),
                });
            }
            tracing::info!(jti = %request.jti, %caller, whip_sessions = ended, "room token revoked");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            let status = match e {
                RevokeError::BadId => StatusCode::BAD_REQUEST,
                RevokeError::Full => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, e.to_string()).into_response()
        }
    }
}

/// Applies a revocation another node of the cluster made, as if it had been made here.
pub fn apply_shared(state: &AppState, token: RevokedToken) {
    match state
        .revocations
        .revoke(&token.jti, Some(token.until), unix_now())
    {
        Ok(()) => {
            let ended = end_sessions(state, &token.jti);
            tracing::info!(jti = %token.jti, whip_sessions = ended, "room token revoked by another node");
        }
        Err(e) => {
            tracing::warn!(jti = %token.jti, error = %e, "another node's revocation not kept")
        }
    }
}

/// Ends the HTTP sessions (WHIP, WHEP) of token `jti`: WebSocket members watch the revocation
/// list themselves, HTTP sessions have no connection to watch it on. Returns how many ended.
fn end_sessions(state: &AppState, jti: &str) -> usize {
    crate::whip::end_sessions_of_token(state, jti)
}
