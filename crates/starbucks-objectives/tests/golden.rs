//! Every loss and its gradients against PyTorch (tests/reference/objectives_golden.py):
//! values and gradients with respect to the input embeddings match to 1e-5 relative.

use std::collections::HashMap;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::SafeTensors;
use starbucks_model::{
    Size,
    bert::{BertInput, BertLayer, BertModel},
    config::BertConfig,
    weights::load_module,
};
use starbucks_objectives::losses::{kl_divergence, mnrl};
use starbucks_objectives::smae::{Masked, MlmHead, Smae, SmaeBatch};
use starbucks_objectives::{
    Embeddings, LossOutput, Mse2dConfig, Mse2dDraw, Objective, SizeList, SrlWeights, labels, mse2d,
};

type B = Autodiff<Flex>;

struct Fixture {
    bytes: Vec<u8>,
    cases: HashMap<String, serde_json::Value>,
}

impl Fixture {
    fn load() -> Self {
        let path = format!(
            "{}/../../tests/fixtures/objectives_golden.safetensors",
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(path).expect("fixture present");
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let cases = serde_json::from_str(&meta.metadata().as_ref().unwrap()["cases"]).unwrap();
        Fixture { bytes, cases }
    }

    fn f64s(&self, name: &str) -> (Vec<f64>, Vec<usize>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let view = st.tensor(name).unwrap_or_else(|_| panic!("fixture has no {name}"));
        let data = view.data();
        let values = match view.dtype() {
            safetensors::Dtype::F32 => {
                data.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
            }
            safetensors::Dtype::F64 => data.chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
            safetensors::Dtype::I64 => {
                data.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect()
            }
            other => panic!("{name}: {other:?}"),
        };
        (values, view.shape().to_vec())
    }

    fn tensor<const D: usize>(&self, name: &str) -> Tensor<B, D> {
        let (values, shape) = self.f64s(name);
        let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    fn ints<const D: usize>(&self, name: &str) -> Tensor<B, D, Int> {
        let (values, shape) = self.f64s(name);
        Tensor::from_data(
            TensorData::new(values.iter().map(|&v| v as i64).collect::<Vec<_>>(), shape),
            &Default::default(),
        )
    }

    fn leaves(&self, case: &str, prefix: &str, count: usize) -> Vec<Tensor<B, 2>> {
        (0..count).map(|n| self.tensor::<2>(&format!("{case}/{prefix}{n}")).require_grad()).collect()
    }

    fn scalar(&self, name: &str) -> f64 {
        self.f64s(name).0[0]
    }
}

fn value(t: &Tensor<B, 1>) -> f64 {
    t.clone().into_data().convert::<f64>().to_vec::<f64>().unwrap()[0]
}

fn assert_close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-5 * want.abs().max(1e-6), "{what}: got {got}, want {want}");
}

/// Values ‖got − want‖∞ ≤ 1e-5 · ‖want‖∞ (relative to the gradient's scale).
fn assert_grad(got: Option<Tensor<<B as AutodiffBackend>::InnerBackend, 2>>, want: (Vec<f64>, Vec<usize>), what: &str) {
    let scale = want.0.iter().fold(0f64, |m, v| m.max(v.abs()));
    let Some(got) = got else {
        assert!(scale == 0.0, "{what}: no gradient, expected one of scale {scale}");
        return;
    };
    let got = got.into_data().convert::<f64>().to_vec::<f64>().unwrap();
    let worst = got.iter().zip(&want.0).map(|(g, w)| (g - w).abs()).fold(0f64, f64::max);
    assert!(worst <= 1e-5 * scale.max(1e-8), "{what}: max |Δ| {worst} for scale {scale}");
}

fn check(fixture: &Fixture, case: &str, out: &LossOutput<B>, leaves: &[(&str, &[Tensor<B, 2>])]) {
    assert_close(value(&out.total), fixture.scalar(&format!("{case}/total")), &format!("{case} total"));
    let names: Vec<String> = serde_json::from_value(fixture.cases[case].clone()).unwrap();
    assert_eq!(out.terms.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), names, "{case} terms");
    for (name, t) in &out.terms {
        assert_close(value(t), fixture.scalar(&format!("{case}/term/{name}")), &format!("{case} {name}"));
    }
    let grads = out.total.backward();
    for (prefix, group) in leaves {
        for (n, leaf) in group.iter().enumerate() {
            assert_grad(
                leaf.grad(&grads),
                fixture.f64s(&format!("{case}/grad_{prefix}{n}")),
                &format!("{case} d/d{prefix}{n}"),
            );
        }
    }
}

fn minilm_sizes() -> SizeList {
    let config: BertConfig =
        serde_json::from_str(r#"{"vocab_size": 30522, "intermediate_size": 1536, "num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12}"#).unwrap();
    SizeList::new(Size::parse_list("1,32 2,64 3,96 4,128 5,256 6,384").unwrap(), &config).unwrap()
}

#[test]
fn srl_sts_matches_pytorch() {
    let fixture = Fixture::load();
    for batch in [2, 5] {
        let case = format!("srl_sts_b{batch}");
        let layers = fixture.leaves(&case, "layer", 7);
        let embeddings = Embeddings::Triplets { layers: layers.clone(), batch };
        let out = Objective::srl(minilm_sizes(), false).loss(&embeddings, &mut ChaCha8Rng::seed_from_u64(0));
        check(&fixture, &case, &out, &[("layer", &layers)]);
    }
}

#[test]
fn a_detached_kl_teacher_changes_the_gradients_and_matches_pytorch() {
    let fixture = Fixture::load();
    let sizes = minilm_sizes();
    for batch in [2, 5] {
        let case = format!("srl_sts_detached_b{batch}");
        let layers = fixture.leaves(&case, "layer", 7);
        let full = sizes.full();
        let mut terms = Vec::new();
        let mut total: Option<Tensor<B, 1>> = None;
        for &size in sizes.sizes() {
            let e = layers[size.layers].clone().narrow(1, 0, size.dims);
            let base = mnrl(e.clone().narrow(0, 0, batch), e.clone().narrow(0, batch, 2 * batch), 20.0);
            total = Some(total.map_or(base.clone(), |t| t + base.clone()));
            terms.push((format!("base{size}"), base));
            if size != full {
                let kl = kl_divergence(layers[full.layers].clone().narrow(1, 0, size.dims), e, true);
                total = Some(total.unwrap() + kl.clone() * 0.3);
                terms.push((format!("kl{size}"), kl));
            }
        }
        let out = LossOutput { total: total.unwrap(), terms };
        check(&fixture, &case, &out, &[("layer", &layers)]);
        // Same inputs as the non-detached case: the full layer's gradient differs, the others agree.
        let (detached, _) = fixture.f64s(&format!("{case}/grad_layer6"));
        let (attached, _) = fixture.f64s(&format!("srl_sts_b{batch}/grad_layer6"));
        assert!(detached.iter().zip(&attached).any(|(a, b)| (a - b).abs() > 1e-4));
        let (d1, _) = fixture.f64s(&format!("{case}/grad_layer1"));
        let (a1, _) = fixture.f64s(&format!("srl_sts_b{batch}/grad_layer1"));
        assert!(d1.iter().zip(&a1).all(|(a, b)| (a - b).abs() < 1e-12));
    }
}

#[test]
fn srl_with_cosent_matches_pytorch() {
    let fixture = Fixture::load();
    for batch in [2, 5] {
        let case = format!("srl_cosent_b{batch}");
        let layers = fixture.leaves(&case, "layer", 7);
        let (gold, _) = fixture.f64s(&format!("{case}/labels"));
        let gold: Vec<f32> = gold.iter().map(|&v| v as f32).collect();
        let embeddings = Embeddings::Scored { layers: layers.clone(), labels: labels::<B>(&gold, &Default::default()) };
        let out = Objective::srl(minilm_sizes(), false).loss(&embeddings, &mut ChaCha8Rng::seed_from_u64(0));
        check(&fixture, &case, &out, &[("layer", &layers)]);
    }
}

#[test]
fn srl_retrieval_matches_pytorch() {
    let fixture = Fixture::load();
    for batch in [2, 5] {
        let case = format!("srl_retrieval_b{batch}");
        let queries = fixture.leaves(&case, "query", 7);
        let passages = fixture.leaves(&case, "passage", 7);
        let embeddings = Embeddings::Retrieval { queries: queries.clone(), passages: passages.clone(), group: 8 };
        let out = Objective::srl(minilm_sizes(), true).loss(&embeddings, &mut ChaCha8Rng::seed_from_u64(0));
        check(&fixture, &case, &out, &[("query", &queries), ("passage", &passages)]);
    }
}

/// SRL-deep with weights other than 1 (symmetric 0.5, deep 2.0; KL 0.3, 0.7 for retrieval), in
/// the three flavours.
#[test]
fn srl_deep_matches_pytorch() {
    srl_deep_cases("srl_deep", false);
}

/// The same with the deep terms' full-depth side detached: the gradients of the layer-6
/// embeddings lose the deep terms' share.
#[test]
fn srl_deep_detached_matches_pytorch() {
    srl_deep_cases("srl_deep_detached", true);
}

fn srl_deep_cases(prefix: &str, deep_detached: bool) {
    let fixture = Fixture::load();
    let objective = |kl| Objective::SrlDeep {
        sizes: minilm_sizes(),
        weights: SrlWeights { symmetric: 0.5, deep: 2.0, kl, deep_detached },
    };
    let rng = &mut ChaCha8Rng::seed_from_u64(0);

    let case = &format!("{prefix}_sts_b4");
    let layers = fixture.leaves(case, "layer", 7);
    let out = objective(0.3).loss(&Embeddings::Triplets { layers: layers.clone(), batch: 4 }, rng);
    check(&fixture, case, &out, &[("layer", &layers)]);

    let case = &format!("{prefix}_cosent_b4");
    let layers = fixture.leaves(case, "layer", 7);
    let gold: Vec<f32> = fixture.f64s(&format!("{case}/labels")).0.iter().map(|&v| v as f32).collect();
    let embeddings = Embeddings::Scored { layers: layers.clone(), labels: labels::<B>(&gold, &Default::default()) };
    check(&fixture, case, &objective(0.3).loss(&embeddings, rng), &[("layer", &layers)]);

    let case = &format!("{prefix}_retrieval_b3");
    let (queries, passages) = (fixture.leaves(case, "query", 7), fixture.leaves(case, "passage", 7));
    let embeddings = Embeddings::Retrieval { queries: queries.clone(), passages: passages.clone(), group: 8 };
    check(&fixture, case, &objective(0.7).loss(&embeddings, rng), &[("query", &queries), ("passage", &passages)]);
}

/// SRL-deep with the deep family weighed 0 and the symmetric 1 is SRL, term for term.
#[test]
fn srl_deep_without_its_deep_terms_is_srl() {
    let fixture = Fixture::load();
    let case = "srl_sts_b5";
    let layers = fixture.leaves(case, "layer", 7);
    let embeddings = Embeddings::Triplets { layers, batch: 5 };
    let rng = &mut ChaCha8Rng::seed_from_u64(0);
    let srl = Objective::srl(minilm_sizes(), false).loss(&embeddings, rng);
    let weights = SrlWeights { symmetric: 1.0, deep: 0.0, kl: 0.3, deep_detached: false };
    let deep = Objective::SrlDeep { sizes: minilm_sizes(), weights }.loss(&embeddings, rng);
    assert_eq!(value(&srl.total), value(&deep.total));
    let names = |out: &LossOutput<B>| out.terms.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&srl), names(&deep));
}

#[test]
fn mse2d_matches_pytorch_for_fixed_draws() {
    let fixture = Fixture::load();
    for (case, batch) in [("mse2d_a", 3), ("mse2d_b", 4)] {
        let draw: Vec<usize> = serde_json::from_value(fixture.cases[&format!("{case}/draw")].clone()).unwrap();
        let draw = Mse2dDraw { last_dims: draw[0], layer: draw[1], layer_dims: draw[2] };
        let layers = fixture.leaves(case, "layer", 7);
        let embeddings = Embeddings::Triplets { layers: layers.clone(), batch };
        let out = mse2d(&Mse2dConfig::new(vec![384, 256, 128, 64, 32]), draw, &embeddings);
        check(&fixture, case, &out, &[("layer", &layers)]);
    }
}

#[test]
fn smae_matches_pytorch_with_masked_only_logits() {
    let fixture = Fixture::load();
    let case = "smae_b3";
    let config: BertConfig = serde_json::from_value(fixture.cases[&format!("{case}/config")].clone()).unwrap();
    // The tiny model's weights, HF names, in a file of their own.
    let st = SafeTensors::deserialize(&fixture.bytes).unwrap();
    let prefix = format!("{case}/weights/");
    let weights: Vec<(String, safetensors::tensor::TensorView)> =
        st.tensors().into_iter().filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v))).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.safetensors");
    safetensors::serialize_to_file(weights, None, &path).unwrap();

    let device = Default::default();
    let (encoder, _) = BertModel::<B>::from_safetensors(&config, &path, &device).unwrap();
    let mut smae = Smae::new(&encoder, load_module(MlmHead::new(&config, &device), &path, "cls.predictions.").unwrap());
    smae.decoder = load_module(BertLayer::new(&config, &device), &path, "decoder.").unwrap();

    let hidden: Vec<Tensor<B, 3>> =
        (0..4).map(|n| fixture.tensor::<3>(&format!("{case}/hidden{n}")).require_grad()).collect();
    let mask = fixture.tensor::<2>(&format!("{case}/attention_mask"));
    let ids = fixture.ints::<2>(&format!("{case}/decoder_input_ids"));
    let decoder_input = BertInput { token_type_ids: ids.zeros_like(), input_ids: ids, attention_mask: mask };
    let label_vec =
        |name: &str| fixture.f64s(&format!("{case}/{name}")).0.iter().map(|&v| v as i64).collect::<Vec<_>>();
    let encoder_masked = Masked::from_labels(&label_vec("encoder_labels"), &device);
    let decoder_masked = Masked::from_labels(&label_vec("decoder_labels"), &device);
    let sizes = SizeList::new(Size::parse_list("1,8 2,16 3,32").unwrap(), &config).unwrap();
    let batch =
        SmaeBatch { hidden: &hidden, decoder_input, encoder_masked: &encoder_masked, decoder_masked: &decoder_masked };
    let out = smae.loss(&encoder, &sizes, batch);

    assert_close(value(&out.total), fixture.scalar(&format!("{case}/total")), "smae total");
    for (name, t) in &out.terms {
        assert_close(value(t), fixture.scalar(&format!("{case}/term/{name}")), name);
    }
    let grads = out.total.backward();
    for (n, h) in hidden.iter().enumerate() {
        let want = fixture.f64s(&format!("{case}/grad_hidden{n}"));
        let got = h.grad(&grads).map(|g| g.reshape([want.1[0] * want.1[1], want.1[2]]));
        assert_grad(got, (want.0, vec![]), &format!("smae d/dhidden{n}"));
    }
}
