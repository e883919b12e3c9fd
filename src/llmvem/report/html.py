"""A single self-contained HTML report: escaped tables, base64-embedded images, inline CSS, no external references."""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmvem.errors import DataError
from llmvem.report.section import Section
from llmvem.report.tables import ENCODING_COLUMNS, RSA_COLUMNS, best_rows, check_columns, format_cell
from llmvem.runs import check_run_finished

if TYPE_CHECKING:
    import pandas as pd

REPORT_NAME = "report.html"
RUN_FILES = (
    "config.yaml", "environment.json", "metrics.json", "encoding.csv", "partition.csv", "rsa.csv", "layer_sweep.csv",
    "decode.csv", "caption_metrics.csv", "roi_captions.csv", "visual_words.json",
)  # fmt: skip
_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
_CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #1d2125; background: #fff; max-width: 1150px; margin: 2rem auto; padding: 0 1.25rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #d8dde2; padding-bottom: 0.25rem; margin-top: 2.2rem; }
.meta, footer { color: #5f6b76; font-size: 0.85rem; }
nav ol { margin: 0.5rem 0 0; padding-left: 1.4rem; columns: 2; }
nav a { color: #0b5cad; text-decoration: none; }
.table-wrap { overflow-x: auto; margin: 0.8rem 0; }
table { border-collapse: collapse; font-size: 0.88rem; font-variant-numeric: tabular-nums; }
th, td { padding: 0.3rem 0.65rem; border-bottom: 1px solid #e3e7eb; text-align: left; vertical-align: top; }
th { background: #f3f5f7; border-bottom: 2px solid #c9d0d6; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num, th.num { text-align: right; }
tr.best td { font-weight: 600; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eceff2; }
figcaption { color: #5f6b76; font-size: 0.82rem; }
pre { background: #f6f8fa; border: 1px solid #e3e7eb; padding: 0.75rem; overflow-x: auto; font-size: 0.82rem; }
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def table_html(df: pd.DataFrame, highlight: Collection[int] = (), decimals: int = 3) -> str:
    """``df`` as an escaped HTML ``<table>`` (numeric columns right-aligned, ``highlight`` rows bold)."""
    import pandas as pd

    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    align = [' class="num"' if num else "" for num in numeric]
    head = "".join(f'<th{a} scope="col">{_esc(c)}</th>' for c, a in zip(df.columns, align, strict=True))
    rows = []
    for pos, row in enumerate(df.itertuples(index=False, name=None)):
        cells = "".join(f"<td{a}>{_esc(format_cell(v, decimals))}</td>" for v, a in zip(row, align, strict=True))
        rows.append(f'<tr class="best">{cells}</tr>' if pos in highlight else f"<tr>{cells}</tr>")
    body = "\n".join(rows)
    return f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>'


def image_data_uri(path: Path) -> str:
    """The file at ``path`` as a ``data:`` URI (base64)."""
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise DataError(f"cannot embed {path}: unsupported image type {path.suffix!r} (use one of {sorted(_MIME)})")
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot embed image {path}: {exc}") from exc
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _shown_name(file: Path, run_dir: Path) -> str:
    """A figure's caption: its path inside the run directory (``maps/subj01/desc/r.png``), else its name."""
    try:
        return file.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return file.name


def _section_html(index: int, section: Section, run_dir: Path) -> str:
    parts = [f'<section id="s{index}">', f"<h2>{_esc(section.title)}</h2>"]
    parts += [f"<p>{_esc(p)}</p>" for p in section.text]
    if section.table is not None:
        parts.append(table_html(section.table, section.highlight))
    for image in section.images:
        file = image if image.is_absolute() or not (run_dir / image).is_file() else run_dir / image
        if not file.is_file():
            raise DataError(f"section {section.title!r}: image {image} found neither in {run_dir} nor as given")
        parts.append(
            f'<figure><img src="{image_data_uri(file)}" alt="{_esc(file.stem)}">'
            f"<figcaption>{_esc(_shown_name(file, run_dir))}</figcaption></figure>"
        )
    if section.code is not None:
        parts.append(f"<pre>{_esc(section.code)}</pre>")
    parts.append("</section>")
    return "\n".join(parts)


def write_html_report(
    run_dir: str | Path, title: str, sections: Sequence[Section], filename: str = REPORT_NAME
) -> Path:
    """Write ``run_dir/filename``: one self-contained HTML page with the given sections; return its path.

    All text is HTML-escaped, images are embedded as base64 data URIs and the CSS is inline, so the file can be
    mailed or archived on its own.
    """
    from llmvem import __version__

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    toc = "".join(f'<li><a href="#s{i}">{_esc(s.title)}</a></li>' for i, s in enumerate(sections, 1))
    body = "\n".join(_section_html(i, s, run_dir) for i, s in enumerate(sections, 1))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="llmvem {_esc(__version__)}">
<title>{_esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{_esc(title)}</h1>
<p class="meta">Run directory <code>{_esc(run_dir.resolve())}</code> · generated {_esc(stamp)}</p>
{f"<nav><ol>{toc}</ol></nav>" if len(sections) > 1 else ""}
</header>
{body}
<footer><p>Generated by llmvem {_esc(__version__)}.</p></footer>
</body>
</html>
"""
    out = run_dir / filename
    out.write_text(page, encoding="utf-8")
    return out


# ----------------------------------------------------------------------------------------------- run directories
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}. Fix or delete the file and rebuild the report.") from exc


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot read {path}: {exc}. Fix or delete the file and rebuild the report.") from exc


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:
        return "null"
    return str(value)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested JSON as (dotted key, value) pairs; lists of scalars stay one value."""
    if isinstance(obj, dict):
        if not obj:
            return [(prefix, "{}")] if prefix else []
        return [kv for k, v in obj.items() for kv in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(obj, list) and any(isinstance(v, dict | list) for v in obj):
        return [kv for i, v in enumerate(obj) for kv in _flatten(v, f"{prefix}[{i}]")]
    if isinstance(obj, list):
        return [(prefix, "[" + ", ".join(_scalar(v) for v in obj) + "]")]
    return [(prefix or "value", _scalar(obj))]


def _json_section(title: str, path: Path, intro: str) -> Section:
    import pandas as pd

    pairs = _flatten(_read_json(path))
    table = pd.DataFrame(pairs, columns=["key", "value"]) if pairs else None
    return Section(title, [intro if pairs else f"{intro} ({path.name} is empty.)"], table=table)


def _figure(df: pd.DataFrame, png: Path, csv: Path, kind: str) -> Path:
    """``png`` for the table in ``csv``, drawn anew when missing or older than the CSV (RSA: with the per-subject
    points of ``rsa_subjects.csv`` beside it, when present)."""
    import pandas as pd

    from llmvem.report.plots import plot_encoding, plot_rsa

    if png.is_file() and png.stat().st_mtime >= csv.stat().st_mtime:
        return png
    if kind == "encoding":
        return plot_encoding(df, png)
    subjects_csv = csv.with_name("rsa_subjects.csv")
    return plot_rsa(df, png, subjects=pd.read_csv(subjects_csv) if subjects_csv.is_file() else None)


def _partition_section(csv: Path, run_dir: Path) -> Section:
    """The variance-partitioning section: ``partition.csv`` (its key columns), ``partition.png`` (drawn anew when
    missing or older than the CSV) and how to read them."""
    from llmvem.report.plots import partition_parts, plot_partition

    df = _read_csv(csv)
    check_columns(df, ("roi", "joint"), f"partition ({csv})")
    png = run_dir / "partition.png"
    if not png.is_file() or png.stat().st_mtime < csv.stat().st_mtime:
        plot_partition(df, png)
    parts = partition_parts(df.columns)
    spaces = [c.removeprefix("unique:") for c in parts if c.startswith("unique:")]
    shared = [c for c in parts if c.startswith("shared:")]  # two spaces: their one shared part is `shared`
    keep = [c for c in df.columns if c in ("subject", "roi", "n_voxels", "shared", "joint", "ceiling")
            or c.startswith(("unique:", "n_negative:")) or c.endswith("_over_ceiling")
            or (len(shared) > 1 and c in shared)]  # fmt: skip
    n_subj = df["subject"].nunique() if "subject" in df.columns else 1
    return Section(
        "Variance partitioning",
        [
            f"{len(spaces)} feature spaces ({', '.join(spaces)}) × {df['roi'].nunique()} ROI(s) × {n_subj} "
            "subject(s); every number is held-out R² averaged over the ROI's voxels (partition.csv has every part, "
            "the product-measure split and the per-voxel arrays are under partition/).",
            "How to read it: unique:<space> is the drop in held-out R² when that space is removed from the joint "
            "model, and shared is what the spaces both explain — either alone predicts it (R²(A) + R²(B) − R²(A+B) "
            "for two spaces) — so the unique and shared parts add up to joint; ceiling is the noise ceiling in the "
            "same R² units and *_over_ceiling divides by it. Negative estimates (n_negative:<part> voxels) are "
            "noise, not negative variance: a negative unique part means the model without that space predicted "
            "the held-out images better than the joint model, a negative shared part that the spaces predict more "
            "together than the sum of each alone; they are kept in the means, not clipped.",
            "Figure: per ROI the unique parts and the shared part(s) (hatched) stacked to the joint R² (black tick), "
            "negative means below 0 (cross-hatched), the noise ceiling dashed.",
        ],
        table=df[keep],
        images=[png],
    )


def _sweep_fraction(run_dir: Path) -> float | None:
    """The validation share a run's layer sweep chose on (``info.evaluations.layer_sweep.validation_fraction``);
    None when it chose on all training images or the run does not say."""
    try:
        info = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["info"]["evaluations"]
        share = info["layer_sweep"]["validation_fraction"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(share) if isinstance(share, int | float) else None


def _layer_sweep_section(csv: Path, run_dir: Path) -> Section:
    """The layer-sweep section: the choice per ROI / RDM target (``layer_sweep.csv``'s chosen rows, the whole curve
    in the CSV), ``layer_sweep.png`` (drawn anew when missing or older than the CSV) and how the layer was chosen."""
    from llmvem.report.plots import plot_layer_sweep, sweep_group_column

    df = _read_csv(csv)
    group = sweep_group_column(df)
    check_columns(df, (group, "layer", "layer_index", "val_score", "test_score", "chosen"), f"layer sweep ({csv})")
    png = run_dir / "layer_sweep.png"
    if not png.is_file() or png.stat().st_mtime < csv.stat().st_mtime:
        plot_layer_sweep(df, png)
    rsa = "kind" in df.columns and (df["kind"] == "rsa").any()
    layers = list(df.sort_values("layer_index", kind="stable")["layer"].drop_duplicates())
    chosen = df[df["chosen"].astype(bool)]
    keep = [c for c in (group, "layer", "layer_index", "n_subjects", "n_voxels", "val_score", "test_score", "n_chosen")
            if c in df.columns]  # fmt: skip
    score = ("the RSA of the layer's RDM with each subject's RDM, mean over subjects" if rsa
             else "the mean Pearson r of the ROI's voxels")  # fmt: skip
    share = _sweep_fraction(run_dir)
    where = "the training images" if rsa and share is None else "a validation split of the training images"
    validation = (
        ("the RDMs over all the training images (RSA fits nothing, so none leak)" if share is None else
         f"the RDMs over a seeded {share:g} share of the training images (RSA fits nothing: the other training "
         "images are not used)") if rsa
        else "a ridge fitted on the training images minus a seeded share of them, scored on that share"
    )  # fmt: skip
    return Section(
        "Layer sweep",
        [
            f"{len(layers)} layers of one model ({', '.join(map(str, layers[:12]))}{' …' if len(layers) > 12 else ''}) "
            f"× {df[group].nunique()} {'RDM target' if rsa else 'ROI'}(s). The layer of each {group} was chosen on "
            f"{where} — {validation} — never on the test images; test_score is then "
            "the held-out score of the chosen layer (refitted on all training images), the number to report. Score: "
            f"{score}.",
            "The table shows the chosen layer per row; layer_sweep.csv has the whole curve (every layer's validation "
            "and test score) and layer_sweep_subjects.csv each subject's. With several subjects the choice is by the "
            "mean validation score, n_chosen counts the subjects whose own choice it is. The test curve of the layers "
            "not chosen is descriptive: picking its maximum would choose on the test images.",
            "Figure: per ROI / target the validation score (dashed, chooses) and the test score (solid) per layer in "
            "depth order; the star and the vertical line mark the chosen layer.",
        ],
        table=chosen[keep].reset_index(drop=True),
        images=[png],
    )


def _paired_table(metrics: Any) -> pd.DataFrame | None:
    """One row per (comparison, brain set) of ``metrics["paired"]``, ``["paired_heads"]`` and
    ``["paired_pretrained"]`` (aligned − the untouched network), with each seed's difference (``per_seed``); None
    when absent."""
    rows = []
    if not isinstance(metrics, dict):
        return None
    if metrics.get("schema") == 2:  # a runner study: its paired evaluations (llmvem.results)
        from llmvem.report.tables import study_tables

        paired = study_tables(metrics)[1]
        if paired.empty:
            return None
        return paired.assign(brain_set=paired["name"] + " · " + paired["brain_set"]).drop(columns="name")
    untouched: dict[str, Any] = metrics.get("paired_pretrained") or {}
    if not isinstance(untouched, dict):
        untouched = {}
    blocks = [
        ("pooled", metrics.get("paired")),
        ("heads", metrics.get("paired_heads")),
        ("pooled − untouched", untouched.get("aligned")),
        ("head − untouched", untouched.get("aligned_head")),
    ]
    for layer, block in blocks:
        if not isinstance(block, dict):
            continue
        for brain_set, p in block.items():
            if not isinstance(p, dict) or "diff_mean" not in p:
                continue
            lo, hi = (p.get("ci95") or [float("nan"), float("nan")])[:2]
            rows.append({"layer": layer, "brain_set": brain_set, "diff": p["diff_mean"], "ci95_low": lo,
                         "ci95_high": hi, "p": p.get("p_paired_t_subjects"),
                         "ratio": p.get("ratio_aligned_over_twin"), "per_seed": p.get("per_seed")})  # fmt: skip
    if not rows:
        return None
    import pandas as pd

    return pd.DataFrame(rows)


def _caption_section(table: pd.DataFrame) -> Section:
    """The decoded captions scored against the human captions, beside the human ceiling."""
    impl = str(table["implementation"].iloc[0]) if "implementation" in table.columns and len(table) else "?"
    shown = table.drop(columns=[c for c in ("implementation",) if c in table.columns])
    return Section(
        "Decoded captions against human captions",
        [
            "Each test stimulus's decoded caption (the corpus caption nearest to the decoded embedding, never one of "
            "the stimulus's own when exclude_own is on) scored against its human captions. human_ceiling: each human "
            "caption scored against the stimulus's other captions, averaged over rounds; with references = "
            "leave-one-out the decoded caption is scored against the same leave-one-out sets, so both see equally "
            "many references. score_over_ceiling = score / human_ceiling.",
            f"Implementation: {impl}.",
        ],
        table=shown,
    )


def _roi_captions_section(table: pd.DataFrame) -> Section:
    """The three nearest corpus captions of each ROI's projected encoding direction (and its summary)."""
    shown = table[table["rank"] <= 3].drop(columns=[c for c in ("summary",) if c in table.columns and
                                                    not table[c].fillna("").astype(str).str.strip().any()])  # fmt: skip
    return Section(
        "Captions of each ROI",
        [
            "Each ROI's encoding direction (the held-out-r-weighted mean of its voxels' unit ridge weights in the "
            "text-embedding space) projected onto the caption corpus by a softmax over cosine similarities "
            "(BrainSCUBA) and read out as its nearest captions; score: cosine similarity of the projection and the "
            "caption; mean_r: the ROI's mean held-out encoding r. Per-voxel captions are in voxel_captions.jsonl.",
        ],
        table=shown,
    )


_PAIRED_INTRO = (
    "Difference of the mean per-subject RSA of the aligned model and its twin: diff is the mean over seeds, ci95 its "
    "95 % t interval over seeds, p the paired t-test over subjects (seed-averaged scores), ratio aligned / twin. "
    "pooled: the networks' pooled features; heads: their last layers (the aligned projection into the text space vs "
    "the twin's task logits); − untouched: the aligned model vs the pretrained network it started from (the λ = 0 "
    "twin of alignment-only training)."
)
_STUDY_PAIRED = (
    "a − b for each paired evaluation of the study (layer) and each pair and target (brain_set): diff is the mean "
    "over seeds of the mean difference, ci95 its 95 % t interval over seeds (none with one seed), p the paired t-test "
    "over subjects of the seed-averaged scores, ratio mean a / mean b."
)


def build_report(run_dir: str | Path, title: str | None = None) -> Path:
    """Write ``run_dir/report.html`` from what the run directory holds; return its path.

    Reads ``metrics.json``, ``encoding.csv``, ``partition.csv``, ``rsa.csv``, ``layer_sweep.csv``, any ``*.png``,
    ``config.yaml`` and ``environment.json``, whichever are present. ``encoding.png`` / ``partition.png`` /
    ``rsa.png`` / ``layer_sweep.png`` are drawn from the CSVs when missing or stale.

    Raises:
        DataError: ``run_dir`` does not exist, holds none of these files, or one of them cannot be read; or its run
            failed or has not finished (:func:`llmvem.runs.check_run_finished`).
    """
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise DataError(
            f"run directory {run_dir} does not exist or is not a directory; pass the folder a run wrote its results to"
        )
    check_run_finished(run_dir)
    have = {name: run_dir / name for name in RUN_FILES if (run_dir / name).is_file()}
    pngs = sorted(run_dir.glob("*.png"))
    if not have and not pngs:
        raise DataError(
            f"run directory {run_dir} holds none of {', '.join(RUN_FILES)} or any *.png: nothing to report. "
            "Is this the output folder of an llmvem run?"
        )

    sections: list[Section] = []
    drawn: set[str] = set()
    if "encoding.csv" in have:
        enc = _read_csv(have["encoding.csv"])
        check_columns(enc, ENCODING_COLUMNS, f"encoding ({have['encoding.csv']})")
        png = _figure(enc, run_dir / "encoding.png", have["encoding.csv"], "encoding")
        drawn.add(png.name)
        sections.append(
            Section(
                "Encoding",
                [
                    f"{enc['model'].nunique()} model(s) × {enc['roi'].nunique()} ROI(s). mean_r: mean Pearson r of "
                    "held-out predictions over the ROI's voxels; noise_ceiling_r: noise ceiling in r units; "
                    "mean_score: % of noise ceiling. Bold: best model per ROI (by mean_r).",
                    "Figure: bars are mean_r, dashed lines the noise ceiling of each ROI.",
                ],
                table=enc,
                images=[png],
                highlight=best_rows(enc, "roi", "mean_r"),
            )
        )
    if "partition.csv" in have:
        sections.append(_partition_section(have["partition.csv"], run_dir))
        drawn.add("partition.png")
    if "rsa.csv" in have:
        rsa = _read_csv(have["rsa.csv"])
        check_columns(rsa, RSA_COLUMNS, f"RSA ({have['rsa.csv']})")
        png = _figure(rsa, run_dir / "rsa.png", have["rsa.csv"], "rsa")
        drawn.add(png.name)
        sections.append(
            Section(
                "Representational similarity",
                [
                    f"{rsa['model'].nunique()} model(s) × {rsa['target'].nunique()} target RDM(s). mean ± sem across "
                    "subjects; noise_lower / noise_upper bound the noise ceiling. Bold: best model per target.",
                    "Figure: bars are the mean (± sem), grey bands the noise ceiling of each target.",
                ],
                table=rsa,
                images=[png],
                highlight=best_rows(rsa, "target", "mean"),
            )
        )
    if "layer_sweep.csv" in have:
        sections.append(_layer_sweep_section(have["layer_sweep.csv"], run_dir))
        drawn.add("layer_sweep.png")
    if "decode.csv" in have:
        dec = _read_csv(have["decode.csv"])
        png = run_dir / "decode.png"
        if png.is_file():
            drawn.add(png.name)
        sections.append(
            Section(
                "Decoding (brain → embedding)",
                [
                    f"{dec['subject'].nunique() if 'subject' in dec else len(dec)} brain source(s). "
                    "identification_accuracy: mean fraction of other test stimuli whose "
                    "embedding is less similar to the decoded one than the true embedding (chance 0.5); top1: "
                    "fraction identified first (chance top1_chance); mean_r: Pearson r of decoded and true "
                    "embeddings.",
                ],
                table=dec,
                images=[png] if png.is_file() else [],
            )
        )
    maps = [p for d in ("maps", "partition", "searchlight") for p in sorted(run_dir.glob(f"{d}/**/*.png"))]
    if maps:
        sections.append(
            Section(
                "Brain maps",
                [
                    f"{len(maps)} map(s) in each brain's own space: surfaces on fsaverage (inflated lateral, medial "
                    "and ventral views and flat maps of both hemispheres; a full-resolution fsaverage map is drawn on "
                    "fsaverage5 by taking its first 10,242 vertices per hemisphere, which are fsaverage5's), volumes "
                    "as axial slices and maximum-|value| projections of the subject's grid; outlines: the loaded "
                    "ROIs. The map files (NIfTI / .mgh) sit beside each picture.",
                ],
                images=maps,
            )
        )
    if "caption_metrics.csv" in have:
        sections.append(_caption_section(_read_csv(have["caption_metrics.csv"])))
    if "roi_captions.csv" in have:
        sections.append(_roi_captions_section(_read_csv(have["roi_captions.csv"])))
    metrics = _read_json(have["metrics.json"]) if "metrics.json" in have else None
    paired = _paired_table(metrics)
    if paired is not None:
        from llmvem.report.plots import plot_paired

        png = run_dir / "paired.png"
        if not png.is_file() or png.stat().st_mtime < have["metrics.json"].stat().st_mtime:
            plot_paired(paired, png, title="Paired differences per brain set (see the table below)")
        drawn.add(png.name)
        study = isinstance(metrics, dict) and metrics.get("schema") == 2
        sections.append(
            Section(
                "Paired differences" if study else "Aligned − twin (paired)",
                [_STUDY_PAIRED if study else _PAIRED_INTRO],
                table=paired.drop(columns="per_seed"),
                images=[png],
            )
        )
    if "visual_words.json" in have:
        from llmvem.report.words import visual_words_sections

        sections.extend(visual_words_sections(_read_json(have["visual_words.json"])))
    others = [p for p in pngs if p.name not in drawn]
    if others:
        sections.append(Section("Figures", [f"{len(others)} figure(s) found in the run directory."], images=others))
    if "metrics.json" in have:
        sections.append(_json_section("Metrics", have["metrics.json"], "Summary metrics of the run (metrics.json)."))
    if "config.yaml" in have:
        try:
            config = have["config.yaml"].read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {have['config.yaml']}: {exc}") from exc
        sections.append(Section("Configuration", ["Resolved configuration of the run (config.yaml)."], code=config))
    if "environment.json" in have:
        sections.append(
            _json_section(
                "Environment", have["environment.json"], "Package versions, seeds and platform (environment.json)."
            )
        )
    return write_html_report(run_dir, title or f"llmvem run: {run_dir.name}", sections)
