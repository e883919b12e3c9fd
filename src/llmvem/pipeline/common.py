"""Pieces shared by the experiments: console output, stores, cached twin training."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from llmvem.config import ExperimentConfig, TrainConfig
from llmvem.hashing import hash_array
from llmvem.store import ArtifactStore

Log = Callable[[str], None]


def make_store(cfg: ExperimentConfig) -> ArtifactStore:
    return ArtifactStore(cfg.cache_dir)


def console_log(enabled: bool = True) -> Log:
    """A ``log(message)`` that prints rich markup to stderr (or nothing)."""
    if not enabled:
        return lambda msg: None
    from rich.console import Console

    console = Console(stderr=True)
    return lambda msg: console.print(msg)


def print_table(table: Any) -> None:
    """Print a rich table to stdout, at least 120 columns wide when stdout is not a terminal (logs, CI)."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    console.print(table)


def cached_twin(
    store: ArtifactStore,
    features: np.ndarray,
    task_targets: np.ndarray | None,
    text_embeddings: np.ndarray | None,
    cfg: TrainConfig,
    lambda_align: float,
    seed: int,
    device: str,
    progress: bool,
    label: str,
) -> Any:
    """Train a twin, or load it from the store when the same inputs and settings were trained before."""
    from llmvem.align.twins import TwinResult, train_twin

    spec = {
        "features": hash_array(np.asarray(features, dtype=np.float32)),
        "task": hash_array(np.asarray(task_targets, dtype=np.float32)) if task_targets is not None else None,
        "text": hash_array(np.asarray(text_embeddings, dtype=np.float32))
        if text_embeddings is not None and lambda_align > 0
        else None,
        "train": cfg.model_dump(mode="json", exclude={"lambda_align"}),  # the λ actually used is below
        "lambda_align": float(lambda_align),
        "seed": seed,
        "code": "twin-v1",
    }
    key = store.key("twin", spec)
    if store.has("twin", key):
        arrays = store.get_arrays("twin", key)
        extra = store.get_extra("twin", key)
        state = {k[len("state.") :]: v for k, v in arrays.items() if k.startswith("state.")}
        return TwinResult(state, arrays["x_mean"], arrays["x_std"], extra.get("history", []), extra["config"])
    twin = train_twin(features, task_targets, text_embeddings, cfg, lambda_align, seed, device, progress, label)
    arrays = {f"state.{k}": v for k, v in twin.state.items()}
    arrays.update(x_mean=twin.x_mean, x_std=twin.x_std)
    store.put_arrays("twin", spec, arrays, extra={"config": twin.config, "history": twin.history})
    return twin
