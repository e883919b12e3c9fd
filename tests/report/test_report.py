"""Tests of llmvem.report: rich/Markdown tables, PNG figures, the self-contained HTML report and build_report."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from llmvem.errors import DataError
from llmvem.report import (
    Section,
    build_report,
    format_encoding_table,
    format_rsa_table,
    plot_encoding,
    plot_r_histograms,
    plot_rdms,
    plot_rsa,
    to_markdown,
    write_html_report,
)
from llmvem.report.plots import partition_parts, plot_partition, rank_percentiles

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert('x')</script> net"
MODELS = ["baseline: EfficientNet-Lite0", "aligned: EfficientNet-Lite0 + InfoNCE→MiniLM", EVIL]


@pytest.fixture
def encoding_df() -> pd.DataFrame:
    rows = []
    # ROIs interleaved on purpose: the rich table must group them.
    for roi, ceiling, r in [("V1", 0.6, (0.2, 0.3, 0.25)), ("LOC", np.nan, (0.15, 0.1, 0.05))]:
        for model, mean_r in zip(MODELS, r, strict=True):
            rows.append(
                {
                    "model": model,
                    "roi": roi,
                    "n_voxels": 100 if roi == "V1" else 250,
                    "mean_r": mean_r,
                    "median_r": mean_r - 0.01,
                    "noise_ceiling_r": ceiling,
                    "mean_score": 100 * mean_r**2 / ceiling**2,
                }
            )
    return pd.DataFrame(rows).iloc[[0, 3, 1, 4, 2, 5]].reset_index(drop=True)


@pytest.fixture
def rsa_df() -> pd.DataFrame:
    rows = []
    for target, lo, hi in [("cichy_it", 0.25, 0.34), ("cichy_evc", 0.3, 0.42)]:
        for k, model in enumerate(MODELS):
            rows.append(
                {
                    "model": model,
                    "target": target,
                    "n_subjects": 15,
                    "mean": 0.05 + 0.05 * k + (0.2 if target == "cichy_evc" and k == 0 else 0.0),
                    "sem": 0.02,
                    "noise_lower": lo,
                    "noise_upper": hi,
                    "method": "spearman",
                }
            )
    return pd.DataFrame(rows)


def _cells(table: object) -> list[list[str]]:
    columns = table.columns  # type: ignore[attr-defined]
    return [list(map(str, row)) for row in zip(*(c._cells for c in columns), strict=True)]


# ------------------------------------------------------------------------------------------------------ tables
def test_encoding_table_rows_cells_and_bold_best(encoding_df: pd.DataFrame) -> None:
    table = format_encoding_table(encoding_df)
    assert [c.header for c in table.columns] == [
        "ROI",
        "model",
        "voxels",
        "mean r",
        "median r",
        "ceiling r",
        "score (% NC)",
    ]
    assert table.row_count == 6
    cells = _cells(table)
    assert [row[0] for row in cells] == ["V1"] * 3 + ["LOC"] * 3  # grouped by ROI, in order of appearance
    assert cells[1] == ["V1", MODELS[1], "100", "0.300", "0.290", "0.600", "25.000"]
    assert cells[3][5] == "—"  # NaN noise ceiling
    bold = [i for i, row in enumerate(table.rows) if row.style == "bold"]
    assert bold == [1, 3]  # best mean_r in V1 (aligned) and LOC (baseline)
    assert table.rows[2].end_section and not table.rows[1].end_section


def test_rsa_table_mean_sem_and_best(rsa_df: pd.DataFrame) -> None:
    table = format_rsa_table(rsa_df)
    assert table.row_count == 6
    cells = _cells(table)
    assert cells[0] == ["cichy_it", MODELS[0], "15", "0.050 ± 0.020", "[0.250, 0.340]", "spearman"]
    bold = [i for i, row in enumerate(table.rows) if row.style == "bold"]
    assert bold == [2, 3]  # cichy_it: the last model; cichy_evc: the baseline


def test_tables_reject_missing_columns(encoding_df: pd.DataFrame, rsa_df: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="mean_r"):
        format_encoding_table(encoding_df.drop(columns="mean_r"))
    with pytest.raises(DataError, match="sem"):
        format_rsa_table(rsa_df.drop(columns="sem"))


def test_to_markdown_formats_aligns_and_escapes() -> None:
    df = pd.DataFrame({"model": ["a|b", "c\nd"], "n": [3, 12], "r": [0.12345, np.nan]})
    assert to_markdown(df).splitlines() == [
        "| model |   n |     r |",
        "| ----- | --: | ----: |",
        "| a\\|b  |   3 | 0.123 |",
        "| c d   |  12 |     — |",
    ]
    assert to_markdown(df, index=True).splitlines()[0].startswith("| index")
    assert to_markdown(pd.DataFrame()) == ""


# ------------------------------------------------------------------------------------------------------- plots
def _assert_png(path: Path, min_size: tuple[int, int] = (300, 200)) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_size[0] and image.height >= min_size[1]
        assert len(np.unique(np.asarray(image.convert("L")))) > 10  # not a blank canvas


def test_plot_encoding_and_rsa(tmp_path: Path, encoding_df: pd.DataFrame, rsa_df: pd.DataFrame) -> None:
    out = plot_encoding(encoding_df, tmp_path / "sub" / "encoding.png")
    assert out == tmp_path / "sub" / "encoding.png"
    _assert_png(out)
    _assert_png(plot_rsa(rsa_df, str(tmp_path / "rsa.png")))
    with pytest.raises(DataError, match="empty"):
        plot_rsa(rsa_df.iloc[:0], tmp_path / "empty.png")
    # per-subject points on the bars (seeds averaged per subject); a subject far above the bars raises the y-limit
    rows = [{"model": m, "target": t, "subject": f"s{k}", "seed": seed, "score": float(v) + 0.01 * k}
            for m, t, v in zip(rsa_df["model"], rsa_df["target"], rsa_df["mean"], strict=True)
            for k in range(5) for seed in (0, 1)]  # fmt: skip
    rows[0]["score"] = 0.95
    with_points = plot_rsa(rsa_df, tmp_path / "rsa_subjects.png", subjects=pd.DataFrame(rows))
    _assert_png(with_points)
    assert with_points.read_bytes() != (tmp_path / "rsa.png").read_bytes()
    with pytest.raises(DataError, match="per-subject RSA"):
        plot_rsa(rsa_df, tmp_path / "bad.png", subjects=pd.DataFrame(rows).drop(columns="subject"))


def test_plot_rdms_and_histograms(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(10, 4))
    rdm = np.linalg.norm(points[:, None] - points[None], axis=-1)
    rdms = {"model A": rdm, "a much longer model name that must be wrapped": rdm + rng.random(rdm.shape) * 0.1}
    _assert_png(plot_rdms(rdms, tmp_path / "rdms.png", stimulus_labels=[f"s{i}" for i in range(10)]))
    _assert_png(plot_r_histograms({m: rng.normal(0.1, 0.1, 500) for m in MODELS}, tmp_path / "hist.png"))
    with pytest.raises(DataError, match="square"):
        plot_rdms({"bad": np.zeros((3, 4))}, tmp_path / "bad.png")
    with pytest.raises(DataError, match="labels"):
        plot_rdms({"a": rdm}, tmp_path / "bad.png", stimulus_labels=["x"])
    with pytest.raises(DataError):
        plot_r_histograms({}, tmp_path / "none.png")


def test_rank_percentiles() -> None:
    rdm = np.array([[0.0, 1.0, 5.0], [1.0, 0.0, 2.0], [5.0, 2.0, 0.0]])
    pct = rank_percentiles(rdm)
    assert np.allclose(np.diag(pct), 0.0)
    assert np.allclose(pct, pct.T)
    assert pct[0, 1] == 0.0 and pct[1, 2] == 50.0 and pct[0, 2] == 100.0
    assert np.allclose(rank_percentiles(np.ones((3, 3)))[np.triu_indices(3, 1)], 50.0)  # ties share their rank
    asym = rank_percentiles(np.array([[0.0, 1.0], [3.0, 0.0]]))
    assert asym[0, 1] == 0.0 and asym[1, 0] == 100.0


# -------------------------------------------------------------------------------------------------------- html
def _assert_self_contained(page: str) -> None:
    refs = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page, flags=re.IGNORECASE)
    assert refs, "expected at least one embedded image"
    assert all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs]
    assert "url(" not in page and "@import" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()


def test_write_html_report_is_self_contained_and_escaped(tmp_path: Path, encoding_df: pd.DataFrame) -> None:
    image = plot_encoding(encoding_df, tmp_path / "enc.png")
    sections = [
        Section("Encoding <b>", ["one paragraph & more"], table=encoding_df, images=[Path("enc.png")], highlight={1}),
        Section("Config", code="model: <script>x</script>\n"),
    ]
    assert Section("t", "a single paragraph").text == ["a single paragraph"]  # type: ignore[arg-type]
    out = write_html_report(tmp_path, "Run <1>", sections)
    assert out == tmp_path / "report.html"
    page = out.read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; net" in page
    assert "Encoding &lt;b&gt;" in page and "one paragraph &amp; more" in page
    assert "<title>Run &lt;1&gt;</title>" in page
    for value in ("0.200", "0.300", "0.250", "0.600", "V1", "LOC", MODELS[1]):
        assert f">{value}<" in page
    assert page.count('<tr class="best">') == 1
    assert page.count("data:image/png;base64,") == 1
    assert image.is_file()
    with pytest.raises(DataError, match=r"missing\.png"):
        write_html_report(tmp_path, "x", [Section("s", images=[Path("missing.png")])])


def _make_run(run: Path, encoding_df: pd.DataFrame, rsa_df: pd.DataFrame) -> None:
    run.mkdir()
    encoding_df.to_csv(run / "encoding.csv", index=False)
    rsa_df.to_csv(run / "rsa.csv", index=False)
    (run / "config.yaml").write_text("vision:\n  backbone: efficientnet_lite0\nseed: 1234\nnote: a<b\n")
    (run / "metrics.json").write_text(json.dumps({"encoding": {"mean_r": 0.3141592}, "n_stimuli": 92}))
    (run / "environment.json").write_text(json.dumps({"packages": {"numpy": "2.1.0"}, "seeds": {"global": 1234}}))
    Image.new("RGB", (40, 30), (200, 30, 30)).save(run / "extra.png")


def test_build_report_from_run_dir(tmp_path: Path, encoding_df: pd.DataFrame, rsa_df: pd.DataFrame) -> None:
    run = tmp_path / "run1"
    _make_run(run, encoding_df, rsa_df)
    out = build_report(run)
    assert out == run.resolve() / "report.html"
    page = out.read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert (run / "encoding.png").is_file() and (run / "rsa.png").is_file()  # drawn from the CSVs
    assert page.count("data:image/png;base64,") == 3  # encoding, rsa, extra
    assert "<pre>vision:\n  backbone: efficientnet_lite0\nseed: 1234\nnote: a&lt;b\n</pre>" in page
    assert ">encoding.mean_r<" in page and ">0.314159<" in page and ">numpy 2.1.0<" not in page
    assert ">packages.numpy<" in page and ">2.1.0<" in page and ">seeds.global<" in page
    assert "0.050" in page and "cichy_evc" in page and "&lt;script&gt;" in page
    for title in ("Metrics", "Encoding", "Representational similarity", "Figures", "Configuration", "Environment"):
        assert f"<h2>{title}</h2>" in page


def test_build_report_keeps_fresh_png(tmp_path: Path, encoding_df: pd.DataFrame) -> None:
    run = tmp_path / "run"
    run.mkdir()
    encoding_df.to_csv(run / "encoding.csv", index=False)
    Image.new("RGB", (8, 8)).save(run / "encoding.png")
    before = (run / "encoding.png").read_bytes()
    stamp = (run / "encoding.csv").stat().st_mtime + 10
    os.utime(run / "encoding.png", (stamp, stamp))
    build_report(run)
    assert (run / "encoding.png").read_bytes() == before


def test_build_report_errors(tmp_path: Path, encoding_df: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="does not exist"):
        build_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="nothing to report"):
        build_report(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text("{not json")
    with pytest.raises(DataError, match=r"metrics\.json"):
        build_report(bad)
    cols = tmp_path / "cols"
    cols.mkdir()
    encoding_df.drop(columns="noise_ceiling_r").to_csv(cols / "encoding.csv", index=False)
    with pytest.raises(DataError, match="noise_ceiling_r"):
        build_report(cols)


def test_plot_training_curves_and_decoding(tmp_path: Path) -> None:
    from llmvem.errors import DataError
    from llmvem.report import plot_decoding, plot_training_curves

    epochs = np.arange(6)
    hist = {
        f"{cond} seed {s}": pd.DataFrame({"epoch": epochs, "lambda": 1.0, "lr": 1e-3,
                                          "train_total": np.exp(-epochs / (3 + s)),
                                          "val_label_accuracy": 0.5 + epochs / 20})
        for cond in ("aligned", "twin") for s in (0, 1)
    }  # fmt: skip
    png = plot_training_curves(hist, tmp_path / "curves.png")
    assert png.stat().st_size > 5000
    with pytest.raises(DataError, match="no metric columns"):
        plot_training_curves({"a": pd.DataFrame({"epoch": epochs, "lr": 1.0})}, tmp_path / "x.png")
    with pytest.raises(DataError, match="epoch"):
        plot_training_curves({"a": pd.DataFrame({"loss": epochs})}, tmp_path / "x.png")
    dec = pd.DataFrame({"subject": ["s1", "s2"], "identification_accuracy": [0.9, 0.7], "top1": [0.4, 0.2],
                        "top1_chance": [0.1, 0.1]})  # fmt: skip
    assert plot_decoding(dec, tmp_path / "dec.png").stat().st_size > 5000
    with pytest.raises(DataError, match="decoding"):
        plot_decoding(dec.drop(columns="top1"), tmp_path / "dec2.png")


def test_build_report_paired_section(tmp_path: Path) -> None:
    pair = {"diff_mean": 0.0312, "ci95": [0.0101, 0.0523], "per_seed": [0.02, 0.04], "p_paired_t_subjects": 0.0042,
            "ratio_aligned_over_twin": 1.19}  # fmt: skip
    metrics = {"paired": {"cichy_IT": {**pair, "diff_mean": -0.1124}}, "paired_heads": {"cichy_IT": pair},
               "paired_pretrained": {"aligned_head": {"cichy_IT": {**pair, "diff_mean": 0.1311}}}}  # fmt: skip
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    html = build_report(tmp_path).read_text()
    section = html[html.index("Aligned − twin (paired)") :]
    assert "-0.112" in section and "0.031" in section and "0.052" in section and "1.19" in section
    assert section.index("pooled") < section.index("heads") < section.index("0.131")
    # the forest plot of the same differences, with each seed's point
    _assert_png(tmp_path / "paired.png", min_size=(300, 150))
    assert section.count("data:image/png;base64") >= 1
    from llmvem.report import plot_paired

    one_seed = pd.DataFrame({"layer": ["pooled"], "brain_set": ["cichy_IT"], "diff": [0.01], "ci95_low": [None],
                             "ci95_high": [None], "per_seed": [[0.01]]})  # fmt: skip
    _assert_png(plot_paired(one_seed, tmp_path / "one_seed.png"), min_size=(200, 50))  # one seed: no interval
    with pytest.raises(DataError, match="paired-difference"):
        plot_paired(pd.DataFrame({"layer": ["pooled"], "diff": [0.1]}), tmp_path / "bad.png")
    # no paired blocks: no section
    (tmp_path / "metrics.json").write_text(json.dumps({"hed": {}}))
    assert "Aligned − twin (paired)" not in build_report(tmp_path).read_text()


def _partition_df() -> pd.DataFrame:
    """Two subjects × two ROIs of a 2-space partition; one negative ROI-mean part (language in V1)."""
    rows = []
    for subj, shift in (("s1", 0.0), ("s2", 0.02)):
        rows.append({"subject": subj, "roi": "V1", "n_voxels": 40, "unique:vision": 0.30 + shift,
                     "unique:language": -0.02, "shared:vision&language": 0.05, "shared": 0.05,
                     "joint": 0.33 + shift, "n_negative:unique:vision": 1, "n_negative:unique:language": 25,
                     "n_negative:shared:vision&language": 4, "ceiling": 0.5, "unique:vision_over_ceiling": 0.6,
                     "unique:language_over_ceiling": -0.04, "shared_over_ceiling": 0.1, "joint_over_ceiling": 0.66,
                     "ceiling_bound": "noise_ceiling_r2"})  # fmt: skip
        rows.append({**rows[-1], "roi": "FFA", "unique:vision": 0.1, "unique:language": 0.12 + shift,
                     "joint": 0.27 + shift, "n_negative:unique:language": 2})  # fmt: skip
    return pd.DataFrame(rows)


def test_plot_partition_stacks_parts_and_shows_negatives(tmp_path: Path) -> None:
    df = _partition_df()
    assert partition_parts(df.columns) == ["unique:vision", "unique:language", "shared:vision&language"]
    out = plot_partition(df, tmp_path / "p" / "partition.png")
    _assert_png(out)
    no_neg = df.assign(**{"unique:language": 0.01})
    other = plot_partition(no_neg, tmp_path / "no_neg.png")
    assert other.read_bytes() != out.read_bytes()  # the negative part is drawn (below 0), not dropped
    _assert_png(plot_partition(df.drop(columns=["ceiling", "subject", "n_voxels"]), tmp_path / "bare.png"))
    with pytest.raises(DataError, match="empty"):
        plot_partition(df.iloc[:0], tmp_path / "empty.png")
    with pytest.raises(DataError, match="no unique:<space>"):
        plot_partition(df[["roi", "joint"]], tmp_path / "none.png")


def test_build_report_partition_section(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _partition_df().to_csv(run / "partition.csv", index=False)
    page = build_report(run).read_text(encoding="utf-8")
    assert "<h2>Variance partitioning</h2>" in page and (run / "partition.png").is_file()  # drawn from the CSV
    assert "2 feature spaces (vision, language) × 2 ROI(s) × 2 subject(s)" in page
    assert "drop in held-out R² when that space is removed from the joint" in page
    assert "Negative estimates" in page and "not clipped" in page
    assert ">n_negative:unique:language<" in page and ">unique:vision_over_ceiling<" in page
    assert page.count("data:image/png;base64,") == 1  # the partition plot, not again under Figures
