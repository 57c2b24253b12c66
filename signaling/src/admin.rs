//! The admin API: list rooms with their members and tracks, close a room, remove a member, mute
//! a member's track. Same admission as the plain RTP API ([`crate::api::authorize`]: loopback, or
//! a room token with the `admin` claim). Each request goes to the worker that owns the room.
//!
//! | method and path | body / query | answer |
//! | --- | --- | --- |
//! | `GET /api/rooms` | | `[RoomListing]` |
//! | `GET /api/rooms/{room}` | | `RoomListing` |
//! | `DELETE /api/rooms/{room}` | `?reason=` | 204 |
//! | `DELETE /api/rooms/{room}/members/{id}` | `?reason=` | 204 |
//! | `POST /api/rooms/{room}/members/{id}/mute` | `{"trackId" or "mid", "muted"}` | `TrackListing` |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sfu_core::admin::{RoomListing, TrackListing};
use sfu_core::protocol::PeerId;
use tokio::sync::oneshot;

use crate::api::{admit, ApiError};
use crate::dispatch::WorkerCommand;
use crate::server::AppState;

/// How long a worker may take to answer before it counts as unavailable.
const WORKER_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// What a member hears when its room is closed and no reason was given.
const DEFAULT_CLOSE_REASON: &str = "an administrator closed the room";
/// What a member hears when it is removed and no reason was given.
const DEFAULT_REMOVE_REASON: &str = "an administrator removed you from the room";

/// The admin API's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/rooms", get(list_rooms))
        .route("/api/rooms/{room}", get(get_room).delete(close_room))
        .route("/api/rooms/{room}/members/{id}", delete(remove_member))
        .route("/api/rooms/{room}/members/{id}/mute", post(mute))
}

/// The longest reason passed on to members, in characters (the rest is cut).
const MAX_REASON_CHARS: usize = 500;

/// `?reason=` of the DELETE requests.
#[derive(Debug, Deserialize)]
struct Reason {
    reason: Option<String>,
}

impl Reason {
    /// The reason given (cut to [`MAX_REASON_CHARS`]), or `default`.
    fn or(self, default: &str) -> String {
        self.reason.map_or_else(
            || default.to_owned(),
            |r| r.chars().take(MAX_REASON_CHARS).collect(),
        )
    }
}

/// The body of a mute request: the track by its id (`"<peerId>:<mid>"`) or its mid.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MuteRequest {
    /// The track's id, `"<peerId>:<mid>"`.
    pub track_id: Option<String>,
    /// The track's mid (when `track_id` is absent).
    pub mid: Option<String>,
    /// Mute (true) or unmute.
    pub muted: bool,
}

/// Sends the command `make` builds to `worker` and waits for its answer.
async fn ask<T>(
    state: &AppState,
    worker: usize,
    make: impl FnOnce(oneshot::Sender<T>) -> WorkerCommand,
) -> Result<T, ApiError> {
    let (reply, answer) = oneshot::channel();
    if !state.dispatch.send(worker, make(reply)) {
        return Err(ApiError::Unavailable);
    }
    match tokio::time::timeout(WORKER_ANSWER_TIMEOUT, answer).await {
        Ok(Ok(answer)) => Ok(answer),
        _ => Err(ApiError::Unavailable),
    }
}

/// Every worker's rooms, sorted by name. A worker that does not answer in time is left out.
pub async fn room_listing(state: &AppState) -> Vec<RoomListing> {
    let mut rooms = Vec::new();
    for worker in 0..state.dispatch.workers().len() {
        if let Ok(listing) = ask(state, worker, |reply| WorkerCommand::ListRooms { reply }).await {
            rooms.extend(listing.into_iter().map(|r| RoomListing { worker, ..r }));
        }
    }
    rooms.sort_by(|a, b| a.name.cmp(&b.name));
    rooms
}

/// The worker that owns `room`.
fn worker_of(state: &AppState, room: &str) -> Result<usize, ApiError> {
    state
        .dispatch
        .worker_of(room)
        .ok_or_else(|| ApiError::UnknownRoom(room.to_owned()))
}

async fn list_rooms(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<RoomListing>>, ApiError> {
    admit(&state, addr, &headers)?;
    Ok(Json(room_listing(&state).await))
}

async fn get_room(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
) -> Result<Json<RoomListing>, ApiError> {
    admit(&state, addr, &headers)?;
    let worker = worker_of(&state, &room)?;
    ask(&state, worker, |reply| WorkerCommand::ListRooms { reply })
        .await?
        .into_iter()
        .find(|r| r.name == room)
        .map(|r| Json(RoomListing { worker, ..r }))
        .ok_or(ApiError::UnknownRoom(room))
}

async fn close_room(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    Query(query): Query<Reason>,
) -> Result<StatusCode, ApiError> {
    admit(&state, addr, &headers)?;
    let worker = worker_of(&state, &room)?;
    let reason = query.or(DEFAULT_CLOSE_REASON);
    let ingests = ask(&state, worker, |reply| WorkerCommand::CloseRoom {
        room: room.clone(),
        reason,
        reply,
    })
    .await??;
    // The members' connections release their placements as their outboxes close; the ingests
    // held one each.
    for id in ingests {
        state.forget(id);
        state.dispatch.leave(&room);
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_member(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
    Path((room, peer)): Path<(String, PeerId)>,
    Query(query): Query<Reason>,
) -> Result<StatusCode, ApiError> {
    admit(&state, addr, &headers)?;
    let worker = worker_of(&state, &room)?;
    let reason = query.or(DEFAULT_REMOVE_REASON);
    ask(&state, worker, |reply| WorkerCommand::RemoveMember {
        room,
        peer,
        reason,
        reply,
    })
    .await??;
    Ok(StatusCode::NO_CONTENT)
}

async fn mute(
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(state): State<Arc<AppState>>,
    Path((room, peer)): Path<(String, PeerId)>,
    Json(request): Json<MuteRequest>,
) -> Result<Json<TrackListing>, ApiError> {
    admit(&state, addr, &headers)?;
    let track = request
        .track_id
        .or(request.mid)
        .ok_or_else(|| ApiError::BadRequest("name the track with `trackId` or `mid`".into()))?;
    let worker = worker_of(&state, &room)?;
    let listing = ask(&state, worker, |reply| WorkerCommand::ForceMute {
        room,
        peer,
        track,
        muted: request.muted,
        reply,
    })
    .await??;
    Ok(Json(listing))
}
