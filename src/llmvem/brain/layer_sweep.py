"""Layer sweeps: which layer of a model predicts each ROI (or RDM target) best, chosen without the test images.

The layers are feature matrices of one model over the same stimuli, in depth order. Per layer:

- **encoding** (:func:`sweep_encoding_layers`): a ridge fitted on the training images minus a seeded validation
  share of them (:func:`validation_split`) is scored per ROI on the validation images (mean voxel r); the layer
  with the best validation score is each ROI's choice; every layer is then refitted on all training images and
  scored on the test images — the test score of the chosen layer is the number to report, the test curve of the
  other layers is shown, never used to choose;
- **RSA** (:func:`sweep_rsa_layers`): there is nothing to fit, so the choice compares the layer's RDM over all the
  training images with each subject's RDM over the same images (or over a seeded share of them, ``val_fraction``);
  no test image is read before the choice; the test score is the same comparison over the test images' RDMs.

Ties in the validation score go to the earlier (shallower) layer; a ROI whose validation score is NaN for every
layer gets no choice. The test rows of the features and responses are read only after the choice is made.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from llmvem.errors import DataError

#: fewest validation images a layer choice is made on
MIN_VALIDATION = 10
#: the score columns of a sweep curve: the validation score (chooses) and the test score (reported)
SCORES = ("val_score", "test_score")


@dataclass
class LayerSweep:
    """A layer sweep's curve and choice.

    Attributes:
        curve: one row per group (ROI or RDM target) × layer: ``group, layer, layer_index, val_score, test_score,
            chosen`` (+ ``n_voxels`` for encoding, ``subject`` per subject); ``chosen`` marks the choice per group.
        choice: group → chosen layer (groups without a finite validation score are absent).
        n_fit, n_val, n_test: images fitted on (training minus validation), chosen on, tested on.
    """

    curve: pd.DataFrame
    choice: dict[str, str]
    n_fit: int
    n_val: int
    n_test: int


def validation_split(train: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded share of the training rows held out for the layer choice.

    Args:
        train: (n_train,) row indices of the training images.
        fraction: share held out, in (0, 1).
        seed: the run's seed (the draw is its own stream, independent of the test hold-out's).
    Returns:
        ``(fit, val)``: sorted row indices, disjoint, together ``train``.
    """
    from llmvem.data.splits import heldout_split

    train = np.asarray(train)
    fit, val = heldout_split(len(train), fraction, [seed, 0x1A7E5], min_val=0)
    return np.sort(train[fit]), np.sort(train[val])


def seeded_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` sorted row indices of a seeded ``fraction`` hold-out of ``n`` stimuli
    (:func:`llmvem.data.splits.heldout_split`, the draw of evaluate encoding's hold-out for brain data without
    splits), for RSA targets that are not brain data.

    Raises:
        DataError: fewer than 3 images on either side.
    """
    from llmvem.data.splits import heldout_split

    n_test = round(fraction * n)
    if n_test < 3 or n - n_test < 3:
        raise DataError(f"{n} stimuli are too few for a {fraction:g} hold-out (need ≥ 3 on each side)")
    return heldout_split(n, fraction, seed, min_val=0)


def min_fit_rows(cv: str | int) -> int:
    """Fewest images a ridge with ``cv`` (``"gcv"``, ``"loo"``, ``"frac"`` or K folds) can be fitted on."""
    from llmvem.brain.ridge import FRAC_FOLDS

    if cv == "frac":
        return 2 * FRAC_FOLDS
    return 2 * int(cv) if not isinstance(cv, str) else 3


def check_sweep_split(n_train: int, fraction: float | None, what: str, cv: str | int | None = None) -> None:
    """Refuse a validation split too small to choose on (< :data:`MIN_VALIDATION` images; ``fraction`` None: the
    choice is on all ``n_train`` images, RSA) or one that leaves too few training images for the ridge's
    cross-validation (``cv``; None: no fit, RSA).

    Raises:
        DataError: naming the sizes and what to change.
    """
    if fraction is None:
        if n_train < MIN_VALIDATION:
            raise DataError(f"{what}: {n_train} training image(s) to choose the layer on; the choice needs ≥ "
                            f"{MIN_VALIDATION} (use more images or a smaller --test-fraction)")  # fmt: skip
        return
    n_val = round(fraction * n_train)
    if n_val < MIN_VALIDATION:
        raise DataError(
            f"{what}: a {fraction:g} validation share of {n_train} training images is {n_val} image(s); the layer "
            f"choice needs ≥ {MIN_VALIDATION} (raise the validation fraction, --sweep-validation-fraction, or use "
            "more images)"
        )
    need = min_fit_rows(cv) if cv is not None else 0
    if n_train - n_val < need:
        raise DataError(
            f"{what}: {n_train - n_val} training images are left to fit after the {n_val} validation ones; ridge "
            f"cv={cv!r} needs ≥ {need} (lower the validation fraction or --cv)"
        )


def check_layers(layers: Mapping[str, Sequence[str]], what: str) -> None:
    """The layers of a sweep: ≥ 2, each over the same stimuli (``layers``: layer name → its stimulus ids).

    Raises:
        DataError: fewer than 2 layers, or a layer with other row counts or ids than the first.
    """
    names = list(layers)
    if len(names) < 2:
        raise DataError(
            f"{what}: a layer sweep needs ≥ 2 layers of one model (-f NAME=f.<layer>.npy once per layer, in depth "
            f"order), got {len(names)}: {names}"
        )
    first, ids0 = names[0], list(layers[names[0]])
    for name in names[1:]:
        ids = list(layers[name])
        if len(ids) != len(ids0):
            raise DataError(
                f"{what}: layer {name!r} has {len(ids)} rows, layer {first!r} {len(ids0)}; the layers of a sweep are "
                "one model's features over the same stimuli"
            )
        missing = sorted(set(ids0) - set(ids))
        if missing:
            raise DataError(
                f"{what}: layer {name!r} lacks {len(missing)} of the stimuli of layer {first!r} (e.g. {missing[0]!r}); "
                "the layers of a sweep are one model's features over the same stimuli"
            )


def _voxel_r(make_model: Callable[[], Any], x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray,
             y_eval: np.ndarray) -> np.ndarray:  # fmt: skip
    """(v,) held-out Pearson r of a ridge fitted on (x_fit, y_fit), predicting y_eval
    (:func:`~llmvem.brain.heldout.heldout_r`: NaN for voxels not fitted or with NaN/inf among the evaluated rows)."""
    from llmvem.brain.heldout import heldout_r

    model = make_model().fit(x_fit, y_fit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fit's and evaluate encoding's own warnings say it
        return heldout_r(model, x_eval, y_eval)[0]


def _roi_means(r: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The mean of the finite ``r`` (v,) over each ROI mask (NaN for a ROI with none)."""
    out = {}
    for roi, mask in masks.items():
        vals = r[np.asarray(mask, dtype=bool)]
        vals = vals[np.isfinite(vals)]
        out[roi] = float(vals.mean()) if vals.size else float("nan")
    return out


def sweep_encoding_layers(
    layers: Mapping[str, np.ndarray],
    responses: np.ndarray,
    masks: Mapping[str, np.ndarray],
    train: np.ndarray,
    test: np.ndarray,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    make_model: Callable[[], Any] | None = None,
    test_scores: Mapping[str, Mapping[str, float]] | None = None,
) -> LayerSweep:
    """Choose the layer per ROI on a validation split of the training images, and score every layer on the test ones.

    Args:
        layers: layer name → (n, d_l) features, rows in the order of ``responses`` (depth order: the dict's order).
        responses: (n, v) brain responses.
        masks: ROI → (v,) bool voxel mask.
        train, test: row indices of the training and test images (disjoint).
        val_fraction: share of the training images held out for the choice (:func:`validation_split`).
        seed: seed of the validation draw.
        make_model: a new unfitted encoder with ``fit``/``predict``/``valid_targets_`` (default
            :class:`~llmvem.brain.ridge.RidgeEncoder`).
        test_scores: layer → ROI → test score (mean voxel r over the ROI) of the layer fitted on all training
            images, when the caller has it already (an encoding evaluation of the same layers: its ``mean_r``);
            else each layer is fitted on ``train`` and scored on ``test`` here.
    Returns:
        :class:`LayerSweep`; ``curve.val_score`` / ``test_score``: mean voxel r over the ROI.
    """
    from llmvem.brain.ridge import RidgeEncoder

    make = make_model or RidgeEncoder
    fit, val = validation_split(train, val_fraction, seed)
    y = np.asarray(responses)
    val_r = {name: _voxel_r(make, x[fit], y[fit], x[val], y[val]) for name, x in layers.items()}
    val_means = {name: _roi_means(r, masks) for name, r in val_r.items()}
    rows = [{"group": roi, "layer": name, "layer_index": k, "n_voxels": int(np.sum(mask)),
             "val_score": val_means[name][roi]}
            for roi, mask in masks.items() for k, name in enumerate(layers)]  # fmt: skip
    curve = choose_layers(pd.DataFrame(rows))  # chosen before a test row is read
    for name, x in layers.items():
        if test_scores is not None:
            means = dict(test_scores[name])
        else:
            means = _roi_means(_voxel_r(make, x[train], y[train], x[test], y[test]), masks)
        at = curve["layer"] == name
        curve.loc[at, "test_score"] = curve.loc[at, "group"].map(means)
    curve = curve[["group", "layer", "layer_index", "n_voxels", *SCORES, "chosen"]]
    return LayerSweep(curve, _choice(curve), len(fit), len(val), len(test))


def sweep_rsa_layers(
    layers: Mapping[str, np.ndarray],
    target_rdms: np.ndarray,
    subjects: Sequence[str],
    train: np.ndarray,
    test: np.ndarray,
    *,
    val_fraction: float | None = None,
    seed: int = 0,
    metric: str = "correlation",
    method: str = "spearman",
) -> LayerSweep:
    """Choose the layer for one RDM target on the training images' RDMs (or a validation share of them), and score
    every layer on the test images'. RSA fits nothing, so choosing on every training image leaks nothing: the test
    images' rows and columns are never read before the choice (decision 0017).

    Args:
        layers: layer name → (n, d_l) features, rows in the order of the target's stimuli.
        target_rdms: (s, n, n) the subjects' RDMs.
        subjects: the s subject names.
        train, test: row (stimulus) indices of the training and test images.
        val_fraction, seed: choose on this seeded share of the training images only (:func:`validation_split`);
            None: on all of them (``n_fit`` 0, ``n_val`` = the training images).
        metric: RDM dissimilarity of the layers (:func:`~llmvem.brain.rsa.compute_rdm`).
        method: RDM comparison (:func:`~llmvem.brain.rsa.compare_rdms`).
    Returns:
        :class:`LayerSweep` with a ``curve`` of one row per subject × layer (``group`` = ``"target"``, filled in by
        the caller) and scores the per-subject RSA; :func:`mean_curve` averages it.
    """
    from llmvem.brain.rsa import compare_rdms, compute_rdm

    val = np.asarray(train) if val_fraction is None else validation_split(train, val_fraction, seed)[1]
    rdms = np.asarray(target_rdms, dtype=np.float64)

    def scores(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.atleast_1d(compare_rdms(compute_rdm(x[rows], metric), rdms[:, rows][:, :, rows], method))

    rows = [{"subject": s, "group": "target", "layer": name, "layer_index": k, "val_score": float(v)}
            for k, (name, x) in enumerate(layers.items())
            for s, v in zip(subjects, scores(x, val), strict=True)]  # fmt: skip
    curve = choose_layers(pd.DataFrame(rows), by=["subject", "group"])
    for name, x in layers.items():
        at = curve["layer"] == name
        curve.loc[at, "test_score"] = scores(x, np.asarray(test))
    curve = curve[["subject", "group", "layer", "layer_index", *SCORES, "chosen"]]
    return LayerSweep(curve, {}, len(train) - len(val), len(val), len(test))


def choose_layers(curve: pd.DataFrame, by: Sequence[str] = ("group",)) -> pd.DataFrame:
    """``curve`` with ``chosen``: per ``by`` group, the row of the best finite ``val_score`` (ties: the smallest
    ``layer_index``); a group with no finite score chooses none (with a warning)."""
    out = curve.copy()
    out["chosen"] = False
    empty = []
    for key, g in out.groupby(list(by), sort=False):
        finite = g[np.isfinite(g["val_score"].to_numpy(dtype=float))]
        if finite.empty:
            empty.append("/".join(map(str, key if isinstance(key, tuple) else (key,))))
            continue
        best = finite.sort_values(["val_score", "layer_index"], ascending=[False, True], kind="stable").index[0]
        out.loc[best, "chosen"] = True
    if empty:
        warnings.warn(f"layer sweep: no finite validation score in {', '.join(empty[:5])}: no layer chosen",
                      RuntimeWarning, stacklevel=2)  # fmt: skip
    return out


def _choice(curve: pd.DataFrame) -> dict[str, str]:
    return {str(r["group"]): str(r["layer"]) for _, r in curve[curve["chosen"]].iterrows()}


def mean_curve(per_subject: pd.DataFrame) -> pd.DataFrame:
    """The group-level curve of per-subject curves (columns ``subject, group, layer, layer_index, val_score,
    test_score, chosen``): scores averaged over subjects, ``n_subjects``, ``n_chosen`` (subjects whose own choice it
    is) and ``chosen`` anew, by the mean validation score (:func:`choose_layers`)."""
    keys = ["group", "layer", "layer_index"]
    grouped = per_subject.groupby(keys, sort=False)
    extra = [c for c in ("n_voxels",) if c in per_subject.columns]
    table = grouped[[*extra, *SCORES]].mean().reset_index()
    table.insert(3, "n_subjects", grouped.size().to_numpy())
    table["n_chosen"] = grouped["chosen"].sum().to_numpy().astype(int)
    if "n_voxels" in table:
        table["n_voxels"] = table["n_voxels"].round().astype(int)
    return choose_layers(table)


def sweep_summary(per_subject: pd.DataFrame, curve: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """metrics.json's choice per group: the layer chosen by the mean validation score, its validation and test
    scores, and ``test_score_own_choice``: the mean over subjects of each subject's own chosen layer's test score."""
    own = per_subject[per_subject["chosen"]].groupby("group", sort=False)["test_score"].mean()
    return {str(r["group"]): {"layer": str(r["layer"]), "layer_index": int(r["layer_index"]),
                              "val_score": float(r["val_score"]), "test_score": float(r["test_score"]),
                              "test_score_own_choice": float(own.get(r["group"], np.nan))}
            for _, r in curve[curve["chosen"]].iterrows()}  # fmt: skip
