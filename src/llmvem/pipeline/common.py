"""Pieces shared by the hand-written experiments: console output, stores, NSD description targets; the cached
twin and activations live in :mod:`llmvem.align.cache` (re-exported here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from llmvem.align.cache import cached_activations, cached_twin
from llmvem.brain.paired import ci95
from llmvem.runner.settings import (
    console_log,
    embed_kwargs,
    feature_kwargs,
    make_store,
    print_table,
    ridge_from_config,
)

__all__ = [
    "Log", "cached_activations", "cached_twin", "ci95", "console_log", "description_targets", "embed_kwargs",
    "feature_kwargs", "make_store", "print_table", "ridge_from_config",
]  # fmt: skip

Log = Callable[[str], None]


def description_targets(
    nsd: Any, models: str | list[str], prompts: str | list[str], emb_kw: dict[str, Any], ids: list[str] | None = None
) -> tuple[list[str], np.ndarray, list[str], str]:
    """Text-embedding targets of NSD images, averaged over describers and prompts.

    Each source's embeddings are unit length; with several sources the target is their mean, re-normalised (with
    one source: that source's embeddings).

    Args:
        nsd: the :class:`llmvem.data.nsd_shared1000.NSDShared1000` set.
        models, prompts: as in :meth:`~llmvem.data.nsd_shared1000.NSDShared1000.description_sets`.
        emb_kw: :func:`embed_kwargs` of the experiment.
        ids: keep only these images (in this order); default every image described by all sources.
    Returns:
        ``(ids, targets (n, d) float32, texts, what)``: ``texts`` the sources' texts joined per image (for
        bag-of-words targets), ``what`` a short label for logs such as ``"qwen2.5vl_7b/general_description"``.
    """
    from llmvem.text.embed import embed_text_sources

    sources, sets = nsd.description_sets(models, prompts)
    keep = [i for i in (ids if ids is not None else list(sets)) if i in sets]
    target = embed_text_sources([[sets[i][k] for i in keep] for k in range(len(sources))], **emb_kw)
    texts = ["\n\n".join(sets[i]) for i in keep]
    what = "/".join(sources[0]) if len(sources) == 1 else f"mean of {len(sources)} describer × prompt sources"
    return keep, np.asarray(target, dtype=np.float32), texts, what
