//! The HTTP API for recording a room: `POST /api/rooms/{room}/recording` starts it (201,
//! `{"id", "dir"}`), `DELETE` stops it and answers once every file is finished (200,
//! `{"files": [absolute paths]}`). 404 for a room nobody is in, 409 when it is already (or not)
//! being recorded. The same admission as the plain RTP API ([`crate::api::authorize`]):
//! loopback callers, or others with an admin token.
//!
//! Members are told by their worker (a `recording` message) whichever way a recording starts or
//! stops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::api::{admit, error_response, ApiError};
use crate::dispatch::WorkerCommand;
use crate::server::AppState;

/// What the API asks of the worker that owns a room.
#[derive(Debug)]
pub enum RecordingRequest {
    /// Start recording the room.
    Start {
        /// The room.
        room: String,
    },
    /// Stop recording the room; the answer comes once its files are finished.
    Stop {
        /// The room.
        room: String,
    },
}

/// A worker's answer to a [`RecordingRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RecordingReply {
    /// The recording started.
    Started {
        /// Its id.
        id: String,
        /// Its directory (absolute).
        dir: PathBuf,
    },
    /// The recording stopped and its files are finished.
    Stopped {
        /// Every file it wrote (absolute paths).
        files: Vec<PathBuf>,
    },
}

/// Why a worker refused a [`RecordingRequest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordingRefusal {
    /// Nobody is in the room.
    #[error("no room named {0}")]
    UnknownRoom(String),
    /// Already recording (start) or not recording (stop).
    #[error("{0}")]
    Conflict(String),
    /// The recording could not be written (directory unwritable, disk full).
    #[error("{0}")]
    Failed(String),
}

/// The API's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/api/rooms/{room}/recording",
        post(start_recording).delete(stop_recording),
    )
}

impl IntoResponse for RecordingRefusal {
    fn into_response(self) -> Response {
        let status = match self {
            RecordingRefusal::UnknownRoom(_) => StatusCode::NOT_FOUND,
            RecordingRefusal::Conflict(_) => StatusCode::CONFLICT,
            RecordingRefusal::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        error_response(status, self.to_string())
    }
}

async fn start_recording(
    State(state): State<Arc<AppState>>,
    ConnectInfo(caller): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Response {
    match ask(&state, caller, &headers, RecordingRequest::Start { room }).await {
        Ok(reply) => (StatusCode::CREATED, Json(reply)).into_response(),
        Err(response) => response,
    }
}

async fn stop_recording(
    State(state): State<Arc<AppState>>,
    ConnectInfo(caller): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Response {
    match ask(&state, caller, &headers, RecordingRequest::Stop { room }).await {
        Ok(reply) => (StatusCode::OK, Json(reply)).into_response(),
        Err(response) => response,
    }
}

/// Admits the caller and hands `request` to the room's worker.
async fn ask(
    state: &AppState,
    caller: SocketAddr,
    headers: &HeaderMap,
    request: RecordingRequest,
) -> Result<RecordingReply, Response> {
    admit(state, caller, headers).map_err(IntoResponse::into_response)?;
    let room = match &request {
        RecordingRequest::Start { room } | RecordingRequest::Stop { room } => room.clone(),
    };
    let worker = state
        .dispatch
        .worker_of(&room)
        .ok_or_else(|| RecordingRefusal::UnknownRoom(room).into_response())?;
    let (reply, answer) = oneshot::channel();
    if !state
        .dispatch
        .send(worker, WorkerCommand::Recording { request, reply })
    {
        return Err(ApiError::Unavailable.into_response());
    }
    match answer.await {
        Ok(result) => result.map_err(IntoResponse::into_response),
        Err(_) => Err(ApiError::Unavailable.into_response()),
    }
}
