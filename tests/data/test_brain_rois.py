"""ROI selection on :class:`BrainData`: by class column (overlapping labels all kept), ``class:name``, and the
``roi``-only voxel tables of simulated data and saved ``.npz`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmvem.data.brain import BrainData
from llmvem.data.files import load_brain, save_brain
from llmvem.errors import DataError


def _brain(voxels: pd.DataFrame) -> BrainData:
    rng = np.random.default_rng(0)
    return BrainData(rng.standard_normal((5, len(voxels))), [f"s{k}" for k in range(5)], voxels, name="b")


@pytest.fixture()
def overlapping() -> BrainData:
    """6 voxels: prf labels 0-2, faces 1-3 (FFA-1 on 1 and 3), streams 2-5; voxel 5 only in streams."""
    return _brain(
        pd.DataFrame(
            {
                "hemi": ["lh"] * 3 + ["rh"] * 3,
                "roi:prf-visualrois": ["V1v", "hV4", "hV4", "", "", ""],
                "roi:floc-faces": ["", "FFA-1", "OFA", "FFA-1", "", ""],
                "roi:streams": ["", "", "ventral", "ventral", "lateral", "lateral"],
                "roi": ["V1v", "hV4", "hV4", "FFA-1", "lateral", "lateral"],
            }
        )
    )


def test_name_selects_in_every_class(overlapping: BrainData) -> None:
    b = overlapping
    assert b.roi_classes == ["prf-visualrois", "floc-faces", "streams"]
    assert b.rois_by_class() == {
        "prf-visualrois": ["V1v", "hV4"],
        "floc-faces": ["FFA-1", "OFA"],
        "streams": ["ventral", "lateral"],
    }
    assert b.rois == ["V1v", "hV4", "FFA-1", "OFA", "ventral", "lateral"]
    # voxel 1 is hV4 first (``roi``) and FFA-1 too: both FFA-1 voxels are selected
    np.testing.assert_array_equal(b.roi_mask("FFA-1"), [False, True, False, True, False, False])
    np.testing.assert_array_equal(b.roi_mask("ventral"), [False, False, True, True, False, False])


def test_qualified_name_selects_within_one_class() -> None:
    b = _brain(
        pd.DataFrame(
            {
                "roi:floc-faces": ["FFA-1", "", "FFA-1"],
                "roi:probmap_FFA-1": ["", "FFA-1", "FFA-1"],
                "roi": ["FFA-1", "FFA-1", "FFA-1"],
            }
        )
    )
    assert b.rois == ["FFA-1"]
    np.testing.assert_array_equal(b.roi_mask("FFA-1"), [True, True, True])
    np.testing.assert_array_equal(b.roi_mask("floc-faces:FFA-1"), [True, False, True])
    np.testing.assert_array_equal(b.roi_mask("probmap_FFA-1:FFA-1"), [False, True, True])


def test_unknown_names_list_what_exists(overlapping: BrainData) -> None:
    b = overlapping
    for bad in ("FFA-2", "faces:FFA-1", "streams:FFA-1", "floc-faces:", ""):
        assert not b.has_roi(bad)
        with pytest.raises(DataError, match=r"no ROI .*floc-faces: FFA-1, OFA; streams: ventral, lateral"):
            b.roi_mask(bad)
    assert b.has_roi("streams:lateral") and b.has_roi("OFA")


def test_unlabelled_voxels_through_roi_column() -> None:
    b = _brain(pd.DataFrame({"roi:streams": ["ventral", "", ""], "roi": ["ventral", "other", "other"]}))
    assert b.rois == ["ventral"]
    np.testing.assert_array_equal(b.roi_mask("other"), [False, True, True])


def test_roi_only_tables_as_before() -> None:
    b = _brain(pd.DataFrame({"roi": ["good", "good", "noise", "other"]}))
    assert b.roi_classes == [] and b.rois == ["good", "noise", "other"]
    assert b.rois_by_class() == {"roi": ["good", "noise", "other"]}
    np.testing.assert_array_equal(b.roi_mask("noise"), [False, False, True, False])
    with pytest.raises(DataError, match="has no ROI 'bad'; its ROIs by class are roi: good, noise, other"):
        b.roi_mask("bad")


def test_class_columns_survive_save_and_load(overlapping: BrainData, tmp_path: Path) -> None:
    back = load_brain(save_brain(overlapping, tmp_path / "b.npz"))
    assert back.roi_classes == overlapping.roi_classes and back.rois == overlapping.rois
    for roi in ("FFA-1", "streams:ventral", "hV4"):
        np.testing.assert_array_equal(back.roi_mask(roi), overlapping.roi_mask(roi))
