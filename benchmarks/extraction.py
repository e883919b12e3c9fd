"""The ``features`` benchmark of ``run.py`` (issue 17): pipelined extraction against its two floors, decode threads
against ``DataLoader`` worker processes, many layers in one pass against one pass per layer, and THINGSvision.

Everything runs in one process with EfficientNet-Lite0 (ImageNet weights) at batch 32 on the first images of the
NSD shared-1000 set (425 × 425 JPEGs). Sizes (environment): ``LLMVEM_BENCH_FEATURES_N`` images for the floors and
extraction (default 256: 8 batches; at 64 = 2 batches the pass never reaches a steady state), ``LLMVEM_BENCH_FEATURES_DECODE_N`` for threads vs processes (default 256: decoding is cheap,
and a DataLoader's start-up must not be all that is measured), ``LLMVEM_BENCH_FEATURES_LAYERS_N`` for the layer
comparison (default 16: it runs 18 passes). Rates are images/s.

The floors and our extraction are measured in interleaved rounds (bare, decode, ours; three times; best of each,
and the ratio within each round), so that load from other jobs on a shared machine falls on all three alike; the
load average before and after is recorded. On a loaded machine the ratio can exceed 1 (the bare forward slows more
under other jobs' load than the pipelined pass); read the ratios of a quiet run (low load average). The per-round
ratios are listed sorted, not in round order.
"""

from __future__ import annotations

import contextlib
import io
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


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _size(var: str, default: int) -> int:
    return int(os.environ.get(var, str(default)))


def run(data_dir: Path) -> dict[str, Any]:
    """All measurements: a dict of rates (images/s), times (s), ratios and settings."""
    import torch

    from llmvem.data import StimulusSet
    from llmvem.vision import load_backbone
    from llmvem.vision.extract_pipeline import default_workers

    n = _size("LLMVEM_BENCH_FEATURES_N", 256)
    full = StimulusSet.from_folder(data_dir / "nsd_shared1000" / "images")
    bb = load_backbone("efficientnet_lite0")
    workers = default_workers()
    out: dict[str, Any] = {
        "model": "efficientnet_lite0",
        "n_images": n,
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
    out["thingsvision"] = _thingsvision(data_dir / "nsd_shared1000" / "images", stim, bb, out)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _decode_rates(stim: Any, bb: Any, workers: int) -> dict[str, Any]:
    """Decode + preprocess alone on ``stim``: our threads (default count, and 4), one thread, and torch
    ``DataLoader`` worker processes (as many as the default threads) on the same per-image function."""
    import torch

    from llmvem.vision.extract_pipeline import _prepare, image_batches

    n = len(stim)

    def threads(w: int) -> Callable[[], None]:
        def go() -> None:
            for _ in image_batches(stim, bb.preprocess, range(n), BATCH, w):
                pass

        return go

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, k: int) -> Any:
            return _prepare(stim, bb.preprocess, k)

    def loader() -> None:
        for _ in torch.utils.data.DataLoader(Images(), batch_size=BATCH, num_workers=workers):
            pass

    runs = {
        "decode_threads_img_s": threads(workers),
        "decode_threads_4_img_s": threads(4),
        "decode_one_thread_img_s": threads(0),
        "decode_dataloader_processes_img_s": loader,
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(ROUNDS):
        for name, fn in runs.items():
            best[name] = min(best[name], _timed(fn))
    res: dict[str, Any] = {"decode_n_images": n, **{k: n / t for k, t in best.items()}}
    res["threads_over_dataloader"] = res["decode_threads_img_s"] / res["decode_dataloader_processes_img_s"]
    return res


def _floors_and_ours(stim: Any, bb: Any, workers: int) -> dict[str, Any]:
    """(a) the bare forward on preloaded tensors, (b) decode + preprocess alone (default threads), and
    extract_features (cold store) pipelined, in interleaved rounds; then sequential (workers=0) and bfloat16."""
    import torch

    from llmvem.store import ArtifactStore
    from llmvem.vision import extract_features
    from llmvem.vision.extract_pipeline import image_batches

    n = len(stim)
    batch = torch.stack([bb.preprocess(stim.load(k)) for k in range(n)])

    def bare() -> None:
        with torch.inference_mode():
            for i in range(0, n, BATCH):
                bb.features(batch[i : i + BATCH])

    def decode() -> None:
        for _ in image_batches(stim, bb.preprocess, range(n), BATCH, workers):
            pass

    with tempfile.TemporaryDirectory() as d:
        counter = iter(range(1000))

        def ours(images: Any = stim, **kw: Any) -> Callable[[], Any]:
            return lambda: extract_features(images, bb, batch_size=BATCH, progress=False,
                                            store=ArtifactStore(Path(d) / str(next(counter))), **kw)  # fmt: skip

        with torch.inference_mode():
            bb.features(batch[:BATCH])  # warm-up at the batch shape (oneDNN builds kernels per shape)
        runs = {"bare_forward_img_s": bare, "decode_img_s": decode, "extract_img_s": ours()}
        wall: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(ROUNDS):
            for name, fn in runs.items():
                wall[name].append(_timed(fn))
        res: dict[str, Any] = {k: n / min(t) for k, t in wall.items()}
        res["ratio_vs_min_floor"] = res["extract_img_s"] / min(res["bare_forward_img_s"], res["decode_img_s"])
        paired = sorted(max(b, c) / e for b, c, e in zip(*wall.values(), strict=True))
        res["ratio_vs_min_floor_per_round"] = paired  # same round: extraction vs the slower floor of that round
        res["rounds"] = ROUNDS
        res["extract_sequential_img_s"] = n / _timed(ours(workers=0))
        res["pipelined_over_sequential"] = res["extract_img_s"] / res["extract_sequential_img_s"]
        few = stim.subset(stim.ids[:8])  # bfloat16 autocast is slow on CPUs without native bf16
        res["bf16_n_images"] = len(few)
        res["extract_bfloat16_img_s"] = len(few) / _timed(ours(few, precision="bfloat16"))
        res["extract_float32_same_images_img_s"] = len(few) / _timed(ours(few))
    return res


def _layer_rates(stim: Any, bb: Any) -> dict[str, Any]:
    """All 16 blocks of Lite0 in one pass vs one pass per block (pooled, cold stores), and srp:4096 of all 16."""
    from llmvem.store import ArtifactStore
    from llmvem.vision import extract_features
    from llmvem.vision.taps import block_layers

    names = block_layers(bb)
    with tempfile.TemporaryDirectory() as d:

        def ours(tag: str, **kw: Any) -> float:
            return _timed(lambda: extract_features(stim, bb, batch_size=BATCH, progress=False,
                                                   store=ArtifactStore(Path(d) / tag), **kw))  # fmt: skip

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
        ext = get_extractor_from_model(model=bb.module, device="cpu", backend="pt", preprocess=bb.preprocess,
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
