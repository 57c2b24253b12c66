//! Plain RTP in the core. An ingest is a source: a virtual member of its room that publishes one
//! track from a plain RTP sender; browsers subscribe to it like to anyone else. An output is a
//! sink: it copies one track, whoever publishes it, to plain RTP receivers, each with its own
//! SSRC and numbering, or hands one copy to the kernel's fan-out.

mod egress;
mod ingest;
mod output;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

pub use egress::{local_for, transmit_copy};
pub use ingest::Ingest;
pub use output::PlainOutput;

use crate::counters::DropReason;
use crate::outbox::Egress;
use crate::plain::{IngestInfo, IngestSpec, OutputInfo, OutputPath, OutputTarget, PlainError};
use crate::protocol::PeerId;
use crate::router::{Arrival, Delivery, RoutedPacket, TrackKey};
use crate::wire::RtpPacket;

/// Most receivers of one plain RTP output.
const MAX_OUTPUT_TARGETS: usize = 16;
/// Most plain RTP outputs one worker holds (each costs a copy of every packet of its track).
pub const MAX_OUTPUTS: usize = 256;

/// The plain RTP ingests and outputs of one worker.
#[derive(Debug, Default)]
pub struct PlainLegs {
    ingests: HashMap<PeerId, Ingest>,
    /// Which ingest takes RTP from which address.
    by_source: HashMap<SocketAddr, PeerId>,
    outputs: HashMap<u64, PlainOutput>,
}

impl PlainLegs {
    /// Whether `id` names an ingest.
    pub fn has_ingest(&self, id: PeerId) -> bool {
        self.ingests.contains_key(&id)
    }

    /// Ingest `id`.
    pub fn ingest(&self, id: PeerId) -> Option<&Ingest> {
        self.ingests.get(&id)
    }

    /// Adds ingest `id` for `spec`, in room `room`. Refuses a source address another ingest
    /// already takes.
    pub fn add_ingest(
        &mut self,
        id: PeerId,
        spec: &IngestSpec,
        room: std::sync::Arc<str>,
    ) -> Result<&Ingest, PlainError> {
        if let Some(source) = spec.source {
            if self.by_source.contains_key(&source) {
                return Err(PlainError::SourceInUse(source));
            }
        }
        let ingest = Ingest::new(spec, room)?;
        if let Some(source) = spec.source {
            self.by_source.insert(source, id);
        }
        Ok(self.ingests.entry(id).or_insert(ingest))
    }

    /// Removes ingest `id`.
    pub fn remove_ingest(&mut self, id: PeerId) -> Result<Ingest, PlainError> {
        let ingest = self
            .ingests
            .remove(&id)
            .ok_or(PlainError::UnknownIngest(id))?;
        if let Some(source) = ingest.source {
            self.by_source.remove(&source);
        }
        Ok(ingest)
    }

    /// Every ingest id.
    pub fn ingest_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.ingests.keys().copied()
    }

    /// Whether `source` is an ingest's locked source (its RTCP is then not for anybody).
    pub fn is_source(&self, source: SocketAddr) -> bool {
        self.by_source.contains_key(&source)
    }

    /// The ingest a datagram from `source` with payload type `pt` is for, locking an unlocked
    /// ingest waiting for that payload type to `source`. The second value says it was locked now
    /// (the guard in the kernel then admits the flow).
    pub fn ingest_for(&mut self, source: SocketAddr, pt: u8) -> Option<(PeerId, bool)> {
        if let Some(id) = self.by_source.get(&source) {
            return Some((*id, false));
        }
        let (id, ingest) = self
            .ingests
            .iter_mut()
            .find(|(_, i)| i.source.is_none() && i.payload_type == pt)?;
        ingest.source = Some(source);
        self.by_source.insert(source, *id);
        Some((*id, true))
    }

    /// Reads one plain RTP datagram of ingest `id` into the arrival of its track's packet.
    pub fn accept<'a>(
        &mut self,
        id: PeerId,
        buf: &'a [u8],
        now: Instant,
    ) -> Result<(TrackKey, Arrival<'a>), DropReason> {
        let packet = RtpPacket::new_checked(buf).map_err(|_| DropReason::MalformedRtp)?;
        let ingest = self.ingests.get_mut(&id).ok_or(DropReason::UnknownSource)?;
        ingest.accept(id, &packet, now)
    }

    /// The API's view of ingest `id`; `port` is the media port it receives on.
    pub fn ingest_info(&self, id: PeerId, port: u16) -> Option<IngestInfo> {
        self.ingests.get(&id).map(|i| i.info(id, port))
    }

    /// Adds output `id` copying track `key` of `room` to `targets`.
    pub fn add_output(
        &mut self,
        id: u64,
        room: std::sync::Arc<str>,
        key: TrackKey,
        targets: &[OutputTarget],
    ) -> Result<(), PlainError> {
        if self.outputs.contains_key(&id) {
            return Err(PlainError::Invalid(format!("id {id} is taken")));
        }
        if self.outputs.len() >= MAX_OUTPUTS {
            return Err(PlainError::Invalid(format!(
                "a worker holds at most {MAX_OUTPUTS} outputs"
            )));
        }
        let output = PlainOutput::new(id, room, key, targets)?;
        self.outputs.insert(id, output);
        Ok(())
    }

    /// Replaces the receivers of output `id`; receivers that stay keep their SSRC and numbering.
    pub fn set_output_targets(
        &mut self,
        id: u64,
        targets: &[OutputTarget],
    ) -> Result<(), PlainError> {
        self.outputs
            .get_mut(&id)
            .ok_or(PlainError::UnknownOutput(id))?
            .set_targets(id, targets)
    }

    /// Moves output `id` to another path.
    pub fn set_output_path(&mut self, id: u64, path: OutputPath) -> Result<(), PlainError> {
        self.outputs
            .get_mut(&id)
            .ok_or(PlainError::UnknownOutput(id))?
            .set_path(id, path);
        Ok(())
    }

    /// Removes output `id`.
    pub fn remove_output(&mut self, id: u64) -> Result<PlainOutput, PlainError> {
        self.outputs
            .remove(&id)
            .ok_or(PlainError::UnknownOutput(id))
    }

    /// The outputs of the tracks `gone` selects.
    pub fn outputs_of(&self, gone: impl Fn(&TrackKey) -> bool) -> Vec<u64> {
        self.outputs
            .iter()
            .filter(|(_, o)| gone(&o.key))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The API's view of output `id`.
    pub fn output_info(&self, id: u64) -> Option<OutputInfo> {
        self.outputs.get(&id).map(|o| o.info(id))
    }

    /// Every output id.
    pub fn output_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.outputs.keys().copied()
    }

    /// Copies one packet to output `id`'s receivers.
    pub fn deliver(&mut self, id: u64, packet: &RoutedPacket, egress: &mut Egress) -> Delivery {
        match self.outputs.get_mut(&id) {
            Some(output) if output.key == packet.track => {
                output.deliver(packet, egress);
                Delivery::Done
            }
            _ => Delivery::Gone,
        }
    }
}

/// Checks an output's receiver list: 1 to [`MAX_OUTPUT_TARGETS`] distinct addresses, valid
/// payload types.
fn check_targets(wanted: &[OutputTarget]) -> Result<(), PlainError> {
    if wanted.is_empty() || wanted.len() > MAX_OUTPUT_TARGETS {
        return Err(PlainError::Invalid(format!(
            "an output has 1 to {MAX_OUTPUT_TARGETS} receivers"
        )));
    }
    for (i, w) in wanted.iter().enumerate() {
        if wanted[..i].iter().any(|o| o.address == w.address) {
            return Err(PlainError::Invalid(format!(
                "{} is listed twice",
                w.address
            )));
        }
        if w.payload_type.is_some_and(|pt| pt > 127) {
            return Err(PlainError::Invalid("payload type must be 0 to 127".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_holds_a_bounded_number_of_outputs() {
        let mut legs = PlainLegs::default();
        let room: std::sync::Arc<str> = "r".into();
        let key = TrackKey::parse("1:0").expect("a track id");
        let targets = [OutputTarget {
            address: "127.0.0.1:5004".parse().expect("an address"),
            ssrc: None,
            payload_type: None,
        }];
        for id in 0..MAX_OUTPUTS as u64 {
            legs.add_output(id, room.clone(), key, &targets)
                .expect("an output within the bound");
        }
        let refused = legs.add_output(MAX_OUTPUTS as u64, room.clone(), key, &targets);
        assert!(
            matches!(refused, Err(PlainError::Invalid(_))),
            "{refused:?}"
        );
        legs.remove_output(0).expect("a known output");
        legs.add_output(MAX_OUTPUTS as u64, room, key, &targets)
            .expect("room again once one is gone");
    }
}
