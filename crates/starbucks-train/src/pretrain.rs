//! The pre-training task: SMAE on streamed documents. Each micro-batch reads the next
//! `batch_size` documents, masks one random window of each (encoder 0.2 ⊂ decoder 0.4, whole
//! words), runs the encoder once on the encoder-masked text, and takes MLM + MAE at every size.
//! At the end of the stream it starts over (the next epoch); the position is
//! (epoch, shard, row group, row).

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use starbucks_data::batching::{pad, pad_labels};
use starbucks_data::fineweb::{DocumentStream, Position, Source};
use starbucks_data::masking::SmaeMasker;
use starbucks_model::{Batch, BertInput, BertModel};
use starbucks_objectives::SizeList;
use starbucks_objectives::smae::{Masked, Smae, SmaeBatch};

use crate::engine::{Micro, Task};
use crate::error::{Error, Result};

/// The encoder and the SMAE-only modules, trained together.
#[derive(Module, Debug)]
pub struct PretrainModel<B: burn::tensor::backend::Backend> {
    pub encoder: BertModel<B>,
    pub smae: Smae<B>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub epoch: u64,
    pub at: Position,
}

pub struct PretrainTask {
    pub source: Source,
    pub masker: SmaeMasker,
    pub sizes: SizeList,
    pub batch_size: usize,
    pub pad_id: u32,
    position: StreamPosition,
    stream: DocumentStream,
}

impl PretrainTask {
    pub fn new(source: Source, masker: SmaeMasker, sizes: SizeList, batch_size: usize, pad_id: u32) -> Self {
        let stream = source.stream(Position::default());
        PretrainTask { source, masker, sizes, batch_size, pad_id, position: StreamPosition::default(), stream }
    }

    /// The next document's text, starting the stream over at its end.
    fn next_text(&mut self) -> Result<String> {
        let mut restarted = false;
        loop {
            match self.stream.next() {
                Some(doc) => {
                    let doc = doc?;
                    self.position.at = self.stream.position();
                    return Ok(doc.text);
                }
                None if restarted => {
                    return Err(Error::Input("the pre-training data holds no non-empty document".into()));
                }
                None => {
                    restarted = true;
                    self.position = StreamPosition { epoch: self.position.epoch + 1, at: Position::default() };
                    tracing::info!(epoch = self.position.epoch, "the document stream starts over");
                    self.stream = self.source.stream(Position::default());
                }
            }
        }
    }
}

fn batch(padded: starbucks_data::batching::Padded) -> Batch {
    Batch {
        token_type_ids: vec![0; padded.input_ids.len()],
        input_ids: padded.input_ids,
        attention_mask: padded.attention_mask,
        batch_size: padded.batch_size,
        seq_len: padded.seq_len,
    }
}

impl<B: AutodiffBackend> Task<B> for PretrainTask {
    type Model = PretrainModel<B>;

    fn next(&mut self, model: &PretrainModel<B>, rng: &mut ChaCha8Rng) -> Result<Micro<B>> {
        let mut examples = Vec::with_capacity(self.batch_size);
        while examples.len() < self.batch_size {
            let text = self.next_text()?;
            if let Some(example) = self.masker.example(&text, rng)? {
                examples.push(example);
            }
        }
        let encoder_ids: Vec<Vec<u32>> = examples.iter().map(|e| e.encoder_input_ids.clone()).collect();
        let decoder_ids: Vec<Vec<u32>> = examples.iter().map(|e| e.decoder_input_ids.clone()).collect();
        let encoder_batch = batch(pad(&encoder_ids, self.pad_id));
        let tokens = encoder_batch.attention_mask.iter().filter(|&&m| m != 0).count();
        let device = model.encoder.devices()[0].clone();
        let encoder_input = BertInput::<B>::from_batch(&encoder_batch, &device);
        let decoder_input = BertInput::<B>::from_batch(&batch(pad(&decoder_ids, self.pad_id)), &device);
        let encoder_labels: Vec<Vec<i64>> = examples.iter().map(|e| e.encoder_labels.clone()).collect();
        let decoder_labels: Vec<Vec<i64>> = examples.iter().map(|e| e.decoder_labels.clone()).collect();
        let encoder_masked = Masked::from_labels(&pad_labels(&encoder_labels), &device);
        let decoder_masked = Masked::from_labels(&pad_labels(&decoder_labels), &device);

        let hidden = model.encoder.forward(encoder_input, self.sizes.full().layers);
        let loss = model.smae.loss(
            &model.encoder,
            &self.sizes,
            SmaeBatch {
                hidden: &hidden,
                decoder_input,
                encoder_masked: &encoder_masked,
                decoder_masked: &decoder_masked,
            },
        );
        Ok(Micro { loss, tokens })
    }

    fn position(&self) -> serde_json::Value {
        serde_json::to_value(self.position).expect("serialises")
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let position: StreamPosition = serde_json::from_value(position.clone())
            .map_err(|e| Error::Input(format!("checkpoint data position {position}: {e}")))?;
        self.stream = self.source.stream(position.at);
        self.position = position;
        Ok(())
    }

    fn encoder(model: &PretrainModel<B>) -> &BertModel<B> {
        &model.encoder
    }
}
