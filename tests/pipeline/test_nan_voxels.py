"""NaN voxels are never dropped without a counted warning: RSA on brain ROIs, and encoding voxels that are finite in
the training stimuli but not in the test stimuli."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.brain import BrainData
from llmvem.data.files import save_brain

runner = CliRunner()
IDS = [f"s{k:02d}" for k in range(40)]


def _files(tmp_path: Path, y: np.ndarray, name: str = "b") -> tuple[Path, Path]:
    splits = {"train": IDS[:30], "test": IDS[30:]}
    rois = ["V1"] * 6 + ["V2"] * 6
    data = BrainData(y, IDS, pd.DataFrame({"roi": rois}), splits=splits, name=name)
    brain = save_brain(data, tmp_path / f"{name}.npz")
    x = np.random.default_rng(5).standard_normal((len(IDS), 4)).astype(np.float32)
    np.save(tmp_path / "f.npy", x)
    (tmp_path / "f.ids.txt").write_text("\n".join(IDS) + "\n")
    return brain, tmp_path / "f.npy"


def test_encoding_counts_voxels_non_finite_in_test_rows_only(tmp_path: Path) -> None:
    y = np.random.default_rng(0).standard_normal((40, 12))
    y[:, 0] = np.nan  # everywhere: the fit's own warning
    y[35, 3] = np.nan  # in one test stimulus only: was scored NaN without a word
    brain, feats = _files(tmp_path, y)
    with pytest.warns(RuntimeWarning, match=r"f on b: 1 of 12 voxels hold NaN/inf in the test stimuli only"):
        res = runner.invoke(app, ["evaluate", "encoding", "-f", str(feats), "-b", str(brain), "--output-dir",
                                  str(tmp_path / "runs"), "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output


def test_rsa_on_brain_rois_warns_about_dropped_voxels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.standard_normal((40, 12))
    y[2, 7] = np.inf
    b1, feats = _files(tmp_path, y, "b1")
    b2, _ = _files(tmp_path, rng.standard_normal((40, 12)), "b2")
    with pytest.warns(RuntimeWarning, match=r"left out of the RDMs \(b1/V2: 1 of 6\)"):
        res = runner.invoke(app, ["evaluate", "rsa", "-f", str(feats), "-b", str(b1), "-b", str(b2), "--output-dir",
                                  str(tmp_path / "runs"), "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
