//! Finite-difference gradient checks of every loss, 2DMSE sampling statistics, size lists.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use starbucks_model::{Size, config::BertConfig};
use starbucks_objectives::losses::{cosent, kl_div_temperature, kl_divergence, mnrl, retrieval_ce, scores};
use starbucks_objectives::{Mse2dConfig, SizeList, SizeListError};

type B = Autodiff<Flex>;

fn values(t: Tensor<B, 2>) -> (Vec<f32>, [usize; 2]) {
    let dims = t.dims();
    (t.into_data().to_vec::<f32>().unwrap(), dims)
}

fn tensor(v: &[f32], dims: [usize; 2]) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(v.to_vec(), dims), &Default::default())
}

/// Compares autodiff gradients of `f` at `x` with central differences (step 1e-2, f32).
fn gradient_check(name: &str, x: Tensor<B, 2>, f: impl Fn(Tensor<B, 2>) -> Tensor<B, 1>) {
    let (base, dims) = values(x.clone());
    let leaf = tensor(&base, dims).require_grad();
    let grads = f(leaf.clone()).backward();
    let analytic = leaf.grad(&grads).expect("gradient").into_data().to_vec::<f32>().unwrap();
    let eval = |v: &[f32]| f(tensor(v, dims)).into_data().to_vec::<f32>().unwrap()[0] as f64;
    let h = 1e-2f32;
    let scale = analytic.iter().fold(0f32, |m, g| m.max(g.abs())).max(1e-3);
    for i in 0..base.len() {
        let (mut plus, mut minus) = (base.clone(), base.clone());
        plus[i] += h;
        minus[i] -= h;
        let numeric = ((eval(&plus) - eval(&minus)) / (2.0 * h as f64)) as f32;
        assert!(
            (numeric - analytic[i]).abs() <= 2e-2 * scale,
            "{name}[{i}]: numeric {numeric}, autodiff {}",
            analytic[i]
        );
    }
}

fn random(rows: usize, cols: usize, seed: u64) -> Tensor<B, 2> {
    <B as burn::tensor::backend::Backend>::seed(&Default::default(), seed);
    Tensor::random([rows, cols], Distribution::Normal(0.0, 1.0), &Default::default())
}

#[test]
fn every_loss_has_the_gradient_of_its_value() {
    let x = random(9, 6, 1);
    gradient_check("mnrl", x.clone(), |e| mnrl(e.clone().narrow(0, 0, 3), e.narrow(0, 3, 6), 20.0 / 10.0));
    let labels: Tensor<B, 1> =
        Tensor::from_data(TensorData::new(vec![0.5f32, 3.0, 3.0, 1.0], [4]), &Default::default());
    gradient_check("cosent", random(8, 5, 2), |e| {
        cosent(e.clone().narrow(0, 0, 4), e.narrow(0, 4, 4), labels.clone(), 2.0)
    });
    gradient_check("retrieval_ce", random(2 + 2 * 3, 4, 3), |e| {
        retrieval_ce(scores(e.clone().narrow(0, 0, 2), e.narrow(0, 2, 6)), 3)
    });
    gradient_check("kl (both sides)", random(6, 5, 4), |e| {
        kl_divergence(e.clone().narrow(0, 0, 3), e.narrow(0, 3, 3), false)
    });
    gradient_check("kl with temperature", random(6, 5, 5), |e| {
        kl_div_temperature(e.clone().narrow(0, 0, 3), e.narrow(0, 3, 3), 0.3)
    });
}

#[test]
fn a_detached_teacher_gets_no_gradient() {
    let teacher = random(3, 4, 6).require_grad();
    let student = random(3, 4, 7).require_grad();
    let grads = kl_divergence(teacher.clone(), student.clone(), true).backward();
    assert!(teacher.grad(&grads).is_none());
    assert!(student.grad(&grads).is_some());
}

#[test]
fn mse2d_draws_are_seeded_and_uniform() {
    let config = Mse2dConfig::new(vec![384, 256, 128, 64, 32]);
    let draws = |seed| {
        (0..10_000)
            .map(|_| ())
            .scan(ChaCha8Rng::seed_from_u64(seed), |rng, _| Some(config.draw(6, rng)))
            .collect::<Vec<_>>()
    };
    let a = draws(42);
    assert_eq!(a, draws(42));
    assert_ne!(a, draws(43));
    // Chi-square goodness of fit against uniform: layers 1..=5, dims 5 values each (df = 4).
    // The 0.1 % critical value of chi-square with 4 degrees of freedom is 18.47.
    let chi2 = |counts: Vec<usize>| {
        let expected = 10_000.0 / counts.len() as f64;
        counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum::<f64>()
    };
    let layer_counts: Vec<usize> = (1..=5).map(|l| a.iter().filter(|d| d.layer == l).count()).collect();
    assert_eq!(layer_counts.iter().sum::<usize>(), 10_000, "layers are drawn from 1..N-1 only");
    for counts in [
        layer_counts,
        config.dims.iter().map(|&d| a.iter().filter(|x| x.last_dims == d).count()).collect(),
        config.dims.iter().map(|&d| a.iter().filter(|x| x.layer_dims == d).count()).collect(),
    ] {
        assert!(chi2(counts.clone()) < 18.47, "{counts:?}");
    }
    // The two dims are drawn independently: equal about 1/5 of the time.
    let same = a.iter().filter(|d| d.last_dims == d.layer_dims).count() as f64 / 10_000.0;
    assert!((same - 0.2).abs() < 0.02, "{same}");
}

#[test]
fn misconfigured_size_lists_are_clear_errors() {
    let config: BertConfig =
        serde_json::from_str(r#"{"vocab_size": 30522, "intermediate_size": 1536, "num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12}"#).unwrap();
    let list = |s: &str| SizeList::new(Size::parse_list(s).unwrap(), &config);
    assert!(list("1,32 2,64 3,96 4,128 5,256 6,384").is_ok());
    // Crossed pairs are allowed, ordered by layers then dims.
    assert!(list("1,32 1,384 2,64 6,32 6,384").is_ok());
    assert_eq!(list("1,384 1,32 6,384"), Err(SizeListError::Unsorted(Size::new(1, 32), Size::new(1, 384))));
    assert_eq!(list(""), Err(SizeListError::Empty));
    assert_eq!(list("2,64 1,32 6,384"), Err(SizeListError::Unsorted(Size::new(1, 32), Size::new(2, 64))));
    assert_eq!(list("1,32 1,32 6,384"), Err(SizeListError::Duplicate(Size::new(1, 32))));
    assert!(matches!(list("1,32 7,384"), Err(SizeListError::TooLarge { .. })));
    assert!(matches!(list("1,32 6,512"), Err(SizeListError::TooLarge { .. })));
    assert!(matches!(list("1,32 5,256"), Err(SizeListError::NotFull { .. })));
    let message = list("2,64 1,32 6,384").unwrap_err().to_string();
    assert!(message.contains("(1, 32)") && message.contains("(2, 64)"), "{message}");
}

#[test]
fn the_smae_decoder_starts_as_layer_0_with_parameters_of_its_own() {
    use burn::module::{Module, ModuleVisitor, Param, ParamId};
    use starbucks_model::bert::BertModel;
    use starbucks_objectives::smae::{MlmHead, Smae};

    struct Ids(Vec<(ParamId, Vec<f32>)>);
    impl ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push((param.id, param.val().into_data().to_vec::<f32>().unwrap()));
        }
    }
    let config: BertConfig = serde_json::from_str(
        r#"{"vocab_size": 20, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 8}"#,
    )
    .unwrap();
    let device = Default::default();
    let encoder = BertModel::<B>::new(&config, &device);
    let smae = Smae::new(&encoder, MlmHead::new(&config, &device));
    let (mut layer0, mut decoder) = (Ids(vec![]), Ids(vec![]));
    encoder.encoder.layer[0].visit(&mut layer0);
    smae.decoder.visit(&mut decoder);
    assert_eq!(layer0.0.len(), decoder.0.len());
    for ((id_a, a), (id_b, b)) in layer0.0.iter().zip(&decoder.0) {
        assert_ne!(id_a, id_b, "the decoder must not share parameter ids with layer 0");
        assert_eq!(a, b, "the decoder starts from layer 0's weights");
    }
}
