//! The trunk's control channel: small versioned JSON messages on the trunk's `trunk` data
//! channel, one per SCTP message. The node that publishes a track announces which SSRC carries
//! each of its layers on the trunk ([`ControlMessage::Publish`]) and when it is gone
//! ([`ControlMessage::Unpublish`]); the far node says which layers it takes
//! ([`ControlMessage::Demand`]). Keyframe requests need no message: they are RTCP PLI on the
//! layer's own stream, and NACKs are RTCP too.
//!
//! What arrives is hostile: a message above [`MAX_CONTROL_MESSAGE`], of another version, or
//! with a field out of range is refused with a [`ControlError`] (the core counts it as
//! `bad_trunk_message`), never a panic.

use serde::{Deserialize, Serialize};

use crate::protocol::{valid_name, PeerId, TrackKind, TrackSource};

/// The version this node speaks; a message of another version is refused.
pub const CONTROL_VERSION: u32 = 1;

/// Largest control message accepted, in bytes.
pub const MAX_CONTROL_MESSAGE: usize = 4096;

/// Most layers a track announces (the router keeps at most this many simulcast layers).
pub const MAX_TRUNK_LAYERS: usize = 3;

/// Longest mid or rid (str0m keeps them in 16 bytes).
const MAX_ID_LEN: usize = 16;

/// One layer of a track on the trunk: its RID at the publisher and the SSRCs it crosses with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStream {
    /// The simulcast RID (`None` without simulcast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// The SSRC its packets carry on the trunk.
    pub ssrc: u32,
    /// The SSRC of its resends (RTX), if video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtx: Option<u32>,
}

/// One message of the trunk's control channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ControlMessage {
    /// A track of the sender's node, published in a room both nodes share, now crosses the
    /// trunk.
    #[serde(rename_all = "camelCase")]
    Publish {
        /// The room it is published in.
        room: String,
        /// The publisher, as its own node numbers it.
        peer: PeerId,
        /// The mid of the publisher's m-line (with `peer`, the track's key on its node).
        mid: String,
        /// The mid of the trunk's media this track's streams belong to.
        trunk_mid: String,
        /// Audio or video.
        kind: TrackKind,
        /// What it shows.
        source: TrackSource,
        /// Whether it is muted now.
        muted: bool,
        /// Its layers, lowest first.
        layers: Vec<LayerStream>,
    },
    /// A track announced with [`ControlMessage::Publish`] is gone.
    #[serde(rename_all = "camelCase")]
    Unpublish {
        /// The publisher, as its own node numbers it.
        peer: PeerId,
        /// The mid of its m-line.
        mid: String,
    },
    /// A track announced with [`ControlMessage::Publish`] was muted or unmuted.
    #[serde(rename_all = "camelCase")]
    Mute {
        /// The publisher, as its own node numbers it.
        peer: PeerId,
        /// The mid of its m-line.
        mid: String,
        /// Muted now.
        muted: bool,
    },
    /// The layers of a track the sender's node takes now (bit n: layer n); 0 stops the track.
    #[serde(rename_all = "camelCase")]
    Demand {
        /// The publisher, as the receiver of this message numbers it.
        peer: PeerId,
        /// The mid of its m-line.
        mid: String,
        /// Bit n set: layer n is taken.
        layers: u8,
    },
}

/// The envelope every message travels in.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u32,
    #[serde(flatten)]
    message: T,
}

/// Why a control message was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    /// Longer than [`MAX_CONTROL_MESSAGE`].
    #[error("control message of {0} bytes is too large")]
    TooLarge(usize),
    /// Not JSON of a known message.
    #[error("malformed control message: {0}")]
    Malformed(String),
    /// Another version of the protocol.
    #[error("control protocol version {0} is not spoken here")]
    Version(u32),
    /// A field out of range.
    #[error("invalid control message: {0}")]
    Invalid(&'static str),
}

impl ControlMessage {
    /// The message as it travels.
    pub fn emit(&self) -> Vec<u8> {
        let envelope = Envelope {
            v: CONTROL_VERSION,
            message: self,
        };
        serde_json::to_vec(&envelope).expect("control messages serialise")
    }

    /// Reads one message that arrived on the control channel, refusing anything malformed.
    pub fn parse(bytes: &[u8]) -> Result<ControlMessage, ControlError> {
        if bytes.len() > MAX_CONTROL_MESSAGE {
            return Err(ControlError::TooLarge(bytes.len()));
        }
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let version: Version =
            serde_json::from_slice(bytes).map_err(|e| ControlError::Malformed(e.to_string()))?;
        if version.v != CONTROL_VERSION {
            return Err(ControlError::Version(version.v));
        }
        let envelope: Envelope<ControlMessage> =
            serde_json::from_slice(bytes).map_err(|e| ControlError::Malformed(e.to_string()))?;
        envelope.message.check()?;
        Ok(envelope.message)
    }

    /// Checks the fields a schema cannot.
    fn check(&self) -> Result<(), ControlError> {
        let id_ok = |id: &str| {
            !id.is_empty()
                && id.len() <= MAX_ID_LEN
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        match self {
            ControlMessage::Publish {
                room,
                mid,
                trunk_mid,
                kind,
                layers,
                ..
            } => {
                if !valid_name(room) {
                    return Err(ControlError::Invalid("room"));
                }
                if !id_ok(mid) || !id_ok(trunk_mid) {
                    return Err(ControlError::Invalid("mid"));
                }
                if layers.is_empty() || layers.len() > MAX_TRUNK_LAYERS {
                    return Err(ControlError::Invalid("layer count"));
                }
                let simulcast = layers.len() > 1;
                for (i, l) in layers.iter().enumerate() {
                    if l.rid.is_some() != simulcast || l.rid.as_deref().is_some_and(|r| !id_ok(r)) {
                        return Err(ControlError::Invalid("rid"));
                    }
                    if *kind == TrackKind::Audio && (simulcast || l.rtx.is_some()) {
                        return Err(ControlError::Invalid("audio layers"));
                    }
                    let taken = |s: u32| {
                        layers[..i]
                            .iter()
                            .any(|o| o.ssrc == s || o.rtx == Some(s) || o.rid == l.rid)
                    };
                    if taken(l.ssrc) || l.rtx.is_some_and(|r| r == l.ssrc || taken(r)) {
                        return Err(ControlError::Invalid("ssrc or rid repeated"));
                    }
                }
                Ok(())
            }
            ControlMessage::Unpublish { mid, .. }
            | ControlMessage::Mute { mid, .. }
            | ControlMessage::Demand { mid, .. } => {
                if id_ok(mid) {
                    Ok(())
                } else {
                    Err(ControlError::Invalid("mid"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish() -> ControlMessage {
        ControlMessage::Publish {
            room: "kitchen".into(),
            peer: 7,
            mid: "1".into(),
            trunk_mid: "t3".into(),
            kind: TrackKind::Video,
            source: TrackSource::Camera,
            muted: false,
            layers: vec![
                LayerStream {
                    rid: Some("q".into()),
                    ssrc: 10,
                    rtx: Some(11),
                },
                LayerStream {
                    rid: Some("f".into()),
                    ssrc: 12,
                    rtx: Some(13),
                },
            ],
        }
    }

    #[test]
    fn every_message_comes_back_as_it_was_emitted() {
        let messages = [
            publish(),
            ControlMessage::Unpublish {
                peer: 7,
                mid: "1".into(),
            },
            ControlMessage::Demand {
                peer: 7,
                mid: "1".into(),
                layers: 0b10,
            },
            ControlMessage::Mute {
                peer: 7,
                mid: "1".into(),
                muted: true,
            },
        ];
        for m in messages {
            let bytes = m.emit();
            assert!(bytes.len() < MAX_CONTROL_MESSAGE);
            assert_eq!(ControlMessage::parse(&bytes), Ok(m));
        }
        let text = String::from_utf8(publish().emit()).unwrap();
        assert!(text.starts_with(r#"{"v":1,"type":"publish""#), "{text}");
    }

    #[test]
    fn hostile_messages_are_refused_with_a_reason() {
        type Expected = fn(&ControlError) -> bool;
        let cases: Vec<(Vec<u8>, Expected)> = vec![
            (vec![b' '; MAX_CONTROL_MESSAGE + 1], |e| {
                matches!(e, ControlError::TooLarge(_))
            }),
            (b"".to_vec(), |e| matches!(e, ControlError::Malformed(_))),
            (b"\xff\xfe".to_vec(), |e| {
                matches!(e, ControlError::Malformed(_))
            }),
            (br#"{"type":"demand"}"#.to_vec(), |e| {
                matches!(e, ControlError::Malformed(_))
            }),
            (br#"{"v":2,"type":"whatever"}"#.to_vec(), |e| {
                *e == ControlError::Version(2)
            }),
            (br#"{"v":1,"type":"shout","peer":1}"#.to_vec(), |e| {
                matches!(e, ControlError::Malformed(_))
            }),
            (
                br#"{"v":1,"type":"demand","peer":-1,"mid":"0","layers":1}"#.to_vec(),
                |e| matches!(e, ControlError::Malformed(_)),
            ),
            (
                br#"{"v":1,"type":"demand","peer":1,"mid":"0","layers":256}"#.to_vec(),
                |e| matches!(e, ControlError::Malformed(_)),
            ),
            (
                br#"{"v":1,"type":"unpublish","peer":1,"mid":"a mid far too long"}"#.to_vec(),
                |e| *e == ControlError::Invalid("mid"),
            ),
        ];
        for (bytes, expected) in cases {
            let refused = ControlMessage::parse(&bytes).expect_err("refused");
            assert!(expected(&refused), "{refused:?} for {bytes:?}");
        }
    }

    fn layers(m: &mut ControlMessage) -> &mut Vec<LayerStream> {
        match m {
            ControlMessage::Publish { layers, .. } => layers,
            _ => unreachable!("a publication"),
        }
    }

    #[test]
    fn publications_with_inconsistent_layers_are_refused() {
        let with = |change: &dyn Fn(&mut ControlMessage)| {
            let mut m = publish();
            change(&mut m);
            ControlMessage::parse(&m.emit()).expect_err("refused")
        };
        assert_eq!(
            with(&|m| layers(m).clear()),
            ControlError::Invalid("layer count")
        );
        assert_eq!(
            with(&|m| {
                let l = layers(m);
                l.extend(l.clone());
            }),
            ControlError::Invalid("layer count")
        );
        assert_eq!(
            with(&|m| layers(m)[1].ssrc = 10),
            ControlError::Invalid("ssrc or rid repeated")
        );
        assert_eq!(
            with(&|m| layers(m)[1].rtx = Some(12)),
            ControlError::Invalid("ssrc or rid repeated")
        );
        assert_eq!(
            with(&|m| layers(m)[1].rid = None),
            ControlError::Invalid("rid")
        );
        assert_eq!(
            with(&|m| {
                if let ControlMessage::Publish { kind, .. } = m {
                    *kind = TrackKind::Audio;
                }
            }),
            ControlError::Invalid("audio layers")
        );
        assert_eq!(
            with(&|m| {
                if let ControlMessage::Publish { room, .. } = m {
                    room.clear();
                }
            }),
            ControlError::Invalid("room")
        );
    }
}
