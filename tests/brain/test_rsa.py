"""RSA: RDMs, RDM comparison and the leave-one-subject-out noise ceiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import kendalltau, pearsonr, rankdata, spearmanr

from llmvem.brain import RSAResult, compare_rdms, compute_rdm, noise_ceiling, rsa_scores
from llmvem.brain.rsa import upper_tri
from llmvem.errors import ConfigError, DataError


def _features(n: int = 12, d: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def _subject_rdms(s: int, n: int, seed: int = 0, noise: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 20))
    return np.stack([compute_rdm(base + noise * rng.standard_normal((n, 20))) for _ in range(s)])


def test_correlation_rdm_is_one_minus_corrcoef() -> None:
    x = _features()
    rdm = compute_rdm(x)
    expected = 1.0 - np.corrcoef(x)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(rdm, expected, atol=1e-12)
    assert rdm.dtype == np.float64
    np.testing.assert_array_equal(rdm, rdm.T)
    np.testing.assert_array_equal(np.diag(rdm), 0.0)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_other_metrics_match_scipy(metric: str) -> None:
    x = _features(seed=1)
    rdm = compute_rdm(x, metric)
    np.testing.assert_allclose(rdm, squareform(pdist(x, metric)), atol=1e-12)
    np.testing.assert_array_equal(rdm, rdm.T)


def test_compute_rdm_errors() -> None:
    with pytest.raises(ConfigError, match="unknown metric"):
        compute_rdm(_features(), "manhattan")
    with pytest.raises(DataError, match="2-D"):
        compute_rdm(np.zeros(5))
    x = _features()
    x[3, :] = 1.0
    with pytest.raises(DataError, match=r"rows \[3\] are constant"):
        compute_rdm(x)
    x[3, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        compute_rdm(x)


def test_upper_tri_order_is_squareform() -> None:
    rdm = compute_rdm(_features(n=7))
    np.testing.assert_array_equal(upper_tri(rdm), squareform(rdm, checks=False))
    stack = np.stack([rdm, 2 * rdm])
    assert upper_tri(stack).shape == (2, 21)


def test_compare_spearman_and_pearson_match_scipy() -> None:
    subjects = _subject_rdms(4, 15, seed=2)
    model = compute_rdm(_features(n=15, seed=3))
    vm, vs = upper_tri(model), upper_tri(subjects)
    rho = compare_rdms(model, subjects, "spearman")
    assert rho.shape == (4,)
    np.testing.assert_allclose(rho, [spearmanr(vm, v)[0] for v in vs], rtol=1e-12)
    r = compare_rdms(vm, subjects, "pearson")
    np.testing.assert_allclose(r, [pearsonr(vm, v)[0] for v in vs], rtol=1e-12)
    cos = compare_rdms(model, vs, "cosine")
    np.testing.assert_allclose(cos, [vm @ v / np.linalg.norm(vm) / np.linalg.norm(v) for v in vs], rtol=1e-12)
    single = compare_rdms(model, subjects[0])
    assert single.shape == ()
    assert float(single) == pytest.approx(rho[0])
    assert compare_rdms(subjects, model).shape == (4,)
    assert compare_rdms(subjects, subjects).shape == (4, 4)


def test_spearman_with_ties_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(0, 5, 45).astype(float)
    b = rng.integers(0, 5, 45).astype(float)
    assert float(compare_rdms(a, b, "spearman")) == pytest.approx(spearmanr(a, b)[0], rel=1e-12)


def test_kendall_tau_a_matches_scipy_without_ties() -> None:
    subjects = _subject_rdms(3, 20, seed=5)
    model = compute_rdm(_features(n=20, seed=6))
    vm, vs = upper_tri(model), upper_tri(subjects)
    assert all(len(np.unique(v)) == v.size for v in (vm, *vs))  # tie-free: tau-b == tau-a
    tau = compare_rdms(model, subjects, "kendall_tau_a")
    np.testing.assert_allclose(tau, [kendalltau(vm, v)[0] for v in vs], rtol=1e-10)


def test_kendall_tau_a_with_ties_by_hand() -> None:
    a = np.array([1.0, 2.0, 2.0])
    b = np.array([1.0, 3.0, 2.0])
    # pairs (0,1) concordant, (0,2) concordant, (1,2) tied in a → (2 − 0) / 3
    assert float(compare_rdms(a, b, "kendall_tau_a")) == pytest.approx(2 / 3)


def test_kendall_tau_a_with_ties_matches_pair_loop() -> None:
    rng = np.random.default_rng(10)
    a = rng.integers(0, 4, (3, 36)).astype(float)
    b = rng.integers(0, 6, 36).astype(float)
    k = b.size
    expected = [
        sum(np.sign(x[i] - x[j]) * np.sign(b[i] - b[j]) for i in range(k) for j in range(i + 1, k)) / (k * (k - 1) / 2)
        for x in a
    ]
    np.testing.assert_allclose(compare_rdms(a, b, "kendall_tau_a"), expected, rtol=1e-12)


def test_compare_rdms_errors() -> None:
    rdm = compute_rdm(_features(n=6))
    with pytest.raises(DataError, match="different numbers of conditions"):
        compare_rdms(rdm, compute_rdm(_features(n=7)))
    with pytest.raises(DataError, match=r"not n\(n−1\)/2"):
        compare_rdms(np.arange(7.0), np.arange(7.0))
    bad = rdm.copy()
    bad[0, 1] = np.nan
    bad[1, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        compare_rdms(rdm, bad)
    asym = rdm.copy()
    asym[0, 1] += 1.0
    with pytest.raises(DataError, match="symmetric"):
        compare_rdms(rdm, np.stack([asym, rdm]))
    with pytest.raises(DataError, match="nonzero diagonal"):
        compare_rdms(rdm, 1.0 - compute_rdm(_features(n=7)))
    with pytest.raises(ConfigError, match="unknown method"):
        compare_rdms(rdm, rdm, "kendall")
    with pytest.raises(DataError, match="constant"):
        compare_rdms(np.ones(6), np.arange(6.0))


def _loop_ceiling(vs: np.ndarray, transform: bool) -> tuple[float, float]:
    """Spearman LOSO ceiling with explicit loops and scipy."""
    s = vs.shape[0]
    pooled = np.array([rankdata(v) for v in vs]) if transform else vs
    lower = [spearmanr(vs[i], np.mean([pooled[j] for j in range(s) if j != i], axis=0))[0] for i in range(s)]
    upper = [spearmanr(vs[i], pooled.mean(axis=0))[0] for i in range(s)]
    return float(np.mean(lower)), float(np.mean(upper))


def test_noise_ceiling_tiny_example_by_loops() -> None:
    vs = np.array(
        [
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            [2.0, 1.0, 3.0, 5.0, 4.0, 6.0],
            [1.0, 3.0, 2.0, 4.0, 6.0, 5.0],
        ]
    )
    lower, upper = noise_ceiling(vs, "spearman")
    assert (lower, upper) == pytest.approx(_loop_ceiling(vs, transform=True), rel=1e-12)
    lower_m, upper_m = noise_ceiling(vs, "spearman", pool="mean")
    assert (lower_m, upper_m) == pytest.approx(_loop_ceiling(vs, transform=False), rel=1e-12)
    assert lower < upper
    # subject 1 vs mean of subjects 2, 3 (ranks equal values here): the rank means are [1.5, 2, 2.5, 4.5, 5, 5.5]
    assert spearmanr(vs[0], [1.5, 2, 2.5, 4.5, 5, 5.5])[0] == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["pearson", "cosine", "kendall_tau_a"])
def test_noise_ceiling_other_methods_by_loops(method: str) -> None:
    vs = upper_tri(_subject_rdms(4, 9, seed=7))
    lower, upper = noise_ceiling(vs, method, pool="mean")
    lo = np.mean([compare_rdms(vs[i], np.delete(vs, i, axis=0).mean(0), method) for i in range(4)])
    up = np.mean([compare_rdms(vs[i], vs.mean(0), method) for i in range(4)])
    assert (lower, upper) == pytest.approx((lo, up), rel=1e-10)


def test_noise_ceiling_needs_two_subjects() -> None:
    with pytest.raises(DataError, match="at least 2 subjects"):
        noise_ceiling(_subject_rdms(1, 6))


def test_rsa_scores() -> None:
    subjects = _subject_rdms(5, 10, seed=8)
    model = compute_rdm(_features(n=10, seed=9))
    res = rsa_scores(model, subjects)
    assert isinstance(res, RSAResult)
    np.testing.assert_allclose(res.scores, compare_rdms(model, subjects))
    assert res.mean == pytest.approx(res.scores.mean())
    assert res.sem == pytest.approx(res.scores.std(ddof=1) / np.sqrt(5))
    assert (res.noise_lower, res.noise_upper) == pytest.approx(noise_ceiling(subjects))
    assert res.mean_over_ceiling == pytest.approx(res.mean / res.noise_upper)  # normalised by the upper bound
    one = rsa_scores(model, subjects[0])
    assert one.scores.shape == (1,)
    assert np.isnan(one.sem) and np.isnan(one.noise_lower) and np.isnan(one.mean_over_ceiling)
    with pytest.raises(DataError, match="one RDM"):
        rsa_scores(subjects, subjects)


@pytest.mark.data
def test_cichy_it_noise_ceiling(data_dir: Path) -> None:
    path = data_dir / "objects92/cichy2014/fmri_IT_RDMs.npz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    rdms = np.load(path)["Net_RDM"]
    assert rdms.shape == (15, 92, 92)
    lower, upper = noise_ceiling(rdms, "spearman")
    assert lower == pytest.approx(0.45, abs=0.02)
    assert upper == pytest.approx(0.54, abs=0.02)
    lower_m, upper_m = noise_ceiling(rdms, "spearman", pool="mean")
    assert lower_m == pytest.approx(0.45, abs=0.02)
    assert upper_m == pytest.approx(0.54, abs=0.02)
    tau = compare_rdms(rdms[0], rdms[1:], "kendall_tau_a")
    vs = upper_tri(rdms)
    np.testing.assert_allclose(tau[:2], [kendalltau(vs[0], vs[i])[0] for i in (1, 2)], rtol=1e-8)
