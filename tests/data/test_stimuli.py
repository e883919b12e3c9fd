"""StimulusSet, BrainData and RDMSet on small temporary files and simulated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from llmvem.data.brain import BrainData, RDMSet, ncsnr_from_repeats, ncsnr_to_noise_ceiling
from llmvem.data.stimuli import StimulusSet, UnreadableImagesError
from llmvem.errors import DataError, IdMismatchError


def _write_image(path: Path, seed: int, fmt: str | None = None) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(path, format=fmt)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    for k, name in enumerate(["b.jpg", "a.png", "c.jpeg", "10.jpg", "2.jpg"]):
        _write_image(d / name, k)
    (d / "notes.txt").write_text("not an image")
    return d


# ------------------------------------------------------------------------------------------ StimulusSet
def test_from_folder_sorted_ids_and_name(folder: Path) -> None:
    s = StimulusSet.from_folder(folder)
    assert s.ids == ["10", "2", "a", "b", "c"]  # sorted by file name, suffix dropped; .txt ignored
    assert [p.name for p in s.paths] == ["10.jpg", "2.jpg", "a.png", "b.jpg", "c.jpeg"]
    assert s.name == "imgs"
    assert len(s) == 5
    assert s.load("a").size == (32, 32)
    assert s.load(0).mode == "RGB"


def test_from_folder_recursive_ids(tmp_path: Path) -> None:
    (tmp_path / "x" / "y").mkdir(parents=True)
    _write_image(tmp_path / "x" / "top.jpg", 0)
    _write_image(tmp_path / "x" / "y" / "deep.jpg", 1)
    with pytest.warns(UserWarning, match=r"left out 1 subfolder\(s\) \(y\); using the 1 image file\(s\)"):
        assert StimulusSet.from_folder(tmp_path / "x").ids == ["top"]
    assert StimulusSet.from_folder(tmp_path / "x", recursive=True).ids == ["top", "y/deep"]


def test_from_folder_names_what_it_leaves_out(tmp_path: Path) -> None:
    """features / words read folders as describe does: a class-folder layout, links that lead nowhere and FIFOs are
    named (they were skipped without a word, or gave only "no images found")."""
    import os

    for c in ("cat", "dog"):
        (tmp_path / "classes" / c).mkdir(parents=True)
        _write_image(tmp_path / "classes" / c / "a.jpg", 0)
    with pytest.raises(DataError, match=r"it has 2 subfolder\(s\) \(cat, dog\): images are read directly"):
        StimulusSet.from_folder(tmp_path / "classes")
    flat = tmp_path / "flat"
    flat.mkdir()
    _write_image(flat / "a.jpg", 0)
    (flat / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    if hasattr(os, "mkfifo"):
        os.mkfifo(flat / "pipe.jpg")
    with pytest.warns(UserWarning, match=r"1 broken or looping link\(s\) \(gone.jpg\)"):
        assert StimulusSet.from_folder(flat).ids == ["a"]


def test_from_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        StimulusSet.from_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="no images"):
        StimulusSet.from_folder(tmp_path)


def test_truncated_and_corrupt_images_reported(folder: Path) -> None:
    data = (folder / "b.jpg").read_bytes()
    (folder / "b.jpg").write_bytes(data[: len(data) // 2])
    (folder / "c.jpeg").write_bytes(b"")
    with pytest.raises(UnreadableImagesError) as info:
        StimulusSet.from_folder(folder)
    msg = str(info.value)
    assert str(folder / "b.jpg") in msg and "truncated" in msg
    assert str(folder / "c.jpeg") in msg and "empty file (0 bytes)" in msg
    assert {b.id for b in info.value.bad} == {"b", "c"}

    s = StimulusSet.from_folder(folder, on_error="skip")
    assert s.ids == ["10", "2", "a"]
    assert {b.id: b.path for b in s.skipped} == {"b": folder / "b.jpg", "c": folder / "c.jpeg"}
    assert all(b.reason for b in s.skipped)


def test_bad_on_error_value(folder: Path) -> None:
    with pytest.raises(DataError, match="on_error"):
        StimulusSet.from_folder(folder, on_error="ignore")


def test_from_paths_labels_length_checked(folder: Path) -> None:
    paths = sorted(folder.glob("*.jpg"))
    with pytest.raises(DataError, match="labels"):
        StimulusSet.from_paths(paths, labels=["x"] * (len(paths) + 1))
    s = StimulusSet.from_paths(paths, labels=[f"l{k}" for k in range(len(paths))])
    assert s.labels == [f"l{k}" for k in range(len(paths))]


def test_duplicate_ids_rejected(folder: Path) -> None:
    with pytest.raises(DataError, match="duplicate"):
        StimulusSet.from_paths([folder / "b.jpg", folder / "2.jpg"], ids=["x", "x"])


def test_content_hash_changes_with_bytes(folder: Path) -> None:
    s1 = StimulusSet.from_folder(folder)
    h1, f1 = list(s1.content_hashes), s1.fingerprint
    assert StimulusSet.from_folder(folder).fingerprint == f1  # stable
    _write_image(folder / "a.png", 99)
    s2 = StimulusSet.from_folder(folder)
    changed = [i for i, a, b in zip(s2.ids, h1, s2.content_hashes, strict=True) if a != b]
    assert changed == ["a"]
    assert s2.fingerprint != f1


def test_equality_ignores_hash_cache(folder: Path) -> None:
    s1, s2 = StimulusSet.from_folder(folder), StimulusSet.from_folder(folder)
    _ = s1.content_hashes
    assert s1 == s2


def test_subset_order_and_unknown_id(folder: Path) -> None:
    s = StimulusSet.from_folder(folder)
    sub = s.subset(["c", "a"])
    assert sub.ids == ["c", "a"] and sub.paths[0].name == "c.jpeg"
    with pytest.raises(IdMismatchError, match="'zzz'"):
        s.subset(["a", "zzz"])
    with pytest.raises(DataError, match="'zzz'"):
        s.index("zzz")


# ------------------------------------------------------------------------------------------ BrainData
def _voxels(n: int) -> pd.DataFrame:
    return pd.DataFrame({"roi": ["V1"] * (n // 2) + ["IT"] * (n - n // 2)})


def test_brain_data_shapes_and_ids() -> None:
    r = np.arange(12, dtype=np.float64).reshape(3, 4)
    b = BrainData(r, ["s1", "s2", "s3"], _voxels(4), splits={"test": ["s2"]})
    assert b.responses.dtype == np.float32 and (b.n_stimuli, b.n_voxels) == (3, 4)
    assert b.rois == ["V1", "IT"] and b.roi_mask("IT").tolist() == [False, False, True, True]
    assert b.split_indices("test").tolist() == [1]
    rb = b.reorder(["s3", "s1"])
    assert rb.stimulus_ids == ["s3", "s1"] and rb.responses[0, 0] == 8
    with pytest.raises(IdMismatchError, match="'s9'"):
        b.reorder(["s9"])
    with pytest.raises(DataError, match="no ROI"):
        b.roi_mask("FFA")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"responses": np.zeros(4)}, "2-D"),
        ({"stimulus_ids": ["a", "b"]}, "2 stimulus ids for 3"),
        ({"stimulus_ids": ["a", "a", "b"]}, "duplicate"),
        ({"voxels": _voxels(3)}, "3 rows for 4 voxels"),
        ({"voxels": pd.DataFrame({"x": range(4)})}, "'roi'"),
        ({"ncsnr": np.ones(3)}, "ncsnr"),
        ({"n_repeats": np.ones(4)}, "n_repeats"),
        ({"splits": {"test": ["nope"]}}, "unknown stimulus ids"),
    ],
)
def test_brain_data_errors(kwargs: dict, match: str) -> None:
    args = {"responses": np.zeros((3, 4)), "stimulus_ids": ["a", "b", "c"], "voxels": _voxels(4)} | kwargs
    with pytest.raises(DataError, match=match):
        BrainData(**args)


def test_noise_ceiling_derived_from_ncsnr() -> None:
    b = BrainData(np.zeros((2, 2)), ["a", "b"], _voxels(2), ncsnr=np.array([1.0, 0.0]), n_repeats=np.array([3, 3]))
    assert b.noise_ceiling is not None
    np.testing.assert_allclose(b.noise_ceiling, [1 / (1 + 1 / 3), 0.0])
    np.testing.assert_allclose(ncsnr_to_noise_ceiling(np.array([2.0]), 1), [0.8])


def test_ncsnr_from_repeats_recovers_known_snr() -> None:
    rng = np.random.default_rng(0)
    n_stim, n_rep, snr = 2000, 3, np.array([0.0, 0.5, 1.0, 2.0])
    signal = rng.standard_normal((n_stim, 1, snr.size)) * snr
    trials = signal + rng.standard_normal((n_stim, n_rep, snr.size))
    est = ncsnr_from_repeats(trials)
    np.testing.assert_allclose(est[1:], snr[1:], rtol=0.1)
    assert est[0] < 0.15
    with pytest.raises(DataError, match="n_repeats"):
        ncsnr_from_repeats(trials[:, :1])


# ------------------------------------------------------------------------------------------ RDMSet
def test_rdm_set_checks() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((2, 5, 5))
    sym = a + a.transpose(0, 2, 1)
    ids = list("abcde")
    r = RDMSet(sym, ids, ["s1", "s2"])
    assert r.n_subjects == 2 and r.n_stimuli == 5
    np.testing.assert_allclose(r.mean(), sym.mean(0))
    back = r.reorder(list("edcba"))
    np.testing.assert_allclose(back.rdms[0, 0, 1], sym[0, 4, 3])
    assert RDMSet(sym[0], ids, ["s1"]).rdms.shape == (1, 5, 5)
    with pytest.raises(DataError, match="not symmetric"):
        RDMSet(a, ids, ["s1", "s2"])
    with pytest.raises(DataError, match="NaN"):
        RDMSet(np.full((1, 5, 5), np.nan), ids, ["s1"])
    with pytest.raises(DataError, match="subject names"):
        RDMSet(sym, ids, ["s1"])
    with pytest.raises(DataError, match="ids"):
        RDMSet(sym, ids[:4], ["s1", "s2"])
