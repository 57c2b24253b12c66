//! What two nodes tell each other, through the control plane, to set up the trunk between them:
//! the ICE credentials, the DTLS certificate's fingerprint and the media address of each side,
//! and whether RTP crosses encrypted.
//! No SDP: the trunk's streams are declared by SSRC on its control channel (see `control.rs`),
//! so a new track never renegotiates the session.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// One side of a trunk, as the other side needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrunkDescription {
    /// The ICE username fragment of this side.
    pub ufrag: String,
    /// The ICE password of this side.
    pub pwd: String,
    /// The fingerprint of this side's DTLS certificate (`sha-256 AB:CD:...`).
    pub fingerprint: String,
    /// The media address this side is reached on.
    pub address: SocketAddr,
    /// How the trunk carries RTP: in an offer, what the dialling side wants; in an answer, what
    /// both sides then use. Absent means [`TrunkMedia::Srtp`].
    #[serde(default)]
    pub media: TrunkMedia,
}

/// How a trunk carries RTP. RTCP, the control channel and the setup are DTLS-protected either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TrunkMedia {
    /// SRTP with the keys DTLS agreed: encrypted across the internet.
    #[default]
    Srtp,
    /// Plain RTP (`--trunk plain`), for a private link both nodes trust: no sealing or opening
    /// per packet, and the datagrams can be copied by the kernel.
    Plain,
}

impl TrunkMedia {
    /// What a trunk between a side wanting `self` and one wanting `other` carries: plain only
    /// when both want it.
    pub fn agree(self, other: TrunkMedia) -> TrunkMedia {
        match (self, other) {
            (TrunkMedia::Plain, TrunkMedia::Plain) => TrunkMedia::Plain,
            _ => TrunkMedia::Srtp,
        }
    }

    /// Its name in the API and the logs.
    pub fn name(self) -> &'static str {
        match self {
            TrunkMedia::Srtp => "srtp",
            TrunkMedia::Plain => "plain",
        }
    }
}

/// Why a trunk could not be set up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrunkError {
    /// A trunk to that node exists already (close it first).
    #[error("a trunk to node {0} exists already")]
    Exists(String),
    /// No trunk to that node, or not one waiting for an answer.
    #[error("no trunk to node {0} is waiting for this")]
    Unknown(String),
    /// This core has no media address to offer.
    #[error("no media address to run a trunk on")]
    NoAddress,
    /// The other side's description is unusable.
    #[error("invalid trunk description: {0}")]
    Invalid(String),
}
