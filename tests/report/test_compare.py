"""Several runs side by side: the long table, the bars, the CLI and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.errors import DataError
from llmvem.report.compare import compare_runs, write_comparison


def _run(root: Path, name: str, head_it: float, with_ci: bool = True) -> Path:
    d = root / name
    d.mkdir(parents=True)
    pair = {"diff_mean": head_it - 0.145, "ci95": [0.01, 0.09] if with_ci else [None, None], "per_seed": [0.05],
            "p_paired_t_subjects": 0.002}  # fmt: skip
    metrics = {
        "rsa": {rep: {b: {"mean": v, "se": 0.02} for b in ("cichy_IT", "kriegeskorte_hIT")}
                for rep, v in (("aligned", 0.21), ("aligned_head", head_it), ("twin", 0.20))},
        "paired": {"cichy_IT": {**pair, "diff_mean": 0.01}}, "paired_heads": {"cichy_IT": pair},
        "paired_pretrained": {"aligned_head": {"cichy_IT": {**pair, "diff_mean": 0.12}}},
        "hed": {"aligned": {"mean_average_precision": 0.71}, "twin": {"mean_average_precision": 0.70}},
    }  # fmt: skip
    (d / "metrics.json").write_text(json.dumps(metrics))
    return d


def test_compare_runs_long_table_and_bars(tmp_path: Path) -> None:
    a, b = _run(tmp_path, "lam003", 0.205), _run(tmp_path, "lam01", 0.210, with_ci=False)
    t = compare_runs([a, b], labels=["λ=0.03", "λ=0.1"])
    assert list(t["run"].unique()) == ["λ=0.03", "λ=0.1"]
    head = t[(t["section"] == "rsa") & (t["name"] == "aligned_head") & (t["brain_set"] == "cichy_IT")]
    assert list(head["value"]) == [0.205, 0.210] and list(head["se"]) == [0.02, 0.02]
    heads = t[t["section"] == "aligned − twin, last layers"].set_index("run")
    assert heads.loc["λ=0.03", "value"] == pytest.approx(0.06) and heads.loc["λ=0.03", "ci95_high"] == 0.09
    assert pd.isna(heads.loc["λ=0.1", "ci95_low"])  # one seed: no interval
    assert set(t["section"]) == {"rsa", "aligned − twin, pooled", "aligned − twin, last layers",
                                 "aligned − untouched", "hed"}  # fmt: skip
    csv, png = write_comparison([a, b], tmp_path / "out")
    assert pd.read_csv(csv).shape == t.shape and png.stat().st_size > 5000
    with pytest.raises(DataError, match=r"no run has representation 'pif'; they have \['aligned', 'aligned_head'"):
        write_comparison([a, b], tmp_path / "out", representation="pif")


def test_compare_reads_the_flat_rsa_of_objects92_runs(tmp_path: Path) -> None:
    a = _run(tmp_path, "nsd", 0.2)
    flat = tmp_path / "objects92"
    flat.mkdir()
    rsa = {"efficientnet_lite0 | cichy_IT": {"mean": 0.087, "sem": 0.02, "noise_lower": 0.45},
           "minilm | cichy_IT": {"mean": 0.216, "sem": 0.026}}  # fmt: skip
    (flat / "metrics.json").write_text(json.dumps({"rsa": rsa}))
    t = compare_runs([a, flat])
    rows = t[t["run"] == "objects92"].set_index("name")
    assert rows.loc["minilm", "brain_set"] == "cichy_IT" and rows.loc["minilm", "value"] == 0.216
    assert rows.loc["efficientnet_lite0", "se"] == 0.02
    (flat / "metrics.json").write_text(json.dumps({"rsa": {"x": 3}}))
    with pytest.raises(DataError, match="unreadable RSA entry 'x'"):
        compare_runs([flat])


def test_compare_errors(tmp_path: Path) -> None:
    a = _run(tmp_path, "a", 0.2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no metrics\.json"):
        compare_runs([a, tmp_path / "empty"])
    (tmp_path / "empty" / "metrics.json").write_text(json.dumps({"encoding": {}}))
    with pytest.raises(DataError, match="no RSA results"):
        compare_runs([tmp_path / "empty"])
    with pytest.raises(DataError, match="distinct labels"):
        compare_runs([a, a])
    with pytest.raises(DataError, match="1 label"):
        compare_runs([a, a], labels=["x"])
    with pytest.raises(DataError, match="no run directory"):
        compare_runs([])


def test_compare_command(tmp_path: Path) -> None:
    a, b = _run(tmp_path, "a", 0.2), _run(tmp_path, "b", 0.22)
    runner = CliRunner()
    res = runner.invoke(app, ["compare", str(a), str(b), "--label", "first", "--label", "second", "-o",
                              str(tmp_path / "cmp")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert set(pd.read_csv(tmp_path / "cmp" / "compare.csv")["run"]) == {"first", "second"}
    res = runner.invoke(app, ["compare", str(a), str(tmp_path / "nowhere")])
    text = " ".join(res.output.split())
    assert res.exit_code != 0 and "no run directory" in text and "nowhere" in text and "Traceback" not in text


def test_compare_and_report_read_runner_studies(tmp_path: Path) -> None:
    """A runner study's metrics.json (schema 2, llmvem.results): its RSA rows and paired evaluations."""
    from llmvem.report import build_report
    from llmvem.results import ResultTable, to_nested

    t = ResultTable()
    for rep, v in (("descriptions", 0.216), ("nouns", 0.243)):
        t.add("rsa", rep, "cichy_it", {"mean": v, "sem": 0.02})
    t.add("vs_descriptions", "nouns - descriptions", "cichy_it", {"diff_mean": 0.027, "ci95_low": None,
          "ci95_high": None, "p_paired_t_subjects": 0.03, "ratio": 1.1})  # fmt: skip
    for seed, acc in ((0, 0.5), (1, 0.7)):  # held-out task scores per seed; compare shows their mean
        t.add("hed", "aligned", "hed", {"label_accuracy": acc}, seed=seed)
    t.add("hed", "aligned", "hed", {"label_accuracy": 0.6}, seed="mean")
    d = tmp_path / "study"
    d.mkdir()
    info = {"evaluations": {"rsa": {"kind": "rsa"}, "vs_descriptions": {"kind": "paired"},
                            "hed": {"kind": "heldout_task"}}}  # fmt: skip
    (d / "metrics.json").write_text(json.dumps({"schema": 2, "results": to_nested(t.frame()), "info": info}))
    table = compare_runs([d, _run(tmp_path, "nsd", 0.2)])
    rows = table[table["run"] == "study"]
    assert rows[rows["section"] == "rsa"].set_index("name").loc["nouns", "value"] == 0.243
    pair = rows[rows["section"] == "vs_descriptions"].iloc[0]
    assert pair["name"] == "nouns - descriptions" and pair["value"] == 0.027 and pair["p"] == 0.03
    hed = rows[rows["section"] == "hed"]
    assert list(zip(hed["name"], hed["brain_set"], hed["metric"], hed["value"], strict=True)) == [
        ("aligned", "hed", "label_accuracy", 0.6)
    ]
    html = build_report(d).read_text()
    assert "Paired differences" in html and "nouns - descriptions" in html and (d / "paired.png").is_file()
    (d / "metrics.json").write_text(json.dumps({"schema": 2, "results": {}, "info": {}}))
    with pytest.raises(DataError, match="has no results"):
        compare_runs([d])


def _folder_run(root: Path, name: str, it_r: float) -> Path:
    """A runner study without RSA (the folder study with a voxel task): encoding per ROI, retrieval, held-out."""
    from llmvem.results import ResultTable, to_nested

    t = ResultTable()
    for model, shift in (("aligned", 0.0), ("twin", -0.02)):
        for roi, r in (("IT", it_r), ("EVC", 0.1)):
            t.add("voxels", model, roi, {"mean_r": r + shift, "n_voxels": 40})
        t.add("retrieval", model, "descriptions", {"top1": 0.3 + shift})
    t.add("aligned_vs_twin", "aligned - twin", "IT", {"diff_mean": 0.02, "ci95_low": None, "ci95_high": None})
    d = root / name
    d.mkdir()
    info = {"evaluations": {"voxels": {"kind": "heldout_task"}, "retrieval": {"kind": "retrieval"},
                            "aligned_vs_twin": {"kind": "paired"}}}  # fmt: skip
    (d / "metrics.json").write_text(json.dumps({"schema": 2, "results": to_nested(t.frame()), "info": info}))
    return d


def test_compare_runs_without_rsa(tmp_path: Path) -> None:
    """Folder runs (no RSA) compare too: every evaluation's scores as rows, the bars show the first score per
    target of the representation asked for."""
    a, b = _folder_run(tmp_path, "lam0", 0.3), _folder_run(tmp_path, "lam1", 0.35)
    t = compare_runs([a, b])
    it = t[(t["section"] == "voxels") & (t["name"] == "aligned") & (t["brain_set"] == "IT")]
    assert list(zip(it["run"], it["metric"], it["value"], strict=True)) == [
        ("lam0", "mean_r", 0.3),
        ("lam0", "n_voxels", 40.0),
        ("lam1", "mean_r", 0.35),
        ("lam1", "n_voxels", 40.0),
    ]
    top1 = t[(t["section"] == "retrieval") & (t["name"] == "twin")].set_index("run")["value"]
    assert top1.to_dict() == pytest.approx({"lam0": 0.28, "lam1": 0.28})
    pair = t[t["section"] == "aligned_vs_twin"].iloc[0]
    assert pair["metric"] == "diff_mean" and pair["value"] == 0.02
    csv, png = write_comparison([a, b], tmp_path / "out", representation="aligned")
    assert pd.read_csv(csv).shape == t.shape and png.stat().st_size > 5000
    from llmvem.report.compare import _bars

    bars, what = _bars(t, "aligned")  # the encoding r per ROI, not the voxel count nor the first row
    assert what == "voxels mean_r per target" and list(bars["value"]) == [0.3, 0.1, 0.35, 0.1]
    with pytest.raises(DataError, match=r"no run has representation 'aligned_head'; they have \['aligned', 'twin'\]"):
        write_comparison([a, b], tmp_path / "out")
