//! SMAE masking, checked as properties over the 300 real FineWeb documents and several seeds:
//! ratios, encoder ⊂ decoder, whole words, special tokens, labels, window length.

mod support;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use starbucks_data::fineweb::{Position, Source};
use starbucks_data::masking::{IGNORE, MaskingConfig, SmaeMasker};
use support::{data_dir, tokenizer_json};

fn fineweb_texts() -> Vec<String> {
    let path = data_dir().join("fineweb/fineweb-subset-300.json.gz");
    Source::local(path.to_str().unwrap()).unwrap().stream(Position::default()).map(|d| d.unwrap().text).collect()
}

fn masker(config: MaskingConfig) -> SmaeMasker {
    let path = tokenizer_json();
    SmaeMasker::new(tokenizers::Tokenizer::from_file(&path).unwrap(), config, &path.display().to_string()).unwrap()
}

#[test]
fn masks_hold_their_properties_on_real_documents() {
    let tokenizer = tokenizers::Tokenizer::from_file(tokenizer_json()).unwrap();
    let masker = masker(MaskingConfig { max_len: 128, ..Default::default() });
    let [cls, sep, mask] = masker.special_ids();
    let texts = fineweb_texts();
    let (mut tokens, mut encoder_masked, mut decoder_masked) = (0usize, 0usize, 0usize);
    let (mut replaced_mask, mut kept) = (0usize, 0usize);
    for seed in 0..3 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for text in &texts {
            let ex = masker.example(text, &mut rng).unwrap().expect("real documents have tokens");
            let n = ex.input_ids.len();
            assert!(n <= 128);
            assert_eq!((ex.input_ids[0], ex.input_ids[n - 1]), (cls, sep));
            for v in [&ex.encoder_input_ids, &ex.decoder_input_ids] {
                assert_eq!(v.len(), n);
                assert_eq!((v[0], v[n - 1]), (cls, sep), "special tokens are never masked");
            }
            // Labels exactly at masked positions, holding the original token.
            for labels in [&ex.encoder_labels, &ex.decoder_labels] {
                assert_eq!((labels[0], labels[n - 1]), (IGNORE, IGNORE));
                for (i, &l) in labels.iter().enumerate() {
                    assert!(l == IGNORE || l == ex.input_ids[i] as i64);
                }
            }
            let enc: Vec<bool> = ex.encoder_labels.iter().map(|&l| l != IGNORE).collect();
            let dec: Vec<bool> = ex.decoder_labels.iter().map(|&l| l != IGNORE).collect();
            assert!(enc.iter().zip(&dec).all(|(e, d)| !e || *d), "encoder masks ⊂ decoder masks");
            // Whole words: a word piece (##) is masked exactly when the piece before it is.
            let pieces: Vec<String> = ex.input_ids.iter().map(|&t| tokenizer.id_to_token(t).unwrap()).collect();
            for i in 2..n - 1 {
                if pieces[i].starts_with("##") && i > 1 {
                    assert_eq!(dec[i], dec[i - 1], "word split in the decoder mask at {i}: {:?}", &pieces[i - 1..=i]);
                    assert_eq!(enc[i], enc[i - 1], "word split in the encoder mask at {i}");
                }
            }
            let body = n - 2;
            tokens += body;
            encoder_masked += enc.iter().filter(|&&m| m).count();
            decoder_masked += dec.iter().filter(|&&m| m).count();
            for (i, &m) in dec.iter().enumerate() {
                if m {
                    replaced_mask += usize::from(ex.decoder_input_ids[i] == mask);
                    kept += usize::from(ex.decoder_input_ids[i] == ex.input_ids[i]);
                }
            }
        }
    }
    let ratio = |k: usize, of: usize| k as f64 / of as f64;
    let (enc, dec) = (ratio(encoder_masked, tokens), ratio(decoder_masked, tokens));
    assert!((0.18..=0.205).contains(&enc), "encoder ratio {enc}");
    assert!((0.37..=0.405).contains(&dec), "decoder ratio {dec}");
    let (as_mask, as_self) = (ratio(replaced_mask, decoder_masked), ratio(kept, decoder_masked));
    assert!((0.78..=0.82).contains(&as_mask), "[MASK] share {as_mask}");
    assert!((0.09..=0.12).contains(&as_self), "unchanged share {as_self} (10 % kept + random hits)");
}

#[test]
fn long_documents_give_one_random_window_of_max_len_minus_two() {
    let masker = masker(MaskingConfig { max_len: 64, ..Default::default() });
    let text = fineweb_texts().into_iter().max_by_key(String::len).unwrap();
    let starts: std::collections::HashSet<u32> = (0..10)
        .map(|seed| {
            let ex = masker.example(&text, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap().unwrap();
            assert_eq!(ex.input_ids.len(), 64);
            ex.input_ids[1]
        })
        .collect();
    assert!(starts.len() > 1, "windows start at random places");
    let a = masker.example(&text, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
    assert_eq!(a, masker.example(&text, &mut ChaCha8Rng::seed_from_u64(7)).unwrap(), "seeded");
    assert!(masker.example("   ", &mut ChaCha8Rng::seed_from_u64(0)).unwrap().is_none());
}
