//! The short fuzz run CI makes on every submission: every file of the kept
//! corpus (`fuzz/corpus/<target>/`) goes through the very body its cargo-fuzz
//! target runs (`fuzz/src/lib.rs`, included below, so the two never drift),
//! and nothing may panic. Long runs: `scripts/fuzz` (docs/GUARANTEES.md,
//! "Fuzzing").

#[path = "../fuzz/src/lib.rs"]
mod fuzz_targets;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The stack of a tokio worker thread (tokio's default, which herald keeps):
/// where a node parses envelopes and compiles CEL.
const WORKER_STACK: usize = 2 << 20;
/// Set in the child process that [`in_child`] starts.
const CHILD: &str = "HERALD_FUZZ_CORPUS_CHILD";
/// What the child prints before each input, so an abort names its input.
const STARTING: &str = "fuzz_corpus: input ";

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

/// Runs `f` on a thread with a worker's stack; `Err` if it panicked.
fn on_worker_stack(f: impl FnOnce() + Send + 'static) -> std::thread::Result<()> {
    std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(f)
        .expect("spawn a thread")
        .join()
}

/// Runs the calling test's `body` in a child process (this test binary,
/// running only `test`), so that a stack overflow, which aborts the process,
/// fails this test, naming the input it was on, instead of killing every
/// test of the binary.
fn in_child(test: &str, body: impl FnOnce()) {
    if std::env::var_os(CHILD).is_some() {
        body();
        return;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("run the test binary");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find_map(|l| l.strip_prefix(STARTING));
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        panic!(
            "{test}: the child process failed ({}); last input started: {}\n{}",
            out.status,
            last.unwrap_or("none"),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    // A name that matches no test runs nothing and succeeds.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 passed"),
        "{test}: the child ran no test named so:\n{stdout}"
    );
}

/// Runs one target over its corpus, each input on a worker-sized stack,
/// naming every input that panics (and the first one that aborts).
fn replay(test: &str, target: &str, body: fuzz_targets::Target) {
    in_child(test, || {
        let files = corpus(target);
        assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
        let mut failed = Vec::new();
        for file in &files {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            eprintln!("{STARTING}{}", file.display());
            if on_worker_stack(move || body(&data)).is_err() {
                failed.push(file.display().to_string());
            }
        }
        assert!(
            failed.is_empty(),
            "{target}: {} of {} corpus inputs panicked: {failed:?}",
            failed.len(),
            files.len()
        );
    });
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
    replay(
        "client_frame_corpus",
        "client_frame",
        fuzz_targets::client_frame,
    );
}

#[test]
fn envelope_corpus() {
    replay("envelope_corpus", "envelope", fuzz_targets::envelope);
}

#[test]
fn audience_corpus() {
    replay("audience_corpus", "audience", fuzz_targets::audience);
}

#[test]
fn template_corpus() {
    replay("template_corpus", "template", fuzz_targets::template);
}

#[test]
fn expression_corpus() {
    replay("expression_corpus", "expression", fuzz_targets::expression);
}

/// A property test over the expression generator: 4,000 pseudo-random
/// choice streams (a fixed xorshift seed, so a failure repeats), each
/// compiled and, when accepted, evaluated, on a worker-sized stack. None
/// may overflow or panic, and accepted ones stay within the cost bound
/// (asserted in the target).
#[test]
fn generated_expressions_find_nothing() {
    in_child("generated_expressions_find_nothing", || {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for i in 0..4000 {
            let len = 4 + (next() % 60) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            eprintln!("{STARTING}generated #{i}: {data:?}");
            let shown = data.clone();
            let ok = on_worker_stack(move || fuzz_targets::expression(&data));
            assert!(ok.is_ok(), "generated #{i} panicked: {shown:?}");
            let src = fuzz_targets::ExprGen::new(&shown).expr(12);
            if herald::expr::Filter::compile("to.where", &src, &["user", "segments", "attrs"])
                .is_ok()
            {
                accepted += 1;
            }
        }
        // Positive control: the generator reaches accepted expressions too,
        // so evaluation was exercised, not only refusals.
        assert!(accepted > 200, "only {accepted} of 4000 accepted");
    });
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

/// Found by replaying the audience corpus under `cargo test` (a crash: the
/// process aborts). In a debug build (`cargo test`, `cargo run`, the herald
/// binary the browser tests start), compiling the CEL `where`
/// `((((((((((((1))))))))))))` (12 nested parentheses, 25 bytes; `[`, `{`
/// and calls alike) overflows a 2 MiB thread stack: cel 0.15's generated
/// ANTLR parser (`cel::parser::gen::celparser`) descends 16 frames per
/// level, about 170 KiB of debug stack per level, before cel's own depth
/// limit (96) applies. The node process aborts ("thread 'tokio-runtime-
/// worker' has overflowed its stack", SIGABRT), taking every session down;
/// one `PUBLISH herald:broadcast` with such a `to.where` (or a campaign's
/// `audience.where` or `trigger.where`) stops every debug node that
/// receives it. Reached from `Filter::compile` (`cel::Program::compile`).
/// Release builds fit (300 levels need under 1 MiB, 2000 fit in 2 MiB).
/// `Filter::compile` now always parses on a stack of at least 4 MiB
/// (src/expr.rs), so neither build depends on the caller's stack.
/// Input: fuzz/corpus/audience/regression-cel-nesting-overflows-debug-stack.
#[test]
fn nested_cel_compiles_on_a_worker_stack() {
    in_child("nested_cel_compiles_on_a_worker_stack", || {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/audience/regression-cel-nesting-overflows-debug-stack");
        let minimal = std::fs::read_to_string(path).expect("reproducer");
        for src in [
            minimal,
            format!("{}1{}", "(".repeat(100), ")".repeat(100)),
            format!("{}{}", "[".repeat(2000), "]".repeat(2000)),
        ] {
            eprintln!("{STARTING}{src}");
            let to = serde_json::json!({ "where": src });
            on_worker_stack(move || {
                let _ = herald::audience::Audience::compile(&to);
            })
            .expect("compile does not panic");
        }
    });
}
