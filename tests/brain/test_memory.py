"""Memory estimates of the ridge-family fits (issue 15): close to the measured peak, checked before any work, a clear
error naming what would fit, and target batching that lets a big fit pass."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmvem.brain import BandedRidgeEncoder, RidgeEncoder, fit_decoder, memory, ridge_cv_alphas
from llmvem.brain import banded as banded_mod
from llmvem.brain import ridge as ridge_mod
from llmvem.errors import ResourceError


def _data(n: int, v: int, p: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    y = (x @ rng.standard_normal((p, v)) + rng.standard_normal((n, v)) * 3).astype(np.float32)
    return x, y


def _spy(monkeypatch: pytest.MonkeyPatch, module: Any) -> dict[str, Any]:
    """Record the estimate and automatic batch a fit hands to ``plan_target_batch``."""
    seen: dict[str, Any] = {}
    real = memory.plan_target_batch

    def spy(est: memory.MemoryEstimate, **kw: Any) -> int | None:
        seen.update(est=est, **kw)
        return real(est, **kw)

    monkeypatch.setattr(module, "plan_target_batch", spy)
    return seen


def _limit(monkeypatch: pytest.MonkeyPatch, nbytes: float) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda: int(nbytes))


@pytest.mark.parametrize("cv", ["gcv", "loo", 3, "frac"])
@pytest.mark.parametrize("shape", [(200, 30, 1500), (100, 300, 800)], ids=["primal", "kernel"])
def test_ridge_estimate_is_close_to_the_measured_peak(
    monkeypatch: pytest.MonkeyPatch, cv: str | int, shape: tuple[int, int, int]
) -> None:
    """tracemalloc's peak (numpy arrays; LAPACK's workspace is not traced) lies within [0.8, 2.5] × the estimate's."""
    n, p, v = shape
    x, y = _data(n, v, p)
    seen = _spy(monkeypatch, ridge_mod)
    tracemalloc.start()
    try:
        RidgeEncoder(cv=cv, backend="numpy").fit(x, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = seen["est"].total(seen["auto_batch"])
    assert 0.8 * peak <= estimate <= 2.5 * peak, (estimate, peak)


@pytest.mark.parametrize("p", [(30, 20), (250, 150)], ids=["primal", "kernel"])
def test_banded_estimate_is_close_to_the_measured_peak(monkeypatch: pytest.MonkeyPatch, p: tuple[int, int]) -> None:
    x, y = _data(200, 4000, sum(p))
    seen = _spy(monkeypatch, banded_mod)
    tracemalloc.start()
    try:
        BandedRidgeEncoder(backend="numpy", band_levels=(1.0, 0.1)).fit([x[:, : p[0]], x[:, p[0] :]], y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = seen["est"].total(seen["auto_batch"])
    assert 0.8 * peak <= estimate <= 2.5 * peak, (estimate, peak)


def test_a_fit_too_large_stops_before_any_work_with_what_would_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data(120, 3000)
    need = memory.ridge_memory(120, 40, 3000, n_grid=20, cv="loo", itemsize=8, y_itemsize=4, compute_coef=True).total(
        64
    )
    _limit(monkeypatch, need * 0.6)
    calls: list[int] = []
    monkeypatch.setattr(ridge_mod._RidgeBasis, "from_design", lambda *a, **k: calls.append(1))  # no work may start
    with pytest.raises(ResourceError) as err:
        RidgeEncoder(cv="loo", dtype="float64", backend="numpy").fit(x, y)
    msg = str(err.value)
    assert msg.startswith("RidgeEncoder.fit: needs ≈ ") and " GB of memory, " in msg and " GB available; use " in msg
    assert "fewer targets (voxels: now 3000, ≈ " in msg and "float32" in msg
    assert calls == []
    n_fit = int(msg.split("≈ ")[2].split(" fit")[0])
    assert 0 < n_fit < 3000


def test_float32_advice_only_for_float64_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data(120, 2000)
    _limit(monkeypatch, 1e5)
    with pytest.raises(ResourceError) as err:
        RidgeEncoder(dtype="float32", backend="numpy").fit(x, y)
    assert "float32" not in str(err.value) and "fewer targets" in str(err.value)


def test_target_batching_lets_a_big_fit_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """LOO's working arrays grow with the batch: one batch of every target does not fit, 100 do, and the automatic
    batch shrinks to what fits — with the same numbers as an unconstrained fit."""
    x, y = _data(200, 2000)
    free = RidgeEncoder(cv="loo", backend="numpy").fit(x, y)
    est = memory.ridge_memory(200, 40, 2000, n_grid=20, cv="loo", itemsize=4, y_itemsize=4, compute_coef=True)
    _limit(monkeypatch, est.total(400))
    with pytest.raises(ResourceError, match=r"use target_batch_size ≤ \d+ \(now 2000\)"):
        RidgeEncoder(cv="loo", backend="numpy", target_batch_size=2000).fit(x, y)
    small = RidgeEncoder(cv="loo", backend="numpy", target_batch_size=100).fit(x, y)
    seen = _spy(monkeypatch, ridge_mod)
    auto = RidgeEncoder(cv="loo", backend="numpy").fit(x, y)
    assert seen["auto_batch"] > 400  # the automatic batch alone would not have fitted
    for m in (small, auto):
        np.testing.assert_array_equal(m.best_alphas_, free.best_alphas_)
        np.testing.assert_allclose(m.coef_, free.coef_, rtol=1e-5, atol=1e-6)


def test_batching_that_cannot_help_is_not_advised(monkeypatch: pytest.MonkeyPatch) -> None:
    """The banded ridge keeps X_cᵀY whole: the advice is fewer targets or float32, never a smaller batch."""
    x, y = _data(100, 3000)
    _limit(monkeypatch, 2e5)
    with pytest.raises(ResourceError) as err:
        BandedRidgeEncoder(backend="numpy", dtype="float64", target_batch_size=10).fit([x[:, :20], x[:, 20:]], y)
    msg = str(err.value)
    assert msg.startswith("banded_ridge_gcv: needs ≈ ") and "target_batch_size" not in msg
    assert "fewer targets" in msg and "float32" in msg


def test_decoding_and_alpha_search_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding is a RidgeEncoder from many voxels: the design (n × voxels, in float64) dominates."""
    rng = np.random.default_rng(1)
    brain, emb = rng.standard_normal((60, 20000)), rng.standard_normal((60, 16))
    _limit(monkeypatch, 5e6)
    with pytest.raises(ResourceError, match=r"fewer features or samples \(the design alone needs ≈ "):
        fit_decoder(brain[:50], emb[:50], brain[50:], emb[50:])
    with pytest.raises(ResourceError, match=r"^ridge_cv_alphas\(cv='gcv'\): needs ≈ "):
        ridge_cv_alphas(brain[:, :40], rng.standard_normal((60, 50000)))


def test_normal_sizes_pass_with_the_real_figure() -> None:
    avail = memory.available_memory()
    assert avail is None or avail > 0
    x, y = _data(100, 500)
    assert RidgeEncoder(backend="numpy").fit(x, y).coef_.shape == (40, 500)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"memory.max": "1000000", "memory.current": "400000", "memory.stat": "anon 1\ninactive_file 100000\n"},
         700000),
        ({"memory.max": "max", "memory.current": "400000"}, None),
        ({"memory/memory.limit_in_bytes": "2000000", "memory/memory.usage_in_bytes": "500000",
          "memory/memory.stat": "total_inactive_file 50000\n"}, 1550000),
        ({"memory/memory.limit_in_bytes": str(1 << 62), "memory/memory.usage_in_bytes": "500000"}, None),
        ({}, None),
    ],
    ids=["v2", "v2-unlimited", "v1", "v1-unlimited", "none"],
)  # fmt: skip
def test_cgroup_limits(tmp_path: Path, files: dict[str, str], expected: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert memory._cgroup_available(tmp_path) == expected


def test_available_memory_takes_the_smaller_of_system_and_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_cgroup_available", lambda: 12345)
    assert memory.available_memory() == 12345
    monkeypatch.setattr(memory, "_cgroup_available", lambda: None)
    system = memory.available_memory()
    assert system is None or system > 12345
