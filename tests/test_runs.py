"""Run directories record their outcome (issue 15: "failures leave half-empty run directories"): a failed or unfinished
run keeps its files, says why in run.json, and ``llmvem report`` / ``llmvem compare`` refuse it with that reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from llmvem.brain import memory
from llmvem.cli.app import app
from llmvem.config import ExperimentConfig
from llmvem.data.brain import BrainData
from llmvem.data.files import save_brain
from llmvem.errors import DataError
from llmvem.runs import STATUS_FILE, RunDir, check_run_finished, records_outcome

runner = CliRunner()
IDS = [f"s{k:03d}" for k in range(40)]


def _inputs(d: Path) -> list[str]:
    rng = np.random.default_rng(0)
    np.save(d / "f.npy", rng.standard_normal((40, 6)).astype(np.float32))
    (d / "f.ids.txt").write_text("\n".join(IDS) + "\n")
    save_brain(
        BrainData(rng.standard_normal((40, 12)), IDS, pd.DataFrame({"roi": ["V1"] * 12}), name="s1"), d / "b.npz"
    )
    return ["evaluate", "encoding", "-f", str(d / "f.npy"), "-b", str(d / "b.npz"), "--output-dir", str(d / "runs"),
            "--no-progress"]  # fmt: skip


def _only_run(d: Path) -> Path:
    runs = list((d / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_a_failed_run_is_recorded_and_refused_by_report_and_compare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory, "available_memory", lambda: 1000)  # the fit fails after the run directory exists
    res = runner.invoke(app, _inputs(tmp_path))
    assert res.exit_code == 2 and "needs ≈" in res.output, res.output
    run = _only_run(tmp_path)
    status = json.loads((run / STATUS_FILE).read_text())
    assert status["status"] == "failed" and status["error"]["type"] == "ResourceError"
    assert status["error"]["message"].startswith("RidgeEncoder.fit: needs ≈")
    assert (run / "config.yaml").is_file() and (run / "environment.json").is_file()  # what it wrote is kept
    rep = runner.invoke(app, ["report", str(run)], env={"COLUMNS": "60"})
    assert rep.exit_code == 2, rep.output
    assert rep.output.startswith(f"error: run {run} failed (ResourceError: RidgeEncoder.fit: needs ≈"), rep.output
    assert "partial outputs are kept there" in rep.output and len(rep.output.strip().splitlines()) == 1
    assert not (run / "report.html").exists()
    cmp = runner.invoke(app, ["compare", str(run), "-o", str(tmp_path / "cmp")])
    assert cmp.exit_code == 2 and f"run {run} failed (ResourceError" in " ".join(cmp.output.split()), cmp.output


def test_a_finished_run_is_complete_and_reported(tmp_path: Path) -> None:
    res = runner.invoke(app, _inputs(tmp_path))
    assert res.exit_code == 0, res.output
    run = _only_run(tmp_path)
    status = json.loads((run / STATUS_FILE).read_text())
    assert status["status"] == "complete" and status["finished"] >= status["started"]
    (run / "report.html").unlink()
    rep = runner.invoke(app, ["report", str(run)])
    assert rep.exit_code == 0 and (run / "report.html").is_file(), rep.output


def test_a_killed_run_is_refused_as_unfinished(tmp_path: Path) -> None:
    run = RunDir(ExperimentConfig(output_dir=tmp_path), tmp_path / "run")
    check_run_finished(run.path)  # this process's own running run: a pipeline building its report
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    status = json.loads((run.path / STATUS_FILE).read_text())
    status["pid"] = int(child.stdout)  # as if that process had made the run and been killed
    (run.path / STATUS_FILE).write_text(json.dumps(status))
    with pytest.raises(DataError, match=r"has not finished \(status 'running' since .*, which no longer exists\)"):
        check_run_finished(run.path)
    rep = runner.invoke(app, ["report", str(run.path)])
    assert rep.exit_code == 2 and "has not finished" in rep.output


def test_records_outcome_marks_every_run_it_made(tmp_path: Path) -> None:
    cfg = ExperimentConfig(output_dir=tmp_path)

    @records_outcome
    def pipeline(fail: BaseException | None) -> RunDir:
        run = RunDir(cfg)
        if fail is not None:
            raise fail
        return run

    ok = pipeline(None)
    assert json.loads((ok.path / STATUS_FILE).read_text())["status"] == "complete"
    with pytest.raises(KeyboardInterrupt):
        pipeline(KeyboardInterrupt())
    with pytest.raises(DataError):
        pipeline(DataError("x" * 2000))
    failed = sorted(p for p in tmp_path.iterdir() if p != ok.path)
    errors = [json.loads((p / STATUS_FILE).read_text())["error"] for p in failed]
    assert sorted(e["message"][:12] for e in errors) == ["interrupted", "x" * 12]
    long = next(e for e in errors if e["type"] == "DataError")
    assert len(long["message"]) < 600 and long["message"].endswith("… (2000 characters)")


def test_folders_without_a_status_are_still_reported(tmp_path: Path) -> None:
    """Run directories from before run.json, or written by hand, are not refused."""
    (tmp_path / "metrics.json").write_text(json.dumps({"a": 1.0}))
    check_run_finished(tmp_path)
    (tmp_path / STATUS_FILE).write_text("{not json")
    with pytest.raises(DataError, match="unreadable run status"):
        check_run_finished(tmp_path)


def test_credentials_in_the_command_line_are_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["llmvem", "demo", "--set", "describe.base_url=http://alice:pw-secret-5@host:8000/v1"]
    monkeypatch.setattr("sys.argv", argv)
    run = RunDir(ExperimentConfig(output_dir=tmp_path), tmp_path / "run")
    env = json.loads((run.path / "environment.json").read_text())
    assert env["argv"][-1] == "describe.base_url=http://***@host:8000/v1"
    assert not any(b"pw-secret" in p.read_bytes() for p in run.path.iterdir())
