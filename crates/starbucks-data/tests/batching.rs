//! Label padding to the batch's longest row and seeded batch orders (token ids are padded by
//! `starbucks_model::Batch::from_ids`, tested beside it).

use starbucks_data::batching::{epoch_batches, pad_labels};

#[test]
fn labels_pad_to_the_longest_in_the_batch_not_to_max_len() {
    assert_eq!(pad_labels(&[&[-100, 5], &[-100]]), vec![-100, 5, -100, -100]);
}

#[test]
fn batches_are_seeded_per_epoch_and_cover_every_example_once() {
    let a = epoch_batches(103, 10, 42, 0, None, false);
    assert_eq!(a, epoch_batches(103, 10, 42, 0, None, false));
    assert_ne!(a, epoch_batches(103, 10, 42, 1, None, false));
    assert_eq!(a.len(), 11);
    let mut all: Vec<usize> = a.concat();
    all.sort();
    assert_eq!(all, (0..103).collect::<Vec<_>>());
    assert_eq!(epoch_batches(103, 10, 42, 0, None, true).len(), 10);
}

#[test]
fn length_grouping_keeps_similar_lengths_together() {
    let lengths: Vec<usize> = (0..1000).map(|i| (i * 7919) % 300 + 1).collect();
    let grouped = epoch_batches(1000, 16, 3, 0, Some(&lengths), false);
    let plain = epoch_batches(1000, 16, 3, 0, None, false);
    let padding = |batches: &[Vec<usize>]| -> usize {
        batches
            .iter()
            .map(|b| {
                let max = b.iter().map(|&i| lengths[i]).max().unwrap();
                b.iter().map(|&i| max - lengths[i]).sum::<usize>()
            })
            .sum()
    };
    assert!(padding(&grouped) * 5 < padding(&plain), "{} vs {}", padding(&grouped), padding(&plain));
    let mut all = grouped.concat();
    all.sort();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
}
