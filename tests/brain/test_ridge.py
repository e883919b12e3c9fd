"""RidgeEncoder / ridge_cv_alphas against brute-force GCV, LOO and K-fold, scikit-learn's RidgeCV and himalaya."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import RidgeCV

from llmvem.brain import RidgeEncoder, ridge_cv_alphas, ridge_loo_alphas
from llmvem.brain.metrics import r2_score_columns
from llmvem.brain.ridge import DEFAULT_FRACTIONS
from llmvem.errors import ConfigError, DataError

ALPHAS = np.logspace(-2, 6, 20)


def _data(n: int, p: int, v: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Targets with a spread of noise levels, so different targets prefer different α."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) * rng.uniform(0.5, 2.0, p) + rng.standard_normal(p)
    w = rng.standard_normal((p, v)) * 0.3
    noise = np.logspace(-1, 1.5, v)
    y = x @ w + rng.standard_normal((n, v)) * noise + rng.standard_normal(v) * 3
    return x, y


def _brute_force_loo(x: np.ndarray, y: np.ndarray, alpha: float, fit_intercept: bool) -> np.ndarray:
    """(v,) mean squared LOO error by refitting without each sample."""
    n = x.shape[0]
    err = np.zeros(y.shape[1])
    for i in range(n):
        keep = np.arange(n) != i
        xt, yt = x[keep], y[keep]
        xm = xt.mean(0) if fit_intercept else np.zeros(x.shape[1])
        ym = yt.mean(0) if fit_intercept else np.zeros(y.shape[1])
        xc = xt - xm
        beta = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (yt - ym))
        pred = (x[i] - xm) @ beta + ym
        err += (y[i] - pred) ** 2
    return err / n


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize(("n", "p"), [(15, 4), (12, 20)])
def test_loo_mse_equals_brute_force(n: int, p: int, fit_intercept: bool) -> None:
    x, y = _data(n, p, 5, seed=1)
    alphas = np.array([0.1, 3.0, 100.0])
    best, mse = ridge_loo_alphas(x, y, alphas, fit_intercept=fit_intercept)
    expected = np.stack([_brute_force_loo(x, y, a, fit_intercept) for a in alphas])
    np.testing.assert_allclose(mse, expected, rtol=1e-8)
    np.testing.assert_array_equal(best, alphas[np.argmin(expected, axis=0)])


@pytest.mark.parametrize(("n", "p"), [(80, 20), (40, 120)], ids=["p<n", "p>n"])
def test_alphas_and_predictions_match_sklearn(n: int, p: int) -> None:
    x, y = _data(n, p, 40)
    sk = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x, y)
    assert len(np.unique(sk.alpha_)) >= 3  # the data really asks for different penalties
    model = RidgeEncoder(alphas=tuple(ALPHAS), cv="loo", dtype="float64").fit(x, y)
    np.testing.assert_array_equal(model.best_alphas_, sk.alpha_)
    assert model.coef_.shape == (p, 40)
    assert model.intercept_.shape == (40,)
    assert model.cv_mse_.shape == (20, 40)
    np.testing.assert_allclose(model.coef_, sk.coef_.T, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.intercept_, sk.intercept_, rtol=1e-6, atol=1e-9)
    x_new, _ = _data(30, p, 1, seed=5)
    np.testing.assert_allclose(model.predict(x_new), sk.predict(x_new), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("n", "p"), [(80, 20), (40, 120)], ids=["p<n", "p>n"])
def test_float32_close_to_sklearn(n: int, p: int) -> None:
    x, y = _data(n, p, 40)
    sk = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(x, y)
    model = RidgeEncoder(alphas=ALPHAS, cv="loo").fit(x, y)
    assert model.coef_.dtype == np.float32
    same = model.best_alphas_ == sk.alpha_
    assert same.mean() >= 0.95
    pred, ref = model.predict(x), sk.predict(x)
    assert pred.dtype == np.float32
    np.testing.assert_allclose(pred[:, same], ref[:, same], rtol=1e-3, atol=1e-3 * np.abs(ref).max())


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_single_alpha_mode_matches_sklearn(fit_intercept: bool) -> None:
    x, y = _data(60, 30, 25, seed=2)
    sk = RidgeCV(alphas=ALPHAS, fit_intercept=fit_intercept).fit(x, y)
    model = RidgeEncoder(
        alphas=ALPHAS, cv="loo", fit_intercept=fit_intercept, alpha_per_target=False, dtype="float64"
    ).fit(x, y)
    assert model.alpha_ == pytest.approx(sk.alpha_)
    np.testing.assert_array_equal(model.best_alphas_, np.full(25, sk.alpha_))
    np.testing.assert_allclose(model.predict(x), sk.predict(x), rtol=1e-6, atol=1e-9)
    if not fit_intercept:
        np.testing.assert_array_equal(model.intercept_, 0.0)


def test_no_intercept_per_target_matches_sklearn() -> None:
    x, y = _data(50, 70, 20, seed=3)
    sk = RidgeCV(alphas=ALPHAS, fit_intercept=False, alpha_per_target=True).fit(x, y)
    model = RidgeEncoder(alphas=ALPHAS, cv="loo", fit_intercept=False, dtype="float64").fit(x, y)
    np.testing.assert_array_equal(model.best_alphas_, sk.alpha_)
    np.testing.assert_allclose(model.predict(x), sk.predict(x), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cv", ["gcv", "loo", 4])
def test_target_batches_give_the_same_fit(cv: str | int) -> None:
    x, y = _data(50, 30, 23, seed=4)
    whole = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype="float64").fit(x, y)
    batched = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype="float64", target_batch_size=7).fit(x, y)
    np.testing.assert_array_equal(whole.best_alphas_, batched.best_alphas_)
    np.testing.assert_allclose(whole.cv_mse_, batched.cv_mse_, rtol=1e-12)
    np.testing.assert_allclose(whole.coef_, batched.coef_, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cv", ["gcv", "loo", 3])
def test_bad_targets_are_masked_with_a_warning(cv: str | int) -> None:
    x, y = _data(40, 10, 8, seed=6)
    y[3, 2] = np.nan
    y[:, 5] = 4.5
    y[7, 6] = np.inf
    with pytest.warns(RuntimeWarning, match="3 of 8 targets"):
        model = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype="float64").fit(x, y)
    bad = [2, 5, 6]
    good = [0, 1, 3, 4, 7]
    np.testing.assert_array_equal(model.valid_targets_, np.isin(np.arange(8), good))
    np.testing.assert_array_equal(model.coef_[:, bad], 0.0)
    assert np.isnan(model.best_alphas_[bad]).all()
    assert np.isnan(model.cv_mse_[:, bad]).all()
    pred = model.predict(x)
    assert np.isfinite(pred).all()
    np.testing.assert_allclose(pred[:, 2], np.nanmean(y[:, 2]))
    np.testing.assert_allclose(pred[:, 5], 4.5)
    finite6 = y[np.isfinite(y[:, 6]), 6]
    np.testing.assert_allclose(pred[:, 6], finite6.mean())
    clean = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype="float64").fit(x, y[:, good])
    np.testing.assert_allclose(pred[:, good], clean.predict(x), rtol=1e-10)
    np.testing.assert_array_equal(model.best_alphas_[good], clean.best_alphas_)


def test_all_targets_bad_raises() -> None:
    x, _ = _data(20, 5, 1)
    with pytest.raises(DataError, match="all 2 targets"):
        RidgeEncoder().fit(x, np.ones((20, 2)))


def test_one_d_target_and_score() -> None:
    x, y = _data(60, 10, 3, seed=7)
    model = RidgeEncoder(alphas=ALPHAS, cv="loo", dtype="float64").fit(x, y[:, 0])
    assert model.coef_.shape == (10, 1)
    pred = model.predict(x)
    assert pred.shape == (60,)
    sk = RidgeCV(alphas=ALPHAS).fit(x, y[:, 0])
    np.testing.assert_allclose(pred, sk.predict(x), rtol=1e-6)
    assert model.score(x, y[:, 0]) == pytest.approx(sk.score(x, y[:, 0]), rel=1e-6)
    multi = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(x, y)
    assert multi.score(x, y) == pytest.approx(float(r2_score_columns(y, multi.predict(x)).mean()))


def test_sklearn_params_and_clone() -> None:
    model = RidgeEncoder(alphas=(1.0, 10.0), target_batch_size=5)
    params = model.get_params()
    assert params == {
        "alphas": (1.0, 10.0),
        "fit_intercept": True,
        "alpha_per_target": True,
        "target_batch_size": 5,
        "dtype": "float32",
        "cv": "gcv",
        "backend": "auto",
        "device": None,
        "form": "auto",
        "fractions": DEFAULT_FRACTIONS,
    }
    assert isinstance(RidgeEncoder().alphas, tuple)
    model.set_params(alpha_per_target=False, dtype="float64")
    copy = clone(model)
    assert copy.get_params()["alpha_per_target"] is False
    assert not hasattr(copy, "coef_")


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.zeros(10), np.zeros(10), "X must be 2-D"),
        (np.zeros((10, 3)), np.zeros((9, 2)), "X has 10 rows but Y has 9"),
        (np.zeros((10, 3)), np.zeros((10, 2, 2)), "Y must be 1-D"),
        (np.zeros((2, 3)), np.zeros((2, 2)), "at least 3 samples"),
        (np.zeros((10, 3)), np.array([["a"]] * 10), "numeric"),
        (np.array([[1.0, np.nan]] * 5), np.zeros((5, 1)), "NaN/inf"),
        (np.zeros((10, 0)), np.zeros((10, 1)), "no features"),
    ],
)
def test_bad_inputs_raise_data_error(x: np.ndarray, y: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        RidgeEncoder().fit(x, y)


def test_bad_hyperparameters_raise_config_error() -> None:
    x, y = _data(20, 5, 2)
    with pytest.raises(ConfigError, match="alpha"):
        RidgeEncoder(alphas=(1.0, -1.0)).fit(x, y)
    with pytest.raises(ConfigError, match="dtype"):
        RidgeEncoder(dtype="int32").fit(x, y)
    with pytest.raises(ConfigError, match="target_batch_size"):
        RidgeEncoder(target_batch_size=0).fit(x, y)
    with pytest.raises(ConfigError, match="cv must be"):
        RidgeEncoder(cv="kfold").fit(x, y)
    with pytest.raises(ConfigError, match="at least 2"):
        RidgeEncoder(cv=1).fit(x, y)
    with pytest.raises(DataError, match="2 samples per fold"):
        RidgeEncoder(cv=15).fit(x, y)
    with pytest.raises(ConfigError, match="backend"):
        RidgeEncoder(backend="jax").fit(x, y)
    with pytest.raises(ConfigError, match="form"):
        RidgeEncoder(form="dual").fit(x, y)


def test_predict_checks_features() -> None:
    x, y = _data(20, 5, 2)
    model = RidgeEncoder().fit(x, y)
    with pytest.raises(DataError, match="5"):
        model.predict(np.zeros((3, 4)))
    with pytest.raises(DataError, match="NaN"):
        model.predict(np.full((3, 5), np.nan))


def test_ridge_loo_alphas_rejects_nan_targets() -> None:
    x, y = _data(20, 5, 3)
    y[0, 1] = np.nan
    with pytest.raises(DataError, match=r"targets \[1\]"):
        ridge_loo_alphas(x, y, ALPHAS)


def _hat(x: np.ndarray, alpha: float, fit_intercept: bool) -> np.ndarray:
    """The (n, n) ridge hat matrix, intercept unpenalised."""
    n = x.shape[0]
    xc = x - x.mean(0) if fit_intercept else x
    h = xc @ np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T)
    return h + np.full((n, n), 1.0 / n) if fit_intercept else h


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize(("n", "p"), [(30, 6), (12, 20)], ids=["p<n", "p>n"])
def test_gcv_equals_brute_force(n: int, p: int, fit_intercept: bool) -> None:
    x, y = _data(n, p, 6, seed=8)
    alphas = np.array([0.3, 4.0, 80.0])
    best, mse = ridge_cv_alphas(x, y, alphas, cv="gcv", fit_intercept=fit_intercept)
    expected = []
    for a in alphas:
        h = _hat(x, a, fit_intercept)
        resid = y - h @ y
        expected.append((resid**2).mean(0) / (1 - np.trace(h) / n) ** 2)
    np.testing.assert_allclose(mse, np.stack(expected), rtol=1e-8)
    np.testing.assert_array_equal(best, alphas[np.argmin(np.stack(expected), axis=0)])


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_kfold_equals_brute_force(fit_intercept: bool) -> None:
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold

    x, y = _data(23, 5, 4, seed=9)
    alphas = np.array([0.1, 10.0, 1000.0])
    _, mse = ridge_cv_alphas(x, y, alphas, cv=4, fit_intercept=fit_intercept)
    expected = np.zeros((3, 4))
    for tr, te in KFold(4).split(x):
        for j, a in enumerate(alphas):
            pred = Ridge(alpha=a, fit_intercept=fit_intercept).fit(x[tr], y[tr]).predict(x[te])
            expected[j] += ((y[te] - pred) ** 2).mean(0) / 4
    np.testing.assert_allclose(mse, expected, rtol=1e-8)


@pytest.mark.parametrize(("n", "p"), [(80, 20), (40, 120)], ids=["p<n", "p>n"])
def test_kfold_matches_himalaya(n: int, p: int) -> None:
    himalaya = pytest.importorskip("himalaya.ridge")
    from sklearn.model_selection import KFold

    x, y = _data(n, p, 30, seed=10)
    ref = himalaya.RidgeCV(alphas=ALPHAS, cv=KFold(5), fit_intercept=True, solver_params={"warn": False}).fit(x, y)
    model = RidgeEncoder(alphas=ALPHAS, cv=5, dtype="float64", backend="numpy").fit(x, y)
    assert len(np.unique(model.best_alphas_)) >= 3
    np.testing.assert_allclose(model.best_alphas_, ref.best_alphas_, rtol=1e-6)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.predict(x), ref.predict(x), rtol=1e-6, atol=1e-9)


def test_gcv_and_loo_pick_nearly_the_same_alphas_when_n_exceeds_p() -> None:
    x, y = _data(400, 20, 60, seed=11)
    gcv = RidgeEncoder(alphas=ALPHAS, cv="gcv", dtype="float64").fit(x, y)
    loo = RidgeEncoder(alphas=ALPHAS, cv="loo", dtype="float64").fit(x, y)
    assert (gcv.best_alphas_ == loo.best_alphas_).mean() >= 0.8
    # where they differ, the LOO curve is flat: GCV's α is within 1 % of the best LOO error
    at_gcv = loo.cv_mse_[np.searchsorted(ALPHAS, gcv.best_alphas_), np.arange(60)]
    assert (at_gcv <= 1.01 * loo.cv_mse_.min(axis=0)).all()


@pytest.mark.parametrize("cv", ["gcv", "loo", 3])
def test_primal_and_kernel_forms_agree(cv: str | int) -> None:
    for n, p in [(40, 12), (15, 40)]:
        x, y = _data(n, p, 9, seed=12)
        primal = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype="float64", form="primal").fit(x, y)
        kernel = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype="float64", form="kernel").fit(x, y)
        assert (primal.form_, kernel.form_) == ("primal", "kernel")
        np.testing.assert_allclose(primal.cv_mse_, kernel.cv_mse_, rtol=1e-7)
        np.testing.assert_allclose(primal.coef_, kernel.coef_, rtol=1e-7, atol=1e-10)
    auto = RidgeEncoder(alphas=ALPHAS).fit(*_data(15, 40, 2))
    assert auto.form_ == "kernel"


@pytest.mark.parametrize("cv", ["gcv", "loo", 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_cpu_backend_matches_numpy(cv: str | int, dtype: str) -> None:
    pytest.importorskip("torch")
    x, y = _data(50, 15, 12, seed=13)
    y[:, 3] = 2.0  # a constant target goes through the masking path on both backends
    with pytest.warns(RuntimeWarning, match="1 of 12"):
        ref = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype=dtype, backend="numpy").fit(x, y)
    with pytest.warns(RuntimeWarning, match="1 of 12"):
        tch = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype=dtype, backend="torch", device="cpu").fit(x, y)
    assert tch.backend_ == "torch" and ref.backend_ == "numpy"
    tol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(tch.cv_mse_, ref.cv_mse_, rtol=tol)
    same = tch.best_alphas_ == ref.best_alphas_
    assert same[ref.valid_targets_].mean() >= 0.9
    np.testing.assert_allclose(tch.predict(x)[:, same], ref.predict(x)[:, same], rtol=tol, atol=tol * 10)


def test_float32_targets_are_not_copied_or_modified() -> None:
    import tracemalloc

    rng = np.random.default_rng(14)
    x = rng.standard_normal((400, 16))
    y = (x @ rng.standard_normal((16, 3000)) + rng.standard_normal((400, 3000))).astype(np.float32)
    before = y.copy()
    tracemalloc.start()
    RidgeEncoder(alphas=ALPHAS, backend="numpy", target_batch_size=500).fit(x, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(y, before)
    assert peak < 0.5 * y.nbytes  # batches, not a float64 copy of Y (that alone would be 2 × Y)


def test_float32_gcv_close_to_float64_with_offset_targets() -> None:
    x, y = _data(300, 20, 30, seed=15)
    y = y + 50.0  # a large common offset: the centring must not lose the signal in float32
    f64 = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(x, y)
    f32 = RidgeEncoder(alphas=ALPHAS, dtype="float32", backend="numpy").fit(x, y.astype(np.float32))
    np.testing.assert_allclose(f32.cv_mse_, f64.cv_mse_, rtol=2e-3)
    assert (f32.best_alphas_ == f64.best_alphas_).mean() >= 0.9


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_float32_gcv_with_offsets_on_some_targets_only(backend: str) -> None:
    """Targets whose offset dwarfs their spread are centred and projected again, column by column."""
    x, y = _data(300, 20, 30, seed=16)
    y[:, ::3] += 1e4  # a third of the targets: mean² ≫ variance
    y[4, 7] = np.nan  # and an invalid one among them
    with pytest.warns(RuntimeWarning, match="1 of 30 targets"):
        f64 = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(x, y)
    with pytest.warns(RuntimeWarning, match="1 of 30 targets"):
        f32 = RidgeEncoder(alphas=ALPHAS, dtype="float32", backend=backend, target_batch_size=11).fit(
            x, y.astype(np.float32)
        )
    good = f64.valid_targets_
    np.testing.assert_allclose(f32.cv_mse_[:, good], f64.cv_mse_[:, good], rtol=5e-3)
    # flat GCV curves make exact α ties fragile (on a GPU 86 % agree at 4e-4 relative error): the α chosen in
    # float32 must be as good as float64's own choice, judged by the float64 errors
    chosen = np.abs(np.log(np.asarray(ALPHAS))[:, None] - np.log(f32.best_alphas_[good])[None, :]).argmin(axis=0)
    at_chosen = f64.cv_mse_[:, good][chosen, np.arange(chosen.size)]
    assert (at_chosen <= f64.cv_mse_[:, good].min(axis=0) * (1 + 1e-3)).all()
    same = f32.best_alphas_ == f64.best_alphas_
    # float32 resolution at 1e4 is 1e-3
    np.testing.assert_allclose(f32.predict(x)[:, same], f64.predict(x)[:, same], rtol=1e-5, atol=1e-2)


def test_gcv_auto_batches_keep_memory_near_y() -> None:
    """Large GCV batches (few GEMMs) still keep the working arrays well below Y."""
    import tracemalloc

    rng = np.random.default_rng(17)
    x = rng.standard_normal((600, 64)).astype(np.float32)
    y = (x @ rng.standard_normal((64, 4000)) + rng.standard_normal((600, 4000))).astype(np.float32)
    tracemalloc.start()
    RidgeEncoder(alphas=ALPHAS, backend="numpy").fit(x, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1.0 * y.nbytes


@pytest.mark.parametrize("alpha_per_target", [True, False])
def test_torch_row_streamed_gcv_matches_numpy(monkeypatch: pytest.MonkeyPatch, alpha_per_target: bool) -> None:
    """The torch GCV path streams Y by row blocks (here 7 blocks); it equals the numpy column-batch path."""
    pytest.importorskip("torch")
    import llmvem.brain.ridge as ridge_mod

    x, y = _data(70, 12, 40, seed=18)
    y[:, ::4] += 1e3  # offsets on some targets
    y[5, 9] = np.nan
    y[:, 11] = -3.0
    monkeypatch.setattr(ridge_mod, "_BATCH_ELEMENTS_GPU", 10 * 40)  # 10 rows per block
    calls: list[int] = []
    orig = ridge_mod._row_streamed_batch
    monkeypatch.setattr(ridge_mod, "_row_streamed_batch", lambda *a: calls.append(1) or orig(*a))
    kw = dict(alphas=ALPHAS, dtype="float64", alpha_per_target=alpha_per_target)
    with pytest.warns(RuntimeWarning, match="2 of 40"):
        ref = RidgeEncoder(backend="numpy", **kw).fit(x, y)  # type: ignore[arg-type]
    with pytest.warns(RuntimeWarning, match="2 of 40"):
        tch = RidgeEncoder(backend="torch", device="cpu", **kw).fit(x, y)  # type: ignore[arg-type]
    assert calls, "the row-streamed path was not used"
    np.testing.assert_array_equal(tch.valid_targets_, ref.valid_targets_)
    np.testing.assert_allclose(tch.cv_mse_, ref.cv_mse_, rtol=1e-9)
    np.testing.assert_array_equal(tch.best_alphas_, ref.best_alphas_)
    np.testing.assert_allclose(tch.predict(x), ref.predict(x), rtol=1e-9, atol=1e-8)
