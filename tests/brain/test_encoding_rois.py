"""Per-ROI encoding tables over overlapping ROI classes: every ROI of every class, a per-voxel total once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmvem.brain.encoding import TOTAL_ROI, encoding_rows, roi_table
from llmvem.brain.metrics import fdr_bh, roi_summary
from llmvem.data.brain import BrainData

FACES = ["", "FFA-1", "OFA", "FFA-1", "", "", "FFA-1", ""]
STREAMS = ["", "", "ventral", "ventral", "lateral", "lateral", "ventral", ""]
PRF = ["V1v", "hV4", "hV4", "", "", "", "", ""]


def _brain(voxels: pd.DataFrame, nc: np.ndarray | None = None) -> BrainData:
    v = len(voxels)
    return BrainData(np.zeros((4, v)), ["a", "b", "c", "d"], voxels, noise_ceiling=nc, name="b")


def test_every_roi_of_every_class_and_a_total() -> None:
    first = [p or f or s or "other" for p, f, s in zip(PRF, FACES, STREAMS, strict=True)]
    voxels = pd.DataFrame({"roi:prf-visualrois": PRF, "roi:floc-faces": FACES, "roi:streams": STREAMS, "roi": first})
    nc = np.linspace(0.1, 0.8, 8)
    b = _brain(voxels, nc)
    r = np.array([0.1, 0.5, 0.3, 0.7, -0.2, 0.0, 0.9, np.nan])
    p = np.array([0.5, 0.001, 0.2, 0.002, 0.9, 0.8, 0.0005, np.nan])
    rows = pd.DataFrame(encoding_rows("m", r, b, p_values=p)).set_index("roi")
    assert list(rows.index) == ["V1v", "hV4", "FFA-1", "OFA", "ventral", "lateral", TOTAL_ROI]
    ffa = np.array([f == "FFA-1" for f in FACES])
    assert rows.loc["FFA-1", "n_voxels"] == 3  # voxel 1 is hV4 in ``roi`` and still counts in FFA-1
    assert rows.loc["FFA-1", "mean_r"] == pytest.approx(r[ffa].mean())
    assert rows.loc["FFA-1", "noise_ceiling_r"] == pytest.approx(np.sqrt(nc[ffa]).mean())
    assert rows.loc["ventral", "n_voxels"] == 3 and rows.loc["hV4", "n_voxels"] == 2
    assert rows.loc[TOTAL_ROI, "n_voxels"] == 8  # each voxel once, though the ROI rows sum to 12
    assert rows.loc[TOTAL_ROI, "mean_r"] == pytest.approx(np.nanmean(r))
    assert rows.loc[TOTAL_ROI, "median_r"] == pytest.approx(np.nanmedian(r))
    sig, _ = fdr_bh(p, 0.05)  # FDR over all voxels, not within each ROI
    assert rows.loc["FFA-1", "frac_significant"] == pytest.approx(sig[ffa].mean())
    assert rows.loc[TOTAL_ROI, "frac_significant"] == pytest.approx(sig[:7].mean())


def test_partition_tables_are_unchanged() -> None:
    """A ``roi``-only table (simulated data, saved files) gives roi_summary's rows and no total."""
    labels = ["good", "good", "noise", "good", "noise"]
    b = _brain(pd.DataFrame({"roi": labels}), np.full(5, 0.5))
    r = np.array([0.8, 0.6, 0.1, 0.7, -0.1])
    table = roi_table(r, b)
    pd.testing.assert_frame_equal(table, roi_summary(r, labels, noise_ceiling=b.noise_ceiling))
    assert TOTAL_ROI not in set(table["roi"])
