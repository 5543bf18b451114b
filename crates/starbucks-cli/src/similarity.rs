//! `starbucks similarity`: cosine similarities of a few sentences at every size.

use anyhow::Result;
use burn::tensor::backend::Backend;
use starbucks_eval::sts::cosine;
use starbucks_model::{Embedder, Size};

use crate::args::SimilarityArgs;

const DEFAULT_SENTENCES: [&str; 5] = [
    "A man is playing a guitar.",
    "A person plays an acoustic guitar on stage.",
    "A woman is slicing an onion.",
    "Someone is chopping vegetables in the kitchen.",
    "The stock market fell sharply on Monday.",
];

pub fn run<B: Backend>(args: SimilarityArgs, device: &B::Device) -> Result<()> {
    let embedder = Embedder::<B>::from_pretrained(&args.model, device)?;
    let sizes = args.sizes();
    let sentences: Vec<String> = if args.sentences.is_empty() {
        DEFAULT_SENTENCES.iter().map(|s| s.to_string()).collect()
    } else {
        args.sentences
    };
    let by_size = embedder.embed_sizes(&sentences, &sizes)?;
    for (i, s) in sentences.iter().enumerate() {
        println!("[{}] {s}", i + 1);
    }
    for (size, vectors) in sizes.iter().zip(&by_size) {
        print_matrix(*size, vectors);
    }
    Ok(())
}

fn print_matrix(size: Size, vectors: &[Vec<f32>]) {
    let name = size.name().map(|n| format!(" {n}")).unwrap_or_default();
    println!("\nsize{name} {size}: {} layers, {} dims", size.layers, size.dims);
    print!("     ");
    for j in 0..vectors.len() {
        print!("{:>7}", format!("[{}]", j + 1));
    }
    println!();
    for (i, a) in vectors.iter().enumerate() {
        print!("{:>5}", format!("[{}]", i + 1));
        for b in vectors {
            print!("{:>7.3}", cosine(a, b));
        }
        println!();
    }
}
