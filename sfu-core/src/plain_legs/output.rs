//! One plain RTP output: a track copied to receivers, each with its own SSRC and numbering, or
//! one copy handed to the kernel's fan-out.

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::info;

use super::check_targets;
use super::egress::send_copy;
use crate::outbox::Egress;
use crate::plain::{OutputInfo, OutputPath, OutputTarget, PlainError, TargetInfo};
use crate::rewrite::SeqTsRewriter;
use crate::router::{RoutedPacket, TrackKey};

/// A track copied to plain RTP receivers.
#[derive(Debug)]
pub struct PlainOutput {
    /// The room of the track.
    pub room: Arc<str>,
    /// The track.
    pub key: TrackKey,
    targets: Vec<PlainTarget>,
    path: OutputPath,
    /// Numbering of the one copy handed to the kernel (its receivers differ only in SSRC, PT
    /// and addresses, which the kernel rewrites).
    handoff: SeqTsRewriter,
}

/// One receiver of an output, with its own numbering.
#[derive(Debug)]
struct PlainTarget {
    address: SocketAddr,
    ssrc: u32,
    payload_type: Option<u8>,
    rewriter: SeqTsRewriter,
    packets: u64,
    bytes: u64,
}

impl PlainOutput {
    /// Output `id` of track `key` in `room`, to `targets`, on the userspace path.
    pub fn new(
        id: u64,
        room: Arc<str>,
        key: TrackKey,
        targets: &[OutputTarget],
    ) -> Result<PlainOutput, PlainError> {
        let targets = build_targets(id, targets, Vec::new())?;
        info!(output = id, track = %key.id(), targets = targets.len(), "plain RTP output added");
        Ok(PlainOutput {
            room,
            key,
            targets,
            path: OutputPath::Userspace,
            handoff: SeqTsRewriter::new(),
        })
    }

    /// Replaces its receivers; receivers that stay keep their SSRC and numbering.
    pub fn set_targets(&mut self, id: u64, wanted: &[OutputTarget]) -> Result<(), PlainError> {
        let previous = std::mem::take(&mut self.targets);
        match build_targets(id, wanted, previous) {
            Ok(t) => {
                self.targets = t;
                info!(
                    output = id,
                    targets = wanted.len(),
                    "plain RTP output receivers replaced"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves it to another path (the shell programmed or unprogrammed the kernel).
    pub fn set_path(&mut self, id: u64, path: OutputPath) {
        if self.path != path {
            info!(output = id, path = path.name(), "plain RTP output path");
            self.path = path;
        }
    }

    /// The API's view of it.
    pub fn info(&self, id: u64) -> OutputInfo {
        OutputInfo {
            id,
            room: self.room.to_string(),
            track_id: self.key.id(),
            path: self.path.name(),
            targets: self
                .targets
                .iter()
                .map(|t| TargetInfo {
                    address: t.address,
                    ssrc: t.ssrc,
                    payload_type: t.payload_type,
                    packets: t.packets,
                    bytes: t.bytes,
                })
                .collect(),
        }
    }

    /// Copies one packet of its track: one datagram per receiver, or one for the kernel to copy.
    /// A recorder or relay takes one layer of a simulcast track: the best.
    pub fn deliver(&mut self, packet: &RoutedPacket, egress: &mut Egress) {
        if !packet.serves_top_layer() {
            return;
        }
        let len = packet.arrival.payload.len() as u64;
        match self.path {
            OutputPath::Kernel { handoff, ssrc } => {
                if send_copy(
                    egress,
                    &mut self.handoff,
                    packet,
                    ssrc,
                    *packet.arrival.pt,
                    handoff,
                ) {
                    for target in &mut self.targets {
                        target.packets += 1;
                        target.bytes += len;
                    }
                }
            }
            OutputPath::Userspace => {
                for t in &mut self.targets {
                    let pt = t.payload_type.unwrap_or(*packet.arrival.pt);
                    if send_copy(egress, &mut t.rewriter, packet, t.ssrc, pt, t.address) {
                        t.packets += 1;
                        t.bytes += len;
                    }
                }
            }
        }
    }
}

/// Receivers for output `id`: those already in `previous` (same address) keep their state.
fn build_targets(
    id: u64,
    wanted: &[OutputTarget],
    mut previous: Vec<PlainTarget>,
) -> Result<Vec<PlainTarget>, PlainError> {
    check_targets(wanted)?;
    let mut targets = Vec::with_capacity(wanted.len());
    for (index, w) in wanted.iter().enumerate() {
        let kept = previous
            .iter()
            .position(|p| p.address == w.address)
            .map(|i| previous.swap_remove(i));
        let target = match kept {
            Some(mut t) => {
                t.ssrc = w.ssrc.unwrap_or(t.ssrc);
                t.payload_type = w.payload_type;
                t
            }
            None => PlainTarget {
                address: w.address,
                ssrc: w.ssrc.unwrap_or_else(|| default_ssrc(id, index)),
                payload_type: w.payload_type,
                rewriter: SeqTsRewriter::new(),
                packets: 0,
                bytes: 0,
            },
        };
        targets.push(target);
    }
    Ok(targets)
}

/// An SSRC for receiver `index` of output `id` when the caller names none: distinct per receiver,
/// the same across restarts of the same configuration.
fn default_ssrc(id: u64, index: usize) -> u32 {
    let mixed = (id ^ ((index as u64) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 32) as u32 | 1
}
