//! The engine's pieces: schedules as transformers computes them, global-norm clipping as
//! PyTorch's `clip_grad_norm_`, NaN detection, and AdamW steps that lower an SRL loss.

use burn::backend::{Autodiff, Flex};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use starbucks_model::{BertConfig, BertInput, BertModel, Pooling, Size, pool};
use starbucks_objectives::{Embeddings, LossOutput, Objective, SizeList};
use starbucks_train::checkpoint::TrainState;
use starbucks_train::{Decay, Engine, LrSchedule, Micro, Task, adamw, clip_global_norm};

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

/// A task whose every loss is the SRL loss of the tiny model times `factor` (NaN to diverge).
struct Scaled {
    config: BertConfig,
    factor: f32,
    served: usize,
}

impl Task<B> for Scaled {
    type Model = BertModel<B>;

    fn next(&mut self, model: &BertModel<B>, _rng: &mut ChaCha8Rng) -> starbucks_train::Result<Micro<B>> {
        self.served += 1;
        let total = srl_loss(model, &self.config) * self.factor;
        Ok(Micro { loss: LossOutput { total: total.clone(), terms: vec![("srl".into(), total)] }, tokens: 54 })
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!(self.served)
    }

    fn seek(&mut self, position: &serde_json::Value) -> starbucks_train::Result<()> {
        self.served = position.as_u64().unwrap() as usize;
        Ok(())
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

#[test]
fn nan_steps_are_skipped_counted_and_abort_after_the_limit() {
    let (config, model) = tiny();
    let mut engine = engine(model);
    engine.max_bad_steps = 3;
    let before = engine.inference_model().encoder.layer[0].output.dense.weight.val().into_data();
    let mut task = Scaled { config, factor: f32::NAN, served: 0 };
    for step in 1..=2 {
        let report = engine.step(&mut task).unwrap();
        assert!(!report.applied && report.step == step, "{report:?}");
    }
    assert_eq!((engine.state.skipped, engine.state.bad_in_row), (2, 2));
    let after = engine.inference_model().encoder.layer[0].output.dense.weight.val().into_data();
    assert_eq!(before, after, "a skipped step leaves the weights alone");

    task.factor = 1.0;
    assert!(engine.step(&mut task).unwrap().applied);
    assert_eq!((engine.state.skipped, engine.state.bad_in_row), (2, 0), "a good step resets the run of bad ones");

    task.factor = f32::NAN;
    engine.step(&mut task).unwrap();
    engine.step(&mut task).unwrap();
    let err = engine.step(&mut task).unwrap_err();
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
    let a = once.step(&mut Scaled { config: config.clone(), factor: 1.0, served: 0 }).unwrap();
    let b = twice.step(&mut Scaled { config, factor: 1.0, served: 0 }).unwrap();
    assert!((a.loss - b.loss).abs() < 1e-6 && (a.grad_norm - b.grad_norm).abs() < 1e-4 * a.grad_norm);
    assert_eq!(twice.state.position, serde_json::json!(2), "two micro-batches read");
    let w = |e: &Engine<B, BertModel<B>>| {
        e.inference_model().encoder.layer[1].output.dense.weight.val().into_data().to_vec::<f32>().unwrap()
    };
    for (x, y) in w(&once).iter().zip(&w(&twice)) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
}
