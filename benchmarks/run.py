"""Benchmark runner: each benchmark measures our code and its peer (or the hardware floor) in the same run and
reports the ratio. Results go to ``benchmarks/results/<name>.json``.

Usage::

    python benchmarks/run.py                 # all benchmarks
    python benchmarks/run.py store_write     # some of them
    python benchmarks/run.py --list
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS: dict[str, Callable[[], dict[str, Any]]] = {}


def benchmark(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    BENCHMARKS[fn.__name__] = fn
    return fn


def best_of(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Minimum wall time of ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


@benchmark
def store_key() -> dict[str, Any]:
    """Artifact key of a spec listing 100,000 image hashes vs hashing the same bytes with hashlib alone."""
    import hashlib

    from llmvem.hashing import artifact_key, canonical_json

    rng = np.random.default_rng(0)
    hashes = [f"{x:064x}" for x in rng.integers(0, 2**62, 100_000)]
    spec = {"images": hashes, "model": {"name": "efficientnet_lite0", "weights": "ab" * 32}, "size": 224}
    raw = canonical_json(spec).encode()
    ours = best_of(lambda: artifact_key(spec))
    floor = best_of(lambda: hashlib.sha256(raw).hexdigest())
    return {
        "n_hashes": len(hashes),
        "ours_s": ours,
        "sha256_only_s": floor,
        "ratio_vs_sha256": ours / floor,
        "note": "ratio = cost of canonical encoding + hashing over hashing the encoded bytes alone",
    }


@benchmark
def store_write() -> dict[str, Any]:
    """Atomic put of a 10,000 × 2,000 float32 array (80 MB) vs np.save + fsync of the same array (the floor)."""
    from llmvem.store import ArtifactStore

    x = np.random.default_rng(0).standard_normal((10_000, 2_000), dtype=np.float32)
    with tempfile.TemporaryDirectory() as d:
        store = ArtifactStore(Path(d) / "store")
        counter = iter(range(1000))
        ours = best_of(lambda: store.put_arrays("bench", {"i": next(counter)}, {"x": x}), 3)

        def floor_write() -> None:
            p = Path(d) / f"plain{next(counter)}.npy"
            with open(p, "wb") as fh:
                np.save(fh, x)
                fh.flush()
                os.fsync(fh.fileno())

        floor = best_of(floor_write, 3)
        key = store.key("bench", {"i": 0})
        read = best_of(lambda: store.get_arrays("bench", key), 3)
        read_floor = best_of(lambda: np.load(store.path("bench", key) / "x.npy"), 3)
    return {
        "bytes": x.nbytes,
        "ours_write_s": ours,
        "floor_write_s": floor,
        "ratio_write": ours / floor,
        "ours_read_s": read,
        "floor_read_s": read_floor,
        "ratio_read": read / read_floor,
    }


@benchmark
def ridge() -> dict[str, Any]:
    """Per-voxel-α ridge (exact LOO, 20 α) on X 5,000×768, Y 5,000×8,000 float32 vs scikit-learn RidgeCV
    (alpha_per_target=True, same α, 1,000-voxel slice, per-voxel time compared) and vs one XᵀY GEMM (floor)."""
    from sklearn.linear_model import RidgeCV

    from llmvem.brain import RidgeEncoder

    rng = np.random.default_rng(0)
    n, p, v = 5_000, 768, 8_000
    X = rng.standard_normal((n, p), dtype=np.float32)
    W = rng.standard_normal((p, v), dtype=np.float32) * (rng.random(v, dtype=np.float32) * 0.1)
    Y = (X @ W + rng.standard_normal((n, v), dtype=np.float32)).astype(np.float32)
    alphas = tuple(np.logspace(-2, 6, 20))
    gemm = best_of(lambda: X.T @ Y, 3)
    ours = best_of(lambda: RidgeEncoder(alphas=alphas).fit(X, Y), 1)
    v_peer = 1_000
    peer = best_of(lambda: RidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y[:, :v_peer]), 1)
    ours_pv, peer_pv = ours / v, peer / v_peer
    return {
        "n": n,
        "p": p,
        "v": v,
        "n_alphas": len(alphas),
        "gemm_xty_s": gemm,
        "ours_s": ours,
        "ratio_vs_gemm": ours / gemm,
        "sklearn_s_on_slice": peer,
        "sklearn_voxels": v_peer,
        "speedup_vs_sklearn_per_voxel": peer_pv / ours_pv,
    }


@benchmark
def rsa() -> dict[str, Any]:
    """15 subjects × 100 model RDMs on 92 stimuli, Spearman: ours (one vectorised call) vs a scipy.stats.spearmanr
    loop over the 1,500 pairs (identical numbers required)."""
    from scipy.stats import spearmanr

    from llmvem.brain import compare_rdms, compute_rdm, upper_tri

    rng = np.random.default_rng(0)
    models = np.stack([upper_tri(compute_rdm(rng.standard_normal((92, 50)))) for _ in range(100)])
    subjects = np.stack([upper_tri(compute_rdm(rng.standard_normal((92, 50)))) for _ in range(15)])
    ours_out: list[np.ndarray] = []
    ours = best_of(lambda: ours_out.append(np.asarray(compare_rdms(models, subjects, method="spearman"))), 3)

    def loop() -> np.ndarray:
        return np.array([[spearmanr(m, s)[0] for s in subjects] for m in models])

    peer_out = loop()
    peer = best_of(loop, 1)
    max_diff = float(np.max(np.abs(ours_out[-1] - peer_out)))
    return {"ours_s": ours, "scipy_loop_s": peer, "speedup_vs_scipy_loop": peer / ours, "max_abs_diff": max_diff}


def _data_dir() -> Path:
    env = os.environ.get("LLMVEM_DATA")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not d.is_dir():
        raise SystemExit(f"real data directory not found: set LLMVEM_DATA (tried {d})")
    return d


@benchmark
def features() -> dict[str, Any]:
    """extract_features on the 92 object images (decode, preprocess, forward, store write; cold store) vs the bare
    EfficientNet-Lite0 forward pass on the same images already decoded into one tensor (the floor)."""
    import torch

    from llmvem.data import StimulusSet
    from llmvem.store import ArtifactStore
    from llmvem.vision import extract_features, load_backbone

    stim = StimulusSet.from_folder(_data_dir() / "objects92" / "images")
    bb = load_backbone("efficientnet_lite0")
    batch = torch.stack([bb.preprocess(stim.load(i)) for i in range(len(stim))])

    def bare() -> None:
        with torch.inference_mode():
            for i in range(0, len(batch), 32):
                bb.features(batch[i : i + 32])

    bare()  # warm-up
    floor = best_of(bare, 3)
    with tempfile.TemporaryDirectory() as d:
        counter = iter(range(100))
        ours = best_of(
            lambda: extract_features(stim, store=ArtifactStore(Path(d) / str(next(counter))), progress=False), 3
        )
        store = ArtifactStore(Path(d) / "hit")
        extract_features(stim, store=store, progress=False)
        hit = best_of(lambda: extract_features(stim, store=store, progress=False), 3)
    return {
        "n_images": len(stim),
        "ours_cold_s": ours,
        "bare_forward_s": floor,
        "ratio_vs_bare_forward": ours / floor,
        "images_per_s": len(stim) / ours,
        "cache_hit_s": hit,
        "cold_over_hit": ours / hit,
    }


@benchmark
def demo() -> dict[str, Any]:
    """`llmvem demo` with default settings and a cold store: total and per-stage wall time, and the ratio of the total
    to the unavoidable model work measured in the same run (EfficientNet-Lite0 forward on the 240 images + MiniLM on
    the 240 captions)."""
    import torch

    from llmvem.config import load_config
    from llmvem.pipeline import run_encoding_demo
    from llmvem.text import load_text_encoder
    from llmvem.vision import load_backbone

    with tempfile.TemporaryDirectory() as d:
        cfg = load_config(overrides={"cache_dir": f"{d}/cache", "output_dir": f"{d}/runs", "progress": False})
        t0 = time.perf_counter()
        run = run_encoding_demo(cfg, log=lambda m: None)
        total = time.perf_counter() - t0
        metrics = json.loads((run.path / "metrics.json").read_text())
        from llmvem.data.synthetic import load_demo_set

        demo_set = load_demo_set(next((Path(d) / "cache" / "demo_sets").iterdir()))
        bb = load_backbone("efficientnet_lite0")
        batch = torch.stack([bb.preprocess(demo_set.stimuli.load(i)) for i in range(len(demo_set.stimuli))])

        def forward() -> None:
            with torch.inference_mode():
                for i in range(0, len(batch), 32):
                    bb.features(batch[i : i + 32])

        enc = load_text_encoder("minilm")
        texts = [demo_set.captions[i] for i in demo_set.stimuli.ids]
        floor = best_of(forward, 1) + best_of(lambda: enc.encode(texts), 1)
    return {
        "total_s": total,
        "stages_s": metrics["timings_s"],
        "model_floor_s": floor,
        "ratio_vs_floor": total / floor,
        "encoding": {k: v["mean_r"] for k, v in metrics["encoding"].items()},
    }


@benchmark
def finetune_step() -> dict[str, Any]:
    """Fine-tuning step time of the top 3 EfficientNet-Lite0 blocks (batch 64, cached activations) with and without
    the InfoNCE alignment loss and projection head (target overhead ≤ 10 %), and training images/s on this CPU."""
    import torch

    from llmvem.align.finetune import FinetuneData, finetune
    from llmvem.config import FinetuneConfig
    from llmvem.vision.trainable import split_backbone

    split = split_backbone("efficientnet_lite0", trainable_blocks=3)
    rng = np.random.default_rng(0)
    with torch.inference_mode():
        acts = split.bottom(torch.from_numpy(rng.normal(size=(256, 3, 224, 224)).astype(np.float32))).numpy()
    data = FinetuneData(
        acts, rng.normal(size=(256, 384)).astype(np.float32), (rng.random((256, 30)) < 0.3).astype(np.float32)
    )
    cfg = FinetuneConfig(epochs=2, batch_size=64, warmup_epochs=0)
    idx, none = np.arange(256), np.arange(0)
    times = {}
    with tempfile.TemporaryDirectory() as d:
        for name, lam in (("task_only", 0.0), ("task_plus_align", 1.0)):
            counter = iter(range(100))
            t = best_of(
                lambda lam=lam, name=name, counter=counter: finetune(
                    split, data, idx, none, cfg, lam, "multilabel", 0, Path(d) / f"{name}{next(counter)}"
                ),
                3,
            )
            times[name] = t / (2 * 256 / 64)  # per optimizer step
    return {
        "batch": 64,
        "step_s_task_only": times["task_only"],
        "step_s_with_alignment": times["task_plus_align"],
        "alignment_overhead": times["task_plus_align"] / times["task_only"] - 1,
        "train_images_per_s": 64 / times["task_plus_align"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--list", action="store_true")
    args = p.parse_args(argv)
    if args.list:
        for name, fn in BENCHMARKS.items():
            print(f"{name}: {(fn.__doc__ or '').strip()}")
        return 0
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    RESULTS.mkdir(exist_ok=True)
    for name in names:
        print(f"== {name}", flush=True)
        result = BENCHMARKS[name]()
        result.update(
            benchmark=name,
            machine={"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]},
            when=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
        print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
