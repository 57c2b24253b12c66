//! The worker's side of recording: one [`RecordingWriter`] per recorded room, fed with what the
//! core's recorder outputs. Every call on a writer is a non-blocking queue push (a full queue
//! drops and counts the frame); the disk I/O happens on the writer's own thread. A writer that
//! failed (disk full, size cap, I/O error) is noticed by [`watch`], which stops the recording in
//! the core: the members are told why, the call goes on.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use recorder::{Codec, FileSpec, Frame, RecordingWriter, TrackSpec, WriterOptions};
use sfu_core::recording::{FileOpen, RecordedCodec, RecordingError, RecordingOutput};
use signaling::webhooks::{RecordingFinished, WebhookSender};
use signaling::{RecordingRefusal, RecordingReply};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::Shared;
use crate::recording_totals::RecordingTotals;

/// How often the worker looks for writers that failed (and counts the bytes they wrote).
const FAILURE_CHECK: Duration = Duration::from_millis(250);

/// Where recordings go and how large they may get.
#[derive(Debug, Clone)]
pub struct RecordSettings {
    /// The directory each recording gets its own directory in (absolute).
    pub dir: PathBuf,
    /// A recording's size cap in bytes.
    pub max_bytes: Option<u64>,
}

/// Where a stop's answer goes once the files are finished.
type StopReply = oneshot::Sender<Result<RecordingReply, RecordingRefusal>>;

/// One room being recorded.
struct Active {
    writer: RecordingWriter,
    /// API stops waiting for the files.
    waiters: Vec<StopReply>,
    /// Frames and commands the full queue refused.
    dropped: u64,
    /// What of the writer's `bytes_written` the server's totals already have.
    bytes_counted: u64,
}

/// The recordings of one worker, by room.
pub struct Recorders {
    settings: RecordSettings,
    /// The server's recording counters (`/metrics`).
    totals: Arc<RecordingTotals>,
    /// Where "recording finished" goes, when webhooks are configured.
    webhooks: Option<WebhookSender>,
    active: HashMap<String, Active>,
    /// Rooms whose writer is being started (another start of one of them meanwhile is refused).
    starting: HashSet<String>,
    /// The tasks finishing ended recordings' files (a stopping server waits for them).
    finishing: Vec<tokio::task::JoinHandle<()>>,
}

impl Recorders {
    /// No recordings yet; new ones go under `settings.dir`, counted in `totals`, finished ones
    /// announced to `webhooks`.
    pub fn new(
        settings: RecordSettings,
        totals: Arc<RecordingTotals>,
        webhooks: Option<WebhookSender>,
    ) -> Self {
        Recorders {
            settings,
            totals,
            webhooks,
            active: HashMap::new(),
            starting: HashSet::new(),
            finishing: Vec::new(),
        }
    }

    /// Answers `reply` with `room`'s files once its recording (being stopped) is finished.
    pub fn answer_when_finished(&mut self, room: &str, reply: StopReply) {
        match self.active.get_mut(room) {
            Some(active) => active.waiters.push(reply),
            None => {
                let _ = reply.send(Err(RecordingRefusal::Failed(format!(
                    "room {room} has no recording writer"
                ))));
            }
        }
    }

    /// Passes one output of the core's recorder to its writer. [`RecordingOutput::Requested`]
    /// needs the core: it is handed back.
    pub fn handle(&mut self, output: RecordingOutput) -> Option<String> {
        let (room, result) = match output {
            RecordingOutput::Requested { room } => return Some(room.to_string()),
            RecordingOutput::OpenFile { room, file } => {
                let active = self.active.get_mut(&*room)?;
                (room, active.writer.open_file(file_spec(file)))
            }
            RecordingOutput::Frame { room, frame } => {
                let active = self.active.get_mut(&*room)?;
                let frame = Frame {
                    file: frame.file,
                    track: frame.track,
                    time: frame.time,
                    keyframe: frame.keyframe,
                    data: frame.data,
                };
                (room, active.writer.write(frame))
            }
            RecordingOutput::CloseFile { room, file } => {
                let active = self.active.get_mut(&*room)?;
                (room, active.writer.close_file(file))
            }
            RecordingOutput::Ended { room, id, error } => {
                self.finish(&room, &id, error);
                return None;
            }
        };
        if result.is_err() {
            if let Some(active) = self.active.get_mut(&*room) {
                active.dropped += 1;
                self.totals.dropped_frame();
            }
        }
        None
    }

    /// The recording of `room` ended in the core: its writer finishes the files on its own
    /// thread, and a local task answers the API's stops when it is done.
    fn finish(&mut self, room: &str, id: &str, error: Option<String>) {
        let Some(active) = self.active.remove(room) else {
            return;
        };
        let finishing = active.writer.finish();
        let (room, id) = (room.to_owned(), id.to_owned());
        let (waiters, dropped, counted) = (active.waiters, active.dropped, active.bytes_counted);
        let (totals, webhooks) = (self.totals.clone(), self.webhooks.clone());
        self.finishing.retain(|task| !task.is_finished());
        let task = tokio::task::spawn_local(async move {
            let result = finishing.await;
            match &result {
                Ok(done) => {
                    info!(
                        room, id, files = done.files.len(), dropped, stopped_by = ?error,
                        failure = ?done.failure.as_ref().map(ToString::to_string),
                        "recording finished"
                    );
                    totals.wrote(done.stats.bytes_written.saturating_sub(counted));
                    totals.finished(done.failure.is_some());
                    if let Some(webhooks) = &webhooks {
                        webhooks.notify(RecordingFinished {
                            room: room.clone(),
                            id: id.clone(),
                            files: done.files.iter().map(|f| f.display().to_string()).collect(),
                        });
                    }
                }
                Err(e) => {
                    warn!(room, id, error = %e, "recording could not be finished");
                    totals.finished(true);
                }
            }
            for waiter in waiters {
                let answer = match &result {
                    Ok(done) => Ok(RecordingReply::Stopped {
                        files: done.files.clone(),
                    }),
                    Err(e) => Err(RecordingRefusal::Failed(e.to_string())),
                };
                let _ = waiter.send(answer);
            }
        });
        self.finishing.push(task);
    }

    /// The recordings whose files are still being finished, for a stopping worker to wait on.
    pub fn take_finishing(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        std::mem::take(&mut self.finishing)
    }

    /// Adds what the writers wrote since the last call to the server's totals.
    fn count_bytes(&mut self) {
        for active in self.active.values_mut() {
            let written = active.writer.bytes_written();
            self.totals
                .wrote(written.saturating_sub(active.bytes_counted));
            active.bytes_counted = written;
        }
    }

    /// The rooms whose writer gave up, with why.
    fn failed(&self) -> Vec<(String, String)> {
        self.active
            .iter()
            .filter_map(|(room, a)| a.writer.failure().map(|e| (room.clone(), e.to_string())))
            .collect()
    }
}

/// Starts recording `room`. The core is asked first whether it may (the room exists and is not
/// recorded); the writer's directory and first manifest are then made on the blocking pool, not
/// on the media worker; only then does the core start, attach the recorder and tell the members.
/// A directory that cannot be written ends the attempt with the error told to the members.
pub async fn start(shared: Rc<Shared>, room: String) -> Result<RecordingReply, RecordingRefusal> {
    shared
        .core
        .borrow()
        .can_start_recording(&room)
        .map_err(refusal)?;
    if !shared.recorders.borrow_mut().starting.insert(room.clone()) {
        return Err(RecordingRefusal::Conflict(format!(
            "room {room} is already being recorded"
        )));
    }
    let result = start_writer(&shared, &room).await;
    shared.recorders.borrow_mut().starting.remove(&room);
    result
}

/// [`start`] once the room is known to be free: the writer, then the core.
async fn start_writer(shared: &Rc<Shared>, room: &str) -> Result<RecordingReply, RecordingRefusal> {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let id = recording_id(room, started);
    let (dir, max_bytes) = {
        let recorders = shared.recorders.borrow();
        (
            recorders.settings.dir.join(&id),
            recorders.settings.max_bytes,
        )
    };
    let options = WriterOptions {
        max_bytes,
        ..WriterOptions::new(&dir, &id, room, started.as_millis() as u64)
    };
    let writer = tokio::task::spawn_blocking(move || RecordingWriter::start(options))
        .await
        .map_err(|e| RecordingRefusal::Failed(e.to_string()))
        .and_then(|w| w.map_err(|e| RecordingRefusal::Failed(e.to_string())));
    let writer = match writer {
        Ok(writer) => writer,
        Err(e) => {
            warn!(room, id = %id, error = %e, "recording cannot start");
            shared
                .core
                .borrow_mut()
                .recording_failed(room, &id, e.to_string());
            shared.flush();
            return Err(e);
        }
    };
    let begun = shared
        .core
        .borrow_mut()
        .start_recording(Instant::now(), room, id.clone());
    if let Err(e) = begun {
        // The room emptied (or a recording began) while the directory was being made.
        tokio::task::spawn_local(writer.finish());
        return Err(refusal(e));
    }
    info!(room, id = %id, dir = %dir.display(), "recording to disk");
    let mut recorders = shared.recorders.borrow_mut();
    recorders.totals.started();
    recorders.active.insert(
        room.to_owned(),
        Active {
            writer,
            waiters: Vec::new(),
            dropped: 0,
            bytes_counted: 0,
        },
    );
    drop(recorders);
    shared.flush();
    Ok(RecordingReply::Started { id, dir })
}

/// The API's view of the core's refusal.
pub fn refusal(e: RecordingError) -> RecordingRefusal {
    match e {
        RecordingError::UnknownRoom(room) => RecordingRefusal::UnknownRoom(room),
        other => RecordingRefusal::Conflict(other.to_string()),
    }
}

/// Stops, in the core, every recording whose writer failed (disk full, size cap): the members
/// get the error, the writer finishes what it can. Also brings the server's bytes-written
/// counter up to date.
pub async fn watch(shared: Rc<Shared>) {
    let mut tick = tokio::time::interval(FAILURE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.recorders.borrow_mut().count_bytes();
        let failed = shared.recorders.borrow().failed();
        if failed.is_empty() {
            continue;
        }
        for (room, reason) in failed {
            warn!(room, error = %reason, "recording failed: stopping it, the call goes on");
            let _ = shared
                .core
                .borrow_mut()
                .stop_recording(Instant::now(), &room, Some(reason));
        }
        shared.flush();
    }
}

/// A recording's id, also its directory's name: the room (sanitized) and the UTC time it
/// started, to the millisecond.
fn recording_id(room: &str, since_epoch: Duration) -> String {
    let at = time::OffsetDateTime::UNIX_EPOCH + since_epoch;
    format!(
        "{}-{:04}{:02}{:02}-{:02}{:02}{:02}-{:03}",
        recorder::sanitize(room),
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// The writer's description of a file the core opened.
fn file_spec(file: FileOpen) -> FileSpec {
    FileSpec {
        file: file.file,
        participant: file.participant,
        peer: file.peer,
        tracks: file
            .tracks
            .iter()
            .map(|t| match t.codec {
                RecordedCodec::Opus => TrackSpec::opus(t.channels),
                RecordedCodec::Vp8 => TrackSpec::video(Codec::Vp8, t.width, t.height),
                RecordedCodec::H264 => TrackSpec::video(Codec::H264, t.width, t.height),
            })
            .collect(),
        start: file.start,
    }
}

/// `dir` made absolute against the working directory (the API answers absolute paths).
pub fn absolute(dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        dir.to_owned()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(dir))
            .unwrap_or_else(|_| dir.to_owned())
    }
}
