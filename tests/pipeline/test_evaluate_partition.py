"""``llmvem evaluate encoding --partition``: planted unique / shared parts recovered from the CLI, the files it
writes, and bad input stopped before a run directory exists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.data.brain import BrainData
from llmvem.data.files import save_brain

runner = CliRunner()
N, V = 500, 20  # stimuli (a seeded 20 % hold-out: 100 test images), voxels per ROI
#: planted share of each ROI's variance: ROI → (from A, from B); the rest is noise
PLANTED = {"vision": (0.4, 0.0), "language": (0.0, 0.4), "both": (0.25, 0.25)}
#: stated tolerance of a recovered ROI mean (held-out R², 100 test images × 20 voxels, ridge shrinkage)
TOL = 0.06


def _save_matrix(path: Path, values: np.ndarray, ids: list[str]) -> Path:
    np.save(path, values.astype(np.float32))
    path.with_suffix(".ids.txt").write_text("\n".join(ids) + "\n")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two independent spaces A (8-d) and B (6-d), a copy of A in other coordinates, and a brain whose ROIs are
    driven by A only, B only or both (:data:`PLANTED`); its noise ceiling (R²) is the planted signal share."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("partition")
    a, b = rng.standard_normal((N, 8)), rng.standard_normal((N, 6))
    copy = a @ rng.standard_normal((8, 8))

    def signal(x: np.ndarray) -> np.ndarray:
        s = x @ rng.standard_normal((x.shape[1], V))
        return s / s.std(axis=0)

    blocks = [np.sqrt(fa) * signal(a) + np.sqrt(fb) * signal(b) + np.sqrt(1 - fa - fb) * rng.standard_normal((N, V))
              for fa, fb in PLANTED.values()]  # fmt: skip
    share = np.repeat([fa + fb for fa, fb in PLANTED.values()], V)
    ids = [f"img{k:03d}" for k in range(N)]
    brain = BrainData(np.concatenate(blocks, axis=1), ids, pd.DataFrame({"roi": np.repeat(list(PLANTED), V)}),
                      ncsnr=np.sqrt(share / (1 - share)), n_repeats=np.ones(N, dtype=int), name="sim")  # fmt: skip
    out = {"brain": save_brain(brain, root / "sim.npz"), "root": root}
    for name, x in (("a", a), ("b", b), ("copy", copy)):
        out[name] = _save_matrix(root / f"{name}.npy", x, ids)
    return out


def _invoke(args: list[str], out: Path) -> tuple[int, str]:
    res = runner.invoke(app, ["evaluate", "encoding", *args, "--output-dir", str(out), "--no-progress"])
    return res.exit_code, res.output


def _run(files: dict[str, Path], out: Path, *args: str) -> Path:
    code, output = _invoke(["-b", str(files["brain"]), *args], out)
    assert code == 0, output
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


@pytest.mark.filterwarnings("ignore:variance_partition. negative estimates")
def test_partition_recovers_planted_parts_of_independent_spaces(files: dict[str, Path], tmp_path: Path) -> None:
    run = _run(files, tmp_path / "runs", "-f", f"vision={files['a']}", "-f", f"language={files['b']}", "--partition")
    table = pd.read_csv(run / "partition.csv").set_index("roi")
    assert table.index.tolist() == list(PLANTED) and (table["subject"] == "sim").all()
    for roi, (fa, fb) in PLANTED.items():
        row = table.loc[roi]
        assert abs(row["unique:vision"] - fa) < TOL, (roi, row["unique:vision"])
        assert abs(row["unique:language"] - fb) < TOL, (roi, row["unique:language"])
        assert abs(row["shared"]) < TOL, (roi, row["shared"])  # independent spaces share nothing
        assert row["unique:vision"] + row["unique:language"] + row["shared"] == pytest.approx(row["joint"])
        assert row["ceiling"] == pytest.approx(fa + fb)  # the noise ceiling in R², as planted
        assert row["joint_over_ceiling"] == pytest.approx(row["joint"] / row["ceiling"])
        assert row["unique:vision_over_ceiling"] == pytest.approx(row["unique:vision"] / row["ceiling"])
        assert row["ceiling_bound"] == "noise_ceiling_r2"
    # the space that does not drive a ROI has about half its voxel estimates negative: counted, not hidden
    assert 0 < table.loc["vision", "n_negative:unique:language"] < V
    # per-voxel arrays: listed in metrics.json, and the table's means are their ROI means
    metrics = json.loads((run / "metrics.json").read_text())
    info = metrics["info"]["evaluations"]["partition"]
    files_of = info["arrays"]["sim"]
    assert {"unique:vision", "unique:language", "shared:vision&language", "r2:vision+language"} <= set(files_of)
    unique_v = np.load(run / files_of["unique:vision"])
    assert unique_v.shape == (3 * V,)
    assert float(unique_v[V : 2 * V].mean()) == pytest.approx(table.loc["language", "unique:vision"], abs=1e-6)
    assert metrics["results"]["partition"]["vision + language"]["both"]["subjects"]["sim"]["joint"] == pytest.approx(
        table.loc["both", "joint"]
    )
    assert info["maps"] == {}  # a .npz saved without a space: no maps, and no error
    assert (run / "partition.png").stat().st_size > 5000
    html = (run / "report.html").read_text()
    assert "Variance partitioning" in html and "drop in held-out R² when that space is removed" in html
    assert "encoding.csv" in {p.name for p in run.iterdir()}  # the encoding itself still runs


@pytest.mark.filterwarnings("ignore:variance_partition. negative estimates")
def test_partition_by_config_key_three_spaces_duplicated_space_is_shared(
    files: dict[str, Path], tmp_path: Path
) -> None:
    run = _run(files, tmp_path / "runs", "-f", f"vision={files['a']}", "-f", f"language={files['b']}",
               "-f", f"copy={files['copy']}", "-b", str(files["brain"]),
               "--set", "evaluate.encoding.partition=true")  # fmt: skip
    both = pd.read_csv(run / "partition.csv")
    # two brain sources (here the same file twice: 'sim' and 'sim-2'): a row per source × ROI, the same numbers
    assert both["subject"].tolist() == ["sim"] * 3 + ["sim-2"] * 3
    numeric = both.select_dtypes("number")
    np.testing.assert_allclose(numeric.iloc[:3].to_numpy(), numeric.iloc[3:].to_numpy(), rtol=1e-6)
    assert set(json.loads((run / "metrics.json").read_text())["info"]["evaluations"]["partition"]["arrays"]) == {
        "sim",
        "sim-2",
    }
    table = both[both["subject"] == "sim"].set_index("roi")
    parts = {"unique:vision", "unique:language", "unique:copy", "shared:vision&language", "shared:vision&copy",
             "shared:language&copy", "shared:vision&language&copy"}  # fmt: skip
    assert parts <= set(table.columns)
    for roi, (fa, fb) in PLANTED.items():
        row = table.loc[roi]
        # A and its copy span one space: what A explains is all shared between them, nothing unique to either
        assert abs(row["shared:vision&copy"] - fa) < TOL, (roi, row["shared:vision&copy"])
        assert abs(row["unique:vision"]) < 0.02 and abs(row["unique:copy"]) < 0.02, row
        assert abs(row["unique:language"] - fb) < TOL, (roi, row["unique:language"])
        assert row[sorted(parts)].sum() == pytest.approx(row["joint"])
    assert (run / "partition.png").is_file()
    assert ">shared:vision&amp;copy<" in (run / "report.html").read_text()  # 3 spaces: each shared part shown


def test_partition_bad_input_exits_2_naming_the_space(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "runs"
    brain = ["-b", str(files["brain"])]
    a, b = f"vision={files['a']}", f"language={files['b']}"
    ids = files["a"].with_suffix(".ids.txt").read_text().split()
    cases: list[tuple[list[str], str]] = [
        (["-f", a, "--partition"], "encoding.partition needs 2–3 feature spaces"),
        (["-f", a, "-f", b, "-f", f"c={files['copy']}", "-f", f"d={files['a']}", "--partition"],
         "2–3 feature spaces in inputs.features (--features NAME=path.npy, one per space), got 4"),
    ]  # fmt: skip
    one = _save_matrix(tmp_path / "one.npy", np.load(files["a"])[:, :1], ids)
    cases.append((["-f", a, "-f", f"word={one}", "--partition"], "space 'word' has 1 column(s)"))
    nan = np.load(files["b"])
    nan[7] = np.nan
    cases.append((["-f", a, "-f", f"language={_save_matrix(tmp_path / 'nan.npy', nan, ids)}", "--partition"],
                  "1 row(s) hold NaN/inf, e.g. stimulus 'img007'"))  # fmt: skip
    other = [f"other{k:03d}" for k in range(100)] + ids[100:]  # another stimulus set, partly overlapping
    diff = _save_matrix(tmp_path / "diff.npy", np.load(files["b"]), other)
    cases.append((["-f", a, "-f", f"language={diff}", "--partition"], "100 of 500 brain 'sim' id(s) have no "
                  "features 'language'"))  # fmt: skip
    cases.append((["-f", a, "-f", f"vision={files['b']}", "--partition"], "feature names ['vision', 'vision'] repeat"))
    for args, message in cases:
        code, output = _invoke([*brain, *args], out)
        assert code == 2, (args, output)
        assert message in output, (args, output)
        assert len(output.strip().splitlines()) <= 2, output  # one line (config errors: a header and the key)
    assert not out.exists() or not any(out.iterdir())  # nothing written
