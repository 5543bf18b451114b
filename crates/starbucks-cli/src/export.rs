//! `starbucks export`: a standalone (n layers, d dims) folder for sentence-transformers, TEI, HF.

use anyhow::Result;
use burn::tensor::backend::Backend;
use starbucks_files::check_writable;
use starbucks_model::{Embedder, ExportOptions, export_sentence_transformers};

use crate::args::{ExportArgs, ExportFormat};

pub fn run<B: Backend>(args: ExportArgs, device: &B::Device) -> Result<()> {
    check_writable(&args.output).map_err(anyhow::Error::msg)?;
    // The folder itself: its tokenizer files are copied.
    let model = starbucks_model::resolve_model(&args.model)?;
    let embedder = Embedder::<B>::from_pretrained(&model, device)?;
    let options = ExportOptions {
        size: args.size,
        normalize: args.normalize,
        sentence_transformers: args.format == ExportFormat::SentenceTransformers,
        trained_sizes: args.trained_sizes(),
    };
    export_sentence_transformers(&embedder, &model, &args.output, &options)?;
    println!("exported size {} of {} to {}", args.size, args.model.display(), args.output.display());
    Ok(())
}
