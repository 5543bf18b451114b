#!/usr/bin/env python3
"""The one-shot GPU check of starbucks-rs, carried to a machine with an NVIDIA GPU by
`cargo xtask gpu-check` (with the CUDA build of the `starbucks` CLI beside it) and run there as

    python3 run.py --out "$OUT"

It needs Python with torch, transformers and tokenizers; no network and no Rust toolchain.
Every stage writes report.json and report.md into --out as soon as it ends, so a run cut short
still leaves what it measured:

1. libraries: finds the CUDA driver (libcuda.so.1) and NVRTC (libnvrtc.so.*, shipped with the
   torch wheels) that the CLI loads at run time, and says which are missing and where it looked;
2. model: random-initialised bert-base-uncased (transformers' BertConfig defaults, seed 0),
   saved as an HF folder with the shipped bert-base-uncased WordPiece tokenizer;
3. embed: `starbucks embed` at the paper's six sizes against transformers on the same device
   (mean pooling over layer n, first d dims): max |difference|;
4. timing: one SRL step (the paper's six sizes, MNRL + 0.3 KL) and one single-size step, at
   batch 128 triplets of max length 128, ours (`starbucks bench`) against PyTorch f32 and bf16
   autocast, alternated in rounds, every iteration kept;
5. train: 200 SRL steps of `starbucks finetune` on the shipped SNLI triplets: losses, time, peak
   GPU memory (nvidia-smi).

`--device cpu` runs the same stages on the CPU with the CPU (flex) build and small settings, to
try the script where there is no GPU.
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PAPER_SIZES = [(2, 32), (4, 64), (6, 128), (8, 256), (10, 512), (12, 768)]
EMBED_TOLERANCE = 2e-3  # f32 on both sides; cubecl or cuBLAS may use TF32 tensor cores
SCALE, KL_WEIGHT = 20.0, 0.3

SETTINGS = {
    # device: sentences, triplets per step, warm-up, iterations, rounds, training steps, and
    # the seconds the whole check may take (each CLI run is cut at what is left of them)
    "cuda": dict(sentences=300, triplets=128, warmup=2, iters=5, rounds=2, steps=200, budget=570),
    "cpu": dict(sentences=16, triplets=4, warmup=1, iters=2, rounds=1, steps=3, budget=1800),
}
DEADLINE = [float("inf")]


def remaining():
    left = DEADLINE[0] - time.time()
    if left <= 0:
        raise TimeoutError("the check's time budget is spent")
    return left


def log(message):
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Report:
    """What the stages found, rewritten whole after each stage (temporary name, then rename)."""

    def __init__(self, out, device):
        self.out, self.data = out, {"device": device, "stages": {}}

    def stage(self, name, value):
        self.data["stages"][name] = value
        self.save()

    def save(self):
        for name, text in [("report.json", json.dumps(self.data, indent=2)), ("report.md", self.markdown())]:
            tmp = os.path.join(self.out, name + ".tmp")
            with open(tmp, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, os.path.join(self.out, name))

    def markdown(self):
        d, s = self.data, self.data["stages"]
        lines = [f"# starbucks-rs GPU check ({d['device']})", ""]
        for key in ["machine", "versions"]:
            if key in d:
                lines += [f"- {key}: " + ", ".join(f"{k} {v}" for k, v in d[key].items())]
        lines.append("")
        for name, value in s.items():
            if isinstance(value, dict) and "error" in value:
                lines += [f"## {name}: failed", "", "```", value["error"], "```", ""]
        if "embed" in s and "sizes" in s["embed"]:
            lines += ["## embed: ours against transformers", "", "| size | max abs difference | result |", "|---|---|---|"]
            for row in s["embed"]["sizes"]:
                lines.append(f"| ({row['layers']},{row['dims']}) | {row['max_abs']:.2e} | {row['result']} |")
            lines.append("")
        if "timing" in s and "workloads" in s["timing"]:
            t = s["timing"]
            lines += [f"## timing: ms per step, batch {t['triplets']} triplets, max length {t['max_len']}", "",
                      "| workload | path | round medians | median | × ours |", "|---|---|---|---|---|"]
            for workload, paths in t["workloads"].items():
                ours = paths.get("ours", {}).get("median_ms")
                for path, row in paths.items():
                    ratio = f"{row['median_ms'] / ours:.2f}" if ours else "–"
                    rounds = ", ".join(f"{m:.1f}" for m in row["round_medians_ms"])
                    lines.append(f"| {workload} | {path} | {rounds} | {row['median_ms']:.1f} | {ratio} |")
            lines += ["", "Every iteration is in report.json; × ours > 1 means the path is slower than ours.", ""]
        if "train" in s and "losses" in s["train"]:
            t = s["train"]
            lines += [f"## train: {t['steps']} SRL steps", "",
                      f"- wall clock {t['seconds']:.0f} s ({t['seconds_per_step']:.3f} s/step over the run)",
                      *([f"- peak GPU memory: {t['peak_gpu_mib']} MiB ({t['memory_source']})"] if "peak_gpu_mib" in t else []),
                      "- loss at logged steps: " + ", ".join(f"{k}: {v:.4f}" for k, v in t["losses"].items()), ""]
        return "\n".join(lines)


def find_libraries(device):
    """LD_LIBRARY_PATH additions for the CLI, and what is missing with where it was looked for."""
    if device != "cuda":
        return [], []
    import torch

    site = os.path.dirname(os.path.dirname(torch.__file__))
    found, missing = [], []
    nvrtc_places = [os.path.join(site, "nvidia", "**", "libnvrtc.so*"), "/usr/local/cuda*/lib64/libnvrtc.so*",
                    "/usr/lib/x86_64-linux-gnu/libnvrtc.so*"]
    nvrtc = sorted({p for place in nvrtc_places for p in glob.glob(place, recursive=True) if "builtins" not in p})
    if nvrtc:
        found.append(os.path.dirname(nvrtc[0]))
    else:
        missing.append("NVRTC (libnvrtc.so.*), looked in: " + ", ".join(nvrtc_places))
    ldconfig = subprocess.run(["sh", "-c", "ldconfig -p 2>/dev/null | grep -o '/.*libcuda\\.so\\.1$'"],
                              capture_output=True, text=True).stdout.split()
    cuda_places = ["/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib64/libcuda.so.1",
                   "/usr/local/nvidia/lib64/libcuda.so.1", "/usr/local/cuda*/compat/libcuda.so.1"]
    libcuda = ldconfig or [p for place in cuda_places for p in glob.glob(place)]
    if libcuda:
        found.append(os.path.dirname(libcuda[0]))
    else:
        missing.append("the CUDA driver (libcuda.so.1), looked in: ldconfig -p, " + ", ".join(cuda_places))
    return sorted(set(found)), missing


def run_cli(binary, args, env, log_path):
    """Runs the CLI; its output goes to log_path; returns stdout's text or raises with the log's end."""
    started = time.time()
    with open(log_path, "w") as f:
        proc = subprocess.run([binary, *args], env=env, stdout=subprocess.PIPE, stderr=f, text=True, timeout=remaining())
    if proc.returncode != 0:
        with open(log_path) as f:
            tail = "".join(f.readlines()[-25:])
        raise RuntimeError(f"`starbucks {' '.join(args)}` exited with {proc.returncode} after "
                           f"{time.time() - started:.0f} s:\n{proc.stdout[-2000:]}{tail}")
    return proc.stdout


def make_model(dest, device):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig()  # bert-base-uncased: 12 layers, 768 hidden, 12 heads, 3072, vocab 30522
    model = BertModel(config, add_pooling_layer=False).eval()
    os.makedirs(dest, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    for name in os.listdir(os.path.join(HERE, "tokenizer")):
        shutil.copy(os.path.join(HERE, "tokenizer", name), dest)
    with open(os.path.join(dest, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 128, "do_lower_case": False}, f)
    return model.to(device)


def tokenize(texts, device, max_len=128):
    import torch
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(HERE, "tokenizer", "tokenizer.json"))
    tok.enable_truncation(max_len)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc], device=device)
    mask = torch.tensor([e.attention_mask for e in enc], device=device)
    return ids, mask


def mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def stage_embed(binary, env, model_dir, model, device, settings, work):
    import torch

    with open(os.path.join(HERE, "data", "sentences.txt")) as f:
        sentences = [line.rstrip("\n") for line in f][: settings["sentences"]]
    path = os.path.join(work, "sentences.txt")
    with open(path, "w") as f:
        f.write("\n".join(sentences) + "\n")
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        ids, mask = tokenize(sentences, device)
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    rows = []
    for layers, dims in PAPER_SIZES:
        out = os.path.join(work, f"embed-{layers}x{dims}.jsonl")
        started = time.time()
        run_cli(binary, ["embed", "--model", model_dir, "--size", f"{layers},{dims}", "--input", path, "--output", out],
                env, out + ".log")
        with open(out) as f:
            ours = torch.tensor([json.loads(line) for line in f], dtype=torch.float64)
        theirs = mean_pool(hidden[layers], mask)[:, :dims].double().cpu()
        worst = (ours - theirs).abs().max().item()
        result = "pass" if worst <= EMBED_TOLERANCE else "FAIL"
        rows.append(dict(layers=layers, dims=dims, max_abs=worst, result=result, seconds=time.time() - started))
        log(f"embed ({layers},{dims}): max |difference| {worst:.2e} ({result})")
    return dict(sentences=len(sentences), tolerance=EMBED_TOLERANCE, sizes=rows)


def read_triplets(count):
    import gzip

    with gzip.open(os.path.join(HERE, "data", "nli", "snli-triplets.tsv.gz"), "rt") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    return rows[:count]


def torch_step_fn(model, triplets, device, single, bf16):
    """One training step as the reference does it: one forward over the 3B texts, every size's
    loss read from it (METHOD.md, SRL STS flavour), backward, clipping 1.0, AdamW."""
    import torch
    import torch.nn.functional as F

    b = len(triplets)
    texts = [t[0] for t in triplets] + [t[1] for t in triplets] + [t[2] for t in triplets]
    ids, mask = tokenize(texts, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    full = PAPER_SIZES[-1]
    sizes = [full] if single else PAPER_SIZES
    labels = torch.arange(b, device=device)
    kind = "cuda" if device == "cuda" else "cpu"

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16):
            hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            pooled = {n: mean_pool(hidden[n], mask).float() for n in {s[0] for s in sizes}}
        total = 0.0
        for n, d in sizes:
            e = pooled[n][:, :d]
            u, v = F.normalize(e[:b], dim=-1), F.normalize(e[b:], dim=-1)
            total = total + F.cross_entropy(SCALE * u @ v.T, labels)
            if (n, d) != full:
                p = F.log_softmax(pooled[full[0]][:, :d], dim=-1)
                q = F.log_softmax(e, dim=-1)
                total = total + KL_WEIGHT * (p.exp() * (p - q)).sum(-1).mean()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return total.item()

    return step


def time_torch(model_dir, device, triplets, single, bf16, settings):
    import torch
    from transformers import BertModel

    torch.backends.cuda.matmul.allow_tf32 = False
    model = BertModel.from_pretrained(model_dir, add_pooling_layer=False).to(device).train()
    step = torch_step_fn(model, triplets, device, single, bf16)
    for _ in range(settings["warmup"]):
        step()
    times = []
    for _ in range(settings["iters"]):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1e3)
    del model, step
    if device == "cuda":
        torch.cuda.empty_cache()
    return times


def stage_timing(binary, env, model_dir, device, settings, work):
    triplets = read_triplets(settings["triplets"])
    workloads = {}
    for workload, single in [("train-srl", False), ("train-single", True)]:
        paths = {"ours": [], "torch-f32": [], "torch-bf16": []}
        for r in range(settings["rounds"]):
            order = ["ours", "torch-f32", "torch-bf16"] if r % 2 == 0 else ["torch-bf16", "torch-f32", "ours"]
            for path in order:
                if path == "ours":
                    args = ["bench", "--workload", workload, "--model", model_dir, "--data", os.path.join(HERE, "data"),
                            "--triplets", str(settings["triplets"]), "--sizes", "bert-base",
                            "--warmup", str(settings["warmup"]), "--iters", str(settings["iters"])]
                    line = run_cli(binary, args, env, os.path.join(work, f"bench-{workload}-{r}.log"))
                    times = json.loads(line.strip().splitlines()[-1])["times_ms"]
                else:
                    times = time_torch(model_dir, device, triplets, single, path == "torch-bf16", settings)
                paths[path].append(times)
                log(f"{workload} round {r + 1} {path}: " + ", ".join(f"{t:.1f}" for t in times) + " ms")
        workloads[workload] = {
            path: dict(iterations_ms=rounds, round_medians_ms=[statistics.median(t) for t in rounds],
                       median_ms=statistics.median([x for t in rounds for x in t]))
            for path, rounds in paths.items()
        }
    return dict(triplets=settings["triplets"], max_len=128, workloads=workloads)


class GpuMemory:
    """Peak used GPU memory while a child runs, sampled from nvidia-smi every 0.2 s."""

    def __init__(self, device):
        self.peak, self.stop = None, threading.Event()
        self.enabled = device == "cuda" and shutil.which("nvidia-smi") is not None
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self):
        while not self.stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True).stdout.strip()
            if out.isdigit():
                self.peak = max(self.peak or 0, int(out))
            self.stop.wait(0.2)

    def __enter__(self):
        if self.enabled:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.enabled:
            self.thread.join()


def stage_train(binary, env, model_dir, device, settings, work):
    steps = settings["steps"]
    config = os.path.join(work, "srl.toml")
    with open(config, "w") as f:
        f.write(f"""task = "finetune"
output = "{os.path.join(work, 'srl-run')}"

[model]
path = "{model_dir}"
max_seq_length = 128

[data]
format = "triplets"
path = "{os.path.join(HERE, 'data', 'nli', 'snli-triplets.tsv.gz')}"

[objective]
method = "srl"
sizes = "bert-base"

[train]
seed = 42
batch_size = {settings['triplets']}
max_steps = {steps}
lr = 5e-5
warmup_ratio = 0.1
decay = "linear"
max_grad_norm = 1.0
log_every = {max(1, steps // 20)}

[checkpoint]
every = {steps}
""")
    started = time.time()
    with GpuMemory(device) as memory:
        run_cli(binary, ["finetune", "--config", config, "--no-progress"], env, os.path.join(work, "finetune.log"))
    seconds = time.time() - started
    with open(os.path.join(work, "srl-run", "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    result = dict(steps=steps, seconds=seconds, seconds_per_step=seconds / steps,
                  losses={str(m["step"]): m["loss"] for m in lines},
                  tokens_per_s=[m.get("tokens_per_s") for m in lines])
    if memory.peak is not None:
        result.update(peak_gpu_mib=memory.peak, memory_source="nvidia-smi, whole GPU, sampled every 0.2 s")
    log(f"train: {steps} steps in {seconds:.0f} s, losses {list(result['losses'].values())[:3]} ...")
    return result


def keep_logs(work, dest):
    """The CLI's logs, the training config and its metrics, copied where the report is."""
    os.makedirs(dest, exist_ok=True)
    for path in glob.glob(os.path.join(work, "*.log")) + glob.glob(os.path.join(work, "*.toml")):
        shutil.copy(path, dest)
    metrics = os.path.join(work, "srl-run", "metrics.jsonl")
    if os.path.exists(metrics):
        shutil.copy(metrics, os.path.join(dest, "srl-metrics.jsonl"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", "out"), help="where report.json/.md go ($OUT)")
    parser.add_argument("--binary", default=os.path.join(HERE, "bin", "starbucks"))
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when torch sees a GPU")
    parser.add_argument("--stages", default="embed,timing,train", help="comma-separated subset")
    args = parser.parse_args()

    import torch
    import transformers

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = SETTINGS[device]
    DEADLINE[0] = time.time() + settings["budget"]
    os.makedirs(args.out, exist_ok=True)
    # The model (440 MB) and the embeddings stay out of --out; the logs are copied there.
    work = tempfile.mkdtemp(prefix="starbucks-gpu-check-")
    report = Report(args.out, device)
    report.data["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                               "python": sys.version.split()[0]}
    report.data["machine"] = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
                              "cpus": os.cpu_count()}
    report.data["settings"] = settings

    extra, missing = find_libraries(device)
    env = dict(os.environ, STARBUCKS_LOG="info", LD_LIBRARY_PATH=":".join(extra + [os.environ.get("LD_LIBRARY_PATH", "")]))
    if device == "cuda" and not torch.cuda.is_available():
        missing.append("a GPU torch can use (torch.cuda.is_available() is False)")
    report.stage("libraries", {"ld_library_path": extra, "missing": missing})
    if missing:
        log("missing: " + "; ".join(missing))
        report.stage("libraries", {"ld_library_path": extra, "missing": missing, "error": "; ".join(missing)})
        return 1
    version = subprocess.run([args.binary, "--version"], capture_output=True, text=True, env=env)
    report.data["versions"]["starbucks"] = version.stdout.strip() or version.stderr.strip()

    log(f"device {device}; making a random bert-base-uncased")
    model_dir = os.path.join(work, "bert-base-random")
    model = make_model(model_dir, device)
    stages = args.stages.split(",")
    failed = False
    for name, run in [
        ("embed", lambda: stage_embed(args.binary, env, model_dir, model, device, settings, work)),
        ("timing", lambda: stage_timing(args.binary, env, model_dir, device, settings, work)),
        ("train", lambda: stage_train(args.binary, env, model_dir, device, settings, work)),
    ]:
        if name not in stages:
            continue
        if name == "timing":
            del model  # the timing loads fresh copies
            model = None
            if device == "cuda":
                torch.cuda.empty_cache()
        log(f"stage {name}")
        started = time.time()
        try:
            value = run()
            value["stage_seconds"] = time.time() - started
        except Exception as e:  # a stage's failure is reported and the next stage still runs
            failed = True
            value = {"error": f"{type(e).__name__}: {e}", "stage_seconds": time.time() - started}
            log(f"stage {name} failed: {value['error']}")
        report.stage(name, value)
        keep_logs(work, os.path.join(args.out, "logs"))
    embed = report.data["stages"].get("embed", {})
    failed = failed or any(row["result"] != "pass" for row in embed.get("sizes", []))
    log(f"done: {os.path.join(args.out, 'report.md')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
