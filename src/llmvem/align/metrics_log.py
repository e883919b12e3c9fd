"""A run's metrics log: ``metrics.csv`` (always) and TensorBoard scalars (optional): :class:`MetricsLog`.

``metrics.csv`` holds the checkpointed history, one row per epoch, rewritten after each checkpoint. TensorBoard
scalars (``<dir>/tb``; ``train_total`` → ``train/total``, ``lambda``, ``lr`` …; step = epoch) are written before
the checkpoint. A resumed run replaces the event files an interrupted run left with one new file that replays the
checkpointed history first, so every epoch appears exactly once. (TensorBoard's ``purge_step`` is not enough: event
files are read in file-name order, and two files written in the same second are ordered by a per-process counter
compared as text, "….10" before "….9".) Logging changes no weight: it is not part of a run's key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmvem.store import atomic_write_text


class MetricsLog:
    """The metrics of one run in ``directory``.

    Args:
        directory: the run's directory (``metrics.csv`` and ``tb/`` go there); ``None``: log nothing.
        tensorboard: also write TensorBoard scalars (when the ``tensorboard`` package is installed).
        csv: write ``metrics.csv``.
    """

    def __init__(self, directory: Path | None, tensorboard: bool = False, csv: bool = True) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.tensorboard, self.csv = tensorboard and directory is not None, csv and directory is not None
        self._writer: Any = None

    def open(self, history: list[dict[str, float]]) -> MetricsLog:
        """Start logging after the epochs of ``history`` (a resumed run's checkpointed history is replayed)."""
        if not self.tensorboard or self.directory is None:
            return self
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional at run time: metrics.csv is always written
            return self
        log_dir = self.directory / "tb"
        if log_dir.is_dir():
            for old in log_dir.glob("events.out.tfevents.*"):
                old.unlink()
        self._writer = SummaryWriter(log_dir=str(log_dir))
        for row in history:
            self._scalars(row)
        return self

    def epoch(self, row: dict[str, float]) -> None:
        """Log one epoch's metrics as scalars (before its checkpoint)."""
        if self._writer is not None:
            self._scalars(row)

    def commit(self, history: list[dict[str, float]]) -> None:
        """Rewrite ``metrics.csv`` with the checkpointed ``history`` (after the checkpoint)."""
        if not self.csv or self.directory is None:
            return
        cols = sorted({k for row in history for k in row}, key=lambda c: (c != "epoch", c))
        lines = [",".join(cols)] + [",".join(f"{row.get(c, '')}" for c in cols) for row in history]
        atomic_write_text(self.directory / "metrics.csv", "\n".join(lines) + "\n")

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scalars(self, row: dict[str, float]) -> None:
        epoch = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch":
                tag = key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else key
                self._writer.add_scalar(tag, float(value), global_step=epoch)
        self._writer.flush()
