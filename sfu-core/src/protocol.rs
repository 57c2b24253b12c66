//! The signaling protocol, version 1: every message a client and the SFU exchange over the
//! WebSocket, as one typed enum each way. `docs/protocol.md` is the prose description of these types;
//! the JSON shape is `{"type": "<camelCase variant>", ...fields}`.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks; a `join` asking for another is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Identifies a participant across the whole server (all workers).
pub type PeerId = u64;

/// Longest room or display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Whether `name` is a valid room or display name: 1 to [`MAX_NAME_CHARS`] characters, not
/// all blank.
pub fn valid_name(name: &str) -> bool {
    !name.trim().is_empty() && name.chars().count() <= MAX_NAME_CHARS
}

/// What a client may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum ClientMessage {
    /// Enter a room; must be the first message on a connection.
    Join {
        /// Protocol version the client speaks; must equal [`PROTOCOL_VERSION`].
        version: u32,
        /// Room name, 1..=64 characters.
        room: String,
        /// Display name, 1..=64 characters.
        name: String,
        /// Largest number of members the room may hold; only honoured by the join that creates it.
        #[serde(default)]
        capacity: Option<u32>,
        /// Room token (a JWT), required when the server is configured with a key. Its claims
        /// decide the room, the display name and what the member may do.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// An SDP offer from the client (it publishes or stops tracks), with what each sending m-line carries.
    Offer {
        /// The SDP text.
        sdp: String,
        /// The client's sending tracks, by mid.
        #[serde(default)]
        tracks: Vec<PublishedTrack>,
    },
    /// The client's answer to an `offer` from the SFU.
    Answer {
        /// The SDP text.
        sdp: String,
    },
    /// A trickled ICE candidate of the client (the SFU is ICE-lite and learns addresses from STUN,
    /// so this is accepted for completeness).
    Candidate {
        /// The `candidate:` attribute line.
        candidate: String,
    },
    /// A published track was muted or unmuted; a muted track is not forwarded.
    Mute {
        /// The mid of the client's sending m-line.
        mid: String,
        /// New state.
        muted: bool,
    },
    /// The size at which the client renders a received video track, sent on every resize. The
    /// SFU picks the simulcast layer that fits; a hidden tile (width or height 0) gets no video.
    TileSize {
        /// The track's server-wide id.
        track_id: String,
        /// Rendered width in CSS pixels times the device pixel ratio; 0 when hidden.
        width: u32,
        /// Rendered height, as `width`; 0 when hidden.
        height: u32,
    },
    /// Ask for a `mediaStats` message: what the SFU sends this client and receives from it.
    GetStats,
    /// A chat line, relayed to every other member (used until the data channel is open).
    Chat {
        /// The text, at most 2000 characters.
        text: String,
    },
    /// Start (`active: true`) or stop the room's recording; needs the `record` permission.
    Record {
        /// Whether the room should be recorded.
        active: bool,
    },
    /// Leave the room; the connection stays open but the peer is gone.
    Leave,
    /// Keepalive; answered by `pong`.
    Ping,
    /// A fresh room token for the member's session, sent after `tokenExpiring`: same room, same
    /// identity (`sub`), a later `exp`. Answered by `tokenRefreshed`, or an `error` (the member
    /// stays until the old token runs out).
    Refresh {
        /// The new room token (a JWT).
        token: String,
    },
}

/// A track the client sends, as declared in its `offer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishedTrack {
    /// The mid of the sending m-line in the client's offer.
    pub mid: String,
    /// What the track shows or carries.
    pub source: TrackSource,
    /// Whether it starts muted.
    #[serde(default)]
    pub muted: bool,
}

/// Where a track comes from; the page lays out screen shares differently from cameras.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TrackSource {
    /// A microphone.
    Mic,
    /// A camera.
    Camera,
    /// A captured screen or window.
    Screen,
    /// Audio captured with a screen.
    ScreenAudio,
    /// Anything else (plain RTP ingest, synthetic).
    Other,
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TrackKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// A published track as the other members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackInfo {
    /// Server-wide track id, `"<peerId>:<mid>"`.
    pub id: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// Where it comes from.
    pub source: TrackSource,
    /// Whether it is muted (not forwarded).
    pub muted: bool,
}

/// A member of a room as the others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// The member's id.
    pub id: PeerId,
    /// Display name.
    pub name: String,
    /// Tracks it publishes.
    pub tracks: Vec<TrackInfo>,
}

/// One receiving m-line in an SFU offer: which remote track it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackMapping {
    /// The mid of the m-line in this offer.
    pub mid: String,
    /// The member who publishes the track.
    pub peer_id: PeerId,
    /// The track's server-wide id.
    pub track_id: String,
}

/// An ICE server (STUN/TURN) the client should use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    /// `stun:`/`turn:`/`turns:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What the SFU sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    /// The join succeeded.
    Joined {
        /// Protocol version of the server.
        version: u32,
        /// The client's own id.
        peer_id: PeerId,
        /// The room joined.
        room: String,
        /// The other members and their tracks.
        peers: Vec<PeerInfo>,
        /// ICE servers to configure the RTCPeerConnection with.
        ice_servers: Vec<IceServer>,
        /// The id of the room's recording while the room is being recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recording: Option<String>,
        /// Whether this member may start and stop the recording (`record`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        may_record: bool,
    },
    /// Another member joined.
    PeerJoined {
        /// The new member.
        peer: PeerInfo,
    },
    /// A member left or was dropped.
    PeerLeft {
        /// Its id.
        peer_id: PeerId,
    },
    /// A member published a track.
    TrackPublished {
        /// The publisher.
        peer_id: PeerId,
        /// The track.
        track: TrackInfo,
    },
    /// A member stopped a track.
    TrackUnpublished {
        /// The publisher.
        peer_id: PeerId,
        /// The track's id.
        track_id: String,
    },
    /// A member muted or unmuted a track.
    TrackMuted {
        /// The publisher.
        peer_id: PeerId,
        /// The track's id.
        track_id: String,
        /// New state.
        muted: bool,
    },
    /// An SDP offer from the SFU: the set of tracks this client receives changed.
    Offer {
        /// The SDP text.
        sdp: String,
        /// What each receiving m-line carries.
        tracks: Vec<TrackMapping>,
    },
    /// The SFU's answer to the client's offer.
    Answer {
        /// The SDP text.
        sdp: String,
    },
    /// A chat line from another member (when it could not go over the data channel).
    Chat {
        /// Sender id.
        from: PeerId,
        /// Sender display name.
        name: String,
        /// The text.
        text: String,
    },
    /// Something the client sent was refused, or the peer was dropped.
    Error {
        /// Stable machine-readable code.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
    /// The room's dominant speaker changed (sent to every member, the speaker included).
    ActiveSpeaker {
        /// The member now speaking, or `None` when nobody has spoken yet or the speaker left.
        peer_id: Option<PeerId>,
        /// Its audio track's id.
        track_id: Option<String>,
    },
    /// To a publisher: which simulcast layers of one of its tracks anybody takes. The client
    /// should stop encoding the layers marked inactive (and resume them when marked active).
    LayerHint {
        /// The mid of the client's sending m-line.
        mid: String,
        /// Per layer, lowest first (the order of the offer's `a=simulcast` line): wanted or not.
        active: Vec<bool>,
    },
    /// The room's recording started or stopped (sent to every member; the state at join time is
    /// in `joined`).
    Recording {
        /// Whether the room is being recorded now.
        active: bool,
        /// The recording's id.
        id: String,
        /// Why it stopped, when it stopped on an error (a full disk, the size cap).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// An admin removed this member (or closed its room); it is out of the room, and `peerLeft`
    /// told the others.
    Removed {
        /// Why, in words for the member.
        reason: String,
    },
    /// An admin muted (or unmuted) one of this member's published tracks: it is not forwarded,
    /// and the member's own unmute is refused until an admin unmutes it.
    ForceMuted {
        /// The mid of the member's sending m-line.
        mid: String,
        /// The track's server-wide id.
        track_id: String,
        /// New state.
        muted: bool,
    },
    /// Answer to `getStats`.
    MediaStats(MediaStats),
    /// Answer to `ping`.
    Pong,
    /// The member's room token runs out soon: it is removed in `seconds_left` seconds unless it
    /// sends `refresh` with a fresh token.
    TokenExpiring {
        /// Seconds until the member is removed.
        seconds_left: u64,
    },
    /// A `refresh` was accepted: the member now stays until the new token runs out.
    TokenRefreshed {
        /// Seconds until the new token runs out.
        seconds_left: u64,
    },
    /// The server is shutting down: the member is removed and the connection closes right after.
    ServerStopping,
    /// To a member that may publish: send video in `codec` (an RTP encoding name as in SDP,
    /// e.g. `VP8`, `H264`), the one the room's codec policy chose so that every other member can
    /// decode it (see `docs/protocol.md`, "Codec policy"). The client puts that codec first in
    /// its sending video transceivers' codec preferences and renegotiates.
    VideoCodec {
        /// The encoding name.
        codec: String,
    },
    /// The node is draining (an upgrade, `--cluster`): the member should leave and join the same
    /// room at `url`, another node of the cluster, which it can reach with the same room token.
    Reconnect {
        /// The other node's signaling URL (`https://host:port`, no path).
        url: String,
    },
}

/// Per-leg and per-track media counters of one client, as the `mediaStats` message carries them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaStats {
    /// The SFU's current estimate of the bandwidth toward this client, bits per second (None
    /// until the estimator has one).
    pub estimate_bps: Option<u64>,
    /// The rate the SFU's video allocation for this client adds up to, bits per second.
    pub allocated_bps: u64,
    /// One entry per track the client receives.
    pub receiving: Vec<LegStats>,
    /// One entry per track the client publishes.
    pub publishing: Vec<PublicationStats>,
}

/// What the SFU sends one subscriber of one track.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegStats {
    /// The track's server-wide id.
    pub track_id: String,
    /// Audio or video.
    pub kind: Option<TrackKind>,
    /// Simulcast layer forwarded now (0 = lowest), `None` when none is (paused or not simulcast).
    pub layer: Option<u8>,
    /// Layer the SFU wants to switch to (at that layer's next keyframe).
    pub target_layer: Option<u8>,
    /// Width and height of the forwarded layer when known (from its keyframes).
    pub width: Option<u32>,
    /// Height of the forwarded layer when known.
    pub height: Option<u32>,
    /// Rate forwarded on this leg over the last second, bits per second.
    pub bitrate_bps: u64,
    /// Packets forwarded on this leg.
    pub packets: u64,
    /// NACKs this subscriber sent for the leg.
    pub nacks: u64,
    /// Keyframe requests (PLI/FIR) this subscriber sent for the leg.
    pub plis: u64,
    /// Layer switches made on the leg.
    pub switches: u64,
    /// The tile size the subscriber last reported (0×0 hidden).
    pub tile: Option<(u32, u32)>,
    /// The highest temporal layer of a scalable (SVC) stream forwarded, when the leg forwards
    /// fewer than all (its link does not carry even the lowest layers at full frame rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal_layer: Option<u8>,
}

/// What the SFU receives of one published track.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicationStats {
    /// The track's server-wide id.
    pub track_id: String,
    /// Audio or video.
    pub kind: Option<TrackKind>,
    /// Per simulcast layer (one entry for a track without simulcast), lowest first.
    pub layers: Vec<LayerStats>,
    /// Keyframe requests the SFU sent the publisher for this track.
    pub keyframe_requests: u64,
}

/// One layer of a published track.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerStats {
    /// The RID, for simulcast.
    pub rid: Option<String>,
    /// Rate received over the last second, bits per second.
    pub bitrate_bps: u64,
    /// Width of its last keyframe when known.
    pub width: Option<u32>,
    /// Height of its last keyframe when known.
    pub height: Option<u32>,
    /// Whether packets are arriving.
    pub active: bool,
}

/// Stable error codes of [`ServerMessage::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message was not valid JSON of this protocol.
    BadMessage,
    /// The message was larger than the limit.
    TooLarge,
    /// Too many messages per second.
    RateLimited,
    /// `join` asked for a protocol version this server does not speak.
    UnsupportedVersion,
    /// A message other than `join` came before `join`.
    NotJoined,
    /// A second `join` on one connection.
    AlreadyJoined,
    /// Room or name empty or too long.
    InvalidJoin,
    /// The room holds as many members as it may.
    RoomFull,
    /// The SDP could not be parsed or applied.
    BadSdp,
    /// The message referred to a track or m-line that does not exist.
    UnknownTrack,
    /// The WebRTC session failed or timed out; the peer was removed.
    MediaTimeout,
    /// The server is shutting down or a worker is gone.
    Unavailable,
    /// The server requires a room token and the `join` carried none.
    AuthRequired,
    /// The room token's `exp` has passed.
    TokenExpired,
    /// The room token's `nbf` (or `iat`) is still in the future.
    TokenNotYetValid,
    /// The room token is not valid: malformed, bad signature, an algorithm this server does not
    /// accept (`none` included), or claims of the wrong shape.
    BadToken,
    /// The room token is for another room.
    WrongRoom,
    /// The member's token does not allow this (publishing, chatting).
    Forbidden,
    /// Too many join attempts from this client's address; try again in a few seconds.
    JoinRateLimited,
    /// The room token was revoked (by its `jti`); the member was removed or the join refused.
    TokenRevoked,
    /// The server is at one of its limits (joins in progress, peers); try again later.
    ServerBusy,
    /// A data channel beyond the number a member may open (16 besides `chat`); it was closed.
    TooManyChannels,
}

/// The JSON a client writes on its `chat` data channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatIn {
    /// The text, at most 2000 characters.
    pub text: String,
}

/// The JSON the SFU writes on a member's `chat` data channel for every chat line of another member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "chat", rename_all = "camelCase")]
pub struct ChatOut {
    /// Sender id.
    pub from: PeerId,
    /// Sender display name.
    pub name: String,
    /// The text.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_parses_from_camel_case_json() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"join","version":1,"room":"kitchen","name":"ana","capacity":2}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ClientMessage::Join {
                version: 1,
                room: "kitchen".into(),
                name: "ana".into(),
                capacity: Some(2),
                token: None,
            }
        );
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"join","version":1,"room":"kitchen","name":"ana","token":"a.b.c"}"#,
        )
        .unwrap();
        assert!(matches!(m, ClientMessage::Join { token: Some(t), .. } if t == "a.b.c"));
    }

    #[test]
    fn auth_error_codes_are_snake_case() {
        for (code, text) in [
            (ErrorCode::AuthRequired, "auth_required"),
            (ErrorCode::TokenExpired, "token_expired"),
            (ErrorCode::TokenNotYetValid, "token_not_yet_valid"),
            (ErrorCode::BadToken, "bad_token"),
            (ErrorCode::WrongRoom, "wrong_room"),
            (ErrorCode::Forbidden, "forbidden"),
            (ErrorCode::JoinRateLimited, "join_rate_limited"),
        ] {
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{text}\""));
        }
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        assert!(serde_json::from_str::<ClientMessage>(
            r#"{"type":"join","version":1,"room":"a","name":"b","x":1}"#
        )
        .is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"explode"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"[1,2,3]"#).is_err());
    }

    #[test]
    fn server_messages_use_camel_case_tags_and_fields() {
        let s = serde_json::to_string(&ServerMessage::PeerLeft { peer_id: 7 }).unwrap();
        assert_eq!(s, r#"{"type":"peerLeft","peerId":7}"#);
        let s = serde_json::to_string(&ServerMessage::Joined {
            version: 1,
            peer_id: 3,
            room: "r".into(),
            peers: vec![],
            ice_servers: vec![],
            recording: None,
            may_record: false,
        })
        .unwrap();
        assert_eq!(
            s,
            r#"{"type":"joined","version":1,"peerId":3,"room":"r","peers":[],"iceServers":[]}"#
        );
        let s = serde_json::to_string(&ServerMessage::Error {
            code: ErrorCode::RoomFull,
            message: "full".into(),
        })
        .unwrap();
        assert_eq!(s, r#"{"type":"error","code":"room_full","message":"full"}"#);
        let s = serde_json::to_string(&ChatOut {
            from: 1,
            name: "a".into(),
            text: "hi".into(),
        })
        .unwrap();
        assert_eq!(s, r#"{"type":"chat","from":1,"name":"a","text":"hi"}"#);
    }
}
