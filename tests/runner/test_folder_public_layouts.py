"""The folder study (folder-voxels) with its brain input an NSD root or an Algonauts 2023 subject folder, on fakes
in the public layouts (tests/public_layouts.py; decision 0010): each image's pixels encode which NSD image it is and
each brain row carries that image's planted values, so an image paired with another image's row — the Algonauts
file number read literally (one off), the folder's order, a subset — fails.

Only the stimuli and targets phases run (every pairing is made there; nothing trains)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from llmvem.data.nsd import stimulus_id
from llmvem.data.nsd_ids import nsd_id
from llmvem.errors import IdMismatchError
from llmvem.results import ResultTable
from llmvem.runner.run import _phase, check_study, study_settings
from llmvem.runner.settings import make_store
from llmvem.runner.state import RunState
from llmvem.runner.study import load_study
from public_layouts import (
    ALG_DIM,
    NSD_SESSIONS,
    algonauts_signal,
    nsd_expected,
    nsd_streams_labels,
    write_algonauts_subject,
    write_nsd_design,
    write_nsd_volume,
)


def _targets(tmp_path: Path, images: Path, brain: str, descriptions: Path) -> RunState:
    """The folder-voxels study's state after its stimuli and targets phases."""
    study = load_study("folder-voxels", {"stimuli.images.images": str(images), "stimuli.images.brain": brain,
                                         "stimuli.images.descriptions": str(descriptions)})  # fmt: skip
    check_study(study)
    cfg = study_settings(study, output_dir=tmp_path / "runs")
    state = RunState(cfg, make_store(cfg), None, lambda msg: None, [0], ResultTable())  # type: ignore[arg-type]
    for phase in ("stimuli", "targets"):
        _phase(state, study, phase)
    return state


def _describe(folder: Path, out: Path) -> Path:
    """A descriptions file naming every image by its file name (as a user writes one)."""
    rows = [json.dumps({"image": p.name, "text": f"a photo {k}"}) for k, p in enumerate(sorted(folder.rglob("*.png")))]
    out.write_text("\n".join(rows) + "\n")
    return out


def _check_rows(state: RunState, expected: dict[str, np.ndarray], pixel_id: Any) -> None:
    """Every image's brain row and z-scored target row are its own (by the id its pixels encode)."""
    src = state.source("images")
    target = state.targets["voxels"]
    train = src.split_indices("train")
    rows = np.stack([expected[i] for i in src.ids])
    assert src.brain is not None and len(train) >= 4
    for k, path in enumerate(src.stimuli.paths):
        assert pixel_id(path) == src.ids[k]  # the file holds the image its id names
    np.testing.assert_allclose(src.brain.responses, rows, rtol=1e-5, atol=1e-5)
    z = (rows - rows[train].mean(0)) / rows[train].std(0)
    np.testing.assert_allclose(target.values, z, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- Algonauts 2023
@pytest.fixture(scope="module")
def algonauts(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return write_algonauts_subject(tmp_path_factory.mktemp("alg") / "subj01")


def _alg_rows(fake: Any) -> dict[str, np.ndarray]:
    """Canonical id → the image's row of lh_ and rh_training_fmri.npy (row r = the r-th sorted 0-based id)."""
    fmri = fake.root / "training_split" / "training_fmri"
    y = np.hstack([np.load(fmri / f"{h}_training_fmri.npy") for h in ("lh", "rh")])
    return {nsd_id(int(c) + 1): y[r] for r, c in enumerate(fake.train_cond)}


def _alg_pixel_id(fake: Any) -> Any:
    """The NSD id whose planted signal the image's pixels hold (the writer puts 128 + 100·signal in channel 0)."""
    ids = [int(c) + 1 for c in fake.train_cond]
    table = np.stack([algonauts_signal(k) for k in ids])

    def read(path: Path) -> str:
        px = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).reshape(-1, 3)[:ALG_DIM, 0]
        return nsd_id(ids[int(np.argmin(np.abs(table - (px - 128) / 100).sum(1)))])

    return read


def test_algonauts_training_images_pair_with_their_fmri_rows(algonauts: Any, tmp_path: Path) -> None:
    images = algonauts.root / "training_split" / "training_images"
    state = _targets(tmp_path, images, str(algonauts.root), _describe(images, tmp_path / "d.jsonl"))
    src = state.source("images")
    assert src.ids == [nsd_id(int(c) + 1) for c in algonauts.train_cond]  # train-NNNN_nsd-MMMMM → nsd-(MMMMM+1)
    assert state.info["stimuli"]["images"]["ignored_brain_stimuli"] == len(algonauts.test_cond)  # test images
    assert state.info["stimuli"]["images"]["dropped_no_description"] == 0  # file-name descriptions found
    _check_rows(state, _alg_rows(algonauts), _alg_pixel_id(algonauts))


def test_algonauts_subset_in_another_order_keeps_each_images_row(algonauts: Any, tmp_path: Path) -> None:
    """A user's folder: every other training image, high file numbers in class folder a/, low ones in b/ (so the
    folder lists them in another order than the fMRI rows), mixed with test images."""
    src_dir = algonauts.root / "training_split" / "training_images"
    names = sorted(p.name for p in src_dir.iterdir())[::2]
    folder = tmp_path / "mine"
    for k, name in enumerate(names):
        (folder / ("a" if k >= len(names) // 2 else "b")).mkdir(parents=True, exist_ok=True)
        shutil.copy(src_dir / name, folder / ("a" if k >= len(names) // 2 else "b") / name)
    state = _targets(tmp_path, folder, f"algonauts:{algonauts.root}", _describe(folder, tmp_path / "d.jsonl"))
    ids = state.source("images").ids
    assert len(ids) == len(names) and ids != sorted(ids)  # another order than the rows
    _check_rows(state, _alg_rows(algonauts), _alg_pixel_id(algonauts))


# --------------------------------------------------------------------------- NSD
def _id_pixels(nsd73k: int) -> np.ndarray:
    """A 4 × 4 image whose every pixel spells the 1-based 73k id in its three bytes."""
    return np.tile(np.array([nsd73k % 256, (nsd73k // 256) % 256, nsd73k // 65536], np.uint8), (4, 4, 1))


def _nsd_pixel_id(path: Path) -> str:
    r, g, b = np.asarray(Image.open(path).convert("RGB"), dtype=np.int64)[0, 0]
    return nsd_id(int(r + 256 * g + 65536 * b))


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("nsd")
    design = write_nsd_design(root)
    trials = write_nsd_volume(root, design)
    cols = np.flatnonzero(nsd_streams_labels().reshape(-1, order="F") > 0)
    assert NSD_SESSIONS == 3
    return {"root": root, "design": design, "expected": nsd_expected(trials, design, cols)}


def _shared_folder(folder: Path, design: Any, name: Any, pick: slice) -> list[int]:
    """PNGs of some shared images named ``name(index into sharedix (1-based), 73k id)``; returns their 73k ids."""
    folder.mkdir(parents=True)
    shared = np.ravel(design.sharedix)
    chosen = [(k + 1, int(shared[k])) for k in range(shared.size)][pick]
    for i, k in chosen:
        Image.fromarray(_id_pixels(k)).save(folder / f"{name(i, k)}.png")
    return [k for _, k in chosen]


def test_nsd_shared1000_pngs_pair_with_their_betas(nsd: dict[str, Any], tmp_path: Path) -> None:
    """shared1000 names (sharedNNNN_nsdMMMMM, 1-based) over a subset, in sharedix order (not the brain's)."""
    folder = tmp_path / "shared1000"
    ks = _shared_folder(folder, nsd["design"], lambda i, k: f"shared{i:04d}_nsd{k:05d}", slice(3, 33))
    brain = f"nsd:{nsd['root']}?subject=1&rois=streams"
    state = _targets(tmp_path, folder, brain, _describe(folder, tmp_path / "d.jsonl"))
    assert sorted(state.source("images").ids) == sorted(stimulus_id(k) for k in ks)
    _check_rows(state, nsd["expected"], _nsd_pixel_id)


def test_nsd_images_named_by_brick_row_are_refused(nsd: dict[str, Any], tmp_path: Path) -> None:
    """Images a user named by their 0-based brick row (nsd-{k-1}) would each pair with the previous image."""
    folder = tmp_path / "rows"
    _shared_folder(folder, nsd["design"], lambda i, k: f"nsd-{k - 1:05d}", slice(0, 12))
    with pytest.raises(IdMismatchError, match="shift of \\+1"):
        _targets(tmp_path, folder, f"nsd:{nsd['root']}?rois=streams", _describe(folder, tmp_path / "d.jsonl"))


def test_nsd_brick_exports_hold_out_the_brains_shared_test_split(nsd: dict[str, Any], tmp_path: Path) -> None:
    """Images exported from nsd_stimuli.hdf5 under their canonical names (nsd-NNNNN.png, 1-based), 12 shared and
    24 subject-only: the folder study holds out the NSD brain's own test split (the shared images)."""
    design = nsd["design"]
    shared = [int(k) for k in np.ravel(design.sharedix)[:12]]
    own = [int(k) for k in design.subjectim[0, 100:124]]
    folder = tmp_path / "exports"
    folder.mkdir()
    for k in shared + own:
        Image.fromarray(_id_pixels(k)).save(folder / f"{stimulus_id(k)}.png")
    state = _targets(tmp_path, folder, f"nsd:{nsd['root']}?rois=streams", _describe(folder, tmp_path / "d.jsonl"))
    src = state.source("images")
    assert state.info["stimuli"]["images"]["heldout_from"] == "brain split 'test'"
    assert sorted(src.splits["test"]) == sorted(stimulus_id(k) for k in shared)
    _check_rows(state, nsd["expected"], _nsd_pixel_id)
