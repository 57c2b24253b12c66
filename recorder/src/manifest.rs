//! `manifest.json`: what a recording holds, rewritten atomically (temp file + rename) when a
//! file opens or closes and when the recording ends, so that a crash still leaves one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::spec::{FileSpec, TrackKind};

/// The manifest's file name in the recording's directory.
pub const MANIFEST_NAME: &str = "manifest.json";

/// Where the recording stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    /// Files are being written.
    Recording,
    /// Finished cleanly.
    Finished,
    /// Stopped early; `failure` says why.
    Failed,
}

/// The manifest's content.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The recording's id.
    pub recording: String,
    /// The room recorded.
    pub room: String,
    /// When the recording started (Unix time, ms): the zero of the room's clock below.
    pub started_unix_ms: u64,
    /// Where the recording stands.
    pub state: RecordingState,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// Every file of the recording, in the order they opened.
    pub files: Vec<ManifestFile>,
}

/// One file in the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestFile {
    /// The caller's file id.
    pub file: u64,
    /// The file's name, relative to the manifest's directory.
    pub path: String,
    /// The participant's display name.
    pub participant: String,
    /// The participant's peer id.
    pub peer: u64,
    /// When the file starts on the room's clock (ms since the recording started).
    pub start_ms: u64,
    /// Its tracks, in block track number order (1, 2, ...).
    pub tracks: Vec<ManifestTrack>,
    /// Its duration (ms), once the file is closed.
    pub duration_ms: Option<u64>,
}

/// One track of a file in the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestTrack {
    /// `vp8`, `vp9`, `av1`, `h264` or `opus`.
    pub codec: &'static str,
    /// `video` or `audio`.
    pub kind: TrackKind,
}

impl ManifestFile {
    /// The entry for `spec`, stored as `name`.
    pub fn new(spec: &FileSpec, name: String) -> ManifestFile {
        ManifestFile {
            file: spec.file,
            path: name,
            participant: spec.participant.clone(),
            peer: spec.peer,
            start_ms: u64::try_from(spec.start.as_millis()).unwrap_or(u64::MAX),
            tracks: spec
                .tracks
                .iter()
                .map(|t| ManifestTrack {
                    codec: t.codec.name(),
                    kind: t.codec.kind(),
                })
                .collect(),
            duration_ms: None,
        }
    }
}

impl Manifest {
    /// Writes the manifest into `dir` atomically; returns its path.
    pub fn write(&self, dir: &Path) -> io::Result<PathBuf> {
        let path = dir.join(MANIFEST_NAME);
        let temp = dir.join(format!(".{MANIFEST_NAME}.tmp"));
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let written = fs::write(&temp, json).and_then(|()| fs::rename(&temp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written.map(|()| path)
    }
}
