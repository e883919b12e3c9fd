"""load_nsd on fakes written in NSD's real layouts: per-voxel-chunked int16 HDF5 sessions, ROI volumes with
−1/0/1..N and lh./rh. versions, ctab files in freesurfer/subjNN/label, fsaverage atlases and probmap_<ROI> fractions,
shipped ncsnr files, beta versions; a signal planted per image so that a shift of one id is caught."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from llmvem.data.files import load_brain, save_brain
from llmvem.data.nsd import TRIALS_PER_SESSION, load_nsd, stimulus_id
from llmvem.errors import DataError, DatasetNotFoundError
from public_layouts import NSD_AFFINE as AFFINE
from public_layouts import NSD_GRID as GRID
from public_layouts import NSD_IMAGES as N_IMAGES
from public_layouts import NSD_SESSIONS as N_SESSIONS
from public_layouts import nsd_expected as _expected
from public_layouts import nsd_streams_labels as _labels
from public_layouts import write_nsd_design as _design
from public_layouts import write_nsd_volume as _volume

nib = pytest.importorskip("nibabel")
h5py = pytest.importorskip("h5py")


def _nsd_ncsnr(reps: np.ndarray, zscored: bool = True) -> np.ndarray:
    """NSD's ncsnr of (images, 3, voxels) trials, written from cvnlab/nsddatapaper export_noiseceiling.m and
    translatevmetric.m: σ_noise = sqrt(mean over images of the ddof-1 variance of the 3 trials), σ_signal² =
    1 − σ_noise² on z-scored betas (else the trials' total variance − σ_noise², GLMsingle example9); NaN images
    ignored (nanmean)."""
    noise_var = np.nanmean(reps.var(axis=1, ddof=1), axis=0)
    total = 1.0 if zscored else np.nanvar(reps.reshape(-1, reps.shape[2]), axis=0, ddof=1)
    return np.sqrt(np.clip(total - noise_var, 0, None)) / np.sqrt(noise_var)


def test_planted_signal_numbers_hemi_space(tmp_path: Path) -> None:
    design = _design(tmp_path)
    trials = _volume(tmp_path, design)
    brain = load_nsd(tmp_path, 1, rois=["streams"])
    cols = np.flatnonzero(_labels().reshape(-1, order="F") > 0)
    np.testing.assert_array_equal(brain.voxels["index"], cols)  # −1 and 0 excluded
    exp = _expected(trials, design, cols)
    assert brain.n_stimuli == N_IMAGES
    for k in (0, 1, 377, N_IMAGES - 1):
        np.testing.assert_allclose(brain.responses[k], exp[brain.stimulus_ids[k]], rtol=1e-5, atol=1e-5)
    # a shift of one id would pair each response with another image's signal
    ids = design.subjectim[0]
    by_id = dict(zip(brain.stimulus_ids, brain.responses.mean(axis=1), strict=True))
    own = np.corrcoef([by_id[stimulus_id(k)] for k in ids[:-1]], [exp[stimulus_id(k)].mean() for k in ids[:-1]])
    shifted = np.corrcoef([by_id[stimulus_id(k)] for k in ids[1:]], [exp[stimulus_id(k)].mean() for k in ids[:-1]])
    assert own[0, 1] > 0.999 and abs(shifted[0, 1]) < 0.2
    # ncsnr: NSD's formula over the 3 repeats of every image (1 − σ_noise² is the signal variance of z-scored betas)
    raw = trials[:, cols].astype(np.float64) / 300
    z = raw.reshape(N_SESSIONS, TRIALS_PER_SESSION, -1)
    z = ((z - z.mean(1, keepdims=True)) / z.std(1, keepdims=True)).reshape(-1, cols.size)
    ims = design.trial_images(1)
    first3 = [np.flatnonzero(ims == k)[:3] for k in np.unique(ims)]
    assert brain.ncsnr is not None
    np.testing.assert_allclose(brain.ncsnr, _nsd_ncsnr(np.stack([z[i] for i in first3])), rtol=1e-4)
    unscaled = load_nsd(tmp_path, 1, rois=["streams"], zscore=False)  # no z-scoring: the trials' own variance
    assert unscaled.ncsnr is not None
    np.testing.assert_allclose(unscaled.ncsnr, _nsd_ncsnr(np.stack([raw[i] for i in first3]), False), rtol=1e-4)
    assert list(brain.voxels["roi"]) == list(brain.voxels["roi:streams"])
    assert set(brain.voxels["roi"]) == {"early", "ventral"}  # names from freesurfer/subj01/label/streams.mgz.ctab
    assert set(brain.voxels.loc[brain.voxels["roi"] == "early", "hemi"]) == {"lh"}
    assert set(brain.voxels.loc[brain.voxels["roi"] == "ventral", "hemi"]) == {"rh"}
    assert brain.space is not None and brain.space.kind == "volume" and brain.space.shape == GRID
    np.testing.assert_allclose(brain.space.affine, AFFINE)
    back = load_brain(save_brain(brain, tmp_path / "b.npz"))
    assert back.space == brain.space and back.space is not None
    np.testing.assert_allclose(back.space.affine, AFFINE)


def test_hemisphere_prefixed_roi_named_from_unprefixed_ctab(tmp_path: Path) -> None:
    _volume(tmp_path, _design(tmp_path))
    brain = load_nsd(tmp_path, 1, rois=["rh.streams"], sessions=[1, 2, 3])
    assert set(brain.voxels["roi:rh.streams"]) == {"ventral"}  # not rh.streams_5
    assert set(brain.voxels["hemi"]) == {"rh"}


def test_volume_only_roi_named_from_templates_ctab(tmp_path: Path) -> None:
    """Volume-only ROIs (MTL, thalamus) keep their label table as nsddata/templates/<name>.ctab (no .mgz: they have
    no surface file); their voxels are named from it, not "thalamus_1"."""
    _volume(tmp_path, _design(tmp_path))
    rdir = tmp_path / "nsddata" / "ppdata" / "subj01" / "func1pt8mm" / "roi"
    lab = np.full(GRID, -1, dtype=np.int16)
    lab[2, 0] = 1
    lab[3, 1] = 2
    nib.save(nib.Nifti1Image(lab, AFFINE), rdir / "thalamus.nii.gz")
    tdir = tmp_path / "nsddata" / "templates"
    tdir.mkdir(parents=True)
    (tdir / "thalamus.ctab").write_text("0 Unknown\n1 LGN\n2 SC\n")
    brain = load_nsd(tmp_path, 1, rois=["thalamus"], sessions=[1, 2, 3])
    assert sorted(set(brain.voxels["roi:thalamus"])) == ["LGN", "SC"]


def test_missing_session_and_empty_voxel_sessions(tmp_path: Path) -> None:
    design = _design(tmp_path)
    trials = _volume(tmp_path, design)
    cols = np.flatnonzero(_labels().reshape(-1, order="F") > 0)
    bdir = tmp_path / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"
    x, y, z = np.unravel_index(cols[:2], GRID, order="F")
    with h5py.File(bdir / "betas_session02.hdf5", "r+") as f:  # voxel 0: no data in session 2 (edge voxel)
        f["betas"][:, z[0], y[0], x[0]] = 0
    with h5py.File(bdir / "betas_session01.hdf5", "r+") as f:  # voxel 1: no data at all
        f["betas"][:, z[1], y[1], x[1]] = 0
    for name in ("betas_session02.hdf5", "betas_session03.hdf5"):
        with h5py.File(bdir / name, "r+") as f:
            f["betas"][:, z[1], y[1], x[1]] = 0
    with pytest.warns(UserWarning) as rec:
        brain = load_nsd(tmp_path, 1, rois=["streams"])
    text = " ".join(str(w.message) for w in rec)
    assert "1 voxel(s) of subj01 have no data (all-zero or constant betas) in some" in text
    assert "1 voxel(s) of subj01 have no data in any loaded session" in text
    assert np.isnan(brain.responses[:, 1]).all() and np.isfinite(brain.responses[:, 2:]).all()
    only_in_2 = {stimulus_id(k) for k in design.session_images(1, 2)} - {
        stimulus_id(k) for s in (1, 3) for k in design.session_images(1, s)
    }
    assert {i for i, r in zip(brain.stimulus_ids, brain.responses[:, 0], strict=True) if np.isnan(r)} == only_in_2
    exp = _expected(trials, design, cols, drop={0: 1})
    for k in (0, 5, 600):
        np.testing.assert_allclose(brain.responses[k, 0], exp[brain.stimulus_ids[k]][0], rtol=1e-5, atol=1e-5)
    assert brain.ncsnr is not None and brain.ncsnr[0] > 0.5  # from the images whose 3 repeats have data
    b = trials[:, cols[:1]].astype(np.float64) / 300
    z = np.concatenate([(s - s.mean(0)) / s.std(0) for s in np.split(b, N_SESSIONS)])
    z[TRIALS_PER_SESSION : 2 * TRIALS_PER_SESSION] = np.nan  # session 2 has no data at voxel 0
    ims = design.trial_images(1)
    reps = np.stack([z[np.flatnonzero(ims == k)[:3]] for k in np.unique(ims)])
    np.testing.assert_allclose(brain.ncsnr[0], _nsd_ncsnr(reps)[0], rtol=1e-4)  # NSD's nanmean over images
    (bdir / "betas_session03.hdf5").unlink()
    lost = np.unique(design.session_images(1, 3)).size
    with warnings.catch_warnings(record=True) as rec2:
        warnings.simplefilter("always")
        partial = load_nsd(tmp_path, 1, rois=["streams"], min_repeats=2)
    assert any(
        re.search(rf"1 of 3 session\(s\).*betas_session03\.hdf5.*{lost} image\(s\) lost", str(w.message)) for w in rec2
    )
    assert partial.n_stimuli < N_IMAGES
    with pytest.raises(DatasetNotFoundError, match="betas_session03"):
        load_nsd(tmp_path, 1, rois=["streams"], missing_sessions="error")


def test_fsaverage_atlas_probmap_and_shipped_ncsnr(tmp_path: Path) -> None:
    design = _design(tmp_path)
    n_vert = 12
    rng = np.random.default_rng(3)
    bdir = tmp_path / "nsddata_betas" / "ppdata" / "subj01" / "fsaverage" / "betas_fithrf"
    bdir.mkdir(parents=True)
    ldir = tmp_path / "nsddata" / "freesurfer" / "fsaverage" / "label"
    ldir.mkdir(parents=True)
    sdir = tmp_path / "nsddata" / "freesurfer" / "subj01" / "label"
    sdir.mkdir(parents=True)
    (sdir / "floc-faces.mgz.ctab").write_text("0 Unknown\n1 OFA\n2 FFA-1\n3 FFA-2\n")
    (ldir / "nsdgeneral.mgz.ctab").write_text("0 Unknown\n1 nsdgeneral\n")
    data = rng.standard_normal((2, n_vert, N_SESSIONS * TRIALS_PER_SESSION)).astype(np.float32)
    fraction = np.array([0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0, 0.5, 0, 0], dtype=np.float32)
    for h, hemi in enumerate(("lh", "rh")):
        for s in range(N_SESSIONS):
            chunk = data[h, :, s * TRIALS_PER_SESSION : (s + 1) * TRIALS_PER_SESSION].reshape(n_vert, 1, 1, -1)
            nib.save(nib.MGHImage(chunk, np.eye(4)), bdir / f"{hemi}.betas_session{s + 1:02d}.mgh")
        gen = np.zeros((n_vert, 1, 1), dtype=np.int32)
        gen[:3] = 1
        gen[-1] = -1
        nib.save(nib.MGHImage(gen, np.eye(4)), ldir / f"{hemi}.nsdgeneral.mgz")
        nib.save(nib.MGHImage(fraction.reshape(-1, 1, 1), np.eye(4)), ldir / f"{hemi}.probmap_FFA-1.mgz")
        nib.save(nib.MGHImage(np.full((n_vert, 1, 1), 0.5 + h, np.float32), np.eye(4)), bdir / f"{hemi}.ncsnr.mgh")
    brain = load_nsd(tmp_path, 1, space="fsaverage", rois=["nsdgeneral"], betas="betas_fithrf")
    assert brain.n_voxels == 6 and set(brain.voxels["roi:nsdgeneral"]) == {"nsdgeneral"}
    assert (
        list(brain.voxels["fsaverage_vertex"]) == [0, 1, 2] * 2
        and list(brain.voxels["hemi"]) == ["lh"] * 3 + ["rh"] * 3
    )
    assert brain.space is not None and brain.space.kind == "fsaverage" and brain.space.n_vertices == n_vert
    with pytest.raises(DataError, match=r"probability map.*roi_threshold"):
        load_nsd(tmp_path, 1, space="fsaverage", rois=["probmap_FFA-1"], betas="betas_fithrf")
    faces = load_nsd(
        tmp_path, 1, space="fsaverage", rois=["probmap_FFA-1"], betas="betas_fithrf", roi_threshold=0.5,
        ncsnr="shipped",
    )  # fmt: skip
    assert faces.n_voxels == 2 * 6  # fractions ≥ 0.5, not only the 1.0 vertices
    assert set(faces.voxels["roi"]) == {"FFA-1"}
    np.testing.assert_array_equal(faces.ncsnr, [0.5] * 6 + [1.5] * 6)
    exp = _expected((np.concatenate([data[0], data[1]])[faces.voxels["index"]].T * 300), design,
                    np.arange(faces.n_voxels))  # fmt: skip
    np.testing.assert_allclose(faces.responses[3], exp[faces.stimulus_ids[3]], rtol=1e-4, atol=1e-5)
    with pytest.raises(DatasetNotFoundError, match=r"probmap_FFA-1"):
        load_nsd(tmp_path, 1, space="fsaverage", rois=["floc-faces"], betas="betas_fithrf")


def test_one_clear_error_each(tmp_path: Path) -> None:
    design = _design(tmp_path)
    _volume(tmp_path, design)
    with pytest.raises(DatasetNotFoundError, match=r"subj02.*found \['subj01'\]"):
        load_nsd(tmp_path, 2, rois=["streams"])
    ldir = tmp_path / "nsddata" / "freesurfer" / "fsaverage" / "label"
    ldir.mkdir(parents=True)
    nib.save(nib.MGHImage(np.ones((4, 1, 1), np.int32), np.eye(4)), ldir / "lh.Kastner2015.mgz")
    with pytest.raises(DatasetNotFoundError, match=r"exists on fsaverage.*space=.fsaverage."):
        load_nsd(tmp_path, 1, rois=["Kastner2015"])
    rdir = tmp_path / "nsddata" / "ppdata" / "subj01" / "func1pt8mm" / "roi"
    nib.save(nib.Nifti1Image(np.minimum(_labels(), 0), AFFINE), rdir / "nsdgeneral.nii.gz")
    with pytest.raises(DataError, match="label no voxel"):
        load_nsd(tmp_path, 1, rois=["nsdgeneral"])
    with pytest.raises(DatasetNotFoundError, match=r"beta version.*betas_assumehrf"):
        load_nsd(tmp_path, 1, rois=["streams"], betas="betas_assumehrf")
    with pytest.raises(DataError, match="betas must be one of"):
        load_nsd(tmp_path, 1, rois=["streams"], betas="betas_glmsingle")
    bdir = tmp_path / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"
    with h5py.File(bdir / "betas_session01.hdf5", "w") as f:
        f.create_dataset("betas", shape=(TRIALS_PER_SESSION, *GRID[::-1]), dtype=np.int32)
    with warnings.catch_warnings(), pytest.raises(DataError, match="int32"):
        warnings.simplefilter("ignore")
        load_nsd(tmp_path, 1, rois=["streams"])
