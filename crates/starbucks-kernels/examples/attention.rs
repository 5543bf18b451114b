//! [`attention`] on batches shaped like the CPU encoder's: a benchmark for kernel work, not a
//! test (nothing asserts a time).
//!
//! `cargo run --release -p starbucks-kernels --example attention -- THREADS TEXTS LENGTH...`:
//! TEXTS sequences per call, their lengths taken in turn from the LENGTHs (e.g. `-- 2 32 9 14
//! 21 12 30` for a batch of STS-B sentences), MiniLM's 12 heads of 32. Prints each of 10 rounds
//! of about 0.3 s of calls, after an untimed one, and their median.

use std::time::Instant;

use starbucks_kernels::attention::attention;

const ROUNDS: usize = 10;
const USAGE: &str = "usage: attention THREADS TEXTS LENGTH..., e.g. attention 2 32 9 14 21 12 30";

fn main() -> std::process::ExitCode {
    let numbers: Option<Vec<usize>> = std::env::args().skip(1).map(|a| a.parse().ok()).collect();
    let valid = |n: &&[usize]| n.len() > 2 && n[0] > 0;
    let Some([threads, texts, lengths @ ..]) = numbers.as_deref().filter(valid) else {
        eprintln!("{USAGE}");
        return std::process::ExitCode::FAILURE;
    };
    let (heads, head_dim) = (12, 32);
    let mut offsets = vec![0];
    for i in 0..*texts {
        offsets.push(offsets[i] + lengths[i % lengths.len()]);
    }
    let rows = offsets[*texts];
    let qkv: Vec<f32> = (0..rows * 3 * heads * head_dim).map(|i| ((i * 7919) % 1000) as f32 / 4000.0 - 0.125).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(*threads).build().expect("a thread pool");
    pool.install(|| {
        let start = Instant::now();
        let mut calls = 0;
        while start.elapsed().as_secs_f64() < 0.3 || calls < 3 {
            std::hint::black_box(attention(&qkv, &offsets, heads, head_dim));
            calls += 1;
        }
        let mut times = Vec::new();
        for round in 1..=ROUNDS {
            let start = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(attention(&qkv, &offsets, heads, head_dim));
            }
            let micros = start.elapsed().as_secs_f64() * 1e6 / calls as f64;
            println!("round {round}: {micros:.1} µs per call ({rows} rows)");
            times.push(micros);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "median {:.1} µs per call, {:.1} ns per row",
            times[ROUNDS / 2],
            times[ROUNDS / 2] * 1e3 / rows as f64
        );
    });
    std::process::ExitCode::SUCCESS
}
