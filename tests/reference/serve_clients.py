"""The official Python clients against `starbucks serve`, compared with `starbucks embed`.

Run by hand, never by CI (it needs the `openai` and `huggingface_hub` packages):

    python3 -m venv ~/.cache/starbucks-rs/clients-venv
    ~/.cache/starbucks-rs/clients-venv/bin/pip install openai huggingface_hub numpy
    cargo build --release -p starbucks-cli
    target/release/starbucks serve --model assets/all-MiniLM-L6-v2 --served-model-name minilm &
    ~/.cache/starbucks-rs/clients-venv/bin/python tests/reference/serve_clients.py \
        --url http://127.0.0.1:8080 --starbucks target/release/starbucks

It embeds a few sentences with `starbucks embed` at (2, 64), (6, 64) and (6, 384), then asks
the server through
- the `openai` client: `client.embeddings.create(..., dimensions=64, extra_body={"layers": 2})`,
  with the client's default encoding (it asks for base64 and decodes), with
  `encoding_format="float"`, with `encoding_format="base64"` (decoded here), and with token ids
  as input (the server's own `/tokenize` gives them);
- `huggingface_hub.InferenceClient(url).feature_extraction(text, dimensions=64)`, the TEI
  route at `/` (all layers: the client has no `layers` parameter);
- `huggingface_hub.InferenceClient(url + "/similarity").sentence_similarity(first, others)`
  (the client posts to the URL it is given; TEI serves this task at `/similarity`), against the
  cosines of the (6, 384) vectors;
and prints the largest absolute difference of each against `starbucks embed`. Exit code 1 when
any exceeds 1e-5.
"""

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
from huggingface_hub import InferenceClient
from openai import OpenAI

SENTENCES = [
    "A man is playing a guitar.",
    "A woman is slicing an onion.",
    "The stock market fell sharply on Monday.",
    "Zwei Hunde spielen im Schnee.",
]


def starbucks_embed(binary: str, model: str, size: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        texts = Path(tmp) / "texts.txt"
        out = Path(tmp) / "out.jsonl"
        texts.write_text("\n".join(SENTENCES) + "\n")
        subprocess.run(
            [binary, "embed", "--model", model, "--size", size, "--input", str(texts), "--output", str(out)],
            check=True,
        )
        return np.array([json.loads(line) for line in out.read_text().splitlines()], dtype=np.float32)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--model", default="assets/all-MiniLM-L6-v2")
    parser.add_argument("--served-model-name", default="minilm")
    parser.add_argument("--starbucks", default="target/release/starbucks")
    args = parser.parse_args()

    shallow = starbucks_embed(args.starbucks, args.model, "2,64")
    deep = starbucks_embed(args.starbucks, args.model, "6,64")
    client = OpenAI(base_url=f"{args.url}/v1", api_key="unused")
    results = {}

    def create(**encoding):
        return client.embeddings.create(
            model=args.served_model_name, input=SENTENCES, dimensions=64, extra_body={"layers": 2}, **encoding
        )

    def floats(response) -> np.ndarray:
        return np.array([d.embedding for d in response.data], dtype=np.float32)

    response = create()
    results["openai, default encoding (base64 on the wire)"] = (floats(response), shallow)
    print(f"openai usage: {response.usage}, model {response.model!r}")
    results["openai, encoding_format=float"] = (floats(create(encoding_format="float")), shallow)
    response = create(encoding_format="base64")
    decoded = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in response.data]
    results["openai, encoding_format=base64"] = (np.stack(decoded), shallow)

    tokenize = urllib.request.Request(
        f"{args.url}/tokenize", data=json.dumps({"inputs": SENTENCES}).encode(), headers={"content-type": "application/json"}
    )
    ids = [[token["id"] for token in tokens] for tokens in json.load(urllib.request.urlopen(tokenize))]
    response = client.embeddings.create(
        model=args.served_model_name, input=ids, dimensions=64, extra_body={"layers": 2}, encoding_format="float"
    )
    results["openai, token ids as input"] = (floats(response), shallow)

    hub = InferenceClient(args.url)
    rows = [hub.feature_extraction(text, dimensions=64).reshape(-1) for text in SENTENCES]
    results["huggingface_hub InferenceClient.feature_extraction"] = (np.stack(rows), deep)

    full = starbucks_embed(args.starbucks, args.model, "6,384")
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    scores = InferenceClient(f"{args.url}/similarity").sentence_similarity(SENTENCES[0], SENTENCES[1:])
    results["huggingface_hub InferenceClient.sentence_similarity"] = (np.array(scores, dtype=np.float32), full[1:] @ full[0])

    worst = 0.0
    for name, (got, expected) in results.items():
        diff = float(np.abs(got - expected).max())
        worst = max(worst, diff)
        print(f"{name}: shape {tuple(got.shape)}, max abs diff against starbucks embed {diff:.2e}")
    print("ok" if worst <= 1e-5 else "FAILED: a difference above 1e-5")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
