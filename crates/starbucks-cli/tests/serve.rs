//! `starbucks serve` over loopback with a real HTTP client (ureq, and curl once): every
//! endpoint, every error status, a concurrent burst of mixed sizes against `Embedder::embed`
//! of each text alone, and SIGTERM under load.

use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::{Server, call, max_abs_diff, minilm, post, vectors};

use base64::Engine as _;
use burn::backend::Flex;
use serde_json::{Value, json};
use starbucks_model::{Embedder, Size};

const SIZES: [Size; 6] =
    [Size::new(1, 32), Size::new(2, 64), Size::new(3, 96), Size::new(4, 128), Size::new(5, 256), Size::new(6, 384)];

/// The first `n` sentences of the shipped STS-B test split.
fn sentences(n: usize) -> Vec<String> {
    let path = support::root().join("data/stsb/sts-test.csv");
    let text = std::fs::read_to_string(path).expect("the shipped STS-B test split");
    text.lines().flat_map(|l| l.split('\t').skip(5).take(2).map(str::to_string).collect::<Vec<_>>()).take(n).collect()
}

#[test]
fn every_endpoint_answers() {
    let server = Server::start(&["--served-model-name", "minilm"]);
    let (status, body) = call(&format!("{}/health", server.url), None, None);
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    let (status, info) = call(&format!("{}/info", server.url), None, None);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(status, 200);
    assert_eq!(info["model_id"], "minilm");
    assert_eq!((info["num_hidden_layers"].as_u64(), info["hidden_size"].as_u64()), (Some(6), Some(384)));
    assert_eq!(info["max_input_length"], 256, "all-MiniLM-L6-v2's sentence_bert_config.json");
    assert_eq!(info["backend"], "flex");
    assert!(info["trained_sizes"].is_array() && info["version"].is_string(), "{info}");

    // TEI: a string gives one vector of the full width, normalised by default.
    let (status, one) = post(&server, "/embed", &json!({"inputs": "A man is playing a guitar."}));
    let one: Vec<Vec<f32>> = vectors(&one);
    assert_eq!((status, one.len(), one[0].len()), (200, 1, 384));
    let norm: f32 = one[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    let (_, small) = post(&server, "/embed", &json!({"inputs": ["a", "b"], "size": "2,64", "normalize": false}));
    let small: Vec<Vec<f32>> = vectors(&small);
    assert_eq!((small.len(), small[0].len()), (2, 64));
    let (_, by_layers) =
        post(&server, "/embed", &json!({"inputs": ["a", "b"], "layers": 2, "dimensions": 64, "normalize": false}));
    assert_eq!(vectors::<Vec<Vec<f32>>>(&by_layers), small, "`size` and `layers` + `dimensions` are the same request");

    // OpenAI: float and base64 give the same numbers; usage counts the tokens.
    let request = json!({"input": ["A man is playing a guitar.", "A dog runs."], "model": "minilm", "dimensions": 64, "layers": 2});
    let (status, float) = post(&server, "/v1/embeddings", &request);
    assert_eq!(status, 200, "{float}");
    assert_eq!((float["object"].as_str(), float["model"].as_str()), (Some("list"), Some("minilm")));
    assert_eq!(float["data"][1]["index"], 1);
    let tokens = float["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(tokens, float["usage"]["total_tokens"].as_u64().unwrap());
    assert!(tokens >= 8, "[CLS] … [SEP] of both texts: {tokens}");
    let mut base64_request = request.clone();
    base64_request["encoding_format"] = json!("base64");
    let (_, encoded) = post(&server, "/v1/embeddings", &base64_request);
    for i in 0..2 {
        let floats: Vec<f32> = serde_json::from_value(float["data"][i]["embedding"].clone()).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!((floats.len(), decoded), (64, floats));
    }

    let (status, metrics) = call(&format!("{}/metrics", server.url), None, None);
    assert_eq!(status, 200);
    for needle in [
        "starbucks_requests_total{endpoint=\"embed\",code=\"200\"} 3",
        "starbucks_requests_total{endpoint=\"v1/embeddings\",code=\"200\"} 2",
        "starbucks_request_duration_seconds_count{size=\"2,64\"} 4",
        "starbucks_request_duration_seconds_count{size=\"6,384\"} 1",
        "starbucks_texts_total 9",
        "starbucks_queue_depth 0",
        "# TYPE starbucks_batch_tokens histogram",
    ] {
        assert!(metrics.lines().any(|l| l == needle), "missing {needle:?} in\n{metrics}");
    }
}

#[test]
fn curl_gets_the_same_vectors_as_the_rust_client() {
    let server = Server::start(&[]);
    let body = r#"{"inputs": "A man is playing a guitar.", "size": "3,96"}"#;
    let out = Command::new("curl")
        .args(["-sS", "-H", "content-type: application/json", "-d", body, &format!("{}/embed", server.url)])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from_curl: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (_, from_ureq) = call(&format!("{}/embed", server.url), Some(body), None);
    assert_eq!(from_curl, serde_json::from_str::<Value>(&from_ureq).unwrap());
}

/// Status, `error_type`, and that the message holds `needle`; every error body is that JSON.
fn assert_error(response: (u16, String), status: u16, error_type: &str, needle: &str) {
    let (got, text) = response;
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(got, status, "{text}");
    assert_eq!(body["error_type"], error_type, "{text}");
    assert!(body["error"].as_str().unwrap().contains(needle), "{text} lacks {needle:?}");
}

#[test]
fn every_error_has_its_status_and_a_json_body() {
    let key = "sesame";
    let server = Server::start(&[
        "--api-key",
        key,
        "--max-client-batch-size",
        "4",
        "--max-input-length",
        "16",
        "--payload-limit",
        "4000",
        "--auto-truncate",
        "false",
    ]);
    let embed = format!("{}/embed", server.url);
    let openai = format!("{}/v1/embeddings", server.url);
    let send = |url: &str, body: &str| call(url, Some(body), Some(key));

    assert_error(call(&embed, Some(r#"{"inputs": "a"}"#), None), 401, "Unauthorized", "Authorization");
    assert_error(call(&embed, Some(r#"{"inputs": "a"}"#), Some("wrong")), 401, "Unauthorized", "wrong");
    assert_error(call(&format!("{}/metrics", server.url), None, None), 401, "Unauthorized", "Authorization");
    assert_eq!(call(&format!("{}/health", server.url), None, None).0, 200, "/health needs no key (probes)");

    assert_error(send(&embed, r#"{"inputs": "a""#), 422, "Validation", "not valid JSON");
    assert_error(send(&embed, r#"{"inputs": 7}"#), 422, "Validation", "field `inputs`");
    assert_error(send(&embed, r#"{"inputs": "a", "truncate": "yes"}"#), 422, "Validation", "field `truncate`");
    assert_error(send(&embed, r#"{"inputs": []}"#), 400, "Empty", "`inputs`");
    assert_error(
        send(&embed, r#"{"inputs": ["a", "b", "c", "d", "e"]}"#),
        413,
        "Validation",
        "--max-client-batch-size 4",
    );
    let long =
        json!({"inputs": "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"});
    assert_error(send(&embed, &long.to_string()), 413, "Validation", "16 tokens");
    assert_error(send(&embed, r#"{"inputs": [[101, 30522, 102]]}"#), 422, "Validation", "token id 30522");
    let mut cut = long.clone();
    cut["truncate"] = json!(true);
    assert_eq!(send(&embed, &cut.to_string()).0, 200, "truncate: true cuts instead");
    assert_error(send(&embed, r#"{"inputs": "a", "layers": 7}"#), 422, "Validation", "6 layers");
    assert_error(send(&embed, r#"{"inputs": "a", "dimensions": 512}"#), 422, "Validation", "384 dims");
    // The OpenAI route answers in TEI's OpenAI-style error shape.
    for (body, status, kind, needle) in [
        (r#"{"input": "a", "encoding_format": "hex"}"#, 422, "Validation", "`encoding_format`"),
        (r#"{"input": []}"#, 400, "Empty", "`input`"),
        (r#"{"input": "a", "size": "venti"}"#, 422, "Validation", "`size`"),
    ] {
        let (got, text) = send(&openai, body);
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((got, error["code"].as_u64(), error["type"].as_str()), (status, Some(status as u64), Some(kind)));
        assert!(error["message"].as_str().unwrap().contains(needle), "{text} lacks {needle:?}");
    }
    let huge = json!({"inputs": "x".repeat(5000)}).to_string();
    assert_error(send(&embed, &huge), 413, "Validation", "4000 bytes");
    assert_error(send(&format!("{}/nowhere", server.url), "{}"), 404, "NotFound", "/embed");
    assert_error(call(&embed, None, Some(key)), 405, "Validation", "method");

    // Failing requests beside good ones in the same moment do not disturb them.
    let reference = send(&embed, r#"{"inputs": ["a dog", "a cat"], "size": "3,96"}"#);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let (embed, reference) = (&embed, &reference);
                scope.spawn(move || {
                    if i % 2 == 0 {
                        assert_eq!(send(embed, r#"{"inputs": ["a dog", "a cat"], "size": "3,96"}"#), *reference);
                    } else {
                        assert_eq!(send(embed, r#"{"inputs": ["a dog", 3]}"#).0, 422);
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    });
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Polls `/metrics` until `starbucks_requests_in_flight` reads `n`.
fn wait_in_flight(server: &Server, n: usize) {
    let needle = format!("starbucks_requests_in_flight {n}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !call(&format!("{}/metrics", server.url), None, None).1.lines().any(|l| l == needle) {
        assert!(Instant::now() < deadline, "never {needle}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A request of `texts` copies of a long text at the full size: seconds of encoder work.
fn heavy(texts: usize) -> String {
    let text = sentences(60).join(" ");
    json!({"inputs": vec![text; texts], "truncate": true}).to_string()
}

#[test]
fn more_concurrent_requests_than_the_limit_get_429() {
    let server = Server::start(&["--max-concurrent-requests", "1", "--max-client-batch-size", "64"]);
    let embed = format!("{}/embed", server.url);
    std::thread::scope(|scope| {
        let slow = scope.spawn(|| call(&embed, Some(&heavy(64)), None));
        wait_in_flight(&server, 1);
        assert_error(call(&embed, Some(r#"{"inputs": "a"}"#), None), 429, "Overloaded", "--max-concurrent-requests");
        assert_eq!(slow.join().unwrap().0, 200);
    });
    assert_eq!(call(&embed, Some(r#"{"inputs": "a"}"#), None).0, 200, "a slot is free again");
}

#[test]
fn a_concurrent_burst_of_mixed_sizes_matches_embed_alone() {
    let server = Server::start(&[]);
    let texts = sentences(48);
    let results: Vec<(usize, Size, Vec<f32>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|worker| {
                let (server, texts) = (&server, &texts);
                scope.spawn(move || {
                    (worker..texts.len())
                        .step_by(8)
                        .map(|i| {
                            let size = SIZES[i % SIZES.len()];
                            let body = if i % 2 == 0 {
                                json!({"inputs": texts[i], "size": format!("{},{}", size.layers, size.dims)})
                            } else {
                                json!({"inputs": [texts[i]], "layers": size.layers, "dimensions": size.dims})
                            };
                            let (status, value) = post(server, "/embed", &body);
                            assert_eq!(status, 200, "{value}");
                            (i, size, vectors::<Vec<Vec<f32>>>(&value).remove(0))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.len(), texts.len());
    let embedder = Embedder::<Flex>::from_pretrained(minilm(), &Default::default()).unwrap();
    let mut worst = 0.0f32;
    for (i, size, got) in results {
        let alone = embedder.embed(&[&texts[i]], size).unwrap().remove(0);
        worst = worst.max(max_abs_diff(&got, &alone));
    }
    assert!(worst <= 1e-5, "max abs diff {worst}");
    // The burst was batched: fewer batches than texts.
    let (_, metrics) = call(&format!("{}/metrics", server.url), None, None);
    let batches: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("starbucks_batch_size_count "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(batches >= 1 && batches <= texts.len() as u64 + 1, "{batches} batches\n{metrics}");
}

#[test]
fn sigterm_under_load_answers_every_accepted_request_and_exits_0() {
    let mut server = Server::start(&["--max-client-batch-size", "64"]);
    let embed = format!("{}/embed", server.url);
    let accepted = 6;
    let results: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..accepted).map(|_| scope.spawn(|| call(&embed, Some(&heavy(16)), None))).collect();
        wait_in_flight(&server, accepted);
        server.signal("TERM");
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
        let got: Vec<Vec<f32>> = serde_json::from_str(body).unwrap();
        assert_eq!((got.len(), got[0].len()), (16, 384));
    }
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    let log = server.log();
    assert!(log.contains("stopping") && log.contains("every accepted request was answered"), "{log}");
    assert!(!log.contains('\u{1b}'), "no ANSI colours when stderr is not a terminal: {log}");
    assert!(ureq::get(&format!("{}/health", server.url)).call().is_err(), "the port is closed");
}

#[test]
fn bad_flags_and_models_fail_before_the_port_opens() {
    let run = |args: &[&str]| {
        let out = support::command(&[]).arg("serve").args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stderr) = run(&["--model", "/nonexistent/model", "--port", "0"]);
    assert!(code == Some(1) && stderr.contains("/nonexistent/model") && !stderr.contains("panicked"), "{stderr}");
    let (code, stderr) = run(&["--model", &minilm(), "--port", "0", "--max-input-length", "1000"]);
    assert!(code == Some(1) && stderr.contains("--max-input-length 1000"), "{stderr}");
    let (code, stderr) = run(&["--model", &minilm(), "--port", "0", "--max-batch-tokens", "0"]);
    assert!(code == Some(1) && stderr.contains("--max-batch-tokens must be at least 1"), "{stderr}");
}
