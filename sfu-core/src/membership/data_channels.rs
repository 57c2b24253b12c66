//! A member's data channels other than `chat`: those it opened, whose messages the SFU relays to
//! the other members, and the relays the SFU opened to it, each carrying one other member's
//! channel (same label and delivery options; the sender's id as the channel's protocol).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use str0m::channel::{ChannelConfig, ChannelId};

use super::message_rate::MessageRate;
use crate::protocol::PeerId;

/// Most channels a member may open besides `chat`.
pub const MAX_CHANNELS: usize = 16;
/// Longest label of a relayed channel, in bytes (it is copied to every other member).
pub const MAX_LABEL_BYTES: usize = 256;
/// Largest message relayed, in bytes.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Messages a member may send per second over all its channels, after a burst of
/// [`MESSAGE_BURST`] (a cursor at 60 Hz and a few game updates fit).
pub const MESSAGES_PER_SECOND: u32 = 100;
/// See [`MESSAGES_PER_SECOND`].
pub const MESSAGE_BURST: u32 = 200;
/// Bytes a member may send per second over all its channels, after a burst of [`BYTE_BURST`].
pub const BYTES_PER_SECOND: u32 = 256 * 1024;
/// See [`BYTES_PER_SECOND`].
pub const BYTE_BURST: u32 = 512 * 1024;
/// Most bytes a relay may hold for its member, unsent, unacknowledged or waiting for the relay to
/// open; past it messages for that member are dropped (it does not read fast enough).
pub const MAX_RELAY_BUFFERED: usize = 64 * 1024;

/// Why a message a member sent is not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over [`MAX_MESSAGE`].
    TooLarge,
    /// Over the member's message or byte rate.
    RateLimited,
}

/// One relay: a channel the SFU opened to a member, carrying another member's channel.
#[derive(Debug)]
pub struct Relay {
    /// The member whose channel it carries.
    pub from: PeerId,
    /// That member's channel.
    pub source: ChannelId,
    /// The member acknowledged the open (DCEP): messages may be written.
    pub open: bool,
    /// Messages that came before it opened: (binary, bytes), oldest first.
    waiting: VecDeque<(bool, Vec<u8>)>,
    waiting_bytes: usize,
}

impl Relay {
    /// Holds a message until the relay opens; `false` when that would go past
    /// [`MAX_RELAY_BUFFERED`] (the message is not held).
    pub fn hold(&mut self, binary: bool, data: &[u8]) -> bool {
        if self.waiting_bytes + data.len() > MAX_RELAY_BUFFERED {
            return false;
        }
        self.waiting_bytes += data.len();
        self.waiting.push_back((binary, data.to_vec()));
        true
    }

    /// The messages held until now, oldest first.
    pub fn take_waiting(&mut self) -> VecDeque<(bool, Vec<u8>)> {
        self.waiting_bytes = 0;
        std::mem::take(&mut self.waiting)
    }
}

/// A member's relayed data channels, both ways, and its limits.
#[derive(Debug)]
pub struct DataChannels {
    /// It has opened a data channel, so its SCTP association exists and relays can be opened to
    /// it (a client without an `m=application` line gets none).
    pub sctp_up: bool,
    /// The channels it opened (not `chat`), with their label and delivery options.
    opened: HashMap<ChannelId, ChannelConfig>,
    /// The channels the SFU opened to it.
    relays: HashMap<ChannelId, Relay>,
    messages: MessageRate,
    bytes: MessageRate,
    /// It was told about its latest refused message; an accepted one clears this, so a sender
    /// past a limit gets one `error` per run of refusals, not one per message.
    told: bool,
}

impl Default for DataChannels {
    fn default() -> Self {
        DataChannels {
            sctp_up: false,
            opened: HashMap::new(),
            relays: HashMap::new(),
            messages: MessageRate::new(MESSAGES_PER_SECOND, MESSAGE_BURST),
            bytes: MessageRate::new(BYTES_PER_SECOND, BYTE_BURST),
            told: false,
        }
    }
}

impl DataChannels {
    /// Whether it opened as many channels as it may.
    pub fn is_full(&self) -> bool {
        self.opened.len() >= MAX_CHANNELS
    }

    /// It opened channel `id` with `config`.
    pub fn add_opened(&mut self, id: ChannelId, config: ChannelConfig) {
        self.opened.insert(id, config);
    }

    /// It closed channel `id`; whether it was one of its relayed channels.
    pub fn remove_opened(&mut self, id: ChannelId) -> bool {
        self.opened.remove(&id).is_some()
    }

    /// Whether `id` is a channel it opened (and the SFU relays).
    pub fn is_opened(&self, id: ChannelId) -> bool {
        self.opened.contains_key(&id)
    }

    /// The channels it opened, with their configuration.
    pub fn opened(&self) -> impl Iterator<Item = (ChannelId, &ChannelConfig)> {
        self.opened.iter().map(|(id, c)| (*id, c))
    }

    /// Checks a message of `len` bytes it sent at `now` against its limits, taking it out of
    /// its rates when it passes.
    pub fn admit(&mut self, now: Instant, len: usize) -> Result<(), Refusal> {
        if len > MAX_MESSAGE {
            return Err(Refusal::TooLarge);
        }
        // A byte budget taken for a message the message rate then refuses is lost; a member at
        // its message rate is past its limits anyway.
        if !self.bytes.take(now, len) || !self.messages.take(now, 1) {
            return Err(Refusal::RateLimited);
        }
        self.told = false;
        Ok(())
    }

    /// Whether a refusal should be reported to it: the first since its last accepted message.
    pub fn tell_refusal(&mut self) -> bool {
        !std::mem::replace(&mut self.told, true)
    }

    /// The SFU opened `id` to it, carrying channel `source` of member `from`.
    pub fn add_relay(&mut self, id: ChannelId, from: PeerId, source: ChannelId) {
        let relay = Relay {
            from,
            source,
            open: false,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
        };
        self.relays.insert(id, relay);
    }

    /// The relay carrying channel `source` of member `from` to it.
    pub fn relay_of(&self, from: PeerId, source: ChannelId) -> Option<ChannelId> {
        self.relays
            .iter()
            .find(|(_, r)| r.from == from && r.source == source)
            .map(|(id, _)| *id)
    }

    /// The relays carrying channels of member `from`.
    pub fn relays_from(&self, from: PeerId) -> Vec<ChannelId> {
        let from_it = self.relays.iter().filter(|(_, r)| r.from == from);
        from_it.map(|(id, _)| *id).collect()
    }

    /// Relay `id`, to change.
    pub fn relay_mut(&mut self, id: ChannelId) -> Option<&mut Relay> {
        self.relays.get_mut(&id)
    }

    /// Whether `id` is a relay the SFU opened to it.
    pub fn is_relay(&self, id: ChannelId) -> bool {
        self.relays.contains_key(&id)
    }

    /// Forgets relay `id` (closed by either side).
    pub fn remove_relay(&mut self, id: ChannelId) -> Option<Relay> {
        self.relays.remove(&id)
    }
}
