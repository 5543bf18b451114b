//! The `starbucks` binary: bad input is one line on stderr and a non-zero exit, never a panic.

mod support;
use support::{minilm, starbucks, starbucks_with_env};

/// Three STS-B lines (score, sentence 1, sentence 2 in columns 5–7).
const STS_PAIRS: &str = "g\tf\t2012\t1\t5.0\tA cat sits.\tA cat is sitting.\ng\tf\t2012\t2\t0.5\tA cat sits.\tStocks fell.\ng\tf\t2012\t3\t3.0\tA dog runs.\tA dog is running fast.\n";

fn assert_clean_failure(code: i32, stderr: &str, needle: &str) {
    assert_eq!(code, 1, "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{stderr}");
}

#[test]
fn a_missing_model_folder_is_one_line_naming_it() {
    let (code, _, stderr) = starbucks(&["similarity", "--model", "/nonexistent/model"]);
    assert_clean_failure(code, &stderr, "/nonexistent/model");
}

#[test]
fn a_size_larger_than_the_model_is_refused() {
    let (code, stdout, stderr) = starbucks(&["similarity", "--model", &minilm(), "--sizes", "7,32"]);
    assert_clean_failure(code, &stderr, "7 layers");
    assert!(stdout.is_empty());
}

#[test]
fn similarity_prints_one_matrix_per_size() {
    let (code, stdout, stderr) = starbucks(&["similarity", "--model", &minilm(), "--sizes", "1,32 tall", "a", "b"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("size (1, 32)") && stdout.contains("size tall (6, 128)"), "{stdout}");
    // A text compared with itself has cosine 1.
    assert_eq!(stdout.matches("1.000").count(), 4, "{stdout}");
}

#[test]
fn a_bad_size_is_a_usage_error() {
    let (code, _, stderr) = starbucks(&["similarity", "--model", &minilm(), "--sizes", "3x96"]);
    assert_eq!(code, 2, "clap's usage error code: {stderr}");
    assert!(stderr.contains("invalid size '3x96'") && !stderr.contains("panicked"), "{stderr}");
}

#[test]
fn embed_writes_json_lines_and_npy() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "first text\nsecond text\nthird\n").unwrap();
    let input = input.to_str().unwrap();
    let (code, stdout, stderr) = starbucks(&["embed", "--model", &minilm(), "--size", "2,64", "--input", input]);
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<Vec<f32>> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((rows.len(), rows[0].len()), (3, 64));

    let npy = dir.path().join("out.npy");
    let (code, _, stderr) = starbucks(&[
        "embed",
        "--model",
        &minilm(),
        "--size",
        "2,64",
        "--input",
        input,
        "--format",
        "npy",
        "--output",
        npy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'shape': (3, 64)") && (10 + header_len).is_multiple_of(64), "{header}");
    let first: Vec<f32> =
        bytes[10 + header_len..].chunks(4).take(64).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert!(first.iter().zip(&rows[0]).all(|(a, b)| (a - b).abs() < 1e-6));
    assert_eq!(bytes.len(), 10 + header_len + 3 * 64 * 4);
}

#[test]
fn eval_on_a_beir_folder_writes_reports_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let beir = dir.path().join("tiny-beir");
    std::fs::create_dir_all(beir.join("qrels")).unwrap();
    std::fs::write(
        beir.join("corpus.jsonl"),
        "{\"_id\":\"d1\",\"title\":\"Guitars\",\"text\":\"A man plays the guitar on stage.\"}\n\
         {\"_id\":\"d2\",\"title\":\"\",\"text\":\"The stock market fell on Monday.\"}\n\
         {\"_id\":\"d3\",\"text\":\"Onions are sliced in the kitchen.\"}\n",
    )
    .unwrap();
    std::fs::write(
        beir.join("queries.jsonl"),
        "{\"_id\":\"q1\",\"text\":\"who plays guitar\"}\n{\"_id\":\"q2\",\"text\":\"stock prices\"}\n",
    )
    .unwrap();
    std::fs::write(beir.join("qrels/test.tsv"), "query-id\tcorpus-id\tscore\nq1\td1\t2\nq2\td2\t2\n").unwrap();
    let stsb = dir.path().join("sts.csv");
    std::fs::write(&stsb, STS_PAIRS).unwrap();
    let out = dir.path().join("out");
    let (code, stdout, stderr) = starbucks(&[
        "eval",
        "--model",
        &minilm(),
        "--sizes",
        "1,32 6,384",
        "--stsb",
        stsb.to_str().unwrap(),
        "--beir",
        beir.to_str().unwrap(),
        "--no-throughput",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("tiny-beir nDCG@10") && stdout.contains("sts Spearman"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let ndcg = report[0]["rows"].as_array().unwrap().iter().find(|r| r["name"] == "tiny-beir nDCG@10").unwrap();
    assert_eq!(ndcg["values"][1].as_f64().unwrap(), 1.0, "the full model ranks both right: {ndcg}");
    assert!(out.join("runs/all-MiniLM-L6-v2/run.6x384.trec").is_file());
}

fn data_dir() -> String {
    support::root().join("data").display().to_string()
}

#[test]
fn bench_times_a_workload_and_prints_one_json_line() {
    let (model, data) = (minilm(), data_dir());
    // The side names the path: ours, in the precision asked for. bf16 runs where the CPU has
    // AVX-512 BF16 and is refused, by name, where it has not.
    for precision in ["f32", "int8", "bf16"] {
        let args = [
            "bench",
            "--workload",
            "forward-2",
            "--model",
            &model,
            "--data",
            &data,
            "--warmup",
            "0",
            "--iters",
            "2",
            "--precision",
            precision,
        ];
        let (code, stdout, stderr) = starbucks(&args);
        if precision == "bf16" && !cpu_has_avx512_bf16() {
            assert_clean_failure(code, &stderr, "precision bf16 needs a CPU with AVX-512 BF16");
            continue;
        }
        assert_eq!(code, 0, "{stderr}");
        let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
        let side = format!("burn-{precision}");
        assert_eq!((line["side"].as_str(), line["workload"].as_str()), (Some(side.as_str()), Some("forward-2")));
        assert_eq!(line["times_ms"].as_array().map(Vec::len), Some(2));
        assert_eq!(line["items"], 256, "the first 256 STS-B test sentences");
        assert!(line["tokens"].as_u64().unwrap() <= line["padded_tokens"].as_u64().unwrap());
        assert!(line["peak_rss_mb"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn starbucks_simd_holds_the_kernels_to_a_lower_tier_and_an_unknown_tier_is_refused() {
    let (model, data) = (minilm(), data_dir());
    let bench = |precision: &str, simd: &str| {
        let args =
            ["bench", "--workload", "forward-1", "--model", &model, "--data", &data, "--warmup", "0", "--iters", "1"];
        starbucks_with_env(&[&args[..], &["--precision", precision]].concat(), &[("STARBUCKS_SIMD", simd)])
    };
    let avx2 = cpu_has(&["avx2", "fma"]);
    for (simd, runs) in [("scalar", "scalar"), ("avx2", if avx2 { "avx2" } else { "scalar" })] {
        let (code, stdout, stderr) = bench("int8", simd);
        assert_eq!(code, 0, "{stderr}");
        let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
        assert_eq!(line["simd"], runs, "STARBUCKS_SIMD={simd}");
        // bf16 runs at speed on the AVX-512 tier only, and is refused below it.
        let (code, _, stderr) = bench("bf16", simd);
        assert_clean_failure(code, &stderr, "or STARBUCKS_SIMD holds the kernels below avx512");
    }
    let (code, _, stderr) = bench("f32", "avx3");
    assert_clean_failure(code, &stderr, "STARBUCKS_SIMD=\"avx3\" names no instruction-set tier");
}

/// Whether this CPU has what the bf16 products need (the kernels' own test, read from
/// /proc/cpuinfo here so that the test does not share the code it checks).
fn cpu_has_avx512_bf16() -> bool {
    cpu_has(&["avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"])
}

/// Whether /proc/cpuinfo lists every one of `wanted` among the CPU's flags.
fn cpu_has(wanted: &[&str]) -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
    wanted.iter().all(|flag| flags.split_whitespace().any(|f| f == *flag))
}

#[test]
fn bench_refuses_an_unknown_workload_and_a_layer_the_model_lacks() {
    let (model, data) = (minilm(), data_dir());
    for workload in ["train-everything", "forward-7", "forward-0"] {
        let (code, _, stderr) = starbucks(&["bench", "--workload", workload, "--model", &model, "--data", &data]);
        assert_clean_failure(code, &stderr, &format!("unknown workload '{workload}'"));
    }
}

/// Runs `starbucks` with `stdin` fed to it; fails the test instead of hanging past `limit`.
fn starbucks_with_input(args: &[&str], stdin: &[u8], limit: std::time::Duration) -> (i32, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = support::command(&[])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin).unwrap();
    drop(pipe);
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("starbucks {args:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn embed_refuses_an_output_that_is_its_input() {
    // Issue 17, item 1: `--input F --output F` truncated F to 0 bytes and exited 0.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "first text\nsecond text\n").unwrap();
    let input = input.to_str().unwrap();
    let (code, _, stderr) = starbucks(&["embed", "--model", &minilm(), "--input", input, "--output", input]);
    assert_clean_failure(code, &stderr, "the output is the input");
    assert_eq!(std::fs::read_to_string(input).unwrap(), "first text\nsecond text\n");
}

#[test]
fn a_failed_embed_leaves_the_earlier_output_as_it_was() {
    // Issue 17, item 2: bad UTF-8 at line 150 had already replaced a good output with an
    // empty one.
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "first text\nsecond text\n").unwrap();
    let mut bad = "a line\n".repeat(149).into_bytes();
    bad.extend(b"\xff\xfe not UTF-8\n");
    let bad_path = dir.path().join("bad.txt");
    std::fs::write(&bad_path, bad).unwrap();
    for (format, name) in [("jsonl", "out.jsonl"), ("npy", "out.npy")] {
        let out = dir.path().join(name);
        let run = |input: &std::path::Path| {
            let out = out.to_str().unwrap();
            starbucks(&[
                "embed",
                "--model",
                &minilm(),
                "--size",
                "1,32",
                "--input",
                input.to_str().unwrap(),
                "--format",
                format,
                "--output",
                out,
            ])
        };
        assert_eq!(run(&good).0, 0);
        let before = std::fs::read(&out).unwrap();
        let (code, _, stderr) = run(&bad_path);
        assert_clean_failure(code, &stderr, "bad.txt:150");
        assert_eq!(std::fs::read(&out).unwrap(), before, "{format}: the earlier output is untouched");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 4, "no partial file left beside the outputs: {left:?}");
}

#[test]
fn embed_reads_a_pipe_in_one_pass_and_refuses_a_folder() {
    // Issue 17, item 3: `--input <(cmd)` wrote 0 vectors (a counting pass drained the pipe);
    // item 9: `--input <folder>` spun forever.
    let limit = std::time::Duration::from_secs(120);
    let (code, stdout, stderr) = starbucks_with_input(
        &["embed", "--model", &minilm(), "--size", "1,32", "--input", "/dev/stdin"],
        b"one\ntwo\nthree\n",
        limit,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) =
        starbucks_with_input(&["embed", "--model", &minilm(), "--input", dir.path().to_str().unwrap()], b"", limit);
    assert_clean_failure(code, &stderr, "is a folder");
}

#[test]
fn eval_refuses_a_size_given_twice() {
    // Issue 17, item 6: a repeated size counted twice in the average.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval");
    let (code, _, stderr) =
        starbucks(&["eval", "--model", &minilm(), "--sizes", "1,32 3,96 1,32", "--output", out.to_str().unwrap()]);
    assert_clean_failure(code, &stderr, "(1, 32) is given twice");
    assert!(!out.exists(), "nothing written");
}

/// A copy of all-MiniLM-L6-v2's folder in `dir` with `edit` applied to its config.json and
/// its weights rewritten by `weights` (name, shape, little-endian f32 bytes).
fn edited_minilm(
    dir: &std::path::Path,
    edit: impl Fn(&mut serde_json::Value),
    weights: impl Fn(&str, &mut Vec<usize>, &mut Vec<u8>),
) {
    let source = std::path::PathBuf::from(minilm());
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut data: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let (mut shape, mut raw) = (view.shape().to_vec(), view.data().to_vec());
            weights(&name, &mut shape, &mut raw);
            (name, view.dtype(), shape, raw)
        })
        .collect();
    data.sort_by(|a, b| a.0.cmp(&b.0));
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(name, dtype, shape, raw)| {
            (name.clone(), safetensors::tensor::TensorView::new(*dtype, shape.clone(), raw).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn non_finite_weights_are_refused_naming_the_module() {
    // Issue 17, item 5: NaN weights loaded silently and gave NaN similarities with exit 0.
    let dir = tempfile::tempdir().unwrap();
    edited_minilm(
        dir.path(),
        |_| {},
        |name, _, raw| {
            if name.ends_with("encoder.layer.2.attention.self.key.weight") {
                raw[..4].copy_from_slice(&f32::NAN.to_le_bytes());
            }
        },
    );
    let (code, _, stderr) = starbucks(&["similarity", "--model", dir.path().to_str().unwrap(), "a", "b"]);
    assert_clean_failure(code, &stderr, "encoder.layer.2.attention.self.key");
    assert!(stderr.contains("NaN or infinite"), "{stderr}");
}

#[test]
fn a_vocab_size_below_the_tokenizers_is_refused_on_load() {
    // Issue 17, item 8: a panic inside burn-flex's gather, exit 101.
    let dir = tempfile::tempdir().unwrap();
    edited_minilm(
        dir.path(),
        |config| config["vocab_size"] = serde_json::json!(1000),
        |name, shape, raw| {
            if name.ends_with("word_embeddings.weight") {
                shape[0] = 1000;
                raw.truncate(1000 * 384 * 4);
            }
        },
    );
    let (code, _, stderr) = starbucks(&["similarity", "--model", dir.path().to_str().unwrap(), "a", "b"]);
    assert_clean_failure(code, &stderr, "`vocab_size` 1000");
}

/// Issue 17, item 13: "model folder not found" was printed twice for a file; a missing
/// `hidden_size` defaulted to 768 and the error blamed the weights; `eval` left an empty output
/// folder for a bad model; an output under an unwritable path failed only after the model loaded.
#[test]
fn bad_models_and_outputs_are_named_once_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval");
    let o = out.to_str().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let stsb = support::root().join("data/stsb/sts-test.csv").display().to_string();
    let eval = |model: &str, output: &str| starbucks(&["eval", "--model", model, "--output", output, "--stsb", &stsb]);
    let (code, _, stderr) = eval(file.to_str().unwrap(), o);
    assert_clean_failure(code, &stderr, "a-file: a file, not a model folder");
    assert_eq!(stderr.matches("folder").count(), 1, "said once: {stderr}");
    assert!(!out.exists(), "no output folder for a bad model");

    let no_weights = dir.path().join("no-weights");
    std::fs::create_dir(&no_weights).unwrap();
    std::fs::copy(format!("{}/config.json", minilm()), no_weights.join("config.json")).unwrap();
    let (code, _, stderr) = eval(no_weights.to_str().unwrap(), o);
    assert_clean_failure(code, &stderr, "no-weights/");
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "the reason once: {stderr}");
    assert!(!out.exists(), "no output folder for a bad model");

    let unshaped = dir.path().join("unshaped");
    std::fs::create_dir(&unshaped).unwrap();
    edited_minilm(&unshaped, |c| drop(c.as_object_mut().unwrap().remove("hidden_size")), |_, _, _| {});
    let (code, _, stderr) = eval(unshaped.to_str().unwrap(), o);
    assert_clean_failure(code, &stderr, "config.json: missing field `hidden_size`");

    // Refused before the model loads: the message names the output and the folder it needs.
    for (output, needle) in [
        (file.join("eval"), "a-file is a file, not a folder".to_string()),
        ("/proc/no-such/eval".into(), "/proc/no-such/eval: cannot write in /proc".to_string()),
    ] {
        let o = output.to_str().unwrap();
        let (code, _, stderr) = eval("/nonexistent/model", o);
        assert_clean_failure(code, &stderr, &needle);
        let (code, _, stderr) =
            starbucks(&["embed", "--model", "/nonexistent/model", "--input", "/dev/null", "--output", o]);
        assert_clean_failure(code, &stderr, &needle);
        let (code, _, stderr) =
            starbucks(&["export", "--model", "/nonexistent/model", "--size", "2,64", "--output", o]);
        assert_clean_failure(code, &stderr, &needle);
    }
}

/// Issue 17, item 14: the STS average (the demo's) averaged STS-B dev and test together.
#[test]
fn the_sts_average_leaves_out_dev_splits() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = "g\tf\t2012\t1\t5.0\tA cat sits.\tA cat is sitting.\ng\tf\t2012\t2\t0.5\tA cat sits.\tStocks fell.\n\
                 g\tf\t2012\t3\t3.0\tA dog runs.\tA dog is running fast.\ng\tf\t2012\t4\t1.0\tA dog runs.\tIt rains.\n";
    let mut args = vec!["eval".to_string(), "--model".into(), minilm(), "--sizes".into(), "1,32 6,384".into()];
    for (name, text) in [
        ("sts-dev.csv", pairs.to_string()),
        ("sts-test.csv", pairs.replace("5.0", "0.1")),
        ("other.csv", pairs.to_string()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        args.extend(["--stsb".into(), path.display().to_string()]);
    }
    let out = dir.path().join("out");
    args.extend(["--no-throughput".into(), "--output".into(), out.display().to_string()]);
    let (code, _, stderr) = starbucks(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let rows = report[0]["rows"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name}: {rows:?}"));
    let average = row("STS average Spearman (sts-test, other)");
    for j in 0..2 {
        let want = (row("sts-test Spearman")["values"][j].as_f64().unwrap()
            + row("other Spearman")["values"][j].as_f64().unwrap())
            / 2.0;
        assert!((average["values"][j].as_f64().unwrap() - want).abs() < 1e-12, "{average}");
    }
}

/// Issue 19: a SemEval year is one score over all its subsets' pairs (MTEB's and SentEval's
/// "all"), averaged with the other benchmarks; its subsets are reported but not averaged.
#[test]
fn a_semeval_year_is_scored_over_all_its_subsets() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: std::path::PathBuf, text: &str| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let (a, a_gold) =
        ("A cat sits.\tA cat is sitting.\nA cat sits.\tStocks fell.\nA dog runs.\tIt rains.\n", "5\n0.5\n1\n");
    let (b, b_gold) = ("A dog runs.\tA dog is running fast.\nA man sings.\tA man is singing.\n", "3\n4.8\n");
    let year = dir.path().join("STS12");
    write(year.join("STS.input.MSRpar.txt"), a);
    write(year.join("STS.gs.MSRpar.txt"), a_gold);
    write(year.join("STS.input.OnWN.txt"), b);
    write(year.join("STS.gs.OnWN.txt"), b_gold);
    // The same pairs as one subset: its score is what the year's must be.
    let whole = dir.path().join("whole");
    write(whole.join("STS.input.all.txt"), &format!("{a}{b}"));
    write(whole.join("STS.gs.all.txt"), &format!("{a_gold}{b_gold}"));
    let stsb = dir.path().join("sts-test.csv");
    write(stsb.clone(), STS_PAIRS);

    let report = |semeval: &std::path::Path, out: &str| {
        let out = dir.path().join(out);
        let (code, _, stderr) = starbucks(&[
            "eval",
            "--model",
            &minilm(),
            "--sizes",
            "1,32 6,384",
            "--stsb",
            stsb.to_str().unwrap(),
            "--semeval",
            semeval.to_str().unwrap(),
            "--grid",
            "--grid-dims",
            "32",
            "--no-throughput",
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        report[0].clone()
    };
    let split = report(&year, "split");
    let rows = split["rows"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name}: {rows:?}"));
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "sts-test Spearman",
            "STS12 Spearman",
            "STS12/MSRpar Spearman",
            "STS12/OnWN Spearman",
            "STS average Spearman (sts-test, STS12)"
        ]
    );
    assert_eq!(row("STS12 Spearman")["source"], year.display().to_string());
    assert_eq!(row("STS12/OnWN Spearman")["source"], year.join("STS.input.OnWN.txt").display().to_string());
    let joined = report(&whole, "whole");
    let whole_row = joined["rows"].as_array().unwrap().iter().find(|r| r["name"] == "whole Spearman").unwrap().clone();
    assert_eq!(row("STS12 Spearman")["values"], whole_row["values"]);
    // The grid averages the two benchmarks (sts-test, the year), not the subsets: the same as
    // with the year given as one subset.
    assert_eq!(split["grid"]["values"], joined["grid"]["values"]);
    for j in 0..2 {
        let value = |name: &str| row(name)["values"][j].as_f64().unwrap();
        let want = (value("sts-test Spearman") + value("STS12 Spearman")) / 2.0;
        assert!((value("STS average Spearman (sts-test, STS12)") - want).abs() < 1e-12);
    }
}
