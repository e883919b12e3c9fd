"""The README's NSD and Algonauts 2023 workflows, run from the CLI on fakes in the public layouts.

One set of 100 NSD images is written three ways, as their users hold them: rows of ``imgBrick`` in
``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5`` (73,000 × 425 × 425 × 3 uint8, chunked per image; only these rows
written), NSD betas of session 1 (int16 HDF5 (750, Z, Y, X) chunked per voxel, percent signal change × 300, as
``betas_fithrf_GLMdenoise_RR/betas_session01.hdf5``) with ``nsd_expdesign.mat`` of the real keys and shapes, and an
Algonauts 2023 subject folder written as ``challenge_data_preparation.py`` writes it (PNGs exported from the brick and
named by their 0-based row, int masks over 163,842 fsaverage vertices that contain 2s, pickled dict mappings).

Each image's responses carry a planted signal of its own pixels (mean colour), so features paired with the wrong
image — a shift of one id — lose it: the workflows must find it (ventral r > 0.5) and a shifted file must fail.

The README extracts a subject's 10,000 images with ``--subset subj01``; here ``--subset ids.txt`` lists the 100
images the fake brain data holds (10,000 images take minutes on a CI CPU). Everything else is as documented.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.nsd_ids import from_index, nsd_id

h5py = pytest.importorskip("h5py")
nib = pytest.importorskip("nibabel")
savemat = pytest.importorskip("scipy.io").savemat

runner = CliRunner()
GRID = (6, 5, 4)  # X, Y, Z of the fake 1.8-mm volume
N_SHARED, N_TRAIN = 30, 70  # shared images (NSD's test split) and subject-only images, each shown 3× in session 1
N_VERT = 163_842


_Y, _X = np.mgrid[0:425, 0:425] / 425.0


def _image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 425 × 425 RGB image of one random colour with a grating, and its signal (mean colour, centred)."""
    colour = rng.uniform(30, 225, 3)
    texture = 20 * np.sin(2 * np.pi * (rng.uniform(1, 4) * _X + rng.uniform(1, 4) * _Y))[..., None]
    pixels = np.clip(colour + texture, 0, 255).astype(np.uint8)
    return pixels, (pixels.reshape(-1, 3).mean(0) - 127.5) / 60.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An NSD root (design, stimuli file, session-1 betas, streams ROI) and an Algonauts folder of the same images."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("nsd")
    shared = np.sort(rng.choice(np.arange(1, 73_001), 1000, replace=False))
    others = np.setdiff1d(np.arange(1, 73_001), shared)
    subjectim = np.stack([np.concatenate([shared, rng.choice(others, 9000, replace=False)]) for _ in range(8)])
    # session 1: 10k indices 1..40 (shared) and 1001..1110 three times each, 2001..2300 once; the rest random
    head = np.concatenate([np.repeat(np.r_[1 : N_SHARED + 1, 1001 : 1001 + N_TRAIN], 3), np.arange(2001, 2301)])
    masterordering = np.concatenate([rng.permutation(head), rng.integers(1, 10_001, 30_000 - head.size)])
    d = root / "nsddata" / "experiments" / "nsd"
    d.mkdir(parents=True)
    savemat(d / "nsd_expdesign.mat", {"masterordering": masterordering[None], "subjectim": subjectim,
                                      "sharedix": shared[None]})  # fmt: skip
    images = np.unique(subjectim[0, masterordering[:750] - 1])  # 73k ids shown in session 1 (1-based)

    brick_path = root / "nsddata_stimuli" / "stimuli" / "nsd" / "nsd_stimuli.hdf5"
    brick_path.parent.mkdir(parents=True)
    signal: dict[int, np.ndarray] = {}
    pixels: dict[int, np.ndarray] = {}
    with h5py.File(brick_path, "w") as f:
        ds = f.create_dataset("imgBrick", (73_000, 425, 425, 3), np.uint8, chunks=(1, 425, 425, 3), compression="gzip")
        for k in images:
            pixels[k], signal[k] = _image(rng)
            ds[k - 1] = pixels[k]

    # ROI volume: −1 outside cortex, 0 unlabelled, 1 early, 5 ventral; names in freesurfer/subj01/label
    labels = np.zeros(GRID, dtype=np.int32)
    labels[0] = -1
    labels[1:3] = 1
    labels[3:] = 5
    rdir = root / "nsddata" / "ppdata" / "subj01" / "func1pt8mm" / "roi"
    rdir.mkdir(parents=True)
    nib.save(nib.Nifti1Image(labels, np.diag([1.8, 1.8, 1.8, 1.0])), rdir / "streams.nii.gz")
    ldir = root / "nsddata" / "freesurfer" / "subj01" / "label"
    ldir.mkdir(parents=True)
    (ldir / "streams.mgz.ctab").write_text("0 Unknown\n1 early\n2 midventral\n3 midlateral\n4 midparietal\n"
                                           "5 ventral\n6 lateral\n7 parietal\n")  # fmt: skip

    n_vox = int(np.prod(GRID))
    weights = rng.normal(0, 1, (3, n_vox)) * (labels.reshape(-1, order="F") == 5)  # only ventral carries the signal
    trial_ims = subjectim[0, masterordering[:750] - 1]
    psc = np.stack([signal[k] @ weights for k in trial_ims]) + rng.normal(0, 0.7, (750, n_vox))
    betas = np.round(psc * 300).astype(np.int16).reshape((750, *GRID), order="F").transpose(0, 3, 2, 1)
    bdir = root / "nsddata_betas" / "ppdata" / "subj01" / "func1pt8mm" / "betas_fithrf_GLMdenoise_RR"
    bdir.mkdir(parents=True)
    with h5py.File(bdir / "betas_session01.hdf5", "w") as f:
        f.create_dataset("betas", data=betas, chunks=(750, 1, 1, 1))
    three = np.unique(trial_ims[np.isin(trial_ims, images) & (pd.Series(trial_ims).map(
        pd.Series(trial_ims).value_counts()).to_numpy() >= 3)])  # fmt: skip
    return {"root": root, "brick": brick_path, "images": three, "signal": signal, "pixels": pixels,
            "algonauts": _algonauts(tmp_path_factory.mktemp("alg") / "subj01", three, signal, pixels, rng)}  # fmt: skip


def _algonauts(subj: Path, ids73k: np.ndarray, signal: dict, pixels: dict, rng: np.random.Generator) -> Path:
    """``challenge_data_preparation.py``'s output for these images (training split only, as the challenge shipped)."""
    from PIL import Image

    img_dir = subj / "training_split" / "training_images"
    img_dir.mkdir(parents=True)
    for i, k in enumerate(sorted(ids73k)):
        Image.fromarray(pixels[k]).convert("RGB").save(img_dir / f"train-{i + 1:04d}_nsd-{k - 1:05d}.png")
    masks = subj / "roi_masks"
    masks.mkdir(parents=True)
    fmri_dir = subj / "training_split" / "training_fmri"
    fmri_dir.mkdir(parents=True)
    classes = {"prf-visualrois": "V1v", "floc-bodies": "EBA", "floc-faces": "FFA-1", "floc-places": "PPA",
               "floc-words": "VWFA-1", "streams": "ventral"}  # fmt: skip
    for h, hemi in enumerate(("lh", "rh")):
        allv = np.zeros(N_VERT, dtype=np.int64)
        verts = np.sort(rng.choice(N_VERT, 60, replace=False))
        allv[verts] = rng.integers(1, 3, verts.size)  # nsdgeneral + RSC: 1s and 2s
        np.save(masks / f"{hemi}.all-vertices_fsaverage_space.npy", allv)
        for cls, name in classes.items():
            lab = np.zeros(verts.size, dtype=np.int64)
            lab[:30] = 1
            np.save(masks / f"{hemi}.{cls}_challenge_space.npy", lab)
            if h == 0:
                np.save(masks / f"mapping_{cls}.npy", {0: "Unknown", 1: name})
        w = rng.normal(0, 1, (3, verts.size))
        w[:, 30:] = 0  # only the labelled half carries the signal
        y = np.stack([signal[k] @ w for k in sorted(ids73k)]) + rng.normal(0, 0.4, (len(ids73k), verts.size))
        np.save(fmri_dir / f"{hemi}_training_fmri.npy", y.astype(np.float32))
    return subj


def _ok(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


def _encoding(run_parent: Path) -> pd.DataFrame:
    runs = sorted(run_parent.glob("evaluate-encoding-*"))
    assert runs, f"no run directory in {run_parent}"
    return pd.read_csv(runs[-1] / "encoding.csv")


def test_nsd_workflow_from_the_stimulus_file(world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ids_file = tmp_path / "subj01_images.txt"
    ids_file.write_text("\n".join(nsd_id(k) for k in world["images"]) + "\n")
    _ok(["features", str(world["brick"]), "--subset", str(ids_file), "-o", "subj01.npy"])
    written = Path("subj01.ids.txt").read_text().split()
    assert written == [nsd_id(k) for k in world["images"]]

    source = f"nsd:{world['root']}?subject=1&rois=streams&sessions=1"  # the fake holds session 1 only
    _ok(["evaluate", "encoding", "-f", "effnet=subj01.npy", "-b", source])
    table = _encoding(tmp_path / "runs")
    ventral = table[table["roi"].astype(str).str.contains("ventral")]
    assert not ventral.empty, table
    assert float(ventral["mean_r"].iloc[0]) > 0.5, table
    early = table[table["roi"].astype(str) == "early"]
    assert float(early["mean_r"].iloc[0]) < 0.3, table  # no signal planted there
    r_map = next((tmp_path / "runs").glob("evaluate-encoding-*/maps/*/effnet/r.nii.gz"))
    vol = np.asarray(nib.load(str(r_map)).dataobj)
    assert vol.shape == GRID and np.isnan(vol[0]).all()  # −1 (non-cortical) voxels are not in the data
    assert np.nanmean(vol[3:]) > 0.5 > np.nanmean(vol[1:3])  # ventral slab lit, early not

    # features keyed 0-based (as a row index) pair each response with the next image: refused, saying why
    shifted = tmp_path / "shifted.npy"
    np.save(shifted, np.load("subj01.npy"))
    shifted.with_suffix(".ids.txt").write_text("\n".join(nsd_id(k - 1) for k in world["images"]) + "\n")
    res = runner.invoke(app, ["evaluate", "encoding", "-f", f"x={shifted}", "-b", source])
    assert res.exit_code != 0
    assert "shift" in res.output, res.output


@pytest.mark.filterwarnings("ignore:variance_partition. negative estimates")
def test_nsd_partition_writes_parts_and_maps_in_the_subject_volume(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--partition on the NSD layout: a space carrying the planted signal (the images' mean colour, + 2 noise
    columns) against one of noise; its unique part lights the ventral slab of the subject's volume."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(11)
    ids = [nsd_id(k) for k in world["images"]]
    colour = np.stack([world["signal"][k] for k in world["images"]])
    spaces = {"vision": np.hstack([colour, rng.standard_normal((len(ids), 2))]),
              "language": rng.standard_normal((len(ids), 4))}  # fmt: skip
    for name, x in spaces.items():
        np.save(f"{name}.npy", x.astype(np.float32))
        Path(f"{name}.ids.txt").write_text("\n".join(ids) + "\n")
    source = f"nsd:{world['root']}?subject=1&rois=streams&sessions=1"
    _ok(["evaluate", "encoding", "-f", "vision=vision.npy", "-f", "language=language.npy", "-b", source,
         "--partition", "--cv", "gcv"])  # fmt: skip
    run = next((tmp_path / "runs").glob("evaluate-encoding-*"))
    table = pd.read_csv(run / "partition.csv")
    table["roi"] = table["roi"].astype(str)
    ventral = table[table["roi"].str.contains("ventral")].iloc[0]
    early = table[table["roi"] == "early"].iloc[0]
    assert ventral["unique:vision"] > 0.3 > early["unique:vision"] + 0.2, table
    assert abs(ventral["unique:language"]) < 0.1 and abs(ventral["shared"]) < 0.1, table
    assert np.isfinite(ventral["ceiling"]) and ventral["ceiling_bound"] == "noise_ceiling_r2"
    metrics = json.loads((run / "metrics.json").read_text())
    (brain_name,) = metrics["info"]["evaluations"]["partition"]["maps"]
    files = metrics["info"]["evaluations"]["partition"]["maps"][brain_name]
    assert set(files) == {"unique_vision", "unique_language", "shared", "joint"}
    vol = np.asarray(nib.load(str(run / files["unique_vision"][0])).dataobj)
    assert vol.shape == GRID and np.isnan(vol[0]).all()  # outside cortex: not in the data
    assert np.nanmean(vol[3:]) > 0.3 > np.nanmean(vol[1:3]) + 0.2  # the ventral slab, not early
    voxels = np.load(run / metrics["info"]["evaluations"]["partition"]["arrays"][brain_name]["unique:vision"])
    np.testing.assert_allclose(np.sort(voxels), np.sort(vol[np.isfinite(vol)]), rtol=1e-6)


def test_nsd_searchlight_map_lights_the_ventral_slab(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluate rsa --searchlight on the NSD layout: the RDM of the planted signal (the images' mean colour) matches
    the spheres of the ventral slab, not those of the early one; the map is in the subject's volume and the report."""
    monkeypatch.chdir(tmp_path)
    ids = [nsd_id(k) for k in world["images"]]
    np.save("vision.npy", np.stack([world["signal"][k] for k in world["images"]]).astype(np.float32))
    Path("vision.ids.txt").write_text("\n".join(ids) + "\n")
    source = f"nsd:{world['root']}?subject=1&rois=streams&sessions=1"
    _ok(["evaluate", "rsa", "-f", "vision=vision.npy", "-b", source, "--searchlight", "--searchlight-radius", "1.5"])
    run = next((tmp_path / "runs").glob("evaluate-rsa-*"))
    metrics = json.loads((run / "metrics.json").read_text())
    (files,) = metrics["info"]["evaluations"]["searchlight"]["maps"].values()
    vol = np.asarray(nib.load(str(run / files["vision"][0])).dataobj)
    assert vol.shape == GRID and np.isnan(vol[0]).all()
    assert np.nanmean(vol[4:]) > np.nanmean(vol[1:2]) + 0.2, (np.nanmean(vol[4:]), np.nanmean(vol[1:2]))
    assert (run / files["vision"][0]).with_suffix("").with_suffix(".png").is_file()
    assert "searchlight/" in (run / "report.html").read_text()


def test_algonauts_workflow_from_the_subject_folder(
    world: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    subj = world["algonauts"]
    _ok(["features", str(subj / "training_split" / "training_images"), "-o", "f.npy"])
    ids = Path("f.ids.txt").read_text().split()
    assert ids == [from_index(k - 1) for k in sorted(world["images"])]  # canonical: the file number + 1

    _ok(["evaluate", "encoding", "-f", "f=f.npy", "-b", str(subj), "--roi", "ventral"])
    table = _encoding(tmp_path / "runs")
    ventral = table[table["roi"].astype(str) == "ventral"]
    assert not ventral.empty, table
    assert float(ventral["mean_r"].iloc[0]) > 0.5, table
    metrics = json.loads(next((tmp_path / "runs").glob("evaluate-encoding-*/metrics.json")).read_text())
    assert metrics


def test_same_image_same_features_from_file_and_folder(world: dict, tmp_path: Path) -> None:
    """The stimulus-file row and the Algonauts PNG of one image are one stimulus: same id, same features."""
    k = int(world["images"][0])
    ids_file = tmp_path / "one.txt"
    ids_file.write_text(nsd_id(k) + "\n")
    _ok(["features", str(world["brick"]), "--subset", str(ids_file), "-o", str(tmp_path / "a.npy")])
    folder = tmp_path / "one"
    folder.mkdir()
    src = next((world["algonauts"] / "training_split" / "training_images").glob(f"*_nsd-{k - 1:05d}.png"))
    (folder / src.name).write_bytes(src.read_bytes())
    _ok(["features", str(folder), "-o", str(tmp_path / "b.npy")])
    assert (tmp_path / "a.ids.txt").read_text() == (tmp_path / "b.ids.txt").read_text() == nsd_id(k) + "\n"
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"), rtol=1e-5, atol=1e-6)


def test_describe_reads_the_stimulus_file_and_matches_nsd_names(world: dict, tmp_path: Path) -> None:
    """`llmvem describe nsd_stimuli.hdf5 --subset ids` sends brick rows; texts keyed by NSD file names match them."""
    ks = [int(k) for k in world["images"][:3]]
    ids_file = tmp_path / "three.txt"
    ids_file.write_text("\n".join(nsd_id(k) for k in ks) + "\n")
    source = tmp_path / "captions.jsonl"
    source.write_text("".join(json.dumps({"image": f"shared{i + 1:04d}_nsd{k:05d}.png", "text": f"image {k}"}) + "\n"
                              for i, k in enumerate(ks)))  # fmt: skip
    out = tmp_path / "d.jsonl"
    _ok(["describe", str(world["brick"]), "--subset", str(ids_file), "--backend", "import", "--source", str(source),
         "--model", "human", "-o", str(out), "--no-progress"])  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["image"], r["text"]) for r in rows} == {(nsd_id(k), f"image {k}") for k in ks}
