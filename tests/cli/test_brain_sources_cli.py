"""``llmvem evaluate`` with brain sources that carry their own options, several NSD subjects in one run, and the
per-voxel results written back into each brain's space.

Fakes in the public layouts (as ``load_nsd`` reads them, NSD data manual): ``nsddata/experiments/nsd/
nsd_expdesign.mat`` (``masterordering``, ``subjectim``, ``sharedix``), int16 betas ``betas_sessionSS.hdf5``
((750, Z, Y, X) in h5py, chunked per voxel, percent signal change × 300) for two subjects, ROI volumes
``nsddata/ppdata/subjNN/func1pt8mm/roi/streams.nii.gz`` (−1 non-cortical, 0, 1..N) with an affine that is not the
identity and ``streams.mgz.ctab``; an Algonauts 2023 subject folder as ``challenge_data_preparation.py`` writes it
(int all-vertices masks over 163,842 vertices holding 2s, pickled dict mappings, 0-based ids in the image names).
Each image carries a planted signal, so the encoding finds it (mean r > 0.5).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app

h5py = pytest.importorskip("h5py")
nib = pytest.importorskip("nibabel")
savemat = pytest.importorskip("scipy.io").savemat

runner = CliRunner()
SHAPE = (5, 4, 3)  # X, Y, Z
AFFINE = np.array([[-1.8, 0, 0, 40.0], [0, 1.8, 0, -50.0], [0, 0, 1.8, -20.0], [0, 0, 0, 1]])
N_SHARED, N_IMAGES, DIM, N_FS = 30, 600, 4, 163_842


def _signal(nsd73k: int) -> np.ndarray:
    return np.random.default_rng(nsd73k).standard_normal(DIM)


def _nsd_tree(root: Path, rng: np.random.Generator) -> set[int]:
    """Two subjects, two sessions each; returns every 73k id shown."""
    trials = np.concatenate([np.repeat(np.arange(1, 401), 3), np.arange(401, 501), np.repeat(np.arange(501, 601), 2)])
    rng.shuffle(trials)  # 1,500 trials: 10k indices 1..400 three times (the shared ones among them)
    shared = rng.choice(np.arange(1, 73_001), N_SHARED, replace=False)
    subjectim = np.zeros((8, N_IMAGES), dtype=np.int64)
    for s in range(8):
        rest = rng.choice(np.setdiff1d(np.arange(1, 73_001), shared), N_IMAGES - N_SHARED, replace=False)
        subjectim[s] = np.concatenate([shared, rest])
    design = root / "nsddata" / "experiments" / "nsd"
    design.mkdir(parents=True)
    savemat(design / "nsd_expdesign.mat", {"masterordering": trials[None], "subjectim": subjectim,
                                           "sharedix": shared[None]})  # fmt: skip
    labels = np.zeros(SHAPE, dtype=np.int32)
    labels[1:4, 1:3, :] = 1
    labels[1:4, 3, :] = 2
    labels[0, 0, 0] = -1
    for subj in (1, 2):
        rdir = root / "nsddata" / "ppdata" / f"subj{subj:02d}" / "func1pt8mm" / "roi"
        rdir.mkdir(parents=True)
        nib.save(nib.Nifti1Image(labels, AFFINE), rdir / "streams.nii.gz")
        (rdir / "streams.mgz.ctab").write_text("0 Unknown\n1 early\n2 ventral\n")
        w = rng.standard_normal((DIM, int(np.prod(SHAPE))))
        ims = subjectim[subj - 1, trials - 1]
        y = np.stack([_signal(int(k)) for k in ims]) @ w + 0.5 * rng.standard_normal((trials.size, w.shape[1]))
        betas = np.round(y * 300).astype(np.int16)  # (1500, voxels in Fortran order)
        bdir = root / "nsddata_betas" / "ppdata" / f"subj{subj:02d}" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"
        bdir.mkdir(parents=True)
        for s in (0, 1):
            vol = betas[s * 750 : (s + 1) * 750].reshape((750, *SHAPE), order="F").transpose(0, 3, 2, 1)
            with h5py.File(bdir / f"betas_session{s + 1:02d}.hdf5", "w") as f:
                f.create_dataset("betas", data=vol, chunks=(750, 1, 1, 1))
    return set(subjectim[:2].ravel().tolist())


def _algonauts(subj: Path, rng: np.random.Generator) -> set[int]:
    """An Algonauts subject folder (training split, ``streams`` only); returns its 73k ids."""
    from PIL import Image

    cond = np.sort(rng.choice(73_000, 60, replace=False))  # 0-based brick rows, as the script names them
    img_dir = subj / "training_split" / "training_images"
    img_dir.mkdir(parents=True)
    for i, c in enumerate(cond):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(img_dir / f"train-{i + 1:04d}_nsd-{c:05d}.png")
    masks, fmri = subj / "roi_masks", subj / "training_split" / "training_fmri"
    masks.mkdir(parents=True)
    fmri.mkdir(parents=True)
    np.save(masks / "mapping_streams.npy", {0: "Unknown", 1: "early", 5: "ventral"})
    for hemi in ("lh", "rh"):
        allv = np.zeros(N_FS, dtype=np.int64)
        verts = np.sort(rng.choice(N_FS, 40, replace=False))
        allv[verts] = rng.integers(1, 3, verts.size)  # nsdgeneral + RSC: 1s and 2s
        np.save(masks / f"{hemi}.all-vertices_fsaverage_space.npy", allv)
        np.save(masks / f"{hemi}.streams_challenge_space.npy", np.repeat([1, 5], 20))
        y = np.stack([_signal(int(c) + 1) for c in cond]) @ rng.standard_normal((DIM, 40))
        np.save(fmri / f"{hemi}_training_fmri.npy", (y + 0.5 * rng.standard_normal(y.shape)).astype(np.float32))
    return {int(c) + 1 for c in cond}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("brain_sources")
    rng = np.random.default_rng(0)
    ids = sorted(_nsd_tree(base / "nsd", rng) | _algonauts(base / "alg" / "subj01", rng))
    np.save(base / "feats.npy", np.stack([_signal(k) for k in ids]).astype(np.float32))
    (base / "feats.ids.txt").write_text("".join(f"nsd-{k:05d}\n" for k in ids))
    return {"nsd": base / "nsd", "alg": base / "alg" / "subj01", "feats": base / "feats.npy"}


def _run(args: list[str], out: Path) -> Path:
    res = runner.invoke(app, ["evaluate", "encoding", "--no-progress", "--cv", "gcv", "--output-dir", str(out), *args])
    assert res.exit_code == 0, res.output
    (run,) = sorted(out.glob("evaluate-encoding-*"))
    return run


def _maps(run: Path) -> dict:
    """The encoding maps a run lists in metrics.json (``info.evaluations.encoding.maps``)."""
    return json.loads((run / "metrics.json").read_text())["info"]["evaluations"]["encoding"]["maps"]


def test_two_nsd_subjects_in_one_run_with_maps(world: dict[str, Path], tmp_path: Path) -> None:
    run = _run(["-f", str(world["feats"]), "-b", f"nsd:{world['nsd']}?subject=1-2&rois=streams"], tmp_path)
    per = pd.read_csv(run / "encoding_subjects.csv")
    subjects = ["nsd-subj01-func1pt8mm", "nsd-subj02-func1pt8mm"]
    assert list(per["subject"].unique()) == subjects
    mean = pd.read_csv(run / "encoding.csv").set_index("roi")
    assert (mean["n_subjects"] == 2).all()
    np.testing.assert_allclose(mean.loc["ventral", "mean_r"], per[per["roi"] == "ventral"]["mean_r"].mean())
    assert (per["mean_r"] > 0.5).all()
    metrics = json.loads((run / "metrics.json").read_text())
    voxel_r = np.load(run / "encoding_voxel_r.npz")
    labels = np.asarray(nib.load(world["nsd"] / "nsddata/ppdata/subj01/func1pt8mm/roi/streams.nii.gz").dataobj)
    index = np.flatnonzero(labels.reshape(-1, order="F") > 0)  # the ROI voxels, Fortran order (as NSD's)
    for subject in subjects:
        files = metrics["info"]["evaluations"]["encoding"]["maps"][f"feats | {subject}"]
        assert files["r"] == [f"maps/{subject}/feats/r.nii.gz"] and {"score", "alpha"} <= set(files)
        img = nib.load(run / files["r"][0])
        assert img.shape == SHAPE
        np.testing.assert_allclose(img.affine, AFFINE)
        flat = np.asarray(img.dataobj).reshape(-1, order="F")
        np.testing.assert_allclose(flat[index], voxel_r[f"feats__{subject}"], rtol=1e-6)
        assert np.isnan(np.delete(flat, index)).all()
        alpha = np.asarray(nib.load(run / files["alpha"][0]).dataobj).reshape(-1, order="F")[index]
        assert np.isfinite(alpha).all() and (alpha > 0).all()


def test_config_mapping_and_old_subject_flag(world: dict[str, Path], tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"evaluate:\n  inputs:\n    features: [{world['feats']}]\n    brain:\n"
        f"      - {{kind: nsd, path: {world['nsd']}, subject: [2], rois: [streams], min_repeats: 3}}\n"
    )
    from_config = pd.read_csv(_run(["-c", str(cfg)], tmp_path / "a") / "encoding_subjects.csv")
    old_flag = pd.read_csv(_run(["-f", str(world["feats"]), "-b", str(world["nsd"]), "--subject", "2"], tmp_path / "b")
                           / "encoding_subjects.csv")  # fmt: skip
    assert list(from_config["subject"].unique()) == ["nsd-subj02-func1pt8mm"]
    pd.testing.assert_frame_equal(from_config, old_flag)


def test_algonauts_options_and_fsaverage_maps(world: dict[str, Path], tmp_path: Path) -> None:
    spec = f"algonauts:{world['alg']}?hemispheres=lh&roi_classes=streams"
    run = _run(["-f", str(world["feats"]), "-b", spec], tmp_path)
    per = pd.read_csv(run / "encoding_subjects.csv")
    assert per.set_index("roi")["n_voxels"].to_dict() == {"early": 20, "ventral": 20}  # lh only: 40 of 80
    files = _maps(run)["feats | algonauts2023-subj01"]["r"]
    assert files == ["maps/algonauts2023-subj01/feats/lh.r.mgh", "maps/algonauts2023-subj01/feats/rh.r.mgh"]
    lh = np.asarray(nib.load(run / files[0]).dataobj).reshape(-1)
    verts = np.flatnonzero(np.load(world["alg"] / "roi_masks" / "lh.all-vertices_fsaverage_space.npy"))
    r = np.load(run / "encoding_voxel_r.npz")["feats__algonauts2023-subj01"]
    np.testing.assert_allclose(lh[verts], r, rtol=1e-6)
    assert np.isnan(np.delete(lh, verts)).all()
    assert np.isnan(np.asarray(nib.load(run / files[1]).dataobj)).all()  # rh not loaded


@pytest.mark.parametrize(
    ("brain", "message"),
    [
        ("hcp:/data/hcp", "unknown kind 'hcp'"),
        ("nsd:{nsd}?subject", "is not key=value"),
        ("nsd:{nsd}?subject=9", "not an NSD subject (1–8)"),
        ("nsd:{nsd}?subjects=2", "unknown key 'subjects' for nsd; valid keys: subject, space"),
        ("algonauts:{alg}?hemispheres=xx", "hemispheres"),
    ],
)
def test_bad_sources_exit_2_with_one_line(world: dict[str, Path], tmp_path: Path, brain: str, message: str) -> None:
    spec = brain.format(nsd=world["nsd"], alg=world["alg"])
    res = runner.invoke(app, ["evaluate", "encoding", "-f", str(world["feats"]), "-b", spec,
                              "--output-dir", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert message in text and "Traceback" not in res.output
    assert text.startswith("error:")
    assert not list(tmp_path.glob("evaluate-*"))


def test_rsa_and_decode_over_the_subjects_of_one_source(world: dict[str, Path], tmp_path: Path) -> None:
    brain = f"nsd:{world['nsd']}?subject=1,2&rois=streams"
    subjects = ["nsd-subj01-func1pt8mm", "nsd-subj02-func1pt8mm"]
    res = runner.invoke(app, ["evaluate", "rsa", "--no-progress", "-f", str(world["feats"]), "-b", brain,
                              "--output-dir", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = tmp_path.glob("evaluate-rsa-*")
    per = pd.read_csv(run / "rsa_subjects.csv")
    table = pd.read_csv(run / "rsa.csv").set_index("target")
    for roi in ("early", "ventral"):
        rows = per[per["target"] == roi]
        assert list(rows["subject"]) == subjects
        np.testing.assert_allclose(rows["score"].mean(), table.loc[roi, "mean"])
    res = runner.invoke(app, ["evaluate", "decode", "--no-progress", "--cv", "gcv", "-e", str(world["feats"]),
                              "-b", brain, "--output-dir", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = tmp_path.glob("evaluate-decode-*")
    dec = pd.read_csv(run / "decode.csv")
    assert list(dec["subject"]) == subjects
    mean = json.loads((run / "metrics.json").read_text())["results"]["decode"]["embeddings"]["all"]
    np.testing.assert_allclose(mean["identification_accuracy"], dec["identification_accuracy"].mean())
    assert mean["n_subjects"] == 2 and list(mean["subjects"]) == subjects


def test_vertices_unknown_scores_stand_and_maps_are_skipped(world: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    subj = tmp_path / "alg" / "subj01"
    shutil.copytree(world["alg"], subj)
    for hemi in ("lh", "rh"):
        (subj / "roi_masks" / f"{hemi}.all-vertices_fsaverage_space.npy").unlink()
    with pytest.warns(RuntimeWarning, match="no brain maps for 'algonauts2023-subj01'.*no fsaverage vertex"):
        run = _run(["-f", str(world["feats"]), "-b", f"algonauts:{subj}?roi_classes=streams"], tmp_path / "out")
    assert (pd.read_csv(run / "encoding_subjects.csv")["mean_r"] > 0.5).all()
    assert _maps(run) == {} and not (run / "maps").exists()
