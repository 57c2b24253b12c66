//! What ffprobe and ffmpeg say of a recorded file. Shared by the recorder's tests and the
//! server's recording tests (`tests/recording.rs` includes this file by path), so that both
//! judge files the same way. ffmpeg is installed by scripts/test: a missing one is a failure.

use std::path::Path;
use std::process::Command;

/// `ffprobe -show_streams -show_format` of `path`, parsed.
pub fn probe(path: &Path) -> serde_json::Value {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed (scripts/test installs it)");
    assert!(
        output.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The codec names of the file's streams, in order.
pub fn codec_names(probe: &serde_json::Value) -> Vec<String> {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The format duration ffprobe reports, in seconds.
pub fn duration_secs(probe: &serde_json::Value) -> f64 {
    probe["format"]["duration"]
        .as_str()
        .expect("a duration")
        .parse()
        .unwrap()
}

/// What `ffmpeg -v error -i FILE -f null -` prints: empty when the file decodes cleanly.
pub fn decode_errors(path: &Path) -> String {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg is installed");
    assert!(
        output.status.success(),
        "ffmpeg decode of {} failed",
        path.display()
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// How many frames ffmpeg decodes from stream `stream` (e.g. "v:0") of `path`.
pub fn decoded_frames(path: &Path, stream: &str) -> u64 {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", stream])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    // The CSV line may end with empty fields ("15,").
    let text = String::from_utf8_lossy(&output.stdout);
    let count = text.trim().split(',').next().unwrap_or_default();
    count
        .parse()
        .unwrap_or_else(|_| panic!("frame count of {}: {text:?}", path.display()))
}
