//! libFuzzer's entry to `starbucks_fuzz_targets::data_files` (what it parses: `fuzz/targets/src/data_files.rs`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starbucks_fuzz_targets::data_files(data));
