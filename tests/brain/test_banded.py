"""BandedRidgeEncoder / banded_ridge_gcv against brute-force GCV and the closed form, himalaya and planted data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from llmvem.brain import BandedRidgeEncoder, RidgeEncoder, band_grid, banded_ridge_gcv
from llmvem.brain.metrics import r2_score_columns
from llmvem.errors import ConfigError, DataError

ALPHAS = np.logspace(-2, 5, 15)


def _planted(n: int, sizes: tuple[int, ...], v: int, seed: int = 0, noise: float = 1.0):
    """Spaces with very different scales; target j is driven by space j % S only (the others contribute nothing)."""
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((n, p)) * (10.0**i) + rng.standard_normal(p) for i, p in enumerate(sizes)]
    y = np.zeros((n, v))
    for j in range(v):
        i = j % len(sizes)
        w = rng.standard_normal(sizes[i]) / np.sqrt(sizes[i]) / 10.0**i
        y[:, j] = xs[i] @ w
    y = y / y.std(axis=0) + noise * rng.standard_normal((n, v)) + rng.standard_normal(v) * 5
    return xs, y


def _closed_form(xs: list[np.ndarray], y: np.ndarray, pen: np.ndarray, fit_intercept: bool = True) -> np.ndarray:
    """(p,) weights of the banded ridge with per-space penalties pen (S,) for a single target y (n,)."""
    x = np.hstack(xs)
    xc = x - x.mean(0) if fit_intercept else x
    yc = y - y.mean() if fit_intercept else y
    keep = np.concatenate([np.full(a.shape[1], np.isfinite(p)) for a, p in zip(xs, pen, strict=True)])
    diag = np.concatenate([np.full(a.shape[1], p) for a, p in zip(xs, pen, strict=True)])[keep]
    beta = np.zeros(x.shape[1])
    xk = xc[:, keep]
    beta[keep] = np.linalg.solve(xk.T @ xk + np.diag(diag), xk.T @ yc)
    return beta


def _brute_gcv(xs: list[np.ndarray], y: np.ndarray, pen: np.ndarray) -> float:
    """GCV error of one target with per-space penalties, from the explicit hat matrix (with intercept)."""
    n = y.shape[0]
    x = np.hstack(xs)
    xc = x - x.mean(0)
    keep = np.concatenate([np.full(a.shape[1], np.isfinite(p)) for a, p in zip(xs, pen, strict=True)])
    diag = np.concatenate([np.full(a.shape[1], p) for a, p in zip(xs, pen, strict=True)])[keep]
    xk = xc[:, keep]
    h = xk @ np.linalg.solve(xk.T @ xk + np.diag(diag), xk.T) + 1.0 / n
    res = y - h @ y
    return float((res @ res) / n / (1 - np.trace(h) / n) ** 2)


def test_band_grid() -> None:
    g = band_grid(2)
    assert g.shape == (15, 2)
    np.testing.assert_array_equal(g[0], [1, 1])
    assert (g.max(axis=1) == 1).all() and ((g == 0).sum(axis=1) <= 1).all()
    assert band_grid(3).shape == (37, 3)
    assert band_grid(4).shape == (65, 4)
    assert band_grid(2, (1.0, 0.1), allow_off=False).shape == (3, 2)
    with pytest.raises(ConfigError, match="band_levels"):
        band_grid(2, (2.0,))


@pytest.mark.parametrize("form", ["primal", "kernel"])
def test_choice_is_the_brute_force_gcv_minimum_and_coef_the_closed_form(form: str) -> None:
    xs, y = _planted(40, (6, 5), 4, seed=1)
    a = np.array([0.3, 3.0, 30.0, 300.0])
    levels = (1.0, 0.1)
    fit = banded_ridge_gcv(xs, y, a, levels, form=form)
    assert fit.form == form
    grid = band_grid(2, levels)
    for j in range(y.shape[1]):
        errs = {}
        for g in grid:
            for al in a:
                with np.errstate(divide="ignore"):
                    pen = al / (g * fit.scales)
                errs[(tuple(g), al)] = _brute_gcv(xs, y[:, j], pen)
        (g_best, a_best) = min(errs, key=errs.__getitem__)
        np.testing.assert_allclose(fit.gcv_mse[j], errs[(g_best, a_best)], rtol=1e-8)
        np.testing.assert_array_equal(fit.band_weights[:, j], g_best)
        assert fit.alpha[j] == a_best
        beta = _closed_form(xs, y[:, j], fit.alphas[:, j])
        assert fit.coef is not None
        np.testing.assert_allclose(fit.coef[:, j], beta, rtol=1e-7, atol=1e-10)


def test_primal_and_kernel_forms_agree_and_batches_do_not_matter() -> None:
    xs, y = _planted(30, (12, 25), 9, seed=2)  # p = 37 > n = 30: kernel by default
    auto = BandedRidgeEncoder(alphas=ALPHAS, dtype="float64").fit(xs, y)
    assert auto.form_ == "kernel"
    primal = BandedRidgeEncoder(alphas=ALPHAS, dtype="float64", form="primal", target_batch_size=2).fit(xs, y)
    np.testing.assert_array_equal(auto.alphas_, primal.alphas_)
    np.testing.assert_allclose(auto.coef_, primal.coef_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(auto.intercept_, primal.intercept_, rtol=1e-6, atol=1e-9)


def test_planted_spaces_recovered_and_beats_single_ridge_on_held_out() -> None:
    xs, y = _planted(400, (30, 20), 40, seed=3, noise=1.5)
    tr, te = slice(0, 300), slice(300, 400)
    model = BandedRidgeEncoder(alphas=ALPHAS).fit([x[tr] for x in xs], y[tr])
    assert model.alphas_.shape == (2, 40) and model.coef_.shape == (50, 40) and model.coef_.dtype == np.float32
    # the driving space gets the smaller penalty (in units where both spaces have the same variance)
    scaled = model.alphas_ * model.scales_[:, None]
    drive = np.arange(40) % 2
    assert (scaled[drive, np.arange(40)] < scaled[1 - drive, np.arange(40)]).mean() >= 0.9
    banded = r2_score_columns(y[te], model.predict([x[te] for x in xs]))
    joint = RidgeEncoder(alphas=ALPHAS).fit(np.hstack([x[tr] for x in xs]), y[tr])
    single = r2_score_columns(y[te], joint.predict(np.hstack([x[te] for x in xs])))
    assert banded.mean() > single.mean() + 0.01  # the scales differ 10×: one α for both spaces is a poor fit
    split = model.predict_split([x[te] for x in xs])
    np.testing.assert_allclose(split.sum(0) + model.intercept_ + model._x_mean @ model.coef_, model.predict(
        [x[te] for x in xs]), rtol=1e-4, atol=1e-4)  # fmt: skip


def test_agrees_with_himalaya_banded_ridge_at_fixed_penalties() -> None:
    himalaya_ridge = pytest.importorskip("himalaya.ridge")
    xs, y = _planted(60, (8, 6), 3, seed=4)
    fit = banded_ridge_gcv(xs, y, [5.0], (1.0,), allow_off=False)  # one grid point: γ = (1, 1), α = 5
    gammas = fit.scales[None, :]  # himalaya scales X_i by √γ_i, like our c_i
    hm = himalaya_ridge.BandedRidgeCV(
        groups=np.repeat([0, 1], [8, 6]), fit_intercept=True,
        solver_params={"n_iter": gammas, "alphas": np.array([5.0]), "progress_bar": False},
    ).fit(np.hstack(xs), y)  # fmt: skip
    assert fit.coef is not None
    np.testing.assert_allclose(fit.coef, hm.coef_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fit.alphas, 5.0 / fit.scales[:, None] * np.ones((1, 3)), rtol=1e-12)


def test_agrees_with_himalaya_weighted_kernel_ridge_per_target_penalties() -> None:
    kr = pytest.importorskip("himalaya.kernel_ridge")
    xs, y = _planted(40, (30, 25), 6, seed=5)  # p > n: kernel form
    model = BandedRidgeEncoder(alphas=ALPHAS, fit_intercept=False, dtype="float64").fit(xs, y)
    assert model.form_ == "kernel"
    rng = np.random.default_rng(9)
    xt = [rng.standard_normal((10, x.shape[1])) * x.std(0) for x in xs]
    ks = np.stack([x @ x.T for x in xs])
    kt = np.stack([a @ b.T for a, b in zip(xt, xs, strict=True)])
    deltas = np.where(np.isfinite(model.alphas_), -np.log(model.alphas_), -200.0)  # K = Σ K_i / α_i, α = 1
    hm = kr.WeightedKernelRidge(  # conjugate gradient run to convergence (its default tol is 1e-4)
        alpha=1.0, deltas=deltas, kernels="precomputed", solver_params={"max_iter": 2000, "tol": 1e-12}
    ).fit(ks, y)
    np.testing.assert_allclose(model.predict(xt), hm.predict(kt), rtol=1e-6, atol=1e-8)


def test_held_out_r2_not_worse_than_himalaya_random_search() -> None:
    himalaya_ridge = pytest.importorskip("himalaya.ridge")
    xs, y = _planted(300, (20, 15), 12, seed=6, noise=1.5)
    tr, te = slice(0, 220), slice(220, 300)
    ours = BandedRidgeEncoder(alphas=ALPHAS).fit([x[tr] for x in xs], y[tr])
    hm = himalaya_ridge.BandedRidgeCV(
        groups=np.repeat([0, 1], [20, 15]), fit_intercept=True, random_state=0,
        solver_params={"n_iter": 20, "alphas": ALPHAS, "progress_bar": False},
    ).fit(np.hstack([x[tr] for x in xs]), y[tr])  # fmt: skip
    r_ours = r2_score_columns(y[te], ours.predict([x[te] for x in xs]))
    r_hm = r2_score_columns(y[te], hm.predict(np.hstack([x[te] for x in xs])))
    assert r_ours.mean() >= r_hm.mean() - 0.01  # stated tolerance: 0.01 R² (different CV: GCV vs 5-fold)


def test_bad_and_constant_targets_masked_with_a_counted_warning() -> None:
    xs, y = _planted(50, (5, 4), 6, seed=7)
    y[3, 1] = np.nan
    y[:, 4] = 2.5
    with pytest.warns(RuntimeWarning, match="2 of 6 targets"):
        model = BandedRidgeEncoder(alphas=ALPHAS, dtype="float64").fit(xs, y)
    np.testing.assert_array_equal(model.valid_targets_, [True, False, True, True, False, True])
    np.testing.assert_array_equal(model.coef_[:, [1, 4]], 0.0)
    assert np.isnan(model.alphas_[:, [1, 4]]).all()
    pred = model.predict(xs)
    np.testing.assert_allclose(pred[:, 4], 2.5)
    np.testing.assert_allclose(pred[:, 1], np.nanmean(y[:, 1]))
    clean = BandedRidgeEncoder(alphas=ALPHAS, dtype="float64").fit(xs, y[:, [0, 2, 3, 5]])
    np.testing.assert_allclose(pred[:, [0, 2, 3, 5]], clean.predict(xs), rtol=1e-10)


def test_collinear_and_duplicated_spaces_and_one_much_wider() -> None:
    rng = np.random.default_rng(8)
    a = rng.standard_normal((80, 6))
    b = np.hstack([a, a[:, :2] + a[:, 2:4]])  # b spans exactly a's columns: the design is rank-deficient
    y = a @ rng.standard_normal((6, 3)) + 0.3 * rng.standard_normal((80, 3))
    model = BandedRidgeEncoder(alphas=ALPHAS, dtype="float64").fit([a, b], y)
    assert np.isfinite(model.coef_).all() and model.score([a, b], y) > 0.9
    wide = rng.standard_normal((80, 400))  # 400 noise features next to 6 good ones
    model = BandedRidgeEncoder(alphas=ALPHAS, dtype="float64").fit({"narrow": a, "wide": wide}, y)
    assert model.form_ == "kernel" and model.space_names_ == ["narrow", "wide"]
    assert (model.alphas_[1] * model.scales_[1] > model.alphas_[0] * model.scales_[0]).all()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_float32_and_backends_close_to_float64(backend: str) -> None:
    pytest.importorskip("torch")
    xs, y = _planted(120, (10, 8), 10, seed=10)
    ref = BandedRidgeEncoder(alphas=ALPHAS, dtype="float64", backend="numpy").fit(xs, y)
    model = BandedRidgeEncoder(alphas=ALPHAS, dtype="float32", backend=backend, device="cpu" if backend == "torch"
                               else None).fit(xs, y)  # fmt: skip
    assert model.backend_ == backend and model.coef_.dtype == np.float32
    same = (model.alphas_ == ref.alphas_).all(axis=0)
    assert same.mean() >= 0.9
    np.testing.assert_allclose(model.predict(xs)[:, same], ref.predict(xs)[:, same], rtol=1e-3, atol=1e-3)


def test_sklearn_contract_and_one_array_with_space_sizes() -> None:
    xs, y = _planted(50, (5, 4), 3, seed=11)
    est = BandedRidgeEncoder(alphas=(0.1, 1.0), space_sizes=(5, 4), space_names=("img", "txt"), dtype="float64")
    assert clone(est).get_params() == est.get_params()
    assert not hasattr(clone(est), "coef_")
    assert est.fit(np.hstack(xs), y) is est
    assert est.space_names_ == ["img", "txt"]
    ref = BandedRidgeEncoder(alphas=(0.1, 1.0), dtype="float64").fit(xs, y)
    np.testing.assert_allclose(est.predict(np.hstack(xs)), ref.predict(xs))
    one = BandedRidgeEncoder(alphas=ALPHAS).fit(xs, y[:, 0])
    assert one.predict(xs).shape == (50,) and one.alphas_.shape == (2, 1)


def test_bad_input_names_the_space() -> None:
    rng = np.random.default_rng(12)
    a, b, y = rng.standard_normal((30, 4)), rng.standard_normal((30, 3)), rng.standard_normal((30, 2))
    est = BandedRidgeEncoder(alphas=ALPHAS)
    with pytest.raises(DataError, match="space 'txt' has 29 rows but the targets have 30"):
        est.fit({"img": a, "txt": b[:29]}, y)
    bad = b.copy()
    bad[[4, 7], 1] = np.nan
    with pytest.raises(DataError, match=r"space 'txt' has NaN/inf in 2 rows \(rows \[4, 7\]\)"):
        est.fit({"img": a, "txt": bad}, y)
    with pytest.raises(DataError, match="space 'txt' has 1 column"):
        est.fit({"img": a, "txt": b[:, :1]}, y)
    with pytest.raises(DataError, match=r"at most 4 feature spaces, got 5.*space 'space4'"):
        est.fit([a, b, a, b, a], y)
    with pytest.raises(DataError, match="needs 2–4 feature spaces, got 1"):
        est.fit([a], y)
    with pytest.raises(DataError, match="pass space_sizes"):
        est.fit(np.hstack([a, b]), y)
    fitted = BandedRidgeEncoder(alphas=ALPHAS).fit([a, b], y)
    with pytest.raises(DataError, match=r"\[4, 4\] columns but the model was fitted with \[4, 3\]"):
        fitted.predict([a, a])
