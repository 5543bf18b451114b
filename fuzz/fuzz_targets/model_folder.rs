//! libFuzzer's entry to `starbucks_fuzz_targets::model_folder` (what it parses: `fuzz/targets/src/model_folder.rs`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starbucks_fuzz_targets::model_folder(data));
