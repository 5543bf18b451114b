//! The engine both loops share. A [`DataSource`] yields micro-batches (plain CPU data, with a
//! saveable position); a [`Task`] turns one into a loss on a model. [`Engine::step`] accumulates
//! the gradients of `grad_accum` micro-batches, averages them with the other peers when the run
//! is data-parallel (burn's collective all-reduce), clips their global norm, and steps AdamW at
//! the schedule's learning rate — or skips the step when the gradients are not finite. Step s
//! draws its randomness (2DMSE's sizes, SMAE's masks, dropout) from (seed, s, peer) alone, so a
//! resumed single-device run repeats an uninterrupted one exactly.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use burn::collective::{PeerId, ReduceOperation, all_reduce};
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use starbucks_model::bert::BertModel;
use starbucks_objectives::LossOutput;

use crate::checkpoint::TrainState;
use crate::error::{Error, Result};
use crate::optim::{LrSchedule, clip_global_norm};

/// Where micro-batches come from: CPU-side data with a position to save and resume.
pub trait DataSource: Send {
    type Batch: Send;

    /// The next micro-batch; advances the position.
    fn next_batch(&mut self, rng: &mut ChaCha8Rng) -> Result<Self::Batch>;
    /// Where the data continues, to save in a checkpoint.
    fn position(&self) -> serde_json::Value;
    /// Continues from a saved position.
    fn seek(&mut self, position: &serde_json::Value) -> Result<()>;
}

/// One micro-batch's loss and how many (non-padding) tokens it read.
pub struct Micro<B: AutodiffBackend> {
    pub loss: LossOutput<B>,
    pub tokens: usize,
}

/// A training task: the trained module and the loss of a micro-batch on it. Shared by the
/// peers of a data-parallel run, so it holds no mutable state.
pub trait Task<B: AutodiffBackend>: Sync {
    type Model: AutodiffModule<B>;
    type Data: DataSource;

    fn loss(
        &self,
        model: &Self::Model,
        batch: <Self::Data as DataSource>::Batch,
        rng: &mut ChaCha8Rng,
    ) -> Result<Micro<B>>;
    /// The encoder inside the trained module.
    fn encoder(model: &Self::Model) -> &BertModel<B>;
}

/// What one optimiser step did, for logs and `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Steps done after this one.
    pub step: usize,
    pub lr: f64,
    /// Mean over the micro-batches (and the peers).
    pub loss: f64,
    /// Loss terms by name (`base(n, d)`, `kl(n, d)`, `mlm(n, d)`, …), means like `loss`.
    pub terms: Vec<(String, f64)>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// False when the step was skipped for NaN/Inf.
    pub applied: bool,
    /// Tokens this peer read.
    pub tokens: usize,
    /// A stop was asked for (on any peer): every peer ends the run after this step.
    pub stop: bool,
}

/// This engine's place in a data-parallel run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub rank: usize,
    pub world: usize,
}

/// The optimiser, schedule and loop state around a trained module.
pub struct Engine<B: AutodiffBackend, M: AutodiffModule<B>> {
    pub model: M,
    pub optimizer: OptimizerAdaptor<AdamW, M, B>,
    pub schedule: LrSchedule,
    pub max_grad_norm: f64,
    pub grad_accum: usize,
    pub max_bad_steps: usize,
    pub state: TrainState,
    /// Set for a data-parallel peer (registered with burn's collective beforehand).
    pub peer: Option<Peer>,
    /// Non-zero asks the run to stop after the current step (a signal's number, say).
    pub stop: Arc<AtomicUsize>,
    device: B::Device,
}

/// The seed of step `step`'s generators on peer `rank`.
fn step_seed(seed: u64, step: usize, rank: usize) -> u64 {
    seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (rank as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// The values of one-element tensors, read from the device in one transfer (detached: the
/// values are for logs, not for the graph).
fn scalars<B: AutodiffBackend>(tensors: impl Iterator<Item = Tensor<B, 1>>) -> Vec<f64> {
    let stacked = Tensor::cat(tensors.map(|t| t.inner()).collect(), 0);
    stacked.into_data().convert::<f64>().to_vec::<f64>().expect("a loss converts to f64")
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Engine<B, M> {
    pub fn new(
        model: M,
        optimizer: OptimizerAdaptor<AdamW, M, B>,
        schedule: LrSchedule,
        state: TrainState,
        device: B::Device,
    ) -> Self {
        Engine {
            model,
            optimizer,
            schedule,
            max_grad_norm: 1.0,
            grad_accum: 1,
            max_bad_steps: 10,
            state,
            peer: None,
            stop: Arc::default(),
            device,
        }
    }

    /// The mean over the peers of `values` (unchanged on a single device).
    fn mean_over_peers(&self, values: Vec<f64>) -> Result<Vec<f64>> {
        let Some(peer) = self.peer else { return Ok(values) };
        let n = values.len();
        let tensor = Tensor::<B::InnerBackend, 1>::from_data(
            TensorData::new(values.iter().map(|&v| v as f32).collect::<Vec<_>>(), [n]),
            &self.device,
        );
        let reduced = all_reduce::<B::InnerBackend>(
            PeerId::from(peer.rank as u32),
            tensor.into_primitive().tensor(),
            ReduceOperation::Mean,
        )
        .map_err(|e| Error::Parallel(format!("{e:?}")))?;
        let reduced = Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(reduced));
        Ok(reduced.into_data().convert::<f64>().to_vec::<f64>().expect("f64"))
    }

    /// One optimiser step over `grad_accum` micro-batches from `data`.
    pub fn step<T: Task<B, Model = M>>(&mut self, task: &T, data: &Mutex<T::Data>) -> Result<StepReport> {
        let rank = self.peer.map_or(0, |p| p.rank);
        let seed = step_seed(self.state.seed, self.state.step, rank);
        B::seed(&self.device, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut accumulator = GradientsAccumulator::<M>::new();
        let (mut losses, mut names, mut tokens) = (Vec::<f64>::new(), Vec::<String>::new(), 0);
        let share = 1.0 / self.grad_accum as f64;
        for _ in 0..self.grad_accum {
            let batch = data.lock().expect("no peer panics holding the data").next_batch(&mut rng)?;
            let micro = task.loss(&self.model, batch, &mut rng)?;
            tokens += micro.tokens;
            // losses[0] is the total, then the terms, each averaged over the micro-batches.
            let values =
                scalars(std::iter::once(&micro.loss.total).chain(micro.loss.terms.iter().map(|(_, t)| t)).cloned());
            let values: Vec<f64> = values.into_iter().map(|v| v * share).collect();
            if losses.is_empty() {
                losses = values;
                names = micro.loss.terms.iter().map(|(name, _)| name.clone()).collect();
            } else {
                losses.iter_mut().zip(values).for_each(|(sum, v)| *sum += v);
            }
            let total = if self.grad_accum > 1 { micro.loss.total * share } else { micro.loss.total };
            accumulator.accumulate(&self.model, GradientsParams::from_grads(total.backward(), &self.model));
        }
        let mut grads = accumulator.grads();
        if let Some(peer) = self.peer {
            grads = grads
                .all_reduce::<B::InnerBackend>(PeerId::from(peer.rank as u32), ReduceOperation::Mean)
                .map_err(|e| Error::Parallel(format!("{e:?}")))?;
        }
        // Between two all-reduces (barriers), every peer has fetched this step's micro-batches
        // and none has fetched the next step's: the position is the same on every peer.
        let position = data.lock().expect("no peer panics holding the data").position();
        // The stop request travels with the losses, so every peer agrees on the step it ends at.
        let asked = self.stop.load(Ordering::Relaxed) != 0;
        let mut losses = self.mean_over_peers(losses.into_iter().chain([f64::from(u8::from(asked))]).collect())?;
        let stop = losses.pop().is_some_and(|v| v > 0.0);
        let loss = losses[0];
        let terms: Vec<(String, f64)> = names.into_iter().zip(losses[1..].iter().copied()).collect();
        let clipped = clip_global_norm(&self.model, grads, self.max_grad_norm);
        let lr = self.schedule.lr(self.state.step);
        let applied = clipped.is_finite() && loss.is_finite();
        if applied {
            self.model = self.optimizer.step(lr, self.model.clone(), clipped.grads);
            self.state.bad_in_row = 0;
        } else {
            self.state.skipped += 1;
            self.state.bad_in_row += 1;
            if rank == 0 {
                tracing::warn!(
                    step = self.state.step + 1,
                    loss,
                    grad_norm = clipped.norm,
                    "NaN/Inf gradients: step skipped"
                );
            }
        }
        self.state.step += 1;
        self.state.position = position;
        if self.state.bad_in_row >= self.max_bad_steps {
            return Err(Error::Diverged(format!(
                "{} steps in a row had NaN/Inf gradients (step {}, loss {loss}); aborting (train.max_bad_steps = {})",
                self.state.bad_in_row, self.state.step, self.max_bad_steps
            )));
        }
        Ok(StepReport { step: self.state.step, lr, loss, terms, grad_norm: clipped.norm, applied, tokens, stop })
    }

    /// The trained module without autodiff.
    pub fn inference_model(&self) -> M::InnerModule {
        self.model.valid()
    }
}
