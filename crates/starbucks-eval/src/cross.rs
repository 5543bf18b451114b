//! One measure over query sizes × corpus sizes: the two sides of a comparison embedded at
//! different sizes, as a deployment that indexes its corpus once, offline, at full depth and
//! embeds each query online at a cheaper size would. Both sides are cut to the smaller of the
//! two dims before they are compared (a vector of d dims is compared with the first d of the
//! other).

use serde::{Deserialize, Serialize};
use starbucks_model::Size;

/// `values[i][j]`: the measure with the queries (STS: each pair's first sentence) at
/// `queries[i]` and the corpus (STS: the second sentence) at `corpus[j]`, compared at
/// [`dims`]`(queries[i], corpus[j])`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossGrid {
    /// What was measured and on what, e.g. `sts-test Spearman` or `queries.dl20 nDCG@10`.
    pub metric: String,
    pub queries: Vec<Size>,
    pub corpus: Vec<Size>,
    pub values: Vec<Vec<f64>>,
}

/// The dims at which a query at `query` and a document at `corpus` are compared.
pub fn dims(query: Size, corpus: Size) -> usize {
    query.dims.min(corpus.dims)
}

/// Every (query size, corpus size) pair, row by row.
pub fn pairs(queries: &[Size], corpus: &[Size]) -> Vec<(Size, Size)> {
    queries.iter().flat_map(|&q| corpus.iter().map(move |&c| (q, c))).collect()
}

/// The distinct layers of `sizes`, shallowest first, each at the full width `width`: what one
/// pass must embed so that every size can be cut from it.
pub(crate) fn by_layer(sizes: &[Size], width: usize) -> Vec<Size> {
    let mut layers: Vec<usize> = sizes.iter().map(|s| s.layers).collect();
    layers.sort_unstable();
    layers.dedup();
    layers.into_iter().map(|l| Size::new(l, width)).collect()
}

impl CrossGrid {
    /// The grid's values laid out from `flat`, one per pair of [`pairs`] in its order.
    pub fn from_pairs(metric: String, queries: &[Size], corpus: &[Size], flat: &[f64]) -> Self {
        assert_eq!(flat.len(), queries.len() * corpus.len(), "one value per (query, corpus) pair");
        let values = flat.chunks(corpus.len().max(1)).map(<[f64]>::to_vec).collect();
        CrossGrid { metric, queries: queries.to_vec(), corpus: corpus.to_vec(), values }
    }

    /// The value at (query size, corpus size), if both are in the grid.
    pub fn get(&self, query: Size, corpus: Size) -> Option<f64> {
        let i = self.queries.iter().position(|&s| s == query)?;
        let j = self.corpus.iter().position(|&s| s == corpus)?;
        Some(self.values[i][j])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_run_row_by_row_and_compare_at_the_smaller_dims() {
        let (q, c) = ([Size::new(1, 32), Size::new(6, 384)], [Size::new(2, 64), Size::new(6, 384)]);
        let p = pairs(&q, &c);
        assert_eq!(p, [(q[0], c[0]), (q[0], c[1]), (q[1], c[0]), (q[1], c[1])]);
        assert_eq!(p.iter().map(|&(a, b)| dims(a, b)).collect::<Vec<_>>(), [32, 32, 64, 384]);
        let grid = CrossGrid::from_pairs("m".into(), &q, &c, &[0.1, 0.2, 0.3, 0.4]);
        assert_eq!(grid.values, [vec![0.1, 0.2], vec![0.3, 0.4]]);
        assert_eq!(grid.get(Size::new(1, 32), Size::new(6, 384)), Some(0.2));
        assert_eq!(grid.get(Size::new(2, 64), Size::new(6, 384)), None);
        assert_eq!(
            by_layer(&[Size::new(6, 32), Size::new(1, 32), Size::new(6, 384)], 384),
            [Size::new(1, 384), Size::new(6, 384)]
        );
    }
}
