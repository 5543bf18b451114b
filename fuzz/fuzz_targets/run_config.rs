//! libFuzzer's entry to `starbucks_fuzz_targets::run_config` (what it parses: `fuzz/targets/src/run_config.rs`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starbucks_fuzz_targets::run_config(data));
