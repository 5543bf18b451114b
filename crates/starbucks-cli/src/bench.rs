//! `starbucks bench`: forward time at each size (early exit: a size runs only its layers) and
//! forward + backward time at the full size, on the compiled backend. A benchmark, not a test.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use starbucks_model::{Batch, BertConfig, BertInput, BertModel, Pooling, Size, Tokenizer, pool};

use crate::args::BenchArgs;

const TEXT: &str = "Starbucks trains one encoder whose sentence embeddings stay useful when they are \
cut to the first few layers and the first few dimensions, so that a user can trade quality for speed \
at query time without training and storing a separate model for every size.";

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> Duration {
    f();
    median(
        (0..rounds.max(1))
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

/// Multiply-adds of one text through `layers` layers of `seq` tokens (projections, FFN, attention).
fn layer_macs(config: &BertConfig, layers: usize, seq: usize) -> f64 {
    let (h, i, s) = (config.hidden_size as f64, config.intermediate_size as f64, seq as f64);
    layers as f64 * (4.0 * h * h * s + 2.0 * h * i * s + 2.0 * s * s * h)
}

/// `batch_size` identical rows of `seq_len` real tokens (a paragraph, repeated as needed).
fn fixed_batch(tokenizer: &Tokenizer, batch_size: usize, seq_len: usize) -> Result<Batch> {
    let ids = tokenizer.encode(&[TEXT])?.input_ids;
    let row: Vec<i64> = ids.iter().cycle().take(seq_len).copied().collect();
    Ok(Batch {
        input_ids: row.iter().cycle().take(seq_len * batch_size).copied().collect(),
        token_type_ids: vec![0; seq_len * batch_size],
        attention_mask: vec![1; seq_len * batch_size],
        batch_size,
        seq_len,
    })
}

pub fn run<B: AutodiffBackend>(args: BenchArgs, device: &B::Device) -> Result<()> {
    let config = BertConfig::from_file(args.model.join("config.json"))?;
    for size in &args.sizes {
        size.check(&config)?;
    }
    if args.seq_len == 0 || args.seq_len > config.max_position_embeddings || args.batch_size == 0 {
        bail!("--seq-len must be in 1..={} and --batch-size at least 1", config.max_position_embeddings);
    }
    let tokenizer = Tokenizer::from_file(args.model.join("tokenizer.json"), config.max_position_embeddings)?;
    let (model, _) = BertModel::<B>::from_safetensors(&config, args.model.join("model.safetensors"), device)?;
    let batch = fixed_batch(&tokenizer, args.batch_size, args.seq_len)?;
    let full = Size::full(&config);

    println!(
        "backend {}, batch {} x {} tokens, median of {} rounds after 1 warm-up",
        crate::backend::NAME,
        args.batch_size,
        args.seq_len,
        args.rounds
    );
    println!("\nforward (inference, early exit), pooled and cut:");
    println!("{:>12} {:>12} {:>10} {:>12} {:>14}", "size", "median ms", "texts/s", "time / full", "MACs / full");
    let inference = model.valid();
    let inner_device = inference.devices().into_iter().next().context("model has a device")?;
    let forward = |size: Size| {
        let input = BertInput::from_batch(&batch, &inner_device);
        let mask = input.attention_mask.clone();
        let hidden = inference.forward(input, size.layers);
        pool(hidden[size.layers].clone(), mask, Pooling::Mean).narrow(1, 0, size.dims).into_data()
    };
    let full_time = time(args.rounds, || forward(full));
    let full_macs = layer_macs(&config, full.layers, args.seq_len);
    for &size in &args.sizes {
        let t = if size == full { full_time } else { time(args.rounds, || forward(size)) };
        println!(
            "{:>12} {:>12.1} {:>10.1} {:>12.3} {:>14.3}",
            size.to_string(),
            t.as_secs_f64() * 1e3,
            args.batch_size as f64 / t.as_secs_f64(),
            t.as_secs_f64() / full_time.as_secs_f64(),
            layer_macs(&config, size.layers, args.seq_len) / full_macs,
        );
    }

    println!("\nforward + backward (autodiff, dropout on), loss = mean of squared pooled embedding:");
    for size in [full, *args.sizes.iter().min().expect("at least one size")] {
        let t = time(args.rounds, || {
            let input = BertInput::from_batch(&batch, device);
            let mask = input.attention_mask.clone();
            let hidden = model.forward(input, size.layers);
            let loss =
                pool(hidden[size.layers].clone(), mask, Pooling::Mean).narrow(1, 0, size.dims).powi_scalar(2).mean();
            loss.backward()
        });
        println!("{:>12} {:>12.1} ms", size.to_string(), t.as_secs_f64() * 1e3);
    }
    Ok(())
}
