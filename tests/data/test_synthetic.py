"""The offline demo set: files, determinism, reuse, noise ceilings, and that its two ROIs are driven differently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from llmvem.data.brain import BrainData
from llmvem.data.synthetic import (
    BACKGROUNDS,
    CATEGORIES,
    COLOURS,
    MANIFEST,
    NCSNR_RANGE,
    DemoSet,
    generate_demo_set,
    load_demo_set,
)
from llmvem.errors import ConfigError, DataError

SMALL = dict(n_images=48, n_voxels_per_roi=16, n_repeats=2, image_size=64)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSet:
    """The default demo set (240 images, 2 × 200 voxels, 3 repeats, 224 px)."""
    return generate_demo_set(tmp_path_factory.mktemp("demo"), seed=0)


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _test_r(x: np.ndarray, brain: BrainData) -> dict[str, float]:
    """Mean held-out Pearson r per ROI of a ridge (α by CV) from ``x`` fit on the train split."""
    from sklearn.linear_model import RidgeCV

    tr, te = brain.split_indices("train"), brain.split_indices("test")
    y = brain.responses
    pred = RidgeCV(alphas=np.logspace(-2, 5, 15)).fit(x[tr], y[tr]).predict(x[te])
    p, t = pred - pred.mean(0), y[te] - y[te].mean(0)
    r = (p * t).sum(0) / np.sqrt((p**2).sum(0) * (t**2).sum(0))
    return {roi: float(r[brain.roi_mask(roi)].mean()) for roi in brain.rois}


# ---------------------------------------------------------------------- contents
def test_shapes_ids_and_tables(demo: DemoSet) -> None:
    n, v = 240, 200
    ids = demo.stimuli.ids
    assert len(ids) == n and ids[0] == "demo_0001" and ids[-1] == "demo_0240"
    assert demo.stimuli.labels == list(demo.latents["category"])
    assert list(demo.latents.index) == ids
    assert set(demo.latents["category"]) == set(CATEGORIES)
    assert demo.latents["category"].value_counts().nunique() == 1  # balanced
    for i in (0, 17, n - 1):
        im = Image.open(demo.stimuli.paths[i])
        assert im.size == (224, 224) and im.mode == "RGB"

    b = demo.brain
    assert b.responses.shape == (n, 2 * v) and b.responses.dtype == np.float32
    assert b.stimulus_ids == ids
    assert b.rois == ["early", "semantic"]
    assert b.roi_mask("early").sum() == v and b.roi_mask("semantic").sum() == v
    assert demo.trials.shape == (n, 3, 2 * v)
    np.testing.assert_allclose(b.responses, demo.trials.mean(axis=1), atol=1e-6)
    assert b.n_repeats is not None and (b.n_repeats == 3).all()
    assert np.isfinite(b.responses).all() and b.check_finite().all()
    assert demo.attributes.shape == (len(CATEGORIES), 12)


def test_splits_disjoint_covering_and_stratified(demo: DemoSet) -> None:
    train, test = demo.brain.splits["train"], demo.brain.splits["test"]
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(demo.stimuli.ids)
    assert 0.2 <= len(test) / len(demo.stimuli) <= 0.3
    cats = demo.latents["category"]
    assert set(cats[test]) == set(cats[train]) == set(CATEGORIES)
    per_cat = cats[test].value_counts()
    assert per_cat.max() - per_cat.min() <= 1


def test_captions_state_the_ground_truth(demo: DemoSet) -> None:
    assert set(demo.captions) == set(demo.stimuli.ids)
    lines = demo.captions_path.read_text(encoding="utf-8").splitlines()
    recs = [json.loads(line) for line in lines]
    assert [r["image"] for r in recs] == [f"{i}.png" for i in demo.stimuli.ids]
    assert all(set(r) == {"image", "text"} for r in recs)
    bg_word = {
        "light grey": "light grey",
        "dark blue": "dark blue",
        "green grass": "gras",
        "sand": "sand",
        "textured noise": "textured",
    }
    size_words = {"small": ("small", "little"), "large": ("large", "big")}
    position_words = {
        "left": ("left",),
        "right": ("right",),
        "centre": ("centre", "middle"),
        "top": ("top", "upper"),
        "bottom": ("bottom", "lower"),
    }
    for sid, lat in demo.latents.iterrows():
        text = demo.captions[str(sid)].lower()
        assert f"{lat['colour']} {lat['category']}" in text
        assert any(f"{w} {lat['colour']}" in text for w in size_words[lat["size"]])
        assert bg_word[lat["background"]] in text
        assert any(w in text for w in position_words[lat["position"]])


def test_factors_and_colours_are_valid(demo: DemoSet) -> None:
    lat = demo.latents
    assert set(lat["colour"]) <= set(COLOURS) and set(lat["background"]) <= set(BACKGROUNDS)
    assert not ((lat["colour"] == "green") & (lat["background"] == "green grass")).any()  # invisible objects
    textured = lat["background"] == "textured noise"
    assert lat.loc[textured, "bg_contrast"].notna().all() and lat.loc[~textured, "bg_contrast"].isna().all()
    assert ((lat["scale"] / 2 <= lat["cx"]) & (lat["cx"] <= 1 - lat["scale"] / 2)).all()  # glyph inside the image


# ---------------------------------------------------------------------- simulated cortex
def test_noise_ceilings_in_a_sensible_range(demo: DemoSet) -> None:
    b = demo.brain
    nc = b.noise_ceiling
    assert nc is not None and b.ncsnr is not None
    assert ((nc >= 0) & (nc <= 1)).all()
    true = b.voxels["ncsnr_true"].to_numpy()
    assert ((true >= NCSNR_RANGE[0]) & (true <= NCSNR_RANGE[1])).all()
    for roi in b.rois:
        m = b.roi_mask(roi)
        assert 0.15 <= np.percentile(nc[m], 10) <= 0.45
        assert 0.55 <= np.median(nc[m]) <= 0.8
        assert 0.8 <= np.percentile(nc[m], 90) <= 0.95
        assert np.corrcoef(b.ncsnr[m], true[m])[0, 1] > 0.9  # the estimate from trials recovers the truth


def test_the_two_rois_are_driven_by_different_things(demo: DemoSet) -> None:
    b = demo.brain
    category = pd.get_dummies(demo.latents["category"]).to_numpy(np.float64)
    pixels = np.stack(
        [
            np.asarray(demo.stimuli.load(i).resize((16, 16), Image.Resampling.BOX), np.float64).ravel() / 255
            for i in b.stimulus_ids
        ]
    )
    from_category, from_pixels = _test_r(category, b), _test_r(pixels, b)
    # the semantic ROI is what the category explains; the early ROI is what the pixels explain
    assert from_category["semantic"] > 0.6 and from_category["early"] < 0.15
    assert from_pixels["early"] > 0.3 and from_pixels["semantic"] < 0.25
    assert from_category["semantic"] - from_category["early"] > 0.45
    assert from_pixels["early"] - from_pixels["semantic"] > 0.2


# ---------------------------------------------------------------------- determinism and reuse
def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate_demo_set(tmp_path / "a", seed=3, **SMALL)
    b = generate_demo_set(tmp_path / "b", seed=3, **SMALL)
    c = generate_demo_set(tmp_path / "c", seed=4, **SMALL)
    fa, fb, fc = _all_files(tmp_path / "a"), _all_files(tmp_path / "b"), _all_files(tmp_path / "c")
    assert fa == fb  # every file, images, npz and manifest included
    np.testing.assert_array_equal(a.trials, b.trials)
    assert a.captions == b.captions and a.brain.splits == b.brain.splits
    assert a.stimuli.fingerprint == b.stimuli.fingerprint
    assert sum(fa[k] != fc[k] for k in fa if k.startswith("images/")) >= 0.9 * SMALL["n_images"]
    assert not np.allclose(a.brain.responses, c.brain.responses)
    assert a.captions != c.captions


def test_existing_set_is_reused_without_rewriting(tmp_path: Path) -> None:
    first = generate_demo_set(tmp_path, seed=1, **SMALL)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    again = generate_demo_set(tmp_path, seed=1, **SMALL)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == mtimes
    np.testing.assert_array_equal(first.brain.responses, again.brain.responses)
    loaded = load_demo_set(tmp_path)
    assert loaded.stimuli.ids == first.stimuli.ids and loaded.captions == first.captions
    assert loaded.params == {**SMALL, "seed": 1}
    assert loaded.latents.equals(first.latents)


def test_partial_set_without_manifest_is_regenerated(tmp_path: Path) -> None:
    generate_demo_set(tmp_path, seed=2, **SMALL)
    reference = _all_files(tmp_path)
    (tmp_path / MANIFEST).unlink()
    (tmp_path / "images" / "demo_0005.png").write_bytes(b"truncated")
    (tmp_path / "responses.npz").unlink()
    with pytest.raises(DataError, match="no complete demo set"):
        load_demo_set(tmp_path)
    demo = generate_demo_set(tmp_path, seed=2, **SMALL)
    assert _all_files(tmp_path) == reference
    assert demo.stimuli.load("demo_0005").size == (64, 64)


def test_changed_file_is_detected_and_regenerated(tmp_path: Path) -> None:
    generate_demo_set(tmp_path, seed=2, **SMALL)
    reference = _all_files(tmp_path)
    (tmp_path / "captions.jsonl").write_text('{"image": "demo_0001.png", "text": "edited"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="missing or changed"):
        load_demo_set(tmp_path)
    generate_demo_set(tmp_path, seed=2, **SMALL)
    assert _all_files(tmp_path) == reference


def test_other_parameters_replace_the_set(tmp_path: Path) -> None:
    generate_demo_set(tmp_path, seed=0, **SMALL)
    smaller = generate_demo_set(tmp_path, seed=0, **{**SMALL, "n_images": 24, "n_voxels_per_roi": 8})
    assert len(smaller.stimuli) == 24 and smaller.brain.n_voxels == 16
    assert len(list((tmp_path / "images").glob("*.png"))) == 24  # no stale images left behind
    assert json.loads((tmp_path / MANIFEST).read_text())["params"]["n_images"] == 24


def test_captions_file_reads_as_descriptions(demo: DemoSet) -> None:
    from llmvem.describe.imported import read_text_table

    table = read_text_table(demo.captions_path)
    assert list(table["image"]) == demo.stimuli.ids


@pytest.mark.parametrize(
    "kwargs",
    [{"n_images": 10}, {"n_repeats": 1}, {"n_voxels_per_roi": 0}, {"image_size": 8}, {"seed": -1}],
)
def test_bad_parameters_raise_config_error(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        generate_demo_set(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())
