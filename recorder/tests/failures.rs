//! How recordings end badly: a killed process, the size cap, an unwritable directory, a full
//! disk. Each must leave files that ffprobe reads and ffmpeg decodes without error.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::ffprobe::{decode_errors, decoded_frames, probe};
use common::{ebml, interleave, opus_clip, video_clip, TempDir, FPS};
use recorder::{
    Backpressure, Codec, FileSpec, Frame, RecorderError, RecordingWriter, TrackSpec, WriterOptions,
};

/// The environment variable that turns `child_records_until_killed` into the child process.
const CHILD_DIR: &str = "RECORDER_TEST_CHILD_DIR";

fn vp8_opus_spec(file: u64) -> FileSpec {
    FileSpec {
        file,
        participant: "Carol".into(),
        peer: 5,
        // Picture size unknown: the first keyframe gives it.
        tracks: vec![TrackSpec::video(Codec::Vp8, 0, 0), TrackSpec::opus(1)],
        start: Duration::ZERO,
    }
}

/// Waits (up to 10 s) until `done` holds for the writer.
fn wait_until(writer: &RecordingWriter, done: impl Fn(&RecordingWriter) -> bool) {
    for _ in 0..1000 {
        if done(writer) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the writer thread never got there: {:?}", writer.stats());
}

/// How much of the clips the killed child process records (ms).
const FED_MS: u64 = 1500;

/// The child process of `killed_process_leaves_a_playable_file`: records 1.5 s of VP8 +
/// Opus, says READY once every video frame is on disk (the last ones through the idle
/// flush), then waits to be killed (SIGKILL: no finish, no destructors); exits without READY
/// if they never get there.
#[test]
#[ignore = "run by killed_process_leaves_a_playable_file as its child process"]
fn child_records_until_killed() {
    let dir = std::env::var_os(CHILD_DIR).expect("run as a child process");
    let dir = Path::new(&dir);
    let video = video_clip(dir, Codec::Vp8, 2);
    let audio = opus_clip(dir, 2);
    let writer =
        RecordingWriter::start(WriterOptions::new(dir.join("rec"), "r", "room", 0)).unwrap();
    writer.open_file(vp8_opus_spec(1)).unwrap();
    // The Cluster of the first second is written when the keyframe at 1 s starts the next
    // one; that one is written by the idle flush once no frame came for a second.
    let frames: Vec<Frame> = interleave(1, &[&video, &audio])
        .into_iter()
        .filter(|frame| frame.time < Duration::from_millis(FED_MS))
        .collect();
    let total = frames.len() as u64;
    for frame in frames {
        writer.write(frame).unwrap();
    }
    wait_until(&writer, |w| w.stats().frames_written == total);
    // Without a close, the idle flush must bring the last frames to the disk.
    let path = dir.join("rec/Carol-1.webm");
    let video_frames = (FED_MS * u64::from(FPS)).div_ceil(1000);
    let on_disk = (0..50).any(|_| {
        let done = decoded_frames(&path, "v:0") == video_frames;
        if !done {
            std::thread::sleep(Duration::from_millis(200));
        }
        done
    });
    if !on_disk {
        return; // the parent sees the end of the output without READY
    }
    println!("READY");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn killed_process_leaves_a_playable_file() {
    let temp = TempDir::new("killed");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_records_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR, temp.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.any(|line| line.is_ok_and(|line| line.trim_end().ends_with("READY")));
    child.kill().unwrap(); // SIGKILL: no destructor, no finish
    child.wait().unwrap();
    assert!(
        ready,
        "the idle flush never wrote the last frames of the child's file"
    );

    let path = temp.path().join("rec/Carol-1.webm");
    let probe = probe(&path);
    let codecs: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap())
        .collect();
    assert_eq!(codecs, ["vp8", "opus"]);
    let errors = decode_errors(&path);
    assert!(errors.is_empty(), "{errors}");
    // Every frame fed is on disk and decodes.
    let video_frames = (FED_MS * u64::from(FPS)).div_ceil(1000);
    assert_eq!(decoded_frames(&path, "v:0"), video_frames);
    assert_eq!(decoded_frames(&path, "a:0"), FED_MS / 20);
    // A live file: Segment of unknown size, no Duration or Cues yet, the picture size filled
    // in at the first keyframe.
    let bytes = std::fs::read(&path).unwrap();
    let segment = ebml::segment(&bytes);
    assert!(segment.unknown_size);
    let info = ebml::child(segment.payload, ebml::INFO).unwrap();
    assert!(ebml::child(info.payload, ebml::DURATION).is_none());
    assert!(ebml::child(segment.payload, ebml::CUES).is_none());
    assert_eq!(ebml::picture_size(segment.payload, 0), Some((160, 120)));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(temp.path().join("rec/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["state"], "recording");
    assert_eq!(manifest["files"][0]["path"], "Carol-1.webm");
}

#[test]
fn size_cap_ends_the_recording_with_playable_files() {
    let temp = TempDir::new("cap");
    let video = video_clip(temp.path(), Codec::Vp8, 2);
    let audio = opus_clip(temp.path(), 2);
    let max_bytes = 20_000;
    let options = WriterOptions {
        max_bytes: Some(max_bytes),
        ..WriterOptions::new(temp.path().join("rec"), "r", "room", 0)
    };
    let writer = RecordingWriter::start(options).unwrap();
    writer.open_file(vp8_opus_spec(1)).unwrap();
    for frame in interleave(1, &[&video, &audio]) {
        if writer.write(frame) == Err(Backpressure::Stopped) {
            break;
        }
    }
    wait_until(&writer, |w| w.failure().is_some());
    assert!(matches!(
        writer.failure(),
        Some(RecorderError::CapReached { max_bytes: 20_000 })
    ));
    let late = Frame {
        file: 1,
        track: 1,
        time: Duration::from_secs(9),
        keyframe: true,
        data: vec![1],
    };
    assert_eq!(writer.write(late), Err(Backpressure::Stopped));

    let finished = writer.finish().wait().unwrap();
    assert!(matches!(
        finished.failure,
        Some(RecorderError::CapReached { .. })
    ));
    let file = &finished.files[0];
    let size = std::fs::metadata(file).unwrap().len();
    assert!(size <= max_bytes + 1_000, "{size} bytes");
    assert!(decode_errors(file).is_empty());
    assert!(decoded_frames(file, "v:0") > 0);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&finished.manifest).unwrap()).unwrap();
    assert_eq!(manifest["state"], "failed");
    assert!(manifest["failure"].as_str().unwrap().contains("cap"));
}

#[test]
fn unwritable_directory_fails_start() {
    let temp = TempDir::new("unwritable");
    let not_a_dir = temp.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let result = RecordingWriter::start(WriterOptions::new(not_a_dir.join("rec"), "r", "room", 0));
    match result {
        Err(error @ RecorderError::Unwritable { .. }) => {
            assert!(error.to_string().contains("file/rec"), "{error}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("started in a directory under a file"),
    }
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk<'a>(&'a Path);

impl Drop for SmallDisk<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn full_disk_ends_the_recording_with_playable_files() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED full_disk_ends_the_recording_with_playable_files: mounting a tmpfs needs root"
        );
        return;
    }
    let temp = TempDir::new("full");
    let video = video_clip(temp.path(), Codec::Vp8, 2);
    let audio = opus_clip(temp.path(), 2);
    let disk = temp.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&disk)
        .output()
        .unwrap();
    if !mounted.status.success() {
        // Root in a container without CAP_SYS_ADMIN.
        let why = String::from_utf8_lossy(&mounted.stderr);
        eprintln!("SKIPPED full_disk_ends_the_recording_with_playable_files: mount failed: {why}");
        return;
    }
    let _unmount = SmallDisk(&disk);

    let writer =
        RecordingWriter::start(WriterOptions::new(disk.join("rec"), "r", "room", 0)).unwrap();
    writer.open_file(vp8_opus_spec(1)).unwrap();
    // Loop the 2 s clip (about 50 kB) until the 256 kB disk is full.
    'feed: for round in 0..40u32 {
        let clip = interleave(1, &[&video, &audio]);
        // The Opus clip has a packet at 2 s: it would collide with the next round's first.
        for mut frame in clip.into_iter().filter(|f| f.time < Duration::from_secs(2)) {
            frame.time += Duration::from_secs(2 * u64::from(round));
            match writer.write(frame) {
                Ok(()) => {}
                Err(Backpressure::Stopped) => break 'feed,
                Err(Backpressure::QueueFull) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    wait_until(&writer, |w| w.failure().is_some());
    assert!(
        matches!(writer.failure(), Some(RecorderError::DiskFull { .. })),
        "{:?}",
        writer.failure()
    );
    let finished = writer.finish().wait().unwrap();
    assert!(matches!(
        finished.failure,
        Some(RecorderError::DiskFull { .. })
    ));
    let file = &finished.files[0];
    let errors = decode_errors(file);
    assert!(errors.is_empty(), "{errors}");
    assert!(decoded_frames(file, "v:0") > u64::from(FPS));
    // The manifest written when the file opened is still there (the final one may not fit).
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&finished.manifest).unwrap()).unwrap();
    assert_eq!(manifest["files"][0]["path"], "Carol-1.webm");
}
