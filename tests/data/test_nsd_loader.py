"""NSD loader on small files written in NSD's formats (HDF5, NIfTI, MGH; nsd_expdesign.mat)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from llmvem.data.nsd import TRIALS_PER_SESSION, NSDDesign, load_nsd, stimulus_id
from llmvem.errors import DataError, DatasetNotFoundError

nib = pytest.importorskip("nibabel")
SHAPE = (4, 3, 2)  # X, Y, Z
N_SHARED = 30


def _design(root: Path, seed: int = 0) -> NSDDesign:
    rng = np.random.default_rng(seed)
    # 10k indices: 1..400 shown 3×, 401..500 once, 501..600 twice → 1,500 trials = 2 sessions
    trials = np.concatenate([np.repeat(np.arange(1, 401), 3), np.arange(401, 501), np.repeat(np.arange(501, 601), 2)])
    rng.shuffle(trials)
    shared = rng.choice(np.arange(1, 73001), N_SHARED, replace=False)
    subjectim = np.zeros((8, 600), dtype=np.int64)
    for s in range(8):
        rest = rng.choice(np.setdiff1d(np.arange(1, 73001), shared), 600 - N_SHARED, replace=False)
        subjectim[s] = np.concatenate([shared, rest])
    d = root / "nsddata" / "experiments" / "nsd"
    d.mkdir(parents=True)
    savemat(d / "nsd_expdesign.mat", {"masterordering": trials[None], "subjectim": subjectim, "sharedix": shared[None]})
    return NSDDesign(trials, subjectim, shared)


def _volume_subject(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Session 1 as HDF5, session 2 as NIfTI; returns the int16 betas (1500, 24 voxels, F order) and labels."""
    import h5py

    rng = np.random.default_rng(1)
    betas = (rng.standard_normal((1500, int(np.prod(SHAPE)))) * 300 + 50).astype(np.int16)
    bdir = root / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"
    bdir.mkdir(parents=True)
    vol1 = betas[:750].reshape((750, *SHAPE), order="F")  # (t, X, Y, Z)
    with h5py.File(bdir / "betas_session01.hdf5", "w") as f:
        f["betas"] = vol1.transpose(0, 3, 2, 1)  # (t, Z, Y, X) as NSD's files read in h5py
    vol2 = betas[750:].reshape((750, *SHAPE), order="F").transpose(1, 2, 3, 0)  # (X, Y, Z, t)
    nib.save(nib.Nifti1Image(vol2, np.eye(4)), bdir / "betas_session02.nii.gz")
    labels = np.zeros(SHAPE, dtype=np.int32)
    labels[0, :, :] = 1
    labels[1, 0, :] = 2
    rdir = root / "nsddata" / "ppdata" / "subj01" / "func1pt8mm" / "roi"
    rdir.mkdir(parents=True)
    nib.save(nib.Nifti1Image(labels, np.eye(4)), rdir / "streams.nii.gz")
    (rdir / "streams.mgz.ctab").write_text("0 Unknown\n1 early\n2 ventral\n")
    return betas, labels.reshape(-1, order="F")


def _expected(betas: np.ndarray, design: NSDDesign, voxels: np.ndarray) -> dict[str, np.ndarray]:
    b = betas[:, voxels].astype(np.float64) / 300
    z = np.concatenate([(s - s.mean(0)) / s.std(0) for s in (b[:750], b[750:])])
    ims = design.trial_images(1)
    out = {}
    for im in np.unique(ims):
        rows = np.flatnonzero(ims == im)
        if rows.size >= 3:
            out[stimulus_id(im)] = z[rows].mean(0)
    return out


def test_volume_betas_hdf5_and_nifti(tmp_path: Path) -> None:
    design = _design(tmp_path)
    betas, labels = _volume_subject(tmp_path)
    brain = load_nsd(tmp_path, 1, space="func1pt8mm", rois=("streams",))
    voxels = np.flatnonzero(labels > 0)
    assert brain.n_voxels == voxels.size
    np.testing.assert_array_equal(brain.voxels["index"], voxels)
    assert set(brain.voxels["roi"]) == {"early", "ventral"}
    assert list(brain.voxels["roi:streams"]) == list(brain.voxels["roi"])  # one column per ROI file (contract 2)
    assert (brain.voxels["roi"] == "ventral").sum() == 2
    assert brain.space is not None and brain.space.shape == SHAPE
    exp = _expected(betas, design, voxels)
    assert brain.n_stimuli == 400 and sorted(brain.stimulus_ids) == sorted(exp)
    for k in [0, 17, 399]:
        np.testing.assert_allclose(brain.responses[k], exp[brain.stimulus_ids[k]], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(brain.n_repeats, 3)
    assert brain.ncsnr is not None and brain.ncsnr.shape == (voxels.size,)
    assert brain.noise_ceiling is not None
    shared = {stimulus_id(k) for k in design.sharedix}
    assert set(brain.splits["shared1000"]) == shared & set(brain.stimulus_ids)
    assert set(brain.splits["test"]) == set(brain.splits["shared515"])
    assert not set(brain.splits["train"]) & set(brain.splits["test"])
    assert len(brain.splits["train"]) + len(brain.splits["test"]) == 400


def test_single_session_and_min_repeats(tmp_path: Path) -> None:
    design = _design(tmp_path)
    _volume_subject(tmp_path)
    one = load_nsd(tmp_path, 1, sessions=[1], min_repeats=1, zscore=False, fmt="hdf5")
    ims = design.trial_images(1)[:TRIALS_PER_SESSION]
    assert one.n_stimuli == np.unique(ims).size
    assert one.n_repeats is not None and one.n_repeats.max() <= 3
    with pytest.raises(DataError, match="no image was shown 4"):
        load_nsd(tmp_path, 1, min_repeats=4)


def test_shared515_uses_completed_sessions(tmp_path: Path) -> None:
    design = _design(tmp_path)
    all_done = design.shared515(sessions_completed=(2,) * 8)
    assert set(all_done) == {k for k in design.sharedix if (design.trial_images(1) == k).sum() >= 3}
    fewer = design.shared515(sessions_completed=(2, 2, 2, 1, 2, 2, 2, 2))
    assert set(fewer) < set(all_done)  # subject 4 missed the second session: fewer complete shared images


def test_fsaverage_mgh(tmp_path: Path) -> None:
    design = _design(tmp_path)
    rng = np.random.default_rng(2)
    n_vert = 10
    bdir = tmp_path / "nsddata_betas" / "ppdata" / "subj01" / "fsaverage" / "betas_fithrf_GLMdenoise_RR"
    bdir.mkdir(parents=True)
    ldir = tmp_path / "nsddata" / "freesurfer" / "fsaverage" / "label"
    ldir.mkdir(parents=True)
    data = rng.standard_normal((2, n_vert, 1500)).astype(np.float32)
    for h, hemi in enumerate(("lh", "rh")):
        for s in (1, 2):
            chunk = data[h, :, (s - 1) * 750 : s * 750].reshape(n_vert, 1, 1, 750)
            nib.save(nib.MGHImage(chunk, np.eye(4)), bdir / f"{hemi}.betas_session{s:02d}.mgh")
        lab = np.zeros((n_vert, 1, 1), dtype=np.int32)
        lab[:4] = 5
        nib.save(nib.MGHImage(lab, np.eye(4)), ldir / f"{hemi}.streams.mgz")
    brain = load_nsd(tmp_path, 1, space="fsaverage", rois=["streams"])
    assert brain.n_voxels == 8
    assert list(brain.voxels["hemi"]) == ["lh"] * 4 + ["rh"] * 4
    assert set(brain.voxels["roi"]) == {"streams_5"}  # no ctab: numbered names
    flat = np.concatenate([data[0], data[1]])[[0, 1, 2, 3, 10, 11, 12, 13]].T  # (1500, 8)
    exp = _expected((flat * 300).astype(np.float64), design, np.arange(8))
    np.testing.assert_allclose(brain.responses[0], exp[brain.stimulus_ids[0]], rtol=1e-4, atol=1e-5)


def test_missing_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="nsd_expdesign"):
        load_nsd(tmp_path, 1)
    _design(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"streams\.nii\.gz"):
        load_nsd(tmp_path, 1)
    _volume_subject(tmp_path)
    with pytest.raises(DataError, match="test_split"):
        load_nsd(tmp_path, 1, test_split="shared100")
    with pytest.raises(DataError, match="subject 9"):
        load_nsd(tmp_path, 9)
    with pytest.raises(DatasetNotFoundError, match="session03"):
        load_nsd(tmp_path, 1, sessions=[3])
