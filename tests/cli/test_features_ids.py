"""`llmvem features` writes canonical NSD ids: on NSD/Algonauts image folders and on nsd_stimuli.hdf5.

Fakes in the real layouts: ``imgBrick`` (73000, 425, 425, 3) uint8 chunked per image at
``<root>/nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5`` (only the rows used are written), ``nsd_expdesign.mat`` with
the real keys and shapes, and PNGs exported from the brick as Algonauts' ``challenge_data_preparation.py`` does
(``Image.fromarray(imgBrick[row])`` saved as ``train-XXXX_nsd-<row, 0-based>.png``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.nsd import NSDDesign
from llmvem.data.nsd_stimuli import DESIGN_FILE, STIMULI_FILE

runner = CliRunner()
ROWS = (12, 13, 2950)  # 0-based rows = NSD images nsd-00013, nsd-00014, nsd-02951


def _pixels(row: int) -> np.ndarray:
    return np.random.default_rng(row).integers(0, 256, (425, 425, 3), dtype=np.uint8)


def _brick(path: Path, rows: tuple[int, ...] = ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("imgBrick", shape=(73_000, 425, 425, 3), dtype=np.uint8, chunks=(1, 425, 425, 3))
        for r in rows:
            ds[r] = _pixels(r)
    return path


def _design(root: Path) -> NSDDesign:
    """Real keys and shapes; shared515 = the 3 shared images of 10k indices 1–3 (all their repeats come first)."""
    rng = np.random.default_rng(0)
    shared = np.sort(np.concatenate([[13, 14, 2951], rng.choice(np.arange(3000, 73_001), 997, replace=False)]))
    others = np.setdiff1d(np.arange(1, 73_001), shared)
    subjectim = np.stack([np.concatenate([shared, rng.choice(others, 9000, replace=False)]) for _ in range(8)])
    counts = np.full(10_000, 3)
    counts[:3], counts[3:1000] = 0, 2  # shared 4–1000: one repeat moved after trial 22,500 (subjects 4 and 8 stop)
    pool = rng.permutation(np.repeat(np.arange(1, 10_001), counts))
    head = rng.permutation(np.concatenate([np.repeat([1, 2, 3], 3), pool[: 22_500 - 9]]))
    masterordering = np.concatenate([head, rng.permutation(np.concatenate([pool[22_500 - 9 :], np.arange(4, 1001)]))])
    (root / DESIGN_FILE).parent.mkdir(parents=True, exist_ok=True)
    savemat(
        root / DESIGN_FILE, {"masterordering": masterordering[None], "subjectim": subjectim, "sharedix": shared[None]}
    )
    return NSDDesign(masterordering, subjectim, shared)


def _features(*args: str) -> tuple[list[str], np.ndarray]:
    out = Path(args[args.index("-o") + 1])
    res = runner.invoke(app, ["features", *args, "--no-progress"])
    assert res.exit_code == 0, res.output
    return out.with_suffix(".ids.txt").read_text().split(), np.load(out)


def _fails(*args: str) -> str:
    res = runner.invoke(app, ["features", *args, "--no-progress"])
    assert res.exit_code == 2, res.output
    return " ".join(res.output.split())


def test_algonauts_folder_and_the_stimulus_file_give_the_same_ids_and_features(tmp_path: Path) -> None:
    brick = _brick(tmp_path / "nsd" / STIMULI_FILE)
    folder = tmp_path / "subj01" / "training_split" / "training_images"
    folder.mkdir(parents=True)
    with h5py.File(brick, "r") as f:
        for i, row in enumerate(ROWS):
            Image.fromarray(f["imgBrick"][row]).convert("RGB").save(folder / f"train-{i + 1:04d}_nsd-{row:05d}.png")
    ids, by_file = _features(str(folder), "-o", str(tmp_path / "f.npy"))
    assert ids == ["nsd-00013", "nsd-00014", "nsd-02951"]  # the files' 0-based numbers + 1
    assert ids == _algonauts_brain_ids(tmp_path / "subj01")  # they pair with the loader's responses
    wanted = tmp_path / "wanted.txt"
    wanted.write_text("train-0001_nsd-00012\nnsd-00014\nshared0003_nsd02951\n")  # any NSD names
    ids_h5, by_row = _features(str(brick), "--subset", str(wanted), "-o", str(tmp_path / "g.npy"))
    assert ids_h5 == ids
    np.testing.assert_array_equal(by_row, by_file)


def _algonauts_brain_ids(subject: Path) -> list[str]:
    """Ids of ``load_algonauts2023`` on ``subject`` (training images already there), with the fMRI and the
    all-vertices mask written as challenge_data_preparation.py writes them (one hemisphere, 5 vertices)."""
    from llmvem.data.algonauts import load_algonauts2023

    n = len(list((subject / "training_split" / "training_images").iterdir()))
    (subject / "training_split" / "training_fmri").mkdir(parents=True)
    np.save(subject / "training_split" / "training_fmri" / "lh_training_fmri.npy", np.ones((n, 5), np.float32))
    mask = np.zeros(163_842, dtype=int)
    mask[[3, 8, 9, 20, 40]] = [1, 2, 1, 1, 2]
    (subject / "roi_masks").mkdir()
    np.save(subject / "roi_masks" / "lh.all-vertices_fsaverage_space.npy", mask)
    return list(load_algonauts2023(subject, roi_classes=(), hemispheres=("lh",)).brain.stimulus_ids)


def test_shared1000_names_become_canonical_other_folders_keep_their_stems(tmp_path: Path) -> None:
    shared = tmp_path / "shared1000"
    shared.mkdir()
    for k, row in enumerate(ROWS[:2]):
        Image.fromarray(_pixels(row)).save(shared / f"shared{k + 1:04d}_nsd{row + 1:05d}.png")
    assert _features(str(shared), "-o", str(tmp_path / "s.npy"))[0] == ["nsd-00013", "nsd-00014"]
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("cat", "image_01"):
        Image.fromarray(_pixels(1)).save(plain / f"{name}.png")
    assert _features(str(plain), "-o", str(tmp_path / "p.npy"))[0] == ["cat", "image_01"]
    Image.fromarray(_pixels(2)).save(shared / "extra.png")
    assert "2 of 3 names are NSD image names" in _fails(str(shared), "-o", str(tmp_path / "x.npy"))


def test_a_named_subset_reads_the_design_from_the_nsd_root(tmp_path: Path) -> None:
    root = tmp_path / "nsd"
    brick = _brick(root / STIMULI_FILE)
    design = _design(root)
    ids, values = _features(str(brick), "--subset", "shared515", "-o", str(tmp_path / "s515.npy"))
    assert ids == [f"nsd-{k:05d}" for k in sorted(design.shared515())] == ["nsd-00013", "nsd-00014", "nsd-02951"]
    assert values.shape == (3, 1280) and np.isfinite(values).all()
    # the design file given explicitly for a copy outside the NSD layout
    copy = _brick(tmp_path / "elsewhere" / "nsd_stimuli.hdf5")
    out = str(tmp_path / "copy.npy")
    assert _features(str(copy), "--subset", "shared515", "--design", str(root / DESIGN_FILE), "-o", out)[0] == ids


def test_bad_input_is_one_clear_error(tmp_path: Path) -> None:
    out = str(tmp_path / "x.npy")
    copy = _brick(tmp_path / "elsewhere" / "nsd_stimuli.hdf5", rows=())
    assert "pass the design file with --design" in _fails(str(copy), "--subset", "subj01", "-o", out)
    assert "unknown NSD subset 'shared100'" in _fails(str(copy), "--subset", "shared100", "-o", out)
    ids = tmp_path / "ids.txt"
    ids.write_text("nsd-00000\n")
    assert "0-based" in _fails(str(copy), "--subset", str(ids), "-o", out)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(_pixels(0)).save(folder / "a.png")
    assert "apply to NSD's stimulus file" in _fails(str(folder), "--subset", "shared1000", "-o", out)
    wrong = tmp_path / "wrong.hdf5"
    with h5py.File(wrong, "w") as f:
        f.create_dataset("imgBrick", shape=(1000, 425, 425, 3), dtype=np.uint8, chunks=(1, 425, 425, 3))
    assert "NSD's is (73000, 425, 425, 3) uint8" in _fails(str(wrong), "-o", out)
    assert not Path(out).exists()


def test_features_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; from llmvem.cli.app import app; from typer.testing import CliRunner; "
        "r = CliRunner().invoke(app, ['features', '--help']); assert r.exit_code == 0, r.output; "
        "assert 'nsd_stimuli.hdf5' in r.output; "
        "print([m for m in ('torch', 'h5py', 'scipy', 'PIL', 'llmvem.data.nsd_stimuli') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


@pytest.mark.parametrize("flag", ["--subset", "--design"])
def test_the_new_flags_are_config_keys(flag: str) -> None:
    from llmvem.cli.app import flag_key

    assert flag_key(flag, "features") == f"features.{flag[2:]}"
