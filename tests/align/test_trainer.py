"""The loop's small parts: TrainState, EarlyStopping, the NaN stop, the Checkpointer, the MetricsLog, and `fit`
on a plan of a few lines (the fine-tune and the twin are such plans)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from llmvem.align.checkpoint import Checkpointer
from llmvem.align.metrics_log import MetricsLog
from llmvem.align.trainer import EarlyStopping, TrainingDivergedError, TrainState, fit, stop_if_diverged


def _old_patience_stop(losses: list[float], patience: int) -> int:
    """The epoch at which the counter the old loop kept (reset on improvement) stopped a run, or −1."""
    best, left = math.inf, patience
    for epoch, loss in enumerate(losses):
        improved = loss < best
        best = min(best, loss)
        left = patience if improved else left - 1
        if left <= 0:
            return epoch
    return -1


@pytest.mark.parametrize("losses", [[3, 2, 2.5, 2.6, 1, 1.1], [math.nan, 2, 3, 4], [5, 4, 3, 2, 1]])
@pytest.mark.parametrize("patience", [1, 2, 3])
def test_early_stopping_reads_only_the_state(losses: list[float], patience: int) -> None:
    state, stop = TrainState("k"), EarlyStopping(patience)
    stopped = -1
    for epoch, loss in enumerate(losses):
        state.record({"epoch": epoch, "val_total": loss})
        resumed = TrainState.from_json(json.loads(json.dumps(state.to_json())))  # as after a restart
        assert stop.should_stop(resumed) == stop.should_stop(state)
        if stop.should_stop(state):
            stopped = epoch
            break
    assert stopped == _old_patience_stop(losses, patience)
    assert not EarlyStopping(0).should_stop(state)


def test_nan_stop() -> None:
    stop_if_diverged(torch.tensor(1.0), "m", 0, 0)
    with pytest.raises(TrainingDivergedError, match="m: loss became nan at epoch 2, batch 3; the last good"):
        stop_if_diverged(torch.tensor(float("nan")), "m", 2, 3, where="/ckpt")


class _Plan:
    """Least squares y = 2x by SGD: a plan of a few lines."""

    def __init__(self, epochs: int = 3) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(1, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.epochs, self.grad_accum, self.label = epochs, 1, "toy"
        self.x = torch.linspace(-1, 1, 8)[:, None]

    def batches(self, epoch: int) -> Iterator[Any]:
        g = torch.Generator().manual_seed(epoch)
        perm = torch.randperm(8, generator=g)
        yield from (perm[:4], perm[4:])

    def loss(self, idx: Any, epoch: int) -> dict[str, Any]:
        err = torch.mean((self.model(self.x[idx]) - 2 * self.x[idx]) ** 2)
        return {"mse": err, "total": err}

    def set_lr(self, step: int) -> None:
        pass

    def end_epoch(self, epoch: int, means: dict[str, float], state: TrainState) -> dict[str, float]:
        return {"epoch": epoch, **{f"train_{k}": v for k, v in means.items()}}


def test_fit_checkpoints_resume_and_other_keys(tmp_path: Path) -> None:
    full = fit(_Plan(), TrainState("k"), Checkpointer(tmp_path / "a", "k"), MetricsLog(tmp_path / "a"))
    assert [r["epoch"] for r in full.history] == [0, 1, 2] and full.step == 6
    assert full.history[-1]["train_mse"] < full.history[0]["train_mse"]

    def stop(epoch: int) -> None:
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_Plan(), TrainState("k"), Checkpointer(tmp_path / "b", "k"), MetricsLog(tmp_path / "b"), on_epoch_end=stop)
    plan, ckpt = _Plan(), Checkpointer(tmp_path / "b", "k")
    saved = ckpt.latest_state()
    assert saved is not None and saved["epoch"] == 0
    ckpt.restore(saved, plan.model, plan.optimizer)
    resumed = fit(plan, TrainState.from_json(saved), ckpt, MetricsLog(tmp_path / "b"))
    assert resumed.history == full.history
    assert (tmp_path / "b" / "metrics.csv").read_text() == (tmp_path / "a" / "metrics.csv").read_text()
    assert sorted(p.name for p in (tmp_path / "b").glob("epoch-*")) == ["epoch-0002"]  # the latest (= the best)
    assert Checkpointer(tmp_path / "b", "other").latest_state() is None and not (tmp_path / "b").exists()


def test_fit_without_checkpoints_and_save_at_the_end(tmp_path: Path) -> None:
    assert fit(_Plan(), TrainState("k")).history == fit(_Plan(), TrainState("k")).history
    ckpt = Checkpointer(tmp_path, "k")
    fit(_Plan(epochs=4), TrainState("k"), ckpt, save_every_epoch=False)
    assert [p.name for p in tmp_path.glob("epoch-*")] == ["epoch-0003"] and not ckpt.done()
    ckpt.finish(3)
    assert ckpt.done() and not Checkpointer(tmp_path, "other").done()
