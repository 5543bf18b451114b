//! libFuzzer's entry to `starbucks_fuzz_targets::fineweb` (what it parses: `fuzz/targets/src/fineweb.rs`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starbucks_fuzz_targets::fineweb(data));
