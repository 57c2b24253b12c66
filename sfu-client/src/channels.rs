//! The client's data channels besides `chat`: those it opens (by label) and the relays of the
//! other members' channels that the SFU opens to it (the sender's id in the channel's protocol;
//! docs/protocol.md, "Any data channel").

use std::collections::HashMap;

use str0m::channel::{ChannelConfig, ChannelId, Reliability};

use crate::PeerId;

/// How a data channel delivers its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelOptions {
    /// In the order they were sent.
    pub ordered: bool,
    /// Retransmissions before a message is given up (`None`: reliable).
    pub max_retransmits: Option<u16>,
}

impl Default for ChannelOptions {
    /// Ordered and reliable, like `createDataChannel` without options.
    fn default() -> Self {
        ChannelOptions {
            ordered: true,
            max_retransmits: None,
        }
    }
}

impl ChannelOptions {
    /// The options of an open channel's configuration.
    pub(crate) fn of(config: &ChannelConfig) -> ChannelOptions {
        let max_retransmits = match config.reliability {
            Reliability::MaxRetransmits { retransmits } => Some(retransmits),
            Reliability::Reliable | Reliability::MaxPacketLifetime { .. } => None,
        };
        ChannelOptions {
            ordered: config.ordered,
            max_retransmits,
        }
    }

    /// The configuration that opens a channel `label` with these options.
    pub(crate) fn config(self, label: String) -> ChannelConfig {
        let reliability =
            self.max_retransmits
                .map_or(Reliability::Reliable, |n| Reliability::MaxRetransmits {
                    retransmits: n,
                });
        ChannelConfig {
            label,
            ordered: self.ordered,
            reliability,
            ..ChannelConfig::default()
        }
    }
}

/// Which channel is which.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    /// Channels this client opened, by label.
    own: HashMap<String, ChannelId>,
    /// Relays the SFU opened: the sending member and the label.
    relays: HashMap<ChannelId, (PeerId, String)>,
}

impl Channels {
    /// This client opened `id` labelled `label`.
    pub(crate) fn add_own(&mut self, label: String, id: ChannelId) {
        self.own.insert(label, id);
    }

    /// The channel this client opened with `label`.
    pub(crate) fn own(&self, label: &str) -> Option<ChannelId> {
        self.own.get(label).copied()
    }

    /// The label of `id` if this client opened it.
    pub(crate) fn own_label(&self, id: ChannelId) -> Option<&str> {
        let mut own = self.own.iter();
        own.find(|(_, c)| **c == id).map(|(l, _)| l.as_str())
    }

    /// The SFU opened relay `id` of member `from`'s channel `label`.
    pub(crate) fn add_relay(&mut self, id: ChannelId, from: PeerId, label: String) {
        self.relays.insert(id, (from, label));
    }

    /// The sender and label of relay `id`.
    pub(crate) fn relay(&self, id: ChannelId) -> Option<&(PeerId, String)> {
        self.relays.get(&id)
    }

    /// Forgets channel `id` (closed); its sender (`None` for an own channel) and label.
    pub(crate) fn remove(&mut self, id: ChannelId) -> Option<(Option<PeerId>, String)> {
        if let Some((from, label)) = self.relays.remove(&id) {
            return Some((Some(from), label));
        }
        let label = self.own_label(id)?.to_owned();
        self.own.remove(&label);
        Some((None, label))
    }
}
