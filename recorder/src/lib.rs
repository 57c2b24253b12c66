//! Writes recorded calls to disk: one Matroska/WebM file per participant, written live on a
//! writer thread, and a `manifest.json` listing them.
//!
//! The media worker (sans-IO recorder sink in `sfu-core`, glue in the binary) hands whole
//! encoded frames to a [`RecordingWriter`]; every call on it is a `try_send` on a bounded
//! queue, so a slow disk drops and counts frames instead of stalling the worker. The writer
//! thread owns the files:
//!
//! - VP8, VP9 and AV1 (with Opus) go into `.webm` (DocType `webm`); H.264 (with Opus) into
//!   `.mkv` (DocType `matroska`). No transcoding: the frames are stored as they came.
//! - Files are written live: the Segment's size is unknown until the end, and each Cluster
//!   (one per video keyframe, at most ~1 s) is written whole when it closes, so a killed
//!   process leaves a file playable up to its last Cluster. A clean finish adds Duration,
//!   Cues and a SeekHead.
//! - A write error (disk full, I/O error) or [`WriterOptions::max_bytes`] ends the
//!   recording: files are finished as far as possible and [`RecordingWriter::failure`] says
//!   why.
//!
//! ```no_run
//! use std::time::Duration;
//! use recorder::{Codec, FileSpec, Frame, RecordingWriter, TrackSpec, WriterOptions};
//!
//! let options = WriterOptions::new("/var/lib/edge-sfu/recordings/rec-1", "rec-1", "standup", 1_700_000_000_000);
//! let writer = RecordingWriter::start(options)?;
//! let tracks = vec![TrackSpec::video(Codec::Vp8, 640, 480), TrackSpec::opus(2)];
//! writer.open_file(FileSpec { file: 1, participant: "Ann".into(), peer: 7, tracks, start: Duration::ZERO }).ok();
//! # let vp8_keyframe = Vec::new();
//! writer.write(Frame { file: 1, track: 0, time: Duration::ZERO, keyframe: true, data: vp8_keyframe }).ok();
//! writer.close_file(1).ok();
//! let finished = writer.finish().wait()?; // or `.await` in async code
//! println!("{:?} listed in {}", finished.files, finished.manifest.display());
//! # Ok::<(), recorder::RecorderError>(())
//! ```
//!
//! The EBML writer is this crate's own (`ebml.rs`: the element IDs as constants and a dozen
//! small functions). Of the Rust Matroska crates, `matroska` only reads metadata, `mkv` is an
//! unmaintained, self-described incomplete 0.0.x, and `webm-iterable` / `ebml-iterable` write
//! a forward-only tag stream, while live writing here needs byte offsets to patch reserved
//! slots in place (Duration, SeekHead, the H.264/AV1 CodecPrivate known only at the first
//! keyframe) and whole Clusters built in memory; the `webm` crate binds the C++ libwebm, a C++
//! build for what is a few hundred lines of Rust.

#![warn(missing_docs)]

mod av1;
mod bits;
mod ebml;
mod error;
mod finish;
mod h264;
mod manifest;
mod matroska;
mod naming;
mod opus;
mod spec;
mod vpx;
mod writer;

pub use error::{Backpressure, RecorderError};
pub use finish::{FinishHandle, Finished};
pub use manifest::MANIFEST_NAME;
pub use naming::sanitize;
pub use spec::{Codec, FileSpec, Frame, TrackKind, TrackSpec};
pub use writer::{
    RecordingWriter, WriterOptions, WriterStats, DEFAULT_QUEUE_FRAMES, MAX_FRAME_BYTES,
    MAX_QUEUED_BYTES,
};
