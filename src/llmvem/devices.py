"""Torch device checks shared by every stage that runs a model."""

from __future__ import annotations

from llmvem.errors import BackendError


def check_device(device: str) -> None:
    """Raise :class:`~llmvem.errors.BackendError` when a CUDA ``device`` is asked for and torch sees no GPU.

    >>> check_device("cpu")
    """
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BackendError(
                f"device {device!r} requested but CUDA is not available here; use device='cpu' (--device cpu)"
            )
