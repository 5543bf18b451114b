//! Base losses and the KL alignment term, as sentence-transformers and Tevatron compute them.
//! Each returns a one-element tensor.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use starbucks_model::pooling::normalize;

/// Mean cross-entropy of `logits` `[rows, classes]` against one target class per row.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    cross_entropy_rows(logits, targets).mean()
}

/// The cross-entropy of each row of `logits` `[rows, classes]` against its target class →
/// `[rows]`.
pub fn cross_entropy_rows<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [rows, _] = logits.dims();
    log_softmax(logits, 1).gather(1, targets.reshape([rows, 1])).reshape([rows]).neg()
}

fn arange_times<B: Backend>(n: usize, step: usize, device: &B::Device) -> Tensor<B, 1, Int> {
    let values: Vec<i64> = (0..n).map(|i| (i * step) as i64).collect();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// MultipleNegativesRankingLoss: `anchors` `[B, d]` against `candidates` `[k·B, d]` (positives
/// first, then any hard negatives), cosine similarity × `scale`, target the diagonal.
pub fn mnrl<B: Backend>(anchors: Tensor<B, 2>, candidates: Tensor<B, 2>, scale: f64) -> Tensor<B, 1> {
    let [rows, _] = anchors.dims();
    let device = anchors.device();
    let logits = normalize(anchors).matmul(normalize(candidates).transpose()) * scale;
    cross_entropy(logits, arange_times::<B>(rows, 1, &device))
}

/// CoSENT: `log(1 + Σ exp(scale·(cos_j − cos_i)))` over pairs with `label_i > label_j`.
pub fn cosent<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>, labels: Tensor<B, 1>, scale: f64) -> Tensor<B, 1> {
    let [rows, _] = a.dims();
    let cos = (normalize(a) * normalize(b)).sum_dim(1).reshape([rows]) * scale;
    // diff[i][j] = cos_j − cos_i, kept where label_i > label_j.
    let diff = cos.clone().reshape([1, rows]) - cos.reshape([rows, 1]);
    let keep = labels.clone().reshape([rows, 1]).greater(labels.reshape([1, rows]));
    let diff = diff.mask_fill(keep.bool_not(), -1e12);
    // logsumexp over [0, diff...] = log(1 + Σ exp(diff)).
    let flat = Tensor::cat(vec![Tensor::zeros([1], &diff.device()), diff.reshape([rows * rows])], 0);
    let max = flat.clone().max().detach();
    ((flat - max.clone()).exp().sum().log() + max).reshape([1])
}

/// Retrieval scores `queries · passagesᵀ` `[B, G·B]` (dot product, temperature 1).
pub fn scores<B: Backend>(queries: Tensor<B, 2>, passages: Tensor<B, 2>) -> Tensor<B, 2> {
    queries.matmul(passages.transpose())
}

/// Tevatron's loss: cross-entropy over in-batch passages, query i's positive at `i · group`.
pub fn retrieval_ce<B: Backend>(scores: Tensor<B, 2>, group: usize) -> Tensor<B, 1> {
    let [rows, _] = scores.dims();
    let device = scores.device();
    cross_entropy(scores, arange_times::<B>(rows, group, &device))
}

/// `KL(softmax(teacher) ‖ softmax(student))` along dim 1, summed there, mean over rows. With
/// `detach_teacher` no gradient reaches the teacher.
pub fn kl_divergence<B: Backend>(teacher: Tensor<B, 2>, student: Tensor<B, 2>, detach_teacher: bool) -> Tensor<B, 1> {
    let teacher = if detach_teacher { teacher.detach() } else { teacher };
    let [rows, _] = teacher.dims();
    let log_p = log_softmax(teacher, 1);
    let log_q = log_softmax(student, 1);
    (log_p.clone().exp() * (log_p - log_q)).sum() / rows as f64
}

/// sentence-transformers' `F.kl_div(log_softmax(student/T), softmax(teacher/T), "batchmean")`.
pub fn kl_div_temperature<B: Backend>(teacher: Tensor<B, 2>, student: Tensor<B, 2>, temperature: f64) -> Tensor<B, 1> {
    let [rows, _] = teacher.dims();
    let p = softmax(teacher / temperature, 1);
    let log_q = log_softmax(student / temperature, 1);
    // p·(log p − log q), with 0·log 0 = 0 as torch's kl_div (xlogy) does.
    let log_p = p.clone().clamp_min(1e-38).log();
    (p * (log_p - log_q)).sum() / rows as f64
}
