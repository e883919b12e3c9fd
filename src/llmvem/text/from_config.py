"""Embeddings from an experiment config: the texts of a file (or of the describe store), cleaned, embedded per
image with the ``embed`` section's encoder, policy and aggregation (``llmvem embed``).

>>> stats_notes({"n_texts": 9, "n_truncated": 2, "n_tokens_dropped": 40, "max_dropped": 30}, policy="truncate")
["2 of 9 texts were truncated to the encoder's window (40 tokens dropped, at most 30 of one text)"]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmvem.config import ExperimentConfig
    from llmvem.text.embeddings import TextEmbeddings


def embed_from_config(cfg: ExperimentConfig, texts: Path | None = None) -> TextEmbeddings:
    """Embed ``texts`` (JSONL/CSV with an image or id column and a text column; ``None``: every description in
    the artifact store), after the cleaning steps of ``describe.clean``.

    Returns:
        the embeddings, one row per image (``embed.aggregate="mean"``) or per text (``"all"``), with ``.stats``
        (texts truncated, tokens dropped, fallback words).
    """
    from llmvem.describe.clean import clean_steps, clean_text
    from llmvem.describe.imported import read_text_table
    from llmvem.store import ArtifactStore
    from llmvem.text.multi import embed_per_image, read_describe_store

    store = ArtifactStore(cfg.cache_dir)
    steps = clean_steps(cfg.describe.clean)
    if texts is None:
        table = read_describe_store(store, clean=steps)
    else:
        table = read_text_table(texts)
        if steps:
            table["text"] = [clean_text(str(t), steps) for t in table["text"]]
    e = cfg.embed
    return embed_per_image(
        table,
        model=e.select_model,
        prompt=e.select_prompt,
        aggregate=e.aggregate,
        encoder=e.encoder,
        normalize=e.normalize,
        policy=e.policy,
        batch_size=e.batch_size,
        device=cfg.device,
        store=store,
        progress=cfg.progress,
    )


@dataclass(frozen=True)
class SavedEmbeddings:
    """The files ``llmvem embed`` wrote, and what to tell about them."""

    npy: Path  #: the (n, D) float32 matrix
    ids: Path  #: its ids, one per row
    notes: list[str]  #: what happened to the texts (:func:`stats_notes`)
    summary: str  #: ``n × D embeddings (encoder, aggregate) → npy, ids``


def save_embeddings(cfg: ExperimentConfig, texts: Path | None, out: Path) -> SavedEmbeddings:
    """``llmvem embed``: :func:`embed_from_config`, written to ``out`` (.npy) and ``<out>.ids.txt``."""
    emb = embed_from_config(cfg, texts)
    npy, ids = emb.save(out)
    n, dim = emb.values.shape
    what = f"{cfg.embed.encoder}, {cfg.embed.aggregate}"
    return SavedEmbeddings(
        npy, ids, stats_notes(emb.stats, cfg.embed.policy), f"{n} × {dim} embeddings ({what}) → {npy}, {ids}"
    )


def stats_notes(stats: Mapping[str, int], policy: str) -> list[str]:
    """What an embedding call did to its texts that a user should hear of, one line each: texts truncated to the
    encoder's window (``policy="truncate"``), texts embedded as the fallback word (word-vector encoders)."""
    notes = []
    if stats.get("n_truncated") and policy == "truncate":
        dropped = f"{stats['n_tokens_dropped']} tokens dropped, at most {stats['max_dropped']} of one text"
        notes.append(
            f"{stats['n_truncated']} of {stats['n_texts']} texts were truncated to the encoder's window ({dropped})"
        )
    if stats.get("n_fallback"):
        notes.append(f"{stats['n_fallback']} texts had no word of the kind and were embedded as the fallback word")
    return notes
