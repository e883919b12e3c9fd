"""``llmvem embed``: several captions per image, selection, aggregation, controls, and reading the describe store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.store import ArtifactStore
from llmvem.text import embed_texts

runner = CliRunner()
ROWS = [
    {"image": "img_a.jpg", "model": "coco", "text": "A dog on a sofa."},
    {"image": "img_a.jpg", "model": "coco", "text": "A brown dog resting."},
    {"image": "img_b.jpg", "model": "coco", "text": "A red bus in the street."},
    {"image": "img_b.jpg", "model": "vlm", "text": "A long red double-decker bus drives down a city street."},
]


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _embed(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["embed", *args, "--no-progress"])
    return res.exit_code, res.output


def test_mean_all_and_select(tmp_path: Path) -> None:
    src = _write(tmp_path / "caps.jsonl", ROWS)
    cache = str(tmp_path / "c")
    code, out = _embed(str(src), "--select-model", "coco", "-o", str(tmp_path / "m.npy"), "--cache-dir", cache)
    assert code == 0, out
    m = np.load(tmp_path / "m.npy")
    assert m.shape == (2, 384) and (tmp_path / "m.ids.txt").read_text().split() == ["img_a", "img_b"]
    rows = embed_texts([r["text"] for r in ROWS[:2]], store=ArtifactStore(cache), progress=False)
    np.testing.assert_allclose(m[0], rows.mean(0) / np.linalg.norm(rows.mean(0)), atol=1e-5)

    code, out = _embed(str(src), "--aggregate", "all", "-o", str(tmp_path / "all.npy"), "--cache-dir", cache)
    assert code == 0 and np.load(tmp_path / "all.npy").shape == (4, 384)
    assert (tmp_path / "all.ids.txt").read_text().split() == ["img_a", "img_a", "img_b", "img_b"]

    code, out = _embed(str(src), "--select-model", "gpt", "--cache-dir", cache, "-o", str(tmp_path / "x.npy"))
    assert code == 2 and "no text has model ['gpt']" in out


def test_controls_and_truncation_report(tmp_path: Path) -> None:
    src = _write(tmp_path / "caps.jsonl", ROWS)
    cache = str(tmp_path / "c")
    code, out = _embed(str(src), "--encoder", "glove-adverbs", "--aggregate", "all", "-o", str(tmp_path / "adv.npy"),
                       "--cache-dir", cache, "--no-normalize")  # fmt: skip
    assert code == 0, out
    assert np.load(tmp_path / "adv.npy").shape == (4, 50) and "4 texts had no word of the kind" in out
    long = [{"image": "x", "text": "A dog. " * 200}]
    code, out = _embed(str(_write(tmp_path / "long.jsonl", long)), "--policy", "truncate", "--cache-dir", cache,
                       "-o", str(tmp_path / "t.npy"))  # fmt: skip
    assert code == 0 and "1 of 1 texts were truncated" in out and "tokens dropped" in out


def test_from_the_describe_store(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    (cache / "descriptions").mkdir(parents=True)
    recs = [  # records as describe_stimuli writes them: the image is the stimulus id
        {"key": str(k), **r, "image": Path(r["image"]).stem, "prompt": "caption", "sample": 0}
        for k, r in enumerate(ROWS)
    ]
    _write(cache / "descriptions" / "job.jsonl", recs)
    code, out = _embed("--select-model", "vlm", "--cache-dir", str(cache), "-o", str(tmp_path / "s.npy"))
    assert code == 0, out
    assert np.load(tmp_path / "s.npy").shape == (1, 384) and (tmp_path / "s.ids.txt").read_text().split() == ["img_b"]
    code, out = _embed("--cache-dir", str(tmp_path / "empty"), "-o", str(tmp_path / "e.npy"))
    assert code == 2 and "no descriptions in the store" in out
