"""Algonauts 2023 loader on a subject folder written as gifale95/algonauts_2023 ``challenge_data_preparation.py``
writes it: int all-vertices masks (nsdgeneral + RSC, so 2s), ``np.save`` of the ctab's dict as ``mapping_<class>``,
0-based ``nsd-NNNNN`` in the PNG names, test fMRI and noise ceiling of the later releases. Each image carries a
planted signal keyed by its 1-based NSD id, so a shift of one id is caught."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from llmvem.data.algonauts import load_algonauts2023
from llmvem.data.nsd_ids import parse
from llmvem.errors import DataError, DatasetNotFoundError
from public_layouts import ALG_DIM as DIM
from public_layouts import CTABS, N_FS, drop_test_release
from public_layouts import AlgonautsFake as Fake
from public_layouts import algonauts_signal as signal
from public_layouts import write_algonauts_subject as write_subject


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Fake:
    return write_subject(tmp_path_factory.mktemp("algonauts") / "subj01")


def test_canonical_ids_for_brain_and_images(fake: Fake) -> None:
    subj = load_algonauts2023(fake.root)
    b = subj.brain
    assert subj.train_images.paths[0].name == "train-0001_nsd-00013.png"
    assert b.stimulus_ids[0] == subj.train_images.ids[0] == "nsd-00014"  # 0-based file number + 1
    assert subj.train_images.ids == [f"nsd-{int(c) + 1:05d}" for c in fake.train_cond]
    assert subj.test_images.ids[0] == "nsd-00001" and subj.test_images.paths[0].name == "test-0001_nsd-00000.png"
    assert b.stimulus_ids == subj.train_images.ids + subj.test_images.ids
    assert b.splits == {"train": subj.train_images.ids, "test": subj.test_images.ids}
    assert b.space is not None and (b.space.kind, b.space.n_vertices) == ("fsaverage", N_FS)


def test_planted_signal_follows_the_ids(fake: Fake) -> None:
    """Row ↔ id ↔ image: the responses and the PNG pixels match the signal of the canonical id, not its neighbour."""
    subj = load_algonauts2023(fake.root, roi_classes=())
    b = subj.brain
    w = np.concatenate([fake.weights["lh"], fake.weights["rh"]], axis=1)

    def fit(shift: int) -> float:
        planted = np.stack([signal(parse(i) + shift) for i in b.stimulus_ids]) @ w  # type: ignore[operator]
        return float(np.mean([np.corrcoef(p, y)[0, 1] for p, y in zip(planted, b.responses, strict=True)]))

    assert fit(0) > 0.9 and abs(fit(-1)) < 0.3 and abs(fit(1)) < 0.3
    for images in (subj.train_images, subj.test_images):
        for sid, path in zip(images.ids, images.paths, strict=True):
            px = np.asarray(Image.open(path)).reshape(-1, 3)[:DIM, 0].astype(float)
            np.testing.assert_allclose((px - 128) / 100, signal(parse(sid)), atol=0.006)  # type: ignore[arg-type]


def test_vertices_and_roi_columns(fake: Fake) -> None:
    b = load_algonauts2023(fake.root).brain
    v_lh = np.count_nonzero(fake.masks["lh"])
    lh, rh = b.voxels.iloc[:v_lh], b.voxels.iloc[v_lh:]
    assert set(lh["hemi"]) == {"lh"} and set(rh["hemi"]) == {"rh"}
    np.testing.assert_array_equal(lh["fsaverage_vertex"], np.flatnonzero(fake.masks["lh"]))
    np.testing.assert_array_equal(rh["fsaverage_vertex"], np.flatnonzero(fake.masks["rh"]))
    twos = np.flatnonzero(fake.masks["lh"] == 2)
    assert set(twos) <= set(lh["fsaverage_vertex"])  # the nsdgeneral ∩ RSC vertices are columns too
    assert [c for c in b.voxels.columns if c.startswith("roi:")] == [f"roi:{c}" for c in CTABS]
    for (hemi, cls), labels in fake.labels.items():
        part = lh if hemi == "lh" else rh
        expected = [CTABS[cls][k] if k > 0 else "" for k in labels]
        assert list(part[f"roi:{cls}"]) == expected
    first, prf = b.voxels["roi"].to_numpy(), b.voxels["roi:prf-visualrois"].to_numpy()
    assert (first[prf != ""] == prf[prf != ""]).all()  # ``roi`` keeps the first class's label
    # FFA-1 selects every FFA-1 vertex, also those an earlier class (prf-visualrois) labels first
    ffa = (b.voxels["roi:floc-faces"] == "FFA-1").to_numpy()
    np.testing.assert_array_equal(b.roi_mask("FFA-1"), ffa)
    assert ((first != "FFA-1") & ffa).any()
    np.testing.assert_array_equal(b.roi_mask("streams:ventral"), (b.voxels["roi:streams"] == "ventral").to_numpy())
    assert b.roi_mask("other").sum() == ((b.voxels[[f"roi:{c}" for c in CTABS]] == "").all(axis=1)).sum()


def test_test_split_and_noise_ceiling(fake: Fake) -> None:
    b = load_algonauts2023(fake.root, roi_classes=("streams",)).brain
    n_train = len(fake.train_cond)
    test = np.concatenate([np.load(fake.root / f"test_split/test_fmri/{h}_test_fmri.npy") for h in ("lh", "rh")], 1)
    np.testing.assert_array_equal(b.responses[n_train:], test)
    np.testing.assert_array_equal(b.responses[b.split_indices("test")], test)
    nc = np.concatenate([fake.noise_ceiling["lh"], fake.noise_ceiling["rh"]])
    np.testing.assert_allclose(b.noise_ceiling, nc)  # an r² fraction, as the file: no rescaling
    assert b.noise_ceiling.min() >= 0 and b.noise_ceiling.max() < 1  # type: ignore[union-attr]


def test_encoding_on_the_loaded_subject_and_off_by_one_features(fake: Fake) -> None:
    from llmvem.brain import fit_encoding_model
    from llmvem.data.stimuli import align_ids
    from llmvem.errors import IdMismatchError

    b = load_algonauts2023(fake.root, roi_classes=("floc-faces", "streams")).brain
    ids = b.stimulus_ids
    feats = np.stack([signal(parse(i)) for i in ids])  # type: ignore[arg-type]
    res = fit_encoding_model(feats, ids, b, alphas=(0.1, 1.0, 10.0))
    assert np.nanmean(res.r) > 0.85
    assert {"FFA-1", "ventral", "all"} <= set(res.summary["roi"])
    # features keyed by the file numbers as written: nsd-00000 is refused, the others are named a shift of one
    literal = [f"nsd-{int(c):05d}" for c in np.concatenate([fake.train_cond, fake.test_cond])]
    with pytest.raises(DataError, match="0-based"):
        fit_encoding_model(feats, literal, b)
    with pytest.raises(IdMismatchError, match="shift of"):
        align_ids(b.splits["train"], literal[: len(fake.train_cond)], "brain", "features")


def test_without_the_test_release(tmp_path: Path) -> None:
    fake = write_subject(tmp_path / "subj02", n_train=8, n_test=4, n_hemi=(20, 16))
    drop_test_release(fake.root)
    subj = load_algonauts2023(fake.root, roi_classes=(), hemispheres=("rh",))
    b = subj.brain
    assert b.stimulus_ids == subj.train_images.ids and list(b.splits) == ["train"]
    assert b.noise_ceiling is None and b.n_voxels == 16 and set(b.voxels["roi"]) == {"other"}
    assert len(subj.test_images.ids) == 4


# --------------------------------------------------------------------------- bad input
SMALL = {"n_train": 8, "n_test": 4, "n_hemi": (20, 16), "classes": ("floc-faces", "streams")}


@pytest.fixture()
def small(tmp_path: Path) -> Fake:
    return write_subject(tmp_path / "subj03", **SMALL)  # type: ignore[arg-type]


def _load(fake: Fake) -> object:
    return load_algonauts2023(fake.root, roi_classes=SMALL["classes"])  # type: ignore[arg-type]


def test_missing_folder_and_arguments(tmp_path: Path, small: Fake) -> None:
    with pytest.raises(DatasetNotFoundError, match="not found"):
        load_algonauts2023(tmp_path / "nope")
    with pytest.raises(DatasetNotFoundError, match="training_images not found"):
        load_algonauts2023(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"ROI classes there are \['floc-faces', 'streams'\]"):
        load_algonauts2023(small.root)  # the default classes include files this folder lacks
    with pytest.raises(DataError, match="unknown ROI classes"):
        load_algonauts2023(small.root, roi_classes=("v1",))
    with pytest.raises(DataError, match="hemispheres"):
        load_algonauts2023(small.root, roi_classes=(), hemispheres=("lh", "lh"))


def test_mask_and_fmri_of_different_lengths(small: Fake) -> None:
    mask = small.masks["lh"].copy()
    mask[np.flatnonzero(mask == 0)[0]] = 2
    np.save(small.root / "roi_masks" / "lh.all-vertices_fsaverage_space.npy", mask)
    with pytest.raises(DataError, match=r"marks 21 vertices .* has 20 columns"):
        _load(small)


def test_labels_without_names_and_mapping_not_a_dict(small: Fake) -> None:
    np.save(small.root / "roi_masks" / "mapping_streams.npy", {0: "Unknown", 1: "early"})
    used = sorted(int(k) for k in set(small.labels[("lh", "streams")]) - {0, 1})
    with pytest.raises(
        DataError, match=re.escape(f"labels {used} of ") + r".*lh\.streams_challenge_space\.npy have no name"
    ):
        _load(small)
    np.save(small.root / "roi_masks" / "mapping_streams.npy", np.array(CTABS["streams"]))
    with pytest.raises(DataError, match="must hold a dict label → ROI name"):
        _load(small)


def test_images_that_do_not_match_the_fmri_rows(small: Fake) -> None:
    images = sorted((small.root / "training_split" / "training_images").iterdir())
    images[-1].unlink()
    with pytest.raises(DataError, match=r"has 8 rows but .*training_images holds 7 images"):
        _load(small)
    images[3].rename(images[3].with_name(images[3].name.replace("train-0004", "train-0008")))
    with pytest.raises(DataError, match=r"missing \['train-0004'\]"):
        _load(small)


def test_images_numbered_from_zero(small: Fake) -> None:
    folder = small.root / "test_split" / "test_images"
    for p in sorted(folder.iterdir()):
        k = int(p.name[5:9])
        p.rename(folder / p.name.replace(f"test-{k:04d}", f"test-{k - 1:04d}"))
    with pytest.raises(DataError, match="numbered test-0001 … test-0004 \\(1-based"):
        _load(small)


def test_stray_files_are_counted(small: Fake) -> None:
    (small.root / "training_split" / "training_images" / "notes.txt").write_text("x")
    (small.root / "training_split" / "training_images" / ".DS_Store").write_text("x")
    with pytest.warns(UserWarning, match=r"1 file\(s\) in .* are not train-XXXX_nsd-NNNNN images .*notes.txt"):
        _load(small)


def test_test_release_half_there_or_wrong(small: Fake) -> None:
    (small.root / "test_split" / "test_fmri" / "rh_test_fmri.npy").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"rh_test_fmri\.npy not found"):
        _load(small)
    np.save(small.root / "test_split" / "test_fmri" / "rh_test_fmri.npy", np.zeros((3, 16), np.float32))
    with pytest.raises(DataError, match=r"has 3 rows but .*test_images holds 4 images"):
        _load(small)
    np.save(small.root / "test_split" / "test_fmri" / "rh_test_fmri.npy", np.zeros((4, 16), np.float32))
    nc_path = small.root / "test_split" / "noise_ceiling" / "lh_noise_ceiling.npy"
    np.save(nc_path, 100 * small.noise_ceiling["lh"])
    with pytest.raises(DataError, match="fraction of variance in \\[0, 1\\]"):
        _load(small)
    nc_path.unlink()
    with pytest.raises(DatasetNotFoundError, match=r"lh_noise_ceiling\.npy not found"):
        _load(small)


def test_image_both_train_and_test(small: Fake) -> None:
    folder = small.root / "test_split" / "test_images"
    first = sorted(folder.iterdir())[0]
    first.rename(folder / f"test-0001_nsd-{int(small.train_cond[0]):05d}.png")
    with pytest.raises(DataError, match="both training and test images"):
        _load(small)


@pytest.mark.parametrize("order", ["C", "F"])
def test_fmri_read_in_blocks_into_a_column_slice(tmp_path: Path, order: str) -> None:
    from llmvem.data.algonauts import _read_into

    data = np.random.default_rng(1).standard_normal((37, 11))  # float64: cast on the way in
    np.save(tmp_path / "x.npy", np.asarray(data, order=order))
    out = np.zeros((37, 20), np.float32)
    _read_into(tmp_path / "x.npy", out[:, 4:15], block_bytes=200)  # 2 rows per block
    np.testing.assert_array_equal(out[:, 4:15], data.astype(np.float32))
    assert not out[:, :4].any() and not out[:, 15:].any()


def test_evaluate_encoding_on_the_folder_with_roi(fake: Fake, tmp_path: Path) -> None:
    """``llmvem evaluate encoding -b subj01 --roi FFA-1``: the test release is the held-out split; every FFA-1
    vertex is scored, also those ``prf-visualrois`` labels first."""
    from typer.testing import CliRunner

    from llmvem.cli.app import app

    b = load_algonauts2023(fake.root).brain
    np.save(tmp_path / "f.npy", np.stack([signal(parse(i)) for i in b.stimulus_ids]).astype(np.float32))  # type: ignore[arg-type]
    (tmp_path / "f.ids.txt").write_text("\n".join(b.stimulus_ids) + "\n")
    out = tmp_path / "runs"
    res = CliRunner().invoke(app, ["evaluate", "encoding", "-f", f"planted={tmp_path / 'f.npy'}", "-b", str(fake.root),
                                   "--roi", "FFA-1", "--output-dir", str(out), "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    table = pd.read_csv(run / "encoding.csv").set_index("roi")
    n_ffa = int(b.roi_mask("FFA-1").sum())
    assert table.loc["FFA-1", "n_voxels"] == n_ffa and table.loc["FFA-1", "mean_r"] > 0.8
    assert table.loc["all", "n_voxels"] == n_ffa  # other classes' ROIs overlap FFA-1; the total counts each once
    assert table.loc["FFA-1", "noise_ceiling_r"] > 0
    split = json.loads((run / "metrics.json").read_text())["info"]["targets"]["brain"]["subjects"]
    assert next(iter(split.values())) == {"n_train": 40, "n_test": 12, "splits": "own"}


@pytest.mark.parametrize(
    "rel",
    ["roi_masks/lh.all-vertices_fsaverage_space.npy", "roi_masks/lh.streams_challenge_space.npy",
     "roi_masks/mapping_streams.npy", "training_split/training_fmri/lh_training_fmri.npy"],
)  # fmt: skip
def test_a_damaged_array_file_is_named(small: Fake, rel: str) -> None:
    """Every array file of a subject folder is read through one loader: a damaged mask, mapping or fMRI file is a
    DataError naming it (three of them were ValueError / UnpicklingError tracebacks)."""
    (small.root / rel).write_bytes(b"garbage!")
    with pytest.raises(DataError, match=re.escape(f"Algonauts: cannot read {small.root / rel}: ")):
        _load(small)
