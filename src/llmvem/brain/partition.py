"""Variance partitioning of held-out encoding accuracy between 2–3 feature spaces.

Two complementary answers to "what does each space explain that the others do not":

- **Set-theoretic** (Lescroart et al. 2015, de Heer et al. 2017): fit the joint model and every subset model on the
  training images, score each by R² on held-out images, and split the union by inclusion–exclusion. For the parts
  "inside every space of S and outside every other space C" (S ≠ ∅)::

      part(S) = Σ_{∅ ≠ T ⊆ S} (−1)^{|T|+1} R²(T ∪ C) − R²(C),        R²(∅) = 0

  so for two spaces A, B: unique A = R²(AB) − R²(B), unique B = R²(AB) − R²(A), shared = R²(A) + R²(B) − R²(AB).
  With finite data the estimates can be negative (a subset model beating the joint one, or noise); they are kept as
  they are in the per-voxel arrays, counted in the ROI table (``n_negative:<part>``) and in a warning — never clipped.
- **Product measure** (himalaya's ``r2_score_split``): the joint banded model's prediction is a sum of per-space parts
  Ŷ_i; R²_i = Σ_n (2 y Ŷ_i − Ŷ_i Σ_j Ŷ_j) / Σ_n y² (y centred) splits the joint R² exactly, Σ_i R²_i = R²_joint
  of the mean-corrected prediction.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from llmvem.brain.banded import BandedRidgeEncoder, check_spaces
from llmvem.brain.metrics import _noise_ceiling_array, r2_score_columns
from llmvem.brain.ridge import DEFAULT_ALPHAS, RidgeEncoder
from llmvem.errors import DataError

MAX_PARTITION_SPACES = 3
#: Characters that join space names in part labels (``r2:A+B``, ``shared:A&B``): a space name may not hold them.
_LABEL_JOINS = ("+", "&")

PARTITION_CEILING_BOUND = "noise_ceiling_r2"
"""What the ``*_over_ceiling`` columns of a partition table divide by: the voxels' noise ceiling in R² units (the
fraction of response variance a perfect model could explain, :attr:`BrainData.noise_ceiling`), averaged over the
voxels that have both the part and a ceiling — the units of the parts themselves (held-out R²)."""


def check_partition_spaces(
    spaces: Any, where: str, *, space_names: Sequence[str] | None = None, n_rows: int | None = None
) -> tuple[list[np.ndarray], list[str]]:
    """The 2–:data:`MAX_PARTITION_SPACES` feature spaces of a partition, checked; one clear DataError otherwise.

    :func:`~llmvem.brain.banded.check_spaces` (2-D, ≥ 2 columns, finite, ``n_rows`` rows each) plus the partition's
    own rules: at most :data:`MAX_PARTITION_SPACES` spaces, distinct names without ``+`` or ``&``.

    Returns:
        (list of S float64 (n, p_i) arrays, list of S names).
    """
    if isinstance(spaces, Mapping | list | tuple) and len(spaces) > MAX_PARTITION_SPACES:  # before banded's limit
        given = list(spaces) if isinstance(spaces, Mapping) else list(space_names or [])
        _too_many(where, given if len(given) == len(spaces) else [f"space{i}" for i in range(len(spaces))])
    xs, names = check_spaces(spaces, where, space_names=space_names, n_rows=n_rows)
    if len(xs) > MAX_PARTITION_SPACES:
        _too_many(where, names)
    for name in names:
        if any(c in name for c in _LABEL_JOINS):
            raise DataError(
                f"{where}: space name {name!r} holds '+' or '&', which join space names in the part labels "
                "(r2:A+B, shared:A&B); rename the space"
            )
    if len(set(names)) != len(names):
        raise DataError(f"{where}: space names {names} repeat; every space needs its own name")
    return xs, names


def _too_many(where: str, names: Sequence[str]) -> None:
    raise DataError(
        f"{where}: variance partitioning supports 2–{MAX_PARTITION_SPACES} spaces ({len(names)} given: "
        f"{', '.join(map(str, names))}); with more the 2^S − 1 parts cannot be read — group spaces first"
    )


def r2_score_split(y_true: np.ndarray, y_pred_split: np.ndarray, center: bool = True) -> np.ndarray:
    """Product-measure split of R² between the additive parts of a prediction (himalaya's ``r2_score_split``).

    Args:
        y_true: (n, v) measured responses.
        y_pred_split: (S, n, v) the per-space parts of the prediction.
        center: centre ``y_true`` and every part over samples first (False: himalaya's formula on the arrays as
            given, which assumes zero-mean ``y_true``).
    Returns:
        (S, v) float64; the sum over spaces is R² of Σ_i parts (after centring). A constant target gets NaN.
    """
    y = np.asarray(y_true, dtype=np.float64)
    parts = np.asarray(y_pred_split, dtype=np.float64)
    if y.ndim != 2 or parts.ndim != 3 or parts.shape[1:] != y.shape:
        raise DataError(
            f"r2_score_split: y_true (n, v) and y_pred_split (S, n, v) needed, got {y.shape}, {parts.shape}"
        )
    if center:
        y = y - y.mean(axis=0)
        parts = parts - parts.mean(axis=1, keepdims=True)
    sst = (y**2).sum(axis=0)
    total = parts.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.stack([((2 * y * p - p * total).sum(axis=0)) / sst for p in parts])
    out[:, ~(sst > 0)] = np.nan
    return out


def _subset_name(names: Sequence[str], subset: Sequence[int]) -> str:
    return "+".join(names[i] for i in subset)


def set_theoretic_parts(subset_r2: Mapping[frozenset[int], np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Inclusion–exclusion of the subset models' R² (see the module docstring).

    Args:
        subset_r2: for every non-empty subset of range(S) (as a frozenset), its held-out R² (v,).
        names: the S space names.
    Returns:
        ``{"unique:<A>": (v,), …, "shared:<A>&<B>": (v,), …}`` — one entry per non-empty subset S of spaces, the
        variance explained by every space of S and no other; singletons are the unique parts.
    """
    n_spaces = len(names)
    everything = frozenset(range(n_spaces))
    out: dict[str, np.ndarray] = {}
    for size in range(1, n_spaces + 1):
        for subset in itertools.combinations(range(n_spaces), size):
            inside = frozenset(subset)
            outside = everything - inside
            base = subset_r2[outside] if outside else 0.0
            acc = -np.asarray(base, dtype=np.float64)
            for k in range(1, size + 1):
                for t in itertools.combinations(subset, k):
                    acc = acc + (-1) ** (k + 1) * subset_r2[frozenset(t) | outside]
            label = "unique:" + names[subset[0]] if size == 1 else "shared:" + "&".join(names[i] for i in subset)
            out[label] = acc
    return out


@dataclass
class PartitionResult:
    """Per-voxel variance partition of held-out R² (v voxels, S = 2–3 spaces).

    Attributes:
        space_names: the S names.
        subset_r2: ``{"A": (v,), "B": (v,), "A+B": (v,), …}`` held-out R² of every subset model (the joint model is
            the one naming all spaces).
        parts: :func:`set_theoretic_parts` — ``unique:<space>`` and ``shared:<spaces>`` (v,) each, negatives kept.
        split: ``{"split:<space>": (v,)}`` product-measure split of the joint banded model (:func:`r2_score_split`).
        joint_alphas: (S, v) the joint model's per-space penalties.
        n_negative: per part, the number of voxels with a negative estimate.
    """

    space_names: list[str]
    subset_r2: dict[str, np.ndarray]
    parts: dict[str, np.ndarray]
    split: dict[str, np.ndarray]
    joint_alphas: np.ndarray
    n_negative: dict[str, int] = field(default_factory=dict)

    @property
    def joint(self) -> np.ndarray:
        """(v,) held-out R² of the joint model."""
        return self.subset_r2["+".join(self.space_names)]

    @property
    def shared(self) -> np.ndarray:
        """(v,) all shared parts together."""
        parts = [v for k, v in self.parts.items() if k.startswith("shared:")]
        return np.sum(parts, axis=0)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every per-voxel array by name (``r2:<subset>``, the parts, ``shared``, the split, ``alpha:<space>``), ready
        for ``np.savez``."""
        out = {f"r2:{k}": v for k, v in self.subset_r2.items()}
        out.update(self.parts)
        out["shared"] = self.shared
        out.update(self.split)
        out.update({f"alpha:{n}": self.joint_alphas[i] for i, n in enumerate(self.space_names)})
        return out

    def table(
        self, rois: Sequence[str] | Mapping[str, np.ndarray] | None = None, noise_ceiling: Any = None
    ) -> pd.DataFrame:
        """One row per ROI: mean of every part over the ROI's voxels (negatives included), ``shared`` (all shared
        parts), ``joint``, the product-measure split, the count of negative estimates per part
        (``n_negative:<part>``) and, with ``noise_ceiling`` (v,) in R² units, ``ceiling`` (its mean over the ROI's
        voxels that have one), ``<col>_over_ceiling`` for the unique parts, ``shared`` and ``joint`` (mean part /
        mean ceiling over the voxels with both, not clipped) and ``ceiling_bound`` (:data:`PARTITION_CEILING_BOUND`).

        Args:
            rois: (v,) one ROI label per voxel (rows in first-appearance order), or ROI name → (v,) bool mask (a
                voxel may be in several ROIs); None: one ``all`` row.
            noise_ceiling: (v,) noise ceiling in R² units, or None.
        """
        v = self.joint.shape[0]
        masks = _roi_masks(rois, v)
        nc = None if noise_ceiling is None else _noise_ceiling_array(noise_ceiling, v, "PartitionResult.table")
        cols = {**self.parts, "shared": self.shared, "joint": self.joint, **self.split}
        normalised = [k for k in cols if k.startswith("unique:")] + ["shared", "joint"]
        rows = []
        for roi, m in masks.items():
            row: dict[str, Any] = {"roi": roi, "n_voxels": int(m.sum())}
            for k, arr in cols.items():
                vals = arr[m][np.isfinite(arr[m])]
                row[k] = float(vals.mean()) if vals.size else float("nan")
            for k, arr in self.parts.items():
                row[f"n_negative:{k}"] = int((arr[m] < 0).sum())
            if nc is not None:
                ceil = nc[m][np.isfinite(nc[m])]
                row["ceiling"] = float(ceil.mean()) if ceil.size else float("nan")
                both = m & np.isfinite(self.joint) & np.isfinite(nc)
                bound = float(nc[both].mean()) if both.any() else 0.0
                for k in normalised:
                    row[f"{k}_over_ceiling"] = float(cols[k][both].mean()) / bound if bound > 0 else float("nan")
                row["ceiling_bound"] = PARTITION_CEILING_BOUND
            rows.append(row)
        return pd.DataFrame(rows)


def _roi_masks(rois: Sequence[str] | Mapping[str, np.ndarray] | None, v: int) -> dict[str, np.ndarray]:
    """ROI name → (v,) bool mask from labels, masks or None (one ``all`` ROI)."""
    if isinstance(rois, Mapping):
        masks = {str(k): np.asarray(m, dtype=bool) for k, m in rois.items()}
        bad = [k for k, m in masks.items() if m.shape != (v,)]
        if bad:
            raise DataError(f"PartitionResult.table: ROI mask(s) {bad} do not have one entry per voxel ({v})")
        return masks
    labels = np.asarray(["all"] * v if rois is None else [str(r) for r in rois], dtype=object)
    if labels.shape != (v,):
        raise DataError(f"PartitionResult.table: {labels.shape[0]} ROI labels for {v} voxels; they must match")
    return {roi: labels == roi for roi in dict.fromkeys(labels.tolist())}


def _unusable_voxels(y_te: np.ndarray, fitted: np.ndarray, where: str) -> np.ndarray:
    """(v,) bool: voxels masked in training (the encoders warned) or NaN/inf/constant on the test images (warned
    here); their R², parts and split are NaN — a constant test voxel would otherwise be "explained" 100 %."""
    finite = np.isfinite(y_te).all(axis=0)
    flat = finite & (np.ptp(np.where(finite, y_te, 0.0), axis=0) == 0)
    test_only = (~finite | flat) & fitted
    if test_only.any():
        warnings.warn(
            f"{where}: {int(test_only.sum())} of {y_te.shape[1]} voxels are NaN/inf or constant on the test images "
            f"(voxels {np.flatnonzero(test_only)[:10].tolist()}); their parts are NaN",
            RuntimeWarning,
            stacklevel=3,
        )
    return ~finite | flat | ~fitted


def variance_partition(
    train: Any,
    Y_train: Any,
    test: Any,
    Y_test: Any,
    *,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    band_levels: Sequence[float] | None = None,
    space_names: Sequence[str] | None = None,
    **encoder_params: Any,
) -> PartitionResult:
    """Set-theoretic and product-measure variance partition of held-out R² between 2–3 feature spaces.

    The joint model and every subset of ≥ 2 spaces is a :class:`BandedRidgeEncoder`, every single space a
    :class:`RidgeEncoder` (GCV, the same ``alphas``); all are fitted on the training rows and scored on the test rows.

    Args:
        train, test: the S feature spaces (list or name → array mapping), (n_train, p_i) and (n_test, p_i).
        Y_train: (n_train, v); Y_test: (n_test, v) responses (NaN/constant voxels give NaN parts, with a warning).
        alphas, band_levels: the penalty grids; encoder_params: passed to both encoders (dtype, backend, device, …).
    Returns:
        :class:`PartitionResult`; warns once with the count of negative estimates per part when there are any.
    """
    where = "variance_partition"
    y_tr = np.asarray(Y_train)
    y_te = np.asarray(Y_test, dtype=np.float64)
    xs_tr, names = check_partition_spaces(train, where + " (train)", space_names=space_names, n_rows=y_tr.shape[0])
    xs_te, names_te = check_partition_spaces(test, where + " (test)", space_names=names, n_rows=y_te.shape[0])
    if names_te != names:
        raise DataError(f"{where}: test spaces {names_te} are not the training spaces {names} (same names, same order)")
    for i, name in enumerate(names):
        if xs_te[i].shape[1] != xs_tr[i].shape[1]:
            raise DataError(
                f"{where}: space '{name}' has {xs_tr[i].shape[1]} columns in train, {xs_te[i].shape[1]} in test"
            )
    if y_te.ndim != 2 or y_tr.ndim != 2 or y_te.shape[1] != y_tr.shape[1]:
        raise DataError(f"{where}: Y_train {y_tr.shape} and Y_test {y_te.shape} must be 2-D with the same voxels")
    r2_by_set: dict[frozenset[int], np.ndarray] = {}
    subset_r2: dict[str, np.ndarray] = {}
    joint: BandedRidgeEncoder | None = None
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(range(len(names)), size):
            model: Any
            if size == 1:
                model = RidgeEncoder(alphas=alphas, **encoder_params).fit(xs_tr[subset[0]], y_tr)
                pred = model.predict(xs_te[subset[0]])
            else:
                model = BandedRidgeEncoder(alphas=alphas, band_levels=band_levels, **encoder_params)
                model.fit({names[i]: xs_tr[i] for i in subset}, y_tr)
                pred = model.predict({names[i]: xs_te[i] for i in subset})
            r2 = r2_score_columns(y_te, np.asarray(pred, dtype=np.float64))
            r2_by_set[frozenset(subset)] = r2
            subset_r2[_subset_name(names, subset)] = r2
            if size == len(names):
                joint = model
    assert joint is not None
    bad = _unusable_voxels(y_te, joint.valid_targets_, where)
    for r2 in r2_by_set.values():  # the same arrays as in subset_r2
        r2[bad] = np.nan
    parts = set_theoretic_parts(r2_by_set, names)
    split_arr = r2_score_split(y_te, joint.predict_split(xs_te))
    split_arr[:, bad] = np.nan
    split = {f"split:{n}": split_arr[i] for i, n in enumerate(names)}
    n_neg = {k: int((v < 0).sum()) for k, v in parts.items()}
    if any(n_neg.values()):
        counts = ", ".join(f"{k}: {c} of {y_te.shape[1]}" for k, c in n_neg.items() if c)
        warnings.warn(
            f"{where}: negative estimates ({counts} voxels); they are kept as they are in the per-voxel arrays and "
            "counted in the table (n_negative:<part>), not clipped",
            RuntimeWarning,
            stacklevel=2,
        )
    return PartitionResult(names, subset_r2, parts, split, joint.alphas_, n_neg)
