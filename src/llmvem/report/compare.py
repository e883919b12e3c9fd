"""Several runs side by side (a λ sweep, two targets, CPU vs GPU …): their RSA, paired differences and held-out
accuracy in one long table, and one representation's RSA per brain set as grouped bars.

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
COLUMNS = ("run", "section", "name", "brain_set", "value", "se", "ci95_low", "ci95_high", "p")


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
        from llmvem.report.tables import study_tables

        if study_tables(metrics)[0].empty:
            raise DataError(f"{path} has no RSA evaluation: compare reads runs of studies with RSA (objects92 ...)")
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
             "se": _num(r.sem)} for r in rsa.itertuples()]  # fmt: skip
    rows += [{"run": run, "section": r.layer, "name": r.name, "brain_set": r.brain_set, "value": _num(r.diff),
              "ci95_low": _num(r.ci95_low), "ci95_high": _num(r.ci95_high), "p": _num(r.p)}
             for r in paired.itertuples()]  # fmt: skip
    rows += _heldout_rows(run, metrics)
    return rows


def _heldout_rows(run: str, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The held-out task scores of a runner study (evaluations of kind ``heldout_task``, the NSD study's ``hed``):
    section = the evaluation, name = the model, brain_set = the metric, value = the mean over seeds."""
    from llmvem.results import from_nested

    kinds = {k: v.get("kind") for k, v in (metrics.get("info", {}).get("evaluations") or {}).items()}
    chosen = {k: v for k, v in (metrics.get("results") or {}).items() if kinds.get(k) == "heldout_task"}
    frame = from_nested(chosen)
    whole = frame[(frame["seed"] == "") & (frame["subject"] == "")]
    return [{"run": run, "section": r.evaluation, "name": r.model, "brain_set": r.metric, "value": r.value}
            for r in whole.itertuples()]  # fmt: skip


def compare_runs(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """One long table of several runs' results.

    Args:
        run_dirs: run directories holding a ``metrics.json`` with an ``rsa`` block.
        labels: a name per run (default: the directories' names; they must differ).
    Returns:
        rows with columns ``run``, ``section`` (``rsa``, ``aligned − twin, pooled``, ``aligned − twin, last
        layers``, ``aligned − untouched``, ``hed``), ``name`` (representation, comparison or condition),
        ``brain_set`` (or the HED metric), ``value`` (mean over subjects, difference, or accuracy), ``se``,
        ``ci95_low`` / ``ci95_high`` (over seeds), ``p`` (paired t over subjects).
    Raises:
        DataError: no run, a directory without RSA results, or two runs with the same label.
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
            rows.append({"run": run, "section": "rsa", "name": rep, "brain_set": brain_set,
                         "value": _num(v.get("mean")), "se": _num(v.get("se", v.get("sem")))})  # fmt: skip
        blocks = [(_PAIRED[k], "aligned − twin", m.get(k)) for k in _PAIRED]
        blocks += [("aligned − untouched", rep, b) for rep, b in (m.get("paired_pretrained") or {}).items()]
        for section, name, block in blocks:
            for brain_set, p in (block or {}).items():
                lo, hi = [*(p.get("ci95") or []), None, None][:2]
                rows.append({"run": run, "section": section, "name": name, "brain_set": brain_set,
                             "value": _num(p.get("diff_mean")), "ci95_low": _num(lo), "ci95_high": _num(hi),
                             "p": _num(p.get("p_paired_t_subjects"))})  # fmt: skip
        for condition, scores in (m.get("hed") or {}).items():
            for metric, v in (scores or {}).items():
                rows.append({"run": run, "section": "hed", "name": condition, "brain_set": metric, "value": _num(v)})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_comparison(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    labels: Sequence[str] | None = None,
    representation: str = "aligned_head",
) -> tuple[Path, Path]:
    """Write ``compare.csv`` (:func:`compare_runs`) and ``compare.png`` (``representation``'s RSA per brain set,
    one bar per run, ± SE over subjects) into ``out_dir``; returns their paths.

    Raises:
        DataError: as :func:`compare_runs`, or no run has ``representation`` (the message lists those they have).
    """
    from llmvem.report.plots import plot_rsa

    table = compare_runs(run_dirs, labels)
    rsa = table[(table["section"] == "rsa") & (table["name"] == representation)]
    if rsa.empty:
        have = sorted(set(table.loc[table["section"] == "rsa", "name"]))
        raise DataError(f"compare: no run has representation {representation!r}; they have {have}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "compare.csv"
    table.to_csv(csv, index=False)
    bars = rsa.rename(columns={"run": "model", "brain_set": "target", "value": "mean", "se": "sem"}).assign(
        noise_lower=float("nan"), noise_upper=float("nan")
    )
    png = plot_rsa(bars, out / "compare.png", title=f"{representation}: RSA per brain set, one bar per run")
    return csv, png
