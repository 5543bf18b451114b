//! AdamW as PyTorch configures it, learning-rate schedules, and global-norm gradient clipping.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

/// AdamW with PyTorch's defaults for β (0.9, 0.999) and eps (1e-8) — burn's own default eps is
/// 1e-5 — and the given decoupled weight decay.
pub fn adamw(weight_decay: f32) -> AdamWConfig {
    AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.999).with_epsilon(1e-8).with_weight_decay(weight_decay)
}

/// How the learning rate falls after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    /// To 0 at the last step (transformers' `get_linear_schedule_with_warmup`).
    Linear,
    /// Half a cosine to 0 (`get_cosine_schedule_with_warmup`).
    Cosine,
}

/// Linear warm-up from 0 to `peak` over `warmup_steps`, then `decay` to 0 at `total_steps`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub decay: Decay,
}

impl LrSchedule {
    /// The learning rate of optimiser step `step` (0-based), as transformers computes it.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        match self.decay {
            Decay::Linear => self.peak * (1.0 - progress),
            Decay::Cosine => self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        }
    }
}

/// One step's gradients after clipping, with the norm they had before.
pub struct StepGradients {
    pub grads: GradientsParams,
    /// The global L2 norm over every parameter's gradient, before clipping.
    pub norm: f64,
}

impl StepGradients {
    /// False when any gradient holds NaN or Inf: skip the step (count it, log it).
    pub fn is_finite(&self) -> bool {
        self.norm.is_finite()
    }
}

/// Collects the ids of the float parameters of a module, with their ranks.
struct ParamIds(Vec<(ParamId, usize)>);

impl<B: AutodiffBackend> ModuleVisitor<B> for ParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push((param.id, D));
    }
}

/// Applies `f` to each gradient of `grads` that belongs to `module`, by rank.
fn for_each_grad<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    mut f: impl FnMut(&mut GradientsParams, ParamId, usize),
) {
    let mut ids = ParamIds(Vec::new());
    module.visit(&mut ids);
    for (id, rank) in ids.0 {
        f(grads, id, rank);
    }
}

fn squared_norm<B: AutodiffBackend, const D: usize>(grads: &GradientsParams, id: ParamId) -> f64 {
    use burn::tensor::ElementConversion;
    grads.get::<B::InnerBackend, D>(id).map_or(0.0, |g| g.powi_scalar(2).sum().into_scalar().elem::<f64>())
}

fn scale<B: AutodiffBackend, const D: usize>(grads: &mut GradientsParams, id: ParamId, factor: f64) {
    if let Some(g) = grads.remove::<B::InnerBackend, D>(id) {
        grads.register::<B::InnerBackend, D>(id, g * factor);
    }
}

/// PyTorch's `clip_grad_norm_`: when the global L2 norm of all gradients exceeds `max_norm`,
/// scales every gradient by `max_norm / (norm + 1e-6)`. burn's own clipping works per parameter.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> StepGradients {
    let mut total = 0.0;
    for_each_grad(module, &mut grads, |grads, id, rank| {
        total += match rank {
            1 => squared_norm::<B, 1>(grads, id),
            2 => squared_norm::<B, 2>(grads, id),
            3 => squared_norm::<B, 3>(grads, id),
            4 => squared_norm::<B, 4>(grads, id),
            other => panic!("parameters of rank {other} are not expected in a BERT model"),
        };
    });
    let norm = total.sqrt();
    if norm.is_finite() && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for_each_grad(module, &mut grads, |grads, id, rank| match rank {
            1 => scale::<B, 1>(grads, id, factor),
            2 => scale::<B, 2>(grads, id, factor),
            3 => scale::<B, 3>(grads, id, factor),
            _ => scale::<B, 4>(grads, id, factor),
        });
    }
    StepGradients { grads, norm }
}
