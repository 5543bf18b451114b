//! Order statistics of measurements: one definition for every report xtask writes.

/// The `q` quantile (0..=1) of `values`, interpolated linearly between the two nearest ranks
/// (numpy's default): the median of an even count is the mean of its two middle values. NaN for
/// no values.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let Some(last) = sorted.len().checked_sub(1) else { return f64::NAN };
    let at = last as f64 * q.clamp(0.0, 1.0);
    let (below, above) = (at.floor() as usize, at.ceil() as usize);
    sorted[below] + (sorted[above] - sorted[below]) * (at - below as f64)
}

pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// Round by round, `ratio` of each run of `runs` and the run of `by` with the same `"round"`
/// (a round `by` lacks has none): the median ratio and every round's.
pub fn by_round<'a>(
    runs: impl IntoIterator<Item = &'a serde_json::Value>,
    by: &[&serde_json::Value],
    ratio: impl Fn(&serde_json::Value, &serde_json::Value) -> Option<f64>,
) -> (f64, Vec<f64>) {
    let values: Vec<f64> =
        runs.into_iter().filter_map(|run| ratio(run, by.iter().find(|b| b["round"] == run["round"])?)).collect();
    (median(&values), values)
}

/// Every round's value, `decimals` after the point, as the reports show them in brackets.
pub fn every_round(values: &[f64], decimals: usize) -> String {
    values.iter().map(|v| format!("{v:.decimals$}")).collect::<Vec<_>>().join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_counts_average_the_middle_and_empty_is_nan() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.99), 4.96);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
    }
}
