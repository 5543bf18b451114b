#!/usr/bin/env python3
"""The PyTorch side of `cargo xtask bench`: the same workloads as `starbucks bench`, written the
way the reference implementation runs them (transformers `BertModel`, sentence-transformers).

One process runs one workload: `--warmup` untimed iterations, then `--iters` timed ones, and
prints one JSON line: {"side", "workload", "times_ms", "median_ms", "items", "tokens",
"padded_tokens", "peak_rss_mb", "versions", ...}. `cargo xtask bench` runs it alternately with
the Rust side; by hand:

    VENV/bin/python bench/reference/bench.py --workload train-srl --model assets/all-MiniLM-L6-v2

Workloads (the same inputs as the Rust side: the first rows of the shipped data files):
- train-srl     SRL fine-tuning step (STS flavour): 32 SNLI triplets, every layer mean-pooled,
                MNRL (scale 20) at each size + 0.3 KL over dims; backward, clip 1.0, AdamW.
                As sentence-transformers does it: anchors, positives and negatives are
                tokenized and encoded as three columns, each padded to its own longest text.
- train-single  the same batch, MNRL at the full size only (a single-size step).
- train-smae    SMAE step, the reference design: 8 FineWeb windows of 128 tokens, encoder mask
                0.2 inside decoder mask 0.4 (80/10/10), MLM + MAE at every size, vocabulary
                logits at every position (ignore_index -100), one-layer decoder from layer 0.
- train-mlm     a plain MLM step on the same windows: full size, encoder mask, logits everywhere
                (transformers `BertForMaskedLM`'s way).
- forward-N     inference of the first N layers (early exit) on the first 256 STS-B test
                sentences padded to the longest, mean pooling; N = 1..layers.
- embed         `encode` of every STS-B test sentence (2 x 1,379), batch 32, longest first, at
                the model folder's full size; afterwards (untimed) the STS-B test Spearman of
                every size of the MiniLM list by the same path.
- one-LENGTH-N  interactive latency: one text per call (`--iters` calls), tokenised, the first N
                layers, mean-pooled; the i-th call the i-th text. LENGTH: short (STS-B test
                sentences as they are), medium (FineWeb documents cut to 64 tokens), long (cut
                to 128).

`--path` picks the inference path of `forward-N`, `embed` and `one-LENGTH-N` (training runs in f32 only):
- torch-f32     eager PyTorch (sentence-transformers `encode` for embed);
- torch-bf16    the same under `torch.autocast("cpu", dtype=torch.bfloat16)`;
- ort-f32       ONNX Runtime on an ONNX export of the same local weights (made once into
                `--onnx-cache`, opset 17, the first N layers for forward-N);
- ort-int8      ONNX Runtime on that export's dynamic int8 quantisation (`quantize_dynamic`,
                int8 weights, activations quantised at run time).
"""
import argparse
import copy
import gzip
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

SIZES = [(1, 32), (2, 64), (3, 96), (4, 128), (5, 256), (6, 384)]
TRIPLETS = 32
FORWARD_BATCH = 256
SMAE_BATCH, SMAE_LEN = 8, 128


def read_lines(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def triplets(data):
    rows = [line.split("\t") for line in read_lines(os.path.join(data, "nli", "snli-triplets.tsv.gz"))[1:]]
    return rows[:TRIPLETS]


def stsb_sentences(data):
    rows = [line.split("\t") for line in read_lines(os.path.join(data, "stsb", "sts-test.csv")) if line]
    return [r[5] for r in rows] + [r[6] for r in rows]


def fineweb_texts(data):
    with gzip.open(os.path.join(data, "fineweb", "fineweb-subset-300.json.gz"), "rt", encoding="utf-8") as f:
        docs = json.load(f)
    return [d["text"] for d in docs if d["text"].strip()][:SMAE_BATCH]


class Tok:
    """The model folder's tokenizer.json (the same file the Rust side reads)."""

    def __init__(self, model, max_len):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
        self.tok.enable_truncation(max_len)
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")

    def __call__(self, texts):
        enc = self.tok.encode_batch(texts)
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        return ids, mask


def mean_pool(h, mask):
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)


def mnrl(a, c, scale=20.0):
    logits = F.normalize(a, dim=-1) @ F.normalize(c, dim=-1).T * scale
    return F.cross_entropy(logits, torch.arange(a.shape[0]))


def kl_dims(teacher, student):
    p = F.log_softmax(teacher, dim=-1)
    q = F.log_softmax(student, dim=-1)
    return (p.exp() * (p - q)).sum(-1).mean()


def load_bert(model):
    from transformers import BertModel

    return BertModel.from_pretrained(model, add_pooling_layer=False)


def optimizer(params, lr):
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)


def train_step(params, opt, loss):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def finetune_workload(args, sizes):
    rows = triplets(args.data)
    tok = Tok(args.model, 128)
    columns = [tok([r[i] for r in rows]) for i in range(3)]
    bert = load_bert(args.model).train()
    params = [p for p in bert.parameters() if p.requires_grad]
    opt = optimizer(params, 5e-5)
    full = SIZES[-1]

    def step():
        # One forward per column, as sentence-transformers' MultipleNegativesRankingLoss.
        pooled = []
        for ids, mask in columns:
            out = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            pooled.append([mean_pool(h, mask) for h in out.hidden_states])
        layers = [torch.cat([col[n] for col in pooled]) for n in range(len(pooled[0]))]
        total = 0.0
        for (n, d) in sizes:
            e = layers[n][:, :d]
            total = total + mnrl(e[:TRIPLETS], e[TRIPLETS:])
            if (n, d) != full:
                total = total + 0.3 * kl_dims(layers[full[0]][:, :d], e)
        train_step(params, opt, total)

    tokens = sum(int(m.sum()) for _, m in columns)
    padded = sum(m.numel() for _, m in columns)
    return step, 3 * TRIPLETS, tokens, padded, None


def smae_masks(ids, mask, vocab, gen):
    """Token-level nested masks: decoder 0.4 of the real non-special tokens, encoder 0.2 inside it."""
    special = (ids == 101) | (ids == 102) | (mask == 0)
    r = torch.rand(ids.shape, generator=gen)
    dec = (r < 0.4) & ~special
    enc = (r < 0.2) & ~special

    def corrupt(chosen):
        x = ids.clone()
        u = torch.rand(ids.shape, generator=gen)
        x[chosen & (u < 0.8)] = 103
        rnd = chosen & (u >= 0.8) & (u < 0.9)
        x[rnd] = torch.randint(999, vocab, ids.shape, generator=gen)[rnd]
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        return x, labels

    return corrupt(enc), corrupt(dec)


class Head(torch.nn.Module):
    """cls.predictions: dense (first d input columns for a d-dim input), GELU, LayerNorm, tied decoder."""

    def __init__(self, bert):
        super().__init__()
        h = bert.config.hidden_size
        self.dense = torch.nn.Linear(h, h)
        self.norm = torch.nn.LayerNorm(h, eps=bert.config.layer_norm_eps)
        self.bias = torch.nn.Parameter(torch.zeros(bert.config.vocab_size))
        self.words = bert.embeddings.word_embeddings

    def transform(self, x):
        d = x.shape[-1]
        return self.norm(F.gelu(F.linear(x, self.dense.weight[:, :d], self.dense.bias)))

    def forward(self, x):
        return self.transform(x) @ self.words.weight.T + self.bias


def pretrain_workload(args, smae):
    tok = Tok(args.model, SMAE_LEN)
    ids, mask = tok(fineweb_texts(args.data))
    bert = load_bert(args.model).train()
    vocab = bert.config.vocab_size
    gen = torch.Generator().manual_seed(42)
    (enc_ids, enc_labels), (dec_ids, dec_labels) = smae_masks(ids, mask, vocab, gen)
    head = Head(bert)
    decoder = copy.deepcopy(bert.encoder.layer[0])
    modules = torch.nn.ModuleList([bert, head, decoder] if smae else [bert, head])
    params = [p for p in modules.parameters() if p.requires_grad]
    opt = optimizer(params, 1e-4)
    from transformers.masking_utils import create_bidirectional_mask

    # The 4-D mask BertModel builds for its layers (the decoder layer is called on its own).
    ext = create_bidirectional_mask(
        config=bert.config, inputs_embeds=torch.empty(*ids.shape, bert.config.hidden_size), attention_mask=mask
    )
    ce = lambda logits, labels: F.cross_entropy(logits.view(-1, vocab), labels.view(-1), ignore_index=-100)

    def decoder_layer(x):
        out = decoder(x, attention_mask=ext)
        return out[0] if isinstance(out, tuple) else out

    def step():
        out = bert(input_ids=enc_ids, attention_mask=mask, output_hidden_states=True)
        if not smae:
            train_step(params, opt, ce(head(out.hidden_states[-1]), enc_labels))
            return
        dec_emb = bert.embeddings(input_ids=dec_ids)
        total = 0.0
        for (n, d) in SIZES:
            h = out.hidden_states[n][..., :d]
            mlm = ce(head(h), enc_labels)
            cls = head.transform(h[:, :1])
            mae = ce(head(decoder_layer(torch.cat([cls, dec_emb[:, 1:]], 1))), dec_labels)
            total = total + (mlm + mae) / 2
        train_step(params, opt, total / len(SIZES))

    return step, SMAE_BATCH, int(mask.sum()), mask.numel(), None


def forward_workload(args, layers):
    tok = Tok(args.model, 128)
    ids, mask = tok(stsb_sentences(args.data)[:FORWARD_BATCH])
    if args.path in ("ort-f32", "ort-int8"):
        session = ort_session(args, layers, args.path == "ort-int8")
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}

        def step():
            h = torch.from_numpy(session.run(None, feeds)[0])
            mean_pool(h, mask).numpy()

        return step, FORWARD_BATCH, int(mask.sum()), mask.numel(), None
    if args.path not in ("torch-f32", "torch-bf16"):
        sys.exit(f"error: unknown --path '{args.path}': expected torch-f32, torch-bf16, ort-f32 or ort-int8")
    bert = load_bert(args.model).eval()
    bert.encoder.layer = torch.nn.ModuleList(list(bert.encoder.layer)[:layers])
    dims = bert.config.hidden_size
    bf16 = args.path == "torch-bf16"

    def step():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            h = bert(input_ids=ids, attention_mask=mask).last_hidden_state
            mean_pool(h.float(), mask)[:, :dims].numpy()

    return step, FORWARD_BATCH, int(mask.sum()), mask.numel(), None


def one_texts(data, length):
    """The texts of a one-LENGTH-N workload and the tokens each is cut to (as `starbucks bench`)."""
    if length == "short":
        return stsb_sentences(data), 128
    with gzip.open(os.path.join(data, "fineweb", "fineweb-subset-300.json.gz"), "rt", encoding="utf-8") as f:
        texts = [d["text"] for d in json.load(f) if d["text"].strip()]
    if length == "medium":
        return texts, 64
    if length == "long":
        return texts, 128
    sys.exit(f"error: unknown text length '{length}' in one-LENGTH-N: expected short, medium or long")


def one_workload(args, length, layers):
    """One text per call through the first `layers` layers, mean-pooled, by the chosen path."""
    texts, cut = one_texts(args.data, length)
    tok = Tok(args.model, cut)
    position = iter(range(10**12))
    if args.path in ("ort-f32", "ort-int8"):
        session = ort_session(args, layers, args.path == "ort-int8")

        def step():
            ids, mask = tok([texts[next(position) % len(texts)]])
            h = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
            mean_pool(torch.from_numpy(h), mask).numpy()

        return step, 1, None, None, None
    if args.path not in ("torch-f32", "torch-bf16"):
        sys.exit(f"error: unknown --path '{args.path}': expected torch-f32, torch-bf16, ort-f32 or ort-int8")
    bert = load_bert(args.model).eval()
    bert.encoder.layer = torch.nn.ModuleList(list(bert.encoder.layer)[:layers])
    bf16 = args.path == "torch-bf16"

    def step():
        ids, mask = tok([texts[next(position) % len(texts)]])
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            h = bert(input_ids=ids, attention_mask=mask).last_hidden_state
            mean_pool(h.float(), mask).numpy()

    return step, 1, None, None, None


def stsb_pairs(data):
    rows = [line.split("\t") for line in read_lines(os.path.join(data, "stsb", "sts-test.csv")) if line]
    return [float(r[4]) for r in rows]


def spearman(a, b):
    """Spearman's rho of two score lists (average ranks for ties), as scipy.stats.spearmanr."""
    import numpy as np

    def ranks(x):
        x = np.asarray(x, dtype=np.float64)
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=r)
        return (sums / counts)[inverse]

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def sts_spearman(data, vectors, sizes):
    """STS-B test Spearman of cosine similarity at each (layers, dims) size of `vectors` (a dict
    layers -> [2 * pairs, hidden] array: sentence 1s then sentence 2s)."""
    import numpy as np

    gold = stsb_pairs(data)
    n = len(gold)
    out = {}
    for (layers, dims) in sizes:
        v = np.asarray(vectors[layers])[:, :dims]
        v = v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
        out[f"{layers}x{dims}"] = round(spearman(gold, (v[:n] * v[n:]).sum(1)), 6)
    return out


def onnx_model(args, layers, int8):
    """An ONNX export of the first `layers` layers of the local model folder (transformers
    `BertModel`, opset 17), and its ONNX Runtime dynamic int8 quantisation (per-tensor int8
    weights, u8 activations quantised at run time), made once into `--onnx-cache`."""
    os.makedirs(args.onnx_cache, exist_ok=True)
    f32 = os.path.join(args.onnx_cache, f"layers-{layers}-f32.onnx")
    q8 = os.path.join(args.onnx_cache, f"layers-{layers}-int8.onnx")
    if not os.path.exists(f32):
        bert = load_bert(args.model).eval()
        bert.encoder.layer = torch.nn.ModuleList(list(bert.encoder.layer)[:layers])

        class Hidden(torch.nn.Module):
            def __init__(self, bert):
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask):
                return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        ids = torch.ones(2, 8, dtype=torch.long)
        axes = {0: "batch", 1: "seq"}
        torch.onnx.export(
            Hidden(bert), (ids, ids), f32 + ".tmp", input_names=["input_ids", "attention_mask"],
            output_names=["hidden"], dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
            dynamo=False, opset_version=17,
        )
        os.replace(f32 + ".tmp", f32)
    if int8 and not os.path.exists(q8):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(f32, q8 + ".tmp", weight_type=QuantType.QInt8)
        os.replace(q8 + ".tmp", q8)
    return q8 if int8 else f32


def ort_session(args, layers, int8):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_model(args, layers, int8), options, providers=["CPUExecutionProvider"])


def ort_embed(session, tok, texts, batch):
    """Mean-pooled vectors of `texts`, batched longest first as sentence-transformers does."""
    import numpy as np

    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = [None] * len(texts)
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]
        ids, mask = tok([texts[i] for i in chunk])
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        h = session.run(None, feeds)[0]
        m = mask.numpy()[..., None].astype(np.float32)
        pooled = (h * m).sum(1) / m.sum(1).clip(1e-9)
        for row, i in zip(pooled, chunk):
            out[i] = row
    return np.stack(out)


def embed_workload(args):
    """`encode` of every STS-B test sentence at the full size, batch 32, by the chosen path."""
    texts = stsb_sentences(args.data)
    layers = json.load(open(os.path.join(args.model, "config.json")))["num_hidden_layers"]
    sizes = [s for s in SIZES if s[0] <= layers]
    result = {}
    if args.path in ("torch-f32", "torch-bf16"):
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(args.model, device="cpu")
        bf16 = args.path == "torch-bf16"

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                result["full"] = model.encode(texts, batch_size=32, convert_to_numpy=True)
        # The table's Spearman: every layer's mean-pooled output, from the same model and path.
        bert = model[0].auto_model
        tok = Tok(args.model, model.max_seq_length)

        def vectors():
            out = {}
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                for start in range(0, len(texts), 64):
                    ids, mask = tok(texts[start:start + 64])
                    hs = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
                    for n in {s[0] for s in sizes}:
                        out.setdefault(n, []).extend(mean_pool(hs[n].float(), mask).numpy())
            return out
    elif args.path in ("ort-f32", "ort-int8"):
        int8 = args.path == "ort-int8"
        sessions = {n: ort_session(args, n, int8) for n in {s[0] for s in sizes}}
        tok = Tok(args.model, json.load(open(os.path.join(args.model, "sentence_bert_config.json")))["max_seq_length"])

        def step():
            result["full"] = ort_embed(sessions[layers], tok, texts, 32)

        def vectors():
            return {n: ort_embed(s, tok, texts, 32) for n, s in sessions.items()}
    else:
        sys.exit(f"error: unknown --path '{args.path}' for embed: expected torch-f32, torch-bf16, ort-f32 or ort-int8")
    return step, len(texts), None, None, lambda: sts_spearman(args.data, vectors(), sizes)


def versions():
    out = {"python": sys.version.split()[0], "torch": torch.__version__}
    for name in ("transformers", "sentence_transformers", "onnxruntime"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", required=True)
    p.add_argument("--model", default="assets/all-MiniLM-L6-v2")
    p.add_argument("--data", default="data")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--path", default="torch-f32", help="torch-f32, torch-bf16 (autocast), ort-f32 or ort-int8")
    p.add_argument("--onnx-cache", default=os.path.join("runs", "onnx"), help="where the ONNX exports are kept")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)

    w = args.workload
    if w == "train-srl":
        job = finetune_workload(args, SIZES)
    elif w == "train-single":
        job = finetune_workload(args, SIZES[-1:])
    elif w in ("train-smae", "train-mlm"):
        job = pretrain_workload(args, smae=w == "train-smae")
    elif w.startswith("forward-"):
        job = forward_workload(args, int(w.split("-")[1]))
    elif w == "embed":
        job = embed_workload(args)
    elif w.startswith("one-") and w.count("-") == 2:
        _, length, layers = w.split("-")
        job = one_workload(args, length, int(layers))
    else:
        sys.exit(f"error: unknown workload '{w}'")
    if w.startswith("train-") and args.path != "torch-f32":
        sys.exit(f"error: training workloads run in f32 only (--path torch-f32), not '{args.path}'")
    step, items, tokens, padded, quality = job

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    ordered = sorted(times)
    print(json.dumps({
        "side": args.path,
        "workload": w,
        "times_ms": times,
        "median_ms": ordered[len(ordered) // 2],
        "items": items,
        "tokens": tokens,
        "padded_tokens": padded,
        "threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "spearman": quality() if quality else None,
        "versions": versions(),
    }))


if __name__ == "__main__":
    main()
