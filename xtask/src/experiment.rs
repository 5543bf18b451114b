//! `cargo xtask experiment --preset minilm-nli`: the paper's comparison, rerun at small scale.
//! A preset is a file of `configs/experiments/` (`preset.rs`).
//! From one checkpoint, with the same data, steps and batch, once per seed of the preset, it trains
//!
//! - single-size fine-tuning at the full size (`single`);
//! - one model per size, trained on that size alone (`separate-NxD`; the full size is `single`);
//! - the 2DMSE baseline (`2dmse`);
//! - SRL (`srl`);
//! - SMAE on the preset's web text (`smae`), then SRL from it (`smae-srl`);
//! - where the preset asks for it (its `methods` pick among these), SRL-deep (`srl-deep`,
//!   docs/objectives.md);
//!
//! then SRL on the preset's other size lists (`srl-list-<name>`) and short runs that measure the
//! cost of a step and the peak memory (`cost-<method>-b<batch>-r<round>`). It evaluates every
//! model and the untouched checkpoint on STS-B test at every size (the full layer × dim grid for
//! the one-model methods, and the query × corpus size grid when the preset names one; TREC DL
//! 2020 nDCG@10 too when the preset names it), and writes
//! `results.md` with the tables, the checks, heat-maps and the cost of every stage
//! (`results.rs`).
//!
//! Every stage is a `starbucks` subcommand writing its own folder under the output; an
//! interrupted run resumes from its checkpoint, so the command can be stopped and rerun. A
//! finished stage's small files (metrics, config, evaluation report, wall clock, peak memory) go
//! to the preset's record folder (`record.rs`), which is committed: a clone on another machine
//! skips the stages recorded there. Delete a stage's record (and its output folder) to redo it.

mod document;
mod preset;
pub(crate) mod record;
mod results;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

pub use self::preset::Preset;
use self::record::Record;
use self::results::results;
use crate::flags::{Backend, ExperimentOptions};
use crate::{cli, fetch};

/// The preset `name` (`configs/experiments/<name>.toml`).
pub fn preset(name: &str) -> Result<Preset> {
    preset::load(name)
}

/// A training stage: `starbucks <task> --config … --set …` into `<output>/<run>`.
struct Train {
    task: &'static str,
    config: String,
    set: Vec<String>,
}

/// What a run's model is evaluated on: STS-B test (and TREC DL 2020 when the preset has it) at
/// `sizes`, plus the grid.
struct Eval {
    model: PathBuf,
    sizes: String,
    /// The layer × dim grid and, when the preset names one, the query × corpus size grid.
    grid: bool,
}

/// One stage folder under the output: trained (unless it is the untouched checkpoint), then
/// evaluated (unless it only feeds another run or measures cost).
struct Run {
    name: String,
    train: Option<Train>,
    eval: Option<Eval>,
    /// The run that starts from this one's model (SMAE → SRL): this one is needed until that
    /// one is done.
    feeds: Option<String>,
}

/// One row of the comparison: its runs, whose evaluations give its value at each size.
struct Method {
    label: &'static str,
    /// For each seed, the evaluated runs: one, or one per size (separately trained).
    seeds: Vec<Vec<String>>,
    /// Every run it took (for the cost table).
    runs: Vec<String>,
}

/// SRL on another size list, against the preset's (`srl`, first seed) over the whole grid.
struct ListRow {
    name: String,
    sizes: String,
    run: String,
}

/// A short run that measures the cost of a step and the peak memory.
struct CostRun {
    method: String,
    batch: usize,
    round: usize,
    run: String,
}

/// Everything an experiment runs, in order, and how the results read the runs.
struct Plan {
    runs: Vec<Run>,
    methods: Vec<Method>,
    lists: Vec<ListRow>,
    costs: Vec<CostRun>,
}

/// A run's name for a seed: `srl`, or `srl-seed42` when the preset has seeds.
fn seeded(name: &str, seed: Option<u64>) -> String {
    seed.map_or_else(|| name.to_string(), |s| format!("{name}-seed{s}"))
}

/// Makes the runs of one preset: every fine-tuning shares the preset's overrides and size list.
struct Runs<'a> {
    preset: &'a Preset,
    out: &'a Path,
    list: Vec<Run>,
}

impl Runs<'_> {
    /// Evaluation at every size of the list and over the grid.
    fn every_size(&self, model: PathBuf) -> Eval {
        Eval { model, sizes: self.preset.sizes.clone(), grid: true }
    }

    /// A fine-tuning run from `model` with `set` after the preset's overrides, evaluated at
    /// every size.
    fn finetune(&mut self, name: &str, model: &str, seed: Option<u64>, set: &[String]) -> &mut Run {
        let mut all: Vec<String> = self.preset.finetune_set.clone();
        all.extend([format!("model.path={model}"), format!("objective.sizes={}", self.preset.sizes)]);
        all.extend(seed.map(|s| format!("train.seed={s}")));
        all.extend_from_slice(set);
        let eval = Some(self.every_size(self.out.join(name).join("model")));
        let train = Some(Train { task: "finetune", config: self.preset.finetune.clone(), set: all });
        self.list.push(Run { name: name.into(), train, eval, feeds: None });
        self.list.last_mut().expect("just pushed")
    }

    /// SMAE pre-training from the base checkpoint, kept for `feeds`.
    fn pretrain(&mut self, name: &str, seed: Option<u64>, feeds: &str) {
        let mut set: Vec<String> = self.preset.pretrain_set.clone();
        set.extend([format!("model.path={}", self.preset.base), format!("objective.sizes={}", self.preset.sizes)]);
        set.extend(seed.map(|s| format!("train.seed={s}")));
        let train = Some(Train { task: "pretrain", config: self.preset.pretrain.clone(), set });
        self.list.push(Run { name: name.into(), train, eval: None, feeds: Some(feeds.into()) });
    }
}

fn method_set(name: &str) -> Vec<String> {
    vec![format!("objective.method={name}")]
}

/// The runs of one seed the methods read.
struct SeedRuns {
    single: String,
    /// One per size, the full size's being `single`.
    separate: Vec<String>,
    mse_2d: String,
    srl: String,
    smae: String,
    smae_srl: String,
    srl_deep: String,
}

/// A method's runs for one seed: those evaluated, and every one it took.
type MethodRuns = (Vec<String>, Vec<String>);

/// Every method of the comparison for one seed, each evaluated right after it is trained.
fn seed_runs(runs: &mut Runs, seed: Option<u64>) -> SeedRuns {
    let base = runs.preset.base.clone();
    let sizes = runs.preset.sizes();
    let name = |run: &str| seeded(run, seed);
    let seed_runs = SeedRuns {
        single: name("single"),
        separate: sizes[..sizes.len() - 1]
            .iter()
            .map(|s| name(&format!("separate-{}", s.replace(',', "x"))))
            .chain([name("single")])
            .collect(),
        mse_2d: name("2dmse"),
        srl: name("srl"),
        smae: name("smae"),
        smae_srl: name("smae-srl"),
        srl_deep: name("srl-deep"),
    };
    let preset = runs.preset;
    // The separately trained row reads its full size from `single`.
    let wanted = [
        ("srl", &seed_runs.srl, preset.trains("srl")),
        ("2dmse", &seed_runs.mse_2d, preset.trains("2dmse")),
        ("single", &seed_runs.single, preset.trains("single") || preset.trains("separate")),
    ];
    for (method, run, _) in wanted.into_iter().filter(|w| w.2) {
        runs.finetune(run, &base, seed, &method_set(method));
    }
    let separate = sizes.iter().zip(&seed_runs.separate).take(sizes.len() - 1);
    for (size, run_name) in separate.filter(|_| preset.trains("separate")) {
        let set = [method_set("single"), vec![format!("objective.size={size}")]].concat();
        let model = runs.out.join(run_name).join("model");
        runs.finetune(run_name, &base, seed, &set).eval = Some(Eval { model, sizes: size.clone(), grid: false });
    }
    if preset.trains("smae-srl") {
        runs.pretrain(&seed_runs.smae, seed, &seed_runs.smae_srl);
        let smae_model = runs.out.join(&seed_runs.smae).join("model").display().to_string();
        runs.finetune(&seed_runs.smae_srl, &smae_model, seed, &method_set("srl"));
    }
    if preset.trains("srl-deep") {
        runs.finetune(&seed_runs.srl_deep, &base, seed, &method_set("srl-deep"));
    }
    seed_runs
}

/// SRL on each of the preset's other size lists, from the first seed.
fn list_runs(runs: &mut Runs) -> Vec<ListRow> {
    let (preset, first) = (runs.preset, runs.preset.seeds()[0]);
    let mut lists = Vec::new();
    for list in &preset.size_lists {
        let name = seeded(&format!("srl-list-{}", list.name), first);
        let set = [method_set("srl"), vec![format!("objective.sizes={}", list.sizes)]].concat();
        runs.finetune(&name, &preset.base, first, &set);
        lists.push(ListRow { name: list.name.clone(), sizes: list.sizes.clone(), run: name });
    }
    lists
}

/// The short cost runs, not evaluated: every method at a batch size, then the next size; the
/// whole sweep `rounds` times.
fn cost_runs(runs: &mut Runs) -> Vec<CostRun> {
    let (preset, first) = (runs.preset, runs.preset.seeds()[0]);
    let Some(cost) = &preset.cost else { return Vec::new() };
    let mut costs = Vec::new();
    for round in 1..=cost.rounds {
        for &batch in &cost.batch_sizes {
            for method in &cost.methods {
                let name = format!("cost-{method}-b{batch}-r{round}");
                let steps = cost.steps;
                let limits = [
                    format!("train.batch_size={batch}"),
                    format!("train.max_steps={steps}"),
                    format!("checkpoint.every={steps}"),
                ];
                let set = [method_set(method), limits.to_vec()].concat();
                runs.finetune(&name, &preset.base, first, &set).eval = None;
                costs.push(CostRun { method: method.clone(), batch, round, run: name });
            }
        }
    }
    costs
}

/// Every run in the order they go (each evaluated right after it is trained, so a stopped
/// experiment has whole rows; every method of one seed before the next seed), and the methods
/// compared, in the order of the tables.
fn plan(preset: &Preset, out: &Path) -> Plan {
    let mut runs = Runs { preset, out, list: Vec::new() };
    let untouched = runs.every_size(preset.base.clone().into());
    runs.list.push(Run { name: "untouched".into(), train: None, eval: Some(untouched), feeds: None });
    let seeds: Vec<SeedRuns> = preset.seeds().into_iter().map(|seed| seed_runs(&mut runs, seed)).collect();
    let lists = list_runs(&mut runs);
    let costs = cost_runs(&mut runs);

    // Each method's evaluated runs per seed, and every run it took.
    let method = |label, read: &dyn Fn(&SeedRuns) -> MethodRuns| {
        let (evals, trained): (Vec<_>, Vec<_>) = seeds.iter().map(read).unzip();
        Method { label, seeds: evals, runs: trained.concat() }
    };
    let one = |run: &String| (vec![run.clone()], vec![run.clone()]);
    let mut methods = vec![Method { label: "untouched", seeds: vec![vec!["untouched".into()]], runs: vec![] }];
    // (the preset's name of the method, its label, how it reads a seed's runs)
    type Row<'a> = (&'static str, &'static str, &'a dyn Fn(&SeedRuns) -> MethodRuns);
    let rows: [Row; 6] = [
        ("single", "single size (full)", &|s| one(&s.single)),
        ("separate", "separately trained", &|s| (s.separate.clone(), s.separate.clone())),
        ("2dmse", "2DMSE", &|s| one(&s.mse_2d)),
        ("srl", "SRL", &|s| one(&s.srl)),
        ("smae-srl", "SMAE → SRL", &|s| (vec![s.smae_srl.clone()], vec![s.smae.clone(), s.smae_srl.clone()])),
        ("srl-deep", "SRL-deep", &|s| one(&s.srl_deep)),
    ];
    methods
        .extend(rows.into_iter().filter(|(name, ..)| preset.trains(name)).map(|(_, label, read)| method(label, read)));
    Plan { runs: runs.list, methods, lists, costs }
}

/// Runs the `starbucks` binary; a failure names the stage. Returns the peak resident memory of
/// the process in KiB.
fn starbucks(binary: &Path, stage: &str, args: &[String]) -> Result<u64> {
    println!("\n== {stage}: starbucks {}", args.join(" "));
    let child = Command::new(binary)
        .args(args)
        .current_dir(fetch::workspace_root())
        .spawn()
        .with_context(|| format!("{}: cannot start", binary.display()))?;
    let (status, peak_kib) = record::wait_with_peak_memory(child)?;
    if !status.success() {
        bail!("stage {stage} failed ({status}); its error is above. Rerun the command to resume from here");
    }
    Ok(peak_kib)
}

fn check_inputs(preset: &Preset) -> Result<()> {
    let root = fetch::workspace_root();
    for path in preset.inputs() {
        // A hub id (`org/name`) that is not a local path is fetched by the run itself.
        let hub_id = path.split('/').count() == 2 && !path.starts_with('.');
        if !root.join(path).exists() && !hub_id {
            bail!("preset {}: {path} is missing", preset.name);
        }
    }
    Ok(())
}

fn train_args(train: &Train, dir: &Path) -> Vec<String> {
    let mut args = vec![train.task.to_string(), "--config".into(), train.config.clone()];
    args.extend(["--output".into(), dir.display().to_string(), "--resume".into()]);
    for set in &train.set {
        args.extend(["--set".into(), set.clone()]);
    }
    args
}

fn eval_args(preset: &Preset, run: &Run, eval: &Eval, dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec!["eval".into(), "--model".into(), eval.model.display().to_string()];
    args.extend(["--name".into(), run.name.clone(), "--sizes".into(), eval.sizes.clone()]);
    args.extend(["--stsb".into(), preset.stsb.clone()]);
    for dir in &preset.semeval {
        args.extend(["--semeval".into(), dir.clone()]);
    }
    if let Some(sick) = &preset.sick {
        args.extend(["--sick".into(), sick.clone()]);
    }
    for spec in &preset.sts {
        args.extend(["--sts".into(), spec.clone()]);
    }
    for spec in &preset.beir {
        args.extend(["--beir".into(), spec.clone()]);
    }
    if eval.grid {
        args.extend(["--grid".into(), "--grid-dims".into(), preset.grid_dims.clone()]);
        if let Some(cross) = &preset.cross {
            args.extend(["--query-sizes".into(), cross.query_sizes.clone()]);
            args.extend(["--corpus-sizes".into(), cross.corpus_sizes.clone()]);
        }
    }
    if let Some(r) = &preset.retrieval {
        for (flag, value) in
            [("--corpus", &r.corpus), ("--queries", &r.queries), ("--qrels", &r.qrels), ("--rerank", &r.rerank)]
        {
            args.extend([flag.into(), value.clone()]);
        }
    }
    // Every model reads the same tokens: the fine-tuning length (the untouched folder says 256).
    args.extend(["--max-seq-length".into(), preset.max_seq_length.to_string()]);
    // The NLI models are trained for the cosine of their own (mean) pooling.
    args.extend(["--similarity", "cosine", "--no-throughput", "--output"].map(String::from));
    args.push(dir.display().to_string());
    args
}

/// Whether `run` needs nothing more: its evaluation is recorded, or (a run that is not
/// evaluated) its training is and the run it feeds is done too.
fn done(record: &Record, run: &Run, runs: &[Run]) -> bool {
    if run.eval.is_some() {
        return record.has_eval(&run.name);
    }
    let fed_done = run
        .feeds
        .as_ref()
        .is_none_or(|fed| runs.iter().find(|r| &r.name == fed).is_some_and(|r| done(record, r, runs)));
    record.has_training(&run.name) && fed_done
}

pub fn run(backend: Backend, options: ExperimentOptions) -> Result<()> {
    let preset = &preset(&options.preset)?;
    for target in &preset.fetch {
        fetch::run(target)?;
    }
    check_inputs(preset)?;
    let root = fetch::workspace_root();
    let out = options.output.unwrap_or_else(|| PathBuf::from(format!("runs/experiment-{}", preset.name)));
    let out = if out.is_absolute() { out } else { root.join(out) };
    let record = Record::new(out.clone(), preset.record.as_ref().map(|r| root.join(r)))?;
    let binary = cli::build(backend)?;
    let plan = plan(preset, &out);

    for run in &plan.runs {
        if done(&record, run, &plan.runs) {
            println!("== {}: done, recorded in {}", run.name, record.dir().display());
            continue;
        }
        let dir = out.join(&run.name);
        if let Some(train) = &run.train {
            if dir.join("model").join("config.json").exists() {
                println!("== {}: trained, reused ({})", run.name, dir.display());
            } else {
                let started = Instant::now();
                let peak = starbucks(&binary, &run.name, &train_args(train, &dir))?;
                record.time(&run.name, started, peak)?;
            }
            record.keep_training(&run.name)?;
        }
        if let Some(eval) = &run.eval {
            let stage = format!("eval-{}", run.name);
            let dir = out.join("eval").join(&run.name);
            if dir.join("report.json").exists() {
                println!("== {stage}: evaluated, reused ({})", dir.display());
            } else {
                let started = Instant::now();
                let peak = starbucks(&binary, &stage, &eval_args(preset, run, eval, &dir))?;
                record.time(&stage, started, peak)?;
            }
            record.keep_eval(&run.name)?;
        }
    }

    let results = results(preset, record.dir(), &plan)?;
    let path = record.dir().join("results.md");
    record::write_atomic(&path, &results)?;
    println!("\n{results}\nwritten to {}", path.display());
    if let Some(page) = &preset.document {
        document::write(&root.join(page), record.dir(), &preset.name, &results)?;
        println!("and into {page}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn minilm() -> Preset {
        preset("minilm-nli").unwrap()
    }

    fn snli_train() -> Preset {
        preset("minilm-snli-train").unwrap()
    }

    #[test]
    fn every_method_trains_from_the_same_checkpoint_and_settings() {
        let out = Path::new("/x");
        let Plan { runs, methods, lists, costs } = plan(&minilm(), out);
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "untouched",
                "srl",
                "2dmse",
                "single",
                "separate-1x32",
                "separate-2x64",
                "separate-3x96",
                "separate-4x128",
                "separate-5x256",
                "smae",
                "smae-srl"
            ]
        );
        assert!(lists.is_empty() && costs.is_empty());
        for run in &runs {
            let Some(train) = &run.train else { continue };
            let has = |key: &str| train.set.iter().any(|s| s == key);
            assert!(!train.set.iter().any(|s| s.starts_with("train.seed=")), "{}: the config's seed", run.name);
            if train.task == "finetune" {
                assert!(has("train.max_steps=184"), "{}", run.name);
                assert!(has(&format!("objective.sizes={}", minilm().sizes)), "{}", run.name);
                let model = if run.name == "smae-srl" { "/x/smae/model" } else { fetch::MINILM_DIR };
                assert!(has(&format!("model.path={model}")), "{}: {:?}", run.name, train.set);
            }
        }
        let separate = runs.iter().find(|r| r.name == "separate-3x96").unwrap();
        assert!(separate.train.as_ref().unwrap().set.iter().any(|s| s == "objective.size=3,96"));
        let eval = separate.eval.as_ref().unwrap();
        assert_eq!((eval.sizes.as_str(), eval.grid), ("3,96", false));
        let smae = runs.iter().find(|r| r.name == "smae").unwrap();
        assert!(smae.eval.is_none() && smae.feeds.as_deref() == Some("smae-srl"));
        // The separately trained row reads each size from its own model, the full size from `single`.
        let row = methods.iter().find(|m| m.label == "separately trained").unwrap();
        assert_eq!(row.seeds.len(), 1);
        assert_eq!(row.seeds[0].first().unwrap(), "separate-1x32");
        assert_eq!(row.seeds[0].last().unwrap(), "single");
    }

    #[test]
    fn seeds_size_lists_and_cost_runs_are_planned() {
        let preset = snli_train();
        let Plan { runs, methods, lists, costs } = plan(&preset, Path::new("/x"));
        assert!(preset.retrieval.is_none());
        assert_eq!(preset.seeds.len(), 2);
        // Each seed trains every method, with its seed, in the same order.
        for seed in &preset.seeds {
            for base in ["srl", "2dmse", "single", "separate-1x32", "smae", "smae-srl"] {
                let name = format!("{base}-seed{seed}");
                let run = runs.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("{name}"));
                let set = &run.train.as_ref().unwrap().set;
                assert!(set.contains(&format!("train.seed={seed}")), "{name}: {set:?}");
            }
            let smae_srl = runs.iter().find(|r| r.name == format!("smae-srl-seed{seed}")).unwrap();
            assert!(smae_srl.train.as_ref().unwrap().set.contains(&format!("model.path=/x/smae-seed{seed}/model")));
        }
        let srl = methods.iter().find(|m| m.label == "SRL").unwrap();
        assert_eq!(srl.seeds, [vec!["srl-seed42".to_string()], vec!["srl-seed43".to_string()]]);
        let separate = methods.iter().find(|m| m.label == "separately trained").unwrap();
        assert_eq!(separate.seeds[1].last().unwrap(), "single-seed43");
        // The other lists replace the size list of an SRL run of the first seed.
        for list in &lists {
            let run = runs.iter().find(|r| r.name == list.run).unwrap();
            let set = &run.train.as_ref().unwrap().set;
            assert_eq!(
                set.iter().rfind(|s| s.starts_with("objective.sizes=")).unwrap(),
                &format!("objective.sizes={}", list.sizes)
            );
            assert!(set.contains(&"train.seed=42".to_string()) && run.eval.as_ref().unwrap().grid);
        }
        // Cost runs: every method at a batch size, then the next, each round; not evaluated.
        let cost = preset.cost.as_ref().unwrap();
        assert_eq!(costs.len(), cost.methods.len() * cost.batch_sizes.len() * cost.rounds);
        assert_eq!((costs[0].batch, costs[1].batch, costs[1].method.as_str()), (16, 16, cost.methods[1].as_str()));
        let first = runs.iter().find(|r| r.name == costs[0].run).unwrap();
        assert!(first.eval.is_none());
        let set = &first.train.as_ref().unwrap().set;
        assert_eq!(
            set.iter().rfind(|s| s.starts_with("train.max_steps=")).unwrap(),
            &format!("train.max_steps={}", cost.steps)
        );
    }

    #[test]
    fn srl_deep_trains_beside_srl_and_is_read_against_it_over_the_query_and_corpus_grids() {
        let preset = preset("minilm-deep").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let plan = plan(&preset, out);
        let names: Vec<&str> = plan.runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["untouched", "srl-seed42", "srl-deep-seed42", "srl-seed43", "srl-deep-seed43"]);
        let deep = plan.runs.iter().find(|r| r.name == "srl-deep-seed43").unwrap();
        let set = &deep.train.as_ref().unwrap().set;
        assert!(set.contains(&"objective.method=srl-deep".into()) && set.contains(&"train.seed=43".into()));
        let args = eval_args(&preset, deep, deep.eval.as_ref().unwrap(), Path::new("/e"));
        let flag = |f: &str| args.iter().position(|a| a == f).map(|i| args[i + 1].as_str());
        assert_eq!(
            (flag("--query-sizes"), flag("--corpus-sizes")),
            (Some(preset.sizes.as_str()), Some(preset.sizes.as_str()))
        );
        let labels: Vec<&str> = plan.methods.iter().map(|m| m.label).collect();
        assert_eq!(labels, ["untouched", "SRL", "SRL-deep"]);

        // Every grid cell v(q, c): SRL 0.5 on the diagonal, 0.2 off it; SRL-deep 0.6 against the
        // full-size corpus and 0.45 on the diagonal below it; each seed 0.01 apart.
        fake_record(out, &plan, |_, _| 0.5);
        let sizes = [(1, 32), (2, 64), (3, 96), (4, 128), (5, 256), (6, 384)];
        for run in &plan.runs {
            let seed = if run.name.ends_with("43") { 0.01 } else { 0.0 };
            let value = |q: usize, c: usize| -> f64 {
                let full = c == sizes.len() - 1;
                seed + match (run.name.starts_with("srl-deep"), q == c, full) {
                    (true, _, true) => 0.6,
                    (true, true, false) => 0.45,
                    (false, true, _) => 0.5,
                    _ => 0.2,
                }
            };
            let grid = |metric: &str| {
                let values: Vec<Vec<f64>> =
                    (0..sizes.len()).map(|q| (0..sizes.len()).map(|c| value(q, c)).collect()).collect();
                let sizes: Vec<Value> = sizes.iter().map(|&(l, d)| json!({"layers": l, "dims": d})).collect();
                json!({"metric": metric, "queries": sizes, "corpus": sizes, "values": values})
            };
            let path = out.join("eval").join(&run.name).join("report.json");
            let mut report: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            report[0]["cross"] = json!([grid("sts-test Spearman"), grid("queries.dl20.tsv nDCG@10")]);
            write(&path, &report.to_string());
        }
        let md = results(&preset, out, &plan).unwrap();
        assert!(md.contains("## Shallow queries against a deep corpus"), "{md}");
        assert!(md.contains("| (1, 32) | 0.5000 | 0.2000 | 0.5050 (0.5000, 0.5100) | 0.2050 (0.2000, 0.2100) | 0.4550 (0.4500, 0.4600) | 0.6050 (0.6000, 0.6100) |"), "{md}");
        assert!(md.contains("below the full depth: (1, 32) above (+0.1000);"), "{md}");
        assert!(
            md.contains(
                "At the full size: SRL-deep 0.6050 (0.6000, 0.6100) against SRL 0.5050 (0.5000, 0.5100): **above**"
            ),
            "{md}"
        );
        assert!(
            md.contains("### TREC DL 2020, nDCG@10")
                && md.contains("![SRL-deep](eval/srl-deep-seed42/cross-srl-deep-seed42-2.svg)"),
            "{md}"
        );
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// An eval report as `starbucks eval` writes it, with STS value `sts` and nDCG `ndcg` at
    /// every one of `sizes`.
    fn report(run: &str, sizes: usize, sts: f64, ndcg: f64, grid: bool) -> String {
        let grid = if grid {
            json!({"metric": "STS", "layers": [1, 2], "dims": [32, 64], "values": [[sts, sts], [sts, sts]]})
        } else {
            Value::Null
        };
        json!([{
            "model": run,
            "sizes": [],
            "rows": [
                {"name": "sts-test Spearman", "values": vec![sts; sizes],
                 "source": "data/stsb/sts-test.csv", "measure": "Spearman"},
                {"name": "queries.dl20 nDCG@10", "values": vec![ndcg; sizes],
                 "source": "data/msmarco-dl20/queries.dl20.tsv", "measure": "nDCG@10"},
                // Two other benchmarks, 0.1 and 0.2 above STS-B.
                {"name": "STS12 Spearman", "values": vec![sts + 0.1; sizes],
                 "source": "data/sts/STS12", "measure": "Spearman"},
                {"name": "SICK-R Spearman", "values": vec![sts + 0.2; sizes],
                 "source": "data/sts/SICK_test_annotated.txt", "measure": "Spearman"},
            ],
            "throughput": [],
            "grid": grid,
        }])
        .to_string()
    }

    const STEPS: &str = "{\"step\":1,\"loss\":2.0,\"tokens\":100,\"tokens_per_s\":50.0}\n\
                         {\"step\":2,\"loss\":1.0,\"tokens\":100,\"tokens_per_s\":25.0}\n\
                         {\"step\":3,\"loss\":1.0,\"tokens\":100,\"tokens_per_s\":20.0}\n\
                         {\"step\":3,\"eval\":{}}\n";

    /// Writes every run's metrics and report, `sts(run index, run)` its STS value.
    fn fake_record(out: &Path, plan: &Plan, sts: impl Fn(usize, &Run) -> f64) {
        for (i, run) in plan.runs.iter().enumerate() {
            if let Some(eval) = &run.eval {
                let sizes = eval.sizes.split_whitespace().count();
                write(
                    &out.join("eval").join(&run.name).join("report.json"),
                    &report(&run.name, sizes, sts(i, run), 0.3, eval.grid),
                );
            }
            if run.train.is_some() {
                write(&out.join(&run.name).join("metrics.jsonl"), STEPS);
            }
        }
    }

    #[test]
    fn results_tabulate_every_method_at_every_size_with_its_cost() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let plan = plan(&minilm(), out);
        // A separately trained model scores 0.1 × its number of layers.
        fake_record(out, &plan, |i, run| {
            if run.name.starts_with("separate-") { 0.1 * (i - 3) as f64 } else { 0.5 + 0.01 * i as f64 }
        });
        write(
            &out.join("timings.jsonl"),
            "{\"stage\":\"srl\",\"seconds\":10,\"peak_rss_kib\":2048}\n{\"stage\":\"srl\",\"seconds\":5,\"peak_rss_kib\":1024}\n\
             {\"stage\":\"eval-srl\",\"seconds\":3}\n",
        );
        let md = results(&minilm(), out, &plan).unwrap();
        assert!(md.contains("| untouched | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 |"), "{md}");
        // Sizes 1..5 from separate-NxD (0.1 … 0.5), the full size from `single` (run 3).
        assert!(
            md.contains("| separately trained | 0.1000 | 0.2000 | 0.3000 | 0.4000 | 0.5000 | 0.5300 | 0.3383 |"),
            "{md}"
        );
        assert!(md.contains("| SRL | 0.5100 |"), "{md}");
        assert!(
            md.contains("- SRL vs 2DMSE, average 0.5100 vs 0.5200: **below**; by size: below at (1,32) (2,64)"),
            "{md}"
        );
        assert!(md.contains("- SRL vs separately trained, average 0.5100 vs 0.3383: **above**; by size: above at (1,32) (2,64) (3,96) (4,128) (5,256); below at (6,384)"), "{md}");
        assert!(md.contains("| 2DMSE | 0.3000 | 0.3000 |"), "{md}");
        assert!(md.contains("![SRL](eval/srl/grid-srl.svg)"), "{md}");
        assert!(!md.contains("![separately trained]"), "{md}");
        // Steps from metrics.jsonl (2 + 4 + 5 s), wall clock summed over invocations, the larger peak.
        assert!(md.contains("| `srl` | 3 | 11 | 15 | 2 |"), "{md}");
        assert!(md.contains("| `2dmse` | 3 | 11 | reused | – |"), "{md}");
        assert!(md.contains("| `smae` | 3 | 11 | reused | – |"), "{md}");
        assert_eq!(md.matches("| `single` |").count(), 1, "{md}");
        assert!(md.contains("| evaluation (all models) | | | 3 | – |"), "{md}");
        assert!(md.contains("| **all stages** | | | 18 (0.01 h) | |"), "{md}");
        assert!(!md.contains("Size lists") && !md.contains("by batch size"), "{md}");
    }

    #[test]
    fn results_give_the_mean_and_each_seed_and_say_where_they_are_within_the_spread() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let preset = snli_train();
        let plan = plan(&preset, out);
        // SRL: 0.60 and 0.64 by seed; SMAE → SRL 0.62 and 0.66 (within the spread); 2DMSE 0.50
        // and 0.52 (below); the other lists 0.7.
        fake_record(out, &plan, |_, run| {
            let second = run.name.ends_with("seed43");
            match run.name.split("-seed").next().unwrap() {
                "srl" => {
                    if second {
                        0.64
                    } else {
                        0.60
                    }
                }
                "smae-srl" => {
                    if second {
                        0.66
                    } else {
                        0.62
                    }
                }
                "2dmse" => {
                    if second {
                        0.52
                    } else {
                        0.50
                    }
                }
                name if name.starts_with("srl-list-") => 0.7,
                _ => 0.4,
            }
        });
        let md = results(&preset, out, &plan).unwrap();
        assert!(md.contains("| SRL | 0.6200 (0.6000, 0.6400) |"), "{md}");
        assert!(md.contains("| untouched | 0.4000 |"), "{md}");
        assert!(
            md.contains(
                "- SMAE → SRL vs SRL, average 0.6400 (0.6200, 0.6600) vs 0.6200 (0.6000, 0.6400): **within the spread**"
            ),
            "{md}"
        );
        assert!(md.contains("- SMAE → SRL vs separately trained, average 0.6400 (0.6200, 0.6600) vs 0.4000 (0.4000, 0.4000): **above**"), "{md}");
        assert!(md.contains("- SRL vs 2DMSE, average 0.6200 (0.6000, 0.6400) vs 0.5100 (0.5000, 0.5200): **above**; by size: above at (1,32)"), "{md}");
        assert!(!md.contains("TREC DL"), "{md}");
        assert!(
            md.contains("![SRL](eval/srl-seed42/grid-srl-seed42.svg)\n![SRL](eval/srl-seed43/grid-srl-seed43.svg)"),
            "{md}"
        );
        // The grid of the two seeds' mean.
        assert!(md.contains("| 1 | 0.6200 | 0.6200 |"), "{md}");
        assert!(md.contains("| the preset's (SRL, seed 2) | 6 | 0.6400 | 0.6400 | 0.6400 | 0.6400 | 0.6400 |"), "{md}");
        assert!(md.contains("| `three`: 2,64 4,128 6,384 | 3 | 0.7000 |"), "{md}");
        // Cost: the median of steps 2 and 3 (4 and 5 s), the ratio against single in the same round.
        assert!(md.contains("| srl | 16 | 4.500 / 4.500 | 1.00 / 1.00 | – / – |"), "{md}");
        let batches: Vec<usize> = md
            .lines()
            .filter(|l| l.starts_with("| 2dmse |"))
            .map(|l| l.split(" | ").nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(batches, [16, 32, 64]);
    }

    #[test]
    fn results_average_the_benchmarks_the_preset_names() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let mut preset = minilm();
        preset.semeval = vec!["data/sts/STS12".into()];
        preset.sick = Some("data/sts/SICK_test_annotated.txt".into());
        assert!(preset.inputs().contains(&"data/sts/STS12"));
        let plan = plan(&preset, out);
        let args = eval_args(&preset, &plan.runs[0], plan.runs[0].eval.as_ref().unwrap(), Path::new("/e"));
        let joined = args.join(" ");
        assert!(joined.contains("--semeval data/sts/STS12 --sick data/sts/SICK_test_annotated.txt"), "{joined}");
        fake_record(out, &plan, |_, _| 0.5);
        let md = results(&preset, out, &plan).unwrap();
        for heading in [
            "## STS-B test, Spearman at every size",
            "## STS12, Spearman at every size",
            "## SICK-R, Spearman at every size",
            "## The STS average (STS-B test, STS12, SICK-R), Spearman at every size",
            "## Checks: the paper's ordering on the STS average (STS-B test, STS12, SICK-R)",
        ] {
            assert!(md.contains(heading), "{heading}: {md}");
        }
        let average = md.split("## The STS average").nth(1).unwrap();
        assert!(average.contains("| SRL | 0.6000 |"), "{md}");
        assert!(md.contains("| SRL | 0.7000 |"), "SICK-R: {md}");
    }
}
