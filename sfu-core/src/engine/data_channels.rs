//! Any data channel, relayed: a channel a member opens with a label other than `chat` is opened by
//! the SFU to every other member of the room that has an SCTP association, with the same label,
//! ordering and retransmission options and the sender's id as the channel's `protocol`; each
//! message is written to those relays as it came (text or binary, unchanged). Per-member limits
//! (channels, message size, message and byte rates) refuse with an `error` and a counted drop;
//! a member that does not read has its relays' messages dropped and counted.

use std::time::Instant;

use str0m::channel::{ChannelConfig, ChannelData, ChannelId};
use tracing::debug;

use super::Core;
use crate::counters::DropReason;
use crate::membership::data_channels::{
    Refusal, MAX_CHANNELS, MAX_LABEL_BYTES, MAX_MESSAGE, MAX_RELAY_BUFFERED,
};
use crate::membership::Peer;
use crate::protocol::{ErrorCode, PeerId};

/// The label of the chat channel, which the SFU reads itself instead of relaying.
pub(super) const CHAT_LABEL: &str = "chat";

impl Core {
    /// Channel `cid` of member `id` opened: its chat channel, a relay the SFU opened to it (now
    /// writable), or a channel it opened, to relay to the room.
    pub(super) fn on_channel_open(
        &mut self,
        now: Instant,
        id: PeerId,
        cid: ChannelId,
        label: String,
    ) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        if let Some(relay) = peer.data_channels.relay_mut(cid) {
            relay.open = true;
            let waiting = relay.take_waiting();
            for (binary, data) in waiting {
                if let Err(reason) = write_relay(peer, cid, binary, &data) {
                    self.counters.drop(reason);
                }
            }
            self.members.mark_dirty(id);
            return;
        }
        let first = !std::mem::replace(&mut peer.data_channels.sctp_up, true);
        if label == CHAT_LABEL {
            peer.chat_channel = Some(cid);
        } else {
            self.on_member_channel(now, id, cid, label);
        }
        if first {
            self.open_relays_to(id);
        }
    }

    /// Member `id` opened channel `cid` labelled `label`: admitted within its limits (an open
    /// counts as a message against its rate: opening and closing channels makes the SFU open and
    /// close relays to the whole room), and opened to the others.
    fn on_member_channel(&mut self, now: Instant, id: PeerId, cid: ChannelId, label: String) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        // The label is checked first: the other errors quote it.
        let refusal = if label.len() > MAX_LABEL_BYTES {
            Some((
                DropReason::BadChannelMessage,
                ErrorCode::BadMessage,
                format!(
                    "data channel label of {} bytes closed: at most {MAX_LABEL_BYTES}",
                    label.len()
                ),
            ))
        } else if !peer.permissions.chat {
            Some((
                DropReason::Forbidden,
                ErrorCode::Forbidden,
                format!("your token does not allow data channels in this room (`{label}`)"),
            ))
        } else if peer.data_channels.is_full() {
            Some((
                DropReason::TooManyChannels,
                ErrorCode::TooManyChannels,
                format!("data channel `{label}` closed: at most {MAX_CHANNELS} besides chat"),
            ))
        } else if peer.data_channels.admit(now, 0).is_err() {
            Some((
                DropReason::ChannelRateLimited,
                ErrorCode::RateLimited,
                format!("data channel `{label}` closed: over the message rate"),
            ))
        } else {
            None
        };
        if let Some((reason, code, message)) = refusal {
            peer.rtc.direct_api().close_data_channel(cid);
            self.members.mark_dirty(id);
            self.counters.drop(reason);
            return self.error(id, code, &message);
        }
        // The remote's DCEP open carried the options; an out-of-band (negotiated) channel has
        // none, and is relayed as a reliable, ordered one.
        let config = peer
            .rtc
            .channel(cid)
            .and_then(|ch| ch.config().cloned())
            .unwrap_or_else(|| ChannelConfig {
                label: label.clone(),
                ..ChannelConfig::default()
            });
        debug!(
            peer = id,
            label,
            ordered = config.ordered,
            "data channel opened"
        );
        peer.data_channels.add_opened(cid, config.clone());
        let room = peer.room.clone();
        for other in self.members.members_except(&room, id) {
            if let Some(o) = self.members.get_mut(other) {
                if o.data_channels.sctp_up {
                    open_relay(o, id, cid, &config);
                    self.members.mark_dirty(other);
                }
            }
        }
    }

    /// Member `id`'s SCTP association just came up: relays of every channel the others opened.
    fn open_relays_to(&mut self, id: PeerId) {
        let Some(room) = self.members.get(id).map(|p| p.room.clone()) else {
            return;
        };
        let mut sources = Vec::new();
        for other in self.members.members_except(&room, id) {
            if let Some(o) = self.members.get(other) {
                let opened = o.data_channels.opened();
                sources.extend(opened.map(|(cid, config)| (other, cid, config.clone())));
            }
        }
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        for (from, cid, config) in &sources {
            open_relay(peer, *from, *cid, config);
        }
        self.members.mark_dirty(id);
    }

    /// Channel `cid` of member `id` closed: its chat channel, a relay (it closed it: nothing
    /// more is written there), or one it opened, whose relays close too.
    pub(super) fn on_channel_close(&mut self, id: PeerId, cid: ChannelId) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        if peer.chat_channel == Some(cid) {
            peer.chat_channel = None;
        } else if peer.data_channels.remove_relay(cid).is_none()
            && peer.data_channels.remove_opened(cid)
        {
            let room = peer.room.clone();
            for other in self.members.members_except(&room, id) {
                self.close_relays(other, |data_channels| {
                    data_channels.relay_of(id, cid).into_iter().collect()
                });
            }
        }
    }

    /// Closes the relays to member `to` that carry channels of member `from` (which left).
    pub(super) fn close_relays_from(&mut self, to: PeerId, from: PeerId) {
        self.close_relays(to, |data_channels| data_channels.relays_from(from));
    }

    fn close_relays(
        &mut self,
        to: PeerId,
        which: impl FnOnce(&crate::membership::DataChannels) -> Vec<ChannelId>,
    ) {
        let Some(peer) = self.members.get_mut(to) else {
            return;
        };
        let relays = which(&peer.data_channels);
        if relays.is_empty() {
            return;
        }
        for relay in relays {
            peer.data_channels.remove_relay(relay);
            peer.rtc.direct_api().close_data_channel(relay);
        }
        self.members.mark_dirty(to);
    }

    /// A message on member `id`'s channel `data.id`, not its chat channel: relayed to the others
    /// if the channel is one it opened and the message is within its limits.
    pub(super) fn on_relayed_data(&mut self, now: Instant, id: PeerId, data: &ChannelData) {
        let Some(peer) = self.members.get_mut(id) else {
            return;
        };
        if !peer.data_channels.is_opened(data.id) {
            // A message on a relay (they carry only the SFU's writes) or on a refused channel.
            return self.counters.drop(DropReason::BadChannelMessage);
        }
        if let Err(refusal) = peer.data_channels.admit(now, data.data.len()) {
            let tell = peer.data_channels.tell_refusal();
            let (reason, code, message) = match refusal {
                Refusal::TooLarge => (
                    DropReason::ChannelTooLarge,
                    ErrorCode::TooLarge,
                    format!(
                        "a data channel message of {} bytes was dropped: at most {MAX_MESSAGE}",
                        data.data.len()
                    ),
                ),
                Refusal::RateLimited => (
                    DropReason::ChannelRateLimited,
                    ErrorCode::RateLimited,
                    "data channel messages dropped: over the rate limit".to_owned(),
                ),
            };
            self.counters.drop(reason);
            if tell {
                self.error(id, code, &message);
            }
            return;
        }
        let room = peer.room.clone();
        for other in self.members.members_except(&room, id) {
            let Some(o) = self.members.get_mut(other) else {
                continue;
            };
            let Some(relay) = o.data_channels.relay_of(id, data.id) else {
                continue;
            };
            match write_relay(o, relay, data.binary, &data.data) {
                Ok(()) => self.members.mark_dirty(other),
                Err(reason) => self.counters.drop(reason),
            }
        }
    }
}

/// Opens to `peer` a relay of channel `source` of member `from`.
fn open_relay(peer: &mut Peer, from: PeerId, source: ChannelId, config: &ChannelConfig) {
    if peer.data_channels.relay_of(from, source).is_some() {
        return;
    }
    let relay = peer.rtc.direct_api().create_data_channel(ChannelConfig {
        label: config.label.clone(),
        ordered: config.ordered,
        reliability: config.reliability,
        negotiated: None,
        protocol: from.to_string(),
    });
    peer.data_channels.add_relay(relay, from, source);
}

/// Writes a message on `peer`'s relay `relay`, or holds it until the relay opens.
fn write_relay(
    peer: &mut Peer,
    relay: ChannelId,
    binary: bool,
    data: &[u8],
) -> Result<(), DropReason> {
    let Some(state) = peer.data_channels.relay_mut(relay) else {
        return Err(DropReason::BadChannelMessage);
    };
    if !state.open {
        return match state.hold(binary, data) {
            true => Ok(()),
            false => Err(DropReason::ChannelBufferFull),
        };
    }
    let mut channel = peer
        .rtc
        .channel(relay)
        .ok_or(DropReason::ChannelBufferFull)?;
    if channel.buffered_amount() + data.len() > MAX_RELAY_BUFFERED {
        return Err(DropReason::ChannelBufferFull);
    }
    match channel.write(binary, data) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(DropReason::ChannelBufferFull),
    }
}
