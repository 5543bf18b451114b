//! The engine both loops share: a [`Task`] turns the next micro-batch into a loss, and
//! [`Engine::step`] accumulates the gradients of `grad_accum` micro-batches, clips their global
//! norm, and steps AdamW at the schedule's learning rate — or skips the step when the gradients
//! are not finite. Step s draws its randomness (2DMSE's sizes, SMAE's masks, dropout) from
//! (seed, s) alone, so a resumed run repeats an uninterrupted one exactly.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use starbucks_model::BertModel;
use starbucks_objectives::LossOutput;

use crate::checkpoint::TrainState;
use crate::error::{Error, Result};
use crate::optim::{LrSchedule, clip_global_norm};

/// One micro-batch's loss and how many (non-padding) tokens it read.
pub struct Micro<B: AutodiffBackend> {
    pub loss: LossOutput<B>,
    pub tokens: usize,
}

/// A training task: the trained module, its data, and its loss.
pub trait Task<B: AutodiffBackend> {
    type Model: AutodiffModule<B>;

    /// The loss of the next micro-batch; advances the data position.
    fn next(&mut self, model: &Self::Model, rng: &mut ChaCha8Rng) -> Result<Micro<B>>;
    /// Where the data continues, to save in a checkpoint.
    fn position(&self) -> serde_json::Value;
    /// Continues the data from a saved position.
    fn seek(&mut self, position: &serde_json::Value) -> Result<()>;
    /// The encoder inside the trained module.
    fn encoder(model: &Self::Model) -> &BertModel<B>;
}

/// What one optimiser step did, for logs and `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Steps done after this one.
    pub step: usize,
    pub lr: f64,
    /// Mean over the micro-batches.
    pub loss: f64,
    /// Loss terms by name (`base(n, d)`, `kl(n, d)`, `mlm(n, d)`, …), means over the micro-batches.
    pub terms: Vec<(String, f64)>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// False when the step was skipped for NaN/Inf.
    pub applied: bool,
    pub tokens: usize,
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
    device: B::Device,
}

/// The seed of step `step`'s generators.
fn step_seed(seed: u64, step: usize) -> u64 {
    seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn scalar<B: AutodiffBackend>(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_data().convert::<f64>().to_vec::<f64>().expect("a loss converts to f64")[0]
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Engine<B, M> {
    pub fn new(
        model: M,
        optimizer: OptimizerAdaptor<AdamW, M, B>,
        schedule: LrSchedule,
        state: TrainState,
        device: B::Device,
    ) -> Self {
        Engine { model, optimizer, schedule, max_grad_norm: 1.0, grad_accum: 1, max_bad_steps: 10, state, device }
    }

    /// One optimiser step over `grad_accum` micro-batches of `task`.
    pub fn step<T: Task<B, Model = M>>(&mut self, task: &mut T) -> Result<StepReport> {
        let seed = step_seed(self.state.seed, self.state.step);
        B::seed(&self.device, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut accumulator = GradientsAccumulator::<M>::new();
        let (mut loss, mut terms, mut tokens) = (0.0, Vec::<(String, f64)>::new(), 0);
        let share = 1.0 / self.grad_accum as f64;
        for _ in 0..self.grad_accum {
            let micro = task.next(&self.model, &mut rng)?;
            tokens += micro.tokens;
            loss += scalar(&micro.loss.total) * share;
            for (i, (name, t)) in micro.loss.terms.iter().enumerate() {
                match terms.get_mut(i) {
                    Some((_, v)) => *v += scalar(t) * share,
                    None => terms.push((name.clone(), scalar(t) * share)),
                }
            }
            let total = if self.grad_accum > 1 { micro.loss.total * share } else { micro.loss.total };
            accumulator.accumulate(&self.model, GradientsParams::from_grads(total.backward(), &self.model));
        }
        let clipped = clip_global_norm(&self.model, accumulator.grads(), self.max_grad_norm);
        let lr = self.schedule.lr(self.state.step);
        let applied = clipped.is_finite() && loss.is_finite();
        if applied {
            self.model = self.optimizer.step(lr, self.model.clone(), clipped.grads);
            self.state.bad_in_row = 0;
        } else {
            self.state.skipped += 1;
            self.state.bad_in_row += 1;
            tracing::warn!(
                step = self.state.step + 1,
                loss,
                grad_norm = clipped.norm,
                "NaN/Inf gradients: step skipped"
            );
        }
        self.state.step += 1;
        self.state.position = task.position();
        if self.state.bad_in_row >= self.max_bad_steps {
            return Err(Error::Diverged(format!(
                "{} steps in a row had NaN/Inf gradients (step {}, loss {loss}); aborting (train.max_bad_steps = {})",
                self.state.bad_in_row, self.state.step, self.max_bad_steps
            )));
        }
        Ok(StepReport { step: self.state.step, lr, loss, terms, grad_norm: clipped.norm, applied, tokens })
    }

    /// The trained module without autodiff.
    pub fn inference_model(&self) -> M::InnerModule {
        self.model.valid()
    }
}
