//! The CPU encoder (what `Embedder` runs on the flex backend) against the burn model it is
//! copied from, and its int8 and bf16 paths against f32 on the shipped STS-B test.

use burn::tensor::Tensor;
use starbucks_data::eval::read_stsb;
use starbucks_eval::sts;
use starbucks_kernels::simd::{Tier, with_tier};
use starbucks_model::{
    Embedder, Pooling, Precision, Size,
    bert::BertInput,
    pooling::{normalize, normalize_vector, pool},
};
use starbucks_tests::{TestBackend, max_abs_diff, minilm_dir, workspace_root};

fn embedder() -> Embedder<TestBackend> {
    Embedder::<TestBackend>::from_pretrained(minilm_dir(), &Default::default()).unwrap()
}

fn sentences() -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join("tests/reference/sentences.txt")).unwrap();
    text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

/// Every layer pooled by burn's own forward pass of the embedder's model (padded batch).
fn burn_pooled(embedder: &Embedder<TestBackend>, texts: &[String], pooling: Pooling) -> Vec<Vec<f32>> {
    let batch = embedder.tokenizer().encode(texts).unwrap();
    let input = BertInput::<TestBackend>::from_batch(&batch, &Default::default());
    let mask = input.attention_mask.clone();
    let hidden = embedder.model().forward(input, 6);
    hidden
        .into_iter()
        .map(|h| {
            let pooled: Tensor<TestBackend, 2> = normalize(pool(h, mask.clone(), pooling));
            pooled.into_data().to_vec::<f32>().unwrap()
        })
        .collect()
}

#[test]
fn the_cpu_encoder_matches_the_burn_model_at_every_layer() {
    let texts = sentences();
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let embedder = embedder().with_pooling(pooling).with_normalize(true);
        let sizes: Vec<Size> = (0..=6).map(|n| Size::new(n.max(1), 384)).collect();
        let ours = embedder.embed_sizes(&texts, &sizes).unwrap();
        let burn = burn_pooled(&embedder, &texts, pooling);
        for (size, vectors) in sizes.iter().zip(&ours) {
            let flat: Vec<f32> = vectors.concat();
            let diff = max_abs_diff(&flat, &burn[size.layers]);
            assert!(diff < 2e-6, "{pooling:?} at {size}: the CPU encoder is {diff} from burn's forward");
        }
    }
}

/// The STS-B test Spearman at every size of the MiniLM list, from embedders made and run at
/// `tier` (`None`: the CPU's widest), in f32 and in `other`.
fn stsb_f32_and(other: Precision, tier: Option<Tier>) -> [Vec<(Size, f64)>; 2] {
    let run = || {
        let pairs = read_stsb(&workspace_root().join("data/stsb/sts-test.csv")).unwrap();
        let datasets = [("sts-test".to_string(), pairs)];
        let sizes = Size::parse_list("minilm").unwrap();
        [Precision::F32, other].map(|precision| {
            let embedder = embedder().with_precision(precision).unwrap().with_batch_size(64);
            assert_eq!(embedder.precision(), precision);
            let scores = sts::evaluate(&embedder, &datasets, &sizes).unwrap();
            scores[0].per_size.iter().map(|(size, c)| (*size, c.spearman)).collect()
        })
    };
    match tier {
        Some(tier) => with_tier(tier, run),
        None => run(),
    }
}

fn assert_within_0_005([f32, other]: [Vec<(Size, f64)>; 2], what: &str) {
    for ((size, a), (_, b)) in f32.iter().zip(&other) {
        let gap = (a - b).abs();
        assert!(gap < 0.005, "{what}, {size}: {b:.5} vs f32 {a:.5} (gap {gap:.5})");
    }
}

/// `precision` really is another arithmetic: its vectors differ from f32's.
fn assert_differs_from_f32(precision: Precision) {
    let texts = &sentences()[..4];
    let other = embedder().with_precision(precision).unwrap();
    let (a, b) = (embedder().embed(texts, Size::new(6, 384)).unwrap(), other.embed(texts, Size::new(6, 384)).unwrap());
    assert!(max_abs_diff(&a.concat(), &b.concat()) > 1e-4, "{precision} gave f32's numbers");
}

#[test]
fn int8_stays_within_0_005_spearman_of_f32_on_stsb_test_at_every_size() {
    assert_within_0_005(stsb_f32_and(Precision::Int8, None), "int8, the widest tier");
    assert_differs_from_f32(Precision::Int8);
}

#[test]
fn bf16_stays_within_0_005_spearman_of_f32_on_stsb_test_at_every_size_where_the_cpu_has_it() {
    if !Precision::Bf16.runs_on_this_cpu() {
        let refused = embedder().with_precision(Precision::Bf16).unwrap_err().to_string();
        assert!(refused.contains("needs a CPU with AVX-512 BF16"), "{refused}");
        eprintln!("bf16 not checked on STS-B: this CPU has no AVX-512 BF16");
        return;
    }
    assert_within_0_005(stsb_f32_and(Precision::Bf16, None), "bf16");
    assert_differs_from_f32(Precision::Bf16);
}

#[test]
fn int8_of_7_bits_stays_within_0_005_spearman_where_the_cpu_has_avx_512_too() {
    // An AVX2 CPU quantises the weights to 7 bits (its pairs would saturate on 8); a CPU with
    // AVX-512 VNNI runs the 8 bits above. Forced to AVX2, this one checks the 7 bits as well.
    if Tier::widest() > Tier::Avx2 {
        assert_within_0_005(stsb_f32_and(Precision::Int8, Some(Tier::Avx2)), "int8, AVX2 (7-bit weights)");
    }
}

#[test]
fn a_text_embeds_to_the_same_bits_alone_or_in_any_batch() {
    // No padding enters any product, and int8 quantises each token's row on its own.
    let texts = sentences();
    for precision in Precision::ALL.into_iter().filter(|p| p.runs_on_this_cpu()) {
        let embedder = embedder().with_precision(precision).unwrap();
        let all = embedder.embed(&texts, Size::new(6, 384)).unwrap();
        for (i, text) in texts.iter().enumerate().take(5) {
            let alone = embedder.embed(std::slice::from_ref(text), Size::new(6, 384)).unwrap();
            assert_eq!(alone[0], all[i], "{precision}: text {i} alone differs from its batch");
        }
    }
}

#[test]
fn precisions_parse_by_name_and_refuse_others() {
    assert_eq!("int8".parse::<Precision>(), Ok(Precision::Int8));
    assert_eq!("f32".parse::<Precision>(), Ok(Precision::F32));
    assert_eq!("bf16".parse::<Precision>(), Ok(Precision::Bf16));
    assert_eq!("fp16".parse::<Precision>().unwrap_err(), "unknown precision `fp16`: expected f32, int8 or bf16");
}

#[test]
fn an_int8_pass_gives_each_text_its_embed_vector() {
    // The server's layer-by-layer pass (texts leaving at their own depth, passes joined) runs
    // on the same CPU encoder and precision as `embed`.
    let embedder = embedder().with_precision(Precision::Int8).unwrap();
    let texts = sentences();
    let (first, second) = texts[..12].split_at(7);
    let sizes = |n: usize| (0..n).map(|i| Size::new(1 + i % 6, [32, 64, 384][i % 3])).collect::<Vec<_>>();
    let mut got = vec![Vec::new(); 12];
    let mut pass =
        embedder.start_pass(&embedder.tokenizer().encode(first).unwrap(), &sizes(7), (0..7).collect()).unwrap();
    embedder.step(&mut pass, |id, v| got[id as usize] = v);
    let mut later =
        embedder.start_pass(&embedder.tokenizer().encode(second).unwrap(), &sizes(5), (7..12).collect()).unwrap();
    embedder.step(&mut later, |id, v| got[id as usize] = v);
    pass.join(later);
    while !pass.is_done() {
        embedder.step(&mut pass, |id, v| got[id as usize] = v);
    }
    let all_sizes: Vec<Size> = sizes(7).into_iter().chain(sizes(5)).collect();
    for (i, (text, size)) in texts[..12].iter().zip(&all_sizes).enumerate() {
        // A pass hands back vectors before the folder's Normalize module.
        let mut vector = got[i].clone();
        normalize_vector(&mut vector);
        let want = embedder.embed(std::slice::from_ref(text), *size).unwrap().remove(0);
        assert!(max_abs_diff(&vector, &want) < 1e-6, "text {i} at {size}");
    }
}
