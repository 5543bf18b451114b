//! SRL fine-tuning steps on all-MiniLM-L6-v2 with the shipped SNLI triplets: the loss is
//! finite, falls on a repeated batch, and the weights move.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use starbucks_data::finetune::read_triplets;
use starbucks_model::{BertConfig, BertModel, Size, Tokenizer};
use starbucks_objectives::{Objective, SizeList};
use starbucks_tests::{minilm_dir, workspace_root};
use starbucks_train::{Decay, LrSchedule, TripletTrainer, adamw};

type B = Autodiff<Flex>;

#[test]
fn srl_steps_lower_the_loss_of_a_batch() {
    let dir = minilm_dir();
    let config = BertConfig::from_file(dir.join("config.json")).unwrap();
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"), 128).unwrap();
    let device = Default::default();
    let (model, _) = BertModel::<B>::from_safetensors(&config, dir.join("model.safetensors"), &device).unwrap();
    let before = model.valid().encoder.layer[0].output.dense.weight.val().into_data().to_vec::<f32>().unwrap();
    let sizes = SizeList::new(Size::parse_list("1,32 2,64 3,96 4,128 5,256 6,384").unwrap(), &config).unwrap();
    let schedule = LrSchedule { peak: 5e-5, warmup_steps: 0, total_steps: 100, decay: Decay::Linear };
    let optimizer = adamw(0.01).init::<B, BertModel<B>>();
    let mut trainer =
        TripletTrainer::new(model, optimizer, Objective::srl(sizes, false), schedule, ChaCha8Rng::seed_from_u64(42));

    let triplets = read_triplets(&workspace_root().join("data/nli/snli-triplets.tsv.gz")).unwrap();
    let batch = &triplets[..6];
    let reports: Vec<_> = (0..4).map(|_| trainer.step(&tokenizer, batch).unwrap()).collect();
    for r in &reports {
        assert!(r.applied && r.loss.is_finite() && r.grad_norm.is_finite() && r.grad_norm > 0.0, "{r:?}");
        assert_eq!(r.terms.len(), 11, "base at 6 sizes, KL at 5");
        assert!(r.tokens > 18);
    }
    assert!(reports[3].loss < reports[0].loss, "{} -> {}", reports[0].loss, reports[3].loss);
    assert_eq!((trainer.step, trainer.skipped), (4, 0));
    let after =
        trainer.inference_model().encoder.layer[0].output.dense.weight.val().into_data().to_vec::<f32>().unwrap();
    assert!(before.iter().zip(&after).any(|(a, b)| a != b), "the weights moved");
}
