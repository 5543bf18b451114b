//! `cargo xtask bench --serve`: `starbucks serve` under load beside a real peer server,
//! infinity-emb (PyTorch), on the same model, threads and texts; then our mixed-size load under
//! every batch schedule (join, mixed, by-depth), concurrency 1 against `Embedder::embed` alone,
//! and a soak with bad requests mixed in. Real HTTP over loopback (`loadgen.rs`), every run bounded in count and
//! time, every run's line printed and kept in `results.jsonl`; the summary in `report.md`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::flags::{Backend, ServeBenchOptions};
use crate::loadgen::{self, Load, Shot};
use crate::stats::{by_round, every_round, median};
use crate::{cli, fetch};

/// The peer's environment (PyPI); its pins (sentence-transformers < 4, numpy < 2) clash with
/// the PyTorch bench's, so it has a venv of its own.
const PEER_REQUIREMENTS: &[&str] = &["infinity-emb[server,torch]==0.0.78", "torch==2.15.0"];
/// The mixed load draws uniformly from the MiniLM size list.
const SIZES: [(usize, usize); 6] = fetch::MINILM_SIZES;
const FULL: (usize, usize) = (6, 384);
/// One run's bound in time, whatever its request count.
const RUN_LIMIT: Duration = Duration::from_secs(120);
const SERVED_NAME: &str = "minilm";
/// The `--schedule`s other than the default (join), measured beside it under the mixed load.
const SCHEDULES: [&str; 2] = ["mixed", "by-depth"];

fn default_venv() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("starbucks-rs").join("infinity-venv")
}

/// The peer's `infinity_emb` command, installed on first use.
fn infinity(venv: &Path) -> Result<PathBuf> {
    crate::bench::ensure_venv(venv, PEER_REQUIREMENTS, "import infinity_emb, torch", "the peer server")?;
    Ok(venv.join("bin").join("infinity_emb"))
}

/// A server process on loopback; killed when dropped.
struct Server {
    name: String,
    child: Child,
    address: String,
    path: &'static str,
}

impl Server {
    /// `starbucks serve` on a free port, with `extra` flags.
    fn ours(name: &str, starbucks: &Path, threads: usize, extra: &[&str]) -> Result<Server> {
        let mut child = Command::new(starbucks)
            .current_dir(fetch::workspace_root())
            .args(["serve", "--model", fetch::MINILM_DIR, "--port", "0", "--served-model-name", SERVED_NAME])
            // The soak's over-long text must be refused (413), not cut (the default, as TEI's).
            .args(["--auto-truncate", "false"])
            .args(extra)
            .env("RAYON_NUM_THREADS", threads.to_string())
            .env("STARBUCKS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start starbucks serve")?;
        let stderr = child.stderr.take().context("piped stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let _ = tx.send(line[at + "listening on http://".len()..].trim().to_string());
                }
            }
        });
        let address = rx.recv_timeout(Duration::from_secs(300)).context("starbucks serve did not start")?;
        Ok(Server { name: name.into(), child, address, path: "/v1/embeddings" })
    }

    /// infinity-emb v2 (torch engine, f32, CPU) on `port`, ready once `/health` answers.
    fn infinity(program: &Path, threads: usize, port: u16) -> Result<Server> {
        let model = fetch::workspace_root().join(fetch::MINILM_DIR);
        let child = Command::new(program)
            .args(["v2", "--model-id"])
            .arg(&model)
            .args(["--served-model-name", SERVED_NAME, "--engine", "torch", "--device", "cpu", "--dtype", "float32"])
            .args(["--batch-size", "32", "--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "warning"])
            .env("OMP_NUM_THREADS", threads.to_string())
            .env("MKL_NUM_THREADS", threads.to_string())
            .env("HF_HUB_OFFLINE", "1")
            .env("INFINITY_ANONYMOUS_USAGE_STATS", "0")
            .env("DO_NOT_TRACK", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start infinity_emb")?;
        let server =
            Server { name: "infinity".into(), child, address: format!("127.0.0.1:{port}"), path: "/embeddings" };
        let deadline = Instant::now() + Duration::from_secs(300);
        while std::net::TcpStream::connect(&server.address).is_err() {
            if Instant::now() > deadline {
                bail!("infinity_emb did not open {} within 300 s", server.address);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(server)
    }

    fn rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb / 1024.0)
    }

    fn load(&self, shots: &[Shot], concurrency: usize, count: usize) -> Result<Load> {
        loadgen::run(&self.address, self.path, "", shots, concurrency, count, RUN_LIMIT)
            .with_context(|| format!("load on {}", self.name))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn label((layers, dims): (usize, usize)) -> String {
    format!("{layers},{dims}")
}

/// One OpenAI request per text; `sizes[i % len]` for the i-th (`None`: the peer's plain body).
fn shots(texts: &[String], sizes: Option<&[(usize, usize)]>) -> Vec<Shot> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut body = json!({ "input": [text], "model": SERVED_NAME, "encoding_format": "float" });
            let size = sizes.map_or(FULL, |s| s[i % s.len()]);
            if sizes.is_some() {
                body["layers"] = json!(size.0);
                body["dimensions"] = json!(size.1);
            }
            Shot { body: body.to_string().into_bytes(), label: label(size) }
        })
        .collect()
}

/// Prints and records one run.
fn record(
    raw: &mut String,
    scenario: &str,
    server: &str,
    concurrency: usize,
    round: usize,
    load: &Load,
) -> serde_json::Value {
    let bad = load.outcomes.iter().filter(|o| o.status != 200).count();
    let mut line = json!({
        "scenario": scenario, "server": server, "concurrency": concurrency, "round": round,
        "requests": load.outcomes.len(), "non_200": bad, "wall_s": load.wall.as_secs_f64(),
        "texts_per_s": load.throughput(),
        "p50_ms": load.quantile_ms(None, 0.5), "p99_ms": load.quantile_ms(None, 0.99),
    });
    for size in SIZES {
        let l = label(size);
        if load.outcomes.iter().any(|o| o.label == l) {
            line["p50_ms_by_size"][&l] = json!(load.quantile_ms(Some(&l), 0.5));
        }
    }
    println!(
        "{scenario:>8} c={concurrency:<3} round {round} {server:>16}: {:>7.1} texts/s  p50 {:>7.1} ms  p99 {:>7.1} ms  non-200 {bad}",
        load.throughput(),
        load.quantile_ms(None, 0.5),
        load.quantile_ms(None, 0.99)
    );
    let _ = writeln!(raw, "{line}");
    line
}

/// The runs of one scenario and server at one concurrency, a line per round.
fn runs<'a>(
    lines: &'a [serde_json::Value],
    scenario: &'a str,
    server: &'a str,
    c: usize,
) -> impl Iterator<Item = &'a serde_json::Value> {
    lines.iter().filter(move |l| l["scenario"] == scenario && l["server"] == server && l["concurrency"] == c)
}

/// Round by round, `field` of one run over the same of another (each a scenario and a server)
/// at one concurrency: the median ratio and every round's.
fn ratios(
    lines: &[serde_json::Value],
    (scenario, server): (&str, &str),
    (by_scenario, by_server): (&str, &str),
    c: usize,
    field: &dyn Fn(&serde_json::Value) -> Option<f64>,
) -> (f64, Vec<f64>) {
    let by: Vec<&serde_json::Value> = runs(lines, by_scenario, by_server, c).collect();
    by_round(runs(lines, scenario, server, c), &by, |run, by| Some(field(run)? / field(by)?))
}

/// The median over rounds of `field` for one scenario, server and concurrency, and every round's value.
fn pick(
    lines: &[serde_json::Value],
    scenario: &str,
    server: &str,
    c: usize,
    field: &dyn Fn(&serde_json::Value) -> Option<f64>,
) -> (f64, Vec<f64>) {
    let values: Vec<f64> = runs(lines, scenario, server, c).filter_map(field).collect();
    (median(&values), values)
}

pub fn run(backend: Backend, options: ServeBenchOptions) -> Result<()> {
    fetch::run("minilm")?;
    let root = fetch::workspace_root();
    let starbucks = cli::build(backend)?;
    let peer = infinity(&options.venv.clone().unwrap_or_else(default_venv))?;
    let output = root.join(&options.output);
    std::fs::create_dir_all(&output).with_context(|| format!("cannot create {}", output.display()))?;
    let texts = fetch::stsb_test_sentences()?;
    let threads = options.threads;
    let n = options.requests;

    println!("starting starbucks serve (every schedule) and infinity-emb, {threads} threads each");
    let ours = Server::ours("starbucks", &starbucks, threads, &[])?;
    let others = SCHEDULES
        .iter()
        .map(|schedule| Server::ours(&format!("starbucks-{schedule}"), &starbucks, threads, &["--schedule", schedule]))
        .collect::<Result<Vec<_>>>()?;
    let infinity = Server::infinity(&peer, threads, options.peer_port)?;
    let (full, mixed) = (shots(&texts, None), shots(&texts, Some(&SIZES)));
    // Warm-up: the first requests of each server pay for lazy initialisation.
    for server in [&ours, &infinity].into_iter().chain(&others) {
        server.load(&full, 8, 200)?;
    }

    let mut raw = String::new();
    let mut lines = Vec::new();
    for round in 1..=options.rounds {
        for &c in &options.concurrency {
            // Our full-size run sits between the peer's and our mixed ones, the order flipped
            // every other round, so that each ratio divides runs made next to each other: this
            // VM's speed drifts by 10-30 % within a minute, as much as the targets' margins.
            let mut runs = vec![("full", &infinity, &full), ("full", &ours, &full), ("mixed", &ours, &mixed)];
            runs.extend(others.iter().map(|server| ("mixed", server, &mixed)));
            if round % 2 == 0 {
                runs.reverse();
            }
            for (scenario, server, shots) in runs {
                lines.push(record(&mut raw, scenario, &server.name, c, round, &server.load(shots, c, n)?));
            }
        }
    }

    // Concurrency 1 against the library alone on the same texts.
    let one = Command::new(&starbucks)
        .current_dir(&root)
        .args(["bench", "--workload", "one-short-6", "--model", fetch::MINILM_DIR, "--warmup", "20", "--iters"])
        .arg(n.to_string())
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .context("cannot run starbucks bench --workload one-short-6")?;
    if !one.status.success() {
        bail!("starbucks bench --workload one-short-6 failed: {}", String::from_utf8_lossy(&one.stderr));
    }
    let one: serde_json::Value =
        serde_json::from_slice(one.stdout.trim_ascii()).context("one-short-6 printed no JSON")?;
    let embed_one_ms = one["median_ms"].as_f64().unwrap_or(f64::NAN);
    println!("Embedder::embed of one text alone: median {embed_one_ms:.2} ms");
    let _ = writeln!(raw, "{}", json!({"scenario": "embed-one", "median_ms": embed_one_ms}));

    let soak = soak(&ours, &texts, options.soak, &mut raw)?;
    drop((ours, others, infinity));

    let md = report(&lines, &options, embed_one_ms, &soak);
    println!("\n{md}");
    std::fs::write(output.join("report.md"), &md).context("cannot write report.md")?;
    std::fs::write(output.join("results.jsonl"), raw).context("cannot write results.jsonl")?;
    println!("written: {}/report.md and results.jsonl", output.display());
    Ok(())
}

struct Soak {
    requests: usize,
    bad: usize,
    server_errors: usize,
    /// Bad requests answered with another status than their kind's.
    wrong: usize,
    rss_after_warmup_mb: f64,
    rss_end_mb: f64,
    wall_s: f64,
}

/// `count` requests at concurrency 32, sizes mixed, 1 in 20 bad (malformed JSON, a text over
/// the input limit, a size the model does not have), each bad one expected to get its 4xx.
fn soak(server: &Server, texts: &[String], count: usize, raw: &mut String) -> Result<Soak> {
    let long = texts.join(" ");
    let shots: Vec<Shot> = shots(texts, Some(&SIZES))
        .into_iter()
        .enumerate()
        .map(|(i, shot)| match (i % 20 == 7, i / 20 % 3) {
            (false, _) => shot,
            (true, 0) => Shot { body: br#"{"input": ["a", "#.to_vec(), label: "bad:422".into() },
            (true, 1) => Shot {
                body: json!({"input": [long], "model": SERVED_NAME}).to_string().into_bytes(),
                label: "bad:413".into(),
            },
            (true, _) => {
                Shot { body: json!({"input": ["a"], "layers": 9}).to_string().into_bytes(), label: "bad:422".into() }
            }
        })
        .collect();
    server.load(&shots, 32, 1000)?;
    let rss_after_warmup_mb = server.rss_mb().unwrap_or(f64::NAN);
    let load = loadgen::run(&server.address, server.path, "", &shots, 32, count, Duration::from_secs(900))?;
    let rss_end_mb = server.rss_mb().unwrap_or(f64::NAN);
    let expected = |label: &str| label.strip_prefix("bad:").map_or(200, |code| code.parse().unwrap_or(0));
    let soak = Soak {
        requests: load.outcomes.len(),
        bad: load.outcomes.iter().filter(|o| o.label.starts_with("bad:")).count(),
        server_errors: load.outcomes.iter().filter(|o| o.status >= 500).count(),
        wrong: load.outcomes.iter().filter(|o| o.status != expected(&o.label)).count(),
        rss_after_warmup_mb,
        rss_end_mb,
        wall_s: load.wall.as_secs_f64(),
    };
    let line = json!({
        "scenario": "soak", "requests": soak.requests, "bad": soak.bad, "5xx": soak.server_errors,
        "unexpected_status": soak.wrong, "rss_after_warmup_mb": rss_after_warmup_mb, "rss_end_mb": rss_end_mb,
        "wall_s": soak.wall_s, "texts_per_s": load.throughput(),
    });
    println!("soak: {line}");
    let _ = writeln!(raw, "{line}");
    Ok(soak)
}

fn report(lines: &[serde_json::Value], options: &ServeBenchOptions, embed_one_ms: f64, soak: &Soak) -> String {
    let tput = |l: &serde_json::Value| l["texts_per_s"].as_f64();
    let p50 = |l: &serde_json::Value| l["p50_ms"].as_f64();
    let p99 = |l: &serde_json::Value| l["p99_ms"].as_f64();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "{} rounds, {} requests per run (one STS-B test sentence each), {} threads per server, alternated; medians over rounds, every round in brackets; a ratio is the median of the rounds' ratios, each dividing runs made next to each other.\n",
        options.rounds, options.requests, options.threads
    );
    let _ = writeln!(md, "Full size (6,384), `/v1/embeddings` on both:\n");
    let _ = writeln!(
        md,
        "| concurrency | starbucks texts/s | infinity texts/s | ratio | starbucks p50 / p99 ms | infinity p50 / p99 ms |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for &c in &options.concurrency {
        let (ours, ours_all) = pick(lines, "full", "starbucks", c, &tput);
        let (peer, peer_all) = pick(lines, "full", "infinity", c, &tput);
        let (ratio, ratio_all) = ratios(lines, ("full", "starbucks"), ("full", "infinity"), c, &tput);
        let _ = writeln!(
            md,
            "| {c} | {ours:.0} ({}) | {peer:.0} ({}) | **{ratio:.2}×** ({}) | {:.1} / {:.1} | {:.1} / {:.1} |",
            every_round(&ours_all, 0),
            every_round(&peer_all, 0),
            every_round(&ratio_all, 2),
            pick(lines, "full", "starbucks", c, &p50).0,
            pick(lines, "full", "starbucks", c, &p99).0,
            pick(lines, "full", "infinity", c, &p50).0,
            pick(lines, "full", "infinity", c, &p99).0,
        );
    }
    let _ = writeln!(md, "\nMixed load (sizes uniform over the six), every schedule:\n");
    let _ = writeln!(
        md,
        "| concurrency | schedule | texts/s | / full size | p50 (1,32) ms | p50 (6,384) ms | (1,32) / (6,384) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for &c in &options.concurrency {
        for (server, schedule) in [("starbucks".to_string(), "join (default)")]
            .into_iter()
            .chain(SCHEDULES.iter().map(|s| (format!("starbucks-{s}"), *s)))
        {
            let server = server.as_str();
            let (t, all) = pick(lines, "mixed", server, c, &tput);
            let (ratio, ratio_all) = ratios(lines, ("mixed", server), ("full", "starbucks"), c, &tput);
            let small = pick(lines, "mixed", server, c, &|l| l["p50_ms_by_size"]["1,32"].as_f64()).0;
            let big = pick(lines, "mixed", server, c, &|l| l["p50_ms_by_size"]["6,384"].as_f64()).0;
            let _ = writeln!(
                md,
                "| {c} | {schedule} | {t:.0} ({}) | {ratio:.2}× ({}) | {small:.1} | {big:.1} | {:.2}× |",
                every_round(&all, 0),
                every_round(&ratio_all, 2),
                small / big
            );
        }
    }
    if options.concurrency.contains(&1) {
        let server = pick(lines, "full", "starbucks", 1, &p50).0;
        let _ = writeln!(
            md,
            "\nConcurrency 1: server p50 {server:.2} ms against `Embedder::embed` of one text alone {embed_one_ms:.2} ms: **{:.2}×**.",
            server / embed_one_ms
        );
    }
    let growth = (soak.rss_end_mb / soak.rss_after_warmup_mb - 1.0) * 100.0;
    let _ = writeln!(
        md,
        "\nSoak: {} requests at concurrency 32 in {:.0} s, {} bad ones mixed in; {} answered 5xx, {} with another status than their kind's; resident memory {:.0} MB after warm-up, {:.0} MB at the end ({growth:+.1} %).",
        soak.requests, soak.wall_s, soak.bad, soak.server_errors, soak.wrong, soak.rss_after_warmup_mb, soak.rss_end_mb
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: &str, server: &str, round: usize, texts_per_s: f64) -> serde_json::Value {
        json!({"scenario": scenario, "server": server, "concurrency": 8, "round": round, "texts_per_s": texts_per_s})
    }

    #[test]
    fn ratios_divide_runs_of_the_same_round() {
        let lines = [
            run("full", "starbucks", 1, 400.0),
            run("mixed", "starbucks", 1, 600.0),
            run("full", "starbucks", 2, 300.0),
            run("mixed", "starbucks", 2, 480.0),
            run("full", "starbucks", 3, 500.0),
            run("mixed", "starbucks", 3, 700.0),
            // A round without its full-size run has no ratio.
            run("mixed", "starbucks", 4, 900.0),
        ];
        let tput = |l: &serde_json::Value| l["texts_per_s"].as_f64();
        let (ratio, all) = ratios(&lines, ("mixed", "starbucks"), ("full", "starbucks"), 8, &tput);
        assert_eq!(all, vec![1.5, 1.6, 1.4]);
        assert_eq!(ratio, 1.5);
        // The median of the rounds' ratios, not the ratio of the medians (650 / 400).
        assert_ne!(
            ratio,
            pick(&lines, "mixed", "starbucks", 8, &tput).0 / pick(&lines, "full", "starbucks", 8, &tput).0
        );
    }
}
