//! Why a recording failed or a call was refused.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a recording could not start or stopped early. Cloneable so that every caller of
/// [`crate::RecordingWriter::failure`] gets it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecorderError {
    /// The recording's directory could not be created or written to.
    #[error("cannot write the recording directory {path}: {source}")]
    Unwritable {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The disk (or the file system's quota) is full.
    #[error("disk full while writing {path}")]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// The recording reached [`crate::WriterOptions::max_bytes`].
    #[error("recording size cap of {max_bytes} bytes reached")]
    CapReached {
        /// The cap.
        max_bytes: u64,
    },
    /// Any other I/O error on a file of the recording.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The writer thread could not be started, or ended without reporting (a bug).
    #[error("the recorder's writer thread is gone: {0}")]
    WriterGone(String),
}

impl RecorderError {
    /// The error for an I/O failure on `path`: ENOSPC and EDQUOT become [`Self::DiskFull`].
    pub(crate) fn io(path: impl Into<PathBuf>, error: io::Error) -> RecorderError {
        let path = path.into();
        match error.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                RecorderError::DiskFull { path }
            }
            _ => RecorderError::Io {
                path,
                source: Arc::new(error),
            },
        }
    }
}

/// Why [`crate::RecordingWriter`] refused a call without blocking; the frame or command is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Backpressure {
    /// The writer's queue is full (the disk is slower than the media): the frame was dropped
    /// and counted.
    #[error("recorder queue full")]
    QueueFull,
    /// The writer has stopped (see [`crate::RecordingWriter::failure`]).
    #[error("recorder stopped")]
    Stopped,
}
