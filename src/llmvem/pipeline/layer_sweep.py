"""``evaluate encoding|rsa --layer-sweep``: the given feature sets are the layers of one model, in depth order; the
best layer per ROI (or RDM target) is chosen on a validation split of the training images
(:mod:`llmvem.brain.layer_sweep`) and the curve is written as ``layer_sweep.csv`` (mean over subjects),
``layer_sweep_subjects.csv``, ``layer_sweep.png`` and metrics.json's ``layer_sweep``.

Each command calls two functions: a check before its run directory exists (bad input leaves nothing behind) and
the sweep after its own scoring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmvem.config import ExperimentConfig
from llmvem.data.brain import BrainData, RDMSet
from llmvem.data.files import Matrix
from llmvem.data.stimuli import align_ids
from llmvem.pipeline.common import Log, ridge_from_config
from llmvem.runs import RunDir


def _check_layers(mats: Sequence[Matrix], what: str) -> None:
    from llmvem.brain.layer_sweep import check_layers
    from llmvem.errors import DataError

    names = [m.name for m in mats]
    if len(set(names)) != len(names):
        raise DataError(f"{what}: layer names {names} repeat; name each layer: -f layer1=f.layer1.npy -f ...")
    check_layers({m.name: m.ids for m in mats}, what)


def check_encoding_layer_sweep(cfg: ExperimentConfig, mats: Sequence[Matrix], brains: Sequence[BrainData]) -> None:
    """Before the run directory: ≥ 2 layers over the same stimuli, and on every brain (with its train/test split) a
    validation split large enough to choose on and to fit the ridge without (DataError otherwise)."""
    from llmvem.brain.layer_sweep import check_sweep_split

    enc = cfg.evaluate.encoding
    _check_layers(mats, "evaluate encoding --layer-sweep")
    for brain in brains:
        n_train = len(brain.splits["train"])
        check_sweep_split(n_train, enc.sweep_validation_fraction, f"evaluate encoding --layer-sweep on {brain.name!r}",
                          cv=enc.cv)  # fmt: skip


def run_encoding_layer_sweep(
    cfg: ExperimentConfig,
    run: RunDir,
    mats: Sequence[Matrix],
    brains: Sequence[BrainData],
    test_r: Mapping[str, np.ndarray],
    log: Log,
) -> dict[str, Any]:
    """The sweep on every brain; writes the files and returns metrics.json's ``layer_sweep`` entry.

    Args:
        test_r: ``"<layer> | <brain>"`` → (v,) test r of the layer fitted on all training images (evaluate
            encoding's own scores; the sweep reuses them instead of refitting).
    """
    from llmvem.brain.encoding import roi_voxel_masks
    from llmvem.brain.layer_sweep import sweep_encoding_layers

    enc = cfg.evaluate.encoding
    curves, splits = [], {}
    for brain in brains:
        layers = {m.name: m.values[align_ids(brain.stimulus_ids, m.ids, f"brain {brain.name!r}", m.name)] for m in mats}
        res = sweep_encoding_layers(
            layers, brain.responses, roi_voxel_masks(brain), brain.split_indices("train"), brain.split_indices("test"),
            val_fraction=enc.sweep_validation_fraction, seed=cfg.seed, make_model=lambda: ridge_from_config(cfg),
            test_r={m.name: test_r[f"{m.name} | {brain.name}"] for m in mats if f"{m.name} | {brain.name}" in test_r},
        )  # fmt: skip
        curves.append(res.curve.assign(subject=brain.name))
        splits[brain.name] = {"n_fit": res.n_fit, "n_val": res.n_val, "n_test": res.n_test}
        log(f"  layer sweep on {brain.name}: " + ", ".join(f"{g} → {lay}" for g, lay in list(res.choice.items())[:6]))
    return _write(run, "encoding", "roi", pd.concat(curves, ignore_index=True), mats, splits,
                  enc.sweep_validation_fraction, "mean voxel Pearson r")  # fmt: skip


def plan_rsa_layer_sweep(
    cfg: ExperimentConfig, mats: Sequence[Matrix], targets: Mapping[str, RDMSet], brains: Sequence[BrainData]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Before the run directory: the train/test stimuli of every target (rows of its RDMs) and the checks.

    A target over the stimuli of the first brain source (its ROI RDMs) takes that brain's split: its own
    ``train``/``test``, or the seeded hold-out evaluate encoding draws; any other target (dataset or file RDMs) the
    seeded hold-out of its own stimuli (:func:`~llmvem.brain.layer_sweep.seeded_holdout`).
    """
    from llmvem.brain.layer_sweep import check_sweep_split, seeded_holdout
    from llmvem.errors import DataError
    from llmvem.pipeline.evaluate_files import with_splits

    enc = cfg.evaluate.encoding
    what = "evaluate rsa --layer-sweep"
    _check_layers(mats, what)
    split = with_splits(brains[0], enc.test_fraction, cfg.seed)[0].splits if brains else {}
    out = {}
    for name, rset in targets.items():
        ids = rset.stimulus_ids
        if split and set(ids) <= set(split["train"]) | set(split["test"]):
            train_ids = set(split["train"])
            rows = np.arange(len(ids))
            tr = rows[[i in train_ids for i in ids]]
            te = rows[[i not in train_ids for i in ids]]
        else:
            try:
                tr, te = seeded_holdout(len(ids), enc.test_fraction, cfg.seed)
            except DataError as exc:
                raise DataError(f"{what} on target {name!r}: {exc}") from None
        if len(te) < 3:
            raise DataError(f"{what} on target {name!r}: {len(te)} test stimuli; need ≥ 3")
        check_sweep_split(len(tr), enc.sweep_validation_fraction, f"{what} on target {name!r}")
        out[name] = (tr, te)
    return out


def run_rsa_layer_sweep(
    cfg: ExperimentConfig,
    run: RunDir,
    mats: Sequence[Matrix],
    targets: Mapping[str, RDMSet],
    plan: Mapping[str, tuple[np.ndarray, np.ndarray]],
    log: Log,
) -> dict[str, Any]:
    """The sweep on every target (splits from :func:`plan_rsa_layer_sweep`); writes the files and returns
    metrics.json's ``layer_sweep`` entry."""
    from llmvem.brain.layer_sweep import sweep_rsa_layers

    rsa_cfg, enc = cfg.evaluate.rsa, cfg.evaluate.encoding
    curves, splits = [], {}
    for name, rset in targets.items():
        tr, te = plan[name]
        layers = {m.name: m.values[align_ids(rset.stimulus_ids, m.ids, f"target {name!r}", m.name)] for m in mats}
        res = sweep_rsa_layers(layers, rset.rdms, rset.subjects, tr, te, val_fraction=enc.sweep_validation_fraction,
                               seed=cfg.seed, metric=rsa_cfg.metric, method=rsa_cfg.method)  # fmt: skip
        curves.append(res.curve.assign(group=name))
        splits[name] = {"n_val": res.n_val, "n_test": res.n_test, "n_train_unused": res.n_fit}
    table = pd.concat(curves, ignore_index=True)
    log("  layer sweep (RSA): " + ", ".join(
        f"{t} → {g.loc[g['val_score'].idxmax(), 'layer']}" for t, g in table.groupby("group", sort=False)
        if g["val_score"].notna().any()))  # fmt: skip
    return _write(run, "rsa", "target", table, mats, splits, enc.sweep_validation_fraction,
                  f"RSA ({rsa_cfg.method}) of the RDMs")  # fmt: skip


def _write(
    run: RunDir,
    kind: str,
    group: str,
    per_subject: pd.DataFrame,
    mats: Sequence[Matrix],
    splits: dict[str, Any],
    fraction: float,
    score: str,
) -> dict[str, Any]:
    """``layer_sweep_subjects.csv``, ``layer_sweep.csv`` (:func:`~llmvem.brain.layer_sweep.mean_curve`),
    ``layer_sweep.png`` and the metrics.json entry (``group``: the name of the group column, roi or target)."""
    from llmvem.brain.layer_sweep import mean_curve, sweep_summary
    from llmvem.report.plots import plot_layer_sweep

    cols = ["subject", *[c for c in per_subject.columns if c != "subject"]]
    per_subject = per_subject[cols]
    curve = mean_curve(per_subject)
    chosen = sweep_summary(per_subject, curve)
    per_subject.rename(columns={"group": group}).to_csv(run.file("layer_sweep_subjects.csv"), index=False)
    curve.insert(0, "kind", kind)
    curve.rename(columns={"group": group}).to_csv(run.file("layer_sweep.csv"), index=False)
    plot_layer_sweep(curve.rename(columns={"group": group}), run.file("layer_sweep.png"))
    return {"layer_sweep": {"kind": kind, "score": score, "validation_fraction": fraction,
                            "layers": [m.name for m in mats], "splits": splits, "chosen": chosen}}  # fmt: skip
