//! One optimiser step of SRL / 2DMSE / single-size fine-tuning on NLI triplets: tokenise the
//! batch, run the encoder once to the deepest layer the objective reads, pool every layer,
//! compute the loss, clip, and step AdamW at the schedule's learning rate, or skip the step when
//! the gradients are not finite.

use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use rand_chacha::ChaCha8Rng;
use starbucks_data::finetune::Triplet;
use starbucks_model::{BertInput, BertModel, Pooling, Tokenizer, pool};
use starbucks_objectives::{Embeddings, Objective};

use crate::optim::{LrSchedule, clip_global_norm};

/// What one step did, for logging.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub step: usize,
    pub lr: f64,
    pub loss: f64,
    /// The loss terms by name (`base(n, d)`, `kl(n, d)`, …).
    pub terms: Vec<(String, f64)>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// False when the gradients held NaN/Inf and the step was skipped.
    pub applied: bool,
    pub tokens: usize,
}

/// The state that changes from step to step.
pub struct TripletTrainer<B: AutodiffBackend> {
    pub model: BertModel<B>,
    optimizer: OptimizerAdaptor<AdamW, BertModel<B>, B>,
    pub objective: Objective,
    pub schedule: LrSchedule,
    pub max_grad_norm: f64,
    pub pooling: Pooling,
    /// Optimiser steps taken (skipped ones included).
    pub step: usize,
    /// Steps skipped for non-finite gradients.
    pub skipped: usize,
    rng: ChaCha8Rng,
}

impl<B: AutodiffBackend> TripletTrainer<B> {
    pub fn new(
        model: BertModel<B>,
        optimizer: OptimizerAdaptor<AdamW, BertModel<B>, B>,
        objective: Objective,
        schedule: LrSchedule,
        rng: ChaCha8Rng,
    ) -> Self {
        TripletTrainer {
            model,
            optimizer,
            objective,
            schedule,
            max_grad_norm: 1.0,
            pooling: Pooling::Mean,
            step: 0,
            skipped: 0,
            rng,
        }
    }

    /// One step on `triplets`: rows `[anchors; positives; negatives]`, one encoder pass.
    pub fn step(&mut self, tokenizer: &Tokenizer, triplets: &[Triplet]) -> starbucks_model::Result<StepReport> {
        let texts: Vec<&str> = triplets
            .iter()
            .map(|t| t.anchor.as_str())
            .chain(triplets.iter().map(|t| t.positive.as_str()))
            .chain(triplets.iter().map(|t| t.negative.as_str()))
            .collect();
        let batch = tokenizer.encode(&texts)?;
        let tokens = batch.attention_mask.iter().filter(|&&m| m != 0).count();
        let device = self.model.devices()[0].clone();
        let input = BertInput::<B>::from_batch(&batch, &device);
        let mask = input.attention_mask.clone();
        let layers = self.objective.layers(self.model.num_layers());
        let hidden = self.model.forward(input, layers);
        let pooled = hidden.into_iter().map(|h| pool(h, mask.clone(), self.pooling)).collect();
        let out = self.objective.loss(&Embeddings::Triplets { layers: pooled, batch: triplets.len() }, &mut self.rng);
        let scalar =
            |t: &burn::tensor::Tensor<B, 1>| t.clone().into_data().convert::<f64>().to_vec::<f64>().expect("f64")[0];
        let loss = scalar(&out.total);
        let terms = out.terms.iter().map(|(name, t)| (name.clone(), scalar(t))).collect();
        let grads = GradientsParams::from_grads(out.total.backward(), &self.model);
        let clipped = clip_global_norm(&self.model, grads, self.max_grad_norm);
        let lr = self.schedule.lr(self.step);
        let applied = clipped.is_finite() && loss.is_finite();
        if applied {
            self.model = self.optimizer.step(lr, self.model.clone(), clipped.grads);
        } else {
            self.skipped += 1;
        }
        self.step += 1;
        Ok(StepReport { step: self.step, lr, loss, terms, grad_norm: clipped.norm, applied, tokens })
    }

    /// The trained model without autodiff, for evaluation and export.
    pub fn inference_model(&self) -> BertModel<B::InnerBackend> {
        self.model.valid()
    }
}
