//! libFuzzer's entry to `starbucks_fuzz_targets::serve_request` (what it parses: `fuzz/targets/src/serve_request.rs`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starbucks_fuzz_targets::serve_request(data));
