//! Models and datasets by hub id, end to end through the binary, against a loopback stand-in of
//! the hub (`HF_ENDPOINT`) that serves the shipped MiniLM folder and the shipped data in the real
//! repositories' layouts. Nothing here reaches past loopback.

use std::path::{Path, PathBuf};

#[path = "../../starbucks-hub/tests/support/fake_hub.rs"]
mod fake_hub;
#[path = "../../starbucks-data/tests/support/hub_data.rs"]
mod hub_data;
mod support;

use fake_hub::{FakeHub, FakeRepo, sha256};
use support::{Server, minilm, root, starbucks_with_env as starbucks};

const MINILM_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";

fn minilm_hub() -> FakeHub {
    FakeHub::start(vec![FakeRepo::model(MINILM_ID).folder(Path::new(&minilm()))])
}

fn embed(model: &str, dir: &Path, name: &str, env: &[(&str, &str)]) -> (i32, Vec<u8>, String) {
    let input = dir.join("texts.txt");
    std::fs::write(&input, "A man is playing a guitar.\nThe stock market fell on Monday.\n").unwrap();
    let output = dir.join(name);
    let (code, _, stderr) = starbucks(
        &[
            "embed",
            "--model",
            model,
            "--size",
            "2,64",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ],
        env,
    );
    (code, std::fs::read(&output).unwrap_or_default(), stderr)
}

#[test]
fn embed_by_model_id_fills_an_empty_cache_then_reads_only_the_cache_offline() {
    let server = minilm_hub();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    let (endpoint, cache_s) = (server.url.clone(), cache.display().to_string());
    let online = [("HF_ENDPOINT", endpoint.as_str()), ("HF_HUB_CACHE", cache_s.as_str())];

    let (code, local, stderr) = embed(&minilm(), dir.path(), "local.jsonl", &[]);
    assert_eq!(code, 0, "{stderr}");
    let (code, by_id, stderr) = embed(MINILM_ID, dir.path(), "by-id.jsonl", &online);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(by_id, local, "the same vectors as the local folder");
    let weights = cache.join("models--sentence-transformers--all-MiniLM-L6-v2/snapshots");
    assert_eq!(std::fs::read_dir(&weights).unwrap().count(), 1, "one snapshot");

    server.stop();
    let requests = server.requests();
    let offline = [("HF_ENDPOINT", endpoint.as_str()), ("HF_HUB_CACHE", cache_s.as_str()), ("HF_HUB_OFFLINE", "1")];
    let (code, cached, stderr) = embed(MINILM_ID, dir.path(), "offline.jsonl", &offline);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(cached, local);
    assert_eq!(server.requests(), requests, "nothing was asked of the hub");

    // Offline with an empty cache: a clear error naming the id, exit 1, no output.
    let empty = dir.path().join("empty").display().to_string();
    let (code, out, stderr) =
        embed(MINILM_ID, dir.path(), "none.jsonl", &[("HF_HUB_CACHE", &empty), ("HF_HUB_OFFLINE", "1")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(out.is_empty());
    assert!(
        stderr.contains(MINILM_ID) && stderr.contains("HF_HUB_OFFLINE") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn a_cut_transfer_resumes_and_a_corrupt_one_leaves_nothing() {
    let server = minilm_hub();
    let sha = sha256(&std::fs::read(Path::new(&minilm()).join("model.safetensors")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (code, local, stderr) = embed(&minilm(), dir.path(), "local.jsonl", &[]);
    assert_eq!(code, 0, "{stderr}");

    let cache = dir.path().join("cut").display().to_string();
    server.cut_once(&sha);
    let (code, resumed, stderr) =
        embed(MINILM_ID, dir.path(), "cut.jsonl", &[("HF_ENDPOINT", &server.url), ("HF_HUB_CACHE", &cache)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(server.cuts_pending(), 0, "the transfer was cut");
    assert_eq!(resumed, local);

    let cache = dir.path().join("corrupt");
    server.corrupt(&sha);
    let cache_s = cache.display().to_string();
    let (code, out, stderr) =
        embed(MINILM_ID, dir.path(), "corrupt.jsonl", &[("HF_ENDPOINT", &server.url), ("HF_HUB_CACHE", &cache_s)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(out.is_empty());
    assert!(stderr.contains("model.safetensors") && stderr.contains(&sha) && stderr.contains("sha256"), "{stderr}");
    let blobs = cache.join("models--sentence-transformers--all-MiniLM-L6-v2/blobs");
    let left: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains(&sha))
        .collect();
    assert!(left.is_empty(), "nothing of it in the cache: {left:?}");
}

fn report_rows(out: &Path) -> Vec<serde_json::Value> {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    report[0]["rows"].as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name}: {rows:?}"))
}

/// The BEIR subset as a local folder, from the same files the hub serves.
fn local_beir(cache_snapshot: &Path, qrels_snapshot: &Path, dir: &Path) -> PathBuf {
    let folder = dir.join("dl20-subset");
    std::fs::create_dir_all(folder.join("qrels")).unwrap();
    std::fs::copy(cache_snapshot.join("corpus.jsonl.gz"), folder.join("corpus.jsonl.gz")).unwrap();
    let queries = std::fs::read(cache_snapshot.join("queries.jsonl.gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&queries[..]), &mut text).unwrap();
    std::fs::write(folder.join("queries.jsonl"), text).unwrap();
    std::fs::copy(qrels_snapshot.join("test.tsv"), folder.join("qrels/test.tsv")).unwrap();
    folder
}

#[test]
fn eval_reads_mteb_sts_and_beir_sets_by_hub_id_and_scores_them_as_the_local_files() {
    let (beir, qrels) = hub_data::beir(&root(), "dl20-subset", 6);
    let (beir_commit, qrels_commit) = (beir.commit(), qrels.commit());
    let server = FakeHub::start(vec![hub_data::mteb_stsb(&root()), beir, qrels]);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    let cache_s = cache.display().to_string();
    let env = [("HF_ENDPOINT", server.url.as_str()), ("HF_HUB_CACHE", cache_s.as_str())];
    let stsb = root().join("data/stsb/sts-test.csv").display().to_string();
    let out = dir.path().join("hub-out");
    let eval = |beir: &str, out: &Path, env: &[(&str, &str)]| {
        starbucks(
            &[
                "eval",
                "--model",
                &minilm(),
                "--sizes",
                "2,64 6,384",
                "--stsb",
                &stsb,
                "--sts",
                "hf://datasets/mteb/stsbenchmark-sts",
                "--beir",
                beir,
                "--no-throughput",
                "--output",
                out.to_str().unwrap(),
            ],
            env,
        )
    };
    let (code, stdout, stderr) = eval("hf://datasets/BeIR/dl20-subset", &out, &env);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("stsbenchmark-sts Spearman") && stdout.contains("dl20-subset nDCG@10"), "{stdout}");
    let rows = report_rows(&out);
    // MTEB's STS-B test from the hub is the shipped STS-B test: the same scores at every size.
    assert_eq!(row(&rows, "stsbenchmark-sts Spearman")["values"], row(&rows, "sts-test Spearman")["values"]);

    let snapshots = |id: &str, commit: &str| cache.join(format!("datasets--BeIR--{id}/snapshots/{commit}"));
    let folder =
        local_beir(&snapshots("dl20-subset", &beir_commit), &snapshots("dl20-subset-qrels", &qrels_commit), dir.path());
    let local_out = dir.path().join("local-out");
    let (code, _, stderr) = eval(folder.to_str().unwrap(), &local_out, &env);
    assert_eq!(code, 0, "{stderr}");
    let local = report_rows(&local_out);
    for name in ["dl20-subset nDCG@10", "dl20-subset MRR@10"] {
        assert_eq!(row(&rows, name)["values"], row(&local, name)["values"], "{name}");
    }

    // Offline with the hub stopped, the same report from the cache.
    server.stop();
    let offline_out = dir.path().join("offline-out");
    let offline = [("HF_ENDPOINT", server.url.as_str()), ("HF_HUB_CACHE", cache_s.as_str()), ("HF_HUB_OFFLINE", "1")];
    let (code, _, stderr) = eval("hf://datasets/BeIR/dl20-subset", &offline_out, &offline);
    assert_eq!(code, 0, "{stderr}");
    let again = report_rows(&offline_out);
    // Bit for bit, in another process (the retrieval mean sums in query-id order).
    for name in ["dl20-subset nDCG@10", "stsbenchmark-sts Spearman"] {
        assert_eq!(row(&again, name)["values"], row(&rows, name)["values"], "{name}");
    }
}

#[test]
fn finetune_starts_from_a_model_id_on_a_hub_dataset() {
    let server =
        FakeHub::start(vec![FakeRepo::model(MINILM_ID).folder(Path::new(&minilm())), hub_data::all_nli(&root(), 64)]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("finetune.toml");
    std::fs::write(
        &config,
        format!(
            "task = \"finetune\"\noutput = \"{}\"\n[model]\npath = \"{MINILM_ID}\"\nmax_seq_length = 32\n\
             [data]\nformat = \"triplets\"\npath = \"hf://datasets/sentence-transformers/all-nli/triplet\"\n\
             [objective]\nmethod = \"srl\"\nsizes = \"1,32 6,384\"\n[train]\nbatch_size = 4\nmax_steps = 2\nlr = 1e-5\nlog_every = 1\n",
            dir.path().join("run").display()
        ),
    )
    .unwrap();
    let cache = dir.path().join("hub").display().to_string();
    let (code, _, stderr) = starbucks(
        &["finetune", "--config", config.to_str().unwrap(), "--no-progress"],
        &[("HF_ENDPOINT", &server.url), ("HF_HUB_CACHE", &cache)],
    );
    assert_eq!(code, 0, "{stderr}");
    let saved = std::fs::read_to_string(dir.path().join("run/config.toml")).unwrap();
    assert!(saved.contains(MINILM_ID), "the run records the id, not the cache path: {saved}");
    assert!(dir.path().join("run/model/model.safetensors").is_file());

    // A dataset the hub does not have is bad input (exit 2) naming it.
    let text = std::fs::read_to_string(&config).unwrap().replace("all-nli/triplet", "no-such-set");
    std::fs::write(&config, text).unwrap();
    let (code, _, stderr) = starbucks(
        &[
            "finetune",
            "--config",
            config.to_str().unwrap(),
            "--output",
            dir.path().join("run2").to_str().unwrap(),
            "--no-progress",
        ],
        &[("HF_ENDPOINT", &server.url), ("HF_HUB_CACHE", &cache)],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("sentence-transformers/no-such-set") && !stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_missing_folder_that_reads_as_an_id_says_both() {
    let server = FakeHub::start(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub").display().to_string();
    let env = [("HF_ENDPOINT", server.url.as_str()), ("HF_HUB_CACHE", cache.as_str())];
    // `src/` exists beside the test's working folder: `src/no-model` was meant as a folder.
    let (code, _, stderr) = starbucks(&["similarity", "--model", "src/no-model", "a", "b"], &env);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("src/no-model: no such folder (tried as a hub id too:") && stderr.contains("401"),
        "{stderr}"
    );
    // An id with no such repository: the hub's answer alone.
    let (code, _, stderr) = starbucks(&["similarity", "--model", "nobody/nothing", "a", "b"], &env);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("nobody/nothing") && stderr.contains("not found") && !stderr.contains("no such folder"),
        "{stderr}"
    );
}

#[test]
fn serve_by_model_id_reports_the_id_as_its_model() {
    let server = minilm_hub();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub").display().to_string();
    let serving = Server::start_with(MINILM_ID, &[], &[("HF_ENDPOINT", &server.url), ("HF_HUB_CACHE", &cache)]);
    let body = ureq::get(&format!("{}/info", serving.url)).call().unwrap().into_body().read_to_string().unwrap();
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["model_id"], MINILM_ID, "{info}");
}

#[test]
fn a_gated_model_needs_hf_token() {
    let gated = FakeRepo::model("org/gated-minilm").folder(Path::new(&minilm())).gated();
    let server = FakeHub::start(vec![gated]);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub").display().to_string();
    let env = [("HF_ENDPOINT", server.url.as_str()), ("HF_HUB_CACHE", cache.as_str())];
    let (code, out, stderr) = embed("org/gated-minilm", dir.path(), "refused.jsonl", &env);
    assert_eq!(code, 1, "{stderr}");
    assert!(out.is_empty());
    assert!(stderr.contains("gated") && stderr.contains("HF_TOKEN") && stderr.contains("401"), "{stderr}");
    let with_token = [env[0], env[1], ("HF_TOKEN", fake_hub::TOKEN)];
    let (code, vectors, stderr) = embed("org/gated-minilm", dir.path(), "allowed.jsonl", &with_token);
    assert_eq!(code, 0, "{stderr}");
    let (_, local, _) = embed(&minilm(), dir.path(), "local.jsonl", &[]);
    assert_eq!(vectors, local);
}
