"""Pieces the old entry points share: console output and stores (:mod:`llmvem.runner.settings`), the cached twin
and activations (:mod:`llmvem.align.cache`), re-exported here."""

from __future__ import annotations

from collections.abc import Callable

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
    "Log", "cached_activations", "cached_twin", "ci95", "console_log", "embed_kwargs",
    "feature_kwargs", "make_store", "print_table", "ridge_from_config",
]  # fmt: skip

Log = Callable[[str], None]
