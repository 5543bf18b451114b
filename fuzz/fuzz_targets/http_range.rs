//! libFuzzer's entry to `starbucks_fuzz_targets::http_range` (what it parses: `fuzz/targets/src/http_range.rs`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starbucks_fuzz_targets::http_range(data));
