"""Result tables: encoding and RSA summaries as rich tables, any DataFrame as a Markdown pipe table.

Inputs are the long formats written by the evaluation stage:

- encoding: one row per model × ROI with columns :data:`ENCODING_COLUMNS`;
- RSA: one row per model × target RDM with columns :data:`RSA_COLUMNS`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from llmvem.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

ENCODING_COLUMNS = ("model", "roi", "n_voxels", "mean_r", "median_r", "noise_ceiling_r", "mean_score")
RSA_COLUMNS = ("model", "target", "n_subjects", "mean", "sem", "noise_lower", "noise_upper", "method")
MISSING = "—"


def check_columns(df: pd.DataFrame, required: Iterable[str], what: str) -> None:
    """Raise :class:`DataError` if ``df`` lacks any of the ``required`` columns of a ``what`` table."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{what} table lacks column(s) {missing}; it has {list(map(str, df.columns))}. "
            f"Expected the long format with columns {list(required)}."
        )


def format_cell(value: Any, decimals: int = 3) -> str:
    """Format one table cell: floats with ``decimals`` decimals, NaN/None as an em dash, the rest as ``str``."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        return MISSING if math.isnan(x) else f"{x:.{decimals}f}"
    try:
        if value != value:  # pandas NA / NaT
            return MISSING
    except (TypeError, ValueError):
        pass
    return str(value)


def best_rows(df: pd.DataFrame, group: str, value: str) -> set[int]:
    """Positional indices of the row with the highest ``value`` in each ``group`` (NaN values never win)."""
    import pandas as pd

    scores = pd.to_numeric(df[value], errors="coerce").to_numpy(dtype=float)
    best: dict[Any, int] = {}
    for pos, key in enumerate(df[group].tolist()):
        if math.isnan(scores[pos]):
            continue
        if key not in best or scores[pos] > scores[best[key]]:
            best[key] = pos
    return set(best.values())


def _grouped_order(df: pd.DataFrame, group: str) -> list[int]:
    """Positional row order that keeps rows of one ``group`` together, groups in order of first appearance."""
    order: dict[Any, list[int]] = {}
    for pos, key in enumerate(df[group].tolist()):
        order.setdefault(key, []).append(pos)
    return [pos for rows in order.values() for pos in rows]


def _add_grouped_rows(table: Table, df: pd.DataFrame, group: str, value: str, cells: Sequence[Sequence[str]]) -> None:
    best = best_rows(df, group, value)
    keys = df[group].tolist()
    order = _grouped_order(df, group)
    for i, pos in enumerate(order):
        last_of_group = i + 1 == len(order) or keys[order[i + 1]] != keys[pos]
        table.add_row(*cells[pos], style="bold" if pos in best else None, end_section=last_of_group)


def format_encoding_table(df: pd.DataFrame, title: str | None = "Encoding (held-out Pearson r)") -> Table:
    """Rich table of an encoding result: rows grouped by ROI, the model with the highest ``mean_r`` per ROI in bold.

    Args:
        df: one row per model × ROI with columns :data:`ENCODING_COLUMNS`.
        title: table title (``None`` for none).
    """
    from rich.table import Table

    check_columns(df, ENCODING_COLUMNS, "encoding")
    table = Table(title=title)
    table.add_column("ROI")
    table.add_column("model")
    for name in ("voxels", "mean r", "median r", "ceiling r", "score (% NC)"):
        table.add_column(name, justify="right")
    shown = ["roi", "model", "n_voxels", "mean_r", "median_r", "noise_ceiling_r", "mean_score"]
    cells = [[format_cell(v) for v in row] for row in df[shown].itertuples(index=False, name=None)]
    _add_grouped_rows(table, df, "roi", "mean_r", cells)
    return table


def format_rsa_table(df: pd.DataFrame, title: str | None = "RSA (model RDM vs. target RDM)") -> Table:
    """Rich table of an RSA result: rows grouped by target, ``mean ± sem``, best ``mean`` per target in bold.

    Args:
        df: one row per model × target with columns :data:`RSA_COLUMNS`.
        title: table title (``None`` for none).
    """
    from rich.table import Table

    check_columns(df, RSA_COLUMNS, "RSA")
    table = Table(title=title)
    table.add_column("target")
    table.add_column("model")
    table.add_column("subjects", justify="right")
    table.add_column("mean ± sem", justify="right")
    table.add_column("noise ceiling", justify="right")
    table.add_column("method")
    cells = [
        [
            format_cell(row["target"]),
            format_cell(row["model"]),
            format_cell(row["n_subjects"]),
            f"{format_cell(row['mean'])} ± {format_cell(row['sem'])}",
            f"[{format_cell(row['noise_lower'])}, {format_cell(row['noise_upper'])}]",
            format_cell(row["method"]),
        ]
        for row in df[list(RSA_COLUMNS)].to_dict("records")
    ]
    _add_grouped_rows(table, df, "target", "mean", cells)
    return table


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", " ").replace("\n", " ")


def to_markdown(df: pd.DataFrame, decimals: int = 3, index: bool = False) -> str:
    """Render ``df`` as a GitHub-flavoured Markdown pipe table (numeric columns right-aligned).

    Floats get ``decimals`` decimals, missing values an em dash; ``|`` and newlines in cells are escaped. With
    ``index=True`` the index is written as the first column.
    """
    import pandas as pd

    data = df.reset_index() if index else df
    if len(data.columns) == 0:
        return ""
    headers = [_md_escape(str(c)) for c in data.columns]
    numeric = [pd.api.types.is_numeric_dtype(data[c]) and not pd.api.types.is_bool_dtype(data[c]) for c in data.columns]
    rows = [[_md_escape(format_cell(v, decimals)) for v in row] for row in data.itertuples(index=False, name=None)]
    widths = [max([3, len(h), *(len(r[j]) for r in rows)]) for j, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join("-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True))
    return "\n".join([line(headers), rule + " |", *(line(r) for r in rows)]) + "\n"


def study_tables(metrics: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The RSA rows and the paired-difference rows of a runner study's ``metrics.json`` (``"schema": 2``,
    :mod:`llmvem.results`), for ``report`` and ``compare``.

    Returns:
        ``(rsa, paired)``: ``rsa`` with columns ``evaluation, model, target, mean, sem``; ``paired`` with
        ``layer`` (the evaluation's name), ``brain_set``, ``name`` (``"a - b"``), ``diff``, ``ci95_low``,
        ``ci95_high``, ``p``, ``ratio`` and ``per_seed`` (a list; empty with one seed).
    """
    import pandas as pd

    from llmvem.results import WHOLE, from_nested

    kinds = {n: v.get("kind") for n, v in (metrics.get("info", {}).get("evaluations") or {}).items()}
    frame = from_nested(metrics.get("results") or {})
    whole = frame[frame["seed"].isin(WHOLE) & (frame["subject"] == "")]
    keys = ["evaluation", "model", "target"]
    wide = whole.groupby([*keys, "metric"], sort=False)["value"].mean().unstack("metric").reset_index()
    need = ["mean", "sem", "diff_mean", "ci95_low", "ci95_high", "p_paired_t_subjects", "ratio"]
    wide = wide.reindex(columns=[*keys, *dict.fromkeys([*wide.columns[3:], *need])])
    cols = ["evaluation", "model", "target", "mean", "sem"]
    rsa = wide[wide["evaluation"].map(kinds) == "rsa"].reindex(columns=cols)
    paired = wide[wide["evaluation"].map(kinds) == "paired"]
    seeds = frame[~frame["seed"].isin(WHOLE) & (frame["metric"] == "diff")]
    per_seed = seeds.groupby(["evaluation", "model", "target"], sort=False)["value"].agg(list)
    rows = [{"layer": r.evaluation, "brain_set": r.target, "name": r.model, "diff": r.diff_mean,
             "ci95_low": r.ci95_low, "ci95_high": r.ci95_high, "p": r.p_paired_t_subjects, "ratio": r.ratio,
             "per_seed": per_seed.get((r.evaluation, r.model, r.target), [])}
            for r in paired.itertuples()]  # fmt: skip
    return rsa.reset_index(drop=True), pd.DataFrame(rows, columns=["layer", "brain_set", "name", "diff", "ci95_low",
                                                                   "ci95_high", "p", "ratio", "per_seed"])  # fmt: skip
