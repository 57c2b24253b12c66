//! The error type of the load generator library.

/// Everything that can stop a load generator run or one of its parts.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The scenario is inconsistent or names an unknown preset.
    #[error("scenario: {0}")]
    Scenario(String),
    /// A scenario file could not be parsed.
    #[error("scenario file: {0}")]
    Toml(#[from] toml::de::Error),
    /// A local socket, file or process operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A simulated WebRTC participant failed.
    #[error("sfu client: {0}")]
    Client(#[from] sfu_client::ClientError),
    /// An HTTP request (the SFU's `/api/stats`) failed or returned something unusable.
    #[error("http: {0}")]
    Http(String),
    /// The plain UDP reflector did not answer as expected.
    #[error("reflector: {0}")]
    Reflector(String),
    /// Janus refused something or answered something unusable.
    #[error("janus: {0}")]
    Janus(String),
    /// The mediasoup baseline server refused something or answered something unusable.
    #[error("mediasoup: {0}")]
    Mediasoup(String),
    /// A baseline client's str0m peer connection failed.
    #[error("peer connection: {0}")]
    Peer(String),
    /// Waiting for something took longer than allowed.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = LoadgenError> = std::result::Result<T, E>;
