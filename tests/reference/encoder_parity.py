#!/usr/bin/env python3
"""Reference for the encoder parity fixture: an independent numpy forward pass of
all-MiniLM-L6-v2 (BERT), in float64, one sentence at a time (no padding).

Run by hand, never by CI:
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy scipy safetensors tokenizers
    cargo xtask fetch minilm
    /tmp/ref/bin/python tests/reference/encoder_parity.py \
        --model assets/all-MiniLM-L6-v2 --out tests/fixtures/encoder_parity.json

Writes, for every sentence of sentences.txt: its token ids, the mean-pooled hidden state of
every layer 1..N (over all its tokens, as there is no padding) and the CLS vector of layer N.
"""
import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from scipy.special import erf
from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def bert_hidden_states(w, cfg, ids):
    """Hidden states of layers 0..N for one unpadded sequence, shape [N+1, seq, hidden]."""
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    seq = len(ids)
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:seq]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    states = [x]
    hd = x.shape[-1] // heads
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda t, name: t @ w[p + name + ".weight"].T + w[p + name + ".bias"]
        q = lin(x, "attention.self.query").reshape(seq, heads, hd).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(seq, heads, hd).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(seq, heads, hd).transpose(1, 0, 2)
        ctx = softmax(q @ k.transpose(0, 2, 1) / np.sqrt(hd)) @ v
        ctx = ctx.transpose(1, 0, 2).reshape(seq, heads * hd)
        a = layer_norm(lin(ctx, "attention.output.dense") + x,
                       w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        h = gelu(lin(a, "intermediate.dense"))
        x = layer_norm(lin(h, "output.dense") + a,
                       w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        states.append(x)
    return np.stack(states)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--max-length", type=int, default=256, help="sentence_bert_config max_seq_length")
    args = ap.parse_args()

    cfg = json.loads((args.model / "config.json").read_text())
    weights = {k: v.astype(np.float64) for k, v in load_file(args.model / "model.safetensors").items()
               if v.dtype != np.int64}
    tok = Tokenizer.from_file(str(args.model / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=args.max_length)
    sentences = (HERE / "sentences.txt").read_text(encoding="utf-8").split("\n")[:-1]

    n = cfg["num_hidden_layers"]
    out = {
        "model_sha256": hashlib.sha256((args.model / "model.safetensors").read_bytes()).hexdigest(),
        "max_length": args.max_length,
        "sentences": sentences,
        "input_ids": [],
        "mean": {str(l): [] for l in range(1, n + 1)},
        f"cls_{n}": [],
    }
    for s in sentences:
        ids = tok.encode(s).ids
        hs = bert_hidden_states(weights, cfg, np.array(ids))
        out["input_ids"].append(ids)
        for l in range(1, n + 1):
            out["mean"][str(l)].append([float(f"{v:.8g}") for v in hs[l].mean(0)])
        out[f"cls_{n}"].append([float(f"{v:.8g}") for v in hs[n][0]])
    args.out.write_text(json.dumps(out) + "\n")
    print(f"wrote {args.out}: {len(sentences)} sentences, token counts "
          f"{min(map(len, out['input_ids']))}..{max(map(len, out['input_ids']))}")


if __name__ == "__main__":
    main()
