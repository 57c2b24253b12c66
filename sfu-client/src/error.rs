//! The error type of this crate.

use sfu_core::protocol::ErrorCode;

/// Everything that can go wrong while talking to edge-sfu.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket failed (connect, handshake, read or write).
    #[error("websocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// A local socket operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// str0m refused an operation (SDP, ICE, DTLS, SCTP...).
    #[error("webrtc: {0}")]
    Rtc(#[from] str0m::RtcError),
    /// SDP text from the SFU could not be parsed.
    #[error("sdp: {0}")]
    Sdp(String),
    /// A message could not be (de)serialized.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The SFU answered with an `error` message where we expected something else.
    #[error("refused by the sfu: {code:?}: {message}")]
    Refused {
        /// The protocol error code.
        code: ErrorCode,
        /// The SFU's explanation.
        message: String,
    },
    /// The SFU sent something this client did not expect at that point.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Waiting for something took longer than allowed.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// No published track has this id.
    #[error("unknown local track {0}")]
    UnknownTrack(u32),
    /// The track exists but its m-line is not negotiated with the SFU yet.
    #[error("local track {0} is not negotiated yet")]
    NotNegotiated(u32),
    /// The track has no simulcast layer with this RID (a simulcast track needs one on every
    /// packet, a track without simulcast takes none).
    #[error("local track {track} has no layer {rid:?}")]
    UnknownLayer {
        /// The track.
        track: u32,
        /// The RID asked for (`None`: the packet named no layer).
        rid: Option<String>,
    },
    /// This client receives no track on that m-line.
    #[error("no received track on m-line {0:?}")]
    UnknownRemoteTrack(String),
    /// An argument the caller chose is unusable (say, a RID str0m cannot carry).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The `chat` data channel is not open (yet).
    #[error("the chat data channel is not open")]
    ChannelNotOpen,
    /// The data channel refused the write (buffer full).
    #[error("the data channel buffer is full")]
    ChannelFull,
    /// The command queue to the driver is full (only from the non-waiting methods).
    #[error("the client's command queue is full")]
    QueueFull,
    /// The client's driver task has ended (left, vanished, or the connection failed).
    #[error("the client is closed")]
    Closed,
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
