//! Config layering (file, then environment, then --set), and errors that name the key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use starbucks_train::RunConfig;
use starbucks_train::config::{Method, Task};

const BASE: &str = r#"
task = "finetune"
output = "runs/x"
[model]
path = "assets/all-MiniLM-L6-v2"
[data]
format = "triplets"
path = "data/nli/snli-triplets.tsv.gz"
[objective]
method = "srl"
sizes = "1,32 6,384"
[train]
batch_size = 32
epochs = 1
lr = 5e-5
"#;

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn load(text: &str, env: &[(&str, &str)], sets: &[&str]) -> Result<RunConfig, String> {
    let (_dir, path) = write(text);
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    RunConfig::load(&path, &env, &sets).map_err(|e| {
        assert!(e.is_input(), "{e}");
        e.to_string()
    })
}

#[test]
fn defaults_fill_in_and_layers_apply_in_order() {
    let config = load(BASE, &[], &[]).unwrap();
    assert_eq!((config.task, config.objective.method), (Task::Finetune, Method::Srl));
    assert_eq!((config.train.seed, config.train.grad_accum, config.train.max_grad_norm), (42, 1, 1.0));
    assert_eq!((config.checkpoint.every, config.checkpoint.keep, config.eval.stsb.clone()), (500, 2, None));

    let env = [("train.lr", "1e-4"), ("train.batch_size", "8")];
    let config = load(BASE, &env, &[]).unwrap();
    assert_eq!((config.train.lr, config.train.batch_size), (1e-4, 8));
    let config = load(BASE, &env, &["train.lr=2e-4", "eval.stsb=data/stsb/sts-dev.csv"]).unwrap();
    assert_eq!(config.train.lr, 2e-4, "--set wins over the environment");
    assert_eq!(config.train.batch_size, 8);
    assert_eq!(config.eval.stsb, Some(PathBuf::from("data/stsb/sts-dev.csv")));

    // The resolved config round-trips through the TOML saved in the output folder.
    let again: RunConfig = toml::from_str(&config.to_toml()).unwrap();
    assert_eq!(again, config);
    let mut other = config.clone();
    other.train.lr = 3e-4;
    assert_eq!(config.first_difference(&other).unwrap(), "`train.lr`: 0.0002 vs 0.0003");
}

#[test]
fn the_environment_reads_only_sectioned_names() {
    // SAFETY: this test binary's other tests do not read these variables.
    unsafe {
        std::env::set_var("STARBUCKS_TRAIN__LR", "7e-5");
        std::env::set_var("STARBUCKS_LOG", "info");
    }
    let env = starbucks_train::config::env_overrides();
    assert_eq!(env.get("train.lr").map(String::as_str), Some("7e-5"));
    assert!(!env.contains_key("log"));
}

#[test]
fn bad_values_name_their_key() {
    let unknown = load(&BASE.replace("lr = 5e-5", "lr = 5e-5\nlrr = 1"), &[], &[]).unwrap_err();
    assert!(unknown.contains("train") && unknown.contains("lrr"), "{unknown}");
    let top = load(&format!("colour = 1\n{BASE}"), &[], &[]).unwrap_err();
    assert!(top.contains("colour"), "{top}");
    let typed = load(BASE, &[], &["train.batch_size=many"]).unwrap_err();
    assert!(typed.contains("train.batch_size"), "{typed}");
    let negative = load(BASE, &[], &["train.lr=-1e-4"]).unwrap_err();
    assert!(negative.contains("train.lr") && negative.contains("positive"), "{negative}");
    let missing = load(&BASE.replace("lr = 5e-5\n", ""), &[], &[]).unwrap_err();
    assert!(missing.contains("lr"), "{missing}");
    let method = load(&BASE.replace("\"srl\"", "\"mse\""), &[], &[]).unwrap_err();
    assert!(method.contains("objective.method") || method.contains("mse"), "{method}");
    let no_eq = load(BASE, &[], &["train.lr"]).unwrap_err();
    assert!(no_eq.contains("key=value"), "{no_eq}");
    let wrong_task = load(&BASE.replace("\"triplets\"", "\"fineweb\""), &[], &[]).unwrap_err();
    assert!(wrong_task.contains("pretrain"), "{wrong_task}");
    let twice = load(BASE, &[], &["train.devices=[0, 0]"]).unwrap_err();
    assert!(twice.contains("train.devices") && twice.contains("twice"), "{twice}");
    assert_eq!(load(BASE, &[], &["train.devices=[0,1]"]).unwrap().train.devices, vec![0, 1]);
    let deep = BASE.replace("\"srl\"", "\"srl-deep\"");
    let config = load(&deep, &[], &["objective.deep_weight=2", "objective.symmetric_weight=0.5"]).unwrap();
    assert_eq!(config.objective.method, Method::SrlDeep);
    assert_eq!((config.objective.deep_weight, config.objective.symmetric_weight), (Some(2.0), Some(0.5)));
    let not_srl_deep = load(BASE, &[], &["objective.deep_weight=1"]).unwrap_err();
    assert!(not_srl_deep.contains("objective.deep_weight") && not_srl_deep.contains("srl-deep"), "{not_srl_deep}");
    assert_eq!(load(&deep, &[], &["objective.deep_detached=true"]).unwrap().objective.deep_detached, Some(true));
    let detached_srl = load(BASE, &[], &["objective.deep_detached=true"]).unwrap_err();
    assert!(detached_srl.contains("objective.deep_detached") && detached_srl.contains("srl-deep"), "{detached_srl}");
    let not_bool = load(&deep, &[], &["objective.deep_detached=maybe"]).unwrap_err();
    assert!(not_bool.contains("objective.deep_detached"), "{not_bool}");
    let negative = load(&deep, &[], &["objective.deep_weight=-1"]).unwrap_err();
    assert!(negative.contains("objective.deep_weight") && negative.contains("≥ 0"), "{negative}");
    let file = RunConfig::load(std::path::Path::new("/nonexistent/run.toml"), &BTreeMap::new(), &[]).unwrap_err();
    assert!(file.to_string().contains("/nonexistent/run.toml"), "{file}");
}

/// Issue 17, item 13: an error in an environment variable's key was blamed on the config file.
#[test]
fn an_error_names_where_its_key_was_given() {
    let typed = load(BASE, &[("train.lr", "abc")], &[]).unwrap_err();
    assert!(typed.starts_with("environment STARBUCKS_TRAIN__LR: key `train.lr`"), "{typed}");
    let checked = load(BASE, &[("train.lr", "-1")], &[]).unwrap_err();
    assert!(checked.starts_with("environment STARBUCKS_TRAIN__LR: key `train.lr` must be positive"), "{checked}");
    let set = load(BASE, &[("train.lr", "-1")], &["train.lr=-2"]).unwrap_err();
    assert!(set.starts_with("--set train.lr=-2: key `train.lr`"), "the last layer given: {set}");
    let file = load(&BASE.replace("lr = 5e-5", "lr = -5e-5"), &[("train.seed", "3")], &[]).unwrap_err();
    assert!(file.contains("run.toml: key `train.lr`"), "{file}");
}

#[test]
fn every_preset_loads() {
    let dir = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../../configs");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            RunConfig::load(&path, &BTreeMap::new(), &[]).unwrap_or_else(|e| panic!("{e}"));
            loaded += 1;
        }
    }
    assert!(loaded >= 8, "the paper's and the demo presets: {loaded}");
}
