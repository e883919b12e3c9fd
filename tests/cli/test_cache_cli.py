"""``llmvem cache``: the describe record logs (paid API output) are counted by ``ls`` and removed only by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.describe.run import LOG_DIR
from llmvem.store import RECORD_LOG_DIR, ArtifactStore

runner = CliRunner()


def _store_with_logs(root: Path) -> ArtifactStore:
    store = ArtifactStore(root)
    store.put_arrays("image_features", {"n": 1}, {"v": np.zeros(3)})
    logs = root / LOG_DIR
    logs.mkdir(parents=True)
    (logs / "aaaa1111.jsonl").write_text('{"key": "1"}\n{"key": "2"}\n')
    (logs / "bbbb2222.jsonl").write_text('{"key": "3"}\n')
    (root / "demo_sets" / "n10").mkdir(parents=True)
    return store


def test_clean_all_keeps_record_logs_and_ls_counts_them(tmp_path: Path) -> None:
    assert RECORD_LOG_DIR == LOG_DIR  # the store keeps the describe stage's record logs
    _store_with_logs(tmp_path)
    res = runner.invoke(app, ["cache", "ls", "--cache-dir", str(tmp_path)])
    out = " ".join(res.output.split())
    assert res.exit_code == 0 and "describe record logs: 2 (3 records" in out and "kept by `cache clean --all`" in out
    res = runner.invoke(app, ["cache", "clean", "--all", "--cache-dir", str(tmp_path)])
    out = " ".join(res.output.split())
    assert res.exit_code == 0 and "removed 1 entry" in out and "kept 2 describe record log(s)" in out
    assert sorted(p.name for p in (tmp_path / LOG_DIR).iterdir()) == ["aaaa1111.jsonl", "bbbb2222.jsonl"]
    assert not (tmp_path / "demo_sets").exists() and not ArtifactStore(tmp_path).entries()


def test_record_logs_are_removed_by_name(tmp_path: Path) -> None:
    _store_with_logs(tmp_path)
    res = runner.invoke(
        app, ["cache", "clean", "--kind", "descriptions", "--key", "aaaa", "--cache-dir", str(tmp_path)]
    )
    assert res.exit_code == 0 and "removed 1 describe record log" in res.output
    assert [p.name for p in (tmp_path / LOG_DIR).iterdir()] == ["bbbb2222.jsonl"]
    res = runner.invoke(app, ["cache", "clean", "--kind", "descriptions", "--cache-dir", str(tmp_path)])
    assert res.exit_code == 0 and not list((tmp_path / LOG_DIR).iterdir())
    assert len(ArtifactStore(tmp_path).entries()) == 1  # entries untouched


def test_help_says_what_all_keeps() -> None:
    res = runner.invoke(app, ["cache", "clean", "--help"])
    assert "--kind descriptions" in " ".join(res.output.split()) and "keeps them" in res.output
