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
- embed         sentence-transformers `encode` of every STS-B test sentence (2 x 1,379),
                batch 32, at the model folder's full size.
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
    return step, 3 * TRIPLETS, tokens, padded


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

    return step, SMAE_BATCH, int(mask.sum()), mask.numel()


def forward_workload(args, layers):
    tok = Tok(args.model, 128)
    ids, mask = tok(stsb_sentences(args.data)[:FORWARD_BATCH])
    bert = load_bert(args.model).eval()
    bert.encoder.layer = torch.nn.ModuleList(list(bert.encoder.layer)[:layers])
    dims = bert.config.hidden_size

    def step():
        with torch.inference_mode():
            h = bert(input_ids=ids, attention_mask=mask).last_hidden_state
            mean_pool(h, mask)[:, :dims].numpy()

    return step, FORWARD_BATCH, int(mask.sum()), mask.numel()


def embed_workload(args):
    from sentence_transformers import SentenceTransformer

    texts = stsb_sentences(args.data)
    model = SentenceTransformer(args.model, device="cpu")

    def step():
        model.encode(texts, batch_size=32, convert_to_numpy=True)

    return step, len(texts), None, None


def versions():
    out = {"python": sys.version.split()[0], "torch": torch.__version__}
    for name in ("transformers", "sentence_transformers"):
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
    else:
        sys.exit(f"error: unknown workload '{w}'")
    step, items, tokens, padded = job

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    ordered = sorted(times)
    print(json.dumps({
        "side": "pytorch",
        "workload": w,
        "times_ms": times,
        "median_ms": ordered[len(ordered) // 2],
        "items": items,
        "tokens": tokens,
        "padded_tokens": padded,
        "threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": versions(),
    }))


if __name__ == "__main__":
    main()
