"""``llmvem evaluate encoding --roi``: ROIs selected in every ROI class column, ``class:name``, several sources."""

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
FACES = ["FFA-1"] * 10 + ["OFA"] * 10 + [""] * 20
STREAMS = [""] * 5 + ["ventral"] * 15 + ["lateral"] * 10 + [""] * 10
PRF = ["hV4"] * 5 + [""] * 35


def _sources(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Features and two brain sources; the second has no FFA-1 (its faces class labels OFA only)."""
    rng = np.random.default_rng(0)
    n, p = 60, 5
    ids = [f"img{k:02d}" for k in range(n)]
    x = rng.standard_normal((n, p))
    np.save(tmp_path / "f.npy", x.astype(np.float32))
    (tmp_path / "f.ids.txt").write_text("\n".join(ids) + "\n")
    paths = []
    for k, faces in enumerate((FACES, [f.replace("FFA-1", "OFA") for f in FACES])):
        y = x @ rng.standard_normal((p, 40)) + 0.5 * rng.standard_normal((n, 40))
        first = [a or b or c or "other" for a, b, c in zip(PRF, faces, STREAMS, strict=True)]
        voxels = pd.DataFrame({"roi:prf-visualrois": PRF, "roi:floc-faces": faces, "roi:streams": STREAMS,
                               "roi": first})  # fmt: skip
        paths.append(save_brain(BrainData(y, ids, voxels, name=f"subj{k + 1}"), tmp_path / f"subj{k + 1}.npz"))
    return tmp_path / "f.npy", paths


def _run(tmp_path: Path, feats: Path, brains: list[Path], rois: list[str]) -> tuple[int, str, Path]:
    out = tmp_path / "runs"
    args = ["evaluate", "encoding", "-f", str(feats), "--output-dir", str(out), "--no-progress"]
    for b in brains:
        args += ["-b", str(b)]
    for r in rois:
        args += ["--roi", r]
    res = runner.invoke(app, args)
    return res.exit_code, res.output, out


def test_roi_by_class_keeps_overlapping_voxels(tmp_path: Path) -> None:
    feats, brains = _sources(tmp_path)
    code, output, out = _run(tmp_path, feats, brains[:1], ["FFA-1", "streams:lateral"])
    assert code == 0, output
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    table = pd.read_csv(run / "encoding.csv").set_index("roi")
    # FFA-1 is voxels 0-9: 0-4 are hV4 first (``roi``), 5-9 ventral too; lateral is 20-29
    assert table.loc["FFA-1", "n_voxels"] == 10 and table.loc["lateral", "n_voxels"] == 10
    assert table.loc["hV4", "n_voxels"] == 5 and table.loc["ventral", "n_voxels"] == 5
    assert table.loc["all", "n_voxels"] == 20  # each selected voxel once
    assert "OFA" not in table.index
    assert len(np.load(run / "encoding_voxel_r.npz")["f__subj1"]) == 20


def test_roi_missing_in_some_sources_is_a_counted_warning(tmp_path: Path) -> None:
    feats, brains = _sources(tmp_path)
    with pytest.warns(UserWarning, match=r"ROI 'FFA-1' is absent from 1 of 2 brain sources \(.*subj2.npz\)"):
        code, output, out = _run(tmp_path, feats, brains, ["FFA-1", "OFA"])
    assert code == 0, output
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    table = pd.read_csv(run / "encoding.csv").set_index("roi")
    assert table.loc["FFA-1", "n_subjects"] == 1 and table.loc["OFA", "n_subjects"] == 2


def test_roi_no_source_has_is_an_error(tmp_path: Path) -> None:
    feats, brains = _sources(tmp_path)
    code, output, _ = _run(tmp_path, feats, brains, ["OFA", "FFA2"])
    assert code != 0
    text = " ".join(output.split())
    assert "--roi 'FFA2': no brain source has it" in text and "floc-faces: FFA-1, OFA" in text
    code, output, _ = _run(tmp_path, feats, brains[1:], ["FFA-1"])
    assert code != 0 and "none of the ROIs ['FFA-1']" in " ".join(output.split())
