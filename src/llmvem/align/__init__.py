"""Align stage: projection heads, alignment losses and the trainer (task loss + λ · alignment loss).

:class:`TrainSpec` identifies a run, :func:`~llmvem.align.trainer.fit` trains a plan (the fine-tune's or the twin's),
:class:`TrainedNetwork` answers features and heads of a trained network; :mod:`llmvem.align.words` reads the
vocabulary head of a visual-words run (words, logits, PIF features of any images).
"""

from llmvem.align.losses import ALIGN_LOSSES
from llmvem.align.network import TrainedNetwork
from llmvem.align.spec import TrainSpec
from llmvem.align.twins import TwinResult, train_twin

__all__ = ["ALIGN_LOSSES", "TrainSpec", "TrainedNetwork", "TwinResult", "train_twin"]
