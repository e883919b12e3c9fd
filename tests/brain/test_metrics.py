"""Encoding metrics against scipy / scikit-learn and hand-checked values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from llmvem.brain import algonauts_score, pearson_r, roi_summary
from llmvem.brain.metrics import pearson_r_rows, r2_score_columns
from llmvem.errors import DataError


def test_pearson_r_matches_scipy_per_column() -> None:
    rng = np.random.default_rng(0)
    y = rng.standard_normal((50, 12))
    pred = 0.5 * y + rng.standard_normal((50, 12)) * np.linspace(0.1, 3, 12)
    r = pearson_r(y, pred)
    assert r.shape == (12,)
    expected = [pearsonr(y[:, j], pred[:, j])[0] for j in range(12)]
    np.testing.assert_allclose(r, expected, rtol=1e-12)


def test_pearson_r_constant_and_nonfinite_columns() -> None:
    rng = np.random.default_rng(1)
    y = rng.standard_normal((20, 4))
    pred = rng.standard_normal((20, 4))
    y[:, 1] = 0.1  # constant in y_true (mean has rounding residue)
    pred[:, 2] = 7.0  # constant prediction
    y[5, 3] = np.nan
    r = pearson_r(y, pred)
    assert r[1] == 0.0
    assert r[2] == 0.0
    assert np.isnan(r[3])
    assert r[0] == pytest.approx(pearsonr(y[:, 0], pred[:, 0])[0])


def test_pearson_r_one_d_and_rows() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([2.0, 4.0, 6.0, 9.0])
    assert float(pearson_r(a, b)) == pytest.approx(pearsonr(a, b)[0])
    assert float(pearson_r(a, -a)) == pytest.approx(-1.0)
    m = np.stack([a, b, a])
    n = np.stack([b, a, -a])
    np.testing.assert_allclose(pearson_r_rows(m, n), [pearsonr(a, b)[0], pearsonr(b, a)[0], -1.0])


def test_pearson_r_shape_mismatch() -> None:
    with pytest.raises(DataError, match="shape"):
        pearson_r(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(DataError, match="2-D"):
        pearson_r(np.zeros((5, 2, 2)), np.zeros((5, 2, 2)))


def test_r2_columns_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.standard_normal((30, 6))
    pred = y + rng.standard_normal((30, 6))
    np.testing.assert_allclose(r2_score_columns(y, pred), r2_score(y, pred, multioutput="raw_values"), rtol=1e-12)
    const = np.full((30, 2), 3.0)
    np.testing.assert_array_equal(r2_score_columns(const, np.stack([const[:, 0], pred[:, 0]], 1)), [1.0, 0.0])


def test_algonauts_score_hand_checked() -> None:
    r = np.array([0.5, -0.3, 0.6, 0.2, 0.9, 0.4])
    nc = np.array([0.5, 0.5, 0.25, 0.0, 0.5, np.nan])
    score = algonauts_score(r, nc)
    # 100·0.25/0.5 = 50; negative r → 0; 100·0.36/0.25 = 144 → clipped to 100; NC = 0 → NaN; 81/0.5 > 100 → 100
    np.testing.assert_allclose(score[:3], [50.0, 0.0, 100.0])
    assert np.isnan(score[3])
    assert score[4] == 100.0
    assert np.isnan(score[5])


def test_algonauts_score_rejects_percent_ceiling() -> None:
    with pytest.raises(DataError, match="r² units"):
        algonauts_score(np.array([0.1, 0.2]), np.array([45.0, 60.0]))
    with pytest.raises(DataError, match=r"expected \(2,\)"):
        algonauts_score(np.array([0.1, 0.2]), np.array([0.4]))


def test_roi_summary_values() -> None:
    r = np.array([0.2, 0.4, np.nan, -0.2, 0.6])
    rois = ["V1", "V1", "V1", "FFA", "FFA"]
    df = roi_summary(r, rois)
    assert list(df.columns) == ["roi", "n_voxels", "mean", "median"]
    assert df["roi"].tolist() == ["V1", "FFA"]
    assert df["n_voxels"].tolist() == [3, 2]
    np.testing.assert_allclose(df["mean"], [0.3, 0.2])
    np.testing.assert_allclose(df["median"], [0.3, 0.2])


def test_roi_summary_with_noise_ceiling() -> None:
    r = np.array([0.3, 0.5, -0.2, 0.6])
    nc = np.array([0.18, 0.5, 0.4, 0.72])
    df = roi_summary(r, ["a", "a", "b", "b"], noise_ceiling=nc)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["roi", "n_voxels", "mean", "median", "noise_ceiling_mean", "mean_r2", "mean_score"]
    a, b = df.iloc[0], df.iloc[1]
    assert a["noise_ceiling_mean"] == pytest.approx(0.34)
    assert a["mean_r2"] == pytest.approx((0.09 + 0.25) / 2)
    assert a["mean_score"] == pytest.approx((50.0 + 50.0) / 2)
    assert b["mean_r2"] == pytest.approx(0.36 / 2)
    assert b["mean_score"] == pytest.approx((0.0 + 50.0) / 2)


def test_roi_summary_label_mismatch() -> None:
    with pytest.raises(DataError, match="3 ROI labels for 2 values"):
        roi_summary(np.array([0.1, 0.2]), ["a", "b", "c"])
