"""Shared fixtures: offline Hugging Face, a private artifact store per test session, the real data directory, a
folder of small images."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]


def _real_data_dir() -> Path | None:
    env = os.environ.get("LLMVEM_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data directory (``$LLMVEM_DATA`` or ``../shared/data``); tests needing it skip when absent."""
    d = _real_data_dir()
    if d is None:
        pytest.skip("real data directory not found (set LLMVEM_DATA)")
    return d


@pytest.fixture(autouse=True, scope="session")
def _private_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["LLMVEM_CACHE"] = str(tmp_path_factory.mktemp("llmvem-cache"))


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    """``image_folder(n=4, size=16)``: ``tmp_path/imgs`` with ``n`` seeded random RGB PNGs ``img_0.png`` ...
    (``size`` × ``size`` pixels)."""

    def make(n: int = 4, size: int = 16) -> Path:
        from PIL import Image

        folder = tmp_path / "imgs"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"img_{i}.png")
        return folder

    return make
