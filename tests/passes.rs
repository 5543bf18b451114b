//! `Pass`: texts that each stop at their own size, and passes that join half-way, give the
//! vectors `Embedder::embed` gives each text alone (what `starbucks serve` relies on).

use starbucks_model::{Embedder, Size, normalize_vector};
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
