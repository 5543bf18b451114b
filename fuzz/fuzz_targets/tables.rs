//! libFuzzer's entry to `starbucks_fuzz_targets::tables` (what it parses: `fuzz/targets/src/tables.rs`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starbucks_fuzz_targets::tables(data));
