//! The admin API against the real binary, with sfu-client members that see its effects: the
//! listing shows members and tracks, a muted track stops arriving (and its member cannot unmute
//! it), a removed member is told why while the others see it leave, a closed room is empty.

mod support;

use std::time::Duration;

use serde_json::Value;
use sfu_client::{ClientConfig, ClientEvent, ClientMessage, ErrorCode};
use support::ops::{audio_until_received, send_audio, wait_event};
use support::{http, http_get, join, join_with, wait_tracks_of, Server};

const WAIT: Duration = Duration::from_secs(20);

async fn json(server: &Server, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (status, text) = http(server.addr, method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    };
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_list_mute_remove_and_close() {
    let server = Server::start();
    let mut speaker = join(&server, "board", "speaker", true, false).await;
    let viewer_config = |name: &str| {
        ClientConfig::new(server.ws_url(), "board", name)
            .audio(false)
            .video(false)
            .deliver_rtp(false)
    };
    let mut viewer = join_with(viewer_config("viewer")).await;
    let mut heckler = join_with(viewer_config("heckler")).await;
    let speaker_id = speaker.peer_id();
    wait_tracks_of(&viewer, speaker_id, 1).await;
    audio_until_received(&speaker, &viewer, 5).await;

    // The listing.
    let (status, rooms) = json(&server, "GET", "/api/rooms", None).await;
    assert_eq!(status, 200, "{rooms}");
    let rooms = rooms.as_array().expect("a list of rooms");
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    let room = &rooms[0];
    assert_eq!(room["name"], "board");
    let members = room["members"].as_array().expect("members");
    let names: Vec<&str> = members
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["speaker", "viewer", "heckler"]);
    let tracks = members[0]["tracks"].as_array().expect("tracks");
    assert_eq!(tracks.len(), 1, "{tracks:?}");
    assert_eq!(tracks[0]["kind"], "audio");
    assert_eq!(tracks[0]["muted"], false);
    assert_eq!(tracks[0]["simulcastLayers"], Value::Array(vec![]));
    let track_id = tracks[0]["id"].as_str().unwrap().to_owned();
    let (status, one) = json(&server, "GET", "/api/rooms/board", None).await;
    assert_eq!(status, 200);
    assert_eq!(one["worker"], room["worker"]);
    assert_eq!(
        json(&server, "GET", "/api/rooms/nowhere", None).await.0,
        404
    );

    // Mute: the speaker is told, the viewer sees it muted, and the audio stops arriving.
    let mute_path = format!("/api/rooms/board/members/{speaker_id}/mute");
    let body = format!(r#"{{"trackId":"{track_id}","muted":true}}"#);
    let (status, track) = json(&server, "POST", &mute_path, Some(&body)).await;
    assert_eq!(status, 200, "{track}");
    assert_eq!(
        (track["muted"].clone(), track["adminMuted"].clone()),
        (true.into(), true.into())
    );
    wait_event(
        &mut speaker,
        "forceMuted",
        |e| matches!(e, ClientEvent::ForceMuted { muted: true, track_id: t, .. } if *t == track_id),
    )
    .await;
    wait_event(&mut viewer, "trackMuted", |e| {
        matches!(e, ClientEvent::TrackMuted { muted: true, .. })
    })
    .await;
    // Packets sent before the mute may still be on their way: the baseline is taken after a pause.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = viewer.counters().rtp_received;
    send_audio(&speaker, 25).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        viewer.counters().rtp_received,
        baseline,
        "a muted track is not forwarded"
    );

    // The speaker cannot unmute itself...
    let mid = track_id.split_once(':').unwrap().1.to_owned();
    speaker
        .send_signal(ClientMessage::Mute {
            mid: mid.clone(),
            muted: false,
        })
        .await
        .expect("sending mute");
    wait_event(&mut speaker, "a refused unmute", |e| {
        matches!(
            e,
            ClientEvent::ServerError {
                code: ErrorCode::Forbidden,
                ..
            }
        )
    })
    .await;
    // ...an admin can (by mid this time).
    let body = format!(r#"{{"mid":"{mid}","muted":false}}"#);
    let (status, track) = json(&server, "POST", &mute_path, Some(&body)).await;
    assert_eq!(status, 200, "{track}");
    assert_eq!(track["muted"], false);
    audio_until_received(&speaker, &viewer, 5).await;
    let (status, _) = json(
        &server,
        "POST",
        "/api/rooms/board/members/999/mute",
        Some(&body),
    )
    .await;
    assert_eq!(status, 404);

    // Remove: the heckler is told why, the others see it leave.
    let heckler_id = heckler.peer_id();
    let path = format!("/api/rooms/board/members/{heckler_id}?reason=heckling");
    assert_eq!(json(&server, "DELETE", &path, None).await.0, 204);
    wait_event(
        &mut heckler,
        "removed",
        |e| matches!(e, ClientEvent::Removed { reason } if reason == "heckling"),
    )
    .await;
    wait_event(
        &mut viewer,
        "peerLeft",
        |e| matches!(e, ClientEvent::PeerLeft(id) if *id == heckler_id),
    )
    .await;
    assert_eq!(
        json(&server, "DELETE", &path, None).await.0,
        404,
        "already gone"
    );

    // Close: everyone is told and removed; the room is gone.
    assert_eq!(
        json(&server, "DELETE", "/api/rooms/board", None).await.0,
        204
    );
    for client in [&mut speaker, &mut viewer] {
        wait_event(client, "removed", |e| {
            matches!(e, ClientEvent::Removed { .. })
        })
        .await;
    }
    server.until_empty(WAIT).await;
    let (status, rooms) = http_get(server.addr, "/api/rooms")
        .await
        .expect("GET /api/rooms");
    assert_eq!((status, rooms.as_str()), (200, "[]"));
    heckler.leave().await;
    speaker.leave().await;
    viewer.leave().await;
}
