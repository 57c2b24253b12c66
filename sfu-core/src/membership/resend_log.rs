//! What one video subscription sent, by its own sequence number: which packet of the track's
//! history it was and how the subscription numbered it. That is all a NACK needs to resend it:
//! the payload is read back from the track's history, never copied per subscription.

use str0m::media::Pt;

use crate::codec::PayloadPatch;
use crate::router::PacketIndex;

/// Packets remembered: about 1.5 s of video at 2.5 Mbit/s, more than a NACK round trip.
const ENTRIES: usize = 512;

/// One packet as this subscription sent it.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Its sequence number in this subscription's numbering.
    pub seq: u64,
    /// Where the track keeps its payload.
    pub packet: PacketIndex,
    /// Its RTP timestamp in this subscription's numbering.
    pub timestamp: u32,
    /// The payload type this subscriber knows the codec by.
    pub pt: Pt,
    /// Its marker bit.
    pub marker: bool,
    /// The payload rewrite it was sent with.
    pub patch: Option<PayloadPatch>,
}

/// The last [`ENTRIES`] packets one subscription sent.
#[derive(Debug, Default)]
pub struct ResendLog {
    /// Indexed by sequence number modulo [`ENTRIES`]; allocated at the first packet.
    entries: Vec<Option<Sent>>,
}

impl ResendLog {
    /// Remembers a packet sent.
    pub fn record(&mut self, sent: Sent) {
        if self.entries.is_empty() {
            self.entries = vec![None; ENTRIES];
        }
        self.entries[(sent.seq % ENTRIES as u64) as usize] = Some(sent);
    }

    /// The packet sent as `seq`, if it is among the last remembered.
    pub fn get(&self, seq: u64) -> Option<Sent> {
        let sent = (*self.entries.get((seq % ENTRIES as u64) as usize)?)?;
        (sent.seq == seq).then_some(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_packets_by_sequence_number() {
        let mut log = ResendLog::default();
        assert!(log.get(5).is_none());
        for seq in 100..100 + 2 * ENTRIES as u64 {
            log.record(Sent {
                seq,
                packet: seq * 10,
                timestamp: seq as u32,
                pt: Pt::from(96),
                marker: seq % 2 == 0,
                patch: None,
            });
        }
        let last = 100 + 2 * ENTRIES as u64 - 1;
        let sent = log.get(last).unwrap();
        assert_eq!((sent.packet, sent.timestamp), (last * 10, last as u32));
        assert!(log.get(last - ENTRIES as u64 + 1).is_some());
        assert!(log.get(last - ENTRIES as u64).is_none(), "overwritten");
        assert!(log.get(last + 1).is_none(), "not sent yet");
    }
}
