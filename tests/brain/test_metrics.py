"""Encoding metrics against scipy / scikit-learn and hand-checked values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from llmvem.brain import algonauts_score, pearson_r, roi_summary
from llmvem.brain.metrics import pearson_r_rows, r2_score_columns, r_over_ceiling
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
    assert list(df.columns) == [
        "roi", "n_voxels", "mean", "median", "noise_ceiling_mean", "mean_r2", "mean_score", "r_over_ceiling"
    ]  # fmt: skip
    a, b = df.iloc[0], df.iloc[1]
    assert a["noise_ceiling_mean"] == pytest.approx(0.34)
    assert a["mean_r2"] == pytest.approx((0.09 + 0.25) / 2)
    assert a["mean_score"] == pytest.approx((50.0 + 50.0) / 2)
    assert b["mean_r2"] == pytest.approx(0.36 / 2)
    assert b["mean_score"] == pytest.approx((0.0 + 50.0) / 2)
    assert a["r_over_ceiling"] == pytest.approx(0.4 / ((np.sqrt(0.18) + np.sqrt(0.5)) / 2))  # mean r / mean √NC
    assert b["r_over_ceiling"] == pytest.approx(0.2 / ((np.sqrt(0.4) + np.sqrt(0.72)) / 2))


def test_r_over_ceiling_skips_missing_voxels_and_zero_ceilings() -> None:
    r = np.array([0.4, np.nan, 0.2, -0.1])
    nc = np.array([0.64, 0.25, np.nan, 0.16])
    assert r_over_ceiling(r, nc) == pytest.approx(((0.4 - 0.1) / 2) / ((0.8 + 0.4) / 2))  # voxels 0 and 3 only
    assert np.isnan(r_over_ceiling(np.array([0.3, 0.1]), np.zeros(2)))
    assert np.isnan(r_over_ceiling(np.array([np.nan]), np.array([0.5])))
    with pytest.raises(DataError, match="r² units"):
        r_over_ceiling(np.array([0.3]), np.array([30.0]))


def test_roi_summary_label_mismatch() -> None:
    with pytest.raises(DataError, match="3 ROI labels for 2 values"):
        roi_summary(np.array([0.1, 0.2]), ["a", "b", "c"])


def test_inter_participant_agreement() -> None:
    from llmvem.brain import inter_participant_agreement

    rng = np.random.default_rng(3)
    signal = rng.standard_normal((40, 6))
    noise = np.array([0.1, 0.1, 0.1, 1.0, 1.0, 10.0])
    subj = signal[None] + rng.standard_normal((5, 40, 6)) * noise
    agr = inter_participant_agreement(subj)
    assert agr.shape == (5, 6)
    for i in range(5):
        others = np.delete(subj, i, axis=0).mean(0)
        np.testing.assert_allclose(agr[i], [pearsonr(subj[i, :, j], others[:, j])[0] for j in range(6)], rtol=1e-10)
    assert agr[:, :3].mean() > 0.95 > agr[:, 5].mean()
    with pytest.raises(DataError, match="at least 2 subjects"):
        inter_participant_agreement(subj[:1])
    with pytest.raises(DataError, match="subjects, stimuli, voxels"):
        inter_participant_agreement(subj[0])


def test_fdr_bh_matches_scipy_and_statsmodels() -> None:
    from scipy.stats import false_discovery_control

    from llmvem.brain import fdr_bh

    rng = np.random.default_rng(4)
    p = np.concatenate([rng.uniform(0, 0.01, 30), rng.uniform(0, 1, 300), [0.02, 0.02, 1.0]])
    reject, adj = fdr_bh(p, 0.05)
    np.testing.assert_allclose(adj, false_discovery_control(p, method="bh"), rtol=1e-12)
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    ref_reject, ref_adj, _, _ = multitest.multipletests(p, alpha=0.05, method="fdr_bh")
    np.testing.assert_array_equal(reject, ref_reject)
    np.testing.assert_allclose(adj, ref_adj, rtol=1e-12)
    with_nan = np.concatenate([p, [np.nan]])
    rej2, adj2 = fdr_bh(with_nan)
    assert not rej2[-1] and np.isnan(adj2[-1])
    np.testing.assert_array_equal(rej2[:-1], reject)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        fdr_bh([0.5, 1.5])


def test_permutation_pvalues_separate_signal_from_noise() -> None:
    from llmvem.brain import permutation_pvalues

    rng = np.random.default_rng(5)
    y = rng.standard_normal((60, 40))
    pred = rng.standard_normal((60, 40))
    pred[:, :10] += 2 * y[:, :10]  # 10 predictable voxels, 30 chance voxels
    r, p = permutation_pvalues(y, pred, n_permutations=200, seed=1)
    np.testing.assert_allclose(r, pearson_r(y, pred))
    assert (p[:10] <= 1 / 201 + 1e-12).all()
    assert p[10:].min() > 0.001 and 0.2 < p[10:].mean() < 0.8  # roughly uniform under the null
    _, p_again = permutation_pvalues(y, pred, n_permutations=200, seed=1)
    np.testing.assert_array_equal(p, p_again)
    df = roi_summary(r, ["hit"] * 10 + ["miss"] * 30, p_values=p)
    assert df.set_index("roi").loc["hit", "frac_significant"] == 1.0
    assert df.set_index("roi").loc["miss", "frac_significant"] <= 0.1


def test_roi_summary_with_agreement() -> None:
    df = roi_summary(np.array([0.2, 0.4, 0.1]), ["a", "a", "b"], agreement=np.array([0.4, 0.8, -0.1]))
    row = df.set_index("roi")
    assert row.loc["a", "mean_over_agreement"] == pytest.approx(0.5)
    assert np.isnan(row.loc["b", "mean_over_agreement"])
    with pytest.raises(DataError, match="agreement has shape"):
        roi_summary(np.array([0.2, 0.4]), ["a", "a"], agreement=np.array([0.1]))
