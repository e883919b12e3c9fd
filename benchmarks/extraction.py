"""The ``features`` benchmark of ``run.py`` (issue 17): pipelined extraction against its two floors, decode threads
against ``DataLoader`` worker processes, many layers in one pass against one pass per layer, and THINGSvision; and
its GPU form ``features_cuda`` (:func:`run_cuda`).

``features`` runs in one process, by default with EfficientNet-Lite0 (ImageNet weights) on the CPU at batch 32 on the
first images of the NSD shared-1000 set (425 × 425 JPEGs). Settings (environment): ``LLMVEM_BENCH_FEATURES_MODEL``
(a backbone name, default ``efficientnet_lite0``), ``LLMVEM_BENCH_FEATURES_MODEL_KWARGS`` (JSON keywords of
``load_backbone``, e.g. ``{"pretrained": false, "seed": 0}``), ``LLMVEM_BENCH_FEATURES_DEVICE`` (default ``cpu``),
``LLMVEM_BENCH_FEATURES_IMAGES`` (an image folder, default ``<data>/nsd_shared1000/images``). Sizes:
``LLMVEM_BENCH_FEATURES_N`` images for the floors and extraction (default 256: 8 batches; at 64 = 2 batches the
pass never reaches a steady state), ``LLMVEM_BENCH_FEATURES_DECODE_N`` for threads vs processes (default 256:
decoding is cheap, and a DataLoader's start-up must not be all that is measured), ``LLMVEM_BENCH_FEATURES_LAYERS_N``
for the layer comparison (default 16: it runs 18 passes). Rates are images/s.

The floors and our extraction are measured in interleaved rounds (bare, decode, ours; three times; best of each,
and the ratio within each round), so that load from other jobs on a shared machine falls on all three alike; the
load average before and after is recorded. On a loaded machine the ratio can exceed 1 (the bare forward slows more
under other jobs' load than the pipelined pass); read the ratios of a quiet run (low load average). The per-round
ratios are listed sorted, not in round order.

On CUDA every timed call ends with ``torch.cuda.synchronize()`` before the clock stops (and starts after one), the
bare forward (a) runs on tensors preloaded **on the GPU** (no host → device copy), and a second floor
(``bare_forward_h2d_img_s``) includes the copy from pinned host memory (``non_blocking``), as extraction does it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BATCH = 32
ROUNDS = 3
#: the GPU benchmark's model: timm ResNet-50, random weights (throughput does not depend on the weight values)
CUDA_MODEL = "timm:resnet50"


def _sync(device: str) -> None:
    """Wait for the GPU's queued work (no-op off CUDA)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: str = "cpu") -> float:
    """Wall seconds of ``fn()``; on CUDA between two ``torch.cuda.synchronize`` (queued kernels are counted)."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _size(var: str, default: int) -> int:
    return int(os.environ.get(var, str(default)))


def images_folder(data_dir: Callable[[], Path]) -> Path:
    """``LLMVEM_BENCH_FEATURES_IMAGES``, else ``<data_dir()>/nsd_shared1000/images`` (the data directory is looked up
    only then)."""
    env = os.environ.get("LLMVEM_BENCH_FEATURES_IMAGES")
    return Path(env) if env else data_dir() / "nsd_shared1000" / "images"


def _stimuli(folder: Path) -> Any:
    from llmvem.data import StimulusSet

    if not folder.is_dir():
        raise SystemExit(f"image folder not found: {folder} (LLMVEM_BENCH_FEATURES_IMAGES)")
    return StimulusSet.from_folder(folder)


def run(folder: Path) -> dict[str, Any]:
    """All measurements of ``features`` on the images of ``folder``: a dict of rates (images/s), times (s), ratios
    and settings."""
    import torch

    from llmvem.vision import load_backbone
    from llmvem.vision.extract_pipeline import default_workers

    model = os.environ.get("LLMVEM_BENCH_FEATURES_MODEL", "efficientnet_lite0")
    device = os.environ.get("LLMVEM_BENCH_FEATURES_DEVICE", "cpu")
    kwargs = json.loads(os.environ.get("LLMVEM_BENCH_FEATURES_MODEL_KWARGS", "{}"))
    n = _size("LLMVEM_BENCH_FEATURES_N", 256)
    full = _stimuli(folder)
    bb = load_backbone(model, device=device, **kwargs)
    workers = default_workers()
    out: dict[str, Any] = {
        "model": model,
        "model_kwargs": kwargs,
        "device": device,
        "images": str(folder),
        "n_images": min(n, len(full)),
        "batch": BATCH,
        "default_workers": workers,
        "torch_threads": torch.get_num_threads(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    decode_n = _size("LLMVEM_BENCH_FEATURES_DECODE_N", 256)
    out.update(_decode_rates(full.subset(full.ids[:decode_n]), bb, workers))
    stim = full.subset(full.ids[:n])
    out.update(_floors_and_ours(stim, bb, workers))
    layers_n = min(n, _size("LLMVEM_BENCH_FEATURES_LAYERS_N", 16))
    out.update(_layer_rates(stim.subset(stim.ids[:layers_n]), bb))
    out["thingsvision"] = _thingsvision(folder, stim, bb, out)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _decode_rates(stim: Any, bb: Any, workers: int, more: tuple[int, ...] = (4,)) -> dict[str, Any]:
    """Decode + preprocess alone on ``stim``: our threads (``workers``, and each count of ``more``), one thread, and
    torch ``DataLoader`` worker processes (as many as the largest thread count) on the same per-image function. On
    CUDA the batches are stacked into pinned memory, as extraction does."""
    import torch

    from llmvem.vision.extract_pipeline import _prepare, image_batches

    n, cuda = len(stim), _is_cuda(bb)
    n_procs = max((workers, *more)) if cuda else workers

    def threads(w: int) -> Callable[[], None]:
        def go() -> None:
            for _ in image_batches(stim, bb.preprocess, range(n), BATCH, w, pin=cuda):
                pass

        return go

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, k: int) -> Any:
            return _prepare(stim, bb.preprocess, k)

    def loader() -> None:
        for _ in torch.utils.data.DataLoader(Images(), batch_size=BATCH, num_workers=n_procs, pin_memory=cuda):
            pass

    runs = {"decode_threads_img_s": threads(workers)}
    runs.update({f"decode_threads_{w}_img_s": threads(w) for w in more})
    runs.update({"decode_one_thread_img_s": threads(0), "decode_dataloader_processes_img_s": loader})
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(ROUNDS):
        for name, fn in runs.items():
            best[name] = min(best[name], _timed(fn))
    res: dict[str, Any] = {"decode_n_images": n, "dataloader_processes": n_procs, **{k: n / t for k, t in best.items()}}
    same = "decode_threads_img_s" if n_procs == workers else f"decode_threads_{n_procs}_img_s"
    res["threads_over_dataloader"] = res[same] / res["decode_dataloader_processes_img_s"]
    return res


def _is_cuda(bb: Any) -> bool:
    return str(bb.device).startswith("cuda")


def _preload(stim: Any, bb: Any, workers: int) -> Any:
    """The preprocessed images (n, 3, H, W) float32 in host memory (pinned on CUDA), decoded by ``workers``
    threads."""
    import torch

    from llmvem.vision.extract_pipeline import image_batches

    host = torch.cat([b for _, b in image_batches(stim, bb.preprocess, range(len(stim)), BATCH, workers)])
    return host.pin_memory() if _is_cuda(bb) else host


def _floors_and_ours(
    stim: Any, bb: Any, workers: int, precision: str = "float32", host: Any = None, extras: bool = True
) -> dict[str, Any]:
    """(a) the bare forward on preloaded tensors (on the GPU for a CUDA backbone; there also (a') with the host →
    device copy), (b) decode + preprocess alone (``workers`` threads), and extract_features (cold store) pipelined,
    in interleaved rounds, all at ``precision`` (autocast); with ``extras`` then sequential (workers=0) and, off
    CUDA, bfloat16 on a few images. ``host``: the images from :func:`_preload` (made here if None)."""
    import torch

    from llmvem.store import ArtifactStore
    from llmvem.vision import extract_features
    from llmvem.vision.extract_pipeline import autocast, image_batches

    n, device, cuda = len(stim), str(bb.device), _is_cuda(bb)
    host = _preload(stim, bb, workers) if host is None else host
    batch = host.to(device)  # on CUDA: preloaded on the GPU; on the CPU: the same tensor

    def bare(x: Any = batch) -> Callable[[], None]:
        def go() -> None:
            with torch.inference_mode(), autocast(device, precision):
                for i in range(0, n, BATCH):
                    bb.features(x[i : i + BATCH].to(device, non_blocking=True))

        return go

    def decode() -> None:
        for _ in image_batches(stim, bb.preprocess, range(n), BATCH, workers, pin=cuda):
            pass

    with tempfile.TemporaryDirectory() as d:
        counter = iter(range(1000))

        def ours(images: Any = stim, **kw: Any) -> Callable[[], Any]:
            kw = {"workers": workers, "precision": precision, **kw}
            return lambda: extract_features(images, bb, batch_size=BATCH, progress=False,
                                            store=ArtifactStore(Path(d) / str(next(counter))), **kw)  # fmt: skip

        # warm-up at the batch shape (oneDNN builds kernels per shape; CUDA: lazy init, cuDNN's algorithm choice)
        (bare() if cuda else bare(batch[:BATCH]))()
        runs = {"bare_forward_img_s": bare(), "decode_img_s": decode, "extract_img_s": ours()}
        if cuda:
            runs["bare_forward_h2d_img_s"] = bare(host)
        wall: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(ROUNDS):
            for name, fn in runs.items():
                wall[name].append(_timed(fn, device))
        res: dict[str, Any] = {"workers": workers, "precision": precision, **{k: n / min(t) for k, t in wall.items()}}
        res["ratio_vs_min_floor"] = res["extract_img_s"] / min(res["bare_forward_img_s"], res["decode_img_s"])
        paired = sorted(max(b, c) / e for b, c, e in zip(*(wall[k] for k in list(runs)[:3]), strict=True))
        res["ratio_vs_min_floor_per_round"] = paired  # same round: extraction vs the slower floor of that round
        res["rounds"] = ROUNDS
        if not extras:
            return res
        res["extract_sequential_img_s"] = n / _timed(ours(workers=0), device)
        res["pipelined_over_sequential"] = res["extract_img_s"] / res["extract_sequential_img_s"]
        if not cuda:  # bfloat16 autocast is slow on CPUs without native bf16: a few images only
            few = stim.subset(stim.ids[:8])
            res["bf16_n_images"] = len(few)
            res["extract_bfloat16_img_s"] = len(few) / _timed(ours(few, precision="bfloat16"))
            res["extract_float32_same_images_img_s"] = len(few) / _timed(ours(few))
    return res


def _layer_rates(stim: Any, bb: Any) -> dict[str, Any]:
    """All blocks (:func:`~llmvem.vision.taps.block_layers`: 16 for Lite0 and ResNet-50) in one pass vs one pass per
    block (pooled, cold stores), and srp:4096 of all of them."""
    from llmvem.store import ArtifactStore
    from llmvem.vision import extract_features
    from llmvem.vision.taps import block_layers

    names = block_layers(bb)
    with tempfile.TemporaryDirectory() as d:

        def ours(tag: str, **kw: Any) -> float:
            store = ArtifactStore(Path(d) / tag)
            return _timed(lambda: extract_features(stim, bb, batch_size=BATCH, progress=False, store=store, **kw),
                          str(bb.device))  # fmt: skip

        one = ours("one", layers=names)
        singles = sum(ours(f"single{k}", layer=name) for k, name in enumerate(names))
        srp = ours("srp", layers=names, reduce="srp:4096")
        hit = ours("one", layer=names[0])  # a single-layer request of a layer computed in the many-layer pass
    return {
        "layers_n_images": len(stim),
        "layers": len(names),
        "all_layers_one_pass_s": one,
        "single_layer_passes_sum_s": singles,
        "sum_over_one_pass": singles / one,
        "all_layers_srp4096_one_pass_s": srp,
        "single_layer_after_many_hit_s": hit,
    }


def run_cuda(folder: Path) -> dict[str, Any]:
    """``features_cuda``: timm ResNet-50 on one CUDA GPU, random weights (seed 0; throughput does not depend on the
    weight values, and nothing needs downloading). Float32 and bfloat16 autocast, each at several decode-thread counts
    (``LLMVEM_BENCH_FEATURES_CUDA_WORKERS``, default ``4,8,16``; 4 is the default of ``extract_features``): (a) the
    bare forward on tensors preloaded on the GPU, (a') the same with the host → device copy, (b) decode alone, ours,
    in interleaved rounds; decode threads vs DataLoader processes; all blocks in one pass vs one pass per block;
    numbers against the CPU. Sizes: ``LLMVEM_BENCH_FEATURES_N`` (default 2048, at most the folder's images),
    ``_DECODE_N`` (default 1024), ``_LAYERS_N`` (default 256); ``_MODEL`` and ``_MODEL_KWARGS`` another model, and
    ``LLMVEM_BENCH_FEATURES_DEVICE=cpu`` a dry run of this code on the CPU. ``{"skipped": why}`` without a GPU."""
    import torch

    device = os.environ.get("LLMVEM_BENCH_FEATURES_DEVICE", "cuda")  # "cpu": a dry run of this code, small sizes
    if device.startswith("cuda") and not torch.cuda.is_available():
        return {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}
    from llmvem.vision import load_backbone

    counts = tuple(int(w) for w in os.environ.get("LLMVEM_BENCH_FEATURES_CUDA_WORKERS", "4,8,16").split(","))
    full = _stimuli(folder)
    stim = full.subset(full.ids[: _size("LLMVEM_BENCH_FEATURES_N", 2048)])
    model = os.environ.get("LLMVEM_BENCH_FEATURES_MODEL", CUDA_MODEL)
    kwargs = {"pretrained": False, "seed": 0, **json.loads(os.environ.get("LLMVEM_BENCH_FEATURES_MODEL_KWARGS", "{}"))}
    bb = load_backbone(model, device=device, **kwargs)
    out: dict[str, Any] = {
        "model": model,
        "model_kwargs": kwargs,
        "weights": "random (seed 0): throughput does not depend on the weight values",
        "device": device,
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
        "torch": torch.__version__,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "images": str(folder),
        "n_images": len(stim),
        "batch": BATCH,
        "worker_counts": list(counts),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    decode = full.subset(full.ids[: _size("LLMVEM_BENCH_FEATURES_DECODE_N", 1024)])
    out["decode"] = _decode_rates(decode, bb, counts[0], counts[1:])
    host = _preload(stim, bb, max(counts))
    for precision in ("float32", "bfloat16"):
        for w in counts:
            last = precision == "float32" and w == counts[0]  # sequential (workers=0) once
            out[f"{precision}_workers{w}"] = _floors_and_ours(stim, bb, w, precision, host, extras=last)
    del host
    out["layers"] = _layer_rates(stim.subset(stim.ids[: _size("LLMVEM_BENCH_FEATURES_LAYERS_N", 256)]), bb)
    out["numerics"] = _numerics(stim.subset(stim.ids[:32]), bb, model, kwargs)
    out["summary"] = _cuda_summary(out, counts)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _cuda_summary(out: dict[str, Any], counts: tuple[int, ...]) -> dict[str, Any]:
    """Per precision: the thread count with the fastest extraction, its rate, floors and ratio."""
    res: dict[str, Any] = {}
    for precision in ("float32", "bfloat16"):
        rows = [out[f"{precision}_workers{w}"] for w in counts]
        best = max(rows, key=lambda r: r["extract_img_s"])
        keys = ("workers", "extract_img_s", "bare_forward_img_s", "bare_forward_h2d_img_s", "decode_img_s",
                "ratio_vs_min_floor")  # fmt: skip
        res[precision] = {k: best.get(k) for k in keys}  # (no host → device floor off CUDA)
        res[precision]["ratio_at_default_workers"] = rows[0]["ratio_vs_min_floor"]
    return res


def _numerics(stim: Any, bb: Any, model: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Largest |CUDA − CPU| of the pooled features over the largest |CPU feature| (same model, same seed): float32
    as torch's defaults run it (cuDNN may use TF32), float32 with TF32 off, bfloat16 autocast."""
    import numpy as np
    import torch

    from llmvem.store import ArtifactStore
    from llmvem.vision import extract_features, load_backbone

    def feats(backbone: Any, **kw: Any) -> Any:
        with tempfile.TemporaryDirectory() as d:
            return extract_features(stim, backbone, progress=False, store=ArtifactStore(d), **kw).values

    ref = feats(load_backbone(model, device="cpu", **kwargs))
    scale = float(np.max(np.abs(ref)))
    res: dict[str, Any] = {"n_images": len(stim), "cpu_max_abs": scale}
    res["float32_default_rel"] = float(np.max(np.abs(feats(bb) - ref))) / scale
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        res["float32_no_tf32_rel"] = float(np.max(np.abs(feats(bb) - ref))) / scale
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    res["bfloat16_rel"] = float(np.max(np.abs(feats(bb, precision="bfloat16") - ref))) / scale
    return res


class _Absent:
    """Any attribute of a stubbed TensorFlow: itself again; called, an empty list (no GPUs, no layers)."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


def _stub_attribute(attr: str) -> Any:
    if attr.startswith("__"):
        raise AttributeError(attr)
    return _Absent()


def _tensorflow_stub() -> list[str]:
    """THINGSvision 2.7 imports TensorFlow at module level even for PyTorch models; when TensorFlow is absent,
    empty stand-in modules let its PyTorch path import (nothing of TensorFlow is called). Returns what was stubbed."""
    import importlib.machinery
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        return []
    names = ["tensorflow", "tensorflow.keras", "tensorflow.keras.applications", "tensorflow.keras.layers"]
    for name in names:
        mod = types.ModuleType(name)
        mod.__dict__["__getattr__"] = _stub_attribute
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = mod
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, mod)
    return names


def _import_thingsvision() -> tuple[Any, list[str]] | str:
    """THINGSvision's module and what was stubbed, or why it does not import. ``LLMVEM_BENCH_THINGSVISION``: folders
    (``os.pathsep``-separated) put first on ``sys.path`` (``pip install --no-deps --target`` folders)."""
    extra = os.environ.get("LLMVEM_BENCH_THINGSVISION")
    if extra:
        sys.path[:0] = [p for p in extra.split(os.pathsep) if p]
    stubbed = _tensorflow_stub()
    import numpy as np

    if not hasattr(np, "AxisError"):  # THINGSvision 2.7 pins numpy < 2, which still had np.AxisError
        np.AxisError = np.exceptions.AxisError  # type: ignore[attr-defined]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import thingsvision
            import thingsvision.core.extraction
    except ImportError as exc:
        return f"thingsvision does not import: {exc}"
    return thingsvision, stubbed


def _thingsvision(folder: Path, stim: Any, bb: Any, ours: dict[str, Any]) -> dict[str, Any]:
    """THINGSvision's PyTorch extractor with its own ImageDataset and DataLoader on the same files, model and
    preprocessing, activations average-pooled like ours: the last block alone, then all 16 blocks in one pass
    (``module_names``), against ours on the same layers and images (numbers compared too)."""
    got = _import_thingsvision()
    if isinstance(got, str):
        return {"skipped": got}
    tv, stubbed = got
    import numpy as np
    from thingsvision import get_extractor_from_model
    from thingsvision.utils.data import DataLoader, ImageDataset

    from llmvem.store import ArtifactStore
    from llmvem.vision import extract_features
    from llmvem.vision.taps import block_layers

    with _quiet():
        ext = get_extractor_from_model(model=bb.module, device=str(bb.device), backend="pt", preprocess=bb.preprocess,
                                       flatten_fn=lambda _self, act: act.mean(dim=(2, 3)))  # fmt: skip
    names = block_layers(bb)

    def theirs(images: Any, **kw: Any) -> tuple[float, Any]:
        with tempfile.TemporaryDirectory() as d, _quiet():
            data = ImageDataset(root=str(folder), out_path=d, backend="pt", transforms=bb.preprocess,
                                file_names=[p.name for p in images.paths])  # fmt: skip
            t0 = time.perf_counter()
            feats = ext.extract_features(batches=DataLoader(data, batch_size=BATCH, backend="pt"), flatten_acts=True,
                                         output_type="ndarray", **kw)  # fmt: skip
            return time.perf_counter() - t0, feats

    def mine(images: Any, **kw: Any) -> tuple[float, Any]:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            feats = extract_features(images, bb, batch_size=BATCH, progress=False, store=ArtifactStore(d), **kw)
            return time.perf_counter() - t0, feats

    last = names[-1]
    t_theirs, f_theirs = theirs(stim, module_name=last)
    t_mine, f_mine = mine(stim, layer=last)
    small = stim.subset(stim.ids[: ours["layers_n_images"]])
    t_theirs_all, f_theirs_all = theirs(small, module_names=names)
    t_mine_all, f_mine_all = mine(small, layers=names)
    diff = max(float(np.max(np.abs(f_theirs_all[k] - f_mine_all[k].values))) for k in names)
    return {
        "version": getattr(tv, "__version__", "2.7.3"),
        "tensorflow_stubbed": bool(stubbed),
        "layer": last,
        "theirs_one_layer_img_s": len(stim) / t_theirs,
        "ours_one_layer_img_s": len(stim) / t_mine,
        "ours_over_theirs_one_layer": t_theirs / t_mine,
        "max_abs_diff_one_layer": float(np.max(np.abs(f_theirs - f_mine.values))),
        "theirs_all_blocks_one_pass_s": t_theirs_all,
        "ours_all_blocks_one_pass_s": t_mine_all,
        "ours_over_theirs_all_blocks": t_theirs_all / t_mine_all,
        "max_abs_diff_all_blocks": diff,
    }


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """THINGSvision prints and draws progress bars; keep them out of the benchmark's output."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
