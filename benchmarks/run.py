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

#: where each result goes as <name>.json (LLMVEM_BENCH_RESULTS: another folder, e.g. a device run's output folder)
RESULTS = Path(os.environ.get("LLMVEM_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
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


def _available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


@benchmark
def ridge() -> dict[str, Any]:
    """Per-voxel-α ridge, 20 α, float32, the issue's case X 10,000×768, Y 10,000×40,000 (a documented smaller
    case with the same n and p when memory is short; LLMVEM_BENCH_RIDGE="n,p,v" overrides): ours (GCV, the default)
    vs one XᵀY GEMM (floor), our exact LOO, scikit-learn RidgeCV(alpha_per_target=True) and himalaya RidgeCV (5-fold)
    on a 4,000-voxel slice (per-voxel time compared); peak memory of our fit relative to Y (tracemalloc)."""
    import tracemalloc

    from sklearn.linear_model import RidgeCV

    from llmvem.brain import RidgeEncoder

    n, p, v = (int(x) for x in os.environ.get("LLMVEM_BENCH_RIDGE", "10000,768,40000").split(","))
    if 6 * n * v * 4 > _available_bytes():
        v = max(4000, int(_available_bytes() / (6 * n * 4)) // 1000 * 1000)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, p), dtype=np.float32)
    Y = np.empty((n, v), dtype=np.float32)
    for start in range(0, v, 4000):  # a spread of signal levels, so voxels prefer different α
        stop = min(v, start + 4000)
        W = rng.standard_normal((p, stop - start), dtype=np.float32) * (
            rng.random(stop - start, dtype=np.float32) * 0.1
        )
        Y[:, start:stop] = X @ W + rng.standard_normal((n, stop - start), dtype=np.float32)
    alphas = tuple(np.logspace(-2, 6, 20))
    backend = os.environ.get("LLMVEM_BENCH_BACKEND", "numpy")
    RidgeEncoder(alphas=alphas, backend=backend).fit(X[:500], Y[:500, :100])  # warm up (imports, threads)
    gemm = best_of(lambda: X.T @ Y, 3)
    ours = best_of(lambda: RidgeEncoder(alphas=alphas, backend=backend).fit(X, Y), 3)
    tracemalloc.start()
    RidgeEncoder(alphas=alphas, backend="numpy").fit(X, Y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    v_peer = min(4000, v)
    Ys = np.ascontiguousarray(Y[:, :v_peer])
    loo = best_of(lambda: RidgeEncoder(alphas=alphas, cv="loo", backend=backend).fit(X, Ys), 1)
    sk = best_of(lambda: RidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Ys), 1)
    out: dict[str, Any] = {
        "n": n,
        "p": p,
        "v": v,
        "n_alphas": len(alphas),
        "backend": backend,
        "gemm_xty_s": gemm,
        "ours_gcv_s": ours,
        "ratio_vs_gemm": ours / gemm,
        "peak_memory_over_Y": (Y.nbytes + peak) / Y.nbytes,
        "peer_voxels": v_peer,
        "ours_loo_s_on_slice": loo,
        "sklearn_s_on_slice": sk,
        "speedup_vs_sklearn_per_voxel": (sk / v_peer) / (ours / v),
        "loo_speedup_vs_sklearn": sk / loo,
    }
    try:
        from himalaya.ridge import RidgeCV as HimalayaRidgeCV

        hm = best_of(
            lambda: HimalayaRidgeCV(alphas=alphas, cv=5, fit_intercept=True, solver_params={"warn": False}).fit(X, Ys),
            1,
        )
        out["himalaya_s_on_slice"] = hm
        out["speedup_vs_himalaya_per_voxel"] = (hm / v_peer) / (ours / v)
        kf = best_of(lambda: RidgeEncoder(alphas=alphas, cv=5, backend=backend).fit(X, Ys), 1)
        out["ours_5fold_s_on_slice"] = kf
        out["5fold_speedup_vs_himalaya"] = hm / kf
    except ImportError:
        out["himalaya"] = "not installed"
    return out


@benchmark
def rsa() -> dict[str, Any]:
    """15 subjects × 100 model RDMs on 92 stimuli: Spearman comparisons plus the LOSO noise ceiling, ours vs
    rsatoolbox (identical numbers required; falls back to a scipy.stats.spearmanr loop without rsatoolbox)."""
    from llmvem.brain import compare_rdms, compute_rdm, noise_ceiling, upper_tri

    rng = np.random.default_rng(0)
    models = np.stack([upper_tri(compute_rdm(rng.standard_normal((92, 50)))) for _ in range(100)])
    subjects = np.stack([upper_tri(compute_rdm(rng.standard_normal((92, 50)))) for _ in range(15)])
    ours_out: list[Any] = []

    def ours_fn() -> None:
        ours_out.append((np.asarray(compare_rdms(models, subjects, method="spearman")), noise_ceiling(subjects)))

    ours = best_of(ours_fn, 20)  # ~20 ms per call: many repeats to get past scheduler noise
    try:
        from rsatoolbox.inference import boot_noise_ceiling
        from rsatoolbox.rdm import RDMs, compare

        def peer_fn() -> tuple[np.ndarray, Any]:
            rs = RDMs(subjects)
            return compare(RDMs(models), rs, method="spearman"), boot_noise_ceiling(rs, method="spearman")

        peer_name = "rsatoolbox"
    except ImportError:
        from scipy.stats import spearmanr

        def peer_fn() -> tuple[np.ndarray, Any]:
            return np.array([[spearmanr(m, s)[0] for s in subjects] for m in models]), noise_ceiling(subjects)

        peer_name = "scipy_loop"
    peer_out = peer_fn()
    peer = best_of(peer_fn, 5)
    max_diff = float(np.max(np.abs(ours_out[-1][0] - peer_out[0])))
    nc_diff = float(np.max(np.abs(np.asarray(ours_out[-1][1]) - np.asarray(peer_out[1], dtype=float))))
    return {
        "peer": peer_name,
        "ours_s": ours,
        "peer_s": peer,
        "speedup": peer / ours,
        "max_abs_diff_scores": max_diff,
        "max_abs_diff_noise_ceiling": nc_diff,
    }


@benchmark
def searchlight() -> dict[str, Any]:
    """Searchlight RDMs (92 stimuli, radius 3, 50 % in mask, a 20×20×20 volume with a spherical mask): centres per
    second, ours vs rsatoolbox's get_searchlight_RDMs on the same spheres (identical RDMs required)."""
    from llmvem.brain import searchlight_rdms, searchlight_spheres

    rng = np.random.default_rng(0)
    g = np.indices((20, 20, 20)) - 9.5
    mask = np.sqrt((g**2).sum(0)) < 9
    data = rng.standard_normal((92, 20, 20, 20))
    sl = searchlight_spheres(mask, radius=3, min_in_mask=0.5)
    out_ours: list[np.ndarray] = []
    ours = best_of(lambda: out_ours.append(searchlight_rdms(data, sl, n_jobs=2)), 2)
    res: dict[str, Any] = {
        "centres": int(sl.centres.size),
        "ours_s": ours,
        "ours_centres_per_s": sl.centres.size / ours,
    }
    try:
        from rsatoolbox.util.searchlight import get_searchlight_RDMs
    except ImportError:
        return res
    nbs = [sl.neighbours[c, : sl.counts[c]] for c in range(sl.centres.size)]
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        ref = get_searchlight_RDMs(data.reshape(92, -1), sl.centres, nbs, np.arange(92), verbose=False)
        peer = time.perf_counter() - t0
    res.update(
        {
            "rsatoolbox_s": peer,
            "rsatoolbox_centres_per_s": sl.centres.size / peer,
            "speedup": peer / ours,
            "max_abs_diff": float(np.max(np.abs(out_ours[-1] - ref.dissimilarities))),
        }
    )
    return res


def _data_dir() -> Path:
    env = os.environ.get("LLMVEM_DATA")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not d.is_dir():
        raise SystemExit(f"real data directory not found: set LLMVEM_DATA (tried {d})")
    return d


def _extraction() -> Any:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import extraction

    return extraction


@benchmark
def features() -> dict[str, Any]:
    """extract_features (pipelined: decode threads + forward, cold store) vs (a) the bare EfficientNet-Lite0 forward on
    preloaded tensors and (b) parallel decode + preprocess alone, on NSD shared-1000 images (LLMVEM_BENCH_FEATURES_N,
    default 256); decode threads vs DataLoader processes; all 16 blocks in one pass vs one pass per block;
    THINGSvision on the same model and images if it imports (LLMVEM_BENCH_THINGSVISION: its --target folders).
    LLMVEM_BENCH_FEATURES_MODEL / _MODEL_KWARGS / _DEVICE / _IMAGES set the model, its keywords, the device and the
    image folder."""
    ext = _extraction()
    return dict(ext.run(ext.images_folder(_data_dir)))


@benchmark
def features_cuda() -> dict[str, Any]:
    """The same on one CUDA GPU with timm ResNet-50 (random weights: throughput does not depend on their values),
    float32 and bfloat16 autocast, at 4 / 8 / 16 decode threads (LLMVEM_BENCH_FEATURES_CUDA_WORKERS), 2,048 images
    by default (LLMVEM_BENCH_FEATURES_IMAGES: a folder; the NSD shared-1000 images otherwise); every timing ends
    with torch.cuda.synchronize. Prints `skipped` without a GPU."""
    ext = _extraction()
    return dict(ext.run_cuda(ext.images_folder(_data_dir)))


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


def _step_times(trainable_blocks: int | None, batch: int, device: str, repeats: int = 10) -> dict[str, Any]:
    """Best-of-``repeats`` optimizer-step seconds of EfficientNet-Lite0 (HED-style multilabel task) with and without
    the projection head + InfoNCE alignment loss, timed alternately after warm-up. With a frozen bottom the inputs
    are its activations (as the trainer caches them); on CUDA the step runs under bfloat16 autocast, as the trainer's
    ``amp`` does, and is timed to ``torch.cuda.synchronize``."""
    import contextlib

    import torch

    from llmvem.align.finetune import build_model, make_optimizer
    from llmvem.align.heads import task_loss
    from llmvem.align.losses import infonce
    from llmvem.config import FinetuneConfig
    from llmvem.vision.trainable import split_backbone

    cuda = device.startswith("cuda")
    split = split_backbone("efficientnet_lite0", trainable_blocks=trainable_blocks, device=device)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.normal(size=(batch, 3, 224, 224)).astype(np.float32)).to(device)
    with torch.no_grad():
        x = split.bottom(images)
    text = torch.from_numpy(rng.normal(size=(batch, 384)).astype(np.float32)).to(device)
    labels = torch.from_numpy((rng.random((batch, 30)) < 0.3).astype(np.float32)).to(device)
    cfg = FinetuneConfig(trainable_blocks=trainable_blocks)
    models = {"task_only": build_model(split, cfg, None, 30, "multilabel").to(device),
              "task_plus_align": build_model(split, cfg, 384, 30, "multilabel").to(device)}  # fmt: skip
    opts = {k: make_optimizer([p for p in m.parameters() if p.requires_grad], cfg, device) for k, m in models.items()}

    def step(name: str) -> None:
        m, opt = models[name], opts[name]
        m.train()
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
        with amp:
            out = m(x)
            loss = task_loss("multilabel", out["task"].float(), labels)
            if "projection" in out:
                loss = loss + infonce(out["projection"].float(), text, temperature=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()

    for _ in range(3 if cuda else 1):  # warm-up (cuDNN autotuning on CUDA)
        for name in models:
            step(name)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):
        for name in models:
            t0 = time.perf_counter()
            step(name)
            times[name].append(time.perf_counter() - t0)
    t_task, t_align = min(times["task_only"]), min(times["task_plus_align"])
    return {
        "batch": batch,
        "step_s_task_only": t_task,
        "step_s_with_alignment": t_align,
        "alignment_overhead": t_align / t_task - 1,
        "train_images_per_s": batch / t_align,
    }


@benchmark
def finetune_step() -> dict[str, Any]:
    """One optimizer step of the top 3 EfficientNet-Lite0 blocks (batch 64, cached activations, HED-style multilabel
    task) with and without the projection head + InfoNCE alignment loss (target overhead ≤ 10 %); the two variants
    are timed alternately, best of 10 each, after warm-up; training images/s on this CPU."""
    return _step_times(3, 64, "cpu")


@benchmark
def finetune_step_cuda() -> dict[str, Any]:
    """The same comparison on a CUDA GPU (bfloat16 autocast, the trainer's fused optimizer) for the whole network and
    for the top 3 blocks, at batch 64 and 256 (target overhead ≤ 10 %); training images/s. Skipped (with a note)
    where no GPU is visible."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    out: dict[str, Any] = {"device": torch.cuda.get_device_name()}
    for batch in (64, 256):
        out[f"whole_network_batch{batch}"] = _step_times(None, batch, "cuda", repeats=20)
    for batch in (64, 256):  # frozen bottom: a short step, where kernel launches rather than arithmetic set the time
        out[f"top3_blocks_batch{batch}"] = _step_times(3, batch, "cuda", repeats=20)
    return out


@benchmark
def whole_inputs() -> dict[str, Any]:
    """Whole-network training inputs: 2,000 preprocessed 224 × 224 images stored as 8-bit pixels (PixelArray,
    memory-mapped .npy) vs float32 in memory: bytes per image, and time to assemble a shuffled batch of 64 ready
    for the model (uint8 rows → float → per-channel affine) vs indexing the float32 tensor (the floor)."""
    import tempfile

    import torch

    from llmvem.vision.pixels import PixelArray

    rng = np.random.default_rng(0)
    n = 2000
    pixels = rng.integers(0, 256, size=(n, 3, 224, 224), dtype=np.uint8)
    scale, offset = np.full(3, 1 / 128, np.float32), np.full(3, -127 / 128, np.float32)
    with tempfile.TemporaryDirectory() as d:
        np.save(f"{d}/pixels.npy", pixels)
        px = PixelArray(np.load(f"{d}/pixels.npy", mmap_mode="r"), scale, offset)
        floats = torch.from_numpy(px[:])
        batches = [torch.from_numpy(rng.permutation(n)[:64]) for _ in range(20)]
        px.rows(batches[0], "cpu")  # page the file in (a warm cache, as after the first epoch)
        t_px = best_of(lambda: [px.rows(b, "cpu") for b in batches], 5) / len(batches)
        t_float = best_of(lambda: [floats[b] for b in batches], 5) / len(batches)
    return {
        "n_images": n,
        "bytes_per_image_uint8": int(pixels[0].nbytes),
        "bytes_per_image_float32": int(floats[0].numel() * 4),
        "size_ratio": floats[0].numel() * 4 / pixels[0].nbytes,
        "batch64_s_pixels": t_px,
        "batch64_s_float_index": t_float,
        "ratio_vs_float_index": t_px / t_float,
    }


@benchmark
def banded() -> dict[str, Any]:
    """Banded ridge, two spaces (768 + 384 features), float32, held-out R² and fit time in one run on the same arrays:
    ours (BandedRidgeEncoder: GCV over 15 band ratios × 20 α) vs himalaya BandedRidgeCV at its defaults (random
    search, 100 iterations, 5-fold) and vs our single-space GCV fit (RidgeEncoder on the concatenation). Sizes scaled
    to the machine: LLMVEM_BENCH_BANDED="n_train,v" (default 1500,2000; 500 test images), LLMVEM_BENCH_BACKEND."""
    from llmvem.brain import BandedRidgeEncoder, RidgeEncoder
    from llmvem.brain.metrics import r2_score_columns

    n, v = (int(x) for x in os.environ.get("LLMVEM_BENCH_BANDED", "1500,2000").split(","))
    backend = os.environ.get("LLMVEM_BENCH_BACKEND", "numpy")
    n_test = 500
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n + n_test, 768), dtype=np.float32)
    b = rng.standard_normal((n + n_test, 384), dtype=np.float32) * 3  # another scale, as another model's features
    mix = rng.random(v, dtype=np.float32)  # voxel j: share mix_j of its signal from a, the rest from b
    sig_a = a @ (rng.standard_normal((768, v), dtype=np.float32) / np.float32(np.sqrt(768)))
    sig_b = b @ (rng.standard_normal((384, v), dtype=np.float32) / np.float32(3 * np.sqrt(384)))
    snr = rng.uniform(0.1, 1.0, v).astype(np.float32)
    y = snr * (np.sqrt(mix) * sig_a + np.sqrt(1 - mix) * sig_b) + rng.standard_normal((n + n_test, v), dtype=np.float32)
    tr, te = slice(0, n), slice(n, None)
    xs_tr, xs_te = [a[tr], b[tr]], [a[te], b[te]]
    x_tr, x_te = np.hstack(xs_tr), np.hstack(xs_te)
    alphas = tuple(np.logspace(-2, 6, 20))
    BandedRidgeEncoder(alphas=alphas, backend=backend).fit([a[:300], b[:300]], y[:300, :50])  # warm up
    t_ours = best_of(lambda: BandedRidgeEncoder(alphas=alphas, backend=backend).fit(xs_tr, y[tr]), 2)
    ours = BandedRidgeEncoder(alphas=alphas, backend=backend).fit(xs_tr, y[tr])
    t_single = best_of(lambda: RidgeEncoder(alphas=alphas, backend=backend).fit(x_tr, y[tr]), 2)
    single = RidgeEncoder(alphas=alphas, backend=backend).fit(x_tr, y[tr])
    out: dict[str, Any] = {
        "n_train": n, "n_test": n_test, "p": [768, 384], "v": v, "backend": backend, "form": ours.form_,
        "ours_banded_s": t_ours, "single_space_gcv_s": t_single, "banded_over_single": t_ours / t_single,
        "r2_ours_banded": float(np.nanmean(r2_score_columns(y[te], ours.predict(xs_te)))),
        "r2_single_space": float(np.nanmean(r2_score_columns(y[te], single.predict(x_te)))),
    }  # fmt: skip
    try:
        from himalaya.ridge import BandedRidgeCV
    except ImportError:
        out["himalaya"] = "not installed"
        return out
    groups = np.repeat([0, 1], [768, 384])
    t0 = time.perf_counter()
    hm = BandedRidgeCV(groups=groups, solver_params={"progress_bar": False}).fit(x_tr, y[tr])
    out["himalaya_defaults_s"] = time.perf_counter() - t0
    out["r2_himalaya_defaults"] = float(np.nanmean(r2_score_columns(y[te], hm.predict(x_te))))
    out["speedup_vs_himalaya"] = out["himalaya_defaults_s"] / t_ours
    out["r2_ours_minus_himalaya"] = out["r2_ours_banded"] - out["r2_himalaya_defaults"]
    return out


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
    RESULTS.mkdir(parents=True, exist_ok=True)
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
