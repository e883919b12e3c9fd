"""RidgeEncoder(cv="frac") against the ``fracridge`` package (Rokem & Kay 2020) on the same arrays.

fracridge 2.0's estimators call scikit-learn's private ``_preprocess_data`` with a ``normalize`` keyword that
scikit-learn removed (1.2); the fixture below restores the package's own preprocessing (centre X and y with the
training means, no scaling) so its ``FracRidgeRegressorCV`` runs unchanged otherwise.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import KFold

from llmvem.brain import RidgeEncoder
from llmvem.brain.ridge import DEFAULT_FRACTIONS
from llmvem.errors import ConfigError, DataError

fracridge_pkg = pytest.importorskip("fracridge")
FRACS = np.array(DEFAULT_FRACTIONS)
# fracridge warns when centred X with p ≥ n has a zero singular value (it zeroes that component, as llmvem drops it)
pytestmark = pytest.mark.filterwarnings("ignore:Some eigenvalues are being treated as 0")


@pytest.fixture
def frcv(monkeypatch: pytest.MonkeyPatch) -> type:
    """``fracridge.FracRidgeRegressorCV`` with its input preprocessing working on current scikit-learn."""
    import importlib

    from sklearn.utils.validation import check_X_y

    mod = importlib.import_module("fracridge.fracridge")  # the module (the package exports the function by its name)

    def validate(self: object, X: np.ndarray, y: np.ndarray, sample_weight: None = None) -> tuple:
        X, y = check_X_y(X, y, y_numeric=True, multi_output=True)
        x_off = X.mean(axis=0) if self.fit_intercept else np.zeros(X.shape[1])  # type: ignore[attr-defined]
        y_off = y.mean(axis=0) if self.fit_intercept else np.zeros(y.shape[1:])  # type: ignore[attr-defined]
        return X - x_off, y - y_off, x_off, y_off, np.ones(X.shape[1])

    monkeypatch.setattr(mod.FracRidgeRegressor, "_validate_input", validate)
    return mod.FracRidgeRegressorCV  # type: ignore[no-any-return]


def _data(n: int, p: int, v: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Targets from weak to strong noise (so the best fraction differs between targets), with offsets."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p)) * rng.uniform(0.5, 2.0, p) + rng.standard_normal(p)
    y = x @ (rng.standard_normal((p, v)) * 0.3) + rng.standard_normal((n, v)) * np.logspace(-1, 1.3, v) + 3
    return x, y


def _fracridge_fit(x: np.ndarray, y: np.ndarray, frac: float, fit_intercept: bool) -> tuple[np.ndarray, np.ndarray]:
    """fracridge.fracridge on (centred) arrays → coef (p, v), alphas (v,)."""
    xm = x.mean(0) if fit_intercept else 0.0
    ym = y.mean(0) if fit_intercept else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Some eigenvalues are being treated as 0" (centred X with p ≥ n)
        coef, alphas = fracridge_pkg.fracridge(x - xm, y - ym, frac, jit=False)
    return coef, alphas


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize(("n", "p"), [(60, 12), (30, 80)], ids=["p<n", "p>n"])
def test_per_target_fractions_match_fracridge_cv_target_by_target(
    frcv: type, n: int, p: int, fit_intercept: bool
) -> None:
    """Per voxel: the fraction FracRidgeRegressorCV picks for that voxel alone, its α, its weights (rtol 1e-8)."""
    x, y = _data(n, p, 6, seed=1)
    model = RidgeEncoder(cv="frac", fit_intercept=fit_intercept, dtype="float64", backend="numpy").fit(x, y)
    for t in range(y.shape[1]):
        ref = frcv(fit_intercept=fit_intercept, jit=False).fit(x, y[:, t], frac_grid=FRACS)
        assert model.fractions_[t] == ref.best_frac_
        np.testing.assert_allclose(model.best_alphas_[t], ref.alpha_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(model.coef_[:, t], ref.coef_, rtol=1e-8, atol=1e-10)
        assert model.cv_r2_[:, t].max() == pytest.approx(ref.best_score_, rel=1e-9)
    assert len(np.unique(model.fractions_)) >= 2  # the targets really ask for different fractions
    coef, alphas = _fracridge_fit(x, y, 0.5, fit_intercept)  # intercepts: from the weights, as FracRidgeRegressor
    half = RidgeEncoder(cv="frac", fractions=[0.5], fit_intercept=fit_intercept, dtype="float64").fit(x, y)
    np.testing.assert_allclose(half.coef_, coef, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(half.best_alphas_, np.ravel(alphas), rtol=1e-8)
    expected_b = y.mean(0) - x.mean(0) @ coef if fit_intercept else np.zeros(y.shape[1])
    np.testing.assert_allclose(half.intercept_, expected_b, rtol=1e-8, atol=1e-9)


def test_one_shared_fraction_is_fracridge_cv_on_all_targets(frcv: type) -> None:
    """alpha_per_target=False: FracRidgeRegressorCV's single best fraction (mean R² over targets), coef and α."""
    x, y = _data(60, 12, 10, seed=2)
    ref = frcv(fit_intercept=True, jit=False).fit(x, y, frac_grid=FRACS)
    model = RidgeEncoder(cv="frac", alpha_per_target=False, dtype="float64").fit(x, y)
    np.testing.assert_array_equal(model.fractions_, ref.best_frac_)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.best_alphas_, np.ravel(ref.alpha_), rtol=1e-8)
    assert np.nanmean(model.cv_r2_, axis=1).max() == pytest.approx(ref.best_score_, rel=1e-9)
    assert not hasattr(model, "alpha_")  # each target keeps its own α for the shared fraction


def test_weight_norm_is_the_requested_fraction_of_ols() -> None:
    x, y = _data(50, 8, 5, seed=3)
    xc, yc = x - x.mean(0), y - y.mean(0)
    ols = np.linalg.lstsq(xc, yc, rcond=None)[0]
    for frac in (0.1, 0.5, 0.9):
        m = RidgeEncoder(cv="frac", fractions=[frac], dtype="float64").fit(x, y)
        ratio = np.linalg.norm(m.coef_, axis=0) / np.linalg.norm(ols, axis=0)
        np.testing.assert_allclose(ratio, frac, atol=3e-3)  # fracridge interpolates α on a log grid
        ridge = np.linalg.solve(xc.T @ xc + m.best_alphas_[0] * np.eye(8), xc.T @ yc[:, 0])
        np.testing.assert_allclose(m.coef_[:, 0], ridge, rtol=1e-8)  # the weights are ridge weights at that α
    ols_fit = RidgeEncoder(cv="frac", fractions=[1.0, 1.05], dtype="float64").fit(x, y)
    np.testing.assert_array_equal(ols_fit.best_alphas_, 0.0)
    np.testing.assert_allclose(ols_fit.coef_, ols, rtol=1e-8)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_float32_batches_and_backends_agree_with_float64(backend: str) -> None:
    x, y = _data(60, 12, 9, seed=4)
    ref = RidgeEncoder(cv="frac", dtype="float64", backend="numpy").fit(x, y)
    m = RidgeEncoder(cv="frac", dtype="float32", backend=backend, target_batch_size=4).fit(x, y.astype(np.float32))
    assert m.coef_.dtype == np.float32
    same = m.fractions_ == ref.fractions_
    assert same.mean() >= 0.8  # float32 rounding may flip a near-tie between neighbouring fractions
    np.testing.assert_allclose(m.coef_[:, same], ref.coef_[:, same], rtol=1e-4, atol=1e-5)
    b64 = RidgeEncoder(cv="frac", dtype="float64", backend=backend, target_batch_size=2).fit(x, y)
    np.testing.assert_array_equal(b64.fractions_, ref.fractions_)
    np.testing.assert_allclose(b64.coef_, ref.coef_, rtol=1e-9, atol=1e-12)


def test_bad_targets_are_masked_and_clone_keeps_fractions() -> None:
    x, y = _data(40, 6, 5, seed=5)
    y[3, 1] = np.nan
    y[:, 3] = 2.0
    with pytest.warns(RuntimeWarning, match="2 of 5 targets"):
        m = RidgeEncoder(cv="frac", fractions=(0.2, 0.6, 1.0)).fit(x, y)
    assert np.isnan(m.fractions_[[1, 3]]).all() and np.isnan(m.best_alphas_[[1, 3]]).all()
    assert set(m.fractions_[[0, 2, 4]]) <= {0.2, 0.6, 1.0}
    assert (m.coef_[:, [1, 3]] == 0).all()
    assert m.cv_r2_.shape == m.cv_mse_.shape == (3, 5)
    c = clone(m)
    assert c.get_params()["fractions"] == (0.2, 0.6, 1.0) and not hasattr(c, "fractions_")


def test_folds_are_fracridge_cv_folds() -> None:
    """The 5 folds are scikit-learn's KFold(5) without shuffling, as GridSearchCV(cv=None) uses."""
    from llmvem.brain.ridge import FRAC_FOLDS, _Backend, _folds

    x, _ = _data(23, 3, 1)
    ours = _folds(x, FRAC_FOLDS, True, "auto", _Backend("numpy", None, np.dtype(np.float64)))
    for f, (_, test) in zip(ours, KFold(5).split(x), strict=True):
        np.testing.assert_array_equal(f.test, test)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"fractions": [0.0, 0.5]}, r"in \(0, 1.1\]"),
        ({"fractions": [0.5, 1.5]}, r"in \(0, 1.1\]"),
        ({"fractions": [0.5, np.nan]}, r"in \(0, 1.1\]"),
        ({"fractions": [0.6, 0.3]}, "strictly increasing"),
        ({"fractions": []}, "non-empty"),
        ({"fractions": "abc"}, "sequence of numbers"),
    ],
)
def test_bad_fractions_raise_config_error(params: dict, match: str) -> None:
    x, y = _data(30, 4, 2)
    with pytest.raises(ConfigError, match=match):
        RidgeEncoder(cv="frac", **params).fit(x, y)


def test_bad_cv_and_too_few_samples() -> None:
    x, y = _data(30, 4, 2)
    with pytest.raises(ConfigError, match="'gcv', 'loo', 'frac' or a number of folds"):
        RidgeEncoder(cv="fractional").fit(x, y)
    with pytest.raises(DataError, match="needs at least 10 samples"):
        RidgeEncoder(cv="frac").fit(x[:9], y[:9])
    RidgeEncoder(cv="gcv", fractions=[5.0]).fit(x, y)  # fractions are only read with cv="frac"
