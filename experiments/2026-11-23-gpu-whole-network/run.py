"""The whole-network NSD → objects92 variants on a GPU, in priority order, each skipped once ``budget_s`` has passed.

Runs the shipped pipeline (``run_nsd_objects92``) with ``configs/nsd-objects92.yaml`` plus whole-network overrides
on the data packed by ``prepare.py``. The one substitution: the MiniLM text targets are read from the packed
``text_targets.pkl`` (computed by the same pipeline code on the CPU box) instead of being embedded on the GPU
machine, where the MiniLM weights could not be sent. Usage (as run on the device, see README.md)::

    python run.py DEVICE EPOCHS SEEDS(0:1:2) N_IMAGES BUDGET_S VARIANT[,VARIANT...]
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import llmvem.pipeline.nsd_objects92 as pipeline
import llmvem.text as text_module
from llmvem.config import load_config

CARRY = Path(os.environ.get("LLMVEM_CARRY", ".gpucarry"))
VARIANTS: dict[str, dict[str, Any]] = {
    "lam001": {"finetune.lambda_align": 0.01},
    "lam003": {},
    "lam01": {"finetune.lambda_align": 0.1},
    "lam03": {"finetune.lambda_align": 0.3},
    "lam1": {"finetune.lambda_align": 1.0},
    "alignonly": {"finetune.aligned_task": "none", "finetune.lambda_align": 1.0},
    "lam01e40": {"finetune.lambda_align": 0.1, "finetune.epochs": 40},
}
with (CARRY / "text_targets.pkl").open("rb") as fh:
    REC = pickle.load(fh)
real_targets = pipeline.description_targets


def lookup(texts: list[str], **kw: Any) -> np.ndarray:
    """The packed embeddings of ``texts`` (a KeyError for any list that was not packed)."""
    return REC["embed"][hashlib.sha256("\x00".join(texts).encode()).hexdigest()]


def packed_targets(nsd: Any, models: Any, prompts: Any, emb_kw: dict[str, Any], ids: Any = None) -> Any:
    """The real function for ids and joined texts; the packed targets for the embeddings."""
    text_module.embed_texts = lambda texts, **kw: np.zeros((len(texts), REC["target"].shape[1]), np.float32)
    try:
        keep, _, texts, what = real_targets(nsd, models, prompts, emb_kw, ids)
    finally:
        text_module.embed_texts = lookup  # type: ignore[assignment]
    pos = {i: k for k, i in enumerate(REC["ids"])}
    return keep, REC["target"][[pos[i] for i in keep]], texts, what


def main(device: str, epochs: str, seeds: str, n_images: str, budget_s: str, variants: str) -> None:
    import torch

    t0 = time.perf_counter()
    out = Path(os.environ.get("OUT", "/tmp/out"))
    out.mkdir(parents=True, exist_ok=True)
    pipeline.description_targets, text_module.embed_texts = packed_targets, lookup  # type: ignore[assignment]
    print("torch", torch.__version__, "cuda", torch.cuda.is_available(), flush=True)
    common = {"data_dir": str(CARRY / "data"), "device": device, "cache_dir": "/tmp/llmvem-cache", "progress": False,
              "finetune.trainable_blocks": None, "finetune.augment": "crop_flip", "finetune.epochs": int(epochs),
              "finetune.seeds": [int(s) for s in seeds.split(":")], "finetune.n_images": int(n_images)}  # fmt: skip
    for v in variants.split(","):
        if time.perf_counter() - t0 > float(budget_s):
            print(f"skip {v}: budget spent", flush=True)
            continue
        t1 = time.perf_counter()
        cfg = load_config("configs/nsd-objects92.yaml", {**common, **VARIANTS[v]})
        run = pipeline.run_nsd_objects92(cfg, run_dir=Path("/tmp/runs") / v)
        m = json.loads((run.path / "metrics.json").read_text())
        m["wall_s"] = round(time.perf_counter() - t1, 1)
        (out / f"{v}_metrics.json").write_text(json.dumps(m, indent=1))
        it = {k: round(r["cichy_IT"]["mean"], 3) for k, r in m["rsa"].items() if "cichy_IT" in r}
        print(v, f"{m['wall_s']} s", "Cichy IT", it, "HED", json.dumps(m.get("hed")), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:7])
