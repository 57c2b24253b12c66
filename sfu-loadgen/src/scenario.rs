//! What a run does: rooms, who publishes what at which rate, for how long, with how much churn.
//!
//! A scenario comes from a named preset ([`Scenario::preset`]), a TOML file with the same field
//! names ([`Scenario::from_toml`]), or both, with command-line flags applied last.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{LoadgenError, Result};

/// The named presets, for `--preset` and `--help`.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "meeting-10",
        "10 people in a room, everyone sends audio+video and receives everyone else",
    ),
    (
        "livestream",
        "1 publisher (audio+video) -> N viewers (N = --subscribers, default 50)",
    ),
    (
        "audio-room",
        "5 speakers (audio) -> N listeners (N = --subscribers, default 50)",
    ),
    (
        "churn",
        "2 rooms of 2 publishers + 4 viewers, plus listeners joining and leaving (4/s, 2 s each)",
    ),
];

/// A load scenario. Every room gets the same population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// A name for the report.
    pub name: String,
    /// Number of rooms.
    pub rooms: u32,
    /// Publishers per room: each sends the enabled media and receives every other publisher.
    pub publishers: u32,
    /// Receive-only participants per room.
    pub subscribers: u32,
    /// Publishers send Opus-like audio.
    pub audio: bool,
    /// Publishers send VP8-like video.
    pub video: bool,
    /// Audio packets per second per publisher (Opus at 20 ms frames: 50).
    pub audio_pps: f64,
    /// Audio payload size in bytes.
    pub audio_bytes: usize,
    /// Video bitrate per publisher in kbit/s (payload bits, keyframes not counted).
    pub video_kbps: f64,
    /// Video frames per second.
    pub video_fps: f64,
    /// Largest video payload in bytes; frames are split into packets of this size.
    pub video_packet_bytes: usize,
    /// Seconds between keyframes (a burst of `keyframe_factor` normal frames' worth of bytes).
    pub keyframe_interval_s: f64,
    /// Size of a keyframe relative to a normal frame.
    pub keyframe_factor: f64,
    /// Length of the measurement window in seconds.
    pub duration_s: f64,
    /// Joins are spread evenly over this many seconds.
    pub ramp_up_s: f64,
    /// After the ramp-up, how long to wait at most for media to reach every receiver before the
    /// window opens anyway.
    pub settle_timeout_s: f64,
    /// Extra listeners joining per second during the window (each leaves after `churn_stay_s`).
    pub churn_per_s: f64,
    /// How long a churning listener stays.
    pub churn_stay_s: f64,
    /// Limit for one join (WebSocket, ICE, DTLS, negotiation) before it counts as failed.
    pub join_timeout_s: f64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "custom".into(),
            rooms: 1,
            publishers: 1,
            subscribers: 10,
            audio: true,
            video: true,
            audio_pps: 50.0,
            audio_bytes: 100,
            video_kbps: 1000.0,
            video_fps: 30.0,
            video_packet_bytes: 1100,
            keyframe_interval_s: 3.0,
            keyframe_factor: 8.0,
            duration_s: 15.0,
            ramp_up_s: 3.0,
            settle_timeout_s: 10.0,
            churn_per_s: 0.0,
            churn_stay_s: 2.0,
            join_timeout_s: 20.0,
        }
    }
}

impl Scenario {
    /// A named preset (see [`PRESETS`]).
    pub fn preset(name: &str) -> Result<Scenario> {
        let base = Scenario {
            name: name.to_string(),
            ..Scenario::default()
        };
        let s = match name {
            "meeting-10" => Scenario {
                rooms: 1,
                publishers: 10,
                subscribers: 0,
                video_kbps: 500.0,
                ..base
            },
            "livestream" => Scenario {
                rooms: 1,
                publishers: 1,
                subscribers: 50,
                video_kbps: 1500.0,
                ..base
            },
            "audio-room" => Scenario {
                rooms: 1,
                publishers: 5,
                subscribers: 50,
                video: false,
                ..base
            },
            "churn" => Scenario {
                rooms: 2,
                publishers: 2,
                subscribers: 4,
                video_kbps: 300.0,
                churn_per_s: 4.0,
                churn_stay_s: 2.0,
                ..base
            },
            other => {
                let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                return Err(LoadgenError::Scenario(format!(
                    "unknown preset {other:?}; known: {}",
                    names.join(", ")
                )));
            }
        };
        Ok(s)
    }

    /// Parses a TOML scenario: the field names of [`Scenario`]; missing fields keep their
    /// defaults, or the values of `preset = "NAME"` when the file names one.
    pub fn from_toml(text: &str) -> Result<Scenario> {
        Scenario::from_toml_over(text, Scenario::default())
    }

    /// Like [`Scenario::from_toml`], with `base` for the fields the file leaves out (a
    /// `preset = "NAME"` in the file replaces `base`).
    pub fn from_toml_over(text: &str, base: Scenario) -> Result<Scenario> {
        let mut table: toml::Table = toml::from_str(text)?;
        let base = match table.remove("preset") {
            Some(toml::Value::String(p)) => Scenario::preset(&p)?,
            Some(other) => {
                return Err(LoadgenError::Scenario(format!(
                    "preset must be a name, not {other}"
                )))
            }
            None => base,
        };
        // Overlay the file on the base: serialize the base, merge the tables, deserialize.
        let mut merged = toml::Table::try_from(&base)
            .map_err(|e| LoadgenError::Scenario(format!("serializing the base scenario: {e}")))?;
        for (k, v) in table {
            merged.insert(k, v);
        }
        let s: Scenario = merged.try_into()?;
        s.validate()?;
        Ok(s)
    }

    /// Checks that the numbers make sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(LoadgenError::Scenario(what.to_string()));
        if self.rooms == 0 {
            return bad("rooms must be at least 1");
        }
        if self.publishers == 0 && self.churn_per_s <= 0.0 {
            return bad("a scenario needs publishers");
        }
        if !self.audio && !self.video && self.publishers > 0 {
            return bad("publishers must send audio, video or both");
        }
        if self.publishers + self.subscribers == 0 {
            return bad("rooms are empty");
        }
        let positive = [
            ("audio_pps", self.audio_pps),
            ("video_fps", self.video_fps),
            ("duration_s", self.duration_s),
            ("join_timeout_s", self.join_timeout_s),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return bad(&format!("{name} must be positive"));
            }
        }
        let non_negative = [
            ("video_kbps", self.video_kbps),
            ("keyframe_interval_s", self.keyframe_interval_s),
            ("keyframe_factor", self.keyframe_factor),
            ("ramp_up_s", self.ramp_up_s),
            ("settle_timeout_s", self.settle_timeout_s),
            ("churn_per_s", self.churn_per_s),
            ("churn_stay_s", self.churn_stay_s),
        ];
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return bad(&format!("{name} must be zero or more"));
            }
        }
        if self.video_packet_bytes < crate::payload::STAMP_LEN || self.video_packet_bytes > 1200 {
            return bad("video_packet_bytes must be between 25 and 1200");
        }
        if self.audio_bytes < crate::payload::STAMP_LEN || self.audio_bytes > 1200 {
            return bad("audio_bytes must be between 25 and 1200");
        }
        Ok(())
    }

    /// Participants that stay for the whole run (publishers and subscribers of every room).
    pub fn stable_participants(&self) -> u32 {
        self.rooms * (self.publishers + self.subscribers)
    }

    /// Packets per second one publisher sends (keyframes averaged in).
    pub fn publisher_pps(&self) -> f64 {
        let audio = if self.audio { self.audio_pps } else { 0.0 };
        let video = if self.video {
            let frame = self.frame_bytes(false) as f64;
            let key = self.frame_bytes(true) as f64;
            let per_frame = |bytes: f64| (bytes / self.video_packet_bytes as f64).ceil().max(1.0);
            let key_share = if self.keyframe_interval_s > 0.0 {
                1.0 / (self.keyframe_interval_s * self.video_fps)
            } else {
                0.0
            };
            self.video_fps * (per_frame(frame) * (1.0 - key_share) + per_frame(key) * key_share)
        } else {
            0.0
        };
        audio + video
    }

    /// Bytes of one video frame (a keyframe when `key`).
    pub fn frame_bytes(&self, key: bool) -> usize {
        let normal = self.video_kbps * 1000.0 / 8.0 / self.video_fps;
        let bytes = if key {
            normal * self.keyframe_factor.max(1.0)
        } else {
            normal
        };
        (bytes.round() as usize).max(crate::payload::STAMP_LEN)
    }

    /// Forwarded packets per second the scenario asks of the SFU (stable participants only).
    pub fn expected_out_pps(&self) -> f64 {
        let per_room_receivers_of_one_publisher =
            (self.publishers + self.subscribers).saturating_sub(1);
        self.rooms as f64
            * self.publishers as f64
            * per_room_receivers_of_one_publisher as f64
            * self.publisher_pps()
    }

    /// The measurement window.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid() {
        for (name, _) in PRESETS {
            let s = Scenario::preset(name).unwrap();
            s.validate().unwrap();
            assert_eq!(&s.name, name);
        }
        assert!(Scenario::preset("nope").is_err());
    }

    #[test]
    fn a_file_overlays_its_preset() {
        let s = Scenario::from_toml("preset = \"livestream\"\nsubscribers = 7\nduration_s = 4.0\n")
            .unwrap();
        assert_eq!(s.name, "livestream");
        assert_eq!(s.subscribers, 7);
        assert_eq!(s.publishers, 1);
        assert_eq!(s.duration_s, 4.0);
        assert!(Scenario::from_toml("subscriberz = 1\n").is_err());
        let base = Scenario::preset("audio-room").unwrap();
        let s = Scenario::from_toml_over("subscribers = 3\n", base).unwrap();
        assert_eq!(
            (s.name.as_str(), s.publishers, s.subscribers),
            ("audio-room", 5, 3)
        );
    }

    #[test]
    fn rates_add_up() {
        let s = Scenario {
            audio: true,
            video: false,
            publishers: 2,
            subscribers: 3,
            ..Scenario::default()
        };
        assert_eq!(s.publisher_pps(), 50.0);
        assert_eq!(s.expected_out_pps(), 2.0 * 4.0 * 50.0);
    }
}
