#!/usr/bin/env python3
"""Writes the committed seed corpus of every fuzz target under fuzz/seeds/<target>/.

Run by hand from the repository root (Python's standard library only; needs the shipped data/
and `cargo xtask fetch minilm` for the tokenizer): `python3 fuzz/make_seeds.py`. Each seed is a
valid input in the target's layout (see fuzz/fuzz_targets/*.rs): excerpts of the shipped data,
the shipped configs, a tiny model folder, request bodies and HTTP answers.
"""

import gzip
import json
import random
import shutil
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
SECTION = b"\n\x00--8<--\n"  # starbucks_fuzz_targets::SECTION


def head(path, lines=12):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return b"".join(f.readline() for _ in range(lines))


def write(target, name, data):
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def tiny_model():
    """config.json, tokenizer.json and model.safetensors of a 1-layer, 4-wide BERT."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "short", "text", "the", "cat", "##s", "sits"]
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": len(words), "hidden_size": 4,
        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8, "max_position_embeddings": 16,
        "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0,
    }
    tokenizer = json.loads((ROOT / "assets/all-MiniLM-L6-v2/tokenizer.json").read_text())
    ids = {w: i for i, w in enumerate(words)}
    tokenizer["model"]["vocab"] = ids
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["content"] in ids]
    for token in tokenizer["added_tokens"]:
        token["id"] = ids[token["content"]]
    for name, special in tokenizer["post_processor"]["special_tokens"].items():
        special["ids"] = [ids[name]]
    h, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    shapes = {
        "embeddings.word_embeddings.weight": [vocab, h],
        "embeddings.position_embeddings.weight": [config["max_position_embeddings"], h],
        "embeddings.token_type_embeddings.weight": [2, h],
        "embeddings.LayerNorm.weight": [h], "embeddings.LayerNorm.bias": [h],
    }
    for name, shape in [("attention.self.query", [h, h]), ("attention.self.key", [h, h]),
                        ("attention.self.value", [h, h]), ("attention.output.dense", [h, h]),
                        ("intermediate.dense", [inter, h]), ("output.dense", [h, inter])]:
        shapes[f"encoder.layer.0.{name}.weight"] = shape
        shapes[f"encoder.layer.0.{name}.bias"] = [shape[0]]
    for name in ["attention.output.LayerNorm", "output.LayerNorm"]:
        shapes[f"encoder.layer.0.{name}.weight"] = [h]
        shapes[f"encoder.layer.0.{name}.bias"] = [h]
    rng = random.Random(0)
    header, data = {}, b""
    for name, shape in sorted(shapes.items()):
        n = 1
        for d in shape:
            n *= d
        values = [1.0 if name.endswith("LayerNorm.weight") else rng.gauss(0, 0.02) for _ in range(n)]
        raw = struct.pack(f"<{n}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    safetensors = struct.pack("<Q", len(header_bytes)) + header_bytes + data
    return json.dumps(config).encode(), json.dumps(tokenizer).encode(), safetensors


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    config, tokenizer, weights = tiny_model()
    write("model_folder", "tiny", SECTION.join([config, tokenizer, weights]))
    write("model_folder", "minilm-config", SECTION.join([(ROOT / "assets/all-MiniLM-L6-v2/config.json").read_bytes(),
                                                         tokenizer, weights]))

    data = ROOT / "data"
    stsb = head(data / "stsb/sts-test.csv")
    nli = data / "nli"
    marco = data / "msmarco-dl20"
    readers = [
        (0, "stsb", stsb),
        (1, "semeval", b"\n".join(l.split(b"\t", 5)[5] for l in stsb.splitlines()) + SECTION
         + b"\n".join(l.split(b"\t")[4] for l in stsb.splitlines())),
        (2, "sick", b"pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
                    b"1\tA cat sits.\tA cat is sitting.\t4.5\tENTAILMENT\n2\tA dog runs.\tStocks fell.\t1.2\tNEUTRAL\n"),
        (3, "triplets", head(nli / "snli-triplets.tsv.gz")),
        (4, "pairs", head(nli / "snli-pairs.tsv.gz")),
        (5, "msmarco-triples", head(marco / "triples.dl20.bm25neg.tsv.gz", 3)),
        (6, "tevatron", b'{"query_id": "1", "query": "who plays guitar", "positive_passages": [{"docid": "d1", '
                        b'"title": "Guitars", "text": "A man plays the guitar."}], "negative_passages": [{"docid": '
                        b'"d2", "title": "", "text": "Stocks fell."}]}\n'),
        (7, "qrels", head(marco / "qrels.dl20.in_corpus.txt")),
        (8, "run", head(marco / "bm25.dl20.top100.trec")),
        (9, "id-text", head(marco / "queries.dl20.tsv")),
        (10, "beir", b'{"_id": "d1", "title": "Guitars", "text": "A man plays the guitar."}\n'
                     b'{"_id": "d2", "text": "Stocks fell."}\n' + SECTION
         + b'{"_id": "q1", "text": "who plays guitar"}\n' + SECTION + b"query-id\tcorpus-id\tscore\nq1\td1\t2\n"),
    ]
    for selector, name, body in readers:
        write("data_files", name, bytes([selector]) + body)

    with gzip.open(data / "fineweb/fineweb-subset-300.json.gz", "rt") as f:
        docs = json.load(f)[:3]
    for doc in docs:
        doc["text"] = doc["text"][:300]
    write("fineweb", "jsonl", b"\x00" + "".join(json.dumps(d) + "\n" for d in docs).encode())
    write("fineweb", "json", b"\x01" + json.dumps(docs).encode())
    texts = "\n".join(d["text"].replace("\n", " ") for d in docs).encode()
    write("fineweb", "parquet-edited", b"\x03" + texts + SECTION + bytes([4, 0, 0x2a, 200, 0, 0xff]))

    sts = [l.split(b"\t") for l in head(ROOT / "data/stsb/sts-test.csv", 12).splitlines()]
    sts_rows = [{"sentence1": c[5].decode(), "sentence2": c[6].decode(), "score": float(c[4])} for c in sts]
    write("tables", "sts-jsonl", b"\x00" + "".join(json.dumps(r) + "\n" for r in sts_rows).encode())
    sts_lines = b"\n".join(c[5] + b"\n" + c[6] for c in sts)
    write("tables", "sts-parquet-edited", b"\x04" + sts_lines + SECTION + bytes([4, 0, 0x2a, 200, 0, 0xff]))
    triplets = b"\n".join(l.replace(b"\t", b"\n") for l in head(ROOT / "data/nli/snli-triplets.tsv.gz", 12).splitlines()[1:])
    write("tables", "triplets-parquet-edited", b"\x05" + triplets + SECTION + bytes([9, 1, 0x00]))
    beir = b"\n".join(b"d%d\n\n" % i + l.split(b"\t", 1)[1] for i, l in enumerate(head(ROOT / "data/msmarco-dl20/corpus.tsv.gz", 12).splitlines()))
    write("tables", "beir-parquet-edited", b"\x06" + beir + SECTION + bytes([100, 0, 0x41]))

    probe = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-0/100\r\nContent-Length: 1\r\n\r\nP"
    body = bytes(range(64))
    ranged = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-63/100\r\nContent-Length: 64\r\n\r\n" + body
    write("http_range", "206", probe + SECTION + ranged)
    write("http_range", "200", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + SECTION + b"")
    write("http_range", "chunked", probe + SECTION + b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n"
          b"\r\n4\r\nPAR1\r\n0\r\n\r\n")

    for path in sorted((ROOT / "configs").glob("*.toml")):
        write("run_config", path.stem, path.read_bytes() + SECTION + b"train.lr=1e-4\ntrain.batch_size=8"
              + SECTION + b"train.devices=[0, 1]\nobjective.sizes=1,32 6,384")

    bodies = [
        b'{"inputs": "A man is playing a guitar."}',
        b'{"inputs": ["a", "b"], "normalize": false, "truncate": true, "dimensions": 64, "layers": 2}',
        b'{"inputs": "a", "size": "grande", "truncation_direction": "Right"}',
        b'{"input": ["a", "b"], "model": "m", "encoding_format": "base64", "dimensions": 32}',
        b'{"input": "a", "size": "2,64", "layers": 2}',
        b'{"inputs": [101, 7592, 102], "dimensions": 8}',
        b'{"input": [[101, 7592.0, 102], "a text"], "size": "1,32"}',
    ]
    for i, body in enumerate(bodies):
        write("serve_request", f"body-{i}", body)


if __name__ == "__main__":
    main()
