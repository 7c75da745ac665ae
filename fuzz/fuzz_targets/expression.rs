#![no_main]
//! The body is herald_fuzz::expression (fuzz/src/lib.rs), shared with tests/fuzz_corpus.rs.

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::expression(data));
