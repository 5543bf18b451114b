//! The fine-tuning task: NLI triplets (mean pooling, MNRL) or retrieval groups (CLS pooling,
//! query + 1 positive + k negatives), trained with SRL, 2DMSE or one size, every size read from
//! one encoder pass. [`FinetuneData`] cuts a seeded permutation per epoch into batches; its
//! position is (epoch, batch).

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use starbucks_data::batching::epoch_batches;
use starbucks_data::finetune::{Group, RetrievalExample, Triplet, sample_group, triplet_texts};
use starbucks_model::{
    Pooling,
    bert::{BertInput, BertModel},
    pooling::pool,
    tokenizer::Tokenizer,
};
use starbucks_objectives::{Embeddings, Objective};

use crate::engine::{DataSource, Micro, Task};
use crate::error::{Error, Result};

/// The training examples.
pub enum Examples {
    Triplets(Vec<Triplet>),
    /// Queries with positives and negatives; each batch samples a group of 1 + `negatives`.
    Retrieval {
        examples: Vec<RetrievalExample>,
        negatives: usize,
    },
}

impl Examples {
    pub fn len(&self) -> usize {
        match self {
            Examples::Triplets(t) => t.len(),
            Examples::Retrieval { examples, .. } => examples.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One micro-batch of text.
#[derive(Debug, Clone)]
pub enum FinetuneBatch {
    Triplets(Vec<Triplet>),
    Groups(Vec<Group>),
}

/// Where the data continues: batch `batch` of epoch `epoch`'s order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochPosition {
    pub epoch: u64,
    pub batch: usize,
}

/// The examples in seeded batches, epoch after epoch.
pub struct FinetuneData {
    pub examples: Examples,
    pub batch_size: usize,
    pub seed: u64,
    position: EpochPosition,
    order: Vec<Vec<usize>>,
}

impl FinetuneData {
    pub fn new(examples: Examples, batch_size: usize, seed: u64) -> Self {
        let order = epoch_batches(examples.len(), batch_size, seed, 0, None, false);
        FinetuneData { examples, batch_size, seed, position: EpochPosition::default(), order }
    }

    /// Micro-batches in one pass over the data.
    pub fn batches_per_epoch(&self) -> usize {
        self.examples.len().div_ceil(self.batch_size)
    }
}

impl DataSource for FinetuneData {
    type Batch = FinetuneBatch;

    fn next_batch(&mut self, _rng: &mut ChaCha8Rng) -> Result<FinetuneBatch> {
        if self.position.batch >= self.order.len() {
            self.position = EpochPosition { epoch: self.position.epoch + 1, batch: 0 };
            self.order =
                epoch_batches(self.examples.len(), self.batch_size, self.seed, self.position.epoch, None, false);
        }
        let indices = &self.order[self.position.batch];
        let epoch = self.position.epoch;
        self.position.batch += 1;
        Ok(match &self.examples {
            Examples::Triplets(triplets) => {
                FinetuneBatch::Triplets(indices.iter().map(|&i| triplets[i].clone()).collect())
            }
            Examples::Retrieval { examples, negatives } => FinetuneBatch::Groups(
                indices.iter().map(|&i| sample_group(&examples[i], *negatives, self.seed, epoch, i)).collect(),
            ),
        })
    }

    fn position(&self) -> serde_json::Value {
        serde_json::to_value(self.position).expect("serialises")
    }

    fn seek(&mut self, position: &serde_json::Value) -> Result<()> {
        let position: EpochPosition = serde_json::from_value(position.clone())
            .map_err(|e| Error::Input(format!("checkpoint data position {position}: {e}")))?;
        self.order = epoch_batches(self.examples.len(), self.batch_size, self.seed, position.epoch, None, false);
        self.position = position;
        Ok(())
    }
}

/// The loss side: tokenizers, pooling and the objective.
pub struct FinetuneTask {
    /// Tokenizes triplets, or passages for retrieval.
    pub tokenizer: Tokenizer,
    /// Tokenizes retrieval queries (their own, shorter, max length).
    pub query_tokenizer: Tokenizer,
    pub objective: Objective,
    pub pooling: Pooling,
}

/// The fixed cost of one more encoder pass, in padded tokens, when a micro-batch is split into
/// groups of similar length (`Batch::by_length`): a group is worth its own pass when it saves
/// more padding than this. Its measurement is in `docs/benchmarks.md`.
pub const LENGTH_GROUP_COST: usize = 64;

impl FinetuneTask {
    /// Every layer's pooled embeddings of `texts` up to `layers`, and the tokens read. The texts
    /// go through the encoder in groups of similar length (each padded to its own longest, so
    /// little padding is computed); the pooled rows come back in the order of `texts`.
    fn pooled<B: AutodiffBackend>(
        &self,
        model: &BertModel<B>,
        tokenizer: &Tokenizer,
        texts: &[&str],
        layers: usize,
    ) -> Result<(Vec<Tensor<B, 2>>, usize)> {
        let batch = tokenizer.encode(texts)?;
        let tokens = batch.tokens();
        let device = model.devices()[0].clone();
        let mut pooled: Vec<Vec<Tensor<B, 2>>> = (0..=layers).map(|_| Vec::new()).collect();
        let mut order = Vec::with_capacity(texts.len());
        for (rows, group) in batch.by_length(LENGTH_GROUP_COST) {
            let input = BertInput::<B>::from_batch(&group, &device);
            let mask = input.attention_mask.clone();
            for (n, hidden) in model.forward(input, layers).into_iter().enumerate() {
                pooled[n].push(pool(hidden, mask.clone(), self.pooling));
            }
            order.extend(rows);
        }
        // Row `row` of the batch sits at position `back[row]` of the concatenated groups.
        let mut back = vec![0i64; order.len()];
        for (position, &row) in order.iter().enumerate() {
            back[row] = position as i64;
        }
        let back = Tensor::<B, 1, Int>::from_data(TensorData::new(back, [order.len()]), &device);
        Ok((pooled.into_iter().map(|groups| Tensor::cat(groups, 0).select(0, back.clone())).collect(), tokens))
    }

    /// Non-padding tokens of `texts`, and the tokens (padding included) that [`Self::pooled`]
    /// computes for them.
    pub fn token_counts(&self, texts: &[&str]) -> Result<(usize, usize)> {
        let batch = self.tokenizer.encode(texts)?;
        let tokens = batch.tokens();
        let padded = batch.by_length(LENGTH_GROUP_COST).iter().map(|(_, g)| g.batch_size * g.seq_len).sum();
        Ok((tokens, padded))
    }
}

impl<B: AutodiffBackend> Task<B> for FinetuneTask {
    type Model = BertModel<B>;
    type Data = FinetuneData;

    fn loss(&self, model: &BertModel<B>, batch: FinetuneBatch, rng: &mut ChaCha8Rng) -> Result<Micro<B>> {
        let layers = self.objective.layers(model.num_layers());
        let (embeddings, tokens) = match &batch {
            FinetuneBatch::Triplets(rows) => {
                // Rows [anchors; positives; negatives], one encoder pass (in length groups).
                let texts = triplet_texts(rows);
                let (layers, tokens) = self.pooled(model, &self.tokenizer, &texts, layers)?;
                (Embeddings::Triplets { layers, batch: rows.len() }, tokens)
            }
            FinetuneBatch::Groups(groups) => {
                let queries: Vec<&str> = groups.iter().map(|g| g.query.as_str()).collect();
                let passages: Vec<&str> = groups.iter().flat_map(|g| g.passages.iter().map(String::as_str)).collect();
                let group = groups[0].passages.len();
                let (queries, q_tokens) = self.pooled(model, &self.query_tokenizer, &queries, layers)?;
                let (passages, p_tokens) = self.pooled(model, &self.tokenizer, &passages, layers)?;
                (Embeddings::Retrieval { queries, passages, group }, q_tokens + p_tokens)
            }
        };
        Ok(Micro { loss: self.objective.loss(&embeddings, rng), tokens })
    }

    fn encoder(model: &BertModel<B>) -> &BertModel<B> {
        model
    }
}
