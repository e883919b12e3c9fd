"""Embeddings from an experiment config: the texts of a file (or of the describe store), cleaned, embedded per
image with the ``embed`` section's encoder, policy and aggregation (``llmvem embed``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmvem.config import ExperimentConfig
    from llmvem.text.multi import TextEmbeddings


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
