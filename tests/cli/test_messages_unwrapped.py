"""Error messages are printed whole on one line at any terminal width and checkout path length (issue 14 item 5):
rich must not hard-wrap a path in the middle, or a test's expected text depends on where the clone lives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmvem.cli.app import app

runner = CliRunner()


def _where(tmp_path: Path, long: bool) -> Path:
    """A short working folder, or one whose path is longer than 150 characters (and holds a markup-like part)."""
    if not long:
        return tmp_path
    where = tmp_path / ("a" * 70) / ("[b]" + "b" * 70)
    where.mkdir(parents=True)
    assert len(str(where)) > 150
    return where


@pytest.mark.parametrize("columns", ["40", "200"])
@pytest.mark.parametrize("long", [False, True], ids=["short-path", "long-path"])
def test_error_messages_are_one_whole_line(
    tmp_path: Path, columns: str, long: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = _where(tmp_path, long)
    monkeypatch.chdir(where)
    cases = {
        f"error: config file not found: {where / 'nope.yaml'}": ["demo", "--config", str(where / "nope.yaml")],
        f"error: brain data {where / 'b.npz'}: not found": [
            "evaluate",
            "encoding",
            "-f",
            str(where / "x.npy"),
            "-b",
            str(where / "b.npz"),
        ],
        f"error: run directory {where / 'run'} does not exist": ["report", str(where / "run")],
    }
    for expected, args in cases.items():
        res = runner.invoke(app, args, env={"COLUMNS": columns, "LINES": "25"})
        assert res.exit_code == 2, res.output
        lines = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and lines[0].startswith(expected), res.output
        assert len(res.output.strip().splitlines()) == 1, res.output


@pytest.mark.parametrize("columns", ["40", "200"])
@pytest.mark.parametrize("long", [False, True], ids=["short-path", "long-path"])
def test_usage_errors_are_one_whole_line(tmp_path: Path, columns: str, long: bool) -> None:
    """click's own errors (unknown option, extra argument, bad integer, missing argument) are one line too, with
    the command's --help named, instead of typer's box wrapped at the terminal's width."""
    where = _where(tmp_path, long)
    cases = {
        f"error: Got unexpected extra argument(s) ({where / 'b'}) (see llmvem report --help)": [
            "report",
            str(where / "a"),
            str(where / "b"),
        ],
        "error: No such option: --fetures (Possible options: --features) (see llmvem evaluate encoding --help)": [
            "evaluate",
            "encoding",
            "--fetures",
            str(where / "x.npy"),
        ],
        "error: Invalid value for '--samples': ": ["describe", str(where), "--samples", "many"],
        "error: Missing argument 'run_dir'. (see llmvem report --help)": ["report"],
    }
    for expected, args in cases.items():
        res = runner.invoke(app, args, env={"COLUMNS": columns, "LINES": "25"})
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), res.output


def test_the_installed_command_prints_usage_errors_on_one_line(tmp_path: Path) -> None:
    where = _where(tmp_path, long=True)
    env = {**os.environ, "COLUMNS": "40", "TERM": "xterm-256color"}
    res = subprocess.run([sys.executable, "-m", "llmvem", "report", str(where / "a"), str(where / "b")],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [
        f"error: Got unexpected extra argument(s) ({where / 'b'}) (see llmvem report --help)"
    ]


@pytest.mark.parametrize("columns", ["40", "200"])
def test_tables_keep_their_words_whole(tmp_path: Path, columns: str) -> None:
    """`cache ls` and `datasets` at any width: no kind, key, date or dataset name is cut short or split, and the
    store's (long) path is a line of its own."""
    import numpy as np

    from llmvem.data.datasets import dataset_status
    from llmvem.store import ArtifactStore

    root = _where(tmp_path, long=True) / "store"
    entry_key = ArtifactStore(root).put_arrays("image_features", {"backbone": "x", "n": 1}, {"v": np.zeros(3)})
    env = {"COLUMNS": columns, "LINES": "25"}
    res = runner.invoke(app, ["cache", "ls", "--cache-dir", str(root)], env=env)
    assert res.exit_code == 0, res.output
    created = ArtifactStore(root).entries()[0].created
    assert f"artifact store {root}" in res.output.splitlines()
    for word in ("image_features", entry_key[:12], created, "backbone=x,"):
        assert word in res.output, (word, res.output)
    res = runner.invoke(app, ["datasets", "--data-dir", str(tmp_path)], env=env)
    assert res.exit_code == 0, res.output
    for row in dataset_status(tmp_path):
        assert row["name"] in res.output, (row["name"], res.output)
