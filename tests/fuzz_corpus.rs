//! The short fuzz run CI makes on every submission: every file of the kept
//! corpus (`fuzz/corpus/<target>/`) goes through the very body its cargo-fuzz
//! target runs (`fuzz/src/lib.rs`, included below, so the two never drift),
//! and nothing may panic. Long runs: `scripts/fuzz` (docs/GUARANTEES.md,
//! "Fuzzing").

#[path = "../fuzz/src/lib.rs"]
mod fuzz_targets;

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs one target over its corpus, naming every input that panics.
fn replay(target: &str, body: fuzz_targets::Target) {
    let files = corpus(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| body(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} corpus inputs panicked: {failed:?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn every_target_has_a_corpus_and_a_binary() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .expect("fuzz/Cargo.toml");
    for (name, _) in fuzz_targets::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
        assert!(!corpus(name).is_empty(), "fuzz/corpus/{name} is empty");
    }
}

#[test]
fn client_frame_corpus() {
    replay("client_frame", fuzz_targets::client_frame);
}

#[test]
fn envelope_corpus() {
    replay("envelope", fuzz_targets::envelope);
}

#[test]
fn audience_corpus() {
    replay("audience", fuzz_targets::audience);
}

#[test]
fn template_corpus() {
    replay("template", fuzz_targets::template);
}

/// Found by the envelope target: a float in `data` or `theme` that a node
/// accepted came back one bit off when the next node parsed the JSON it was
/// passed on, so nodes, and the clients they send `msg` frames to, disagreed
/// on the payload (18446744073759160515 was 0x43f0000000002f50 on the first
/// node, 0x43f0000000002f4f on the others). Fixed by serde_json's
/// `float_roundtrip` feature (c67dfa5). Input:
/// fuzz/corpus/envelope/regression-float-passed-on-one-bit-off.
#[test]
fn floats_survive_being_passed_on() {
    use herald::envelope::{Command, parse};
    let input = br#"{"to":"all","kind":"custom","data":{"x":18446744073759160515}}"#;
    let Ok(Command::Publish(first)) = parse(input, fuzz_targets::MAX_ENVELOPE, 0) else {
        panic!("refused")
    };
    let passed_on = first.to_json();
    let Ok(Command::Publish(second)) = parse(passed_on.as_bytes(), fuzz_targets::MAX_ENVELOPE, 0)
    else {
        panic!("passed-on form refused: {passed_on}")
    };
    assert_eq!(
        second.envelope.data, first.envelope.data,
        "passed on as {passed_on}"
    );
}
