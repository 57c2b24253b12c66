//! The in-kernel fan-out of plain trunks: with `--trunk plain` and `--kernel-interface`, a layer
//! of a local track that several far nodes take leaves this worker once, as one plain RTP packet
//! handed to the TC fan-out on `lo` (the hand-off), which sends each far node its copy with the
//! SSRC that node's trunk announced for the layer, from this worker's media address to the far
//! end of the trunk. An SRTP trunk cannot be served so: each copy is sealed with its trunk's keys.
//!
//! A layer's copies must differ in nothing else, so every plain trunk that takes a layer sends it
//! numbered alike (one `SeqTsRewriter` per layer, from a rollover counter of 0) and without
//! header extensions (the far side knows the layer by its SSRC; trunks estimate no bandwidth).
//! Each trunk still answers its far node's NACKs and keyframe requests itself, from what it is
//! told was sent ([`Trunk::note_kernel_copy`](super::Trunk::note_kernel_copy)).
//!
//! The groups follow the trunks: [`KernelFanout::refresh`] compares what they should be (which
//! connected plain trunks take which layer, on which 5-tuple) with what was programmed, and
//! queues a [`FanoutChange`] for the shell where they differ. A group the shell could not program
//! is [`KernelFanout::refused`]: its trunks send their own copies until it is gone.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use str0m::rtp::ExtensionValues;

use super::TrunkId;
use crate::counters::DropReason;
use crate::outbox::Egress;
use crate::plain_legs::transmit_copy;
use crate::rewrite::{Rewritten, SeqTsRewriter};
use crate::router::{PacketIndex, RoutedPacket, TrackKey};

/// Where this worker hands plain trunk packets to the kernel fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutConfig {
    /// The hand-off address: the fan-out's key port on `lo`.
    pub handoff: SocketAddr,
    /// Sets this worker's hand-off SSRCs apart from other workers' (its index): the fan-out is
    /// keyed by (port, SSRC) for the whole process.
    pub worker: u16,
}

/// One copy the kernel makes of a hand-off packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkCopy {
    /// The local end of the trunk (this worker's media address): the copy's source.
    pub from: SocketAddr,
    /// The far end of the trunk.
    pub to: SocketAddr,
    /// The SSRC the trunk announced for the layer.
    pub ssrc: u32,
}

/// What the shell is to program in the kernel fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanoutChange {
    /// Hand-off packets with `handoff_ssrc` are copied to `copies` from now on (replacing what
    /// was programmed for that SSRC). When this cannot be done the shell says so with
    /// [`Core::trunk_fanout_refused`](crate::Core::trunk_fanout_refused).
    Set {
        /// The SSRC of the hand-off packets.
        handoff_ssrc: u32,
        /// The copies, one per far node.
        copies: Vec<TrunkCopy>,
    },
    /// Hand-off packets with `handoff_ssrc` are no longer sent: forget them.
    Remove {
        /// The SSRC of the hand-off packets.
        handoff_ssrc: u32,
    },
}

/// One trunk taking a layer, and the copy the kernel makes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutMember {
    /// The trunk.
    pub trunk: TrunkId,
    /// Its copy: on its 5-tuple, with its SSRC for the layer.
    pub copy: TrunkCopy,
}

/// One layer of a local track sent through the kernel to every trunk that takes it.
#[derive(Debug)]
struct FanoutGroup {
    /// The SSRC of its hand-off packets.
    handoff_ssrc: u32,
    /// The numbering every trunk of the group sees.
    rewriter: SeqTsRewriter,
    /// The trunks taking it, by trunk id.
    members: Vec<FanoutMember>,
    /// The shell could not program it: its trunks send their own copies.
    refused: bool,
    /// The last packet numbered, and its numbering (every trunk's delivery of it gets the same).
    numbered: Option<(PacketIndex, Rewritten)>,
    /// The last packet handed off (each trunk's delivery of it after the first only records it).
    handed_off: Option<PacketIndex>,
}

/// The kernel fan-out groups of one worker's plain trunks.
#[derive(Debug)]
pub struct KernelFanout {
    config: FanoutConfig,
    groups: HashMap<(TrackKey, u8), FanoutGroup>,
    /// Programming for the shell, in order.
    changes: VecDeque<FanoutChange>,
    /// The next hand-off SSRC's number within this worker.
    next_group: u32,
}

impl KernelFanout {
    /// No group yet; hand-offs go to `config.handoff`.
    pub fn new(config: FanoutConfig) -> Self {
        KernelFanout {
            config,
            groups: HashMap::new(),
            changes: VecDeque::new(),
            next_group: 0,
        }
    }

    /// Makes the groups what `wanted` says (the members of each layer some plain trunk takes),
    /// queueing the programming that takes.
    pub fn refresh(&mut self, wanted: HashMap<(TrackKey, u8), Vec<FanoutMember>>) {
        let changes = &mut self.changes;
        self.groups.retain(|layer, group| {
            let keep = wanted.contains_key(layer);
            if !keep && !group.refused {
                changes.push_back(FanoutChange::Remove {
                    handoff_ssrc: group.handoff_ssrc,
                });
            }
            keep
        });
        for (layer, mut members) in wanted {
            members.sort_by_key(|m| m.trunk);
            let group = match self.groups.get_mut(&layer) {
                Some(group) if group.members == members => continue,
                Some(group) => group,
                None => {
                    let handoff_ssrc = self.handoff_ssrc();
                    self.groups.entry(layer).or_insert(FanoutGroup {
                        handoff_ssrc,
                        rewriter: SeqTsRewriter::new(),
                        members: Vec::new(),
                        refused: false,
                        numbered: None,
                        handed_off: None,
                    })
                }
            };
            group.members = members;
            if !group.refused {
                self.changes.push_back(FanoutChange::Set {
                    handoff_ssrc: group.handoff_ssrc,
                    copies: group.members.iter().map(|m| m.copy).collect(),
                });
            }
        }
    }

    /// A distinct even SSRC (plain outputs' hand-offs use odd ones) carrying the worker's index.
    fn handoff_ssrc(&mut self) -> u32 {
        let n = self.next_group & 0x7_ffff;
        self.next_group = self.next_group.wrapping_add(1);
        (u32::from(self.config.worker) << 20 | n) << 1
    }

    /// The shell could not program the group of `handoff_ssrc`; its trunks send their own copies
    /// until it is gone. False when there is no such group.
    pub fn refused(&mut self, handoff_ssrc: u32) -> bool {
        let group = self
            .groups
            .values_mut()
            .find(|g| g.handoff_ssrc == handoff_ssrc);
        match group {
            Some(group) => {
                group.refused = true;
                true
            }
            None => false,
        }
    }

    /// The next programming for the shell.
    pub fn next_change(&mut self) -> Option<FanoutChange> {
        self.changes.pop_front()
    }

    /// Whether the kernel serves `trunk`'s copy of `layer` of track `key`.
    pub fn serves(&self, trunk: TrunkId, key: TrackKey, layer: u8) -> bool {
        self.groups
            .get(&(key, layer))
            .is_some_and(|g| !g.refused && g.members.iter().any(|m| m.trunk == trunk))
    }

    /// `packet`'s numbering on every trunk of its layer's group, the same however many trunks
    /// ask; `None` for a late packet of a source the layer switched away from. Only for a layer
    /// that [`Self::serves`] some trunk.
    pub fn number(&mut self, packet: &RoutedPacket, egress: &mut Egress) -> Option<Rewritten> {
        let group = self.groups.get_mut(&(packet.track, packet.layer))?;
        if let Some((index, numbered)) = group.numbered {
            if index == packet.index {
                return Some(numbered);
            }
        }
        let Some(numbered) = packet.arrival.renumber(&mut group.rewriter) else {
            egress.counters.drop(DropReason::StaleSource);
            return None;
        };
        group.numbered = Some((packet.index, numbered));
        Some(numbered)
    }

    /// Hands `packet`, `numbered` by [`Self::number`], off to the kernel as plain RTP with
    /// payload type `pt`, once however many trunks deliver it; false when it could not be, or
    /// must not: the kernel's copies carry no header extension, so a packet with one that must
    /// cross (an audio level, a video orientation, an AV1 dependency descriptor) is left to each
    /// trunk's session. The sender's abs-send-time does not cross.
    pub fn hand_off(
        &mut self,
        packet: &RoutedPacket,
        numbered: Rewritten,
        pt: u8,
        egress: &mut Egress,
    ) -> bool {
        let handoff = self.config.handoff;
        let Some(group) = self.groups.get_mut(&(packet.track, packet.layer)) else {
            return false;
        };
        if group.handed_off == Some(packet.index) {
            return true;
        }
        let ext = &packet.arrival.ext;
        let bare = *ext
            == ExtensionValues {
                abs_send_time: ext.abs_send_time,
                ..ExtensionValues::default()
            };
        if !bare || !transmit_copy(egress, numbered, packet, (group.handoff_ssrc, pt), handoff) {
            return false;
        }
        group.handed_off = Some(packet.index);
        true
    }

    /// How many layers the kernel copies to `trunk` now.
    pub fn layers_of(&self, trunk: TrunkId) -> usize {
        self.groups
            .values()
            .filter(|g| !g.refused && g.members.iter().any(|m| m.trunk == trunk))
            .count()
    }
}
