"""Pipelined extraction, many layers in one pass, and reduced full maps (issue 17 items 1-3)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from llmvem.data.stimuli import StimulusSet
from llmvem.errors import ConfigError, DataError, ResourceError
from llmvem.store import ArtifactStore
from llmvem.vision import Backbone, extract_features, feature_spec, load_backbone, tap_layer
from llmvem.vision.features import FEATURES_KIND
from llmvem.vision.reduce import Reduction, SparseRandomProjection
from llmvem.vision.taps import block_layers, tap_layers

#: a narrow ResNet-18 (stages of 16, 32, 64, 128 channels): the real timm code at a fraction of the compute
NARROW: dict[str, Any] = {"model_kwargs": {"channels": (16, 32, 64, 128), "stem_width": 16}}


@pytest.fixture(scope="module")
def resnet() -> Backbone:
    return load_backbone("timm:resnet18", **NARROW)


def _images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        p = folder / f"img{k:02d}.png"
        Image.fromarray(rng.integers(0, 256, (40 + k % 3, 36, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


@pytest.fixture
def stim(tmp_path: Path) -> StimulusSet:
    return StimulusSet.from_paths(_images(tmp_path / "imgs", 5))


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


class _Forwards:
    """Counts the forward passes (calls of Backbone.features) and the images in them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.images = 0
        original = Backbone.features

        def counting(bb: Backbone, batch: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            self.images += batch.shape[0]
            return original(bb, batch)

        monkeypatch.setattr(Backbone, "features", counting)


def _direct(bb: Backbone, stim: StimulusSet) -> np.ndarray:
    with torch.inference_mode():
        x = torch.stack([bb.preprocess(stim.load(k)) for k in range(len(stim))])
        return bb.features(x).numpy()


# --------------------------------------------------------------------------- item 1: pipelined extraction
def test_pipelined_equals_sequential_and_the_direct_forward(
    stim: StimulusSet, resnet: Backbone, tmp_path: Path
) -> None:
    seq = extract_features(stim, resnet, batch_size=2, store=ArtifactStore(tmp_path / "a"), progress=False, workers=0)
    par = extract_features(stim, resnet, batch_size=2, store=ArtifactStore(tmp_path / "b"), progress=False, workers=3)
    assert seq.key == par.key  # workers are not part of the key
    np.testing.assert_allclose(par.values, seq.values, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(par.values, _direct(resnet, stim), rtol=1e-4, atol=1e-5)
    lay = extract_features(stim, resnet, batch_size=2, store=ArtifactStore(tmp_path / "c"), progress=False,
                           workers=2, layer="layer3")  # fmt: skip
    np.testing.assert_allclose(lay.values, _direct(tap_layer(resnet, "layer3"), stim), rtol=1e-4, atol=1e-5)


def test_default_key_is_unchanged_and_precision_is_in_it(
    stim: StimulusSet, resnet: Backbone, store: ArtifactStore
) -> None:
    fm = extract_features(stim, resnet, store=store, progress=False)
    assert fm.key == ArtifactStore.key(FEATURES_KIND, feature_spec(stim, resnet))  # the key before issue 17
    half = extract_features(stim, resnet, store=store, progress=False, precision="bfloat16")
    assert half.key != fm.key and store.get_arrays(FEATURES_KIND, half.key or "")["features"].shape == (5, 128)
    np.testing.assert_allclose(half.values, fm.values, rtol=0.1, atol=0.05 * float(np.abs(fm.values).max()))
    with pytest.raises(ConfigError, match="precision must be one of"):
        extract_features(stim, resnet, store=store, progress=False, precision="int8")


def test_worker_error_names_the_file_and_publishes_nothing(tmp_path: Path, resnet: Backbone) -> None:
    paths = _images(tmp_path / "imgs", 4)
    bad = tmp_path / "imgs" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    stim = StimulusSet.from_paths([*paths[:3], bad, paths[3]], verify=False)
    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(DataError, match=r"broken\.png"):
        extract_features(
            stim, resnet, batch_size=2, store=store, progress=False, workers=2, layers=["layer1", "layer2"]
        )
    assert store.entries(FEATURES_KIND) == []


# --------------------------------------------------------------------------- item 2: many layers, one pass
def test_many_layers_in_one_forward_each_its_own_entry(
    stim: StimulusSet, resnet: Backbone, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fwd = _Forwards(monkeypatch)
    out = extract_features(stim, resnet, batch_size=2, store=store, progress=False, layers="layer2, layer3")
    assert list(out) == ["layer2", "layer3"] and fwd.images == 5 + 1  # one pass (+ the taps' one-image probe)
    assert out["layer2"].values.shape == (5, 32) and out["layer3"].values.shape == (5, 64)
    assert len(store.entries(FEATURES_KIND)) == 2
    np.testing.assert_allclose(out["layer3"].values, _direct(tap_layer(resnet, "layer3"), stim), rtol=1e-4, atol=1e-5)

    fwd.images = 0
    single = extract_features(
        stim, load_backbone("timm:resnet18", **NARROW), store=store, progress=False, layer="layer3"
    )
    assert fwd.images == 1 and single.key == out["layer3"].key  # a hit (only the probe ran)
    np.testing.assert_array_equal(single.values, out["layer3"].values)

    fwd.images = 0
    more = extract_features(stim, resnet, store=store, progress=False, layers=["layer3", "layer4"])
    assert fwd.images == 1 + 5 and len(store.entries(FEATURES_KIND)) == 3  # only layer4 was computed
    assert more["layer3"].key == out["layer3"].key
    with pytest.raises(ConfigError, match="layer or layers"):
        extract_features(stim, resnet, store=store, progress=False, layer="layer3", layers=["layer4"])


def test_the_forward_stops_after_the_deepest_tap(resnet: Backbone) -> None:
    net: Any = resnet.module
    reached: list[str] = []
    handle = net.layer4.register_forward_hook(lambda *_: reached.append("layer4"))
    try:
        taps = tap_layers(resnet, ["layer1", "layer2"])
        reached.clear()
        from llmvem.vision.taps import capture_layers

        with torch.inference_mode():
            got = capture_layers(resnet, {t.name: t.pool for t in taps}, torch.zeros(1, 3, 64, 64),
                                 {t.name: t.calls for t in taps})  # fmt: skip
        assert set(got) == {"layer1", "layer2"} and reached == []
    finally:
        handle.remove()


def test_all_means_the_blocks_of_each_family(resnet: Backbone, tiny_clip_dir: Path) -> None:
    assert block_layers(resnet) == [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    vit = load_backbone("timm:vit_tiny_patch16_224", model_kwargs={"img_size": 32, "patch_size": 8, "depth": 3})
    assert block_layers(vit) == ["blocks.0", "blocks.1", "blocks.2"]
    assert block_layers(load_backbone(f"hf_clip:{tiny_clip_dir}")) == [f"encoder.layers.{k}" for k in range(3)]
    assert block_layers(load_backbone("efficientnet_lite0")) == [f"_blocks.{k}" for k in range(16)]
    assert [t.name for t in tap_layers(vit, "all")] == ["blocks.0", "blocks.1", "blocks.2"]


# --------------------------------------------------------------------------- item 3: reduced full maps
def test_sparse_random_projection_is_seeded_and_keeps_distances() -> None:
    a, b = SparseRandomProjection(4096, 512, seed=3), SparseRandomProjection(4096, 512, seed=3)
    assert torch.equal(a.matrix.to_dense(), b.matrix.to_dense())
    assert not torch.equal(a.matrix.to_dense(), SparseRandomProjection(4096, 512, seed=4).matrix.to_dense())
    dense = a.matrix.to_dense()
    nnz = (dense != 0).float().mean().item()
    assert abs(nnz - 1 / 64) < 0.003  # s = sqrt(4096) = 64: one entry in 64 is non-zero
    x = torch.randn(20, 4096)
    y = a(x)
    torch.testing.assert_close(y, x @ dense.T)
    d_in = torch.cdist(x, x)[np.triu_indices(20, 1)]
    d_out = torch.cdist(y, y)[np.triu_indices(20, 1)]
    ratio = (d_out / d_in) ** 2
    assert abs(ratio.mean().item() - 1) < 0.1 and ratio.std().item() < 0.2


def test_srp_reduction_of_a_layer_map(stim: StimulusSet, resnet: Backbone, store: ArtifactStore) -> None:
    fm = extract_features(stim, resnet, batch_size=2, store=store, progress=False, layer="layer3", reduce="srp:16")
    assert fm.values.shape == (5, 16)
    tap = tap_layers(resnet, ["layer3"])[0]
    from llmvem.vision.taps import capture_layers

    with torch.inference_mode():
        x = torch.stack([resnet.preprocess(stim.load(k)) for k in range(len(stim))])
        full = capture_layers(resnet, {"layer3": lambda t: t}, x)["layer3"].reshape(5, -1)
    proj = SparseRandomProjection(full.shape[1], 16, seed=0)
    np.testing.assert_allclose(fm.values, proj(full).numpy(), rtol=1e-4, atol=1e-4)
    assert tap.shape == (64, 14, 14)
    pooled = extract_features(stim, resnet, store=store, progress=False, layer="layer3")
    other = extract_features(stim, resnet, store=store, progress=False, layer="layer3", reduce="srp:16", reduce_seed=1)
    assert len({fm.key, pooled.key, other.key}) == 3
    assert not np.allclose(other.values, fm.values)
    spec = store.get_extra(FEATURES_KIND, fm.key or "")
    assert spec["shape"] == [5, 16]


def test_pca_reduction_fitted_on_a_seeded_subset(stim: StimulusSet, resnet: Backbone, store: ArtifactStore) -> None:
    from sklearn.decomposition import IncrementalPCA

    from llmvem.vision.taps import capture_layers

    fm = extract_features(stim, resnet, batch_size=2, store=store, progress=False, layer="layer4",
                          reduce="pca:3", reduce_fit_n=4, reduce_seed=7)  # fmt: skip
    assert fm.values.shape == (5, 3)
    fit = Reduction.parse("pca:3", seed=7, fit_n=4).fit_positions(5)
    assert len(fit) == 4 and fit == sorted(fit)
    with torch.inference_mode():
        x = torch.stack([resnet.preprocess(stim.load(k)) for k in range(len(stim))])
        full = capture_layers(resnet, {"layer4": lambda t: t}, x)["layer4"].reshape(5, -1).numpy()
    ref = IncrementalPCA(n_components=3).fit(full[fit])
    np.testing.assert_allclose(fm.values, ref.transform(full), rtol=1e-3, atol=1e-3 * np.abs(fm.values).max())
    ratio = store.get_arrays(FEATURES_KIND, fm.key or "")["explained_variance_ratio"]
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, rtol=1e-4)
    with pytest.raises(ConfigError, match="at least 3 images"):
        extract_features(stim, resnet, store=store, progress=False, layer="layer4", reduce="pca:3", reduce_fit_n=2)


@pytest.mark.parametrize("bad", ["srp", "srp:0", "pca:x", "umap:8", "none:3"])
def test_bad_reductions(bad: str, stim: StimulusSet, resnet: Backbone, store: ArtifactStore) -> None:
    with pytest.raises(ConfigError, match="reduce must be none, srp:<dim> or pca:<dim>"):
        extract_features(stim, resnet, store=store, progress=False, layer="layer3", reduce=bad)


def test_reduce_needs_a_layer_and_memory_is_checked(
    stim: StimulusSet, resnet: Backbone, store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="pass a layer or layers"):
        extract_features(stim, resnet, store=store, progress=False, reduce="srp:8")
    import llmvem.brain.memory

    monkeypatch.setattr(llmvem.brain.memory, "available_memory", lambda: 50_000_000)
    with pytest.raises(ResourceError, match=r"layer 'layer1' gives maps of 16 x 56 x 56 = 50,176 values per image"):
        extract_features(stim, resnet, store=store, progress=False, layers=["layer1", "layer4"], reduce="pca:256")
    try:
        extract_features(stim, resnet, store=store, progress=False, layers=["layer1"], reduce="pca:256")
    except ResourceError as exc:
        assert "--reduce srp:256" in str(exc) and "GB" in str(exc)
    assert store.entries(FEATURES_KIND) == []


def test_reduced_extraction_peak_memory_does_not_grow_with_the_images(tmp_path: Path, resnet: Backbone) -> None:
    """The full maps (50,176 values an image) are never held for all images: numpy's peak is the same for 4 and 16
    images (holding 12 more maps would be 2.4 MB more)."""
    peaks = []
    for n in (4, 16):
        stim = StimulusSet.from_paths(_images(tmp_path / f"imgs{n}", n))
        tracemalloc.start()
        extract_features(stim, resnet, batch_size=4, store=ArtifactStore(tmp_path / f"s{n}"), progress=False,
                         layer="layer1", reduce="pca:2", reduce_fit_n=4)  # fmt: skip
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[0] > 4 * 50_176 * 4  # the fit's maps are seen by tracemalloc
    assert peaks[1] - peaks[0] < 12 * 50_176 * 4 / 4


# --------------------------------------------------------------------------- CLI
def test_cli_features_layers_writes_one_file_per_layer(tmp_path: Path) -> None:
    from llmvem.cli.app import app

    _images(tmp_path / "imgs", 3)
    out = tmp_path / "f.npy"
    runner = CliRunner()
    args = ["features", str(tmp_path / "imgs"), "--backbone", "timm:resnet18", "--no-progress", "-o", str(out),
            "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    res = runner.invoke(app, [*args, "--layers", "layer2,layer3", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "f.layer2.npy").shape == (3, 128) and np.load(tmp_path / "f.layer3.npy").shape == (3, 256)
    assert (tmp_path / "f.ids.txt").read_text().split() == ["img00", "img01", "img02"] and not out.exists()
    res = runner.invoke(app, [*args, "--layers", "layer4", "--reduce", "srp:8", "--precision", "bfloat16"])
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "f.layer4.npy").shape == (3, 8)
    bad = runner.invoke(app, [*args, "--layers", "layer2", "--reduce", "pca:oops"])
    assert bad.exit_code == 2 and "reduce must be none" in bad.output
    helptext = runner.invoke(app, ["features", "--help"], terminal_width=200).output
    assert "f.<layer>.npy" in helptext and "--reduce" in helptext and "--workers" in helptext
