"""Error messages are printed whole on one line at any terminal width and checkout path length (issue 14 item 5):
rich must not hard-wrap a path in the middle, or a test's expected text depends on where the clone lives."""

from __future__ import annotations

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
        f"error: matrix {where / 'x.npy'}: file not found": [
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
def test_usage_errors_are_soft_wrapped_like_the_cli_errors(
    tmp_path: Path, columns: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """typer/click's own usage errors, through the ``llmvem`` entry point: usage, where to find help and one whole
    ``error:`` line (typer's rich panel hard-wrapped them at the terminal width, cutting long paths)."""
    from llmvem.cli.app import main

    long = str(_where(tmp_path, long=True) / "run")
    cases = {
        ("report", "a", long): ("Usage: llmvem report", f"error: Got unexpected extra argument(s) ({long})"),
        ("demo", f"--bogus={long}"): ("Usage: llmvem demo [OPTIONS]", "error: No such option: --bogus"),
        ("report",): ("Usage: llmvem report", "error: Missing argument 'run_dir'."),
        ("nosuch", long): ("Usage: llmvem [OPTIONS] COMMAND", "error: No such command 'nosuch'."),
    }
    monkeypatch.setenv("COLUMNS", columns)
    for args, (usage, error) in cases.items():
        monkeypatch.setattr("sys.argv", ["llmvem", *args])
        with pytest.raises(SystemExit) as exit_:
            main()
        err = capsys.readouterr().err
        assert exit_.value.code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 3 and lines[0].startswith(usage) and lines[1].startswith("Try 'llmvem"), err
        assert lines[2] == error or (lines[2].startswith(error) and long in lines[2]), err
        assert "╭" not in err and "│" not in err


def test_the_entry_point_keeps_exit_codes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from llmvem.cli.app import main

    for args, code in ((["--help"], 0), (["report", "/nonexistent/run"], 2), ([], 2)):
        monkeypatch.setattr("sys.argv", ["llmvem", *args])
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == code, (args, capsys.readouterr())
    assert "error: run directory /nonexistent/run does not exist" in capsys.readouterr().err
