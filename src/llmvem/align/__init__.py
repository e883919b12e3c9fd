"""Align stage: projection heads, alignment losses and twin training (task loss + λ · alignment loss)."""

from llmvem.align.losses import ALIGN_LOSSES
from llmvem.align.twins import TwinResult, train_twin

__all__ = ["ALIGN_LOSSES", "TwinResult", "train_twin"]
