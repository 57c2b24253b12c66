//! [`RecordingWriter`]: the caller's handle (never blocks) and the writer thread that owns
//! every file of one recording and does all of its disk I/O.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Backpressure, RecorderError};
use crate::finish::{CompleteOnDrop, Completion, FinishHandle, Finished};
use crate::manifest::{Manifest, ManifestFile, RecordingState, MANIFEST_NAME};
use crate::matroska::{self, Budget, MatroskaFile, MuxError, Pushed};
use crate::naming;
use crate::spec::{FileSpec, Frame};

/// The default length of the writer's queue, in commands (frames): several seconds of a
/// room's media, so that a slow disk moment does not drop frames.
pub const DEFAULT_QUEUE_FRAMES: usize = 4096;

/// The most frame bytes queued for the writer thread; past it frames are refused as if the
/// queue were full, so that large frames cannot make the queue hold gigabytes.
pub const MAX_QUEUED_BYTES: u64 = 64 << 20;

/// The largest frame accepted (bytes); larger ones are dropped as invalid. A 4K keyframe is a
/// few MB.
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// A file that got no frame for this long (wall clock: its participant's media stalled) has
/// its pending Cluster written, so that a crash loses at most about this much of any file.
const IDLE_FLUSH: Duration = Duration::from_secs(1);

/// How to run a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterOptions {
    /// The recording's own directory; created (with its parents) by [`RecordingWriter::start`].
    /// Meant to be new: an existing manifest is replaced, existing files are not overwritten
    /// (their file is skipped and counted as invalid).
    pub dir: PathBuf,
    /// Stop the recording once its files would exceed this many bytes in total (the Cues
    /// written when finishing may add a few bytes per second of media).
    pub max_bytes: Option<u64>,
    /// Length of the bounded queue between the caller and the writer thread.
    pub queue_frames: usize,
    /// The recording's id, for the manifest.
    pub recording: String,
    /// The room recorded, for the manifest.
    pub room: String,
    /// When the recording started (Unix time, ms): the zero of the room's clock in the
    /// manifest, and the files' DateUTC.
    pub started_unix_ms: u64,
}

impl WriterOptions {
    /// Options with no size cap and the default queue length.
    pub fn new(
        dir: impl Into<PathBuf>,
        recording: impl Into<String>,
        room: impl Into<String>,
        started_unix_ms: u64,
    ) -> WriterOptions {
        WriterOptions {
            dir: dir.into(),
            max_bytes: None,
            queue_frames: DEFAULT_QUEUE_FRAMES,
            recording: recording.into(),
            room: room.into(),
            started_unix_ms,
        }
    }
}

/// Counters of a recording, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Bytes written to the files (not the manifest).
    pub bytes_written: u64,
    /// Frames written into a file.
    pub frames_written: u64,
    /// Frames refused because the queue was full (in frames or in [`MAX_QUEUED_BYTES`]).
    pub frames_dropped_queue_full: u64,
    /// Frames or commands dropped as invalid: unknown or duplicate file, no such track,
    /// empty, over [`MAX_FRAME_BYTES`], unparseable.
    pub frames_dropped_invalid: u64,
    /// Frames dropped because they were older than the last one written on their track.
    pub frames_dropped_out_of_order: u64,
    /// Video frames dropped because their track had no usable keyframe yet.
    pub frames_dropped_before_keyframe: u64,
}

/// What the caller asks of the writer thread.
enum Command {
    Open(FileSpec),
    Frame(Frame),
    Close(u64),
}

/// State shared by the caller's handle and the writer thread.
#[derive(Default)]
struct Shared {
    bytes_written: AtomicU64,
    frames_written: AtomicU64,
    dropped_queue_full: AtomicU64,
    /// Bytes of the frames in the queue.
    queued_bytes: AtomicU64,
    dropped_invalid: AtomicU64,
    dropped_out_of_order: AtomicU64,
    dropped_before_keyframe: AtomicU64,
    /// Set when the writer thread gave up; later calls are refused.
    stopped: AtomicBool,
    failure: Mutex<Option<RecorderError>>,
}

impl Shared {
    fn failure(&self) -> Option<RecorderError> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn stats(&self) -> WriterStats {
        WriterStats {
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            frames_written: self.frames_written.load(Ordering::Relaxed),
            frames_dropped_queue_full: self.dropped_queue_full.load(Ordering::Relaxed),
            frames_dropped_invalid: self.dropped_invalid.load(Ordering::Relaxed),
            frames_dropped_out_of_order: self.dropped_out_of_order.load(Ordering::Relaxed),
            frames_dropped_before_keyframe: self.dropped_before_keyframe.load(Ordering::Relaxed),
        }
    }
}

/// A running recording: a writer thread and a bounded queue. Every method is cheap and never
/// blocks the caller (a media worker): a full queue drops and counts.
///
/// Dropping it without [`RecordingWriter::finish`] still finishes the files on the writer
/// thread, unobserved.
pub struct RecordingWriter {
    commands: SyncSender<Command>,
    shared: Arc<Shared>,
    completion: Arc<Completion>,
    dir: PathBuf,
}

impl RecordingWriter {
    /// Creates the recording's directory, writes its first manifest (which proves the
    /// directory writable) and starts the writer thread.
    pub fn start(options: WriterOptions) -> Result<RecordingWriter, RecorderError> {
        let unwritable = |source: io::Error| RecorderError::Unwritable {
            path: options.dir.clone(),
            source: Arc::new(source),
        };
        fs::create_dir_all(&options.dir).map_err(unwritable)?;
        let dir = fs::canonicalize(&options.dir).map_err(unwritable)?;
        let manifest = Manifest {
            recording: options.recording.clone(),
            room: options.room.clone(),
            started_unix_ms: options.started_unix_ms,
            state: RecordingState::Recording,
            failure: None,
            files: Vec::new(),
        };
        manifest.write(&dir).map_err(unwritable)?;

        let (commands, receiver) = mpsc::sync_channel(options.queue_frames.max(1));
        let shared = Arc::new(Shared::default());
        let completion = Arc::new(Completion::default());
        let writer = WriterThread {
            dir: dir.clone(),
            max_bytes: options.max_bytes,
            started_unix_ms: options.started_unix_ms,
            shared: shared.clone(),
            manifest,
            open: HashMap::new(),
            files: Vec::new(),
            last_idle_check: Instant::now(),
        };
        let guard = CompleteOnDrop(completion.clone());
        thread::Builder::new()
            .name("recorder".into())
            .spawn(move || writer.run(receiver, guard))
            .map_err(|error| RecorderError::WriterGone(error.to_string()))?;
        Ok(RecordingWriter {
            commands,
            shared,
            completion,
            dir,
        })
    }

    /// Opens a participant's file (written as soon as the writer thread takes the command).
    pub fn open_file(&self, spec: FileSpec) -> Result<(), Backpressure> {
        self.send(Command::Open(spec))
    }

    /// Queues one frame. A full queue drops it (counted) and says so; never blocks.
    pub fn write(&self, frame: Frame) -> Result<(), Backpressure> {
        let len = frame.data.len() as u64;
        let queued = self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        let sent = if queued + len > MAX_QUEUED_BYTES {
            Err(Backpressure::QueueFull)
        } else {
            self.send(Command::Frame(frame))
        };
        if sent.is_err() {
            self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        }
        if sent == Err(Backpressure::QueueFull) {
            self.shared
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Closes a participant's file: its last Cluster, Cues and Duration are written.
    pub fn close_file(&self, file: u64) -> Result<(), Backpressure> {
        self.send(Command::Close(file))
    }

    /// Why the writer thread gave up (disk full, cap reached, I/O error), once it did.
    pub fn failure(&self) -> Option<RecorderError> {
        self.shared.failure()
    }

    /// Bytes written to the recording's files so far.
    pub fn bytes_written(&self) -> u64 {
        self.shared.bytes_written.load(Ordering::Relaxed)
    }

    /// All counters of the recording.
    pub fn stats(&self) -> WriterStats {
        self.shared.stats()
    }

    /// The recording's directory (absolute).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Ends the recording: the writer thread writes what is queued, closes every file cleanly
    /// (Duration, Cues) and writes the final manifest. Does not block; wait on the handle.
    pub fn finish(self) -> FinishHandle {
        // Dropping the sender is the signal: the thread drains the queue, then finishes.
        FinishHandle {
            completion: self.completion,
        }
    }

    fn send(&self, command: Command) -> Result<(), Backpressure> {
        if self.shared.stopped.load(Ordering::Relaxed) {
            return Err(Backpressure::Stopped);
        }
        self.commands
            .try_send(command)
            .map_err(|error| match error {
                TrySendError::Full(_) => Backpressure::QueueFull,
                TrySendError::Disconnected(_) => Backpressure::Stopped,
            })
    }
}

/// A file being written (its manifest entry has the same file id).
struct OpenFile {
    mux: MatroskaFile,
    /// When its last frame came.
    last_frame: Instant,
}

/// The writer thread's state: every file of the recording.
struct WriterThread {
    dir: PathBuf,
    max_bytes: Option<u64>,
    started_unix_ms: u64,
    shared: Arc<Shared>,
    manifest: Manifest,
    open: HashMap<u64, OpenFile>,
    /// Paths of every file opened, in order.
    files: Vec<PathBuf>,
    /// When idle files were last looked for.
    last_idle_check: Instant,
}

/// The recording's byte budget, as the muxer sees it.
struct ByteBudget<'a> {
    written: &'a AtomicU64,
    max_bytes: Option<u64>,
}

impl Budget for ByteBudget<'_> {
    fn allows(&self, bytes: u64) -> bool {
        let written = self.written.load(Ordering::Relaxed);
        self.max_bytes
            .is_none_or(|max| written.saturating_add(bytes) <= max)
    }

    fn add(&mut self, bytes: u64) {
        self.written.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl WriterThread {
    fn run(mut self, commands: Receiver<Command>, done: CompleteOnDrop) {
        loop {
            let handled = match commands.recv_timeout(IDLE_FLUSH) {
                Ok(Command::Open(spec)) => self.open_file(spec),
                Ok(Command::Frame(frame)) => {
                    let len = frame.data.len() as u64;
                    self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                    self.write_frame(frame)
                }
                Ok(Command::Close(file)) => self.close_file(file),
                Err(RecvTimeoutError::Timeout) => Ok(()),
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Err(error) = handled.and_then(|()| self.flush_idle_files()) {
                self.fail(error);
                break;
            }
        }
        // After a failure, callers see `Stopped` at once rather than a queue nobody drains.
        drop(commands);
        let finished = self.finish_all();
        done.0.complete(Ok(finished));
    }

    fn budget(&self) -> ByteBudget<'_> {
        ByteBudget {
            written: &self.shared.bytes_written,
            max_bytes: self.max_bytes,
        }
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn open_file(&mut self, spec: FileSpec) -> Result<(), RecorderError> {
        let duplicate = self
            .manifest
            .files
            .iter()
            .any(|entry| entry.file == spec.file);
        if duplicate || spec.tracks.is_empty() || spec.tracks.len() > matroska::MAX_TRACKS {
            tracing::warn!(
                file = spec.file,
                duplicate,
                "recorder: invalid file spec ignored"
            );
            self.count(&self.shared.dropped_invalid);
            return Ok(());
        }
        let (_, extension) = matroska::container(&spec.tracks);
        let name = naming::file_name(&spec.participant, spec.file, extension);
        let path = self.dir.join(&name);
        let mut budget = self.budget();
        let mux = match MatroskaFile::create(&path, &spec, self.started_unix_ms, &mut budget) {
            Ok(mux) => mux,
            Err(MuxError::Io(error)) if error.kind() == io::ErrorKind::AlreadyExists => {
                tracing::warn!(path = %path.display(), "recorder: file exists, not overwritten");
                self.count(&self.shared.dropped_invalid);
                return Ok(());
            }
            Err(error) => return Err(mux_error(self.max_bytes, path, error)),
        };
        self.files.push(path);
        self.manifest.files.push(ManifestFile::new(&spec, name));
        let last_frame = Instant::now();
        self.open.insert(spec.file, OpenFile { mux, last_frame });
        self.write_manifest()
    }

    fn write_frame(&mut self, frame: Frame) -> Result<(), RecorderError> {
        let Some(open) = self.open.get_mut(&frame.file) else {
            self.count(&self.shared.dropped_invalid);
            return Ok(());
        };
        if frame.data.len() > MAX_FRAME_BYTES {
            self.count(&self.shared.dropped_invalid);
            return Ok(());
        }
        open.last_frame = Instant::now();
        let time_ms = u64::try_from(frame.time.as_millis()).unwrap_or(u64::MAX);
        let mut budget = ByteBudget {
            written: &self.shared.bytes_written,
            max_bytes: self.max_bytes,
        };
        let pushed = open.mux.push(
            frame.track,
            time_ms,
            frame.keyframe,
            &frame.data,
            &mut budget,
        );
        let counter = match pushed {
            Ok(Pushed::Written) => &self.shared.frames_written,
            Ok(Pushed::WaitingForKeyframe) => &self.shared.dropped_before_keyframe,
            Ok(Pushed::OutOfOrder) => &self.shared.dropped_out_of_order,
            Ok(Pushed::Invalid) => &self.shared.dropped_invalid,
            Err(error) => {
                let path = open.mux.path().to_path_buf();
                return Err(mux_error(self.max_bytes, path, error));
            }
        };
        self.count(counter);
        Ok(())
    }

    /// Writes the pending Cluster of every file idle for [`IDLE_FLUSH`] (checked at most
    /// that often).
    fn flush_idle_files(&mut self) -> Result<(), RecorderError> {
        let now = Instant::now();
        if now.duration_since(self.last_idle_check) < IDLE_FLUSH {
            return Ok(());
        }
        self.last_idle_check = now;
        let mut budget = ByteBudget {
            written: &self.shared.bytes_written,
            max_bytes: self.max_bytes,
        };
        for open in self.open.values_mut() {
            if now.duration_since(open.last_frame) >= IDLE_FLUSH {
                if let Err(error) = open.mux.flush(&mut budget) {
                    let path = open.mux.path().to_path_buf();
                    return Err(mux_error(self.max_bytes, path, error));
                }
            }
        }
        Ok(())
    }

    fn close_file(&mut self, file: u64) -> Result<(), RecorderError> {
        let Some(open) = self.open.remove(&file) else {
            self.count(&self.shared.dropped_invalid);
            return Ok(());
        };
        self.finish_file(file, open)?;
        self.write_manifest()
    }

    /// Finishes one file and records its duration; returns the first error met. A file that
    /// got no frame is deleted and left out of the manifest: players cannot open a Matroska
    /// file without a Cluster.
    fn finish_file(&mut self, file: u64, open: OpenFile) -> Result<(), RecorderError> {
        let path = open.mux.path().to_path_buf();
        if !open.mux.has_frames() {
            drop(open);
            if let Err(error) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), %error, "recorder: cannot remove empty file");
            }
            self.manifest.files.retain(|entry| entry.file != file);
            self.files.retain(|other| *other != path);
            return Ok(());
        }
        let mut budget = self.budget();
        let (duration_ms, error) = open.mux.finish(&mut budget);
        if let Some(entry) = self
            .manifest
            .files
            .iter_mut()
            .find(|entry| entry.file == file)
        {
            entry.duration_ms = Some(duration_ms);
        }
        match error {
            Some(error) => Err(mux_error(self.max_bytes, path, error)),
            None => Ok(()),
        }
    }

    fn write_manifest(&self) -> Result<(), RecorderError> {
        self.manifest
            .write(&self.dir)
            .map(|_| ())
            .map_err(|error| RecorderError::io(self.dir.join(MANIFEST_NAME), error))
    }

    /// Records the first failure and refuses later calls.
    fn fail(&self, error: RecorderError) {
        tracing::warn!(dir = %self.dir.display(), %error, "recording stopped");
        let mut failure = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        failure.get_or_insert(error);
        self.shared.stopped.store(true, Ordering::Relaxed);
    }

    /// Finishes every open file as well as it can and writes the final manifest.
    fn finish_all(mut self) -> Finished {
        let in_manifest_order: Vec<u64> = self.manifest.files.iter().map(|e| e.file).collect();
        for file in in_manifest_order {
            let Some(open) = self.open.remove(&file) else {
                continue;
            };
            if let Err(error) = self.finish_file(file, open) {
                self.fail(error);
            }
        }
        let failure = self.shared.failure();
        self.manifest.state = if failure.is_some() {
            RecordingState::Failed
        } else {
            RecordingState::Finished
        };
        self.manifest.failure = failure.as_ref().map(ToString::to_string);
        if let Err(error) = self.write_manifest() {
            self.fail(error);
        }
        Finished {
            files: self.files,
            manifest: self.dir.join(MANIFEST_NAME),
            failure: self.shared.failure(),
            stats: self.shared.stats(),
        }
    }
}

/// The recording's error for a muxer's error on `path`.
fn mux_error(max_bytes: Option<u64>, path: PathBuf, error: MuxError) -> RecorderError {
    match error {
        MuxError::Cap => RecorderError::CapReached {
            max_bytes: max_bytes.unwrap_or(0),
        },
        MuxError::Io(error) => RecorderError::io(path, error),
    }
}
