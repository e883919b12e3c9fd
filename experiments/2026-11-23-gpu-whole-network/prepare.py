"""Pack what the GPU runs need into a folder small enough for the device tool's 64 MiB transfer limit.

The folder (default ``.gpucarry``, git-excluded) gets: the NSD images already at the pipeline's own preprocessing
geometry (shorter side 224, bicubic, centre crop 224; JPEG quality 95, so the pipeline's resize is a no-op), the
descriptions' ``general_description`` lines only, the HED table, objects92 as it is, and the MiniLM text targets
computed here by the real pipeline code (the MiniLM weights, 88 MB, do not fit). Usage::

    python experiments/2026-11-23-gpu-whole-network/prepare.py ../shared/data .gpucarry
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import llmvem.text as text_module
from llmvem.config import load_config
from llmvem.data.datasets import load_dataset
from llmvem.pipeline.common import description_targets, embed_kwargs, make_store
from llmvem.vision.backbones import resize_center_crop


def pack_data(src: Path, dst: Path) -> None:
    """Copy the data the experiment reads, NSD images pre-cropped to 224 × 224."""
    nsd_in, nsd_out = src / "nsd_shared1000", dst / "nsd_shared1000"
    (nsd_out / "images").mkdir(parents=True, exist_ok=True)
    (nsd_out / "descriptions").mkdir(parents=True, exist_ok=True)
    for f in sorted((nsd_in / "images").iterdir()):
        out = nsd_out / "images" / f.name
        if not out.exists():
            resize_center_crop(Image.open(f).convert("RGB"), 224).save(out, "JPEG", quality=95)
    for name in ("shared1000_HED.tsv", "special100_captions.json", "descriptions/prompts.json"):
        shutil.copy(nsd_in / name, nsd_out / name)
    for f in (nsd_in / "descriptions").glob("*.jsonl"):
        lines = [line for line in f.read_text().splitlines() if json.loads(line)["prompt"] == "general_description"]
        (nsd_out / "descriptions" / f.name).write_text("\n".join(lines) + "\n")
    if not (dst / "objects92").exists():
        shutil.copytree(src / "objects92", dst / "objects92")
    for p in dst.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)


def pack_text_targets(src: Path, out: Path) -> None:
    """The 6-VLM mean MiniLM targets of the NSD images and the MiniLM embeddings of the 92 objects' descriptions."""
    cfg = load_config("configs/nsd-objects92.yaml", {"data_dir": str(src)})
    kw = embed_kwargs(cfg, make_store(cfg))
    nsd, obj = load_dataset("nsd_shared1000", cfg.data_dir), load_dataset("objects92", cfg.data_dir)
    ids = list(nsd.description_sets("all", "general_description")[1])[:1000]
    keep, target, _, what = description_targets(nsd, "all", "general_description", kw, ids)
    texts = [obj.descriptions[i] for i in obj.stimuli.ids]
    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    embed = {key: np.asarray(text_module.embed_texts(texts, **kw), dtype=np.float32)}
    with out.open("wb") as fh:
        pickle.dump({"ids": keep, "target": target, "what": what, "embed": embed}, fh)


if __name__ == "__main__":
    data, carry = Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) > 2 else ".gpucarry")
    pack_data(data, carry / "data")
    pack_text_targets(data, carry / "text_targets.pkl")
