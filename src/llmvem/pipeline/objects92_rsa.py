"""RSA on the real 92-object set, kept as the old entry point: a thin wrapper over the ``objects92`` study of the
runner (``llmvem/studies/objects92.yaml``; :func:`llmvem.runner.run_study`)."""

from __future__ import annotations

from pathlib import Path

from llmvem.config import ExperimentConfig
from llmvem.pipeline.encoding_demo import run_legacy
from llmvem.runner.settings import Log
from llmvem.runs import RunDir


def run_objects92_rsa(
    cfg: ExperimentConfig, run_dir: Path | None = None, log: Log | None = None, until: str = "evaluate"
) -> RunDir:
    """The ``objects92`` study from an old config (``dataset.name: objects92``); see
    :func:`~llmvem.pipeline.encoding_demo.run_legacy`."""
    return run_legacy(cfg, run_dir, log, until)
