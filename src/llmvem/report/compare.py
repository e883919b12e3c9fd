"""Several runs side by side (a λ sweep, two targets, CPU vs GPU …): their RSA, paired differences, held-out
accuracy and (runner studies) every other evaluation's scores in one long table, and one representation's RSA per
brain set (or, for runs without RSA, its first other score per target) as grouped bars.

Example
-------
>>> from llmvem.report.compare import write_comparison  # doctest: +SKIP
>>> csv, png = write_comparison(["runs/a", "runs/b"], "compare/", representation="aligned_head")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmvem.errors import DataError
from llmvem.runs import check_run_finished

if TYPE_CHECKING:
    import pandas as pd

#: the paired blocks of a run's metrics.json and how the table names them
_PAIRED = {"paired": "aligned − twin, pooled", "paired_heads": "aligned − twin, last layers"}
COLUMNS = ("run", "section", "name", "brain_set", "value", "se", "ci95_low", "ci95_high", "p", "metric")
#: evaluation kinds with their own rows (RSA: mean and SE; paired: difference, CI, p); other kinds' rows as they are
_OWN_ROWS = ("rsa", "paired")
#: which score a run without RSA shows in compare.png, first found first (else the representation's first row)
_BAR_METRICS = ("mean_r", "mean", "score", "top1", "label_accuracy", "accuracy", "r2")
_RSA_BARS = "RSA per brain set"


def _metrics(run_dir: Path) -> dict[str, Any]:
    from llmvem.report.html import _read_json

    path = run_dir / "metrics.json"
    if not run_dir.is_dir():
        raise DataError(f"no run directory {run_dir}")
    check_run_finished(run_dir)
    if not path.is_file():
        raise DataError(f"{run_dir} has no metrics.json: not a finished run directory (llmvem evaluate writes it)")
    metrics = _read_json(path)
    if isinstance(metrics, dict) and metrics.get("schema") == 2:  # a runner study (llmvem.results)
        if not metrics.get("results"):
            raise DataError(f"{path} has no results: the study ran no evaluation (llmvem demo NAME --until evaluate)")
        return metrics
    if not isinstance(metrics, dict) or not isinstance(metrics.get("rsa"), dict):
        raise DataError(
            f"{path} has no RSA results ('rsa'): compare reads runs of the RSA experiments (nsd_objects92, objects92)"
        )
    return metrics


def _rsa_entries(rsa: dict[str, Any], run_dir: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """``(representation, brain set, {"mean", "se" | "sem"})`` of both layouts of ``metrics["rsa"]``: nested
    (``{rep: {brain_set: {...}}}``, the NSD experiment) and flat (``{"rep | target": {...}}``, objects92)."""
    out = []
    for key, v in rsa.items():
        if isinstance(v, dict) and "mean" in v:  # flat
            rep, _, target = str(key).partition(" | ")
            out.append((rep, target or "?", v))
        elif isinstance(v, dict):
            out += [(key, b, x) for b, x in v.items() if isinstance(x, dict)]
        else:
            raise DataError(f"{run_dir / 'metrics.json'}: unreadable RSA entry {key!r}")
    return out


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _study_rows(run: str, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The compare rows of a runner study: its RSA (section ``rsa``) and its paired evaluations (section: the
    evaluation's name, name ``"a - b"``)."""
    from llmvem.report.tables import study_tables

    rsa, paired = study_tables(metrics)
    rows = [{"run": run, "section": "rsa", "name": r.model, "brain_set": r.target, "value": _num(r.mean),
             "se": _num(r.sem), "metric": "mean"} for r in rsa.itertuples()]  # fmt: skip
    rows += [{"run": run, "section": r.layer, "name": r.name, "brain_set": r.brain_set, "value": _num(r.diff),
              "ci95_low": _num(r.ci95_low), "ci95_high": _num(r.ci95_high), "p": _num(r.p), "metric": "diff_mean"}
             for r in paired.itertuples()]  # fmt: skip
    rows += _other_rows(run, metrics)
    return rows


def _whole(metrics: dict[str, Any], kinds: Sequence[str], keep: bool) -> pd.DataFrame:
    """The whole-model rows (seed ``""`` / mean, subject ``""``) of the evaluations whose kind is in ``kinds``
    (``keep``) or is not (``not keep``)."""
    from llmvem.results import WHOLE, from_nested

    kind = {k: v.get("kind") for k, v in (metrics.get("info", {}).get("evaluations") or {}).items()}
    chosen = {k: v for k, v in (metrics.get("results") or {}).items() if (kind.get(k) in kinds) == keep}
    frame = from_nested(chosen)
    return frame[frame["seed"].isin(WHOLE) & (frame["subject"] == "")]


def _other_rows(run: str, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Every other evaluation's scores (held-out task, encoding, retrieval, decoding, layer sweeps …): section = the
    evaluation, name = the model, brain_set = the target (ROI, RDM set, label set …), metric = the metric's name,
    value = the whole model's (the mean over seeds)."""
    return [{"run": run, "section": r.evaluation, "name": r.model, "brain_set": r.target, "value": r.value,
             "metric": r.metric} for r in _whole(metrics, _OWN_ROWS, keep=False).itertuples()]  # fmt: skip


def compare_runs(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """One long table of several runs' results.

    Args:
        run_dirs: run directories: runner studies (``metrics.json`` schema 2, any evaluations) or the hand-written
            RSA experiments' (an ``rsa`` block).
        labels: a name per run (default: the directories' names; they must differ).
    Returns:
        rows with columns ``run``, ``section`` (``rsa``, a paired evaluation's name or ``aligned − twin, pooled``
        …, ``hed``, or any other evaluation's name: ``encoding``, ``retrieval``, ``decode`` …), ``name``
        (representation, comparison or condition), ``brain_set`` (RDM set, ROI or target), ``value`` (mean over
        subjects, difference, accuracy, r …), ``se``, ``ci95_low`` / ``ci95_high`` (over seeds), ``p`` (paired t
        over subjects), ``metric`` (``mean`` for RSA, ``diff_mean`` for pairs, else the evaluation's metric:
        ``mean_r``, ``label_accuracy``, ``top1`` …).
    Raises:
        DataError: no run, a directory without results, or two runs with the same label.
    """
    import pandas as pd

    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise DataError("compare: no run directory given")
    names = list(labels) if labels is not None else [d.name for d in dirs]
    if len(names) != len(dirs):
        raise DataError(f"compare: {len(names)} label(s) for {len(dirs)} run(s)")
    if len(set(names)) != len(names):
        raise DataError(f"compare: runs need distinct labels, got {names}; give them with --label")
    rows: list[dict[str, Any]] = []
    for run, d in zip(names, dirs, strict=True):
        m = _metrics(d)
        if m.get("schema") == 2:
            rows += _study_rows(run, m)
            continue
        for rep, brain_set, v in _rsa_entries(m["rsa"], d):
            rows.append({"run": run, "section": "rsa", "name": rep, "brain_set": brain_set, "metric": "mean",
                         "value": _num(v.get("mean")), "se": _num(v.get("se", v.get("sem")))})  # fmt: skip
        blocks = [(_PAIRED[k], "aligned − twin", m.get(k)) for k in _PAIRED]
        blocks += [("aligned − untouched", rep, b) for rep, b in (m.get("paired_pretrained") or {}).items()]
        for section, name, block in blocks:
            for brain_set, p in (block or {}).items():
                lo, hi = [*(p.get("ci95") or []), None, None][:2]
                rows.append({"run": run, "section": section, "name": name, "brain_set": brain_set,
                             "value": _num(p.get("diff_mean")), "ci95_low": _num(lo), "ci95_high": _num(hi),
                             "p": _num(p.get("p_paired_t_subjects")), "metric": "diff_mean"})  # fmt: skip
        for condition, scores in (m.get("hed") or {}).items():
            for metric, v in (scores or {}).items():
                rows.append({"run": run, "section": "hed", "name": condition, "brain_set": "hed", "value": _num(v),
                             "metric": metric})  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_comparison(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    labels: Sequence[str] | None = None,
    representation: str = "aligned_head",
) -> tuple[Path, Path]:
    """Write ``compare.csv`` (:func:`compare_runs`) and ``compare.png`` (``representation``'s RSA per brain set,
    one bar per run, ± SE over subjects; for runs without RSA its first other score per target, e.g. the encoding
    ``mean_r`` per ROI) into ``out_dir``; returns their paths.

    Raises:
        DataError: as :func:`compare_runs`, or no run has ``representation`` (the message lists those they have).
    """
    from llmvem.report.plots import plot_rsa

    table = compare_runs(run_dirs, labels)
    bars, what = _bars(table, representation)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "compare.csv"
    table.to_csv(csv, index=False)
    bars = bars.rename(columns={"run": "model", "brain_set": "target", "value": "mean", "se": "sem"}).assign(
        noise_lower=float("nan"), noise_upper=float("nan")
    )
    ylabel = None if what == _RSA_BARS else what.split(" per ")[0]
    png = plot_rsa(bars, out / "compare.png", title=f"{representation}: {what}, one bar per run", ylabel=ylabel)
    return csv, png


def _bars(table: pd.DataFrame, representation: str) -> tuple[pd.DataFrame, str]:
    """The rows ``compare.png`` draws and what they are: ``representation``'s RSA where any run has RSA, else its
    rows of one (section, metric) of the other evaluations: the first metric in :data:`_BAR_METRICS`, else the
    first row's (differences left out)."""
    rsa = table["section"] == "rsa"
    drawn = rsa if rsa.any() else table["metric"] != "diff_mean"  # without RSA: scores per target, no differences
    mine = table[drawn & (table["name"] == representation)]
    if not mine.empty:
        if (mine["section"] == "rsa").all():
            return mine, _RSA_BARS
        rank = mine["metric"].map(lambda m: _BAR_METRICS.index(m) if m in _BAR_METRICS else len(_BAR_METRICS))
        section, metric = mine.loc[rank.idxmin(), ["section", "metric"]]
        return mine[(mine["section"] == section) & (mine["metric"] == metric)], f"{section} {metric} per target"
    have = sorted(set(table.loc[drawn, "name"]))
    raise DataError(f"compare: no run has representation {representation!r}; they have {have}")
