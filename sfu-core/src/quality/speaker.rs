//! Active-speaker detection from the RFC 6464 audio level every audio packet carries.
//!
//! Each audio track's loudness (127 minus the level's -dBov, after a noise gate) is smoothed with
//! an exponential moving average whose time constant is [`SMOOTHING`]; a track that stops sending
//! (muted, gone quiet with DTX) decays toward silence. The dominant speaker changes only when a
//! challenger has been louder than it by [`MARGIN`] (or it fell silent) for [`HOLD`] without a
//! break: a cough or a single loud word does not move the highlight.

use std::time::{Duration, Instant};

use crate::router::TrackKey;

/// Time constant of the loudness average.
pub const SMOOTHING: Duration = Duration::from_millis(300);
/// How long a challenger must stay ahead before it becomes the dominant speaker.
pub const HOLD: Duration = Duration::from_millis(500);
/// How much louder (smoothed, in loudness units ≈ dB) a challenger must be than a speaker that is
/// still talking.
pub const MARGIN: f32 = 6.0;
/// Packets quieter than this (dBov) count as silence: background noise is not speech.
const NOISE_GATE_DBOV: u8 = 70;
/// A smoothed loudness at or above this is speech.
const SPEAKING: f32 = 1.0;
/// Decisions are made at most this often (they run on audio packet arrival).
const EVALUATION_INTERVAL: Duration = Duration::from_millis(100);

/// One audio track's smoothed loudness.
#[derive(Debug, Clone)]
struct Loudness {
    track: TrackKey,
    score: f32,
    updated: Instant,
}

impl Loudness {
    /// The score decayed to `now` as if silence had arrived since the last packet.
    fn at(&self, now: Instant) -> f32 {
        let dt = now.saturating_duration_since(self.updated).as_secs_f32();
        self.score * (-dt / SMOOTHING.as_secs_f32()).exp()
    }
}

/// The dominant speaker of one room.
#[derive(Debug, Default)]
pub struct SpeakerDetector {
    tracks: Vec<Loudness>,
    current: Option<TrackKey>,
    /// A track louder than the current speaker, and since when.
    challenger: Option<(TrackKey, Instant)>,
    last_evaluation: Option<Instant>,
}

impl SpeakerDetector {
    /// A room where nobody has spoken.
    pub fn new() -> Self {
        Self::default()
    }

    /// The dominant speaker's audio track.
    pub fn current(&self) -> Option<TrackKey> {
        self.current
    }

    /// Takes the level (`dbov`: 0 loudest, 127 silence) of one packet of `track` arriving at
    /// `now`, and returns the new dominant speaker when it changed.
    pub fn on_level(
        &mut self,
        track: TrackKey,
        now: Instant,
        dbov: u8,
    ) -> Option<Option<TrackKey>> {
        let loudness = if dbov.min(127) > NOISE_GATE_DBOV {
            0.0
        } else {
            f32::from(127 - dbov)
        };
        match self.tracks.iter_mut().find(|l| l.track == track) {
            Some(l) => {
                let decayed = l.at(now);
                let dt = now.saturating_duration_since(l.updated).as_secs_f32();
                let alpha = 1.0 - (-dt / SMOOTHING.as_secs_f32()).exp();
                l.score = decayed + alpha * (loudness - decayed);
                l.updated = now;
            }
            None => self.tracks.push(Loudness {
                track,
                score: 0.0,
                updated: now,
            }),
        }
        if self
            .last_evaluation
            .is_some_and(|t| now < t + EVALUATION_INTERVAL)
        {
            return None;
        }
        self.last_evaluation = Some(now);
        self.evaluate(now)
    }

    /// Forgets a track (unpublished, its member left); returns `Some(None)` when it was the
    /// dominant speaker.
    pub fn remove(&mut self, track: TrackKey) -> Option<Option<TrackKey>> {
        self.tracks.retain(|l| l.track != track);
        if self.challenger.is_some_and(|(c, _)| c == track) {
            self.challenger = None;
        }
        if self.current == Some(track) {
            self.current = None;
            return Some(None);
        }
        None
    }

    fn evaluate(&mut self, now: Instant) -> Option<Option<TrackKey>> {
        let loudest = self
            .tracks
            .iter()
            .map(|l| (l.track, l.at(now)))
            .filter(|(_, s)| *s >= SPEAKING)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((candidate, score)) = loudest else {
            self.challenger = None;
            return None;
        };
        if self.current == Some(candidate) {
            self.challenger = None;
            return None;
        }
        let current_score = self
            .current
            .and_then(|c| self.tracks.iter().find(|l| l.track == c))
            .map_or(0.0, |l| l.at(now));
        let ahead = current_score < SPEAKING || score >= current_score + MARGIN;
        if !ahead {
            self.challenger = None;
            return None;
        }
        match self.challenger {
            Some((c, since)) if c == candidate => {
                if now.saturating_duration_since(since) >= HOLD || self.current.is_none() {
                    self.current = Some(candidate);
                    self.challenger = None;
                    return Some(self.current);
                }
                None
            }
            _ => {
                self.challenger = Some((candidate, now));
                if self.current.is_none() {
                    self.current = Some(candidate);
                    self.challenger = None;
                    return Some(self.current);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::media::Mid;

    fn track(peer: u64) -> TrackKey {
        TrackKey {
            peer,
            mid: Mid::from("0"),
        }
    }

    /// Feeds 20 ms packets of both tracks for `ms`, with the given levels (None: not sending), and
    /// returns every change seen, with its time offset.
    fn talk(
        d: &mut SpeakerDetector,
        t0: Instant,
        from_ms: u64,
        ms: u64,
        a: Option<u8>,
        b: Option<u8>,
    ) -> Vec<(u64, Option<u64>)> {
        let mut changes = Vec::new();
        for step in (from_ms..from_ms + ms).step_by(20) {
            let now = t0 + Duration::from_millis(step);
            for (peer, level) in [(1, a), (2, b)] {
                if let Some(level) = level {
                    if let Some(change) = d.on_level(track(peer), now, level) {
                        changes.push((step, change.map(|t| t.peer)));
                    }
                }
            }
        }
        changes
    }

    #[test]
    fn the_first_speaker_is_taken_at_once_and_kept_while_the_other_is_quiet() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::new();
        let changes = talk(&mut d, t0, 0, 2000, Some(30), Some(127));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].1, Some(1));
        assert!(changes[0].0 < 200, "{changes:?}");
        // Background noise at -80 dBov is not speech.
        assert!(talk(&mut d, t0, 2000, 2000, Some(30), Some(80)).is_empty());
    }

    #[test]
    fn a_challenger_takes_over_only_after_holding_the_lead() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::new();
        talk(&mut d, t0, 0, 1000, Some(30), Some(127));
        // A short burst (200 ms) of B louder than A does not move it.
        assert!(talk(&mut d, t0, 1000, 200, Some(30), Some(5)).is_empty());
        assert!(talk(&mut d, t0, 1200, 1000, Some(30), Some(127)).is_empty());
        // Both talking at the same level: no flapping.
        assert!(talk(&mut d, t0, 2200, 3000, Some(30), Some(30)).is_empty());
        // A stops (muted: no packets): B takes over within the hold plus the decay.
        let changes = talk(&mut d, t0, 5200, 3000, None, Some(30));
        assert_eq!(changes.len(), 1, "{changes:?}");
        let (at, who) = changes[0];
        assert_eq!(who, Some(2));
        assert!(at - 5200 >= HOLD.as_millis() as u64, "{at}");
        assert!(at - 5200 <= 1500, "{at}");
    }

    #[test]
    fn removing_the_speaker_clears_it() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::new();
        talk(&mut d, t0, 0, 500, Some(20), None);
        assert_eq!(d.current(), Some(track(1)));
        assert_eq!(d.remove(track(2)), None);
        assert_eq!(d.remove(track(1)), Some(None));
        assert_eq!(d.current(), None);
    }
}
