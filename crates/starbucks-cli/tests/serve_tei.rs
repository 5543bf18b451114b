//! `starbucks serve` as a drop-in for TEI, over loopback with real clients (ureq, raw sockets):
//! TEI's routes and shapes, token-id inputs, the timing headers, `--auto-truncate`, CORS, the
//! Prometheus port, the OpenAPI spec and its docs page, and the header and body timeouts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod support;
use support::{Server, agent, call, max_abs_diff, post, vectors};

use serde_json::{Value, json};

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const TEXTS: [&str; 3] = ["A man is playing a guitar.", "A man plays the guitar.", "The stock market fell sharply."];

#[test]
fn teis_routes_answer_in_teis_shapes() {
    let server = Server::start(&[]);

    // /similarity: the cosine of /embed's vectors, at the request's size.
    let (status, embedded) = post(&server, "/embed", &json!({"inputs": TEXTS, "layers": 2, "dimensions": 64}));
    assert_eq!(status, 200, "{embedded}");
    let embedded: Vec<Vec<f32>> = vectors(&embedded);
    let request = json!({"inputs": {"source_sentence": TEXTS[0], "sentences": &TEXTS[1..]}, "size": "2,64"});
    let (status, scores) = post(&server, "/similarity", &request);
    assert_eq!(status, 200, "{scores}");
    let scores: Vec<f32> = vectors(&scores);
    assert_eq!(scores.len(), 2);
    for (score, other) in scores.iter().zip(&embedded[1..]) {
        assert!((score - dot(&embedded[0], other)).abs() < 1e-5, "{score}");
    }
    assert!(scores[0] > scores[1], "a paraphrase scores above an unrelated text: {scores:?}");
    let parameters = json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": {"truncate": true}});
    assert_eq!(post(&server, "/similarity", &parameters).0, 200);
    // Nested objects are objects: serde would read a struct from a list field by field
    // (schemathesis sent `"parameters": []`).
    for (body, needle) in [
        (json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": []}), "`parameters`"),
        (json!({"inputs": ["a", ["b"]]}), "`inputs`"),
        (
            json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": {"truncate": 3}}),
            "`parameters.truncate`",
        ),
    ] {
        let (status, error) = post(&server, "/similarity", &body);
        assert_eq!(status, 422, "{body}: {error}");
        assert!(error["error"].as_str().unwrap().contains(needle), "{body}: {error}");
    }
    let prompt = json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": {"prompt_name": "q"}});
    let (status, error) = post(&server, "/similarity", &prompt);
    assert_eq!(status, 422, "{error}");
    assert!(error["error"].as_str().unwrap().contains("`parameters.prompt_name`"), "{error}");
    let null = json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": null});
    assert_eq!(post(&server, "/similarity", &null).0, 200);

    // /tokenize: ids, byte offsets and special tokens; /decode inverts it.
    let (status, tokens) = post(&server, "/tokenize", &json!({"inputs": "Hello, café!"}));
    assert_eq!(status, 200, "{tokens}");
    let tokens = &tokens[0];
    assert_eq!(tokens[0], json!({"id": 101, "text": "[CLS]", "special": true, "start": null, "stop": null}));
    // `text` is the input's own slice, as TEI's.
    assert_eq!(tokens[1], json!({"id": 7592, "text": "Hello", "special": false, "start": 0, "stop": 5}));
    let cafe = tokens.as_array().unwrap().iter().find(|t| t["text"] == "café").expect("café is one token");
    assert_eq!((cafe["start"].as_u64(), cafe["stop"].as_u64()), (Some(7), Some(12)), "byte offsets");
    let ids: Vec<u32> = tokens.as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap() as u32).collect();
    let (_, bare) = post(&server, "/tokenize", &json!({"inputs": ["Hello"], "add_special_tokens": false}));
    assert_eq!(bare, json!([[{"id": 7592, "text": "Hello", "special": false, "start": 0, "stop": 5}]]));
    let (status, texts) = post(&server, "/decode", &json!({"ids": ids}));
    assert_eq!((status, texts), (200, json!(["hello, cafe!"])), "BERT uncased strips accents");
    let (_, texts) = post(&server, "/decode", &json!({"ids": [[101, 7592], [2088]], "skip_special_tokens": false}));
    assert_eq!(texts, json!(["[CLS] hello", "world"]));
    // JSON Schema's integers include 7592.0 (schemathesis sent such ids).
    assert_eq!(post(&server, "/decode", &json!({"ids": [7592.0, 2088]})).1, json!(["hello world"]));
    let (status, error) = post(&server, "/decode", &json!({"ids": [[7592], [30522]]}));
    assert_eq!(status, 422, "{error}");
    assert!(error["error"].as_str().unwrap().contains("list 1: token id 30522"), "{error}");

    // Token ids as inputs give the vectors of the text they came from, on TEI's and OpenAI's routes.
    let (_, from_text) = post(&server, "/embed", &json!({"inputs": "Hello, café!", "size": "3,96"}));
    let (_, from_ids) = post(&server, "/embed", &json!({"inputs": ids, "size": "3,96"}));
    let (_, batch) = post(&server, "/embed", &json!({"inputs": [ids, "Hello, café!"], "size": "3,96"}));
    assert_eq!(from_ids, from_text);
    assert_eq!(batch, json!([from_text[0], from_text[0]]));
    let (status, openai) = post(&server, "/v1/embeddings", &json!({"input": [ids], "size": "3,96"}));
    assert_eq!(status, 200, "{openai}");
    let openai: Vec<f32> = vectors(&openai["data"][0]["embedding"]);
    assert!(max_abs_diff(&openai, &vectors::<Vec<Vec<f32>>>(&from_text)[0]) < 1e-6);
    let (_, alias) = post(&server, "/embeddings", &json!({"input": [ids], "size": "3,96"}));
    assert_eq!(vectors::<Vec<f32>>(&alias["data"][0]["embedding"]), openai, "TEI's alias of the OpenAI route");

    // /embed_all: one hidden state per token at the layer, cut to the dims; their mean is
    // all-MiniLM-L6-v2's sentence vector (mean pooling, no Dense) before normalising.
    let (status, all) =
        post(&server, "/embed_all", &json!({"inputs": ["Hello, café!", "a"], "layers": 3, "dimensions": 96}));
    assert_eq!(status, 200, "{all}");
    let all: Vec<Vec<Vec<f32>>> = vectors(&all);
    assert_eq!((all.len(), all[0].len(), all[0][0].len(), all[1].len()), (2, ids.len(), 96, 3));
    let mean: Vec<f32> = (0..96).map(|d| all[0].iter().map(|t| t[d]).sum::<f32>() / ids.len() as f32).collect();
    let (_, pooled) = post(&server, "/embed", &json!({"inputs": "Hello, café!", "size": "3,96", "normalize": false}));
    assert!(max_abs_diff(&mean, &vectors::<Vec<Vec<f32>>>(&pooled)[0]) < 1e-4);
    let (status, error) = post(&server, "/embed_all", &json!({"inputs": "a", "layers": 7}));
    assert_eq!((status, error["error_type"].as_str()), (422, Some("Validation")), "{error}");

    // SageMaker's routes and TEI's root: /invocations is /embed, /ping and GET / are /health.
    let (status, invoked) = post(&server, "/invocations", &json!({"inputs": "Hello, café!", "size": "3,96"}));
    assert_eq!((status, invoked), (200, from_text));
    for path in ["/ping", "/"] {
        assert_eq!(call(&format!("{}{path}", server.url), None, None), (200, r#"{"status":"ok"}"#.to_string()));
    }

    // TEI's timing headers on every embedding response.
    for (path, body) in [
        ("/embed", json!({"inputs": ["a", "b"]})),
        ("/embed_all", json!({"inputs": "a"})),
        ("/similarity", json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}})),
        ("/v1/embeddings", json!({"input": "a"})),
        ("/invocations", json!({"inputs": "a"})),
    ] {
        let response = agent().post(&format!("{}{path}", server.url)).send(body.to_string()).unwrap();
        let header = |name: &str| {
            let value = response.headers().get(name).unwrap_or_else(|| panic!("{path}: no {name}"));
            value.to_str().unwrap().to_string()
        };
        for name in ["x-compute-time", "x-total-time", "x-tokenization-time", "x-queue-time", "x-inference-time"] {
            header(name).parse::<u64>().unwrap_or_else(|e| panic!("{path}: {name}: {e}"));
        }
        assert_eq!(header("x-compute-type"), "flex");
        assert!(header("x-compute-tokens").parse::<u64>().unwrap() >= 3, "{path}: [CLS] a [SEP]");
    }
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn over_long_inputs_are_cut_by_default_and_refused_with_auto_truncate_false() {
    let long = json!({"inputs": "one two three four five six seven eight nine ten eleven twelve thirteen"});
    let ids = json!({"inputs": [vec![101; 20]]});
    let cutting = Server::start(&["--max-input-length", "8"]);
    for body in [&long, &ids] {
        let (status, out) = post(&cutting, "/embed", body);
        assert_eq!(status, 200, "TEI 1.9's default cuts: {out}");
    }
    let (_, info) = call(&format!("{}/info", cutting.url), None, None);
    assert_eq!(serde_json::from_str::<Value>(&info).unwrap()["auto_truncate"], true);
    let mut refuse = long.clone();
    refuse["truncate"] = json!(false);
    assert_eq!(post(&cutting, "/embed", &refuse).0, 413, "a request may still refuse");

    let refusing = Server::start(&["--max-input-length", "8", "--auto-truncate", "false"]);
    for body in [&long, &ids] {
        let (status, error) = post(&refusing, "/embed", body);
        assert_eq!(status, 413, "{error}");
        assert!(error["error"].as_str().unwrap().contains("longer than 8 tokens"), "{error}");
    }
    let mut cut = long.clone();
    cut["truncate"] = json!(true);
    assert_eq!(post(&refusing, "/embed", &cut).0, 200, "a request may still cut");
    let (status, error) = post(&refusing, "/v1/embeddings", &json!({"input": long["inputs"]}));
    assert_eq!((status, error["type"].as_str()), (413, Some("Validation")), "{error}");
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn cors_origins_and_the_prometheus_port() {
    let port = free_port().to_string();
    let server =
        Server::start(&["--cors-allow-origin", "https://app.example", "--prometheus-port", &port, "--api-key", "k"]);
    let preflight = |origin: &str| {
        agent()
            .options(&format!("{}/embed", server.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,authorization")
            .call()
            .unwrap()
    };
    let allowed = preflight("https://app.example");
    assert_eq!(allowed.status(), 200);
    let header = |r: &ureq::http::Response<ureq::Body>, name: &str| {
        r.headers().get(name).map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header(&allowed, "access-control-allow-origin").as_deref(), Some("https://app.example"));
    assert!(header(&allowed, "access-control-allow-methods").unwrap().contains("POST"));
    assert!(header(&allowed, "access-control-allow-headers").unwrap().contains("authorization"));
    assert_eq!(header(&preflight("https://evil.example"), "access-control-allow-origin"), None);

    // The metrics port answers without the key; the main port still wants it.
    let (status, metrics) = call(&format!("http://127.0.0.1:{port}/metrics"), None, None);
    assert_eq!(status, 200);
    assert!(metrics.contains("# TYPE starbucks_requests_total counter"), "{metrics}");
    assert_eq!(call(&format!("{}/metrics", server.url), None, None).0, 401);
    assert_eq!(call(&format!("{}/ping", server.url), None, None).0, 200, "SageMaker's ping needs no key");

    let plain = Server::start(&[]);
    let response = agent()
        .post(&format!("{}/embed", plain.url))
        .header("origin", "https://app.example")
        .send(r#"{"inputs": "a"}"#)
        .unwrap();
    assert_eq!(header(&response, "access-control-allow-origin"), None, "no CORS headers without the flag");
}

#[test]
fn the_openapi_spec_lists_every_route_with_this_models_bounds_and_docs_render_it() {
    let server = Server::start(&["--max-client-batch-size", "8"]);
    let (status, spec) = call(&format!("{}/api-doc/openapi.json", server.url), None, None);
    assert_eq!(status, 200);
    let spec: Value = serde_json::from_str(&spec).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."), "OpenAPI 3");
    for (path, method) in [
        ("/", "post"),
        ("/", "get"),
        ("/embed", "post"),
        ("/embed_all", "post"),
        ("/similarity", "post"),
        ("/tokenize", "post"),
        ("/decode", "post"),
        ("/info", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
        ("/v1/embeddings", "post"),
        ("/embeddings", "post"),
        ("/invocations", "post"),
        ("/ping", "get"),
    ] {
        assert!(spec["paths"][path][method].is_object(), "{method} {path} is not in the spec");
    }
    let schemas = &spec["components"]["schemas"];
    assert_eq!(schemas["EmbedRequest"]["properties"]["layers"]["maximum"], 6);
    assert_eq!(schemas["EmbedRequest"]["properties"]["dimensions"]["maximum"], 384);
    assert_eq!(schemas["EmbedAllRequest"]["properties"]["dimensions"]["maximum"], 384);
    assert_eq!(schemas["EmbedRequest"]["properties"]["inputs"]["$ref"], "#/components/schemas/Inputs");
    let inputs = schemas["Inputs"].to_string();
    assert!(inputs.contains(r#""maxItems":8"#) && inputs.contains(r#""maximum":30521"#), "{inputs}");
    // Found by schemathesis: an empty batch is refused, so the spec says so; /info's
    // `model_type.embedding` and the OpenAI `Embedding` once shared a schema name.
    assert!(inputs.contains(r#""minItems":1"#), "{inputs}");
    assert_eq!(schemas["ModelType"]["properties"]["embedding"]["$ref"], "#/components/schemas/EmbeddingModel");
    assert!(schemas["Embedding"]["oneOf"].is_array(), "the OpenAI embedding: floats or base64");

    let (status, page) = call(&format!("{}/docs/", server.url), None, None);
    assert_eq!(status, 200);
    assert!(page.contains("swagger-ui"), "{page}");
    let (status, config) = call(&format!("{}/docs/swagger-initializer.js", server.url), None, None);
    assert_eq!(status, 200);
    assert!(config.contains("/api-doc/openapi.json"), "{config}");
}

/// Opens `n` connections that each send `prefix` and then nothing.
fn stalled(server: &Server, n: usize, prefix: &str) -> Vec<TcpStream> {
    let address = server.url.trim_start_matches("http://").to_string();
    (0..n)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream.write_all(prefix.as_bytes()).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            stream
        })
        .collect()
}

/// What each stalled connection read before it was closed (or a read error's kind).
fn outcomes(streams: Vec<TcpStream>) -> Vec<String> {
    streams
        .into_iter()
        .map(|mut stream| {
            let mut got = String::new();
            match stream.read_to_string(&mut got) {
                Ok(_) => got,
                Err(e) => format!("error: {:?}", e.kind()),
            }
        })
        .collect()
}

#[test]
fn clients_that_stall_on_headers_or_body_are_cut_off_while_others_are_served() {
    let server = Server::start(&["--header-timeout", "1", "--body-timeout", "1"]);
    // A connection still open at the 60 s read timeout reads as an error, not as closed.
    let silent = stalled(&server, 100, "");
    let headers = stalled(&server, 100, "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Typ");
    let bodies = stalled(&server, 20, "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"inputs\":");
    // Real requests are served meanwhile.
    for _ in 0..5 {
        let (status, _) = post(&server, "/embed", &json!({"inputs": "a", "dimensions": 8}));
        assert_eq!(status, 200);
    }
    assert!(outcomes(silent).iter().all(String::is_empty), "closed without an answer");
    assert!(outcomes(headers).iter().all(String::is_empty), "closed without an answer");
    for answer in outcomes(bodies) {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains(r#""error_type":"Timeout""#) && answer.contains("--body-timeout"), "{answer}");
    }
    assert_eq!(post(&server, "/embed", &json!({"inputs": "a"})).0, 200, "still serving");
}
