//! Writes an experiment's results into a page of `docs/`: the page's own text (the reading of
//! the results, written by hand) ends at a marker line, and everything below it is replaced by
//! the results, so the page's numbers are always the command's.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::record::write_atomic;

/// The line that ends the hand-written part of the page.
pub fn marker(preset: &str) -> String {
    format!("<!-- Everything below is written by `cargo xtask experiment --preset {preset}`. -->")
}

/// Replaces what follows the marker in `page` by `results` (from the record folder `record`),
/// one heading level down and with its links made relative to the page.
pub fn write(page: &Path, record: &Path, preset: &str, results: &str) -> Result<()> {
    let text = std::fs::read_to_string(page).with_context(|| format!("{}: cannot read", page.display()))?;
    let marker = marker(preset);
    let Some(end) = text.find(&marker) else {
        bail!("{}: no line `{marker}` to write the results below", page.display());
    };
    let folder = page.parent().expect("a page in a folder");
    let Ok(relative) = record.strip_prefix(folder) else {
        bail!("the record {} is not inside {}, the folder of the page", record.display(), folder.display());
    };
    let prefix = format!("]({}/", relative.display());
    let body: Vec<String> = results
        .lines()
        .map(|line| {
            let line = line.replace("](eval/", &format!("{prefix}eval/"));
            if line.starts_with('#') { format!("#{line}") } else { line }
        })
        .collect();
    write_atomic(page, format!("{}{marker}\n\n{}\n", &text[..end], body.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reading_is_kept_and_the_results_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("results.md");
        let record = dir.path().join("results").join("x");
        std::fs::write(&page, format!("# Reading\n\nSRL holds.\n\n{}\n\nold numbers\n", marker("x"))).unwrap();
        let results = "# Experiment `x`\n\n| a | 1 |\n\n![SRL](eval/srl/grid-srl.svg)\n";
        write(&page, &record, "x", results).unwrap();
        let want = format!(
            "# Reading\n\nSRL holds.\n\n{}\n\n## Experiment `x`\n\n| a | 1 |\n\n![SRL](results/x/eval/srl/grid-srl.svg)\n",
            marker("x")
        );
        assert_eq!(std::fs::read_to_string(&page).unwrap(), want);
        // Written again, the same page.
        write(&page, &record, "x", results).unwrap();
        assert_eq!(std::fs::read_to_string(&page).unwrap(), want);

        std::fs::write(&page, "no marker\n").unwrap();
        let error = write(&page, &record, "x", results).unwrap_err().to_string();
        assert!(error.contains("results.md: no line `<!-- Everything below"), "{error}");
        assert_eq!(std::fs::read_to_string(&page).unwrap(), "no marker\n");
        std::fs::write(&page, marker("x")).unwrap();
        let error = write(&page, Path::new("/elsewhere"), "x", results).unwrap_err().to_string();
        assert!(error.contains("not inside"), "{error}");
    }
}
