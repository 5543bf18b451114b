//! The fine-tuning task: NLI triplets (mean pooling, MNRL) or retrieval groups (CLS pooling,
//! query + 1 positive + k negatives), trained with SRL, 2DMSE or one size, every size read from
//! one encoder pass. Batches are a seeded permutation per epoch; the position is (epoch, batch).

use burn::tensor::backend::AutodiffBackend;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use starbucks_data::batching::epoch_batches;
use starbucks_data::finetune::{RetrievalExample, Triplet, sample_group};
use starbucks_model::{BertInput, BertModel, Pooling, Tokenizer, pool};
use starbucks_objectives::{Embeddings, Objective};

use crate::engine::{Micro, Task};
use crate::error::{Error, Result};

/// The examples of a fine-tuning run.
pub enum FinetuneData {
    Triplets(Vec<Triplet>),
    Retrieval { examples: Vec<RetrievalExample>, negatives: usize, query_tokenizer: Box<Tokenizer> },
}

impl FinetuneData {
    pub fn len(&self) -> usize {
        match self {
            FinetuneData::Triplets(t) => t.len(),
            FinetuneData::Retrieval { examples, .. } => examples.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where the data continues: batch `batch` of epoch `epoch`'s order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochPosition {
    pub epoch: u64,
    pub batch: usize,
}

pub struct FinetuneTask {
    pub data: FinetuneData,
    /// The tokenizer of anchors/positives/negatives, or of passages for retrieval.
    pub tokenizer: Tokenizer,
    pub objective: Objective,
    pub pooling: Pooling,
    pub batch_size: usize,
    pub seed: u64,
    position: EpochPosition,
    order: Vec<Vec<usize>>,
}

impl FinetuneTask {
    pub fn new(
        data: FinetuneData,
        tokenizer: Tokenizer,
        objective: Objective,
        pooling: Pooling,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        let order = epoch_batches(data.len(), batch_size, seed, 0, None, false);
        FinetuneTask {
            data,
            tokenizer,
            objective,
            pooling,
            batch_size,
            seed,
            position: EpochPosition::default(),
            order,
        }
    }

    /// Micro-batches in one pass over the data.
    pub fn batches_per_epoch(&self) -> usize {
        self.data.len().div_ceil(self.batch_size)
    }

    fn next_indices(&mut self) -> Vec<usize> {
        if self.position.batch >= self.order.len() {
            self.position = EpochPosition { epoch: self.position.epoch + 1, batch: 0 };
            self.order = epoch_batches(self.data.len(), self.batch_size, self.seed, self.position.epoch, None, false);
        }
        let indices = self.order[self.position.batch].clone();
        self.position.batch += 1;
        indices
    }

    fn pooled<B: AutodiffBackend>(
        &self,
        model: &BertModel<B>,
        tokenizer: &Tokenizer,
        texts: &[&str],
        layers: usize,
    ) -> Result<(Vec<burn::tensor::Tensor<B, 2>>, usize)> {
        let batch = tokenizer.encode(texts)?;
        let tokens = batch.attention_mask.iter().filter(|&&m| m != 0).count();
        let device = model.devices()[0].clone();
        let input = BertInput::<B>::from_batch(&batch, &device);
        let mask = input.attention_mask.clone();
        let hidden = model.forward(input, layers);
        Ok((hidden.into_iter().map(|h| pool(h, mask.clone(), self.pooling)).collect(), tokens))
    }
}

use burn::module::Module;

impl<B: AutodiffBackend> Task<B> for FinetuneTask {
    type Model = BertModel<B>;

    fn next(&mut self, model: &BertModel<B>, rng: &mut ChaCha8Rng) -> Result<Micro<B>> {
        let epoch = self.position.epoch;
        let indices = self.next_indices();
        let layers = self.objective.layers(model.num_layers());
        let (embeddings, tokens) = match &self.data {
            FinetuneData::Triplets(triplets) => {
                let rows: Vec<&Triplet> = indices.iter().map(|&i| &triplets[i]).collect();
                let texts: Vec<&str> = rows
                    .iter()
                    .map(|t| t.anchor.as_str())
                    .chain(rows.iter().map(|t| t.positive.as_str()))
                    .chain(rows.iter().map(|t| t.negative.as_str()))
                    .collect();
                let (layers, tokens) = self.pooled(model, &self.tokenizer, &texts, layers)?;
                (Embeddings::Triplets { layers, batch: rows.len() }, tokens)
            }
            FinetuneData::Retrieval { examples, negatives, query_tokenizer } => {
                let groups: Vec<_> =
                    indices.iter().map(|&i| sample_group(&examples[i], *negatives, self.seed, epoch, i)).collect();
                let queries: Vec<&str> = groups.iter().map(|g| g.query.as_str()).collect();
                let passages: Vec<&str> = groups.iter().flat_map(|g| g.passages.iter().map(String::as_str)).collect();
                let (queries, q_tokens) = self.pooled(model, query_tokenizer, &queries, layers)?;
                let (passages, p_tokens) = self.pooled(model, &self.tokenizer, &passages, layers)?;
                (Embeddings::Retrieval { queries, passages, group: negatives + 1 }, q_tokens + p_tokens)
            }
        };
        Ok(Micro { loss: self.objective.loss(&embeddings, rng), tokens })
    }

    fn position(&self) -> serde_json::Value {
        serde_json::to_value(self.position).expect("serialises")
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let position: EpochPosition = serde_json::from_value(position.clone())
            .map_err(|e| Error::Input(format!("checkpoint data position {position}: {e}")))?;
        self.order = epoch_batches(self.data.len(), self.batch_size, self.seed, position.epoch, None, false);
        self.position = position;
        Ok(())
    }

    fn encoder(model: &BertModel<B>) -> &BertModel<B> {
        model
    }
}
