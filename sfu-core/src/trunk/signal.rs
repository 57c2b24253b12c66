//! How a worker names its end of trunks, and the descriptions that two ends exchange through
//! the control plane to set a trunk up.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{TrunkDescription, TrunkMedia};

/// This worker's end of trunks: the name other nodes know it by, and where they reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkEndpoint {
    /// Unique in the cluster (the control plane names a worker `node/index`); of two ends, the
    /// one whose name sorts lower dials.
    pub name: String,
    /// The address other nodes send to, when it is not the worker's own media address (a
    /// forwarded port, `--trunk-address`); trunks still run on the worker's own address.
    pub advertised: Option<SocketAddr>,
    /// How this end wants its trunks to carry RTP (`--trunk`); a trunk is plain only when both
    /// ends want it.
    pub media: TrunkMedia,
}

/// Which half of a trunk's setup a [`TrunkSignal`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SignalKind {
    /// The dialling end's description: the receiver answers it.
    Offer,
    /// The answering end's description: ICE, DTLS and SCTP start on the dialling end.
    Answer,
    /// The sender closed the session it described this way (nothing came from the receiver for
    /// too long): the receiver closes its end of that session, and dials again if it dials and
    /// still needs the trunk, rather than wait for its own silence timer. The description
    /// names the session, so a late one does not close a newer session.
    Closed,
}

/// A trunk description on its way from one trunk end to another, through the control plane
/// (which reads `to` to find the node and worker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrunkSignal {
    /// The end it is from.
    pub from: String,
    /// The end it is for.
    pub to: String,
    /// Offer, answer or closed.
    pub kind: SignalKind,
    /// The sender's ICE credentials, DTLS fingerprint and address (of the closed session, for
    /// [`SignalKind::Closed`]).
    pub description: TrunkDescription,
}
