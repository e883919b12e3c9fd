"""Does aligning a vision network with LLM descriptions make it more brain-like? The old entry point of the
NSD → objects92 study, a thin wrapper over the runner's studies ``nsd-objects92`` and, for ``finetune.loss:
visual_words``, ``nsd-objects92-words`` (``llmvem/studies/``; :func:`llmvem.runner.run_study`).
"""

from __future__ import annotations

from pathlib import Path

from llmvem.config import ExperimentConfig
from llmvem.runner.settings import Log
from llmvem.runs import RunDir


def run_nsd_objects92(
    cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None, until: str = "evaluate"
) -> RunDir:
    """The ``nsd-objects92`` study (or ``nsd-objects92-words`` for ``finetune.loss: visual_words``) from an old
    config (``dataset.name: nsd_objects92``) through the runner (:func:`llmvem.pipeline.encoding_demo.run_legacy`:
    a warning shows the study YAML to use instead)."""
    from llmvem.pipeline.encoding_demo import run_legacy

    return run_legacy(cfg, run_dir, log, until)
