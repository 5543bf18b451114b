//! The pre-training task: SMAE on streamed documents. [`PretrainData`] reads the next
//! `batch_size` documents and masks one random window of each (encoder 0.2 ⊂ decoder 0.4, whole
//! words); at the end of the stream it starts over (the next epoch); its position is
//! (epoch, shard, row group, row). [`PretrainTask`] runs the encoder once on the encoder-masked
//! text and takes MLM + MAE at every size; [`MlmTask`] is plain BERT MLM on the same data, the
//! baseline `starbucks bench` times SMAE against.

use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use starbucks_data::batching::pad_labels;
use starbucks_data::fineweb::{DocumentStream, Position, Source};
use starbucks_data::masking::{PretrainExample, SmaeMasker};
use starbucks_model::{
    bert::{BertInput, BertModel},
    tokenizer::Batch,
};
use starbucks_objectives::losses::cross_entropy;
use starbucks_objectives::smae::{Masked, Smae, SmaeBatch};
use starbucks_objectives::{LossOutput, SizeList};

use crate::engine::{DataSource, Micro, Task};
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

/// Documents streamed epoch after epoch, masked into SMAE examples.
pub struct PretrainData {
    pub source: Source,
    pub masker: SmaeMasker,
    pub batch_size: usize,
    position: StreamPosition,
    stream: DocumentStream,
}

impl PretrainData {
    pub fn new(source: Source, masker: SmaeMasker, batch_size: usize) -> Self {
        let stream = source.stream(Position::default());
        PretrainData { source, masker, batch_size, position: StreamPosition::default(), stream }
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

impl DataSource for PretrainData {
    type Batch = Vec<PretrainExample>;

    fn next_batch(&mut self, rng: &mut ChaCha8Rng) -> Result<Vec<PretrainExample>> {
        let mut examples = Vec::with_capacity(self.batch_size);
        while examples.len() < self.batch_size {
            let text = self.next_text()?;
            if let Some(example) = self.masker.example(&text, rng)? {
                examples.push(example);
            }
        }
        Ok(examples)
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
}

/// The loss side: the size list and the padding id.
pub struct PretrainTask {
    pub sizes: SizeList,
    pub pad_id: u32,
}

/// One pre-training micro-batch on the device: the encoder-masked and the decoder-masked input
/// (same padding) and their masked positions.
pub struct SmaeInputs<B: Backend> {
    pub encoder_input: BertInput<B>,
    pub decoder_input: BertInput<B>,
    pub encoder_masked: Masked<B>,
    pub decoder_masked: Masked<B>,
    /// Non-padding tokens.
    pub tokens: usize,
}

/// Pads `examples` into device tensors.
pub fn smae_inputs<B: Backend>(examples: &[PretrainExample], pad_id: u32, device: &B::Device) -> SmaeInputs<B> {
    // Each row goes from the examples into its padded batch once, then to the device.
    let ids =
        |f: fn(&PretrainExample) -> &Vec<u32>| -> Vec<&[u32]> { examples.iter().map(|e| f(e).as_slice()).collect() };
    let labels = |f: fn(&PretrainExample) -> &Vec<i64>| -> Vec<i64> {
        pad_labels(&examples.iter().map(|e| f(e).as_slice()).collect::<Vec<_>>())
    };
    let encoder_batch = Batch::from_ids(&ids(|e| &e.encoder_input_ids), pad_id);
    let decoder_batch = Batch::from_ids(&ids(|e| &e.decoder_input_ids), pad_id);
    let tokens = encoder_batch.tokens();
    SmaeInputs {
        encoder_input: BertInput::from_batch(&encoder_batch, device),
        decoder_input: BertInput::from_batch(&decoder_batch, device),
        encoder_masked: Masked::from_labels(&labels(|e| &e.encoder_labels), device),
        decoder_masked: Masked::from_labels(&labels(|e| &e.decoder_labels), device),
        tokens,
    }
}

impl<B: AutodiffBackend> Task<B> for PretrainTask {
    type Model = PretrainModel<B>;
    type Data = PretrainData;

    fn loss(
        &self,
        model: &PretrainModel<B>,
        examples: Vec<PretrainExample>,
        _rng: &mut ChaCha8Rng,
    ) -> Result<Micro<B>> {
        let device = model.encoder.devices()[0].clone();
        let inputs = smae_inputs::<B>(&examples, self.pad_id, &device);
        let hidden = model.encoder.forward(inputs.encoder_input, self.sizes.full().layers);
        let loss = model.smae.loss(
            &model.encoder,
            &self.sizes,
            SmaeBatch {
                hidden: &hidden,
                decoder_input: inputs.decoder_input,
                encoder_masked: &inputs.encoder_masked,
                decoder_masked: &inputs.decoder_masked,
            },
        );
        Ok(Micro { loss, tokens: inputs.tokens })
    }

    fn encoder(model: &PretrainModel<B>) -> &BertModel<B> {
        &model.encoder
    }
}

/// Plain MLM: the encoder's last layer at the full width through the SMAE head, at the
/// encoder-masked positions only. The decoder is not used.
pub struct MlmTask {
    pub pad_id: u32,
}

impl<B: AutodiffBackend> Task<B> for MlmTask {
    type Model = PretrainModel<B>;
    type Data = PretrainData;

    fn loss(
        &self,
        model: &PretrainModel<B>,
        examples: Vec<PretrainExample>,
        _rng: &mut ChaCha8Rng,
    ) -> Result<Micro<B>> {
        let device = model.encoder.devices()[0].clone();
        let inputs = smae_inputs::<B>(&examples, self.pad_id, &device);
        let layers = model.encoder.num_layers();
        let hidden = model.encoder.forward(inputs.encoder_input, layers);
        let head = &model.smae.head;
        let logits = head.logits(
            head.transform(inputs.encoder_masked.gather(hidden[layers].clone())),
            model.encoder.embeddings.word_embeddings.weight.val(),
        );
        let total = cross_entropy(logits, inputs.encoder_masked.targets.clone());
        Ok(Micro { loss: LossOutput { total, terms: Vec::new() }, tokens: inputs.tokens })
    }

    fn encoder(model: &PretrainModel<B>) -> &BertModel<B> {
        &model.encoder
    }
}
