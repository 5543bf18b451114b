//! `Pass`: texts that each stop at their own size, and passes that join half-way, give the
//! vectors `Embedder::embed` gives each text alone (what `starbucks serve` relies on).

use starbucks_model::{Embedder, Size, bert::BertInput, pooling::normalize_vector};
use starbucks_tests::{TestBackend, max_abs_diff, minilm_dir};

const TEXTS: [&str; 6] = [
    "A man is playing a guitar.",
    "A woman is slicing an onion with a very sharp kitchen knife on a wooden board.",
    "Dogs.",
    "The stock market fell sharply on Monday after the announcement.",
    "Zwei Hunde spielen im Schnee.",
    "",
];
const SIZES: [Size; 6] =
    [Size::new(1, 32), Size::new(6, 384), Size::new(3, 96), Size::new(2, 64), Size::new(6, 128), Size::new(4, 128)];

fn alone(embedder: &Embedder<TestBackend>, i: usize) -> Vec<f32> {
    embedder.embed(&[TEXTS[i]], SIZES[i]).unwrap().remove(0)
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    normalize_vector(&mut v);
    v
}

#[test]
fn rows_stop_at_their_own_size_and_passes_join_half_way() {
    let embedder = Embedder::<TestBackend>::from_pretrained(minilm_dir(), &Default::default()).unwrap();
    let tokenizer = embedder.tokenizer();
    let tokens: Vec<_> = TEXTS.iter().map(|t| tokenizer.encode_one(t).unwrap()).collect();

    // One pass over all six texts.
    let batch = tokenizer.pad(&tokens.iter().collect::<Vec<_>>());
    let mut got = vec![None; TEXTS.len()];
    let mut order = Vec::new();
    embedder
        .embed_rows(&batch, &SIZES, |row, v| {
            order.push(row);
            got[row] = Some(v);
        })
        .unwrap();
    for (i, v) in got.iter().enumerate() {
        let v = normalized(v.clone().expect("every row answered"));
        assert!(max_abs_diff(&v, &alone(&embedder, i)) <= 1e-5, "text {i}");
    }
    let depth: Vec<usize> = order.iter().map(|&r| SIZES[r].layers).collect();
    assert!(depth.windows(2).all(|w| w[0] <= w[1]), "shallow rows are answered first: {depth:?}");

    // Rows 0..3 run two layers; rows 3..6 start then, catch up, and join.
    let pad = |rows: &[usize]| tokenizer.pad(&rows.iter().map(|&r| &tokens[r]).collect::<Vec<_>>());
    let mut first = embedder.start_pass(&pad(&[0, 1, 2]), &SIZES[..3], vec![0, 1, 2]).unwrap();
    let mut got = vec![None; TEXTS.len()];
    for _ in 0..2 {
        embedder.step(&mut first, |id, v| got[id as usize] = Some(v));
    }
    assert_eq!((first.layer(), first.rows()), (2, 2), "text 0 left after layer 1");
    let mut second = embedder.start_pass(&pad(&[3, 4, 5]), &SIZES[3..], vec![3, 4, 5]).unwrap();
    while second.layer() < first.layer() {
        embedder.step(&mut second, |id, v| got[id as usize] = Some(v));
    }
    assert_eq!(second.rows(), 2, "text 3 (2 layers) finished while catching up");
    first.join(second);
    assert_eq!(first.rows(), 4);
    while !first.is_done() {
        embedder.step(&mut first, |id, v| got[id as usize] = Some(v));
    }
    for (i, v) in got.into_iter().enumerate() {
        let v = normalized(v.expect("every row answered"));
        assert!(max_abs_diff(&v, &alone(&embedder, i)) <= 1e-5, "text {i} after the join");
    }
}

#[test]
fn token_vectors_are_the_hidden_states_whose_mean_is_the_sentence_vector() {
    let device = Default::default();
    let embedder = Embedder::<TestBackend>::from_pretrained(minilm_dir(), &device).unwrap();
    let batch = embedder.tokenizer().encode(&TEXTS).unwrap();
    let lengths = batch.lengths();
    for layers in [1, 3, 6] {
        let tokens = embedder.token_vectors(&batch, layers).unwrap();
        assert_eq!(tokens.iter().map(Vec::len).collect::<Vec<_>>(), lengths, "real tokens only");

        // burn's own ops on the padded batch (the path of every backend but the CPU encoder's).
        let hidden = embedder.model().forward(BertInput::from_batch(&batch, &device), layers).pop().unwrap();
        let [_, seq, width] = hidden.dims();
        let values: Vec<f32> = hidden.into_data().to_vec().unwrap();
        for (text, vectors) in tokens.iter().enumerate() {
            for (position, vector) in vectors.iter().enumerate() {
                let at = (text * seq + position) * width;
                assert!(max_abs_diff(vector, &values[at..at + width]) <= 1e-4, "layer {layers} text {text}");
            }
        }

        // all-MiniLM-L6-v2 mean-pools with no Dense: the tokens' mean is the sentence vector.
        let sizes = vec![Size::new(layers, width); TEXTS.len()];
        embedder
            .embed_rows(&batch, &sizes, |row, pooled| {
                let n = tokens[row].len() as f32;
                let mean: Vec<f32> = (0..width).map(|d| tokens[row].iter().map(|t| t[d]).sum::<f32>() / n).collect();
                assert!(max_abs_diff(&mean, &pooled) <= 1e-5, "layer {layers} text {row}");
            })
            .unwrap();
    }
    assert!(embedder.token_vectors(&batch, 7).is_err(), "a 6-layer model has no layer 7");
}
