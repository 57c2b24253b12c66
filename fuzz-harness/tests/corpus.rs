//! Replays every file of `fuzz/corpus/<target>/` through its target's body: what fuzzing kept
//! (and every crash input added after its fix) runs on each `cargo test`, on stable.

use std::path::{Path, PathBuf};

use fuzz_harness::{seeds, TARGETS};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs every file of `target`'s corpus through its body.
fn replay(target: &str) {
    let (_, run) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target");
    let dir = corpus_dir(target);
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("a corpus file");
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{target} panicked on {}", file.display());
        }
    }
}

#[test]
fn every_parser_corpus_replays_without_a_panic() {
    for (name, _) in TARGETS.iter().filter(|(name, _)| *name != "core") {
        replay(name);
    }
}

/// The slow one (each input starts a call), on its own so it runs beside the others.
#[test]
fn the_core_corpus_replays_without_a_panic() {
    replay("core");
}

/// Writes the seed corpus (see `fuzz_harness::seeds`); run by hand, then `cargo fuzz cmin`:
/// `cargo test -p fuzz-harness --test corpus -- --ignored record_seed_corpus`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand (docs/robustness.md)"]
fn record_seed_corpus() {
    for (name, inputs) in seeds::all() {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).expect("a corpus directory");
        for input in inputs {
            // Named by content, as libFuzzer names what it keeps.
            let hash = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            std::fs::write(dir.join(format!("seed-{hash:016x}")), input).expect("written");
        }
    }
}
