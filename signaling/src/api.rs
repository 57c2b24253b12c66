//! The HTTP API for plain RTP legs: create, change and remove ingests and outputs.
//!
//! It changes where the SFU sends media, so it answers loopback clients only. Each request goes to
//! the worker that owns the room; the answer is the leg as that worker now has it.
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

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::{Json, Router};
use serde::Serialize;
use sfu_core::plain::{IngestInfo, IngestSpec, OutputInfo, OutputSpec, OutputTarget, PlainError};
use tokio::sync::oneshot;

use crate::dispatch::{PlainReply, PlainRequest, WorkerCommand};
use crate::server::{collect_stats, AppState, Leg};

/// Why an API request failed, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request came from another machine.
    #[error("the plain RTP API answers loopback clients only")]
    Forbidden,
    /// The worker refused it.
    #[error(transparent)]
    Plain(#[from] PlainError),
    /// The room is not on any worker (nobody is in it).
    #[error("no room named {0}")]
    UnknownRoom(String),
    /// The worker is gone.
    #[error("the room's worker is not running")]
    Unavailable,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Plain(
                PlainError::UnknownIngest(_)
                | PlainError::UnknownOutput(_)
                | PlainError::UnknownTrack(..),
            )
            | ApiError::UnknownRoom(_) => StatusCode::NOT_FOUND,
            ApiError::Plain(PlainError::SourceInUse(_)) => StatusCode::CONFLICT,
            ApiError::Plain(PlainError::Invalid(_)) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
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

fn loopback_only(addr: SocketAddr) -> Result<(), ApiError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
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
    let worker = state.dispatch.enter(&room).ok_or(ApiError::Unavailable)?;
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
    State(state): State<Arc<AppState>>,
    Json(spec): Json<IngestSpec>,
) -> Result<(StatusCode, Json<IngestInfo>), ApiError> {
    loopback_only(addr)?;
    Ok((StatusCode::CREATED, Json(add_ingest(&state, spec).await?)))
}

async fn delete_ingest(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    loopback_only(addr)?;
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
    State(state): State<Arc<AppState>>,
    Json(spec): Json<OutputSpec>,
) -> Result<(StatusCode, Json<OutputInfo>), ApiError> {
    loopback_only(addr)?;
    Ok((StatusCode::CREATED, Json(add_output(&state, spec).await?)))
}

async fn put_targets(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<u64>,
    Json(targets): Json<Vec<OutputTarget>>,
) -> Result<Json<OutputInfo>, ApiError> {
    loopback_only(addr)?;
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
    State(state): State<Arc<AppState>>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    loopback_only(addr)?;
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
