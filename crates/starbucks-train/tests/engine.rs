//! The engine's pieces: schedules as transformers computes them, global-norm clipping as
//! PyTorch's `clip_grad_norm_`, NaN detection, and AdamW steps that lower an SRL loss.

use burn::backend::{Autodiff, Flex};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use starbucks_model::{
    Pooling, Size,
    bert::{BertInput, BertModel},
    config::BertConfig,
    pooling::pool,
};
use starbucks_objectives::{Embeddings, LossOutput, Objective, SizeList};
use starbucks_train::checkpoint::TrainState;
use starbucks_train::engine::DataSource;
use starbucks_train::{Decay, Engine, LrSchedule, Micro, Task, adamw, clip_global_norm};
use std::sync::Mutex;

type B = Autodiff<Flex>;

#[test]
fn schedules_follow_transformers() {
    let linear = LrSchedule { peak: 1e-4, warmup_steps: 10, total_steps: 110, decay: Decay::Linear };
    for (step, want) in [(0, 0.0), (5, 5e-5), (10, 1e-4), (60, 5e-5), (110, 0.0), (200, 0.0)] {
        assert!((linear.lr(step) - want).abs() < 1e-15, "linear step {step}: {}", linear.lr(step));
    }
    let cosine = LrSchedule { decay: Decay::Cosine, ..linear };
    for (step, want) in [(5, 5e-5), (10, 1e-4), (60, 5e-5), (110, 0.0)] {
        assert!((cosine.lr(step) - want).abs() < 1e-15, "cosine step {step}: {}", cosine.lr(step));
    }
    let quarter = 1e-4 * 0.5 * (1.0 + (std::f64::consts::PI * 0.25).cos());
    assert!((cosine.lr(35) - quarter).abs() < 1e-15);
}

fn tiny() -> (BertConfig, BertModel<B>) {
    let config: BertConfig = serde_json::from_str(
        r#"{"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 32, "max_position_embeddings": 16, "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0}"#,
    )
    .unwrap();
    <B as burn::tensor::backend::Backend>::seed(&Default::default(), 3);
    let model = BertModel::new(&config, &Default::default());
    (config, model)
}

/// SRL loss of 3 random triplets (9 texts of 6 tokens) at sizes (1, 8) and (2, 16).
fn srl_loss(model: &BertModel<B>, config: &BertConfig) -> Tensor<B, 1> {
    let device = Default::default();
    let ids: Vec<i64> = (0..54).map(|i| (i * 7 + 3) % 50).collect();
    let input = BertInput {
        input_ids: Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [9, 6]), &device),
        token_type_ids: Tensor::zeros([9, 6], &device),
        attention_mask: Tensor::ones([9, 6], &device),
    };
    let mask = input.attention_mask.clone();
    let hidden = model.forward(input, 2);
    let layers = hidden.into_iter().map(|h| pool(h, mask.clone(), Pooling::Mean)).collect();
    let sizes = SizeList::new(vec![Size::new(1, 8), Size::new(2, 16)], config).unwrap();
    Objective::srl(sizes, false)
        .loss(&Embeddings::Triplets { layers, batch: 3 }, &mut ChaCha8Rng::seed_from_u64(0))
        .total
}

#[test]
fn clipping_scales_the_global_norm_and_flags_nan() {
    let (config, model) = tiny();
    let grads = GradientsParams::from_grads(srl_loss(&model, &config).backward(), &model);
    let measured = clip_global_norm(&model, grads, f64::INFINITY);
    assert!(measured.is_finite() && measured.norm > 0.0);
    let clipped = clip_global_norm(&model, measured.grads, measured.norm / 4.0);
    assert!((clipped.norm - measured.norm).abs() < 1e-9, "the norm before clipping is reported");
    let after = clip_global_norm(&model, clipped.grads, f64::INFINITY);
    assert!(
        (after.norm - measured.norm / 4.0).abs() < 1e-4 * measured.norm,
        "{} vs {}",
        after.norm,
        measured.norm / 4.0
    );

    let nan = srl_loss(&model, &config) * f32::NAN;
    let grads = GradientsParams::from_grads(nan.backward(), &model);
    assert!(!clip_global_norm(&model, grads, 1.0).is_finite());
}

#[test]
fn adamw_steps_lower_the_srl_loss() {
    let (config, mut model) = tiny();
    let mut optimizer = adamw(0.01).init::<B, BertModel<B>>();
    let value = |t: Tensor<B, 1>| t.into_data().to_vec::<f32>().unwrap()[0];
    let first = value(srl_loss(&model, &config));
    for _ in 0..20 {
        let grads = GradientsParams::from_grads(srl_loss(&model, &config).backward(), &model);
        let step = clip_global_norm(&model, grads, 1.0);
        model = optimizer.step(1e-3, model, step.grads);
    }
    let last = value(srl_loss(&model, &config));
    assert!(last < first * 0.9, "loss {first} -> {last}");
}

/// Micro-batch k is just its index.
struct Counter(usize);

impl DataSource for Counter {
    type Batch = usize;

    fn next_batch(&mut self, _rng: &mut ChaCha8Rng) -> starbucks_train::Result<usize> {
        self.0 += 1;
        Ok(self.0 - 1)
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!(self.0)
    }

    fn seek(&mut self, position: &serde_json::Value) -> starbucks_train::Result<()> {
        self.0 = position.as_u64().unwrap() as usize;
        Ok(())
    }
}

/// The loss of micro-batch k is the tiny model's SRL loss times `factor` · (1 + `per_batch` · k).
struct Scaled {
    config: BertConfig,
    factor: f32,
    per_batch: f32,
}

impl Task<B> for Scaled {
    type Model = BertModel<B>;
    type Data = Counter;

    fn loss(&self, model: &BertModel<B>, k: usize, _rng: &mut ChaCha8Rng) -> starbucks_train::Result<Micro<B>> {
        let total = srl_loss(model, &self.config) * (self.factor * (1.0 + self.per_batch * k as f32));
        Ok(Micro { loss: LossOutput { total: total.clone(), terms: vec![("srl".into(), total)] }, tokens: 54 })
    }

    fn encoder(model: &BertModel<B>) -> &BertModel<B> {
        model
    }
}

fn engine(model: BertModel<B>) -> Engine<B, BertModel<B>> {
    let schedule = LrSchedule { peak: 1e-3, warmup_steps: 0, total_steps: 100, decay: Decay::Linear };
    let state = TrainState { step: 0, skipped: 0, bad_in_row: 0, position: serde_json::Value::Null, seed: 1 };
    Engine::new(model, adamw(0.0).init(), schedule, state, Default::default())
}

fn weights(e: &Engine<B, BertModel<B>>) -> Vec<f32> {
    e.inference_model().encoder.layer[1].output.dense.weight.val().into_data().to_vec::<f32>().unwrap()
}

#[test]
fn nan_steps_are_skipped_counted_and_abort_after_the_limit() {
    let (config, model) = tiny();
    let mut engine = engine(model);
    engine.max_bad_steps = 3;
    let before = weights(&engine);
    let data = Mutex::new(Counter(0));
    let mut task = Scaled { config, factor: f32::NAN, per_batch: 0.0 };
    for step in 1..=2 {
        let report = engine.step(&task, &data).unwrap();
        assert!(!report.applied && report.step == step, "{report:?}");
    }
    assert_eq!((engine.state.skipped, engine.state.bad_in_row), (2, 2));
    assert_eq!(before, weights(&engine), "a skipped step leaves the weights alone");

    task.factor = 1.0;
    assert!(engine.step(&task, &data).unwrap().applied);
    assert_eq!((engine.state.skipped, engine.state.bad_in_row), (2, 0), "a good step resets the run of bad ones");

    task.factor = f32::NAN;
    engine.step(&task, &data).unwrap();
    engine.step(&task, &data).unwrap();
    let err = engine.step(&task, &data).unwrap_err();
    assert!(matches!(err, starbucks_train::Error::Diverged(_)), "{err}");
    assert!(err.to_string().contains("3 steps in a row"), "{err}");
}

#[test]
fn accumulated_micro_batches_average_their_gradients() {
    // Two micro-batches of the same loss accumulate to the gradient of one: the same update.
    let (config, model) = tiny();
    // Parameters are initialised lazily: read them all before cloning, or the clone draws anew.
    let _ = srl_loss(&model, &config);
    let mut once = engine(model.clone());
    let mut twice = engine(model);
    twice.grad_accum = 2;
    let task = Scaled { config, factor: 1.0, per_batch: 0.0 };
    let a = once.step(&task, &Mutex::new(Counter(0))).unwrap();
    let data = Mutex::new(Counter(0));
    let b = twice.step(&task, &data).unwrap();
    assert!((a.loss - b.loss).abs() < 1e-6 && (a.grad_norm - b.grad_norm).abs() < 1e-4 * a.grad_norm);
    assert_eq!(twice.state.position, serde_json::json!(2), "two micro-batches read");
    for (x, y) in weights(&once).iter().zip(&weights(&twice)) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
}

#[test]
fn data_parallel_peers_match_gradient_accumulation() {
    // Two peers (threads sharing the CPU device, burn's collective all-reduce between them),
    // one micro-batch each, equal one engine accumulating the same two micro-batches.
    use burn::collective::{CollectiveConfig, PeerId, register, reset_collective};
    use starbucks_train::engine::Peer;
    let (config, model) = tiny();
    let _ = srl_loss(&model, &config);
    let task = Scaled { config, factor: 1.0, per_batch: 0.5 };
    let steps = 3;

    let mut single = engine(model.clone());
    single.grad_accum = 2;
    let data = Mutex::new(Counter(0));
    let single_losses: Vec<f64> = (0..steps).map(|_| single.step(&task, &data).unwrap().loss).collect();

    reset_collective::<Flex>();
    let shared = Mutex::new(Counter(0));
    let peers: Vec<(Vec<f32>, Vec<f64>, serde_json::Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let (model, task, shared) = (model.clone(), &task, &shared);
                scope.spawn(move || {
                    let mut peer = engine(model);
                    peer.peer = Some(Peer { rank, world: 2 });
                    let config = CollectiveConfig::default().with_num_devices(2);
                    register::<Flex>(PeerId::from(rank as u32), Default::default(), config).unwrap();
                    let losses = (0..steps).map(|_| peer.step(task, shared).unwrap().loss).collect();
                    (weights(&peer), losses, peer.state.position.clone())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(peers[0].0, peers[1].0, "the replicas stay identical");
    assert_eq!(peers[0].2, serde_json::json!(6), "six micro-batches read in all");
    assert_eq!(peers[0].2, peers[1].2, "both peers record the same position");
    for (x, y) in peers[0].0.iter().zip(&weights(&single)) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    for ((a, b), c) in single_losses.iter().zip(&peers[0].1).zip(&peers[1].1) {
        assert!((a - b).abs() < 1e-5 && b == c, "losses {a} {b} {c}");
    }
}
