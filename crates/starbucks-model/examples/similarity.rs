//! Embeds two sentences at a cheap size and at the full one and prints their cosine similarity,
//! as a program that depends on `starbucks-model` would:
//!
//! ```sh
//! cargo run --release -p starbucks-model --example similarity -- assets/all-MiniLM-L6-v2
//! ```
//!
//! The argument is a model folder or a hub id (`sentence-transformers/all-MiniLM-L6-v2`).

use burn::backend::Flex;
use starbucks_model::{Embedder, Precision, Size};

fn main() -> Result<(), starbucks_model::Error> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "assets/all-MiniLM-L6-v2".into());
    let embedder = Embedder::<Flex>::from_pretrained(&model, &Default::default())?
        .with_normalize(true)
        .with_precision(Precision::F32)?;
    let texts = ["A man is playing a guitar.", "Someone plays an instrument."];
    for size in [Size::new(2, 64), embedder.full_size()] {
        let vectors = embedder.embed(&texts, size)?;
        let cosine: f32 = vectors[0].iter().zip(&vectors[1]).map(|(a, b)| a * b).sum();
        println!("{size}: cosine {cosine:.4}");
    }
    Ok(())
}
