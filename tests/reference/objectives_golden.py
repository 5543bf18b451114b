#!/usr/bin/env python3
"""Golden values for starbucks-objectives: every loss and its gradient with respect to its
input embeddings, computed with PyTorch (float64) from fixed random float32 inputs.

Run by hand, never by CI:
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch safetensors numpy
    /tmp/ref/bin/python tests/reference/objectives_golden.py --out tests/fixtures/objectives_golden.safetensors

The formulas are METHOD.md's, written out independently of the Rust code:
- SRL, STS flavour: MNRL (scale 20, cosine) per size + 0.3 * KL over the first d dims of the raw
  pooled embeddings (softmax over dims, KL(full || n), sum over dims, mean over rows, NOT detached);
- SRL with CoSENT (scale 20) as the base loss;
- SRL, retrieval flavour: CE over in-batch passage scores (dot product), target i*group, + 1.0 *
  KL(softmax(stopgrad(S_full)) || softmax(S_n)) over the passage axis;
- the same STS inputs with the KL teacher detached (to show the gradients differ);
- 2DMSE (sentence-transformers Matryoshka2dLoss) for fixed draws;
- SRL-deep (docs/objectives.md) in the three flavours, with weights other than 1: SRL's terms
  weighted per family plus, at every size shallower than the full depth, the base loss of the
  anchors / first sentences / queries at (n, d) against the other side at (6, d); and the same
  with that other side detached (`objective.deep_detached`);
- SMAE on a tiny random BERT: MLM_n and MAE_n per size, logits at every position with
  ignore_index -100 (the reference's way), and the masked-only gathering checked equal here.
Sizes: the MiniLM list (1,32) (2,64) (3,96) (4,128) (5,256) (6,384) for the embedding losses.
"""
import argparse
import json

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(1234)
SIZES = [(1, 32), (2, 64), (3, 96), (4, 128), (5, 256), (6, 384)]
H, LAYERS = 384, 6
OUT = {}
META = {}


def leaf_layers(rows, like=None):
    """Pooled embeddings of layers 0..6, float32 values, as float64 leaves (copies of `like`)."""
    if like is not None:
        return [x.detach().clone().requires_grad_() for x in like]
    return [(torch.randn(rows, H) * 0.5).to(torch.float32).to(torch.float64).requires_grad_() for _ in range(LAYERS + 1)]


def mnrl(a, c, scale=20.0):
    logits = F.normalize(a, dim=-1) @ F.normalize(c, dim=-1).T * scale
    return F.cross_entropy(logits, torch.arange(a.shape[0]))


def cosent(a, b, labels, scale=20.0):
    s = F.cosine_similarity(a, b) * scale
    s = s[:, None] - s[None, :]
    lab = (labels[:, None] < labels[None, :]).to(s.dtype)
    s = s - (1 - lab) * 1e12
    s = torch.cat((torch.zeros(1, dtype=s.dtype), s.view(-1)))
    return torch.logsumexp(s, dim=0)


def kl(teacher, student, detach):
    if detach:
        teacher = teacher.detach()
    p = F.log_softmax(teacher, dim=-1)
    q = F.log_softmax(student, dim=-1)
    return (p.exp() * (p - q)).sum(-1).mean()


def save(case, layers, total, terms, names=("layer",)):
    total.backward()
    OUT[f"{case}/total"] = total.detach().reshape(1)
    META[case] = [name for name, _ in terms]
    for name, value in terms:
        OUT[f"{case}/term/{name}"] = value.detach().reshape(1)
    for prefix, group in zip(names, layers):
        for n, x in enumerate(group):
            OUT[f"{case}/{prefix}{n}"] = x.detach().to(torch.float32)
            OUT[f"{case}/grad_{prefix}{n}"] = (x.grad if x.grad is not None else torch.zeros_like(x)).detach().to(torch.float32)


def srl_pairs(case, layers, batch, base_loss, detach=False):
    """SRL on pooled embeddings: base_loss(first side, second side) at every size plus 0.3 * KL
    of every smaller size against the full one over dims (teacher detached or not)."""
    full = SIZES[-1]
    total, terms = None, []
    for (n, d) in SIZES:
        e = layers[n][:, :d]
        base = base_loss(e[:batch], e[batch:])
        terms.append((f"base({n}, {d})", base))
        total = base if total is None else total + base
        if (n, d) != full:
            k = kl(layers[full[0]][:, :d], e, detach)
            terms.append((f"kl({n}, {d})", k))
            total = total + 0.3 * k
    save(case, [layers], total, terms)


def srl_sts(case, batch, detach=False, like=None):
    layers = leaf_layers(3 * batch, like)
    srl_pairs(case, layers, batch, mnrl, detach)
    return layers


def srl_cosent(case, batch):
    layers = leaf_layers(2 * batch)
    labels = torch.rand(batch, dtype=torch.float64).mul(5).round(decimals=1)
    labels[1] = labels[0]  # a tie
    OUT[f"{case}/labels"] = labels.to(torch.float32)
    srl_pairs(case, layers, batch, lambda a, b: cosent(a, b, labels))


def srl_retrieval(case, batch, group=8):
    queries, passages = leaf_layers(batch), leaf_layers(batch * group)
    full = SIZES[-1]
    s_full = queries[full[0]] @ passages[full[0]].T
    target = torch.arange(batch) * group
    total, terms = None, []
    for (n, d) in SIZES:
        s = queries[n][:, :d] @ passages[n][:, :d].T
        base = F.cross_entropy(s, target)
        terms.append((f"base({n}, {d})", base))
        total = base if total is None else total + base
        if (n, d) != full:
            k = kl(s_full, s, True)
            terms.append((f"kl({n}, {d})", k))
            total = total + 1.0 * k
    save(case, [queries, passages], total, terms, names=("query", "passage"))


def srl_deep(case, kind, batch, symmetric=0.5, deep=2.0, kl_weight=0.3, group=8, detached=False):
    """kind: "sts" (MNRL on triplets), "cosent" (pairs) or "retrieval" (queries and passages).
    detached: the deep term's second side (at full depth) is a constant (stop-gradient)."""
    full = SIZES[-1]
    if kind == "retrieval":
        queries, passages = leaf_layers(batch), leaf_layers(batch * group)
        target = torch.arange(batch) * group
        def base(n, other, d, stop=False):
            p = passages[other][:, :d]
            return F.cross_entropy(queries[n][:, :d] @ (p.detach() if stop else p).T, target)
        s_full = queries[full[0]] @ passages[full[0]].T
        def kl_term(n, d):
            return kl(s_full, queries[n][:, :d] @ passages[n][:, :d].T, True)
        groups, names = [queries, passages], ("query", "passage")
    else:
        layers = leaf_layers((3 if kind == "sts" else 2) * batch)
        if kind == "cosent":
            labels = torch.rand(batch, dtype=torch.float64).mul(5).round(decimals=1)
            OUT[f"{case}/labels"] = labels.to(torch.float32)
        def base(n, other, d, stop=False):
            a, b = layers[n][:batch, :d], layers[other][batch:, :d]
            b = b.detach() if stop else b
            return mnrl(a, b) if kind == "sts" else cosent(a, b, labels)
        def kl_term(n, d):
            return kl(layers[full[0]][:, :d], layers[n][:, :d], False)
        groups, names = [layers], ("layer",)
    total, terms = None, []
    for (n, d) in SIZES:
        if (n, d) == full:
            b = base(n, n, d)
            terms.append((f"base({n}, {d})", b))
            total = b if total is None else total + b
            continue
        b, k, deep_b = base(n, n, d), kl_term(n, d), base(n, full[0], d, stop=detached)
        terms += [(f"base({n}, {d})", b), (f"kl({n}, {d})", k), (f"deep({n}, {d})", deep_b)]
        part = symmetric * b + kl_weight * k + deep * deep_b
        total = part if total is None else total + part
    save(case, groups, total, terms, names=names)


def mse2d(case, batch, draw, temperature=0.3):
    last_dims, layer, layer_dims = draw
    layers = leaf_layers(3 * batch)
    META[f"{case}/draw"] = list(draw)
    e_last = layers[LAYERS]
    base_last = mnrl(e_last[:batch, :last_dims], e_last[batch:, :last_dims])
    e_k = layers[layer]
    base_k = mnrl(e_k[:batch, :layer_dims], e_k[batch:, :layer_dims])
    # sentence-transformers: F.kl_div(log_softmax(layer / T), softmax(last / T), "batchmean") * T * weight
    k = F.kl_div(F.log_softmax(e_k / temperature, dim=-1), F.softmax(e_last / temperature, dim=-1), reduction="batchmean")
    total = base_last + base_k / layer + k * temperature * 1.0
    save(case, [layers], total, [(f"base({LAYERS}, {last_dims})", base_last), (f"base({layer}, {layer_dims})", base_k), (f"kl({layer})", k)])


# --- SMAE on a tiny BERT ------------------------------------------------------------------
TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=16, type_vocab_size=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
TINY_SIZES = [(1, 8), (2, 16), (3, 32)]


def rnd(*shape, std=0.2):
    return (torch.randn(*shape) * std).to(torch.float32).to(torch.float64)


def tiny_weights():
    h, i, v = TINY["hidden_size"], TINY["intermediate_size"], TINY["vocab_size"]
    w = {
        "embeddings.word_embeddings.weight": rnd(v, h, std=0.5),
        "embeddings.position_embeddings.weight": rnd(TINY["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": rnd(2, h),
        "embeddings.LayerNorm.weight": 1 + rnd(h, std=0.1),
        "embeddings.LayerNorm.bias": rnd(h, std=0.1),
        "cls.predictions.transform.dense.weight": rnd(h, h),
        "cls.predictions.transform.dense.bias": rnd(h, std=0.1),
        "cls.predictions.transform.LayerNorm.weight": 1 + rnd(h, std=0.1),
        "cls.predictions.transform.LayerNorm.bias": rnd(h, std=0.1),
        "cls.predictions.bias": rnd(v, std=0.1),
    }
    for prefix in [f"encoder.layer.{l}." for l in range(TINY["num_hidden_layers"])] + ["decoder."]:
        for name, shape in [("attention.self.query", (h, h)), ("attention.self.key", (h, h)), ("attention.self.value", (h, h)),
                            ("attention.output.dense", (h, h)), ("intermediate.dense", (i, h)), ("output.dense", (h, i))]:
            w[prefix + name + ".weight"] = rnd(*shape)
            w[prefix + name + ".bias"] = rnd(shape[0], std=0.1)
        for name in ["attention.output.LayerNorm", "output.LayerNorm"]:
            w[prefix + name + ".weight"] = 1 + rnd(h, std=0.1)
            w[prefix + name + ".bias"] = rnd(h, std=0.1)
    return w


def layer_norm(x, w, b):
    return F.layer_norm(x, x.shape[-1:], w, b, TINY["layer_norm_eps"])


def bert_layer(w, p, x, bias):
    heads = TINY["num_attention_heads"]
    bsz, seq, h = x.shape
    hd = h // heads
    lin = lambda t, name: t @ w[p + name + ".weight"].T + w[p + name + ".bias"]
    split = lambda t: t.view(bsz, seq, heads, hd).transpose(1, 2)
    q, k, v = split(lin(x, "attention.self.query")), split(lin(x, "attention.self.key")), split(lin(x, "attention.self.value"))
    probs = torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5 + bias, dim=-1)
    ctx = (probs @ v).transpose(1, 2).reshape(bsz, seq, h)
    a = layer_norm(lin(ctx, "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
    f = F.gelu(lin(a, "intermediate.dense"))
    return layer_norm(lin(f, "output.dense") + a, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])


def head_transform(w, x):
    d = x.shape[-1]
    y = x @ w["cls.predictions.transform.dense.weight"][:, :d].T + w["cls.predictions.transform.dense.bias"]
    return layer_norm(F.gelu(y), w["cls.predictions.transform.LayerNorm.weight"], w["cls.predictions.transform.LayerNorm.bias"])


def head_logits(w, x):
    return head_transform(w, x) @ w["embeddings.word_embeddings.weight"].T + w["cls.predictions.bias"]


def smae(case, batch, seq):
    w = tiny_weights()
    v = TINY["vocab_size"]
    lengths = [seq - (i % 3) for i in range(batch)]
    mask = torch.tensor([[1.0] * l + [0.0] * (seq - l) for l in lengths], dtype=torch.float64)
    bias = ((1 - mask) * -10000.0)[:, None, None, :]
    ids = torch.randint(5, v, (batch, seq))
    enc_labels = torch.full((batch, seq), -100)
    dec_labels = torch.full((batch, seq), -100)
    for b in range(batch):
        for t in range(1, lengths[b] - 1):
            r = torch.rand(1).item()
            if r < 0.4:
                dec_labels[b, t] = ids[b, t]
                if r < 0.2:
                    enc_labels[b, t] = ids[b, t]
    enc_labels[0, 1] = dec_labels[0, 1] = ids[0, 1]  # at least one masked token in each set
    dec_ids = torch.where(dec_labels >= 0, torch.full_like(ids, 4), ids) * (mask > 0) 
    hidden = [(torch.randn(batch, seq, TINY["hidden_size"])).to(torch.float32).to(torch.float64).requires_grad_() for _ in range(TINY["num_hidden_layers"] + 1)]
    pos = w["embeddings.position_embeddings.weight"][:seq]
    emb = layer_norm(w["embeddings.word_embeddings.weight"][dec_ids] + pos + w["embeddings.token_type_embeddings.weight"][0],
                     w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    total, terms = 0, []
    for (n, d) in TINY_SIZES:
        # The reference computes logits everywhere and ignores non-masked labels.
        logits = head_logits(w, hidden[n][:, :, :d])
        mlm = F.cross_entropy(logits.reshape(-1, v), enc_labels.reshape(-1), ignore_index=-100)
        masked = enc_labels.reshape(-1) >= 0
        mlm_masked_only = F.cross_entropy(head_logits(w, hidden[n][:, :, :d].reshape(-1, d)[masked]), enc_labels.reshape(-1)[masked])
        assert torch.allclose(mlm, mlm_masked_only, rtol=1e-12), (mlm, mlm_masked_only)
        cls = head_transform(w, hidden[n][:, 0, :d])
        dec_in = torch.cat([cls[:, None, :], emb[:, 1:, :]], dim=1)
        out = bert_layer(w, "decoder.", dec_in, bias)
        mae = F.cross_entropy(head_logits(w, out).reshape(-1, v), dec_labels.reshape(-1), ignore_index=-100)
        terms += [(f"mlm({n}, {d})", mlm), (f"mae({n}, {d})", mae)]
        total = total + (mlm + mae) / 2
    total = total / len(TINY_SIZES)
    for k, t in w.items():
        OUT[f"{case}/weights/{k}"] = t.to(torch.float32)
    OUT[f"{case}/attention_mask"] = mask.to(torch.float32)
    OUT[f"{case}/decoder_input_ids"] = dec_ids.to(torch.int64)
    OUT[f"{case}/encoder_labels"] = enc_labels.to(torch.int64)
    OUT[f"{case}/decoder_labels"] = dec_labels.to(torch.int64)
    META[f"{case}/config"] = TINY
    save(case, [hidden], total, terms, names=("hidden",))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    for batch in (2, 5):
        inputs = srl_sts(f"srl_sts_b{batch}", batch)
        srl_sts(f"srl_sts_detached_b{batch}", batch, detach=True, like=inputs)
        srl_cosent(f"srl_cosent_b{batch}", batch)
        srl_retrieval(f"srl_retrieval_b{batch}", batch)
    mse2d("mse2d_a", 3, (384, 2, 64))
    mse2d("mse2d_b", 4, (32, 5, 256))
    smae("smae_b3", 3, 9)
    # Drawn after every case above, so that their inputs stay as they were.
    srl_deep("srl_deep_sts_b4", "sts", 4)
    srl_deep("srl_deep_cosent_b4", "cosent", 4)
    srl_deep("srl_deep_retrieval_b3", "retrieval", 3, kl_weight=0.7)
    # Drawn after the cases above, for the same reason.
    srl_deep("srl_deep_detached_sts_b4", "sts", 4, detached=True)
    srl_deep("srl_deep_detached_cosent_b4", "cosent", 4, detached=True)
    srl_deep("srl_deep_detached_retrieval_b3", "retrieval", 3, kl_weight=0.7, detached=True)
    out = {k: v.contiguous() for k, v in OUT.items()}
    save_file(out, args.out, metadata={"cases": json.dumps(META)})
    print(f"wrote {args.out}: {len(out)} tensors")


if __name__ == "__main__":
    main()
