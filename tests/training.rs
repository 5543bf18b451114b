//! SRL fine-tuning steps on all-MiniLM-L6-v2 with the shipped SNLI triplets, through the
//! engine and the fine-tuning task the CLI runs: the loss is finite, falls on a repeated batch,
//! the weights move, and the data position advances by epoch and batch.

use burn::backend::{Autodiff, Flex};
use starbucks_data::finetune::{read_triplets, triplet_texts};
use starbucks_model::{Pooling, Size, bert::BertModel, config::BertConfig, tokenizer::Tokenizer};
use starbucks_objectives::{Objective, SizeList};
use starbucks_tests::{minilm_dir, workspace_root};
use starbucks_train::checkpoint::TrainState;
use starbucks_train::engine::DataSource;
use starbucks_train::finetune::{Examples, FinetuneData, FinetuneTask};
use starbucks_train::{Decay, Engine, LrSchedule, adamw};

type B = Autodiff<Flex>;

fn weight<Bk: burn::tensor::backend::Backend>(m: &BertModel<Bk>) -> Vec<f32> {
    m.encoder.layer[0].output.dense.weight.val().into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

#[test]
fn srl_steps_lower_the_loss_of_a_batch() {
    let dir = minilm_dir();
    let config = BertConfig::from_file(dir.join("config.json")).unwrap();
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"), 128).unwrap();
    let device = Default::default();
    let (model, _) = BertModel::<B>::from_safetensors(&config, dir.join("model.safetensors"), &device).unwrap();
    let before = weight(&model);
    let sizes = SizeList::new(Size::parse_list("minilm").unwrap(), &config).unwrap();
    let schedule = LrSchedule { peak: 5e-5, warmup_steps: 0, total_steps: 100, decay: Decay::Linear };
    let state = TrainState { step: 0, skipped: 0, bad_in_row: 0, position: serde_json::Value::Null, seed: 42 };
    let mut engine = Engine::new(model, adamw(0.01).init(), schedule, state, device);

    // One batch holding all six triplets: every step sees the same texts.
    let triplets = read_triplets(&workspace_root().join("data/nli/snli-triplets.tsv.gz")).unwrap();
    let data = std::sync::Mutex::new(FinetuneData::new(Examples::Triplets(triplets[..6].to_vec()), 6, 42));
    let task = FinetuneTask {
        tokenizer: tokenizer.clone(),
        query_tokenizer: tokenizer,
        objective: Objective::srl(sizes, false),
        pooling: Pooling::Mean,
    };
    let reports: Vec<_> = (0..4).map(|_| engine.step(&task, &data).unwrap()).collect();
    for r in &reports {
        assert!(r.applied && r.loss.is_finite() && r.grad_norm.is_finite() && r.grad_norm > 0.0, "{r:?}");
        assert_eq!(r.terms.len(), 11, "base at 6 sizes, KL at 5");
        assert!(r.tokens > 18);
    }
    assert!(reports[3].loss < reports[0].loss, "{} -> {}", reports[0].loss, reports[3].loss);
    assert_eq!((engine.state.step, engine.state.skipped), (4, 0));
    assert_eq!(engine.state.position, serde_json::json!({"epoch": 3, "batch": 1}));
    assert_eq!(data.lock().unwrap().position(), engine.state.position);
    assert!(before.iter().zip(&weight(&engine.inference_model())).any(|(a, b)| a != b), "the weights moved");
}

#[test]
fn length_groups_give_the_loss_and_gradients_of_one_padded_pass() {
    use burn::tensor::Tensor;
    use rand::SeedableRng;
    use starbucks_model::{bert::BertInput, pooling::pool};
    use starbucks_objectives::Embeddings;
    use starbucks_train::engine::Task;
    use starbucks_train::finetune::FinetuneBatch;

    let dir = minilm_dir();
    // Dropout off, so that both passes compute the same function.
    let mut config = BertConfig::from_file(dir.join("config.json")).unwrap();
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"), 128).unwrap();
    let device = Default::default();
    let (model, _) = BertModel::<B>::from_safetensors(&config, dir.join("model.safetensors"), &device).unwrap();
    let sizes = SizeList::new(Size::parse_list("minilm").unwrap(), &config).unwrap();
    let objective = Objective::srl(sizes, false);
    let triplets = read_triplets(&workspace_root().join("data/nli/snli-triplets.tsv.gz")).unwrap()[..8].to_vec();
    let texts = triplet_texts(&triplets);
    let task = FinetuneTask {
        tokenizer: tokenizer.clone(),
        query_tokenizer: tokenizer.clone(),
        objective: objective.clone(),
        pooling: Pooling::Mean,
    };
    let whole = tokenizer.encode(&texts).unwrap();
    let (tokens, computed) = task.token_counts(&texts).unwrap();
    assert!(computed < whole.batch_size * whole.seq_len, "these texts are split into groups of similar length");
    assert!(computed >= tokens);

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let grouped = task.loss(&model, FinetuneBatch::Triplets(triplets.clone()), &mut rng).unwrap();
    // The reference: one pass over the batch padded to its longest text.
    let input = BertInput::<B>::from_batch(&whole, &device);
    let mask = input.attention_mask.clone();
    let layers: Vec<Tensor<B, 2>> =
        model.forward(input, 6).into_iter().map(|h| pool(h, mask.clone(), Pooling::Mean)).collect();
    let one_pass = objective.loss(&Embeddings::Triplets { layers, batch: triplets.len() }, &mut rng);

    let value = |t: &Tensor<B, 1>| t.clone().into_data().convert::<f64>().to_vec::<f64>().unwrap()[0];
    let (a, b) = (value(&grouped.loss.total), value(&one_pass.total));
    assert!((a - b).abs() < 1e-4 * b.abs(), "grouped {a} vs one pass {b}");
    let gradient = |t: Tensor<B, 1>| {
        let grads = t.backward();
        model.encoder.layer[2]
            .intermediate
            .dense
            .weight
            .val()
            .grad(&grads)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    let (ga, gb) = (gradient(grouped.loss.total), gradient(one_pass.total));
    let scale = gb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = ga.iter().zip(&gb).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff < 1e-3 * scale, "gradients differ by {diff} (largest {scale})");
}
