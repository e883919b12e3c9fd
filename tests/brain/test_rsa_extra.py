"""Bootstrap CIs, Doerig's sub-sampled RDM correlation, and agreement with rsatoolbox on the objects92 RDMs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from llmvem.brain import bootstrap_rsa, compare_rdms, compute_rdm, noise_ceiling, subsampled_rdm_correlation, upper_tri
from llmvem.errors import ConfigError, DataError


def _rdms(n: int = 20, s: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 30))
    model = compute_rdm(base + 0.5 * rng.standard_normal((n, 30)))
    subj = np.stack([compute_rdm(base + rng.standard_normal((n, 30))) for _ in range(s)])
    return model, subj


def test_bootstrap_over_subjects_is_the_mean_of_resampled_scores() -> None:
    model, subj = _rdms()
    res = bootstrap_rsa(model, subj, "spearman", over="subjects", n_boot=200, seed=3)
    scores = compare_rdms(model, subj, "spearman")
    rng = np.random.default_rng(3)
    expected = [scores[rng.integers(0, 6, 6)].mean() for _ in range(200)]
    np.testing.assert_allclose(res.samples, expected)
    assert res.mean == pytest.approx(scores.mean())
    assert res.low <= res.mean <= res.high
    assert res.low == pytest.approx(np.quantile(expected, 0.025))


def test_bootstrap_over_stimuli_drops_self_pairs() -> None:
    model, subj = _rdms(n=12, s=3)
    res = bootstrap_rsa(model, subj, "pearson", over="stimuli", n_boot=5, seed=1)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 12, 12)
    iu, ju = np.triu_indices(12, k=1)
    keep = idx[iu] != idx[ju]
    a, b = idx[iu][keep], idx[ju][keep]
    expected = np.mean([pearsonr(model[a, b], s[a, b])[0] for s in subj])
    assert res.samples[0] == pytest.approx(expected)
    both = bootstrap_rsa(model, subj, over="both", n_boot=50)
    assert both.high - both.low > 0
    with pytest.raises(ConfigError, match="over"):
        bootstrap_rsa(model, subj, over="pairs")
    with pytest.raises(DataError, match="at least 2 subjects"):
        bootstrap_rsa(model, subj[:1])


def test_subsampled_rdm_correlation_matches_a_loop() -> None:
    rng = np.random.default_rng(2)
    a = compute_rdm(rng.standard_normal((230, 8)))
    b = np.stack([compute_rdm(rng.standard_normal((230, 8))) for _ in range(2)])
    out = subsampled_rdm_correlation(a, b, set_size=100, n_splits=2, seed=5)
    assert out.shape == (2,)
    r2 = np.random.default_rng(5)
    expected = np.zeros(2)
    for _ in range(2):
        perm = r2.permutation(230)
        for start in (0, 100):  # 230 → two full sets of 100, 30 left over
            sel = perm[start : start + 100]
            expected += [pearsonr(upper_tri(a[np.ix_(sel, sel)]), upper_tri(x[np.ix_(sel, sel)]))[0] for x in b]
    np.testing.assert_allclose(out, expected / 4, rtol=1e-12)
    full = subsampled_rdm_correlation(a, a, set_size=230)
    assert float(full) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="set_size"):
        subsampled_rdm_correlation(a, a, set_size=500)


@pytest.mark.data
@pytest.mark.filterwarnings("ignore:Noise ceiling for tau")
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("spearman", "spearman"), ("pearson", "corr"), ("kendall_tau_a", "tau-a"), ("cosine", "cosine")],
)
def test_objects92_agrees_with_rsatoolbox(data_dir: Path, ours: str, theirs: str) -> None:
    rsatoolbox = pytest.importorskip("rsatoolbox")
    from rsatoolbox.inference import boot_noise_ceiling
    from rsatoolbox.rdm import RDMs, compare

    from llmvem.data import load_dataset

    it = load_dataset("objects92", data_dir).rdms["cichy_it"]
    vecs = upper_tri(it.rdms)
    model = upper_tri(load_dataset("objects92", data_dir).rdms["cichy_evc"].mean())
    rs_subj = RDMs(vecs, dissimilarity_measure="euclidean")
    rs_model = RDMs(model[None], dissimilarity_measure="euclidean")
    np.testing.assert_allclose(
        compare_rdms(model, vecs, ours), compare(rs_model, rs_subj, method=theirs)[0], atol=1e-10
    )
    lower, upper = noise_ceiling(vecs, ours)
    ref_lower, ref_upper = boot_noise_ceiling(rs_subj, method=theirs)
    assert lower == pytest.approx(ref_lower, abs=1e-10)
    assert upper == pytest.approx(ref_upper, abs=1e-10)
    assert rsatoolbox is not None


def test_spearman_matches_scipy_on_tied_rdms() -> None:
    rng = np.random.default_rng(9)
    a = np.round(rng.random(45), 1)
    b = np.round(rng.random(45), 1)
    assert float(compare_rdms(a, b, "spearman")) == pytest.approx(spearmanr(a, b)[0], abs=1e-12)
