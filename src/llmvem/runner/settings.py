"""The study settings (an :class:`~llmvem.config.ExperimentConfig`) as the stages' keyword arguments, the run's
store and console."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmvem.config import ExperimentConfig
from llmvem.store import ArtifactStore

Log = Callable[[str], None]


def make_store(cfg: ExperimentConfig) -> ArtifactStore:
    return ArtifactStore(cfg.cache_dir)


def console_log(enabled: bool = True) -> Log:
    """A ``log(message)`` that prints rich markup to stderr (or nothing)."""
    if not enabled:
        return lambda msg: None
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # never hard-wrapped: paths in messages stay whole
    return lambda msg: console.print(msg)


def embed_kwargs(cfg: ExperimentConfig, store: ArtifactStore) -> dict[str, Any]:
    """Keyword arguments of :func:`llmvem.text.embed_texts` from the config's ``embed`` section."""
    e = cfg.embed
    return dict(encoder=e.encoder, normalize=e.normalize, policy=e.policy, batch_size=e.batch_size,
                device=cfg.device, store=store, progress=cfg.progress)  # fmt: skip


def feature_kwargs(cfg: ExperimentConfig, store: ArtifactStore) -> dict[str, Any]:
    """Keyword arguments of :func:`llmvem.vision.extract_features` from the config's ``features`` section."""
    f = cfg.features
    return dict(backbone=f.backbone, batch_size=f.batch_size, device=cfg.device, store=store, progress=cfg.progress)


def ridge_from_config(cfg: ExperimentConfig) -> Any:
    """An unfitted :class:`llmvem.brain.RidgeEncoder` with the config's ``evaluate.encoding`` settings."""
    from llmvem.brain import RidgeEncoder

    enc = cfg.evaluate.encoding
    return RidgeEncoder(
        alphas=tuple(enc.alphas), cv=enc.cv, backend=enc.ridge_backend, dtype=enc.ridge_dtype,
        fractions=tuple(enc.fractions),
    )  # fmt: skip


def print_table(table: Any) -> None:
    """Print a rich table to stdout, at least 120 columns wide when stdout is not a terminal (logs, CI)."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    console.print(table)
