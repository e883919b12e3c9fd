"""Brain data that brings its own train/test splits: overlap, repeated ids and too-small splits are errors, not
silently inflated scores (encoding and decode use the same splits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.brain import BrainData
from llmvem.data.files import save_brain
from llmvem.errors import DataError

runner = CliRunner()
IDS = [f"img{k:02d}" for k in range(30)]


def _brain(splits: dict[str, list[str]]) -> BrainData:
    y = np.random.default_rng(0).standard_normal((len(IDS), 6))
    return BrainData(y, IDS, pd.DataFrame({"roi": ["v"] * 6}), splits=splits, name="subjS")


def test_overlapping_train_and_test_are_rejected() -> None:
    with pytest.raises(DataError, match=r"10 stimulus id\(s\) are in both the 'train' and the 'test' split"):
        _brain({"train": IDS[:25], "test": IDS[15:]})
    with pytest.raises(DataError, match="lists 1 stimulus id"):
        _brain({"train": IDS[:10] + IDS[:1], "test": IDS[20:]})
    b = _brain({"train": IDS[:20], "test": IDS[20:]})
    assert b.reorder(IDS[::-1]).splits["test"] == IDS[20:]  # disjoint splits survive a reorder


def _files(tmp_path: Path, splits: dict[str, list[str]]) -> list[str]:
    """A brain .npz with ``splits`` written as its own (bypassing BrainData's check) and a feature matrix."""
    import json

    brain = _brain({})
    path = save_brain(brain, tmp_path / "subjS.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["splits"] = np.asarray(json.dumps(splits))
    np.savez(path, **arrays)
    np.save(tmp_path / "f.npy", np.random.default_rng(1).standard_normal((len(IDS), 4)).astype(np.float32))
    (tmp_path / "f.ids.txt").write_text("\n".join(IDS) + "\n")
    return ["-b", str(path), "-f", str(tmp_path / "f.npy"), "--output-dir", str(tmp_path / "runs"), "--no-progress"]


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ({"train": IDS[:25], "test": IDS[15:]}, "in both the 'train' and the 'test' split"),
        ({"train": IDS, "test": []}, "30 train and 0 test stimuli"),
        ({"train": IDS[:1], "test": IDS[1:]}, "1 train and 29 test stimuli"),
    ],
)
def test_evaluate_encoding_refuses_bad_own_splits(tmp_path: Path, splits: dict[str, list[str]], message: str) -> None:
    res = runner.invoke(app, ["evaluate", "encoding", *_files(tmp_path, splits)])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()) and "Traceback" not in res.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
