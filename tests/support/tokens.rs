//! Room tokens for tests against servers started with a shared secret: the secret file, tokens
//! minted with it, and a raw WebSocket join that presents one.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sfu_core::protocol::{ClientMessage, PeerId, ServerMessage, PROTOCOL_VERSION};
use sfu_core::Permissions;
use signaling::auth::{mint_hs256, Claims, Secret, CLOCK_LEEWAY_SECS};

use super::{Next, RawWs, Server};

/// The secret every server of these tests is given.
pub const SECRET: &str = "token-life test secret, 32 bytes or more";

/// How long a join may take.
const JOIN_WAIT: Duration = Duration::from_secs(10);

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

/// Writes `contents` to a private file (mode 0600, as the server wants for keys and secrets)
/// named `what`, in a folder of this test run and `test`; returns its path.
pub fn private_file(test: &str, what: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-sfu-tokens-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(what);
    std::fs::write(&path, contents).expect("writing a key file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

/// A file holding [`SECRET`], for `--auth-secret-file`; one per `test` name.
pub fn secret_file(test: &str) -> PathBuf {
    private_file(test, "secret", &format!("{SECRET}\n"))
}

/// Revokes token `jti` through `server`'s API (`POST /api/tokens/revoke`, from loopback, so
/// admitted), and checks it was (204).
pub async fn revoke(server: &Server, jti: &str) {
    let body = format!(r#"{{"jti": "{jti}"}}"#);
    let (status, answer) = super::http(server.addr, "POST", "/api/tokens/revoke", Some(&body))
        .await
        .expect("POST /api/tokens/revoke");
    assert_eq!(status, 204, "{answer}");
}

/// A token for `name` in `room` that a server accepts for `secs` more seconds (its `exp` plus
/// the leeway), with `jti`.
pub fn token(room: &str, name: &str, secs: u64, jti: &str) -> String {
    let issued = now() - CLOCK_LEEWAY_SECS;
    let claims = Claims {
        exp: Some(now() + secs - CLOCK_LEEWAY_SECS),
        jti: Some(jti.into()),
        ..Claims::for_member(room, name, Some(name), Permissions::ALL, false, issued, 1)
            .expect("a lifetime that fits")
    };
    mint_hs256(&Secret::new(SECRET).expect("a secret"), &claims).expect("minting")
}

/// The `join` of `room` with `token`.
pub fn join_msg(room: &str, token: String) -> ClientMessage {
    ClientMessage::Join {
        version: PROTOCOL_VERSION,
        room: room.into(),
        name: "ignored".into(),
        capacity: None,
        token: Some(token),
    }
}

/// Connects and joins `room` with `token`; returns the socket and the peer id.
pub async fn join_with_token(server: &Server, room: &str, token: String) -> (RawWs, PeerId) {
    let mut ws = RawWs::connect(server).await;
    ws.send(&join_msg(room, token)).await.expect("sending join");
    loop {
        match ws.next(JOIN_WAIT).await {
            Next::Msg(ServerMessage::Joined { peer_id, .. }) => return (ws, peer_id),
            Next::Msg(ServerMessage::PeerJoined { .. }) => {}
            other => panic!("no `joined` in {room}: {other:?}"),
        }
    }
}
