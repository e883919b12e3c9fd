"""Variance partitioning: inclusion–exclusion, planted unique/shared parts, himalaya's r2_score_split, ROI tables."""

from __future__ import annotations

import numpy as np
import pytest

from llmvem.brain import PartitionResult, r2_score_split, set_theoretic_parts, variance_partition
from llmvem.brain.partition import PARTITION_CEILING_BOUND, check_partition_spaces
from llmvem.errors import DataError

ALPHAS = np.logspace(-2, 5, 12)


def _spaces(n: int, seed: int, sizes: tuple[int, ...] = (12, 10, 8)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, p)) for p in sizes]


def _signal(x: np.ndarray, v: int, rng: np.random.Generator) -> np.ndarray:
    s = x @ rng.standard_normal((x.shape[1], v))
    return s / s.std(axis=0)


def test_inclusion_exclusion_on_known_sets() -> None:
    # areas of a 3-set Venn diagram: exclusive parts a, b, c, ab, ac, bc, abc; the union R² of each subset from them
    ex = {"a": 0.10, "b": 0.05, "c": 0.02, "ab": 0.04, "ac": 0.03, "bc": 0.01, "abc": 0.06}
    letters = "abc"

    def union(sub: frozenset[int]) -> np.ndarray:
        inside = {letters[i] for i in sub}
        return np.array([sum(v for k, v in ex.items() if set(k) & inside)])

    subsets = [frozenset(c) for k in (1, 2, 3) for c in __import__("itertools").combinations(range(3), k)]
    parts = set_theoretic_parts({s: union(s) for s in subsets}, ["a", "b", "c"])
    expect = {"unique:a": "a", "unique:b": "b", "unique:c": "c", "shared:a&b": "ab", "shared:a&c": "ac",
              "shared:b&c": "bc", "shared:a&b&c": "abc"}  # fmt: skip
    assert set(parts) == set(expect)
    for label, key in expect.items():
        np.testing.assert_allclose(parts[label], ex[key], atol=1e-12)


@pytest.mark.filterwarnings("ignore:variance_partition. negative estimates")
def test_planted_unique_parts_recovered_and_shared_zero_for_independent_spaces() -> None:
    rng = np.random.default_rng(0)
    n_tr, n_te, v = 600, 400, 30
    a, b = _spaces(n_tr + n_te, 1, (12, 10))
    # voxel j: variance 0.3 from A, 0.2 from B, 0.5 noise (independent spaces: shared = 0)
    y = np.sqrt(0.3) * _signal(a, v, rng) + np.sqrt(0.2) * _signal(b, v, rng) + np.sqrt(0.5) * rng.standard_normal(
        (n_tr + n_te, v))  # fmt: skip
    tr, te = slice(0, n_tr), slice(n_tr, None)
    res = variance_partition({"A": a[tr], "B": b[tr]}, y[tr], {"A": a[te], "B": b[te]}, y[te], alphas=ALPHAS)
    assert res.space_names == ["A", "B"]
    assert set(res.parts) == {"unique:A", "unique:B", "shared:A&B"}
    # stated tolerance: ROI means within 0.05 R² of the planted parts (finite-sample noise and ridge shrinkage)
    assert abs(res.parts["unique:A"].mean() - 0.3) < 0.05
    assert abs(res.parts["unique:B"].mean() - 0.2) < 0.05
    assert abs(res.parts["shared:A&B"].mean()) < 0.03
    np.testing.assert_allclose(res.parts["unique:A"] + res.parts["unique:B"] + res.shared, res.joint, atol=1e-12)
    # product measure: the split sums to the joint R² up to the offset term, and follows the planted parts
    assert abs(res.split["split:A"].mean() - 0.3) < 0.05 and abs(res.split["split:B"].mean() - 0.2) < 0.05
    np.testing.assert_allclose(res.split["split:A"] + res.split["split:B"], res.joint, atol=0.01)


@pytest.mark.filterwarnings("ignore:variance_partition. negative estimates")
def test_duplicated_space_is_all_shared() -> None:
    rng = np.random.default_rng(2)
    (a,) = _spaces(700, 3, (10,))
    dup = a @ rng.standard_normal((10, 10))  # the same column space, other coordinates
    y = np.sqrt(0.5) * _signal(a, 20, rng) + np.sqrt(0.5) * rng.standard_normal((700, 20))
    tr, te = slice(0, 400), slice(400, None)
    res = variance_partition([a[tr], dup[tr]], y[tr], [a[te], dup[te]], y[te], space_names=("img", "copy"))
    assert res.parts["shared:img&copy"].mean() > 0.4
    assert abs(res.parts["unique:img"].mean()) < 0.02 and abs(res.parts["unique:copy"].mean()) < 0.02


def test_three_spaces_and_roi_table_with_ceiling_and_negative_counts() -> None:
    rng = np.random.default_rng(4)
    a, b, c = _spaces(500, 5)
    v = 24
    y = 0.6 * _signal(a, v, rng) + 0.4 * _signal(b, v, rng) + rng.standard_normal((500, v))
    y[:, 5] = 3.0  # a constant voxel and a voxel with a NaN: NaN parts, not a crash
    y[10, 9] = np.nan
    tr, te = slice(0, 350), slice(350, None)
    with pytest.warns(RuntimeWarning, match=r"negative estimates \(.*unique:c: \d+ of 24"):
        res = variance_partition([a[tr], b[tr], c[tr]], y[tr], [a[te], b[te], c[te]], y[te], alphas=ALPHAS,
                                 space_names=("a", "b", "c"))  # fmt: skip
    assert len(res.parts) == 7 and len(res.subset_r2) == 7
    for name, arr in res.arrays().items():
        if not name.startswith("alpha:"):
            assert np.isnan(arr[[5, 9]]).all(), name
    ok = ~np.isin(np.arange(v), [5, 9])
    assert res.parts["unique:a"][ok].mean() > res.parts["unique:c"][ok].mean()
    rois = ["V1"] * 12 + ["FFA"] * 12
    nc = np.full(v, 0.5)
    table = res.table(rois, noise_ceiling=nc)
    assert table["roi"].tolist() == ["V1", "FFA"]
    assert {"unique:a", "shared:a&b&c", "shared", "joint", "split:a", "ceiling", "joint_over_ceiling"} <= set(table)
    negs = (res.parts["unique:c"][:12] < 0).sum()
    assert table.loc[0, "n_negative:unique:c"] == negs == res.n_negative["unique:c"] - (res.parts["unique:c"][12:] < 0
                                                                                         ).sum()  # fmt: skip
    assert negs > 0  # c explains nothing: about half of its unique estimates are negative, and they are reported
    # means include the negative estimates (nothing clipped)
    assert table.loc[0, "unique:c"] == pytest.approx(np.nanmean(res.parts["unique:c"][:12]))
    assert table.loc[0, "ceiling"] == 0.5
    arrays = res.arrays()
    assert {"r2:a+b+c", "unique:a", "shared", "split:c", "alpha:a"} <= set(arrays)
    assert all(x.shape == (v,) for x in arrays.values())


def test_r2_score_split_matches_himalaya() -> None:
    scoring = pytest.importorskip("himalaya.scoring")
    rng = np.random.default_rng(6)
    parts = rng.standard_normal((3, 50, 7))
    y = parts.sum(0) * 0.5 + rng.standard_normal((50, 7))
    y -= y.mean(0)
    ref = scoring.r2_score_split(y, parts, include_correlation=True)
    np.testing.assert_allclose(r2_score_split(y, parts, center=False), ref, rtol=1e-12)
    centred = parts - parts.mean(1, keepdims=True)
    np.testing.assert_allclose(r2_score_split(y, parts), scoring.r2_score_split(y, centred), rtol=1e-12)
    joint = 1 - ((y - centred.sum(0)) ** 2).sum(0) / (y**2).sum(0)
    np.testing.assert_allclose(r2_score_split(y, parts).sum(0), joint, rtol=1e-12)


def test_bad_input() -> None:
    a, b, c, d = _spaces(40, 7, (4, 4, 4, 4))
    y = np.random.default_rng(8).standard_normal((40, 3))
    with pytest.raises(DataError, match="supports 2–3 spaces"):
        variance_partition([a, b, c, d], y, [a, b, c, d], y)
    with pytest.raises(DataError, match=r"space 'B' has 39 rows"):
        variance_partition({"A": a, "B": b}, y, {"A": a, "B": b[:39]}, y)
    with pytest.raises(DataError, match="not the training spaces"):
        variance_partition({"A": a, "B": b}, y, {"B": b, "A": a}, y)
    with pytest.raises(DataError, match="3 ROI labels for"):
        PartitionResult(["A", "B"], {"A+B": np.zeros(2)}, {}, {}, np.zeros((2, 2))).table(["x", "y", "z"])


def test_check_partition_spaces_names_the_space() -> None:
    a, b, c, d = _spaces(30, 9, (3, 3, 3, 3))
    xs, names = check_partition_spaces({"img": a, "txt": b}, "here", n_rows=30)
    assert names == ["img", "txt"] and xs[0].dtype == np.float64
    with pytest.raises(DataError, match=r"here: variance partitioning supports 2–3 spaces \(4 given: p, q, r, s\)"):
        check_partition_spaces({"p": a, "q": b, "r": c, "s": d}, "here")
    with pytest.raises(DataError, match="supports 2–3 spaces"):
        check_partition_spaces([a, b, c, d, a], "here")  # beyond banded ridge's own limit too: the partition's
    with pytest.raises(DataError, match="space 'w' has 1 column"):
        check_partition_spaces({"img": a, "w": b[:, :1]}, "here")
    with pytest.raises(DataError, match=r"space name 'a\+b' holds '\+' or '&'"):
        check_partition_spaces({"a+b": a, "c": b}, "here")
    with pytest.raises(DataError, match="repeat"):
        check_partition_spaces([a, b], "here", space_names=["x", "x"])
    with pytest.raises(DataError, match="space 'txt' has 29 rows"):
        check_partition_spaces({"img": a, "txt": b[:29]}, "here", n_rows=30)


def test_table_over_roi_masks_normalises_on_voxels_with_both() -> None:
    v = 6
    joint = np.array([0.2, 0.4, np.nan, 0.1, 0.3, 0.5])
    parts = {"unique:A": joint * 0.5, "unique:B": joint * 0.25, "shared:A&B": joint * 0.25}
    res = PartitionResult(["A", "B"], {"A+B": joint}, parts, {}, np.zeros((2, v)))
    nc = np.array([0.5, np.nan, 0.8, 0.4, 0.4, 0.6])
    masks = {"left": np.array([1, 1, 1, 0, 0, 0], bool), "all": np.ones(v, bool)}  # overlapping ROIs
    table = res.table(masks, nc).set_index("roi")
    assert table.index.tolist() == ["left", "all"] and table.loc["all", "n_voxels"] == v
    assert table.loc["left", "joint"] == pytest.approx(0.3)  # NaN voxel left out of the mean
    assert table.loc["left", "ceiling"] == pytest.approx(0.65)  # every voxel with a ceiling
    # normalised over the voxels with both a part and a ceiling (voxel 0 only in "left"): 0.2 / 0.5
    assert table.loc["left", "joint_over_ceiling"] == pytest.approx(0.4)
    assert table.loc["left", "unique:A_over_ceiling"] == pytest.approx(0.2)
    both = [0, 3, 4, 5]
    assert table.loc["all", "shared_over_ceiling"] == pytest.approx(parts["shared:A&B"][both].mean() / nc[both].mean())
    assert (table["ceiling_bound"] == PARTITION_CEILING_BOUND).all()
    assert "ceiling" not in res.table(masks)  # no ceiling: no normalised columns
    with pytest.raises(DataError, match="one entry per voxel"):
        res.table({"x": np.ones(3, bool)})
