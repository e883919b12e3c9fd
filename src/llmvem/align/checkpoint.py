"""Checkpoints of a training run that resume exactly: :class:`Checkpointer`.

Layout of a run directory: ``epoch-NNNN/`` (``model.safetensors``, ``optim.pt`` with the optimizer and the global
torch RNG state, ``state.json`` = the :class:`~llmvem.align.trainer.TrainState`) published by an atomic rename,
``latest.json`` pointing at the newest, the best epoch kept beside it for early stopping, and ``done.json`` once
the run finished. A directory whose run key differs from the run's is never resumed: it is cleared.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from llmvem.store import atomic_write_text


class Checkpointer:
    """Saves and restores one run's checkpoints in ``directory`` (only rank 0 writes under torchrun).

    Args:
        directory: the run's checkpoint directory.
        run_key: the run's :meth:`~llmvem.align.spec.TrainSpec.key`; checkpoints of another key are discarded.
        rank, world: this process's rank and the number of processes.
    """

    def __init__(self, directory: Path, run_key: str, rank: int = 0, world: int = 1) -> None:
        self.directory = Path(directory)
        self.run_key = run_key
        self.rank, self.world = rank, world

    def done(self) -> bool:
        """Whether this run finished here (``done.json`` with the run's key)."""
        done = self.directory / "done.json"
        return done.is_file() and json.loads(done.read_text()).get("run_key") == self.run_key

    def latest_state(self) -> dict[str, Any] | None:
        """The newest checkpoint's ``state.json`` if it belongs to this run, else ``None`` (and, on rank 0, a
        directory of another run is cleared: never resume or mix another configuration)."""
        latest = self.directory / "latest.json"
        if not latest.is_file():
            return None
        path = self.directory / json.loads(latest.read_text())["path"]
        state: dict[str, Any] = json.loads((path / "state.json").read_text())
        if state.get("run_key") == self.run_key:
            return state
        if self.rank == 0:
            shutil.rmtree(self.directory)
        self.barrier()
        return None

    def restore(self, state: dict[str, Any], model: Any, optimizer: Any) -> None:
        """Load the weights, optimizer state and global torch RNG state of the checkpoint of ``state``."""
        import torch

        path = self.epoch_dir(int(state["epoch"]))
        model.load_state_dict(self.weights(path))
        saved = torch.load(path / "optim.pt", weights_only=False)
        if optimizer is not None:
            optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])

    def epoch_dir(self, epoch: int) -> Path:
        """The directory of epoch ``epoch``'s checkpoint (it may not exist)."""
        return self.directory / f"epoch-{epoch:04d}"

    @staticmethod
    def weights(path: Path) -> dict[str, Any]:
        """The state dict saved in a checkpoint directory."""
        from safetensors.torch import load_file

        return load_file(str(path / "model.safetensors"))

    def save(self, epoch: int, model: Any, optimizer: Any, state: dict[str, Any], keep: set[int]) -> None:
        """Publish epoch ``epoch``'s checkpoint and point ``latest.json`` at it (rank 0), keep the epochs in
        ``keep`` besides it, remove the others; every rank waits for it."""
        if self.rank == 0:
            self._write(epoch, model, optimizer, state)
            names = {self.epoch_dir(e).name for e in keep | {epoch}}
            for p in self.directory.glob("epoch-*"):
                if p.name not in names:
                    shutil.rmtree(p, ignore_errors=True)
        self.barrier()

    def _write(self, epoch: int, model: Any, optimizer: Any, state: dict[str, Any]) -> Path:
        import torch
        from safetensors.torch import save_file

        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.epoch_dir(epoch)
        tmp = self.directory / f".tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        opt_state = optimizer.state_dict() if optimizer is not None else None
        torch.save({"optimizer": opt_state, "torch_rng": torch.get_rng_state()}, tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        for p in tmp.iterdir():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        atomic_write_text(self.directory / "latest.json", json.dumps({"epoch": epoch, "path": final.name}))
        return final

    def finish(self, best_epoch: int, extra: dict[str, Any] | None = None) -> None:
        """Mark the run finished (``done.json``, rank 0); every rank waits for it."""
        if self.rank == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            done = {"run_key": self.run_key, "best_epoch": best_epoch, **(extra or {})}
            atomic_write_text(self.directory / "done.json", json.dumps(done))
        self.barrier()

    def barrier(self) -> None:
        """Wait for every rank (a no-op in one process)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
