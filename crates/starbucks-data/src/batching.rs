//! Batching: label rows padded to the batch's longest (never to max_len), and seeded batch
//! orders, optionally grouped by length so padding stays small.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::masking::IGNORE;

/// Pads label rows with the ignore label (-100) to the longest one (token ids are padded by the
/// model crate's `Batch::from_ids`).
pub fn pad_labels(labels: &[&[i64]]) -> Vec<i64> {
    let seq_len = labels.iter().map(|l| l.len()).max().unwrap_or(0);
    labels.iter().flat_map(|l| l.iter().copied().chain(std::iter::repeat_n(IGNORE, seq_len - l.len()))).collect()
}

/// The batches of one epoch, as example indices: a permutation seeded by (seed, epoch), cut into
/// batches of `batch_size` (the last may be smaller unless `drop_last`). With `lengths`, the
/// permutation is cut into mega-batches of 50 batches, each sorted longest first, so a batch
/// holds texts of similar length (HF's length-grouped sampler), and the batch order is shuffled.
pub fn epoch_batches(
    n: usize,
    batch_size: usize,
    seed: u64,
    epoch: u64,
    lengths: Option<&[usize]>,
    drop_last: bool,
) -> Vec<Vec<usize>> {
    assert!(batch_size > 0, "batch_size must be positive");
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    if let Some(lengths) = lengths {
        assert_eq!(lengths.len(), n, "one length per example");
        for mega in order.chunks_mut(batch_size * 50) {
            mega.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        }
    }
    let mut batches: Vec<Vec<usize>> = order.chunks(batch_size).map(<[usize]>::to_vec).collect();
    if drop_last && batches.last().is_some_and(|b| b.len() < batch_size) {
        batches.pop();
    }
    if lengths.is_some() {
        batches.shuffle(&mut rng);
    }
    batches
}
