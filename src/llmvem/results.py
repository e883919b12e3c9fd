"""The one result table of a study, and everything derived from it.

Every evaluation of the experiment runner (:mod:`llmvem.runner`) adds rows to one long table with the columns
:data:`COLUMNS`:

==========  =========================================================================================
evaluation  the study's name for the evaluation (``encoding``, ``rsa``, ``descriptions_vs_controls`` ...)
model       the representation scored (a model or a target of the study), or a pair ``"a - b"``
seed        ``""`` for a model without seeds, ``"0"``, ``"1"`` … per seed, ``"mean"`` the mean over seeds
target      what it is scored against: a ROI, an RDM set, a label set ("" when nothing)
subject     ``""`` for the aggregate over subjects (or data of one subject), else the subject's name
metric      ``mean_r``, ``mean``, ``sem``, ``noise_lower``, ``score``, ``diff_mean``, ``p_paired_t_subjects`` ...
value       float
==========  =========================================================================================

From it come ``results.csv`` (the table itself), the CSVs the plots and reports read (``encoding.csv``,
``rsa.csv``, ``rsa_subjects.csv``: :func:`wide_table`), and the ``results`` block of ``metrics.json``
(:func:`to_nested`, read back by :func:`from_nested`)::

    {"study": NAME, "schema": 2,
     "results": {EVALUATION: {MODEL: {TARGET: {METRIC: value,                 # seed "" / "mean", subject ""
                                               "seeds": {SEED: {METRIC: value}},
                                               "subjects": {SUBJECT: {METRIC: value}}}}}},
     "info": {...}}                                                            # counts, fit details, not results

Example
-------
>>> t = ResultTable()
>>> t.add("rsa", "features", "cichy_it", {"mean": 0.2, "sem": 0.01})
>>> t.add("rsa", "features", "cichy_it", {"score": 0.25}, subject="s01")
>>> to_nested(t.frame())["rsa"]["features"]["cichy_it"]
{'mean': 0.2, 'sem': 0.01, 'subjects': {'s01': {'score': 0.25}}}
>>> from_nested(to_nested(t.frame())).equals(t.frame())
True
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("evaluation", "model", "seed", "target", "subject", "metric", "value")
#: the version of the metrics.json layout written by the runner (the hand-written studies had none)
SCHEMA = 2
#: seed values that stand for the whole model (no seeds, or the mean over them)
WHOLE = ("", "mean")


class ResultTable:
    """The rows an experiment produces, in the order they were added (see the module docstring)."""

    def __init__(self) -> None:
        self._rows: list[tuple[str, str, str, str, str, str, float]] = []

    def add(
        self,
        evaluation: str,
        model: str,
        target: str,
        metrics: Mapping[str, Any],
        seed: int | str | None = None,
        subject: str = "",
    ) -> None:
        """Add one row per ``metric → value`` of ``metrics`` (values as float; None → NaN)."""
        s = "" if seed is None else str(seed)
        for metric, value in metrics.items():
            v = float("nan") if value is None else float(value)
            self._rows.append((evaluation, model, s, str(target), str(subject), str(metric), v))

    def extend(self, frame: pd.DataFrame) -> None:
        """Append the rows of a frame with :data:`COLUMNS`."""
        for row in frame[list(COLUMNS)].itertuples(index=False):
            self._rows.append((*(str(x) for x in row[:6]), float(row[6])))  # type: ignore[arg-type]

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame with :data:`COLUMNS` (seed, target, subject as strings)."""
        import pandas as pd

        return pd.DataFrame(self._rows, columns=list(COLUMNS))

    def __len__(self) -> int:
        return len(self._rows)


def seed_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with ``seed == "mean"``: the mean over seeds of every (evaluation, model, target, subject, metric) that
    has per-seed rows (NaN seeds left out of the mean)."""
    seeded = frame[~frame["seed"].isin(WHOLE)]
    if seeded.empty:
        return frame.iloc[0:0]
    keys = ["evaluation", "model", "target", "subject", "metric"]
    out = seeded.groupby(keys, sort=False, as_index=False)["value"].mean()
    return out.assign(seed="mean")[list(COLUMNS)]


def subject_means(frame: pd.DataFrame, evaluation: str) -> pd.DataFrame:
    """The aggregate rows (``subject == ""``) of one evaluation's per-subject rows: the mean over subjects of every
    (model, seed, target, metric), NaN left out, and ``n_subjects`` per (model, seed, target).

    >>> t = ResultTable()
    >>> t.add("decode", "emb", "all", {"top1": 0.5}, subject="s1")
    >>> t.add("decode", "emb", "all", {"top1": 0.75}, subject="s2")
    >>> subject_means(t.frame(), "decode")[["subject", "metric", "value"]].values.tolist()
    [['', 'top1', 0.625], ['', 'n_subjects', 2.0]]
    """
    import pandas as pd

    rows = frame[(frame["evaluation"] == evaluation) & (frame["subject"] != "")]
    keys = ["evaluation", "model", "seed", "target"]
    means = rows.groupby([*keys, "metric"], sort=False, as_index=False)["value"].mean()
    counts = rows.groupby(keys, sort=False, as_index=False)["subject"].nunique()
    counts = counts.rename(columns={"subject": "value"}).assign(metric="n_subjects", value=lambda d: d["value"] * 1.0)
    out = pd.concat([means, counts], ignore_index=True).assign(subject="")
    return out[list(COLUMNS)]


def _put(tree: dict[str, Any], path: list[str], metric: str, value: float) -> None:
    node = tree
    for part in path:
        node = node.setdefault(part, {})
    node[metric] = None if not np.isfinite(value) else value


def to_nested(frame: pd.DataFrame) -> dict[str, Any]:
    """The ``results`` block of ``metrics.json`` (module docstring): EVALUATION → MODEL → TARGET → METRIC, per-seed
    values under ``"seeds"``, per-subject values (of the whole model) under ``"subjects"``; NaN as None. Per-seed
    per-subject rows are left out (they are in ``results.csv``)."""
    tree: dict[str, Any] = {}
    for ev, model, seed, target, subject, metric, value in frame[list(COLUMNS)].itertuples(index=False):
        path = [ev, model, target]
        if seed not in WHOLE:
            if subject:
                continue
            path += ["seeds", seed]
        elif subject:
            path += ["subjects", subject]
        _put(tree, path, metric, value)
    return tree


def from_nested(results: Mapping[str, Any]) -> pd.DataFrame:
    """The table back from a ``results`` block (:func:`to_nested`); the seed of a whole-model row is ``""`` (a
    ``"mean"`` over seeds cannot be told apart from it in the JSON)."""
    import pandas as pd

    rows: list[tuple[str, str, str, str, str, str, float]] = []

    def leaves(node: Mapping[str, Any], seed: str, subject: str, key: tuple[str, str, str]) -> None:
        for metric, v in node.items():
            if metric in ("seeds", "subjects"):
                continue
            rows.append((*key[:2], seed, key[2], subject, metric, float("nan") if v is None else float(v)))

    for ev, models in results.items():
        for model, targets in models.items():
            for target, node in targets.items():
                key = (ev, model, target)
                leaves(node, "", "", key)
                for subject, sub in (node.get("subjects") or {}).items():
                    leaves(sub, "", subject, key)
                for seed, sub in (node.get("seeds") or {}).items():
                    leaves(sub, seed, "", key)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def wide_table(
    frame: pd.DataFrame, evaluation: str, target_name: str = "target", subjects: bool = False
) -> pd.DataFrame:
    """One evaluation's rows of the whole models as a wide table: one row per (model, target[, subject]), one
    column per metric, in the order the rows were added.

    Args:
        target_name: the name of the target column (``"roi"`` for encoding tables, ``"target"`` for RSA).
        subjects: the per-subject rows (``rsa_subjects.csv``) instead of the aggregates.
    """
    part = frame[(frame["evaluation"] == evaluation) & frame["seed"].isin(WHOLE)]
    part = part[part["subject"] != ""] if subjects else part[part["subject"] == ""]
    index = ["model", "target", "subject"] if subjects else ["model", "target"]
    if part.empty:
        import pandas as pd

        return pd.DataFrame(columns=[*index, "value"]).rename(columns={"target": target_name})
    wide = part.groupby([*index, "metric"], sort=False, dropna=False)["value"].mean().unstack("metric")
    wide = wide.reset_index()
    wide.columns.name = None
    metrics = list(dict.fromkeys(part["metric"]))
    scored = frame[frame["evaluation"] == evaluation]  # rows in the order first scored (any seed)
    order = {c: {v: k for k, v in enumerate(dict.fromkeys(scored[c]))} for c in index}
    wide = wide.sort_values(index, key=lambda s: s.map(order[str(s.name)]), kind="stable").reset_index(drop=True)
    return wide[[*index, *metrics]].rename(columns={"target": target_name})


def read_table(path: str | Path) -> pd.DataFrame:
    """A ``results.csv`` back as the table (seed, target, subject as strings, ``""`` kept; value as float)."""
    import pandas as pd

    frame = pd.read_csv(path, dtype={c: str for c in COLUMNS[:6]}, keep_default_na=False)
    return frame.assign(value=pd.to_numeric(frame["value"], errors="coerce"))
