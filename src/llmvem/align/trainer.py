"""The training loop, cut at the step, epoch and evaluation seams (as open_clip's trainer and Lightning).

A :class:`TrainingPlan` says what one run trains: its model and optimizer, the batches of an epoch, the loss of a
batch (a dict of parts with ``"total"``), the learning rate of a step, and an evaluation. :func:`fit` runs the
epochs of a plan from a :class:`TrainState`, with the small parts kept apart: :func:`stop_if_diverged` (the NaN
stop), :class:`EarlyStopping`, a :class:`~llmvem.align.checkpoint.Checkpointer` and a
:class:`~llmvem.align.metrics_log.MetricsLog`. The fine-tune (:mod:`llmvem.align.finetune_plan`) and the twin
(:mod:`llmvem.align.twins`) are two plans of this one loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from llmvem.align.checkpoint import Checkpointer
from llmvem.align.metrics_log import MetricsLog
from llmvem.errors import LlmvemError


class TrainingDivergedError(LlmvemError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainState:
    """Where a run stands: what a checkpoint's ``state.json`` records beside the weights, optimizer and RNG.

    Attributes:
        run_key: the run's key (:meth:`~llmvem.align.spec.TrainSpec.key`).
        epoch: the last finished epoch (−1: none yet).
        step: optimizer steps taken.
        history: one row of metrics per finished epoch.
        best_loss, best_epoch: the lowest validation loss (else training loss) and its epoch.
    """

    run_key: str
    epoch: int = -1
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = -1

    def record(self, row: dict[str, float]) -> None:
        """Append a finished epoch's ``row`` (its loss: ``val_total``, else ``train_total``)."""
        self.epoch = int(row["epoch"])
        self.history.append(row)
        loss = row.get("val_total", row.get("train_total", math.inf))
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, self.epoch

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrainState:
        return cls(d["run_key"], d["epoch"], d["step"], d["history"], d["best_loss"], d["best_epoch"])


class TrainingPlan(Protocol):
    """What :func:`fit` trains. ``model`` (a torch module, its ``state_dict`` checkpointed), ``optimizer``,
    ``epochs``, ``grad_accum`` (batches per optimizer step) and ``label`` (for messages and progress)."""

    model: Any
    optimizer: Any
    epochs: int
    grad_accum: int
    label: str

    def batches(self, epoch: int) -> Iterable[Any]:
        """The training batches of ``epoch`` (whatever :meth:`loss` takes), seeded: the same on a resumed run."""

    def loss(self, batch: Any, epoch: int) -> dict[str, Any]:
        """Loss parts (scalar tensors) of a training batch, ``"total"`` the one to minimise."""

    def set_lr(self, step: int) -> None:
        """Set the learning rate before optimizer step ``step``."""

    def end_epoch(self, epoch: int, means: dict[str, float], state: TrainState) -> dict[str, float]:
        """The history row of ``epoch`` from the mean loss parts of its batches (evaluation included)."""


def stop_if_diverged(total: Any, label: str, epoch: int, batch: int, where: Any = None) -> None:
    """Raise :class:`TrainingDivergedError` if the loss ``total`` is NaN or infinite."""
    import torch

    if not torch.isfinite(total):
        kept = f"; the last good checkpoint is kept in {where}" if where is not None else ""
        raise TrainingDivergedError(
            f"{label}: loss became {float(total.detach())} at epoch {epoch}, batch {batch}{kept} "
            "(lower the learning rate or λ)"
        )


@dataclass(frozen=True)
class EarlyStopping:
    """Stop when the best epoch is ``patience`` epochs old (0: never). Reads only the :class:`TrainState`, so a
    resumed run stops where the uninterrupted one would."""

    patience: int = 0

    def should_stop(self, state: TrainState) -> bool:
        return self.patience > 0 and state.epoch - state.best_epoch >= self.patience


def train_one_epoch(plan: TrainingPlan, state: TrainState, epoch: int, where: Any = None) -> dict[str, float]:
    """One epoch of ``plan``'s batches: forward, NaN stop, backward (÷ ``grad_accum``), optimizer step every
    ``grad_accum`` batches (``state.step`` counts them); returns the mean of every loss part over the batches."""
    opt = plan.optimizer
    sums: dict[str, float] = {}
    n_batches = 0
    opt.zero_grad(set_to_none=True)
    for b, batch in enumerate(plan.batches(epoch)):
        parts = plan.loss(batch, epoch)
        stop_if_diverged(parts["total"], plan.label, epoch, b, where)
        (parts["total"] / plan.grad_accum).backward()
        if (b + 1) % plan.grad_accum == 0:
            plan.set_lr(state.step)
            opt.step()
            opt.zero_grad(set_to_none=True)
            state.step += 1
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        n_batches += 1
    return {k: v / max(n_batches, 1) for k, v in sums.items()}


def fit(
    plan: TrainingPlan,
    state: TrainState,
    checkpointer: Checkpointer | None = None,
    metrics: MetricsLog | None = None,
    stopping: EarlyStopping | None = None,
    progress: bool = False,
    on_epoch_end: Callable[[int], None] | None = None,
    save_every_epoch: bool = True,
) -> TrainState:
    """Train ``plan`` from ``state`` (a fresh or resumed run) to its last epoch or an early stop.

    After each epoch: the row goes to the history and the metrics log, then the checkpoint (every epoch, or only
    the last with ``save_every_epoch=False``: nothing to resume, the run is cached when it ends), then
    ``on_epoch_end(epoch)`` (tests use it to interrupt a run). Returns ``state`` (updated in place).
    """
    from llmvem.progress import progress_bar

    metrics = metrics or MetricsLog(None)
    where = checkpointer.directory if checkpointer is not None else None
    stopping = stopping or EarlyStopping()
    opened = metrics.open(state.history) if state.epoch + 1 < plan.epochs else metrics
    with progress_bar(f"train {plan.label}", total=plan.epochs, enabled=progress) as advance, opened:
        advance(state.epoch + 1)
        for epoch in range(state.epoch + 1, plan.epochs):
            row = plan.end_epoch(epoch, train_one_epoch(plan, state, epoch, where), state)
            state.record(row)
            metrics.epoch(row)  # before the checkpoint: a resumed run rewrites the events from its history
            stop = stopping.should_stop(state)
            if checkpointer is not None and (save_every_epoch or stop or epoch == plan.epochs - 1):
                checkpointer.save(epoch, plan.model, plan.optimizer, state.to_json(), keep={state.best_epoch})
                metrics.commit(state.history)
            advance(1)
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            if stop:
                break
    return state
