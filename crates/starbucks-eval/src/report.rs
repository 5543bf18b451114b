//! Reports a person can read: a Markdown table (rows: datasets or measures; columns: sizes and
//! their average), the same as JSON, SVG heat-maps of the layer × dim grid and of the query ×
//! corpus size grids, and comparisons of several models with their differences.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use starbucks_model::{Precision, Size};

use crate::cross::CrossGrid;
use crate::sts::Grid;

/// One row of a table: a value per size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub values: Vec<f64>,
    /// The data it was measured on, as the command was given it (a file or a folder); none for
    /// an average over several. With `measure`, what a program looks a row up by.
    #[serde(default)]
    pub source: Option<String>,
    /// What was measured: `Spearman`, `nDCG@10`, `MRR@10`, `R@100`, `R@1000`.
    #[serde(default)]
    pub measure: String,
}

impl Row {
    /// The row of `measure` on `source`, named as the tables show it.
    pub fn new(dataset: &str, source: Option<&std::path::Path>, measure: &str, values: Vec<f64>) -> Self {
        Row {
            name: format!("{dataset} {measure}"),
            values,
            source: source.map(|p| p.display().to_string()),
            measure: measure.into(),
        }
    }

    pub fn average(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len().max(1) as f64
    }
}

/// Everything evaluated for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub model: String,
    /// The embedder's arithmetic (reports written before it was a choice were f32).
    #[serde(default)]
    pub precision: Precision,
    pub sizes: Vec<Size>,
    /// STS Spearman per dataset (and their average) and retrieval measures, per size.
    pub rows: Vec<Row>,
    /// Texts per second at each size (early exit), on the machine that ran the evaluation.
    pub throughput: Vec<f64>,
    pub grid: Option<Grid>,
    /// Query sizes × corpus sizes, one grid per measure (reports written before it had none).
    #[serde(default)]
    pub cross: Vec<CrossGrid>,
}

fn size_label(size: &Size) -> String {
    match size.name() {
        Some(name) => format!("{name} {size}"),
        None => size.to_string(),
    }
}

impl Report {
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    pub fn to_markdown(&self) -> String {
        let precision = match self.precision {
            Precision::F32 => String::new(),
            other => format!(" ({other})"),
        };
        let mut md = format!(
            "### {}{precision}\n\n| | {} | average |\n|---|",
            self.model,
            self.sizes.iter().map(size_label).collect::<Vec<_>>().join(" | ")
        );
        md.push_str(&"---|".repeat(self.sizes.len() + 1));
        md.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row.values.iter().map(|v| format!("{v:.4}")).collect();
            let _ = writeln!(md, "| {} | {} | {:.4} |", row.name, cells.join(" | "), row.average());
        }
        if !self.throughput.is_empty() {
            let cells: Vec<String> = self.throughput.iter().map(|v| format!("{v:.1}")).collect();
            let _ = writeln!(md, "| texts/s | {} | |", cells.join(" | "));
        }
        if let Some(grid) = &self.grid {
            let _ = write!(
                md,
                "\n{}: layers (rows) × dims (columns)\n\n| layers | {} |\n|---|",
                grid.metric,
                grid.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" | ")
            );
            md.push_str(&"---|".repeat(grid.dims.len()));
            md.push('\n');
            for (layer, values) in grid.layers.iter().zip(&grid.values) {
                let cells: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
                let _ = writeln!(md, "| {layer} | {} |", cells.join(" | "));
            }
        }
        for grid in &self.cross {
            let _ = write!(
                md,
                "\n{}: query size (rows) × corpus size (columns), compared at the smaller dims\n\n| query \\ corpus | {} |\n|---|",
                grid.metric,
                grid.corpus.iter().map(Size::to_string).collect::<Vec<_>>().join(" | ")
            );
            md.push_str(&"---|".repeat(grid.corpus.len()));
            md.push('\n');
            for (size, values) in grid.queries.iter().zip(&grid.values) {
                let cells: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
                let _ = writeln!(md, "| {size} | {} |", cells.join(" | "));
            }
        }
        md
    }
}

/// Rows present in every report, side by side: each model's values and its difference from the
/// first model.
pub fn compare(reports: &[Report]) -> String {
    let Some(base) = reports.first() else { return String::new() };
    let mut md = String::new();
    for row in &base.rows {
        let _ = write!(
            md,
            "### {}\n\n| model | {} | average |\n|---|",
            row.name,
            base.sizes.iter().map(size_label).collect::<Vec<_>>().join(" | ")
        );
        md.push_str(&"---|".repeat(base.sizes.len() + 1));
        md.push('\n');
        for report in reports {
            let Some(other) = report.row(&row.name).filter(|_| report.sizes == base.sizes) else { continue };
            let cells: Vec<String> = other
                .values
                .iter()
                .zip(&row.values)
                .map(
                    |(v, b)| {
                        if std::ptr::eq(report, base) { format!("{v:.4}") } else { format!("{v:.4} ({:+.4})", v - b) }
                    },
                )
                .collect();
            let avg = if std::ptr::eq(report, base) {
                format!("{:.4}", other.average())
            } else {
                format!("{:.4} ({:+.4})", other.average(), other.average() - row.average())
            };
            let _ = writeln!(md, "| {} | {} | {avg} |", report.model, cells.join(" | "));
        }
        md.push('\n');
    }
    md
}

/// Linear blend through a dark-blue → teal → yellow ramp (viridis-like), `t` in [0, 1].
fn color(t: f64) -> String {
    let stops = [(68.0, 1.0, 84.0), (33.0, 145.0, 140.0), (253.0, 231.0, 37.0)];
    let t = t.clamp(0.0, 1.0) * 2.0;
    let (a, b, f) = if t < 1.0 { (stops[0], stops[1], t) } else { (stops[1], stops[2], t - 1.0) };
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// An SVG heat-map of the grid: layers down, dims across, each cell's value written in it.
pub fn heatmap_svg(grid: &Grid, title: &str) -> String {
    let rows: Vec<String> = grid.layers.iter().map(usize::to_string).collect();
    let columns: Vec<String> = grid.dims.iter().map(usize::to_string).collect();
    heatmap(title, &grid.metric, ("layers", &rows), ("dims", &columns), &grid.values)
}

/// An SVG heat-map of a query × corpus grid: query sizes down, corpus sizes across.
pub fn cross_heatmap_svg(grid: &CrossGrid, title: &str) -> String {
    let rows: Vec<String> = grid.queries.iter().map(Size::to_string).collect();
    let columns: Vec<String> = grid.corpus.iter().map(Size::to_string).collect();
    heatmap(title, &grid.metric, ("query size", &rows), ("corpus size", &columns), &grid.values)
}

/// Cells coloured by value and labelled with it; `rows` and `columns` are an axis title and
/// one label per row or column.
fn heatmap(
    title: &str,
    metric: &str,
    (row_title, rows): (&str, &[String]),
    (column_title, columns): (&str, &[String]),
    values: &[Vec<f64>],
) -> String {
    let (cell_w, cell_h, left, top) = (70.0, 36.0, 80.0, 70.0);
    let all: Vec<f64> = values.iter().flatten().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let footer = format!("{metric} (colour from {lo:.3} to {hi:.3})");
    // Wide enough for the cells, the title (≈ 9 px a character at 15 px) and the footer (≈ 6.5 px).
    let width = (left + cell_w * columns.len() as f64 + 20.0)
        .max(title.len() as f64 * 9.0 + 40.0)
        .max(left + footer.len() as f64 * 6.5 + 40.0);
    let height = top + cell_h * rows.len() as f64 + 50.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n\
         <text x=\"{}\" y=\"50\" text-anchor=\"middle\">{column_title}</text>\n\
         <text x=\"18\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {})\">{row_title}</text>\n",
        width / 2.0,
        escape(title),
        left + cell_w * columns.len() as f64 / 2.0,
        top + cell_h * rows.len() as f64 / 2.0,
        top + cell_h * rows.len() as f64 / 2.0,
    );
    for (j, label) in columns.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            left + cell_w * (j as f64 + 0.5),
            top - 6.0,
            escape(label)
        );
    }
    for (i, (label, values)) in rows.iter().zip(values).enumerate() {
        let y = top + cell_h * i as f64;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 8.0,
            y + cell_h / 2.0 + 4.0,
            escape(label)
        );
        for (j, v) in values.iter().enumerate() {
            let t = (v - lo) / span;
            let x = left + cell_w * j as f64;
            let ink = if t > 0.6 { "black" } else { "white" };
            let _ = writeln!(
                svg,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell_w}\" height=\"{cell_h}\" fill=\"{}\" stroke=\"white\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{ink}\">{v:.3}</text>",
                color(t),
                x + cell_w / 2.0,
                y + cell_h / 2.0 + 4.0
            );
        }
    }
    let _ = writeln!(svg, "<text x=\"{left}\" y=\"{}\" font-size=\"11\">{}</text>", height - 14.0, escape(&footer));
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(model: &str, values: Vec<f64>) -> Report {
        Report {
            model: model.into(),
            precision: Precision::F32,
            sizes: vec![Size::new(1, 32), Size::new(2, 64)],
            rows: vec![Row::new("sts-test", None, "Spearman", values)],
            throughput: vec![],
            grid: Some(Grid {
                metric: "m".into(),
                layers: vec![1, 2],
                dims: vec![32, 64],
                values: vec![vec![0.1, 0.2], vec![0.3, 0.4]],
            }),
            cross: vec![CrossGrid {
                metric: "sts-test Spearman".into(),
                queries: vec![Size::new(1, 32), Size::new(2, 64)],
                corpus: vec![Size::new(2, 64), Size::new(6, 384)],
                values: vec![vec![0.5, 0.6], vec![0.7, 0.8]],
            }],
        }
    }

    #[test]
    fn tables_comparisons_and_heatmaps() {
        let a = report("base", vec![0.5, 0.7]);
        let b = report("srl", vec![0.6, 0.65]);
        let md = a.to_markdown();
        assert!(md.contains("| sts-test Spearman | 0.5000 | 0.7000 | 0.6000 |"), "{md}");
        assert!(md.contains("| 2 | 0.3000 | 0.4000 |"), "{md}");
        let cmp = compare(&[a.clone(), b]);
        assert!(cmp.contains("| srl | 0.6000 (+0.1000) | 0.6500 (-0.0500) | 0.6250 (+0.0250) |"), "{cmp}");
        let svg = heatmap_svg(a.grid.as_ref().unwrap(), "base <grid>");
        assert!(svg.starts_with("<svg") && svg.contains("base &lt;grid&gt;") && svg.matches("<rect").count() == 5);
        assert!(svg.contains(">0.400<") && svg.contains("layers") && svg.contains("dims"));
        assert!(md.contains("| query \\ corpus | (2, 64) | (6, 384) |"), "{md}");
        assert!(md.contains("| (1, 32) | 0.5000 | 0.6000 |"), "{md}");
        let svg = cross_heatmap_svg(&a.cross[0], "base: cross");
        assert!(svg.matches("<rect").count() == 5 && svg.contains(">(6, 384)<") && svg.contains(">0.800<"));
        assert!(svg.contains("query size") && svg.contains("corpus size"));
    }
}
