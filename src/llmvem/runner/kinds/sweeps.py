"""Layer sweeps as an evaluation: which of a model's layers (the representations, in depth order) scores each ROI
or RDM set best, chosen on a validation split of the training images, never on the test images.

The analysis is :mod:`llmvem.brain.layer_sweep`; this module pairs the rows, checks the input before the run
directory exists (:attr:`~llmvem.runner.parts.Part.check`), puts the curve in the result table and writes what
derives from it. Rows (``model`` = the layer, ``target`` = the ROI or RDM set, ``subject`` = the brain source or
the RDM set's subject, ``""`` for the mean over subjects): ``layer_index``, ``val_score`` (chooses),
``test_score`` (reported), ``chosen`` (1 on the chosen layer's row), ``n_voxels`` (encoding) and, on the aggregate
rows, ``n_subjects``, ``n_chosen`` (subjects whose own choice it is) and, on the chosen row,
``test_score_own_choice`` (the mean over subjects of each one's own choice's test score). The choice per group is
also in ``info.evaluations.<name>.chosen``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from llmvem.errors import ConfigError, DataError
from llmvem.runner.kinds.evaluations import ScoreParams, _label, _paired_rows, _views
from llmvem.runner.parts import EVALUATIONS, part
from llmvem.runner.state import BrainTarget, RunState

if TYPE_CHECKING:
    import pandas as pd


class SweepParams(ScoreParams):
    score: Literal["encoding", "rsa"] = Field(description="what scores a layer: voxelwise ridge encoding (against "
                                              "voxels, per ROI) or RSA (against RDM sets)")  # fmt: skip
    of: str | None = Field(None, description="encoding: an encoding evaluation of the same representations and "
                           "target, run before this one, whose held-out mean_r is each layer's test score (not "
                           "fitted twice); None: fitted here")  # fmt: skip
    validation_fraction: float | None = Field(None, gt=0, lt=1, description="share of the training images the "
                                              "layer is chosen on (None: settings.evaluate.encoding."
                                              "sweep_validation_fraction; rsa: settings.evaluate.rsa."
                                              "sweep_validation_fraction, whose None is all training "
                                              "images)")  # fmt: skip


@dataclass
class _Input:
    """One sweep: a brain (encoding) or an RDM set (rsa) with the layers' rows paired to it and its splits."""

    group: str  #: the brain's subject ("" for the stimuli's own brain data) or the RDM set's name
    layers: dict[str, np.ndarray]
    train: np.ndarray
    test: np.ndarray
    data: Any  #: the BrainData or the RDMSet
    split: str  #: where the train / test split came from


def _fraction(p: SweepParams, state: RunState) -> float | None:
    """The validation share of the training images; None (RSA only): the choice is on all training images."""
    if p.validation_fraction is not None:
        return p.validation_fraction
    ev = state.cfg.evaluate
    return ev.rsa.sweep_validation_fraction if p.score == "rsa" else ev.encoding.sweep_validation_fraction


def _inputs(p: SweepParams, state: RunState, name: str) -> list[_Input]:
    """The sweeps of this evaluation, every check made (layers, ids, split sizes); fits nothing."""
    from llmvem.brain.layer_sweep import check_layers, check_sweep_split

    where, fraction = f"evaluations.{name}", _fraction(p, state)
    what = f"{where} (layer sweep)"
    if len(set(p.representations)) != len(p.representations):
        raise DataError(f"{what}: layer names {p.representations} repeat; name each layer: -f layer1=f.layer1.npy …")
    target, src_ids = state.brain_target(p.against), state.source(state.brain_target(p.against).stimuli).ids
    reps = {}
    for rep in p.representations:
        by_seed = state.representation(rep)
        if len(by_seed) != 1:
            raise ConfigError(f"{where}.representations: {rep!r} has {len(by_seed)} seeds; a layer sweep takes "
                              "unseeded layers (one representation each)")  # fmt: skip
        reps[rep] = next(iter(by_seed.values()))
    check_layers({k: r.ids if r.ids is not None else src_ids for k, r in reps.items()}, what)
    out = []
    if p.score == "encoding":
        assert fraction is not None  # an encoding sweep always holds a share out (settings default 0.2)
        for brain, tr, te, subject in _views(state, target, where):
            check_sweep_split(len(tr), fraction, f"{what} on brain {brain.name!r}", cv=state.cfg.evaluate.encoding.cv)
            layers = {rep: x for rep, _, x in _paired_rows(state, p, target, brain, where)}
            out.append(_Input(subject, layers, tr, te, brain, "brain"))
        return out
    if not target.rdms:
        raise ConfigError(f"{where}.against: {p.against!r} holds no RDM sets")
    for set_name, rset in target.rdms.items():
        tr, te, split = _rsa_split(state, target, list(rset.stimulus_ids), f"{what} on target {set_name!r}")
        check_sweep_split(len(tr), fraction, f"{what} on target {set_name!r}")
        layers = {rep: r.values[r.rows(list(rset.stimulus_ids), src_ids, f"target {set_name!r}", _label(state, rep))]
                  for rep, r in reps.items()}  # fmt: skip
        out.append(_Input(set_name, layers, tr, te, rset, split))
    return out


def _rsa_split(state: RunState, target: BrainTarget, ids: list[str], what: str) -> tuple[Any, Any, str]:
    """(train rows, test rows, whence) of an RDM set's stimuli ``ids``: the stimulus source's ``train`` / ``test``
    splits when they hold every id; else the first brain source's (its own, or the seeded hold-out evaluate
    encoding draws on it); else a seeded ``settings.evaluate.encoding.test_fraction`` hold-out of the set's stimuli."""
    from llmvem.brain.layer_sweep import seeded_holdout
    from llmvem.data.brain_select import with_splits

    cfg = state.cfg
    candidates = [(state.source(target.stimuli).splits, "the stimuli's splits")]
    if target.sources:
        brain, own = with_splits(target.sources[0], cfg.evaluate.encoding.test_fraction, cfg.seed)
        candidates.append((brain.splits, f"brain {brain.name!r}'s {'own splits' if own else 'seeded hold-out'}"))
    covering = [(s, w) for s, w in candidates if s.get("train") and s.get("test")
                and set(ids) <= set(s["train"]) | set(s["test"])]  # fmt: skip
    if covering:
        splits, whence = covering[0]
        in_train = np.isin(ids, list(splits["train"]))
        tr, te = np.flatnonzero(in_train), np.flatnonzero(~in_train)
    else:
        try:
            tr, te = seeded_holdout(len(ids), cfg.evaluate.encoding.test_fraction, cfg.seed)
        except DataError as exc:
            raise DataError(f"{what}: {exc}") from None
        whence = f"a seeded {cfg.evaluate.encoding.test_fraction:g} hold-out of its stimuli"
    if len(te) < 3:
        raise DataError(f"{what}: {len(te)} test stimuli ({whence}); the test score needs ≥ 3")
    return tr, te, whence


def _check(p: SweepParams, state: RunState, name: str) -> None:
    _inputs(p, state, name)


def _test_scores(state: RunState, p: SweepParams, subject: str, name: str) -> dict[str, dict[str, float]]:
    """layer → ROI → the held-out ``mean_r`` of encoding evaluation ``p.of`` on ``subject``'s rows."""
    frame = state.results.frame()
    rows = frame[(frame["evaluation"] == p.of) & (frame["subject"] == subject) & (frame["seed"] == "")
                 & (frame["metric"] == "mean_r")]  # fmt: skip
    missing = sorted(set(p.representations) - set(rows["model"]))
    if rows.empty or missing:
        raise ConfigError(f"evaluations.{name}.of: evaluation {p.of!r} did not score {missing or p.representations} "
                          f"on {subject or 'the brain'} (it must be an encoding of the same representations and "
                          f"target, run before {name!r})")  # fmt: skip
    return {str(m): dict(zip(g["target"], g["value"], strict=True)) for m, g in rows.groupby("model", sort=False)}


def _sweep(p: SweepParams, state: RunState, name: str, one: _Input) -> Any:
    from llmvem.brain.encoding import roi_voxel_masks
    from llmvem.brain.layer_sweep import sweep_encoding_layers, sweep_rsa_layers
    from llmvem.runner.settings import ridge_from_config

    cfg, fraction = state.cfg, _fraction(p, state)
    if p.score == "rsa":
        res = sweep_rsa_layers(one.layers, one.data.rdms, one.data.subjects, one.train, one.test,
                               val_fraction=fraction, seed=cfg.seed, metric=cfg.evaluate.rsa.metric,
                               method=cfg.evaluate.rsa.method)  # fmt: skip
        res.curve["group"] = one.group
        return res
    scores = _test_scores(state, p, one.group, name) if p.of else None
    assert fraction is not None
    res = sweep_encoding_layers(one.layers, one.data.responses, roi_voxel_masks(one.data), one.train, one.test,
                                val_fraction=fraction, seed=cfg.seed, make_model=lambda: ridge_from_config(cfg),
                                test_scores=scores)  # fmt: skip
    res.curve.insert(0, "subject", one.group)
    return res


def _add_rows(state: RunState, name: str, curve: pd.DataFrame, subject: str | None, own: Mapping[str, float]) -> None:
    """The rows of a curve (one per group × layer); ``subject`` None: the curve's own subject column."""
    skip = ("subject", "group", "layer")
    for row in curve.to_dict("records"):
        values = {k: float(v) for k, v in row.items() if k not in skip}
        if subject is not None and row["chosen"] and row["group"] in own:
            values["test_score_own_choice"] = own[row["group"]]
        state.results.add(name, str(row["layer"]), str(row["group"]), values,
                          subject=str(row["subject"]) if subject is None else subject)  # fmt: skip


def _write_sweep(frame: pd.DataFrame, state: RunState, name: str, p: SweepParams) -> None:
    """``<name>.csv`` (per group × layer, the mean over subjects; ``kind`` = the score), ``<name>_subjects.csv``
    and ``<name>.png`` (:func:`~llmvem.report.plots.plot_layer_sweep`), all from the result table's rows."""
    from llmvem.report.plots import plot_layer_sweep
    from llmvem.results import wide_table

    group = "roi" if p.score == "encoding" else "target"
    for subjects, suffix in ((False, ""), (True, "_subjects")):
        table = wide_table(frame, name, target_name=group, subjects=subjects).rename(columns={"model": "layer"})
        if table.empty:
            continue
        order = {g: k for k, g in enumerate(dict.fromkeys(table[group]))}
        keys = ["subject", group] if subjects else [group]
        table = table.sort_values([*keys, "layer_index"], key=lambda s: s.map(order) if s.name == group else s,
                                  kind="stable").reset_index(drop=True)  # fmt: skip
        table["chosen"] = table["chosen"] == 1
        ints = [c for c in ("layer_index", "n_voxels", "n_subjects", "n_chosen") if c in table]
        table = table.astype({c: int for c in ints})
        table = table[[*keys, "layer", *(c for c in table if c not in (*keys, "layer"))]]
        if not subjects:
            table.insert(0, "kind", p.score)
            plot_layer_sweep(table, state.run.file(f"{name}.png"))
        table.to_csv(state.run.file(f"{name}{suffix}.csv"), index=False)


@part(EVALUATIONS, "layer_sweep", SweepParams, write=_write_sweep, check=_check)
def layer_sweep(p: SweepParams, state: RunState, name: str) -> None:
    """The best of the layers ``representations`` (≥ 2, one model's, in depth order, over the same stimuli) per
    ROI (``score: encoding``: a ridge fitted on the training images minus a seeded ``validation_fraction`` of them,
    mean voxel r on those) or per RDM set (``score: rsa``: the RSA over the training images' RDMs, or over a
    seeded ``validation_fraction`` of them when one is set), chosen
    without the test images; every layer's test score (encoding: fitted on all training images, or ``of``'s
    mean_r; rsa: over the test images' RDMs) is the curve. Several subjects (brain sources, an RDM set's subjects):
    a curve each and their mean, the layer chosen by the mean validation score."""
    import pandas as pd

    from llmvem.brain.layer_sweep import mean_curve, sweep_summary

    inputs = _inputs(p, state, name)
    curves, splits = [], {}
    for one in inputs:
        res = _sweep(p, state, name, one)
        curves.append(res.curve)
        splits[one.data.name if p.score == "encoding" else one.group] = {
            "n_fit": res.n_fit, "n_val": res.n_val, "n_test": res.n_test, "split": one.split}  # fmt: skip
    per_subject = pd.concat(curves, ignore_index=True)
    with_subjects = p.score == "rsa" or bool(inputs[0].group)
    curve = mean_curve(per_subject)
    own = {g: v["test_score_own_choice"] for g, v in sweep_summary(per_subject, curve).items()}
    if with_subjects:
        _add_rows(state, name, per_subject, None, {})
    _add_rows(state, name, curve.assign(subject=""), "", own if with_subjects else {})
    chosen = {str(r["group"]): str(r["layer"]) for _, r in curve[curve["chosen"]].iterrows()}
    state.note("evaluations", name, {"score": p.score, "layers": list(p.representations), "splits": splits,
                                     "validation_fraction": _fraction(p, state), "chosen": chosen})  # fmt: skip
    shown = ", ".join(f"{g} → {layer}" for g, layer in list(chosen.items())[:8])
    state.log(f"evaluation {name}: {len(p.representations)} layers, chosen on validation images: {shown}")
