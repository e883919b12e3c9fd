"""Report figures: encoding and RSA bar charts with noise ceilings, RDM panels, per-voxel r histograms, training
curves and per-seed bars.

Every function draws on its own :class:`matplotlib.figure.Figure` with the Agg canvas (never pyplot's global state,
so it works headless and leaves an interactive session's backend alone), saves a PNG at :data:`DPI` and returns its
path. matplotlib is imported inside the functions so ``import llmvem.report`` stays fast.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmvem.errors import DataError
from llmvem.report.tables import check_columns

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 120
#: Okabe & Ito colour-blind-safe palette, ordered for contrast on white (yellow last).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
_HATCHES = ("", "//", "..", "xx")
_LEGEND: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "frameon": False, "fontsize": 9}
_METHOD_LABELS = {
    "spearman": "Spearman ρ",
    "pearson": "Pearson r",
    "kendall": "Kendall τ",
    "kendall_tau_a": "Kendall τ-a",
    "cosine": "cosine similarity",
}


def _wrap(text: str, width: int = 28) -> str:
    """Wrap at spaces; a long name without spaces (``kriegeskorte_hIT``) is kept whole up to 1.5 × ``width``."""
    text = str(text)
    if " " not in text and len(text) <= 1.5 * width:
        return text
    return "\n".join(textwrap.wrap(text, width=width, break_on_hyphens=False)) or text


def _unique(values: Iterable[Hashable]) -> list[Any]:
    """Distinct values in order of first appearance."""
    return list(dict.fromkeys(values))


def _style(i: int) -> tuple[str, str]:
    """Colour and hatch of the ``i``-th series (hatches tell series apart once the palette repeats)."""
    return PALETTE[i % len(PALETTE)], _HATCHES[(i // len(PALETTE)) % len(_HATCHES)]


def _new_figure(width: float, height: float, constrained: bool = False) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(width, 24.0), height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=DPI, format="png", bbox_inches="tight", facecolor="white")
    finally:
        fig.clear()
    return out


def _tidy_axes(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.yaxis.grid(True, color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.axhline(0.0, color="0.3", linewidth=0.8)


def _grouped_bars(
    ax: Axes,
    df: pd.DataFrame,
    group: str,
    value: str,
    err: str | None = None,
) -> tuple[list[Any], list[Any], float]:
    """Draw one bar per model within each ``group``; return (groups, models, bar width)."""
    groups = _unique(df[group])
    models = _unique(df["model"])
    cols = [value] if err is None else [value, err]
    table = df.groupby(["model", group], sort=False)[cols].mean(numeric_only=True)
    width = 0.8 / len(models)
    x = np.arange(len(groups), dtype=float)
    for i, model in enumerate(models):
        heights = [table[value].get((model, g), np.nan) for g in groups]
        errors = None if err is None else [table[err].get((model, g), np.nan) for g in groups]
        colour, hatch = _style(i)
        ax.bar(
            x - 0.4 + width * (i + 0.5),
            heights,
            width=width * 0.92,
            yerr=errors,
            color=colour,
            hatch=hatch,
            edgecolor="white" if not hatch else "0.25",
            linewidth=0.6,
            label=_wrap(model),
            error_kw={"ecolor": "0.15", "elinewidth": 1.1, "capsize": 3 if len(models) < 8 else 1.5},
            zorder=2,
        )
    ax.set_xticks(x)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    return groups, models, width


def _bar_chart(
    df: pd.DataFrame,
    columns: tuple[str, ...],
    what: str,
    group: str,
    value: str,
    size: tuple[float, float, float, float],
    err: str | None = None,
) -> tuple[Figure, Axes, list[Any], list[Any], float]:
    """Check ``df`` (``columns`` present, not empty: ``what`` names it in errors), open a figure sized
    ``base + n_groups · (per_model · n_models + per_group)`` by ``height`` (``size`` = (base, per_model, per_group,
    height)) and draw :func:`_grouped_bars` of ``value`` per ``group``; returns the figure, its axes, the groups, the
    models and the bar width."""
    check_columns(df, columns, what)
    if df.empty:
        raise DataError(f"{what} table is empty: nothing to plot")
    base, per_model, per_group, height = size
    fig = _new_figure(base + df[group].nunique() * (per_model * df["model"].nunique() + per_group), height)
    ax = fig.add_subplot()
    _tidy_axes(ax)
    groups, models, width = _grouped_bars(ax, df, group, value, err=err)
    return fig, ax, groups, models, width


def _group_labels(ax: Axes, df: pd.DataFrame, group: str, groups: Sequence[Any], count: str, unit: str) -> None:
    labels = []
    for g in groups:
        label = _wrap(str(g), 14)
        if count in df.columns:
            n = df.loc[df[group] == g, count].dropna()
            if len(n) and float(n.iloc[0]).is_integer():
                label += f"\n({int(n.iloc[0]):,} {unit})"
        labels.append(label)
    rotate = len(groups) > 8
    ax.set_xticklabels(labels, rotation=30 if rotate else 0, ha="right" if rotate else "center", fontsize=9)


def _finite_max(*arrays: Any) -> float:
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])
    vals = vals[np.isfinite(vals)]
    return float(vals.max()) if vals.size else 1.0


def plot_encoding(df: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Grouped bars of held-out ``mean_r`` per ROI (one bar per model) with each ROI's noise ceiling as a dashed line.

    Args:
        df: encoding table, one row per model × ROI (columns ``model``, ``roi``, ``mean_r``, ``noise_ceiling_r``;
            ``n_voxels`` is shown under the ROI name when present).
        path: PNG file to write (parent folders are created).
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    fig, ax, rois, _, _ = _bar_chart(
        df, ("model", "roi", "mean_r", "noise_ceiling_r"), "encoding", "roi", "mean_r", (1.2, 0.28, 0.5, 4.2)
    )
    ceilings = df.groupby("roi", sort=False)["noise_ceiling_r"].mean()
    labelled = False
    for j, roi in enumerate(rois):
        c = float(ceilings.get(roi, np.nan))
        if math.isfinite(c):
            label = "_nolegend_" if labelled else "noise ceiling"
            ax.hlines(c, j - 0.45, j + 0.45, colors="0.1", linestyles=(0, (4, 2)), linewidth=1.6, zorder=3, label=label)
            labelled = True
    _group_labels(ax, df, "roi", rois, "n_voxels", "vox")
    top = _finite_max(df["mean_r"], ceilings)
    ax.set_ylim(top=max(top, 0.0) * 1.12 + 1e-3)
    ax.set_ylabel("mean Pearson r (held-out)")
    ax.set_title(title or "Encoding accuracy per ROI", fontsize=11)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda k: labels[k] == "noise ceiling")  # models first, ceiling last
    ax.legend([handles[k] for k in order], [labels[k] for k in order], **_LEGEND)
    return _save(fig, path)


def plot_rsa(
    df: pd.DataFrame,
    path: str | Path,
    title: str | None = None,
    subjects: pd.DataFrame | None = None,
    ylabel: str | None = None,
) -> Path:
    """Grouped bars of mean RDM correlation per target (± sem) over a grey noise-ceiling band per target.

    Args:
        df: RSA table, one row per model × target (columns ``model``, ``target``, ``mean``, ``sem``,
            ``noise_lower``, ``noise_upper``; ``n_subjects`` and ``method`` label the axes when present).
        path: PNG file to write (parent folders are created).
        title: figure title.
        subjects: optional per-subject scores (columns ``model``, ``target``, ``subject``, ``score``; several rows
            per subject, e.g. one per seed, are averaged), drawn as points on their bars.
        ylabel: the y axis (default: "RDM correlation" and the method); other scores per target reuse the bars.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    columns = ("model", "target", "mean", "sem", "noise_lower", "noise_upper")
    fig, ax, targets, models, width = _bar_chart(df, columns, "RSA", "target", "mean", (1.2, 0.28, 0.5, 4.2), err="sem")
    top_points = np.nan
    if subjects is not None and not subjects.empty:
        check_columns(subjects, ("model", "target", "subject", "score"), "per-subject RSA")
        per = subjects.groupby(["model", "target", "subject"], sort=False)["score"].mean().reset_index()
        points = {key: g["score"].to_numpy(float) for key, g in per.groupby(["model", "target"], sort=False)}
        for j, target in enumerate(targets):
            for i, model in enumerate(models):
                ys = points.get((model, target))
                if ys is None:
                    continue
                xs = j - 0.4 + width * (i + 0.5) + np.linspace(-0.25, 0.25, len(ys)) * width
                label = "subjects" if i == 0 and j == 0 else "_nolegend_"
                ax.scatter(xs, ys, s=7, color="0.15", alpha=0.55, linewidths=0, zorder=4, label=label)
                top_points = np.nanmax([top_points, *ys])
    noise = df.groupby("target", sort=False)[["noise_lower", "noise_upper"]].mean()
    has_band = has_line = False
    for j, target in enumerate(targets):
        lo, hi = (float(noise.loc[target, c]) for c in ("noise_lower", "noise_upper"))
        span = (j - 0.46, j + 0.46)
        if math.isfinite(lo) and math.isfinite(hi):
            ax.fill_between(span, lo, hi, color="0.78", linewidth=0, zorder=1)
            has_band = True
        elif math.isfinite(lo) or math.isfinite(hi):  # only one bound known: draw it as a line
            ax.hlines(lo if math.isfinite(lo) else hi, span[0], span[1], colors="0.55", linewidth=2.0, zorder=1)
            has_line = True
    _group_labels(ax, df, "target", targets, "n_subjects", "subj.")
    top = _finite_max(df["mean"] + df["sem"].fillna(0.0), noise["noise_upper"], noise["noise_lower"], [top_points])
    ax.set_ylim(top=max(top, 0.0) * 1.12 + 1e-3)
    methods = _unique(df["method"].dropna()) if "method" in df.columns else []
    metric = f" ({_METHOD_LABELS.get(str(methods[0]).lower(), str(methods[0]))})" if len(methods) == 1 else ""
    ax.set_ylabel(ylabel or f"RDM correlation{metric}")
    ax.set_title(title or "Model RDM vs. target RDMs", fontsize=11)
    handles, labels = ax.get_legend_handles_labels()
    if has_band:
        handles.append(Patch(facecolor="0.78", edgecolor="none"))
        labels.append("noise ceiling\n(lower–upper)")
    if has_line:
        handles.append(Line2D([], [], color="0.55", linewidth=2.0))
        labels.append("noise ceiling\n(one bound)")
    ax.legend(handles, labels, **_LEGEND)
    return _save(fig, path)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-d array, ties sharing their average rank (``scipy.stats.rankdata``, without scipy)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.concatenate([[0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1])
    ends = np.concatenate([starts[1:], [values.size]])
    ranks = np.empty(values.size)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def rank_percentiles(rdm: np.ndarray) -> np.ndarray:
    """Off-diagonal entries of ``rdm`` (n, n) as percentiles of their ranks (0 to 100); diagonal 0, NaN kept.

    A symmetric RDM is ranked over its upper triangle (each pair once) and mirrored.
    """
    rdm = np.asarray(rdm, dtype=float)
    n = rdm.shape[0]
    out = np.full(rdm.shape, np.nan)
    symmetric = np.allclose(rdm, rdm.T, equal_nan=True)
    mask = (np.triu(np.ones((n, n), dtype=bool), k=1) if symmetric else ~np.eye(n, dtype=bool)) & np.isfinite(rdm)
    values = rdm[mask]
    if values.size:
        out[mask] = 100.0 * (_average_ranks(values) - 1.0) / max(values.size - 1, 1)
    if symmetric:
        lower = np.tril_indices(n, k=-1)
        out[lower] = out.T[lower]
    np.fill_diagonal(out, 0.0)
    return out


def plot_rdms(
    rdms: Mapping[str, np.ndarray],
    path: str | Path,
    stimulus_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """A row of RDM images, each rank-transformed to percentiles for display, with one shared colour bar.

    Args:
        rdms: name → square dissimilarity matrix (n, n); all of the same n when ``stimulus_labels`` is given.
        path: PNG file to write (parent folders are created).
        stimulus_labels: n labels for the axes (drawn only for n ≤ 40).
        title: figure title.
    """
    if not rdms:
        raise DataError("plot_rdms got no RDMs: pass a dict of name -> (n, n) array")
    mats = {}
    for name, rdm in rdms.items():
        arr = np.asarray(rdm, dtype=float)
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
            raise DataError(f"RDM {name!r} has shape {arr.shape}; an RDM must be a square (n, n) matrix")
        if stimulus_labels is not None and len(stimulus_labels) != arr.shape[0]:
            raise DataError(f"RDM {name!r} is {arr.shape[0]}×{arr.shape[0]} but {len(stimulus_labels)} labels given")
        mats[name] = rank_percentiles(arr)
    n_panels = len(mats)
    fig = _new_figure(3.1 * n_panels + 0.9, 3.6, constrained=True)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    images = []
    for ax, (name, mat) in zip(axes, mats.items(), strict=True):
        images.append(ax.imshow(mat, cmap="viridis", vmin=0.0, vmax=100.0, interpolation="nearest"))
        ax.set_title(_wrap(name, 30), fontsize=10)
        n = mat.shape[0]
        if stimulus_labels is not None and n <= 40:
            size = 7 if n <= 20 else 5
            ax.set_xticks(range(n), [str(s) for s in stimulus_labels], rotation=90, fontsize=size)
            ax.set_yticks(range(n), [str(s) for s in stimulus_labels], fontsize=size)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{n} stimuli", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.colorbar(images[-1], ax=list(axes), shrink=0.85, label="dissimilarity (percentile)")
    return _save(fig, path)


def plot_r_histograms(
    r_by_model: Mapping[str, np.ndarray],
    path: str | Path,
    title: str | None = None,
    bins: int = 40,
) -> Path:
    """Overlaid histograms of per-voxel held-out r, one outline per model, with each model's median dashed.

    Args:
        r_by_model: model name → per-voxel Pearson r (any shape; flattened, NaNs dropped).
        path: PNG file to write (parent folders are created).
        title: figure title.
        bins: number of shared bins.
    """
    if not r_by_model:
        raise DataError("plot_r_histograms got no models: pass a dict of model name -> per-voxel r array")
    values = {name: np.asarray(r, dtype=float).ravel() for name, r in r_by_model.items()}
    values = {name: v[np.isfinite(v)] for name, v in values.items()}
    pooled = np.concatenate(list(values.values()))
    if pooled.size == 0:
        raise DataError("plot_r_histograms: no finite r values in any model")
    lo, hi = float(pooled.min()), float(pooled.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    edges = np.linspace(lo, hi, bins + 1)
    fig = _new_figure(7.5, 4.0)
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.axvline(0.0, color="0.5", linewidth=0.8)
    for i, (name, r) in enumerate(values.items()):
        colour, _ = _style(i)
        if r.size == 0:
            ax.plot([], [], color=colour, label=f"{_wrap(name)}\n(no finite values)")
            continue
        med = float(np.median(r))
        label = f"{_wrap(name)}\nmedian {med:.3f}"
        ax.hist(r, bins=edges.tolist(), histtype="step", linewidth=1.8, color=colour, label=label)
        ax.axvline(med, color=colour, linestyle=(0, (4, 2)), linewidth=1.2)
    ax.set_xlabel("held-out Pearson r per voxel")
    ax.set_ylabel("voxels")
    ax.set_title(title or "Distribution of voxel-wise encoding accuracy", fontsize=11)
    ax.legend(**_LEGEND)
    return _save(fig, path)


def plot_decoding(df: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Bars of pairwise identification accuracy per subject (chance 0.5 dashed) and top-1 accuracy beside its chance.

    Args:
        df: decoding table, one row per subject (columns ``subject``, ``identification_accuracy``, ``top1``,
            ``top1_chance``).
        path: PNG file to write (parent folders are created).
        title: figure title.
    """
    check_columns(df, ("subject", "identification_accuracy", "top1", "top1_chance"), "decoding")
    if df.empty:
        raise DataError("decoding table is empty: nothing to plot")
    n = len(df)
    fig = _new_figure(3.6 + 1.4 * n, 3.8, constrained=True)
    axes = fig.subplots(1, 2)
    x = np.arange(n)
    labels = [_wrap(str(s), 14) for s in df["subject"]]
    for ax, col, chance, ylabel in (
        (axes[0], "identification_accuracy", np.full(n, 0.5), "pairwise identification accuracy"),
        (axes[1], "top1", df["top1_chance"].to_numpy(float), "top-1 identification accuracy"),
    ):
        _tidy_axes(ax)
        colour, _ = _style(0)
        ax.bar(x, df[col].to_numpy(float), width=0.6, color=colour, zorder=2)
        for k, c in enumerate(chance):
            label = "chance" if k == 0 else "_nolegend_"
            ax.hlines(c, k - 0.4, k + 0.4, colors="0.1", linestyles=(0, (4, 2)), linewidth=1.4, zorder=3, label=label)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.legend(loc="upper right", fontsize=8, frameon=True, framealpha=0.9)
    fig.suptitle(title or "Brain → embedding decoding (held-out stimuli)", fontsize=11)
    return _save(fig, path)


def plot_training_curves(
    histories: Mapping[str, pd.DataFrame], path: str | Path, title: str | None = None, max_panels: int = 6
) -> Path:
    """Small multiples of per-epoch training metrics, one line per run (e.g. ``aligned seed 0``, ``twin seed 0``).

    Args:
        histories: run label → per-epoch table with an ``epoch`` column and metric columns (``train_*``, ``val_*``;
            ``lambda`` and ``lr`` are skipped). Runs of the same condition share a colour when labels are
            ``"<condition> seed <k>"``.
        path: PNG file to write (parent folders are created).
        title: figure title.
        max_panels: at most this many metrics (train metrics first, then validation).
    """
    if not histories:
        raise DataError("plot_training_curves got no runs: pass a dict of label -> per-epoch DataFrame")
    for label, df in histories.items():
        check_columns(df, ("epoch",), f"training history {label!r}")
    metrics = _unique(c for df in histories.values() for c in df.columns if c not in ("epoch", "lambda", "lr"))
    metrics = sorted(metrics, key=lambda c: (not str(c).startswith("train_"), str(c)))[:max_panels]
    if not metrics:
        raise DataError("plot_training_curves: the histories hold no metric columns besides epoch/lambda/lr")
    conditions = _unique(str(label).split(" seed ")[0] for label in histories)
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig = _new_figure(3.4 * cols + 1.6, 2.6 * rows + 0.6, constrained=True)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        _tidy_axes(ax)
        for label, df in histories.items():
            if metric not in df.columns:
                continue
            colour, _ = _style(conditions.index(str(label).split(" seed ")[0]))
            ax.plot(df["epoch"], df[metric], color=colour, linewidth=1.4, alpha=0.85, label=str(label))
        ax.set_title(str(metric).replace("_", " "), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False)
    fig.suptitle(title or "Training curves", fontsize=11)
    return _save(fig, path)


def plot_seed_bars(
    df: pd.DataFrame, path: str | Path, ylabel: str = "held-out score", title: str | None = None
) -> Path:
    """Grouped bars of the mean over seeds per metric (one bar per model), each seed's value as a point on its bar,
    and thin grey lines joining the same seed across models (the pairing of an aligned model and its twin).

    Args:
        df: one row per model × metric × seed (columns ``model``, ``metric``, ``seed``, ``value``), e.g. ``aligned`` /
            ``twin`` × ``top1`` / ``top5`` × seeds 0, 1, 2.
        path: PNG file to write (parent folders are created).
        ylabel: y-axis label.
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    fig, ax, metrics, models, width = _bar_chart(
        df, ("model", "metric", "seed", "value"), "per-seed score", "metric", "value", (1.6, 0.5, 0.6, 4.0)
    )
    seeds = _unique(df["seed"])
    for j, metric in enumerate(metrics):
        xs = {m: j - 0.4 + width * (i + 0.5) for i, m in enumerate(models)}
        sub = df[df["metric"] == metric]
        for s_i, seed in enumerate(seeds):
            rows = sub[sub["seed"] == seed]
            pts = [(xs[m], float(v)) for m, v in zip(rows["model"], rows["value"], strict=True) if math.isfinite(v)]
            if not pts:
                continue
            jitter = (s_i - (len(seeds) - 1) / 2) * min(0.02, width / (4 * max(len(seeds), 1)))
            px = [x + jitter for x, _ in pts]
            py = [y for _, y in pts]
            if len(pts) > 1:
                ax.plot(px, py, color="0.55", linewidth=0.8, zorder=3)
            label = "seeds" if j == 0 and s_i == 0 else "_nolegend_"
            ax.scatter(px, py, s=16, color="0.1", edgecolors="white", linewidths=0.5, zorder=4, label=label)
    ax.set_xticklabels([_wrap(str(m), 14) for m in metrics], fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"Per-seed scores ({len(seeds)} seed(s))", fontsize=11)
    ax.legend(**_LEGEND)
    return _save(fig, path)


def plot_paired(df: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Forest plot of paired differences: one row per comparison × brain set, the mean difference with its 95 % CI
    (over seeds) as a bar, each seed's difference as a point, and a line at 0 (no difference).

    Args:
        df: one row per comparison (columns ``layer``, ``brain_set``, ``diff``, ``ci95_low``, ``ci95_high``; an
            optional ``per_seed`` column of lists draws the points), e.g. the report's aligned − twin table.
        path: PNG file to write (parent folders are created).
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    check_columns(df, ("layer", "brain_set", "diff", "ci95_low", "ci95_high"), "paired-difference")
    if df.empty:
        raise DataError("paired-difference table is empty: nothing to plot")
    layers = _unique(df["layer"])
    fig = _new_figure(6.4, 0.9 + 0.32 * len(df) + 0.25 * len(layers))
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.xaxis.grid(True, color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    labels, y = [], 0.0
    for i, layer in enumerate(layers):
        colour, _ = _style(i)
        rows = df[df["layer"] == layer]
        for k, (_, r) in enumerate(rows.iterrows()):
            lo, hi, d = (float("nan") if r[c] is None else float(r[c]) for c in ("ci95_low", "ci95_high", "diff"))
            if math.isfinite(lo) and math.isfinite(hi):
                ax.hlines(y, lo, hi, colors=colour, linewidth=2.4, zorder=2)
            ax.scatter([d], [y], s=42, color=colour, edgecolors="white", linewidths=0.8, zorder=3,
                       label=_wrap(str(layer)) if k == 0 else "_nolegend_")  # fmt: skip
            seeds = r.get("per_seed") if "per_seed" in df.columns else None
            if isinstance(seeds, list | tuple | np.ndarray) and len(seeds):
                ax.scatter(np.asarray(seeds, dtype=float), np.full(len(seeds), y + 0.22), s=9, color="0.25",
                           linewidths=0, zorder=3, label="seeds" if i == 0 and k == 0 else "_nolegend_")  # fmt: skip
            labels.append((y, f"{r['brain_set']}"))
            y -= 1.0
        y -= 0.6
    ax.axvline(0.0, color="0.3", linewidth=1.0, zorder=1)
    ax.set_yticks([p for p, _ in labels], [lab for _, lab in labels], fontsize=9)
    ax.set_xlabel("difference (mean over seeds, 95 % CI)")
    ax.set_title(title or "Paired differences", fontsize=11)
    ax.legend(**_LEGEND)
    return _save(fig, path)


def partition_parts(columns: Iterable[Any]) -> list[str]:
    """The part columns of a partition table (``partition.csv``): ``unique:<space>`` first, then
    ``shared:<spaces>``, in table order — not their ``*_over_ceiling`` or ``n_negative:`` columns."""
    cols = [str(c) for c in columns if not str(c).endswith("_over_ceiling")]
    return [c for c in cols if c.startswith("unique:")] + [c for c in cols if c.startswith("shared:")]


def _partition_means(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str], int]:
    """Per-ROI mean over subjects of a partition table: (means indexed by ROI, the part columns — unique first,
    then shared — and the number of subjects)."""
    check_columns(df, ("roi", "joint"), "partition")
    if df.empty:
        raise DataError("partition table is empty: nothing to plot")
    parts = partition_parts(df.columns)
    if not parts:
        raise DataError(f"partition table has no unique:<space> / shared:<spaces> columns (it has {list(df.columns)})")
    negatives = [c for c in df.columns if c.startswith("n_negative:")]
    cols = parts + ["joint"] + [c for c in ("ceiling", "n_voxels") if c in df.columns]
    means = df.groupby("roi", sort=False)[cols].mean()
    per_row = df[negatives].sum(axis=1) if negatives else df["joint"] * 0  # per row: voxel × part estimates < 0
    means["n_negative"] = per_row.groupby(df["roi"], sort=False).mean()
    n_subjects = int(df["subject"].nunique()) if "subject" in df.columns else 1
    return means, parts, n_subjects


def plot_partition(df: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Stacked bars of a variance partition per ROI: the unique part of each space and the shared part(s) stacked to
    the joint model's held-out R² (a black tick), the noise ceiling (R²) as a dashed line.

    A part whose ROI mean is negative is drawn below 0, cross-hatched, so the stack's positive and negative parts add
    up to the joint R²; each ROI's label counts the negative per-voxel estimates (of voxels × parts; the mean over
    subjects).

    Args:
        df: partition table (``partition.csv``): one row per subject × ROI with ``roi``, ``joint``, the
            ``unique:<space>`` and ``shared:<spaces>`` columns and optionally ``ceiling``, ``n_voxels``,
            ``n_negative:<part>``; several subjects are averaged per ROI.
        path: PNG file to write (parent folders are created).
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    means, parts, n_subjects = _partition_means(df)
    rois = list(means.index)
    fig = _new_figure(2.6 + 0.75 * len(rois), 4.4)
    ax = fig.add_subplot()
    _tidy_axes(ax)
    x = np.arange(len(rois), dtype=float)
    up, down = np.zeros(len(rois)), np.zeros(len(rois))
    n_unique = sum(p.startswith("unique:") for p in parts)
    colours = [c for c in PALETTE if c != "#000000"]  # black is the joint tick
    for i, part in enumerate(parts):
        vals = np.nan_to_num(means[part].to_numpy(dtype=float))
        colour = colours[i % len(colours)]
        hatch = "" if i < n_unique else "//"
        neg = vals < 0
        ax.bar(x, np.where(neg, 0.0, vals), 0.6, bottom=up, color=colour, hatch=hatch, edgecolor="white",
               linewidth=0.6, label=_wrap(part), zorder=2)  # fmt: skip
        if neg.any():
            ax.bar(x, np.where(neg, vals, 0.0), 0.6, bottom=down, color=colour, hatch="xx", edgecolor="0.15",
                   linewidth=0.6, label="_nolegend_", zorder=2)  # fmt: skip
        up += np.where(neg, 0.0, vals)
        down += np.where(neg, vals, 0.0)
    ax.hlines(means["joint"], x - 0.38, x + 0.38, colors="black", linewidth=2.2, zorder=4, label="joint R²")
    if "ceiling" in means and np.isfinite(means["ceiling"]).any():
        ax.hlines(means["ceiling"], x - 0.45, x + 0.45, colors="0.1", linestyles=(0, (4, 2)), linewidth=1.4,
                  zorder=3, label="noise ceiling (R²)")  # fmt: skip
    if (down < 0).any():
        ax.bar([np.nan], [np.nan], color="white", hatch="xx", edgecolor="0.15", label="negative mean part (below 0)")
    top = _finite_max(up, means["joint"], means.get("ceiling", []))
    ax.set_ylim(min(float(down.min()), 0.0) * 1.15 - 1e-3, max(top, 0.0) * 1.1 + 1e-3)
    labels = []
    for roi in rois:  # "(40 vox; 12/80 neg.)": negative estimates of the voxels × parts (mean over subjects)
        n_vox = float(means.loc[roi, "n_voxels"]) if "n_voxels" in means else float("nan")
        neg = f"{means.loc[roi, 'n_negative']:.3g}"
        counts = f"{round(n_vox):,} vox; {neg}/{round(n_vox) * len(parts):,} neg." if math.isfinite(n_vox) else neg
        labels.append(_wrap(str(roi), 14) + f"\n({counts})")
    ax.set_xticks(x)
    rotate = len(rois) > 8
    ax.set_xticklabels(labels, rotation=30 if rotate else 0, ha="right" if rotate else "center", fontsize=8)
    ax.set_xlim(-0.6, len(rois) - 0.4)
    ax.set_ylabel("held-out R² (mean over the ROI's voxels)")
    scope = f"mean over {n_subjects} subjects" if n_subjects > 1 else "one subject"
    ax.set_title(title or f"Variance partition per ROI ({scope})", fontsize=11)
    ax.legend(**_LEGEND)
    return _save(fig, path)


#: ROIs / targets drawn by :func:`plot_layer_sweep` (the CSV holds them all)
MAX_SWEEP_PANELS = 24


def sweep_group_column(df: pd.DataFrame) -> str:
    """The group column of a layer-sweep table (``layer_sweep.csv``): ``roi`` (encoding) or ``target`` (RSA)."""
    for col in ("roi", "target"):
        if col in df.columns:
            return col
    raise DataError(f"layer-sweep table has neither a 'roi' nor a 'target' column (it has {list(df.columns)})")


def plot_layer_sweep(df: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """The layer curve of each ROI (or RDM target), one panel each: the validation score (dashed; what chooses)
    and the test score (solid) per layer in depth order, the chosen layer marked (a star on the test curve, a
    vertical line).

    Args:
        df: layer-sweep table (``layer_sweep.csv``): one row per ROI/target × layer with ``roi`` or ``target``,
            ``layer``, ``layer_index``, ``val_score``, ``test_score``, ``chosen``; optional ``kind`` (encoding / rsa)
            names the y axis. The first :data:`MAX_SWEEP_PANELS` groups are drawn.
        path: PNG file to write (parent folders are created).
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    group = sweep_group_column(df)
    check_columns(df, (group, "layer", "layer_index", "val_score", "test_score", "chosen"), "layer sweep")
    if df.empty:
        raise DataError("layer-sweep table is empty: nothing to plot")
    groups = _unique(df[group])
    shown = groups[:MAX_SWEEP_PANELS]
    n_col = min(4, len(shown))
    n_row = math.ceil(len(shown) / n_col)
    layers = list(df.sort_values("layer_index", kind="stable")["layer"].drop_duplicates())
    fig = _new_figure(1.0 + 3.1 * n_col, 0.6 + 2.5 * n_row, constrained=True)
    axes = fig.subplots(n_row, n_col, squeeze=False, sharex=True)
    x = np.arange(len(layers))
    for k, g in enumerate(shown):
        ax = axes[k // n_col][k % n_col]
        _tidy_axes(ax)
        rows = df[df[group] == g].set_index("layer").reindex(layers)
        ax.plot(x, rows["val_score"].to_numpy(dtype=float), "o--", color=PALETTE[1], markersize=4,
                label="validation (chooses)")  # fmt: skip
        ax.plot(x, rows["test_score"].to_numpy(dtype=float), "o-", color=PALETTE[0], markersize=4, label="test")
        chosen = np.flatnonzero(rows["chosen"].fillna(False).to_numpy(dtype=bool))
        if chosen.size:
            j = int(chosen[0])
            ax.axvline(j, color="0.55", linewidth=1.0, zorder=1)
            ax.plot([j], [float(rows["test_score"].iloc[j])], marker="*", markersize=13, color=PALETTE[3],
                    linestyle="none", zorder=4, label="chosen layer (test)")  # fmt: skip
        ax.set_title(_wrap(str(g), 30), fontsize=9)
        ax.set_xticks(x, [_wrap(str(lay), 12) for lay in layers], rotation=45 if len(layers) > 4 else 0,
                      ha="right" if len(layers) > 4 else "center", fontsize=7)  # fmt: skip
        ax.tick_params(axis="y", labelsize=7)
    for k in range(len(shown), n_row * n_col):
        axes[k // n_col][k % n_col].set_visible(False)
    kind = str(df["kind"].iloc[0]) if "kind" in df.columns else "encoding"
    fig.supylabel("RSA (mean over subjects)" if kind == "rsa" else "mean voxel r", fontsize=9)
    more = f"; {len(groups) - len(shown)} more in the CSV" if len(groups) > len(shown) else ""
    fig.suptitle(title or f"Layer sweep: layer chosen on validation images, test score of every layer{more}",
                 fontsize=10)  # fmt: skip
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False, fontsize=8)
    return _save(fig, path)
