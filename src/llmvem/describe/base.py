"""Descriptions of stimuli and the describer interface.

A :class:`Describer` turns one image (+ prompt) into text. Backends live in the ``DESCRIBERS`` registry; each is a
factory taking keyword options and returning a describer. Every description is stored with its provenance: image
content hash, backend, model, prompt text, generation parameters and sample index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from llmvem.errors import IdMismatchError
from llmvem.registry import Registry


@dataclass(frozen=True)
class ImageRequest:
    """One image to describe: its stimulus id, file, content hash and optional label."""

    id: str
    path: Path
    content_hash: str
    label: str | None = None


class Describer(Protocol):
    """Writes a description of one image."""

    backend: str
    model: str

    def identity(self) -> dict[str, Any]:
        """Everything about the describer that determines its output (backend, model, weights/revision ...)."""
        ...

    def describe(self, image: ImageRequest, prompt: str, params: Mapping[str, Any], sample: int) -> str:
        """The description of ``image`` for ``prompt`` (already resolved text)."""
        ...


DESCRIBERS: Registry[Any] = Registry("describer backend")


@dataclass(frozen=True)
class Description:
    """One stored description with its provenance."""

    image: str
    image_hash: str
    backend: str
    model: str
    prompt: str
    text: str
    params: dict[str, Any] = field(default_factory=dict)
    sample: int = 0
    seconds: float = 0.0


@dataclass
class Descriptions:
    """Descriptions of a stimulus set (possibly several per image: prompts, models, samples)."""

    records: list[Description]

    def __len__(self) -> int:
        return len(self.records)

    def to_frame(self) -> pd.DataFrame:
        """One row per description: image, model, prompt, text, backend, image_hash, sample, params, seconds."""
        rows = [asdict(r) for r in self.records]
        cols = ["image", "model", "prompt", "text", "backend", "image_hash", "sample", "params", "seconds"]
        return pd.DataFrame(rows, columns=cols)

    def texts_for(self, ids: Sequence[str], model: str | None = None, prompt: str | None = None) -> list[str]:
        """The first matching description of each id, in the order of ``ids``.

        Raises:
            IdMismatchError: naming the ids that have no matching description.
        """
        first: dict[str, str] = {}
        for r in self.records:
            if (model is None or r.model == model) and (prompt is None or r.prompt == prompt):
                first.setdefault(r.image, r.text)
        missing = [i for i in ids if i not in first]
        if missing:
            raise IdMismatchError(f"{len(missing)} stimulus id(s) have no description: {missing[:10]}")
        return [first[i] for i in ids]
