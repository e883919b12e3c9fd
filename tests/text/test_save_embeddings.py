"""``save_embeddings`` / ``stats_notes``: the work of ``llmvem embed`` and what it tells."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llmvem.config import load_config
from llmvem.text.from_config import save_embeddings, stats_notes


def test_save_embeddings_writes_one_row_per_image_and_says_so(tmp_path: Path) -> None:
    texts = tmp_path / "t.jsonl"
    rows = [("a", "a red apple"), ("a", "an apple on a table"), ("b", "a bus")]
    texts.write_text("".join(json.dumps({"image": i, "text": t}) + "\n" for i, t in rows))
    cfg = load_config(overrides={"cache_dir": str(tmp_path / "store"), "progress": False})
    saved = save_embeddings(cfg, texts, tmp_path / "e.npy")
    x = np.load(saved.npy)
    assert x.shape == (2, 384) and saved.ids.read_text().split() == ["a", "b"]
    assert saved.summary == f"2 × 384 embeddings (minilm, mean) → {saved.npy}, {saved.ids}" and saved.notes == []


def test_stats_notes() -> None:
    assert stats_notes({"n_texts": 4, "n_truncated": 0}, "truncate") == []
    assert stats_notes({"n_texts": 4, "n_truncated": 1, "n_tokens_dropped": 5, "max_dropped": 5}, "chunk") == []
    assert stats_notes({"n_texts": 4, "n_fallback": 2}, "chunk") == [
        "2 texts had no word of the kind and were embedded as the fallback word"
    ]
