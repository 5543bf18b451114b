#!/usr/bin/env python3
"""sentence-transformers loads folders written by `starbucks export` and gives the embeddings
that `starbucks embed` gives, to 1e-4.

Run by hand, never by CI:
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install sentence-transformers
    cargo build --release -p starbucks-cli
    target/release/starbucks export --model assets/all-MiniLM-L6-v2 --size 3,128 --output /tmp/exp/m3x128
    target/release/starbucks export --model assets/all-MiniLM-L6-v2 --size 6,384 --normalize --output /tmp/exp/full
    HF_HUB_OFFLINE=1 /tmp/ref/bin/python tests/reference/export_check.py /tmp/exp/m3x128 /tmp/exp/full
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

HERE = Path(__file__).resolve().parent
TEXTS = [l for l in (HERE / "sentences.txt").read_text(encoding="utf-8").split("\n")[:-1] if "\t" not in l]


def main():
    starbucks = HERE.parents[1] / "target" / "release" / "starbucks"
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in.txt"
        inputs.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
        for folder in sys.argv[1:]:
            model = SentenceTransformer(folder, device="cpu")
            want = model.encode(TEXTS, batch_size=8, convert_to_numpy=True)
            out = subprocess.run([str(starbucks), "embed", "--model", folder, "--input", str(inputs)],
                                 check=True, capture_output=True, text=True).stdout
            got = np.array([json.loads(line) for line in out.splitlines()], dtype=np.float32)
            diff = np.abs(got - want).max()
            print(f"{folder}: {len(TEXTS)} texts, shape {want.shape}, max |starbucks - sentence-transformers| = {diff:.2e}")
            assert got.shape == want.shape and diff <= 1e-4, diff


if __name__ == "__main__":
    main()
