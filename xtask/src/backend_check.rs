//! `cargo xtask backend-check --backend B`: runs the `starbucks` CLI built for backend B beside
//! the one built for flex, on the same inputs, and compares what they computed: embeddings at
//! every size of the MiniLM list (B runs burn's generic encoder; flex runs the CPU encoder), and
//! each step's loss and per-size terms of short SRL, 2DMSE and SMAE runs with dropout off.
//! CI runs it for wgpu on Mesa's software Vulkan driver (`docs/gpu.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::experiment::record::write_atomic;
use crate::flags::Backend;
use crate::{cli, fetch};

/// Largest |difference| allowed between two embeddings' components.
const EMBED_TOLERANCE: f64 = 1e-4;
/// Largest relative difference allowed between two steps' losses or terms; `ABSOLUTE_FLOOR`
/// keeps a term near zero from failing on rounding alone.
const LOSS_TOLERANCE: f64 = 1e-4;
const ABSOLUTE_FLOOR: f64 = 1e-6;

/// Learning rate of every run. AdamW's first steps move each weight by about ±lr whatever the
/// size of its gradient, so weights whose gradients are near zero, and differ in sign between
/// backends only by rounding, move apart by up to 2·lr: at 5e-5 that put step 2's terms
/// 8e-5 to 2.5e-4 apart (relative), at 1e-5 below 4e-5.
const LR: f64 = 1e-5;

/// The check's shapes, small: lavapipe runs a vocabulary product at a few hundred MFLOP/s, and
/// a cold cubecl tunes each new matmul shape by running every candidate kernel 13 times at its
/// real size (at 32 sentences, batch 4 and 64 tokens a first run took over 45 minutes on a
/// 2-core Zen 3, half of it tuning; docs/ci.md). The parity checked is the same at any shape.
const SENTENCES: usize = 8;
const BATCH_SIZE: usize = 2;
const MAX_SEQ_LENGTH: usize = 32;
/// SMAE's FineWeb windows: its vocabulary products grow with them.
const SMAE_MAX_LEN: usize = 16;

/// One short training run: (name, task, method, sizes), all at [`BATCH_SIZE`] with dropout off.
/// SMAE predicts the masked tokens of every size (MLM and decoder terms) in one vocabulary
/// product, which grows with the sizes, so it trains two, the smallest and the full: with all
/// six, tuning its vocabulary products took 8 of its 12 cold minutes.
const RUNS: [(&str, &str, &str, &str); 3] = [
    ("srl", "finetune", "srl", "minilm"),
    ("2dmse", "finetune", "2dmse", "minilm"),
    ("smae", "pretrain", "smae", "1,32 6,384"),
];

/// One comparison's outcome, printed as a row.
struct Row {
    what: String,
    worst: f64,
    tolerance: f64,
    detail: String,
}

impl Row {
    fn passed(&self) -> bool {
        self.worst <= self.tolerance
    }
}

/// The training config of one short run, written out in full so that the check does not move
/// when a demo preset does.
fn config(root: &Path, head_model: &Path, task: &str, method: &str, sizes: &str) -> String {
    let model = if task == "pretrain" { head_model.to_path_buf() } else { root.join(fetch::MINILM_DIR) };
    let (data, steps) = match task {
        "pretrain" => (
            format!(
                "format = \"fineweb\"\npath = {:?}\nmax_len = {SMAE_MAX_LEN}",
                root.join("data/fineweb/fineweb-subset-300.json.gz")
            ),
            2,
        ),
        _ => (format!("format = \"triplets\"\npath = {:?}", root.join("data/nli/snli-triplets.tsv.gz")), 3),
    };
    format!(
        "task = \"{task}\"\noutput = \"runs/{method}\"\n\n\
         [model]\npath = {model:?}\nmax_seq_length = {MAX_SEQ_LENGTH}\ndropout = 0.0\n\n\
         [data]\n{data}\n\n\
         [objective]\nmethod = \"{method}\"\nsizes = \"{sizes}\"\n\n\
         [train]\nseed = 42\nbatch_size = {BATCH_SIZE}\nmax_steps = {steps}\nlr = {LR}\nwarmup_ratio = 0.0\nlog_every = 1\n\n\
         [checkpoint]\nevery = 1000\n"
    )
}

/// all-MiniLM-L6-v2 with an MLM head added (`cls.predictions.*`, dense weights drawn here from a
/// fixed seed, uniform ±0.035 ≈ HF's normal 0.02): SMAE otherwise draws a new head on the
/// backend's own generator, which differs between backends.
fn model_with_head(minilm: &Path, dest: &Path) -> Result<()> {
    if dest.join("model.safetensors").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dest)?;
    for entry in std::fs::read_dir(minilm)? {
        let entry = entry?;
        if entry.file_type()?.is_file() && entry.file_name() != "model.safetensors" {
            std::fs::copy(entry.path(), dest.join(entry.file_name()))?;
        }
    }
    let file = minilm.join("model.safetensors");
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let mut header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + n])?;
    let mut data = bytes[8 + n..].to_vec();
    let config: Value = serde_json::from_slice(&std::fs::read(minilm.join("config.json"))?)?;
    let (h, vocab) =
        (config["hidden_size"].as_u64().context("hidden_size")?, config["vocab_size"].as_u64().context("vocab_size")?);
    let mut state: u64 = 0x5eed_2d2d;
    let mut uniform = || {
        // xorshift64*: reproducible without a crate.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        ((state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.07
    };
    let dense: Vec<f32> = (0..h * h).map(|_| uniform()).collect();
    let tensors: [(&str, Vec<u64>, Vec<f32>); 5] = [
        ("cls.predictions.transform.dense.weight", vec![h, h], dense),
        ("cls.predictions.transform.dense.bias", vec![h], vec![0.0; h as usize]),
        ("cls.predictions.transform.LayerNorm.weight", vec![h], vec![1.0; h as usize]),
        ("cls.predictions.transform.LayerNorm.bias", vec![h], vec![0.0; h as usize]),
        ("cls.predictions.bias", vec![vocab], vec![0.0; vocab as usize]),
    ];
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        let entry = serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]});
        header.insert(name.to_string(), entry);
    }
    let mut header = serde_json::to_vec(&header)?;
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    write_atomic(&dest.join("model.safetensors"), out)
}

/// Runs one CLI invocation in `dir`, its output kept in `log`; a failure shows the log's end.
fn run_cli(binary: &Path, dir: &Path, args: &[String], log: &Path) -> Result<f64> {
    let started = Instant::now();
    let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let status = Command::new(binary)
        .current_dir(dir)
        .args(args)
        .env("STARBUCKS_LOG", "info,cubecl_runtime=warn,cubecl_wgpu=warn")
        // Mesa keeps the shaders its drivers compiled (lavapipe's, through LLVM) beside cubecl's
        // autotune results, so both last as long as the target directory (its default is under
        // $HOME, which a fresh CI machine does not keep).
        .env("MESA_SHADER_CACHE_DIR", cli::target_dir().join("mesa-shader-cache"))
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("`{} {}` failed ({status}):\n{}", binary.display(), args.join(" "), tail.join("\n"));
    }
    Ok(started.elapsed().as_secs_f64())
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| serde_json::from_str(line).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1)))
        .collect()
}

/// The largest |a − b| over two files of embeddings, one JSON array per line.
fn embedding_difference(a: &Path, b: &Path) -> Result<f64> {
    let (a, b) = (read_jsonl(a)?, read_jsonl(b)?);
    if a.len() != b.len() {
        bail!("{} and {} embeddings", a.len(), b.len());
    }
    let mut worst: f64 = 0.0;
    for (x, y) in a.iter().zip(&b) {
        let (x, y) = (x.as_array().context("not an array")?, y.as_array().context("not an array")?);
        if x.len() != y.len() {
            bail!("{} and {} dims", x.len(), y.len());
        }
        for (p, q) in x.iter().zip(y) {
            worst = worst.max((p.as_f64().unwrap_or(f64::NAN) - q.as_f64().unwrap_or(f64::NAN)).abs());
        }
    }
    Ok(worst)
}

/// Each logged step's loss and terms by name.
fn steps(path: &Path) -> Result<Vec<BTreeMap<String, f64>>> {
    read_jsonl(path)?
        .into_iter()
        .map(|line| {
            let mut values = BTreeMap::new();
            values.insert("loss".to_string(), line["loss"].as_f64().context("no loss")?);
            for (name, value) in line["terms"].as_object().context("no terms")? {
                values.insert(name.clone(), value.as_f64().context("a term is not a number")?);
            }
            Ok(values)
        })
        .collect()
}

fn relative(a: f64, b: f64) -> f64 {
    let difference = (a - b).abs();
    if difference <= ABSOLUTE_FLOOR { 0.0 } else { difference / a.abs().max(b.abs()) }
}

/// Compares two runs step by step; the row names the worst value and lists every loss.
fn compare_steps(name: &str, peer: &Path, subject: &Path, backend: &str) -> Result<Row> {
    let (a, b) = (steps(peer)?, steps(subject)?);
    if a.len() != b.len() || a.is_empty() {
        bail!("{name}: flex logged {} steps, {backend} {}", a.len(), b.len());
    }
    let (mut worst, mut at) = (0.0, String::new());
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        if x.keys().ne(y.keys()) {
            bail!("{name} step {}: the terms differ: {:?} and {:?}", step + 1, x.keys(), y.keys());
        }
        for (key, &p) in x {
            let r = relative(p, y[key]);
            if r > worst || r.is_nan() {
                (worst, at) = (if r.is_nan() { f64::INFINITY } else { r }, format!("step {} {key}", step + 1));
            }
        }
    }
    let losses: Vec<String> = a.iter().zip(&b).map(|(x, y)| format!("{:.6}/{:.6}", x["loss"], y["loss"])).collect();
    let terms = a.iter().map(|x| x.len() - 1).sum::<usize>();
    let detail = format!("losses flex/{backend} {}; {terms} terms; worst at {at}", losses.join(" "));
    Ok(Row { what: format!("{name}, {} steps", a.len()), worst, tolerance: LOSS_TOLERANCE, detail })
}

/// Builds the CLI for `backend` and for flex, each copied aside (both builds write one path).
fn binaries(backend: Backend, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let mut built = Vec::new();
    for b in [Backend::Flex, backend] {
        let path = dir.join(format!("starbucks-{}", b.feature()));
        std::fs::copy(cli::build(b)?, &path).with_context(|| format!("cannot copy the CLI to {}", path.display()))?;
        built.push(path);
    }
    Ok((built.remove(0), built.remove(0)))
}

pub fn run(backend: Backend) -> Result<()> {
    if backend == Backend::Flex {
        bail!("backend-check compares a backend with flex: pass --backend wgpu, cuda or ndarray");
    }
    let root = fetch::workspace_root();
    fetch::run("minilm")?;
    let dir = cli::target_dir().join("backend-check").join(backend.feature());
    let runs = dir.join("runs");
    if runs.exists() {
        std::fs::remove_dir_all(&runs).with_context(|| format!("cannot clear {}", runs.display()))?;
    }
    std::fs::create_dir_all(&runs).with_context(|| format!("cannot create {}", runs.display()))?;
    // cubecl keeps its autotune results in the target directory, where the next run finds them
    // (its default is a `target/` found from the working directory), and tunes minimally: on a
    // software driver a balanced tuning of SMAE's vocabulary products alone takes minutes.
    let autotune = cli::target_dir().join("cubecl");
    let cubecl = format!("[autotune]\nlevel = \"minimal\"\ncache = {{ file = {autotune:?} }}\n");
    std::fs::write(dir.join("cubecl.toml"), cubecl)?;
    let head_model = dir.join("minilm-with-mlm-head");
    model_with_head(&root.join(fetch::MINILM_DIR), &head_model)?;
    let (peer, subject) = binaries(backend, &dir)?;
    let name = backend.feature();
    let model = root.join(fetch::MINILM_DIR).display().to_string();
    let reference = root.join("tests/reference/sentences.txt");
    let text = std::fs::read_to_string(&reference).with_context(|| format!("cannot read {}", reference.display()))?;
    let first: Vec<&str> = text.lines().take(SENTENCES).collect();
    let sentences = dir.join("sentences.txt");
    std::fs::write(&sentences, first.join("\n") + "\n")?;
    let sentences = sentences.display().to_string();
    let mut rows = Vec::new();
    let mut seconds: BTreeMap<&str, f64> = BTreeMap::new();

    for (layers, dims) in fetch::MINILM_SIZES {
        let mut outputs = Vec::new();
        for (label, binary) in [("flex", &peer), (name, &subject)] {
            let output = runs.join(format!("embed-{layers}x{dims}-{label}.jsonl"));
            let args = ["embed", "--model", &model, "--size", &format!("{layers},{dims}"), "--input", &sentences];
            let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            args.extend(["--output".to_string(), output.display().to_string()]);
            *seconds.entry(label).or_default() += run_cli(binary, &dir, &args, &output.with_extension("log"))?;
            outputs.push(output);
        }
        let worst = embedding_difference(&outputs[0], &outputs[1])?;
        let what = format!("embed ({layers},{dims})");
        rows.push(Row {
            what,
            worst,
            tolerance: EMBED_TOLERANCE,
            detail: format!("{SENTENCES} sentences, max |difference|"),
        });
    }

    for (run, task, method, sizes) in RUNS {
        let config = dir.join(format!("{run}.toml"));
        std::fs::write(&config, self::config(&root, &head_model, task, method, sizes))?;
        let mut metrics = Vec::new();
        for (label, binary) in [("flex", &peer), (name, &subject)] {
            let output = runs.join(format!("{run}-{label}"));
            let args = [
                task,
                "--config",
                &config.display().to_string(),
                "--output",
                &output.display().to_string(),
                "--no-progress",
            ];
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            *seconds.entry(label).or_default() +=
                run_cli(binary, &dir, &args, &runs.join(format!("{run}-{label}.log")))?;
            metrics.push(output.join("metrics.jsonl"));
        }
        rows.push(compare_steps(run, &metrics[0], &metrics[1], name)?);
    }

    println!("\n{name} against flex (same inputs; dropout off for training):");
    println!("| check | worst | tolerance | result | detail |\n|---|---|---|---|---|");
    for row in &rows {
        let result = if row.passed() { "pass" } else { "FAIL" };
        println!("| {} | {:.2e} | {:.0e} | {result} | {} |", row.what, row.worst, row.tolerance, row.detail);
    }
    let times: Vec<String> = seconds.iter().map(|(label, s)| format!("{label} {s:.0} s")).collect();
    println!("wall clock of the runs: {}; logs and outputs in {}", times.join(", "), runs.display());
    let failed = rows.iter().filter(|r| !r.passed()).count();
    println!("backend-check: {} passed, {failed} failed", rows.len() - failed);
    if failed > 0 {
        bail!("{failed} of {} checks of {name} against flex failed", rows.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_differences_have_a_floor_near_zero() {
        assert_eq!(relative(1e-9, 2e-9), 0.0);
        assert!((relative(8.225191, 8.225186) - 6.1e-7).abs() < 1e-8);
        assert!(relative(1.0, 1.001) > LOSS_TOLERANCE);
        assert!(relative(f64::NAN, 1.0).is_nan());
    }

    #[test]
    fn the_generated_configs_are_complete_runs() {
        let text = config(Path::new("/r"), Path::new("/h"), "finetune", "srl", "minilm");
        let value: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(value["model"]["dropout"].as_float(), Some(0.0));
        assert_eq!(value["train"]["batch_size"].as_integer(), Some(BATCH_SIZE as i64));
        assert_eq!(value["model"]["max_seq_length"].as_integer(), Some(MAX_SEQ_LENGTH as i64));
        assert_eq!(value["data"]["path"].as_str(), Some("/r/data/nli/snli-triplets.tsv.gz"));
        let text = config(Path::new("/r"), Path::new("/h"), "pretrain", "smae", "1,32 6,384");
        let value: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(value["data"]["format"].as_str(), Some("fineweb"));
        assert_eq!(value["model"]["path"].as_str(), Some("/h"));
        assert_eq!(value["train"]["max_steps"].as_integer(), Some(2));
    }
}
