"""Algonauts 2023 loader on a small subject folder written in the challenge layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmvem.data.algonauts import load_algonauts2023
from llmvem.errors import DataError, DatasetNotFoundError


def _subject(root: Path, n_train: int = 6, v: tuple[int, int] = (5, 4)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    fmri_dir = root / "training_split" / "training_fmri"
    img_dir = root / "training_split" / "training_images"
    test_dir = root / "test_split" / "test_images"
    roi_dir = root / "roi_masks"
    for d in (fmri_dir, img_dir, test_dir, roi_dir):
        d.mkdir(parents=True)
    out = {}
    for hemi, nv in zip(("lh", "rh"), v, strict=True):
        out[hemi] = rng.standard_normal((n_train, nv)).astype(np.float32)
        np.save(fmri_dir / f"{hemi}_training_fmri.npy", out[hemi])
        verts = np.zeros(20, dtype=bool)
        verts[rng.choice(20, nv, replace=False)] = True
        np.save(roi_dir / f"{hemi}.all-vertices_fsaverage_space.npy", verts)
        vis = np.zeros(nv, dtype=np.int64)
        vis[:2] = [1, 2]
        np.save(roi_dir / f"{hemi}.prf-visualrois_challenge_space.npy", vis)
        streams = np.zeros(nv, dtype=np.int64)
        streams[1:3] = 3
        np.save(roi_dir / f"{hemi}.streams_challenge_space.npy", streams)
    np.save(roi_dir / "mapping_prf-visualrois.npy", {0: "Unknown", 1: "V1v", 2: "V1d"})
    np.save(roi_dir / "mapping_streams.npy", {0: "Unknown", 3: "ventral"})
    for k in range(n_train):
        (img_dir / f"train-{k + 1:04d}_nsd-{100 + k:05d}.png").write_bytes(b"")
    (test_dir / "test-0001_nsd-00007.png").write_bytes(b"")
    return out


def test_layout_is_read(tmp_path: Path) -> None:
    data = _subject(tmp_path / "subj01")
    subj = load_algonauts2023(tmp_path / "subj01", roi_classes=("prf-visualrois", "streams"))
    b = subj.brain
    assert b.responses.shape == (6, 9)
    np.testing.assert_array_equal(b.responses, np.concatenate([data["lh"], data["rh"]], axis=1))
    assert b.stimulus_ids == [f"nsd-{100 + k:05d}" for k in range(6)]
    assert subj.train_images.ids == b.stimulus_ids
    assert subj.test_images.ids == ["nsd-00007"]
    assert list(b.voxels["hemi"]) == ["lh"] * 5 + ["rh"] * 4
    assert list(b.voxels["roi"][:5]) == ["V1v", "V1d", "ventral", "other", "other"]
    assert list(b.voxels["streams"][:5]) == ["", "ventral", "ventral", "", ""]
    assert (b.voxels["fsaverage_vertex"] >= 0).all()
    assert b.rois == ["V1v", "V1d", "ventral", "other"]


def test_one_hemisphere_and_no_rois(tmp_path: Path) -> None:
    _subject(tmp_path / "s")
    subj = load_algonauts2023(tmp_path / "s", roi_classes=(), hemispheres=("rh",))
    assert subj.brain.n_voxels == 4 and set(subj.brain.voxels["roi"]) == {"other"}


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="not found"):
        load_algonauts2023(tmp_path / "nope")
    _subject(tmp_path / "s")
    with pytest.raises(DatasetNotFoundError, match="floc-bodies"):
        load_algonauts2023(tmp_path / "s")  # the default classes include files this folder lacks
    with pytest.raises(DataError, match="unknown ROI classes"):
        load_algonauts2023(tmp_path / "s", roi_classes=("v1",))
    np.save(tmp_path / "s" / "training_split" / "training_fmri" / "lh_training_fmri.npy", np.zeros((5, 5)))
    with pytest.raises(DataError, match="5 rows but training_images holds 6"):
        load_algonauts2023(tmp_path / "s", roi_classes=())
