//! Our f32 product ([`Linear`], the CPU encoder's) against the gemm crate's, as the training
//! op [`linear`] calls it, on an encoder's four shapes for a few row counts: a benchmark for
//! kernel work, not a test (nothing asserts a time).
//!
//! `cargo run --release -p starbucks-kernels --example products -- MODEL THREADS ROWS...`, e.g.
//! `-- minilm 2 250 450 1000`, MODEL one of [`MODELS`]. Each round times ours then gemm's (the
//! order alternating by round) over enough calls for about 0.3 s of work, both writing
//! `bias + x W` into fresh memory, and prints every round after an untimed one; the summary is
//! the median of each side and of the per-round ratios (ours over gemm's, below 1 is faster).

use std::time::Instant;

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use starbucks_kernels::{Linear, linear};

/// Each model's products by its `hidden_size`: `[in, out]` of query/key/value fused, attention
/// output, intermediate, output.
const MODELS: [(&str, usize); 2] = [("minilm", 384), ("bert-base", 768)];
const ROUNDS: usize = 10;
const USAGE: &str = "usage: products MODEL THREADS ROWS..., MODEL minilm or bert-base, \
                     e.g. products minilm 2 250 450 1000";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((hidden, threads, rows)) = parse(&args) else {
        eprintln!("{USAGE}");
        return std::process::ExitCode::FAILURE;
    };
    let shapes = [(hidden, 3 * hidden), (hidden, hidden), (hidden, 4 * hidden), (4 * hidden, hidden)];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
    pool.install(|| {
        for &m in &rows {
            for (k, n) in shapes {
                compare(m, k, n);
            }
        }
    });
    std::process::ExitCode::SUCCESS
}

/// The model's hidden size, the thread count and the row counts; `None` for anything else.
fn parse(args: &[String]) -> Option<(usize, usize, Vec<usize>)> {
    let (model, numbers) = args.split_first()?;
    let hidden = MODELS.iter().find(|(name, _)| name == model)?.1;
    let numbers: Vec<usize> = numbers.iter().map(|a| a.parse().ok()).collect::<Option<_>>()?;
    let (&threads, rows) = numbers.split_first()?;
    (threads > 0 && !rows.is_empty() && !rows.contains(&0)).then(|| (hidden, threads, rows.to_vec()))
}

/// Times both sides on one shape and prints the rounds and their medians.
fn compare(m: usize, k: usize, n: usize) {
    let value = |i: usize, prime: usize| ((i * prime) % 1000) as f32 / 1000.0 - 0.5;
    let w: Vec<f32> = (0..k * n).map(|i| value(i, 7919)).collect();
    let x: Vec<f32> = (0..m * k).map(|i| value(i, 104_729)).collect();
    let bias: Vec<f32> = (0..n).map(|i| value(i, 31)).collect();
    let ours = Linear::f32(w.clone(), k, n, Some(bias.clone()));
    // `linear` on flex tensors writes the bias rows in parallel, then one gemm call adds the
    // product: the encoder's path before the panels. Cloning a tensor shares its buffer.
    let device = Default::default();
    let tensor = |values: &[f32], shape: Vec<usize>| {
        Tensor::<Flex, 2>::from_data(TensorData::new(values.to_vec(), shape), &device)
    };
    let (x_t, w_t) = (tensor(&x, vec![m, k]), tensor(&w, vec![k, n]));
    let b_t = Tensor::<Flex, 1>::from_data(TensorData::new(bias.clone(), vec![n]), &device);
    let gemm = || match linear(x_t.clone(), w_t.clone(), Some(b_t.clone())) {
        Ok(out) => out,
        Err(_) => unreachable!("flex f32 inputs take our linear"),
    };
    let ours = || ours.forward(&x, m);
    let calls = (300_000_000 / (m * k * n)).max(1);
    // One untimed round: first-touch page faults and the pool's first wake-up.
    time(calls, ours);
    time(calls, gemm);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            a.push(time(calls, ours));
            b.push(time(calls, gemm));
        } else {
            b.push(time(calls, gemm));
            a.push(time(calls, ours));
        }
    }
    let ratios: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a / b).collect();
    let show = |v: &[f64]| v.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(" ");
    println!("[{m} x {k}] -> {n}: ours {} us | gemm {} us", show(&a), show(&b));
    println!(
        "[{m} x {k}] -> {n}: median ours {:.0} us, gemm {:.0} us, ours/gemm {:.3} (rounds {:.2}-{:.2})",
        median(&a),
        median(&b),
        median(&ratios),
        ratios.iter().copied().fold(f64::MAX, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );
}

/// Microseconds per call of `f`, over `calls` calls.
fn time<T>(calls: usize, f: impl Fn() -> T) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(f());
    }
    start.elapsed().as_secs_f64() * 1e6 / calls as f64
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] }
}
