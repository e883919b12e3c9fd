"""Per-voxel values back into brain space: NIfTI volumes (Fortran flat index, shape and affine kept) and fsaverage
``.mgh`` overlays (NSD's lh-then-rh ``index`` and the Algonauts/NSD ``hemi`` + ``fsaverage_vertex`` columns)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmvem.data.brain import BrainData, BrainSpace
from llmvem.data.brain_maps import (
    fsaverage_arrays,
    fsaverage_vertices,
    save_brain_map,
    save_fsaverage,
    save_result_maps,
    save_volume,
    volume_array,
)
from llmvem.data.files import load_brain, save_brain
from llmvem.errors import DataError

nib = pytest.importorskip("nibabel")
SHAPE = (7, 5, 4)  # X, Y, Z: no two equal, so a C-order or transposed placement cannot pass
AFFINE = np.array([[-1.8, 0, 0, 60.3], [0, 1.8, 0, -80.1], [0, 0, 1.8, -40.5], [0, 0, 0, 1]])
N_FS = 163_842


def _brain(voxels: pd.DataFrame, space: BrainSpace | None) -> BrainData:
    return BrainData(np.zeros((3, len(voxels))), ["a", "b", "c"], voxels.assign(roi="x"), name="subj", space=space)


def _volume_brain(rng: np.random.Generator, n: int = 17) -> tuple[BrainData, np.ndarray]:
    index = np.sort(rng.choice(int(np.prod(SHAPE)), n, replace=False))
    return _brain(pd.DataFrame({"index": index}), BrainSpace("volume", "func1pt8mm", SHAPE, AFFINE)), index


def test_volume_round_trip_fortran_index_shape_affine(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    brain, index = _volume_brain(rng)
    values = rng.standard_normal(index.size)
    path = save_volume(values, brain, tmp_path / "r.nii.gz")
    img = nib.load(path)
    assert img.shape == SHAPE and img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, AFFINE)
    data = np.asarray(img.dataobj)
    flat = data.reshape(-1, order="F")
    np.testing.assert_allclose(flat[index], values.astype(np.float32))
    assert np.isnan(np.delete(flat, index)).all()  # NaN outside the voxels
    i, j, k = np.unravel_index(index[3], SHAPE, order="F")  # the voxel's own (i, j, k), as NSD's files index it
    assert data[i, j, k] == np.float32(values[3])
    zero = np.asarray(nib.load(save_volume(values, brain, tmp_path / "r0.nii", fill=0.0)).dataobj)
    assert (np.delete(zero.reshape(-1, order="F"), index) == 0).all()


def test_several_maps_make_a_4d_volume() -> None:
    rng = np.random.default_rng(1)
    brain, index = _volume_brain(rng)
    values = rng.standard_normal((index.size, 3))
    vol = volume_array(values, brain)
    assert vol.shape == (*SHAPE, 3)
    np.testing.assert_allclose(vol.reshape(-1, 3, order="F")[index], values.astype(np.float32))


def test_space_kept_through_save_brain(tmp_path: Path) -> None:
    brain, index = _volume_brain(np.random.default_rng(2))
    loaded = load_brain(save_brain(brain, tmp_path / "b.npz"))
    values = np.arange(index.size, dtype=float)
    np.testing.assert_array_equal(volume_array(values, loaded), volume_array(values, brain))


def test_fsaverage_from_nsd_index_and_from_fsaverage_vertex(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    lh = np.sort(rng.choice(N_FS, 12, replace=False))
    rh = np.sort(rng.choice(N_FS, 9, replace=False))
    values = rng.standard_normal(lh.size + rh.size)
    space = BrainSpace("fsaverage", "fsaverage", n_vertices=N_FS)
    nsd = _brain(pd.DataFrame({"index": np.concatenate([lh, rh + N_FS])}), space)  # NSD: lh then rh
    algonauts = _brain(
        pd.DataFrame(
            {
                "hemi": ["lh"] * lh.size + ["rh"] * rh.size,
                "index": np.concatenate([np.arange(lh.size), np.arange(rh.size)]),  # challenge-space column
                "fsaverage_vertex": np.concatenate([lh, rh]),
            }
        ),
        space,
    )
    for brain in (nsd, algonauts):
        hemi, vertex = fsaverage_vertices(brain)
        np.testing.assert_array_equal(vertex, np.concatenate([lh, rh]))
        assert list(hemi) == ["lh"] * lh.size + ["rh"] * rh.size
        paths = save_fsaverage(values, brain, tmp_path / brain.voxels.columns[0] / "r.mgh")
        assert [p.name for p in paths] == ["lh.r.mgh", "rh.r.mgh"]
        for path, verts, vals in zip(paths, (lh, rh), (values[: lh.size], values[lh.size :]), strict=True):
            data = np.asarray(nib.load(path).dataobj)
            assert data.shape == (N_FS, 1, 1) and data.dtype.newbyteorder("=") == np.float32  # MGH: big-endian
            np.testing.assert_allclose(data.reshape(-1)[verts], vals.astype(np.float32))
            assert np.isnan(np.delete(data.reshape(-1), verts)).all()


def test_one_hemisphere_still_writes_both() -> None:
    space = BrainSpace("fsaverage", "fsaverage", n_vertices=N_FS)
    brain = _brain(pd.DataFrame({"hemi": ["rh", "rh"], "fsaverage_vertex": [5, 163_841]}), space)
    maps = fsaverage_arrays(np.array([1.0, 2.0]), brain)
    assert np.isnan(maps["lh"]).all() and maps["rh"][163_841] == 2.0 and maps["rh"][5] == 1.0


def test_result_maps_in_each_space(tmp_path: Path) -> None:
    vol, index = _volume_brain(np.random.default_rng(4))
    files = save_result_maps({"r": np.ones(index.size), "alpha": np.full(index.size, 10.0)}, vol, tmp_path / "v")
    assert {k: [p.name for p in v] for k, v in files.items()} == {"r": ["r.nii.gz"], "alpha": ["alpha.nii.gz"]}
    fs = _brain(pd.DataFrame({"hemi": ["lh"], "fsaverage_vertex": [3]}), BrainSpace("fsaverage", "fsaverage"))
    assert [p.name for p in save_brain_map(np.ones(1), fs, tmp_path / "s", "score")] == ["lh.score.mgh", "rh.score.mgh"]


def test_bad_input_is_one_clear_error(tmp_path: Path) -> None:
    vol, index = _volume_brain(np.random.default_rng(5))
    with pytest.raises(DataError, match="has no space"):
        save_volume(np.ones(index.size), _brain(pd.DataFrame({"index": index}), None), tmp_path / "x.nii.gz")
    with pytest.raises(DataError, match=r"expected \(17,\)"):
        volume_array(np.ones(5), vol)
    with pytest.raises(DataError, match="volume space"):
        fsaverage_arrays(np.ones(index.size), vol)
    outside = _brain(pd.DataFrame({"index": [0, int(np.prod(SHAPE))]}), vol.space)
    with pytest.raises(DataError, match="outside the volume"):
        volume_array(np.ones(2), outside)
    twice = _brain(pd.DataFrame({"index": [4, 4]}), vol.space)
    with pytest.raises(DataError, match="share a position"):
        volume_array(np.ones(2), twice)
    no_index = _brain(pd.DataFrame({"other": [1, 2]}), vol.space)
    with pytest.raises(DataError, match="no 'index' column"):
        volume_array(np.ones(2), no_index)
    fs = BrainSpace("fsaverage", "fsaverage", n_vertices=N_FS)
    unknown = _brain(pd.DataFrame({"hemi": ["lh", "lh"], "fsaverage_vertex": [-1, 7]}), fs)
    with pytest.raises(DataError, match="no fsaverage vertex"):
        fsaverage_arrays(np.ones(2), unknown)


def test_maps_of_load_nsd_on_fsaverage_land_on_its_vertices(tmp_path: Path) -> None:
    """NSD on fsaverage as load_nsd reads it ({lh,rh}.betas_sessionSS.mgh, fsaverage/label/{lh,rh}.streams.mgz)."""
    from scipy.io import savemat

    from llmvem.data.nsd import load_nsd

    rng = np.random.default_rng(6)
    n_vert = 12  # vertices per hemisphere of this small surface
    trials = np.repeat(np.arange(1, 251), 3)  # 750 trials: one session, each image three times
    rng.shuffle(trials)
    d = tmp_path / "nsddata" / "experiments" / "nsd"
    d.mkdir(parents=True)
    subjectim = np.tile(np.arange(1, 251), (8, 1))
    savemat(d / "nsd_expdesign.mat", {"masterordering": trials[None], "subjectim": subjectim,
                                      "sharedix": np.arange(1, 11)[None]})  # fmt: skip
    bdir = tmp_path / "nsddata_betas" / "ppdata" / "subj01" / "fsaverage" / "betas_fithrf_GLMdenoise_RR"
    ldir = tmp_path / "nsddata" / "freesurfer" / "fsaverage" / "label"
    bdir.mkdir(parents=True)
    ldir.mkdir(parents=True)
    labelled = {"lh": [1, 4, 11], "rh": [0, 7]}
    for hemi, verts in labelled.items():
        data = rng.standard_normal((n_vert, 1, 1, 750)).astype(np.float32)
        nib.save(nib.MGHImage(data, np.eye(4)), bdir / f"{hemi}.betas_session01.mgh")
        lab = np.zeros((n_vert, 1, 1), dtype=np.int32)
        lab[verts] = 5
        nib.save(nib.MGHImage(lab, np.eye(4)), ldir / f"{hemi}.streams.mgz")
    brain = load_nsd(tmp_path, 1, space="fsaverage", rois=["streams"], sessions=[1])
    values = np.arange(1.0, brain.n_voxels + 1)
    paths = save_fsaverage(values, brain, tmp_path / "maps" / "r")
    lh, rh = (np.asarray(nib.load(p).dataobj).reshape(-1) for p in paths)
    assert lh.size == rh.size == n_vert
    np.testing.assert_array_equal(lh[labelled["lh"]], [1, 2, 3])  # lh first, then rh, in vertex order
    np.testing.assert_array_equal(rh[labelled["rh"]], [4, 5])
    assert np.isnan(lh).sum() == n_vert - 3 and np.isnan(rh).sum() == n_vert - 2
