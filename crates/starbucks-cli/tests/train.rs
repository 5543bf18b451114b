//! `starbucks finetune` / `starbucks pretrain` end to end on all-MiniLM-L6-v2 and the shipped
//! data: a run killed with SIGKILL after a checkpoint resumes to bit-identical weights, and so
//! does one stopped by SIGTERM or SIGINT (exit 143 / 130, a checkpoint, one line); a second run
//! on a live run's folder is refused; a corrupt checkpoint is skipped with a warning naming it;
//! bad input is one line, exit code 2, and nothing written; SMAE pre-training writes a model
//! folder the embedder loads, and two pre-training runs of one config are bit-identical.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use starbucks_train::run::metrics::{MetricsLine, StepLine};
use support::{minilm, root, starbucks};

mod support;

fn finetune_config(dir: &Path) -> PathBuf {
    let text = format!(
        r#"task = "finetune"
output = "{out}"
[model]
path = "{model}"
max_seq_length = 64
[data]
format = "triplets"
path = "{data}"
[objective]
method = "srl"
sizes = "1,32 3,96 6,384"
[train]
seed = 7
batch_size = 4
max_steps = 8
lr = 1e-4
warmup_ratio = 0.25
log_every = 1
[checkpoint]
every = 2
keep = 2
"#,
        out = dir.join("default-output").display(),
        model = minilm(),
        data = root().join("data/nli/snli-triplets.tsv.gz").display(),
    );
    let path = dir.join("finetune.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn finetune(config: &Path, output: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["finetune", "--config", config.to_str().unwrap(), "--output", output.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("--no-progress");
    starbucks(&args)
}

/// (step, loss) of every step line of a run's metrics.jsonl.
fn losses(output: &Path) -> Vec<(u64, f64)> {
    steps(output).iter().map(|l| (l.step as u64, l.loss)).collect()
}

/// The step lines of a run's metrics.jsonl.
fn steps(output: &Path) -> Vec<StepLine> {
    let lines = starbucks_train::run::metrics::read(&output.join("metrics.jsonl")).unwrap();
    lines.into_iter().filter_map(|l| if let MetricsLine::Step(l) = l { Some(l) } else { None }).collect()
}

/// Starts `starbucks args…` and waits until `path` exists (the run is then past that point).
fn spawn_until(args: &[&str], path: &Path) -> std::process::Child {
    let mut child = support::command(&[]).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while !path.exists() {
        assert!(started.elapsed() < Duration::from_secs(600), "{} did not appear", path.display());
        assert!(child.try_wait().unwrap().is_none(), "the run ended before {}", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Sends `signal` (`TERM`, `INT`) to `child` with kill(1) and returns its exit code and stderr.
fn signal(mut child: std::process::Child, signal: &str) -> (i32, String) {
    let sent = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (child.wait().unwrap().code().unwrap_or(-1), stderr)
}

/// The step a run stopped by a signal says it stopped after, checked against its checkpoints.
fn stopped_after(stderr: &str, name: &str, output: &Path) -> usize {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("{name} received: stopped after step")))
        .unwrap_or_else(|| panic!("one line says the run stopped: {stderr}"));
    let step: usize = line.split("step ").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    let checkpoint = output.join(format!("checkpoints/step-{step:08}"));
    assert!(line.contains(&checkpoint.display().to_string()) && line.contains("--resume"), "{line}");
    assert!(checkpoint.join("manifest.json").is_file(), "{line}");
    step
}

/// Every tensor of the run's model, by name, as raw bytes (the file's metadata map is written in
/// no fixed order, so the files themselves are not compared).
fn weights(output: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(output.join("model/model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<u8>)> =
        file.tensors().into_iter().map(|(name, view)| (name, view.data().to_vec())).collect();
    tensors.sort();
    assert!(tensors.len() > 90, "the whole encoder");
    tensors
}

#[test]
fn a_killed_run_resumes_to_the_same_weights_and_skips_a_corrupt_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = finetune_config(dir.path());
    let whole = dir.path().join("whole");
    let (code, stdout, stderr) = finetune(&config, &whole, &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("steps 8"), "{stdout}");
    let whole_losses = losses(&whole);
    assert_eq!(whole_losses.iter().map(|l| l.0).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    let kept: Vec<String> = std::fs::read_dir(whole.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "keep = 2: {kept:?}");

    // Kill a second run as soon as its first checkpoint is in place.
    let killed = dir.path().join("killed");
    let c = config.to_str().unwrap();
    let args = ["finetune", "--config", c, "--output", killed.to_str().unwrap(), "--no-progress"];
    let mut child = spawn_until(&args, &killed.join("checkpoints/step-00000002"));
    // Issue 17, item 11: while it runs, a second run on its folder is refused, with or without
    // --resume, and the live run goes on.
    for extra in [&[][..], &["--resume"][..]] {
        let (code, stdout, stderr) = finetune(&config, &killed, extra);
        assert_eq!(
            code, 2,
            "{stdout}
{stderr}"
        );
        let pid = format!("another run (pid {}) is using this output folder", child.id());
        assert!(stderr.contains(&pid) && stderr.contains(".lock"), "{stderr}");
    }
    assert!(child.try_wait().unwrap().is_none(), "the live run goes on");
    child.kill().unwrap(); // SIGKILL: the OS releases the lock
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed mid-way");
    assert!(!killed.join("model").exists(), "killed before the end");

    let (code, stdout, stderr) = finetune(&config, &killed, &["--resume"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("resumed from step"), "{stdout}");
    assert_eq!(weights(&killed), weights(&whole), "resumed weights are bit-identical");
    assert_eq!(losses(&killed), whole_losses, "every step logged once, with the same loss");

    // Corrupt the newest checkpoint: it is skipped, the run redoes its steps from the one before.
    let newest = killed.join("checkpoints/step-00000008/model.bin");
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&newest, bytes).unwrap();
    std::fs::remove_dir_all(killed.join("model")).unwrap();
    let (code, stdout, stderr) = finetune(&config, &killed, &["--resume"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("skipping checkpoint") && stderr.contains("step-00000008"), "{stderr}");
    assert!(stdout.contains("resumed from step 6"), "{stdout}");
    assert_eq!(weights(&killed), weights(&whole));
    assert_eq!(losses(&killed), whole_losses);

    // A finished run is reused as it is.
    let (code, stdout, _) = finetune(&config, &killed, &["--resume"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("resumed from step 8") && stdout.contains("steps 8"), "{stdout}");

    // Issue 17, item 12: SIGTERM and SIGINT finish the step, write a checkpoint, say so in one
    // line and exit 143 / 130; the run resumes to the uninterrupted weights.
    let stopped = dir.path().join("stopped");
    let args = ["finetune", "--config", c, "--output", stopped.to_str().unwrap(), "--no-progress"];
    let (code, stderr) = signal(spawn_until(&args, &stopped.join("checkpoints/step-00000002")), "TERM");
    assert_eq!(code, 143, "{stderr}");
    let step = stopped_after(&stderr, "SIGTERM", &stopped);
    assert!((3..8).contains(&step), "{stderr}");
    let (code, stdout, stderr) = finetune(&config, &stopped, &["--resume"]);
    assert_eq!(
        code, 0,
        "{stdout}
{stderr}"
    );
    assert!(stdout.contains(&format!("resumed from step {step}")), "{stdout}");
    assert_eq!(weights(&stopped), weights(&whole), "resumed weights are bit-identical");
    assert_eq!(losses(&stopped), whole_losses);

    let interrupted = dir.path().join("interrupted");
    let args = ["finetune", "--config", c, "--output", interrupted.to_str().unwrap(), "--no-progress"];
    let (code, stderr) = signal(spawn_until(&args, &interrupted.join("metrics.jsonl")), "INT");
    assert_eq!(code, 130, "{stderr}");
    stopped_after(&stderr, "SIGINT", &interrupted);
}

fn assert_bad_input(args: &[&str], needle: &str, output: &Path) {
    let (code, stdout, stderr) = starbucks(args);
    assert_eq!(code, 2, "exit code 2 for bad input: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "wanted `{needle}` in: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!output.exists(), "nothing written for bad input");
}

#[test]
fn bad_input_is_one_line_exit_code_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = finetune_config(dir.path());
    let c = config.to_str().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let base = ["finetune", "--config", c, "--output", o];
    let with = |extra: &[&'static str]| [&base[..], extra].concat();

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(
        &unknown,
        std::fs::read_to_string(&config).unwrap().replace("lr = 1e-4", "lr = 1e-4\nlearning_rate = 1"),
    )
    .unwrap();
    assert_bad_input(&["finetune", "--config", unknown.to_str().unwrap(), "--output", o], "learning_rate", &out);
    assert_bad_input(&with(&["--set", "train.lr=-0.001"]), "train.lr", &out);
    assert_bad_input(&with(&["--set", "objective.sizes=1,32 7,384"]), "objective.sizes", &out);
    assert_bad_input(&with(&["--set", "data.path=/nonexistent/triplets.tsv"]), "/nonexistent/triplets.tsv", &out);
    assert_bad_input(&with(&["--set", "model.path=/nonexistent/model"]), "/nonexistent/model", &out);
    // Issue 17, item 13: a length that leaves no room for a token was accepted.
    assert_bad_input(&with(&["--set", "model.max_seq_length=0"]), "model.max_seq_length", &out);
    assert_bad_input(&with(&["--set", "model.dropout=1.5"]), "model.dropout", &out);
    assert_bad_input(&["pretrain", "--config", c, "--output", o], "starbucks finetune", &out);
    assert_bad_input(&["finetune", "--config", "/nonexistent/run.toml", "--output", o], "/nonexistent/run.toml", &out);
    // Issue 17, item 13: masking errors said `key data` without naming the key.
    let pretrain = pretrain_config(dir.path());
    let p = pretrain.to_str().unwrap();
    for (set, key) in [("data.decoder_ratio=0.1", "key `data.decoder_ratio`"), ("data.max_len=2", "key `data.max_len`")]
    {
        assert_bad_input(&["pretrain", "--config", p, "--output", o, "--set", set], key, &out);
    }

    // An output folder that holds another run is left as it is.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let their_config = std::fs::read_to_string(&config).unwrap().replace("seed = 7", "seed = 8");
    let parsed: starbucks_train::RunConfig = toml::from_str(&their_config).unwrap();
    std::fs::write(other.join("config.toml"), parsed.to_toml()).unwrap();
    let ot = other.to_str().unwrap();
    for extra in [&[][..], &["--resume"][..]] {
        let args = [&["finetune", "--config", c, "--output", ot][..], extra].concat();
        let (code, _, stderr) = starbucks(&args);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("holds") && stderr.contains(ot), "{stderr}");
        if !extra.is_empty() {
            assert!(stderr.contains("train.seed"), "names the differing key: {stderr}");
        }
        let names: Vec<_> = std::fs::read_dir(&other).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.toml")], "left as it was");
    }
}

/// `model.dropout = 0` turns dropout off while training (the first step's loss changes), and
/// the exported model keeps the folder's dropout (0.1).
#[test]
fn model_dropout_replaces_the_folders_while_training_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = finetune_config(dir.path());
    let first_loss = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["--set", "train.max_steps=1", "--set", "checkpoint.every=1"];
        args.extend_from_slice(extra);
        let (code, _, stderr) = finetune(&config, &out, &args);
        assert_eq!(code, 0, "{stderr}");
        (losses(&out)[0].1, out)
    };
    let (with_dropout, _) = first_loss("on", &[]);
    let (off, out) = first_loss("off", &["--set", "model.dropout=0.0"]);
    assert_ne!(with_dropout, off, "dropout 0.1 and 0 gave the same first loss");
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model/config.json")).unwrap()).unwrap();
    assert_eq!(exported["hidden_dropout_prob"], 0.1);
    assert_eq!(exported["attention_probs_dropout_prob"], 0.1);
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(saved.contains("dropout = 0.0"), "{saved}");
}

fn pretrain_config(dir: &Path) -> PathBuf {
    let config = dir.join("pretrain.toml");
    std::fs::write(
        &config,
        format!(
            r#"task = "pretrain"
output = "{out}"
[model]
path = "{model}"
[data]
format = "fineweb"
path = "{data}"
max_len = 64
[objective]
method = "smae"
sizes = "2,64 6,384"
[train]
batch_size = 2
max_steps = 2
lr = 1e-4
decay = "cosine"
weight_decay = 0.001
[checkpoint]
every = 1
keep = 1
"#,
            out = dir.join("run").display(),
            model = minilm(),
            data = root().join("data/fineweb/fineweb-subset-300.json.gz").display(),
        ),
    )
    .unwrap();
    config
}

#[test]
fn smae_pretraining_writes_a_model_the_embedder_loads() {
    let dir = tempfile::tempdir().unwrap();
    let config = pretrain_config(dir.path());
    let (code, stdout, stderr) = starbucks(&["pretrain", "--config", config.to_str().unwrap(), "--no-progress"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let run = dir.path().join("run");
    let first = steps(&run).remove(0);
    for term in ["mlm(2, 64)", "mae(2, 64)", "mlm(6, 384)", "mae(6, 384)"] {
        assert!(first.terms[term].is_finite(), "{first:?}");
    }
    assert_eq!(first.step, 1);
    let position = std::fs::read_to_string(run.join("checkpoints/step-00000002/state.json")).unwrap();
    assert!(position.contains("\"row\": 4"), "four documents read: {position}");
    assert_eq!(std::fs::read_dir(run.join("checkpoints")).unwrap().count(), 1, "keep = 1");

    let device = Default::default();
    let embedder =
        starbucks_model::Embedder::<burn::backend::Flex>::from_pretrained(run.join("model"), &device).unwrap();
    let e = embedder.embed(&["a sentence"], starbucks_model::Size::new(2, 64)).unwrap();
    assert_eq!(e[0].len(), 64);
}

/// Issue 17, item 7: the SMAE head was drawn from burn's clock-seeded generator.
#[test]
fn pretraining_repeats_bit_identically_and_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let config = pretrain_config(dir.path());
    let c = config.to_str().unwrap();
    let args = |output: &Path| -> Vec<String> {
        let o = output.to_str().unwrap();
        ["pretrain", "--config", c, "--output", o, "--set", "train.max_steps=4", "--set", "checkpoint.every=2"]
            .into_iter()
            .chain(["--set", "checkpoint.keep=2", "--no-progress"])
            .map(String::from)
            .collect()
    };
    let run = |output: &Path, extra: &[&str]| {
        let mut a = args(output);
        a.extend(extra.iter().map(|s| s.to_string()));
        let (code, stdout, stderr) = starbucks(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            code, 0,
            "{stdout}
{stderr}"
        );
    };
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    run(&first, &[]);
    run(&second, &[]);
    assert_eq!(weights(&first), weights(&second), "two runs of one config are bit-identical");
    assert_eq!(losses(&first), losses(&second));

    let killed = dir.path().join("killed");
    let a = args(&killed);
    let mut child =
        spawn_until(&a.iter().map(String::as_str).collect::<Vec<_>>(), &killed.join("checkpoints/step-00000002"));
    child.kill().unwrap();
    child.wait().unwrap();
    run(&killed, &["--resume"]);
    assert_eq!(weights(&killed), weights(&first), "resumed weights are bit-identical");
    assert_eq!(losses(&killed), losses(&first));
}

#[test]
fn data_parallel_over_two_peers_reads_two_micro_batches_a_step() {
    // The CPU backend has one device: the two peers are threads sharing it, their gradients
    // averaged by burn's collective all-reduce, as on two GPUs.
    let dir = tempfile::tempdir().unwrap();
    let config = finetune_config(dir.path());
    let out = dir.path().join("parallel");
    let (code, stdout, stderr) = finetune(
        &config,
        &out,
        &["--set", "train.devices=[0, 1]", "--set", "train.max_steps=3", "--set", "checkpoint.every=3"],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("data-parallel over 2 peers: global batch 8"), "{stderr}");
    let state = std::fs::read_to_string(out.join("checkpoints/step-00000003/state.json")).unwrap();
    assert!(state.contains("\"batch\": 6"), "3 steps × 2 peers: {state}");
    assert_eq!(losses(&out).len(), 3);
    assert!(weights(&out).len() > 90);
}

#[test]
fn retrieval_groups_and_2dmse_train_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = finetune_config(dir.path());
    let triples = root().join("data/msmarco-dl20/triples.dl20.bm25neg.tsv.gz");
    let data_path = format!("data.path={}", triples.display());
    let retrieval = dir.path().join("retrieval");
    let (code, stdout, stderr) = finetune(
        &config,
        &retrieval,
        &[
            "--set",
            "data.format=msmarco-triples",
            "--set",
            &data_path,
            "--set",
            "data.negatives=3",
            "--set",
            "data.passage_max_len=48",
            "--set",
            "model.pooling=cls",
            "--set",
            "train.max_steps=2",
            "--set",
            "train.batch_size=2",
        ],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let first = steps(&retrieval).remove(0);
    for term in ["base(1, 32)", "base(3, 96)", "base(6, 384)", "kl(1, 32)", "kl(3, 96)"] {
        assert!(first.terms[term].is_finite(), "{first:?}");
    }
    let pooling = std::fs::read_to_string(retrieval.join("model/1_Pooling/config.json")).unwrap();
    assert!(pooling.contains("\"pooling_mode_cls_token\": true"), "{pooling}");

    let mse = dir.path().join("2dmse");
    let (code, stdout, stderr) =
        finetune(&config, &mse, &["--set", "objective.method=2dmse", "--set", "train.max_steps=2"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(losses(&mse).len(), 2);
}
