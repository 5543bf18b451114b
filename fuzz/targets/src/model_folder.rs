//! A model folder as `Embedder::from_pretrained` reads it: `config.json`, `tokenizer.json` and
//! `model.safetensors` (three sections of the input), then, when it loads, one text embedded.

use crate::support::{file, scratch, sections};
use burn::backend::Flex;
use starbucks_model::{Embedder, Size};

pub fn model_folder(data: &[u8]) {
    let parts = sections(data, 3);
    file("model/config.json", parts[0]);
    file("model/tokenizer.json", parts[1]);
    file("model/model.safetensors", parts[2]);
    let device = Default::default();
    if let Ok(embedder) = Embedder::<Flex>::from_pretrained(scratch().join("model"), &device) {
        let _ = embedder.embed(&["a short text", ""], Size::new(1, 1));
    }
}
