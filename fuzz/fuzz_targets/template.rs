#![no_main]
//! The body is herald_fuzz::template (fuzz/src/lib.rs), shared with tests/fuzz_corpus.rs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::template(data));
